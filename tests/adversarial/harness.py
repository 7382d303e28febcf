"""The harness of the adversarial suite: raw clients, preludes and table rows.

Each case is a ``Row``: which listener, which prelude brings the session to
the state under attack, the exact bytes the attacker sends (in one write,
or in the writes listed), and what must and must not happen.  ``run_row``
plays a row against a fresh server (``serve_for_tests``) over raw trio
sockets, since ``smtplib`` and ``swaks`` normalise line endings and so cannot
send these bytes, and then checks what every row must satisfy:

* every reply line is ``NNN`` plus ``SP`` or ``-`` and printable text: a
  client's CR or LF is never echoed back;
* exactly the replies expected, in order, and then nothing more: the
  session stays quiet (``end="open"``) or is closed (``end="closed"``);
* exactly ``delivered`` messages reached the Mailer, none from the
  smuggled sender, and the Forward hook saw only what it should;
* afterwards the same listener still serves a normal client from start to
  250 on a new connection.

Names follow SECURITY-CASES.md: ``our.example`` is served, ``victim.example``
is not.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import trio

from smtp_recv import ServerConfig
from smtp_recv.testing import AcceptDomains, MemoryMailer, TestServer, serve_for_tests

OUR = "our.example"
USER = "user@our.example"
PASSWORD = "password"
SMUGGLED_SENDER = "ceo@our.example"
PLAIN = base64.b64encode(f"\x00{USER}\x00{PASSWORD}".encode()).decode()
#: The second envelope a smuggler hides inside the first message.
SMUG = (
    b"MAIL FROM:<ceo@our.example>\r\n"
    b"RCPT TO:<admin@our.example>\r\n"
    b"DATA\r\n"
    b"From: ceo@our.example\r\n"
    b"To: admin@our.example\r\n"
    b"Subject: wire the money\r\n"
    b"\r\n"
    b"smuggled\r\n"
)
HDR = b"From: a@victim.example\r\nTo: b@our.example\r\nSubject: hi\r\n\r\n"
END = b"\r\n.\r\n"

#: How long "nothing more" is waited for; the server answers in microseconds.
QUIET = 0.1
#: How long any one expected reply may take.
REPLY_TIMEOUT = 5.0
#: The configuration every row starts from: the defaults, but the error and
#: AUTH penalty delays off so the table runs fast (the time rows test them
#: with ``autojump_clock``), and a small size limit so the size rows stay
#: in memory.
FAST = ServerConfig(
    hostname="mx.our.example",
    reverse_dns=False,
    error_delay=0.0,
    auth_failure_delay=0.0,
    max_message_size=256 * 1024,
)

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])([^\r\n]*)\Z")

Listener = Literal["mx", "submission"]
Prelude = Literal[
    "connect",  # TCP only (the submission listener: not even TLS)
    "banner",  # 220 read (submission: after the TLS handshake)
    "greet",  # banner + EHLO
    "starttls",  # mx: greet + STARTTLS + handshake + EHLO
    "auth",  # submission: greet + AUTH PLAIN good credentials -> 235
    "envelope",  # greet (mx) or auth (submission) + MAIL + RCPT
    "data",  # envelope + DATA -> 354
    "starttls-data",  # mx: starttls + MAIL + RCPT + DATA -> 354
]


class Closed(Exception):
    """The server closed the connection before a whole reply arrived."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def last(self) -> str:
        """``"550 5.5.2 text"``: the code and the last line's text."""
        return f"{self.code} {self.lines[-1]}"

    def matches(self, expected: str) -> bool:
        """``expected`` is a prefix such as ``"550 5.5.2"`` or ``"5"``."""
        return self.last.startswith(expected)


