"""Helpers for the real-socket server tests: a raw SMTP client on trio,
certificates from a throwaway CA, recording hooks, and a server runner."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

import smtp_recv
from smtp_recv import Certificate, Mail, UserMail
from smtp_recv._session import MAX_PENALTY_DELAY
from smtp_recv.pytest_plugin import smtp_server, smtp_server_thread
from smtp_recv.testing import AcceptDomains, MemoryMailer, PasswordTable

__all__ = ["smtp_server", "smtp_server_thread"]  # the plugin's fixtures, for these tests

#: Every wait in these tests is bounded by this (real or virtual) time; longer
#: than any timeout the autojump tests configure, so theirs fire first, and
#: than the longest penalty delay the server makes a client wait.
WAIT = 2 * MAX_PENALTY_DELAY
PASSWORD = "Tr0ub4dor&3-very-distinctive"
USERS = {"user@example.com": PASSWORD}


def base_config(**overrides: Any) -> smtp_recv.ServerConfig:
    """A config for tests: our name, no reverse DNS, a short grace period."""
    options: dict[str, Any] = {
        "hostname": "mx.example.com",
        "reverse_dns": False,
        "shutdown_grace": 5.0,
    }
    options.update(overrides)
    return smtp_recv.ServerConfig(**options)


# -- certificates ------------------------------------------------------------
@dataclass(frozen=True)
class Certs:
    """A CertByHost from a dict; ``None`` is the default certificate."""

    by_host: Mapping[str | None, Certificate]

    def get(self, host: str | None) -> Certificate | None:
        return self.by_host.get(host)


@dataclass(frozen=True)
class CertSet:
    ca: trustme.CA
    default: Certificate
    other: Certificate
    third: Certificate

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def certs(self) -> Certs:
        return Certs(
            {
                None: self.default,
                "mail.example.com": self.other,
                "mail.example.net": self.third,
            }
        )


@pytest.fixture(scope="session")
def cert_set(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    """Three certificates: the default (mx.example.com, localhost, 127.0.0.1)
    and one each for mail.example.com and mail.example.net."""
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()

    def write(stem: str, *names: str) -> Certificate:
        issued = ca.issue_cert(*names)
        path = Path(directory, f"{stem}.pem")
        issued.private_key_and_cert_chain_pem.write_to_path(str(path))
        return Certificate(path)

    return CertSet(
        ca=ca,
        default=write("default", "mx.example.com", "localhost", "127.0.0.1"),
        other=write("other", "mail.example.com"),
        third=write("third", "mail.example.net"),
    )


# -- hooks ---------------------------------------------------------------------
@dataclass
class Delivered:
    """What a :class:`RecordingMailer` saw while the message was still open."""

    mail: Mail
    data: bytes
    in_memory: bool


@dataclass
class RecordingMailer:
    """A Mailer that records each message, its bytes and whether it was spooled,
    and can be made slow or failing."""

    delay: float = 0.0
    delivered: list[Delivered] = field(default_factory=list)
    entered: trio.Event = field(default_factory=trio.Event)
    cancelled: bool = False
    raise_: BaseException | None = None
    arrived: trio.Event = field(default_factory=trio.Event)

    async def _take(self, mail: Mail) -> None:
        self.entered.set()
        try:
            if self.delay:
                await trio.sleep(self.delay)
        except trio.Cancelled:
            self.cancelled = True
            raise
        if self.raise_ is not None:
            raise self.raise_
        self.delivered.append(Delivered(mail, mail.data, mail.content.in_memory))
        self.arrived.set()

    async def forward(self, mail: Mail) -> None:
        await self._take(mail)

    async def send(self, mail: UserMail) -> None:
        await self._take(mail)


# -- a raw client ------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One SMTP reply as the client saw it."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        return self.lines[-1].split(" ", 1)[0]

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class Client:
    """A raw SMTP client on a trio stream: sends bytes, parses replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(
        cls,
        address: tuple[str, int],
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Client:
        stream: trio.abc.Stream = await trio.open_tcp_stream(*address)
        if tls is not None:
            ssl_stream = trio.SSLStream(stream, tls, server_hostname=server_hostname)
            await ssl_stream.do_handshake()
            stream = ssl_stream
        return cls(stream)

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def reply(self) -> Answer:
        """Read one complete reply (all lines of a multi-line one)."""
        lines: list[str] = []
        with trio.fail_after(WAIT):
            while True:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    if not await self._fill():
                        raise EOFError(f"connection closed; partial reply {lines!r}")
                    continue
                line = bytes(self.buffer[:end]).decode("utf-8")
                del self.buffer[: end + 2]
                lines.append(line[4:])
                if line[3:4] != "-":
                    return Answer(int(line[:3]), tuple(lines))

    async def command(self, line: str | bytes) -> Answer:
        await self.send(line + ("\r\n" if isinstance(line, str) else b"\r\n"))
        return await self.reply()

    async def greeting_and_ehlo(self, name: str = "client.example.org") -> Answer:
        greeting = await self.reply()
        assert greeting.code == 220, greeting
        return await self.command(f"EHLO {name}")

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        answer = await self.command("STARTTLS")
        assert answer.code == 220, answer
        assert not self.buffer
        ssl_stream = trio.SSLStream(self.stream, context, server_hostname=server_hostname)
        await ssl_stream.do_handshake()
        self.stream = ssl_stream

    async def login(self, username: str = "user@example.com", password: str = PASSWORD) -> Answer:
        import base64

        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        return await self.command(f"AUTH PLAIN {token}")

    async def closed(self) -> bytes:
        """Read until the server closes; return whatever arrived first."""
        with trio.fail_after(WAIT):
            try:
                while await self._fill():
                    pass
            except trio.BrokenResourceError:
                pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def silent_for(self, seconds: float) -> bool:
        """Whether the server sends nothing for ``seconds``."""
        if self.buffer:
            return False
        with trio.move_on_after(seconds):
            data = await self.stream.receive_some(65536)
            self.buffer += data
            return False
        return True

    async def send_message(
        self, sender: str, recipients: Sequence[str], body: bytes = b"Subject: t\r\n\r\nhi\r\n"
    ) -> Answer:
        """One pipelined transaction; returns the reply to the end of data."""
        await self.send(
            f"MAIL FROM:<{sender}>\r\n".encode()
            + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in recipients)
            + b"DATA\r\n"
        )
        answer = await self.reply()
        assert answer.code == 250, answer
        for _ in recipients:
            answer = await self.reply()
            assert answer.code == 250, answer
        answer = await self.reply()
        assert answer.code == 354, answer
        await self.send(body + b".\r\n")
        return await self.reply()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"


