"""Shared drivers for the protocol-core tests.

Like h11's test helpers: every reader and every dialogue can be fed whole,
one byte at a time, or at arbitrary cut points, and the result must not
depend on how the bytes arrived.  ``Dialogue`` plays the application's part
(answering decisions) so a test reads as the client's side of an RFC
exchange plus the server's exact reply bytes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from smtp_recv.protocol import (
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    Event,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    ProtocolError,
    RcptTo,
    Reply,
    ServerConnection,
    SessionConfig,
    State,
)

HOSTNAME = "mx.our.example"
CLIENT = "client.example"

Decision = MailFrom | RcptTo | AuthCredentials | MessageComplete
#: Answers a decision: ``None`` accepts with the usual reply; a 2xx/3xx reply
#: accepts with it; a 4xx/5xx reply rejects; ``LEAVE`` leaves it pending.
Decider = Callable[[Decision], "Reply | _Leave | None"]


class _Leave:
    def __repr__(self) -> str:
        return "LEAVE"


LEAVE = _Leave()


def accept_all(event: Decision) -> None:
    return None


def config(**overrides: object) -> SessionConfig:
    """A session configuration with our test hostname."""
    return SessionConfig(hostname=HOSTNAME, **overrides)  # type: ignore[arg-type]


#: Port 25: STARTTLS offered, no AUTH.
MX = config(offer_starttls=True)
#: Port 465 after the handshake: AUTH offered and required.
SUBMISSION = config(tls_active=True, offer_auth=True, auth_required=True)


# -- ways to cut a byte string --------------------------------------------------
def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def halves(data: bytes) -> list[bytes]:
    middle = len(data) // 2
    return [piece for piece in (data[:middle], data[middle:]) if piece]


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (clamped, sorted, deduplicated)."""
    offsets = sorted({min(max(point, 0), len(data)) for point in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(offsets) if b > a]


#: The splits every reader test is parametrised with.
SPLITS = {"whole": whole, "bytewise": bytewise, "halves": halves}


# -- reading replies back ---------------------------------------------------------
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3}) ")


@dataclass(frozen=True)
class Answer:
    """One reply as the client reads it."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]


def parse_replies(data: bytes) -> list[Answer]:
    """Parse a block of reply bytes, checking their RFC 5321 4.2 syntax."""
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\r\n"), text
    answers: list[Answer] = []
    lines: list[str] = []
    enhanced: str | None = None
    for raw in text.split("\r\n")[:-1]:
        assert re.fullmatch(r"[2-5]\d\d[ -].*", raw), raw
        code, separator, rest = int(raw[:3]), raw[3], raw[4:]
        match = _ENHANCED.match(rest)
        if match:
            enhanced, rest = match[1], rest[match.end() :]
        lines.append(rest)
        if separator == " ":
            answers.append(Answer(code, enhanced, tuple(lines)))
            lines, enhanced = [], None
    assert not lines, "a multi-line reply without its last line"
    return answers


def codes(data: bytes) -> list[int]:
    return [answer.code for answer in parse_replies(data)]


# -- the application's side ---------------------------------------------------
class Dialogue:
    """A ``ServerConnection`` with the application's loop around it."""

    def __init__(
        self,
        session: SessionConfig | None = None,
        *,
        greet: bool = True,
        decide: Decider = accept_all,
        **overrides: object,
    ) -> None:
        if session is None:
            session = config(**overrides)
        self.conn = ServerConnection(session)
        self.decide = decide
        #: Every event, in order.
        self.events: list[Event] = []
        #: The ProtocolError that ended the session, if any.
        self.error: ProtocolError | None = None
        if greet:
            self.conn.send_greeting()
            self.greeting = self.conn.data_to_send()

    @property
    def state(self) -> State:
        return self.conn.state

    def feed(self, data: bytes, split: Callable[[bytes], list[bytes]] = whole) -> list[Event]:
        """Give ``data`` to the core in pieces and run it; return the new events."""
        start = len(self.events)
        pieces = split(data) if data else []
        for piece in pieces:
            self.conn.receive_data(piece)
            self.pump()
        if not pieces:
            self.pump()
        return self.events[start:]

    def eof(self) -> list[Event]:
        start = len(self.events)
        self.conn.receive_data(b"")
        self.pump()
        return self.events[start:]

    def pump(self) -> None:
        """Pull events until the core needs data or waits for us."""
        conn = self.conn
        while self.error is None:
            try:
                event = conn.next_event()
            except ProtocolError as error:
                self.error = error
                return
            if event is NEED_DATA:
                return
            if event is PAUSED:
                return
            assert isinstance(event, Event)
            self.events.append(event)
            if isinstance(event, MailFrom | RcptTo | AuthCredentials | MessageComplete):
                answer = self.decide(event)
                if answer is LEAVE:
                    return
                if answer is None or (isinstance(answer, Reply) and answer.is_positive):
                    conn.accept(answer if isinstance(answer, Reply) else None)
                else:
                    assert isinstance(answer, Reply)
                    conn.reject(answer)

    def say(self, *lines: str | bytes, split: Callable[[bytes], list[bytes]] = whole) -> bytes:
        """Send command lines (CRLF added) and return the reply bytes."""
        data = b"".join(
            (line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n" for line in lines
        )
        self.feed(data, split)
        return self.conn.data_to_send()

    def send(self, data: bytes, split: Callable[[bytes], list[bytes]] = whole) -> bytes:
        """Send raw bytes and return the reply bytes."""
        self.feed(data, split)
        return self.conn.data_to_send()

    def of_type(self, kind: type[Event]) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]

    def body(self) -> bytes:
        """Every MessageData so far, concatenated."""
        return b"".join(event.data for event in self.events if isinstance(event, MessageData))