class Client:
    """A raw SMTP client over a trio stream: exact bytes out, parsed replies in.

    Every wait is bounded by ``patience`` seconds (a cancel scope inside each
    call); the time tests on ``autojump_clock`` raise it to virtual hours.
    """

    #: The longest any one reply, or the close, may take.
    patience: float = REPLY_TIMEOUT

    def __init__(self, stream: trio.abc.Stream, tcp: trio.SocketStream) -> None:
        self.stream = stream
        self.tcp = tcp
        self.buffer = bytearray()
        self.eof = False

    async def send(self, data: bytes | memoryview) -> None:
        await self.stream.send_all(data)

    async def _receive(self) -> None:
        """Read more; EOF and resets set ``eof``."""
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
        self.buffer += data

    def _take_reply(self) -> Reply | None:
        lines: list[str] = []
        code = None
        position = 0
        while True:
            end = self.buffer.find(b"\r\n", position)
            if end < 0:
                return None
            raw = bytes(self.buffer[position:end])
            match = _REPLY_LINE.match(raw)
            assert match is not None, f"malformed reply line {raw!r}"
            text = raw.decode("utf-8")
            assert text.isprintable(), f"unprintable reply {raw!r}"
            if code is None:
                code = int(match[1])
            assert int(match[1]) == code, f"reply codes change within a reply: {raw!r}"
            lines.append(match[3].decode("utf-8"))
            position = end + 2
            if match[2] == b" ":
                del self.buffer[:position]
                return Reply(code, tuple(lines))

    async def reply(self) -> Reply:
        """The next whole reply (the last line has a space after the code)."""
        with trio.fail_after(self.patience):
            while True:
                reply = self._take_reply()
                if reply is not None:
                    return reply
                if self.eof:
                    raise Closed(bytes(self.buffer))
                await self._receive()

    async def expect(self, expected: str) -> Reply:
        reply = await self.reply()
        assert reply.matches(expected), f"expected {expected!r}, got {reply.last!r}"
        return reply

    async def quiet(self, seconds: float = QUIET) -> None:
        """Nothing arrives for ``seconds``, and the connection stays open."""
        assert not self.buffer, f"unexpected bytes {bytes(self.buffer)!r}"
        with trio.move_on_after(seconds):
            await self._receive()
            assert not self.buffer, f"unexpected reply {bytes(self.buffer)!r}"
            assert not self.eof, "the server closed the connection"

    async def closed(self) -> bytes:
        """Read until the server closes; return whatever came before."""
        with trio.fail_after(self.patience):
            while not self.eof:
                await self._receive()
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest

    async def command(self, line: str, expected: str) -> Reply:
        await self.send(line.encode() + b"\r\n")
        return await self.expect(expected)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def connect(address: tuple[str, int]) -> Client:
    tcp = await trio.open_tcp_stream(*address)
    return Client(tcp, tcp)


async def start_tls(
    client: Client, context: ssl.SSLContext, server_hostname: str | None = "localhost"
) -> None:
    """Replace the client's stream by TLS over it and run the handshake."""
    assert not client.buffer, f"bytes before the handshake: {bytes(client.buffer)!r}"
    tls = trio.SSLStream(client.tcp, context, server_hostname=server_hostname)
    with trio.fail_after(REPLY_TIMEOUT):
        await tls.do_handshake()
    client.stream = tls


async def prelude(
    server: TestServer[MemoryMailer],
    listener: Listener,
    kind: Prelude,
    *,
    sender: str | None = None,
    recipient: str | None = None,
) -> Client:
    """A client brought to the state ``kind`` names (see ``Prelude``)."""
    address = server.mx if listener == "mx" else server.submission
    client = await connect(address)
    try:
        return await _bring(client, server, listener, kind, sender, recipient)
    except BaseException:
        await client.aclose()
        raise


async def _bring(
    client: Client,
    server: TestServer[MemoryMailer],
    listener: Listener,
    kind: Prelude,
    sender: str | None,
    recipient: str | None,
) -> Client:
    if kind == "connect":
        return client
    if listener == "submission":
        await start_tls(client, server.client_context())
    await client.expect("220")
    if kind == "banner":
        return client
    await client.command("EHLO client.example", "250")
    if kind == "greet":
        return client
    if kind in ("starttls", "starttls-data"):
        assert listener == "mx"
        await client.command("STARTTLS", "220 2.0.0")
        await start_tls(client, server.client_context())
        await client.command("EHLO client.example", "250")
        if kind == "starttls":
            return client
    if listener == "submission":
        await client.command(f"AUTH PLAIN {PLAIN}", "235 2.7.0")
    if kind == "auth":
        return client
    if listener == "mx":
        sender = sender or "alice@victim.example"
        recipient = recipient or "bob@our.example"
    else:
        sender = sender or USER
        recipient = recipient or "friend@victim.example"
    await client.command(f"MAIL FROM:<{sender}>", "250 2.1.0")
    await client.command(f"RCPT TO:<{recipient}>", "250 2.1.5")
    if kind == "envelope":
        return client
    # "data" and "starttls-data"
    await client.command("DATA", "354")
    return client


class RecordingForward(AcceptDomains):
    """``AcceptDomains`` that remembers every recipient it was asked about."""

    def __init__(self, domains: Sequence[str]) -> None:
        super().__init__(domains)
        self.lookups: list[str] = []

    async def lookup(self, recipient: str) -> Sequence[str]:
        self.lookups.append(recipient)
        return await super().lookup(recipient)


@dataclass
class Harness:
    server: TestServer[MemoryMailer]
    forward: RecordingForward

    @property
    def mailer(self) -> MemoryMailer:
        return self.server.mailer


@asynccontextmanager
async def running(
    config: ServerConfig = FAST, *, users: Mapping[str, str] | None = None, **overrides: Any
) -> AsyncIterator[Harness]:
    """A fresh server for one case, serving ``our.example``, ``config`` overridden."""
    forward = RecordingForward([OUR])
    if overrides:
        config = dataclasses.replace(config, **overrides)
    users = users if users is not None else {USER: PASSWORD}
    async with serve_for_tests(users=users, forward=forward, config=config) as server:
        yield Harness(server, forward)


async def healthy(harness: Harness, listener: Listener) -> None:
    """A normal client still gets a message through on ``listener``."""
    before = len(harness.mailer.messages)
    client = await prelude(
        harness.server,
        listener,
        "data",
        sender=None if listener == "submission" else "health@victim.example",
    )
    await client.send(b"Subject: health\r\n\r\nstill serving\r\n.\r\n")
    await client.expect("250 2.0.0")
    await client.command("QUIT", "221")
    await client.aclose()
    assert len(harness.mailer.messages) == before + 1