async def send_in_flight(busy: Client, mailer: Any, after: bytes = b"") -> None:
    """A message (and ``after`` in the same write) up to where the Mailer has it.

    ``mailer`` is any Mailer with an ``entered`` event, as RecordingMailer has.
    """
    await busy.greeting_and_ehlo()
    await busy.send(ENVELOPE)
    assert [(await busy.reply()).code for _ in range(3)] == [250, 250, 354]
    await busy.send(b"Subject: x\r\n\r\nin flight\r\n.\r\n" + after)
    await mailer.entered.wait()


# -- running a server ------------------------------------------------------------
@dataclass
class Running:
    """A server started by :func:`running`."""

    listening: smtp_recv.Listening
    mailer: Any
    config: smtp_recv.ServerConfig
    scope: trio.CancelScope
    stopped: trio.Event
    #: ``True`` once ``serve`` ended by the cancellation (not an error).
    cancelled: bool = False

    @property
    def mx(self) -> tuple[str, int]:
        return self.listening.mx[0]

    @property
    def submission(self) -> tuple[str, int]:
        return self.listening.submission[0]

    def stop(self) -> None:
        self.scope.cancel()


@contextlib.asynccontextmanager
async def running(
    cert_set: CertSet,
    *,
    config: smtp_recv.ServerConfig | None = None,
    forward: Any = None,
    auth: Any = None,
    mailer: Any = None,
    certs: Any = None,
    sender_policy: Any = None,
) -> AsyncIterator[Running]:
    """Run ``smtp_recv.serve`` on 127.0.0.1:0 in a task of its own, so a test
    can stop it (``stop()``) and still talk to it while it shuts down."""
    config = config or base_config()
    config = dataclasses.replace(
        config,
        mx=smtp_recv.ListenerConfig(host="127.0.0.1", port=0, enabled=config.mx.enabled),
        submission=smtp_recv.ListenerConfig(
            host="127.0.0.1", port=0, enabled=config.submission.enabled
        ),
    )
    table = PasswordTable(USERS)
    mailer = mailer if mailer is not None else MemoryMailer()
    scope = trio.CancelScope()
    stopped = trio.Event()
    holder: list[Running] = []

    async def run(*, task_status: trio.TaskStatus[Running]) -> None:
        try:
            with scope:

                def started(listening: smtp_recv.Listening | None = None) -> None:
                    assert listening is not None
                    server = Running(listening, mailer, config, scope, stopped)
                    holder.append(server)
                    task_status.started(server)

                status: Any = _Status(started)
                await smtp_recv.serve(
                    forward or AcceptDomains(["example.com"]),
                    auth or table,
                    mailer,
                    certs or cert_set.certs(),
                    config=config,
                    sender_policy=sender_policy or table,
                    task_status=status,
                )
        finally:
            if holder:
                holder[0].cancelled = scope.cancelled_caught
            stopped.set()

    # The test's own exception is raised outside the nursery, so it reaches
    # the test unwrapped rather than inside an ExceptionGroup.
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server: Running = await nursery.start(run)
        try:
            yield server
        except GeneratorExit:
            raise
        except BaseException as exception:
            error = exception
        server.stop()
    if error is not None:
        raise error


@dataclass
class _Status:
    callback: Callable[..., None]

    def started(self, value: Any = None) -> None:
        self.callback(value)


def client_context(cert_set: CertSet) -> ssl.SSLContext:
    return cert_set.client_context()


partial = functools.partial
