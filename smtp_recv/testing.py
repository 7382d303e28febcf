"""A real smtp_recv server inside your tests, in one line.

For trio test suites::

    async with smtp_recv.testing.serve_for_tests() as server:
        ...send mail to server.mx or server.submission...
        mail = await server.mailer.wait_for_message()
        assert mail.sender == "alice@example.com"

For everything else (Django, Flask, plain pytest), the same server runs in a
background thread::

    with smtp_recv.testing.ThreadedTestServer() as server:
        with smtplib.SMTP(*server.mx) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\nhi")
        mail = server.mailer.wait_for_message_blocking()

Both listeners are bound to 127.0.0.1 on free ports, with a certificate for
``localhost`` and ``127.0.0.1`` from a throwaway CA (``trustme``, which must
be installed: it is in the ``test`` extra), and an in-memory Mailer whose
messages the test can await and inspect.  Pytest fixtures built on these are
in ``smtp_recv.pytest_plugin``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hmac
import queue
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import trio

from ._config import ListenerConfig, ServerConfig
from ._hooks import Auth, Certificate, Forward, Mailer, SenderPolicy
from ._mail import Mail, UserMail
from ._mailboxes import same_mailbox
from ._server import serve

__all__ = [
    "AcceptDomains",
    "MemoryMailer",
    "PasswordTable",
    "TestServer",
    "ThreadedTestServer",
    "config_for_tests",
    "serve_for_tests",
]

DEFAULT_USERS: Mapping[str, str] = {"user@example.com": "password"}
DEFAULT_DOMAINS = ("example.com",)


class MemoryMailer:
    """A Mailer that keeps every message in a list, for tests to inspect.

    ``fail_next`` makes the next deliveries raise (the client gets ``451``),
    to test that a failed Mailer loses nothing.
    """

    def __init__(self) -> None:
        #: Every message accepted, in order.
        self.messages: list[Mail] = []
        #: Raise this many times before accepting again.
        self.fail_next = 0
        self._condition = threading.Condition()
        # Tasks waiting in wait_for_message, each with the trio run it is in:
        # with ThreadedTestServer the server's run is not the test's.
        self._waiters: list[tuple[trio.lowlevel.TrioToken, trio.Event]] = []

    async def send(self, mail: UserMail) -> None:
        self._take(mail)

    async def forward(self, mail: Mail) -> None:
        self._take(mail)

    def _take(self, mail: Mail) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("MemoryMailer told to fail")
        # Read the content now: the server closes spooled content afterwards.
        mail = dataclasses.replace(mail, content=type(mail.content).from_bytes(mail.data))
        with self._condition:
            self.messages.append(mail)
            self._condition.notify_all()
            waiters, self._waiters = self._waiters, []
        for token, arrived in waiters:
            # Set in the waiter's own run, whichever thread this is.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(arrived.set)

    async def wait_for_message(
        self,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - see below
    ) -> Mail:
        """Wait (in trio) until ``count`` messages arrived; return the last.

        Works from any trio run, the server's or another one (a test using
        :class:`ThreadedTestServer`).  A timeout parameter, against trio's
        habit of cancel scopes: a test whose message never comes must fail,
        not hang the suite, even when nobody thought of a ``fail_after``.

        Raises:
            TimeoutError: fewer than ``count`` arrived within ``timeout`` seconds.
        """
        with trio.move_on_after(timeout):
            while True:
                with self._condition:
                    if len(self.messages) >= count:
                        return self.messages[count - 1]
                    arrived = trio.Event()
                    self._waiters.append((trio.lowlevel.current_trio_token(), arrived))
                await arrived.wait()
        raise TimeoutError(f"{len(self.messages)} of {count} messages arrived")

    def wait_for_message_blocking(self, count: int = 1, timeout: float = 10.0) -> Mail:
        """Wait (in a thread) until ``count`` messages arrived; return the last."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} messages arrived")
            return self.messages[count - 1]


class AcceptDomains:
    """A Forward that accepts every address at the given domains, as itself."""

    def __init__(self, domains: Iterable[str]) -> None:
        self.domains = frozenset(domain.lower() for domain in domains)

    async def lookup(self, recipient: str) -> Sequence[str]:
        domain = recipient.rpartition("@")[2].lower()
        return [recipient] if domain in self.domains else []