@dataclass(frozen=True)
class Row:
    """One adversarial case.

    Args:
        name: the test id.
        listener: ``mx`` (port 25) or ``submission`` (port 465).
        prelude: the state the attack starts from (see ``Prelude``).
        send: the bytes sent in one write, or a tuple of writes (other
            chunkings of the same bytes), each sent and given time to arrive
            on its own.
        expect: the replies, in order, as prefixes (``"550 5.5.2"``).
        end: after the replies, the session is ``open`` (and quiet) or
            ``closed`` by the server.
        before: sent first, in one write; nothing may be answered before
            ``send`` follows (a smuggled DATA gets no reply before its end).
        delivered: messages the Mailer must have received from this row.
        contains: every delivered message contains these bytes.
        lookups: the recipients the Forward hook must have been asked
            about, or ``None`` not to check.
        config: ``ServerConfig`` fields to override for this row.
        check: a last check on the harness (messages, envelopes).
        healthy: check that the listener still serves a normal client.
        xfail: the root cause, when the server is known to be wrong here.
    """

    name: str
    listener: Listener
    prelude: Prelude
    send: bytes | tuple[bytes, ...]
    expect: tuple[str, ...] = ()
    end: Literal["open", "closed"] = "open"
    before: bytes | None = None
    delivered: int = 0
    contains: tuple[bytes, ...] = ()
    lookups: tuple[str, ...] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Harness], None] | None = None
    healthy: bool = True
    #: Why this row fails today (the server is wrong): ``xfail(strict=True)``.
    xfail: str | None = None

    def __str__(self) -> str:
        return self.name


def params(rows: Sequence[Row]) -> list[Any]:
    """``pytest.param`` per row: its name as the id, ``xfail`` rows marked strict."""
    names = [row.name for row in rows]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, f"row names must be unique: {duplicates}"
    return [
        pytest.param(
            row,
            id=row.name,
            marks=[pytest.mark.xfail(strict=True, reason=row.xfail)] if row.xfail else [],
        )
        for row in rows
    ]


def on_both(name: str, **fields: Any) -> list[Row]:
    """The same case on the MX and the submission listener."""
    return [
        Row(name=f"{name}[mx]", listener="mx", **fields),
        Row(name=f"{name}[submission]", listener="submission", **fields),
    ]


#: Pause between the writes of a chunked row, so the server reads each alone.
WRITE_GAP = 0.002


async def _play(row: Row, client: Client) -> None:
    if row.before is not None:
        await client.send(row.before)
        await client.quiet()
    if isinstance(row.send, bytes):
        await client.send(row.send)
    else:
        for piece in row.send:
            await client.send(piece)
            await trio.sleep(WRITE_GAP)
    replies: list[Reply] = []
    for expected in row.expect:
        try:
            reply = await client.reply()
        except Closed as closed:
            raise AssertionError(
                f"closed after {[r.last for r in replies]}, expected {expected!r} next"
                f" (left: {closed.args[0]!r})"
            ) from None
        replies.append(reply)
        assert reply.matches(expected), (
            f"reply {len(replies)}: expected {expected!r}, got {reply.last!r}"
            f" (all so far: {[r.last for r in replies]})"
        )
    if row.end == "closed":
        rest = await client.closed()
        assert not rest, f"bytes after the last expected reply: {rest!r}"
    else:
        await client.quiet()


async def run_row(row: Row) -> None:
    """Play ``row`` against a fresh server and check everything it promises."""
    async with running(**row.config) as harness:
        client = await prelude(harness.server, row.listener, row.prelude)
        delivered_before = len(harness.mailer.messages)
        lookups_before = len(harness.forward.lookups)
        try:
            await _play(row, client)
        finally:
            await client.aclose()
        messages = harness.mailer.messages[delivered_before:]
        assert len(messages) == row.delivered, f"{len(messages)} messages delivered"
        for mail in harness.mailer.messages:
            assert mail.sender.casefold() != SMUGGLED_SENDER, "a smuggled message was delivered"
        for mail in messages:
            for needle in row.contains:
                assert needle in mail.data, f"{needle!r} not in the delivered message"
        if row.lookups is not None:
            assert tuple(harness.forward.lookups[lookups_before:]) == row.lookups
        if row.check is not None:
            row.check(harness)
        if row.healthy:
            await healthy(harness, row.listener)


def message_body(mail: Any) -> bytes:
    """The message as the client sent it, without our ``Received:`` header."""
    data: bytes = mail.data
    assert data.startswith(b"Received:")
    # The trace header is folded; it ends at the first line not starting
    # with white space.
    lines = data.split(b"\r\n")
    index = 1
    while lines[index][:1] in (b" ", b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


def rss_kib() -> int:
    """The resident set size of this process (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")  # pragma: no cover


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")  # pragma: no cover


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); ``False`` if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