def reply_bytes(*replies_: Reply, enhanced: bool = True) -> bytes:
    return b"".join(reply.to_bytes(enhanced) for reply in replies_)


def greeted(session: SessionConfig | None = None, **kwargs: object) -> Dialogue:
    """A dialogue past ``EHLO``."""
    dialogue = Dialogue(session, **kwargs)  # type: ignore[arg-type]
    dialogue.say(f"EHLO {CLIENT}")
    return dialogue


def in_transaction(
    session: SessionConfig | None = None,
    *,
    recipients: Sequence[str] = ("rcpt@our.example",),
    **overrides: object,
) -> Dialogue:
    """A dialogue past ``MAIL FROM`` and the ``RCPT TO`` lines, all accepted."""
    dialogue = greeted(session, **overrides)
    dialogue.say("MAIL FROM:<sender@client.example>")
    for recipient in recipients:
        dialogue.say(f"RCPT TO:<{recipient}>")
    return dialogue


def plain(username: str, password: str, authzid: str = "") -> str:
    """The AUTH PLAIN response (RFC 4616 section 2), base64-encoded."""
    raw = f"{authzid}\0{username}\0{password}".encode()
    return base64.b64encode(raw).decode("ascii")


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def dot_stuff(body: bytes) -> bytes:
    """RFC 5321 4.5.2, the client's side: double a dot that starts a line."""
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed


def unstuff_reference(raw: bytes) -> bytes:
    """RFC 5321 4.5.2, the server's side, written line by line.

    An independent (slow) reference for the core's ``bytes.replace`` version:
    only CRLF separates lines; a line that starts with "." loses that dot.
    """
    lines = raw.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def normalise(events: Sequence[Event]) -> list[Event]:
    """Events with the parts that legitimately depend on how bytes arrived removed.

    Consecutive ``MessageData`` are merged (pieces follow the reads); body
    data not followed by ``MessageComplete`` is dropped, because how much of
    a message that is refused, reset or cut off was streamed before the core
    knew depends on where the bytes were split.
    """
    merged: list[Event] = []
    for event in events:
        if isinstance(event, MessageData) and merged and isinstance(merged[-1], MessageData):
            merged[-1] = MessageData(data=merged[-1].data + event.data)
        else:
            merged.append(event)
    result: list[Event] = []
    for event in merged:
        if (
            result
            and isinstance(result[-1], MessageData)
            and not isinstance(event, MessageComplete)
        ):
            result.pop()
        result.append(event)
    if result and isinstance(result[-1], MessageData):
        result.pop()
    return result


def message_outcomes(events: Sequence[Event]) -> list[Event]:
    return [event for event in events if isinstance(event, MessageComplete | MessageAborted)]