class PasswordTable:
    """An Auth and SenderPolicy from a plain dict of login to password."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        expected = self.users.get(username)
        if expected is not None and _equal(expected, password):
            return username
        return None

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return same_mailbox(sender, username)  # as the built-in server decides


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class _OneCertificate:
    def __init__(self, certificate: Certificate) -> None:
        self.certificate = certificate

    def get(self, host: str | None) -> Certificate:
        return self.certificate


#: The type of a test server's Mailer: :class:`MemoryMailer` unless one is given.
if TYPE_CHECKING:
    # A default (PEP 696) lets a bare ``TestServer`` annotation mean
    # ``TestServer[MemoryMailer]`` under ``mypy --strict``.  ``typing`` has
    # defaults only from Python 3.13; type checkers ship ``typing_extensions``
    # with their stubs, so this costs no dependency at run time.
    from typing_extensions import TypeVar as _TypeVar

    M = _TypeVar("M", bound=Mailer, default=MemoryMailer)
else:
    M = TypeVar("M", bound=Mailer)


@dataclass(frozen=True, slots=True, kw_only=True)
class TestServer(Generic[M]):
    """A running test server: where it listens and what it received.

    Generic in its Mailer, so that ``server.mailer.wait_for_message()`` is
    type-checked: ``serve_for_tests()`` gives a ``TestServer[MemoryMailer]``,
    ``serve_for_tests(mailer=mine)`` a ``TestServer`` of ``mine``'s type.
    """

    __test__ = False  # not a pytest test class

    #: ``(host, port)`` of the MX listener (plaintext + STARTTLS).
    mx: tuple[str, int]
    #: ``(host, port)`` of the submission listener (implicit TLS + AUTH).
    submission: tuple[str, int]
    #: The Mailer given, by default a :class:`MemoryMailer`.
    mailer: M
    #: Login and password of each submission user.
    users: Mapping[str, str]
    #: The configuration the server runs with.
    config: ServerConfig
    #: The PEM file of the CA that signed the server's certificate.
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        """An ``SSLContext`` that trusts the server's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def config_for_tests(**overrides: Any) -> ServerConfig:
    """The test server's settings, with ``overrides`` (any :class:`ServerConfig` field).

    Unlike ``ServerConfig()``'s production defaults: no reverse DNS lookups
    (tests must not wait for a resolver) and a shutdown grace of half a
    second (a test that stops mid-message must not wait 30 s for its
    teardown).
    """
    settings: dict[str, Any] = {
        "hostname": "mx.example.com",
        "reverse_dns": False,
        "shutdown_grace": 0.5,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@overload
def serve_for_tests(
    *,
    users: Mapping[str, str] = ...,
    domains: Iterable[str] = ...,
    forward: Forward | None = ...,
    auth: Auth | None = ...,
    mailer: None = ...,
    sender_policy: SenderPolicy | None = ...,
    config: ServerConfig | None = ...,
    hostnames: Sequence[str] = ...,
) -> AbstractAsyncContextManager[TestServer[MemoryMailer]]: ...


@overload
def serve_for_tests(
    *,
    users: Mapping[str, str] = ...,
    domains: Iterable[str] = ...,
    forward: Forward | None = ...,
    auth: Auth | None = ...,
    mailer: M,
    sender_policy: SenderPolicy | None = ...,
    config: ServerConfig | None = ...,
    hostnames: Sequence[str] = ...,
) -> AbstractAsyncContextManager[TestServer[M]]: ...


@contextlib.asynccontextmanager
async def serve_for_tests(
    *,
    users: Mapping[str, str] = DEFAULT_USERS,
    domains: Iterable[str] = DEFAULT_DOMAINS,
    forward: Forward | None = None,
    auth: Auth | None = None,
    mailer: Mailer | None = None,
    sender_policy: SenderPolicy | None = None,
    config: ServerConfig | None = None,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
) -> AsyncIterator[TestServer[Any]]:
    """Run a server on 127.0.0.1 for the duration of the ``async with``.

    Args:
        users: logins and passwords for submission (ignored with ``auth``).
        domains: the MX listener accepts any address at these (ignored with
            ``forward``).
        forward, auth, mailer, sender_policy: your own hooks instead.
        config: the server's settings; the listeners are always moved to
            127.0.0.1:0.  By default :func:`config_for_tests`: reverse DNS
            off and a ``shutdown_grace`` of half a second, so a test that
            ends mid-message is not held up.  To change a few limits and
            keep those, pass ``config_for_tests(max_message_size=...)``.
        hostnames: names on the server's certificate.
    """
    try:
        import trustme
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("smtp_recv.testing needs trustme: pip install trustme") from None
    if config is None:
        config = config_for_tests()
    config = dataclasses.replace(
        config,
        mx=ListenerConfig(host="127.0.0.1", port=0, enabled=config.mx.enabled),
        submission=ListenerConfig(host="127.0.0.1", port=0, enabled=config.submission.enabled),
    )
    table = PasswordTable(users)
    mailer = mailer if mailer is not None else MemoryMailer()
    with tempfile.TemporaryDirectory(prefix="smtp-recv-test-") as directory:
        ca = trustme.CA()
        issued = ca.issue_cert(*hostnames)
        pem = Path(directory, "server.pem")
        issued.private_key_and_cert_chain_pem.write_to_path(str(pem))
        ca_file = Path(directory, "ca.pem")
        ca.cert_pem.write_to_path(str(ca_file))
        # The test's own exception is re-raised outside the nursery, so that
        # it reaches the test as itself (``pytest.raises`` works), not
        # wrapped in the nursery's ExceptionGroup.
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(
                functools.partial(
                    serve,
                    forward or AcceptDomains(domains),
                    auth or table,
                    mailer,
                    _OneCertificate(Certificate(pem)),
                    config=config,
                    sender_policy=sender_policy or table,
                )
            )
            try:
                yield TestServer(
                    mx=listening.mx[0] if listening.mx else ("", 0),
                    submission=listening.submission[0] if listening.submission else ("", 0),
                    mailer=mailer,
                    users=users,
                    config=config,
                    ca_file=ca_file,
                )
            except GeneratorExit:
                raise
            except BaseException as exception:
                error = exception
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error


class ThreadedTestServer(Generic[M]):
    """``serve_for_tests`` in a background thread, for code that is not trio.

    Use it as a context manager: it takes the keyword arguments of
    :func:`serve_for_tests`, and ``with`` gives the :class:`TestServer`
    (a ``TestServer[MemoryMailer]`` unless a ``mailer`` is given).
    Send with blocking clients (smtplib) and wait with
    ``server.mailer.wait_for_message_blocking()``.
    """

    @overload
    def __init__(self, *, mailer: M, **options: Any) -> None: ...

    @overload
    def __init__(
        self: ThreadedTestServer[MemoryMailer], *, mailer: None = None, **options: Any
    ) -> None: ...

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._ready: queue.SimpleQueue[TestServer[M] | BaseException] = queue.SimpleQueue()
        self._stop: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._thread: threading.Thread | None = None
        self.server: TestServer[M] | None = None

    def __enter__(self) -> TestServer[M]:
        if self._thread is not None:
            # One server per instance at a time: a second would orphan the first.
            raise RuntimeError("this ThreadedTestServer is already running")
        self._thread = threading.Thread(target=self._run, name="smtp-recv-test", daemon=True)
        self._thread.start()
        try:
            result = self._ready.get(timeout=30)
        except queue.Empty:
            result = TimeoutError("the test server did not start within 30 s")
        if isinstance(result, BaseException):
            # No __exit__ follows a failed __enter__: leave it ready for another try.
            if self._stop is not None and self._cancel is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    self._stop.run_sync_soon(self._cancel.cancel)
            self._thread.join(timeout=60)
            self._thread = self._stop = self._cancel = None
            raise result
        self.server = result
        return result

    def _run(self) -> None:
        async def main() -> None:
            self._stop = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with serve_for_tests(**self._options) as server:
                    self._ready.put(server)
                    await trio.sleep_forever()

        try:
            trio.run(main)
        except BaseException as error:  # reported to the thread that waits
            self._ready.put(error)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stop is not None and self._cancel is not None:
            # Unless the server has ended by itself (a hook raised SystemExit).
            with contextlib.suppress(trio.RunFinishedError):
                self._stop.run_sync_soon(self._cancel.cancel)
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._thread = self._stop = self._cancel = self.server = None
        # What ended the server, if not this stop: the test must not pass
        # over it (unless it is failing already, with an error of its own).
        try:
            error = self._ready.get_nowait()
        except queue.Empty:
            return
        if exc is None and isinstance(error, BaseException):
            raise error
