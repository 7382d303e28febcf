"""Hook failures and decisions, and hooks in flight at shutdown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import ClassVar, NoReturn

import pytest
import trio
import trio.lowlevel
import trio.testing

import smtp_recv
import smtp_recv._session
from smtp_recv._session import SHUTDOWN_QUIT_WAIT
from smtp_recv.protocol import replies
from smtp_recv.testing import MemoryMailer

from .conftest import (
    ENVELOPE,
    CertSet,
    Client,
    RecordingMailer,
    Running,
    base_config,
    running,
    send_in_flight,
)

MockClock = trio.testing.MockClock


async def test_mailer_failure_gives_451_and_retry_succeeds(cert_set: CertSet) -> None:
    mailer = MemoryMailer()
    mailer.fail_next = 1
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        failed = await client.send_message("a@b.example", ["bob@example.com"])
        assert (failed.code, failed.enhanced) == (451, "4.3.0")
        assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 250
    assert len(mailer.messages) == 1


class RejectingMailer:
    def __init__(self, reject: smtp_recv.Reject) -> None:
        self.reject = reject

    async def forward(self, mail: smtp_recv.Mail) -> None:
        raise self.reject

    async def send(self, mail: smtp_recv.UserMail) -> None:
        raise self.reject


async def test_mailer_reject_gives_exactly_its_reply(cert_set: CertSet) -> None:
    mailer = RejectingMailer(smtp_recv.Reject(550, "5.7.1", "Message refused by policy"))
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        answer = await client.send_message("a@b.example", ["bob@example.com"])
        assert str(answer) == "550 5.7.1 Message refused by policy"
        assert (await client.command("NOOP")).code == 250


async def test_reject_text_cannot_forge_extra_replies(cert_set: CertSet) -> None:
    reject = smtp_recv.Reject(550, "5.7.1", "no")
    reject.text = "no\r\n250 2.0.0 forged"  # past Reject's own check
    mailer = RejectingMailer(reject)
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        answer = await client.send_message("a@b.example", ["bob@example.com"])
        assert (answer.code, answer.enhanced) == (451, "4.3.0")
        assert (await client.command("NOOP")).code == 250
        assert not client.buffer


def test_reject_refuses_what_it_could_not_send_when_it_is_made() -> None:
    # Not when it is sent, where it could only become a 451.
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_recv.Reject(250, "2.0.0", "fine")
    with pytest.raises(ValueError, match="bad enhanced code"):
        smtp_recv.Reject(550, "4.7.1", "mismatch")
    with pytest.raises(ValueError, match="bad enhanced code"):
        smtp_recv.Reject(550, "5.1", "too short")
    with pytest.raises(ValueError, match="one line"):
        smtp_recv.Reject(550, "5.7.1", "no\r\n250 2.0.0 forged")
    # RFC 5321 4.5.3.1.5: 512 octets per reply line, code and CRLF included.
    longest = "x" * (512 - len("550 5.7.1 \r\n"))
    assert smtp_recv.Reject(550, "5.7.1", longest).text == longest
    with pytest.raises(ValueError, match="at most 512 octets"):
        smtp_recv.Reject(550, "5.7.1", longest + "x")
    with pytest.raises(ValueError, match="at most 512 octets"):
        smtp_recv.Reject(550, "5.7.1", "é" * 251)  # 502 octets of UTF-8


async def test_a_reject_quoting_a_utf8_address_gets_its_own_reply(cert_set: CertSet) -> None:
    class LeftForward:
        async def lookup(self, recipient: str) -> Sequence[str]:
            raise smtp_recv.Reject(550, "5.1.1", f"<{recipient}> has left")

    async with (
        running(cert_set, forward=LeftForward()) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example> SMTPUTF8")).code == 250
        left = await client.command("RCPT TO:<j\u00f6rg@example.com>")
        assert str(left) == "550 5.1.1 <j\u00f6rg@example.com> has left"


class FlakyForward:
    async def lookup(self, recipient: str) -> Sequence[str]:
        if recipient.startswith("down"):
            raise ConnectionError("directory unavailable")
        if recipient.startswith("blocked"):
            raise smtp_recv.Reject(550, "5.7.1", "Recipient blocked")
        return [recipient]


async def test_forward_exception_gives_451_and_reject_its_reply(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, forward=FlakyForward(), mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        down = await client.command("RCPT TO:<down@example.com>")
        assert (down.code, down.enhanced) == (451, "4.3.0")
        blocked = await client.command("RCPT TO:<blocked@example.com>")
        assert str(blocked) == "550 5.7.1 Recipient blocked"
        assert (await client.command("RCPT TO:<ok@example.com>")).code == 250
        assert (await client.command("DATA")).code == 354
        await client.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        assert (await client.reply()).code == 250
    (delivered,) = mailer.delivered
    assert [r.address for r in delivered.mail.recipients] == ["ok@example.com"]


class OwnBaseException(BaseException):
    """What a hook's own code may define, wrongly, outside ``Exception``."""


async def asyncio_cancelled() -> BaseException:
    # A library bridged to asyncio raises it: a BaseException since 3.8.
    return asyncio.CancelledError()


async def own_base_exception() -> BaseException:
    return OwnBaseException("boom")


async def stray_cancelled() -> BaseException:
    """A Cancelled that the hook caught in a scope of its own and keeps."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as caught:
            kept = caught
    return kept


async def generator_exit() -> BaseException:
    # Only the session's own coroutine being closed may pass one on.
    return GeneratorExit()


async def group_of_them() -> BaseException:
    return BaseExceptionGroup("hook tasks", [asyncio.CancelledError(), OwnBaseException()])


class CrashingHooks:
    """Forward, Auth, SenderPolicy and Mailer that raise a BaseException for "crash".

    ``suspend`` says whether they suspend first: the session runs a hook's
    first step directly and only the rest under its wait scope.
    """

    def __init__(self, make: Callable[[], Awaitable[BaseException]], suspend: bool) -> None:
        self.make, self.suspend = make, suspend
        self.mailer = RecordingMailer()

    async def _crash_if(self, crash: bool) -> None:
        if self.suspend:
            await trio.lowlevel.checkpoint()
        if crash:
            raise await self.make()

    async def lookup(self, recipient: str) -> Sequence[str]:
        await self._crash_if(recipient.startswith("crash@"))
        return [recipient]

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        await self._crash_if(username.startswith("crash@"))
        return username

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        await self._crash_if(sender.startswith("crash@"))
        return True

    async def forward(self, mail: smtp_recv.Mail) -> None:
        await self._crash_if(b"crash" in mail.data)
        await self.mailer.forward(mail)

    async def send(self, mail: smtp_recv.UserMail) -> None:
        await self._crash_if(b"crash" in mail.data)
        await self.mailer.send(mail)


CRASHES = {
    "asyncio-cancelled": asyncio_cancelled,
    "own-base-exception": own_base_exception,
    "stray-cancelled": stray_cancelled,
    "generator-exit": generator_exit,
    "group": group_of_them,
}


@pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "after-suspending"])
@pytest.mark.parametrize("make", CRASHES.values(), ids=CRASHES.keys())
async def test_a_hook_raising_a_base_exception_fails_its_command_only(
    cert_set: CertSet, make: Callable[[], Awaitable[BaseException]], suspend: bool
) -> None:
    """No exception of one session reaches the server, nor any other session."""
    hooks = CrashingHooks(make, suspend)
    crash = b"Subject: crash\r\n\r\nx\r\n"
    async with (
        running(cert_set, forward=hooks, auth=hooks, mailer=hooks, sender_policy=hooks) as server,
        await Client.connect(server.mx) as bystander,
        await Client.connect(server.mx) as client,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as user,
    ):
        await bystander.greeting_and_ehlo()
        assert (await bystander.command("MAIL FROM:<a@b.example>")).code == 250
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        failed = await client.command("RCPT TO:<crash@example.com>")
        assert (failed.code, failed.enhanced) == (451, "4.3.0")
        assert (await client.command("RCPT TO:<ok@example.com>")).code == 250
        assert (await client.command("DATA")).code == 354
        await client.send(crash + b".\r\n")
        failed = await client.reply()
        assert (failed.code, failed.enhanced) == (451, "4.3.0")

        await user.greeting_and_ehlo()
        failed = await user.login("crash@example.com")
        assert (failed.code, failed.enhanced) == (454, "4.7.0")
        assert (await user.login()).code == 235
        failed = await user.command("MAIL FROM:<crash@example.com>")
        assert (failed.code, failed.enhanced) == (451, "4.3.0")
        answer = await user.send_message("user@example.com", ["x@elsewhere.example"], crash)
        assert (answer.code, answer.enhanced) == (451, "4.3.0")

        # Every session goes on, the bystander's transaction included.
        assert (await client.send_message("a@b.example", ["ok@example.com"])).code == 250
        assert (await user.send_message("user@example.com", ["x@elsewhere.example"])).code == 250
        assert (await bystander.command("RCPT TO:<ok@example.com>")).code == 250
        assert (await bystander.command("DATA")).code == 354
        await bystander.send(b"Subject: t\r\n\r\nhi\r\n.\r\n")
        assert (await bystander.reply()).code == 250
    assert len(hooks.mailer.delivered) == 3
    assert server.cancelled  # serve ended by our stop, not by the hooks' exceptions


class FailingAsCancelled:
    """A Forward whose own task fails as the session's time limit cancels it."""

    async def lookup(self, recipient: str) -> Sequence[str]:
        async def cleanup_bug() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                raise OwnBaseException("cleanup bug") from None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cleanup_bug)
            nursery.start_soon(trio.sleep_forever)
        return [recipient]


async def test_a_hook_failing_as_it_is_cancelled_ends_only_its_session(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """Its group holds the Cancelled and a BaseException: only the Cancelled goes on up."""
    config = base_config(session_timeout=10)
    async with running(cert_set, config=config, forward=FailingAsCancelled()) as server:
        async with await Client.connect(server.mx) as client:
            await client.greeting_and_ehlo()
            assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
            closing = await client.command("RCPT TO:<slow@example.com>")
            assert (closing.code, closing.enhanced) == (421, "4.4.2")
        async with await Client.connect(server.mx) as other:
            assert (await other.greeting_and_ehlo()).code == 250
    assert server.cancelled


class RaisingWhenCalled:
    """A Forward whose lookup is a plain function that raises before any coroutine exists."""

    def lookup(self, recipient: str) -> Awaitable[Sequence[str]]:
        raise OwnBaseException("raised by the call itself")


class LateAndWrong:
    """A Forward that swallows its deadline's Cancelled and raises a BaseException instead."""

    async def lookup(self, recipient: str) -> Sequence[str]:
        if recipient.startswith("late@"):
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                raise OwnBaseException("past its deadline") from None
        return [recipient]


@pytest.mark.parametrize("forward", [RaisingWhenCalled(), LateAndWrong()], ids=["call", "late"])
async def test_a_hook_crash_at_its_call_or_past_its_deadline_fails_its_command_only(
    cert_set: CertSet, autojump_clock: MockClock, forward: object
) -> None:
    config = base_config(hook_timeout=5)
    async with (
        running(cert_set, config=config, forward=forward) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        # Pipelined: the commands after the failed one are read as ever.
        await client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<late@example.com>\r\nNOOP\r\n")
        assert (await client.reply()).code == 250
        failed = await client.reply()
        assert (failed.code, failed.enhanced) == (451, "4.3.0")
        assert (await client.reply()).code == 250
        assert (await client.command("RSET")).code == 250
    assert server.cancelled


@pytest.mark.parametrize("stop", [SystemExit(3), KeyboardInterrupt()], ids=["exit", "interrupt"])
async def test_a_hook_asking_the_process_to_stop_is_obeyed(
    cert_set: CertSet, stop: BaseException
) -> None:
    class Stopping:
        async def lookup(self, recipient: str) -> Sequence[str]:
            raise stop

    async def ask() -> None:
        async with (
            running(cert_set, forward=Stopping()) as server,
            await Client.connect(server.mx) as client,
        ):
            await client.greeting_and_ehlo()
            await client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\n")
            await server.stopped.wait()

    with pytest.raises(BaseException) as raised:  # noqa: PT011 - checked below
        await ask()
    error = raised.value
    if isinstance(error, BaseExceptionGroup):
        assert error.subgroup(type(stop)) is not None, error
    else:
        assert error is stop


async def test_closing_the_session_coroutine_in_a_hook_is_not_the_hooks_failure() -> None:
    """A coroutine closed unfinished gets GeneratorExit at its yield: that one goes through."""

    class Suspends:
        def __await__(self) -> Generator[str, None, list[str]]:
            yield "a trap"
            return ["x@example.com"]

    async def lookup(recipient: str) -> list[str]:
        return await Suspends()

    class Session:  # what Session._hook uses of its session
        _end_hook_wait = smtp_recv._session.Session._end_hook_wait
        _wait = trio.CancelScope()
        _waiting = smtp_recv._session._Waiting.NOTHING
        _hook_name = ""
        _hook_timeout_reply = None

    hook = smtp_recv._session.Session._hook
    coroutine = hook(Session(), "Forward hook", 60, replies.TEMPORARY_FAILURE, lookup, "r")  # type: ignore[arg-type]
    assert coroutine.send(None) == "a trap"
    coroutine.close()  # raises if the GeneratorExit is turned into a failure


class WrongAnswers:
    """An Auth and a SenderPolicy that answer with the wrong types, as a slip in code does."""

    ANSWERS: ClassVar[dict[str, object]] = {
        "false": False,  # return password == stored
        "empty": "",
        "zero": 0,
        "true": True,
        "list": ["user@example.com"],
    }

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        local = username.split("@")[0]
        return self.ANSWERS.get(local, username)  # type: ignore[return-value]

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        local = sender.split("@")[0]
        return self.ANSWERS.get(local, True)  # type: ignore[return-value]


async def test_only_a_user_id_logs_in_and_only_a_bool_allows_a_sender(cert_set: CertSet) -> None:
    """A wrong type is the hook's bug: a temporary failure, never a success."""
    hooks = WrongAnswers()
    async with (
        running(cert_set, auth=hooks, sender_policy=hooks) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as user,
    ):
        await user.greeting_and_ehlo()
        for local in WrongAnswers.ANSWERS:
            refused = await user.login(f"{local}@example.com")
            assert (refused.code, refused.enhanced) == (454, "4.7.0"), local
        assert (await user.login()).code == 235
        for local in ("empty", "zero", "list"):
            refused = await user.command(f"MAIL FROM:<{local}@example.com>")
            assert (refused.code, refused.enhanced) == (451, "4.3.0"), local
        # False and True are the policy's answers.
        assert (await user.command("MAIL FROM:<false@example.com>")).code == 553
        assert (await user.command("MAIL FROM:<true@example.com>")).code == 250


class FlakyAuth:
    def __init__(self) -> None:
        self.fail = True

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        if self.fail:
            self.fail = False
            raise OSError("user database unreachable")
        return username


async def test_auth_exception_gives_454_and_connection_continues(cert_set: CertSet) -> None:
    async with (
        running(cert_set, auth=FlakyAuth()) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        failed = await client.login()
        assert (failed.code, failed.enhanced) == (454, "4.7.0")
        assert (await client.login()).code == 235


class DecidingAuth:
    """Refuses some logins with a reply of its own, as the README allows any hook."""

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        if username.startswith("garbled"):
            reject = smtp_recv.Reject(535, "5.7.8", "no")
            reject.text = "no\r\n235 forged"  # past Reject's own check
            raise reject
        if username.startswith("locked"):
            raise smtp_recv.Reject(535, "5.7.8", "Account locked")
        if username.startswith("later"):
            raise smtp_recv.Reject(454, "4.7.0", "Directory busy, try later")
        if username.startswith("banned"):
            raise smtp_recv.Reject(421, "4.7.0", "Go away")
        return username


async def test_auth_reject_gives_exactly_its_reply(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(max_auth_failures=2, auth_failure_delay=1.0)
    tls = cert_set.client_context()
    async with running(cert_set, auth=DecidingAuth(), config=config) as server:
        async with await Client.connect(
            server.submission, tls=tls, server_hostname="mx.example.com"
        ) as client:
            await client.greeting_and_ehlo()
            start = trio.current_time()
            later = await client.login("later@example.com")
            assert str(later) == "454 4.7.0 Directory busy, try later"
            # A temporary refusal is no failed attempt: no delay.
            assert trio.current_time() == start
            locked = await client.login("locked@example.com")
            assert str(locked) == "535 5.7.8 Account locked"
            # A permanent one is, with the delay of a wrong password...
            assert trio.current_time() - start == pytest.approx(1.0, abs=0.01)
            # ... and it counts towards max_auth_failures.
            assert (await client.login("locked@example.com")).code == 535
            assert (await client.reply()).code == 421
            assert await client.closed() == b""
        async with await Client.connect(
            server.submission, tls=tls, server_hostname="mx.example.com"
        ) as client:
            await client.greeting_and_ehlo()
            assert str(await client.login("banned@example.com")) == "421 4.7.0 Go away"
            assert await client.closed() == b""
        async with await Client.connect(
            server.submission, tls=tls, server_hostname="mx.example.com"
        ) as client:
            await client.greeting_and_ehlo()
            # A reply that cannot be sent: the Auth hook's failure reply.
            garbled = await client.login("garbled@example.com")
            assert (garbled.code, garbled.enhanced) == (454, "4.7.0")


async def test_a_temporary_auth_reject_counts_as_an_error(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # A Reject is the hook's decision about this client, unlike its failure.
    config = base_config(hard_error_limit=3, soft_error_limit=10)
    async with (
        running(cert_set, auth=DecidingAuth(), config=config) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        for _ in range(3):
            assert (await client.login("later@example.com")).code == 454
        closing = await client.reply()
        assert (closing.code, closing.enhanced) == (421, "4.7.0")


async def test_our_own_failures_are_not_the_clients_errors(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # A directory that is down fails every lookup (451); the client did
    # nothing wrong and must not be nearer to being cut off for it.
    config = base_config(hard_error_limit=3, soft_error_limit=1, error_delay=5)
    async with (
        running(cert_set, forward=FlakyForward(), config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        start = trio.current_time()
        for _ in range(5):
            assert (await client.command("RCPT TO:<down@example.com>")).code == 451
        assert trio.current_time() == start
        assert (await client.command("RCPT TO:<ok@example.com>")).code == 250
        # The client's own errors still count: the second is delayed, the third ends it.
        assert (await client.command("XYZZY")).code == 500
        assert (await client.command("XYZZY")).code == 500
        assert trio.current_time() - start == pytest.approx(5, abs=0.01)
        assert (await client.command("XYZZY")).code == 500
        assert (await client.reply()).code == 421


class DownAuth:
    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        if username.startswith("slow"):
            await trio.sleep_forever()
        raise ConnectionError("user database unreachable")


async def test_our_own_failures_are_not_the_clients_errors_on_submission_either(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(hard_error_limit=3, soft_error_limit=10, hook_timeout=5)
    async with (
        running(cert_set, auth=DownAuth(), config=config) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        for name in ("down", "slow", "down", "slow"):
            failed = await client.login(f"{name}@example.com")
            assert (failed.code, failed.enhanced) == (454, "4.7.0"), name
        # Three errors of the client's own end the session, not one.
        assert (await client.command("XYZZY")).code == 500
        assert (await client.command("XYZZY")).code == 500
        assert (await client.command("XYZZY")).code == 500
        assert (await client.reply()).code == 421


# -- shutdown ------------------------------------------------------------------------
async def expect_shutting_down(client: Client, *, after_an_answer: bool = False) -> None:
    """The next reply is ``421 4.3.2`` (past a ``250`` with ``after_an_answer``)."""
    reply = await client.reply()
    if after_an_answer and reply.code == 250:
        reply = await client.reply()
    assert (reply.code, reply.enhanced) == (421, "4.3.2")


async def test_shutdown_grace_lets_a_message_in_flight_finish(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer(delay=3)
    config = base_config(shutdown_grace=10)
    async with running(cert_set, config=config, mailer=mailer) as server:
        idle = await Client.connect(server.mx)
        busy = await Client.connect(server.mx)
        async with idle, busy:
            await idle.greeting_and_ehlo()
            await trio.sleep(SHUTDOWN_QUIT_WAIT + 1)
            await send_in_flight(busy, mailer)
            start = trio.current_time()
            server.stop()
            # Sessions idle for a while are told at once.
            await expect_shutting_down(idle)
            assert trio.current_time() == start
            assert await idle.closed() == b""
            # The listeners are closed at once.
            with pytest.raises(OSError, match="all attempts to connect"):
                await trio.open_tcp_stream(*server.mx)
            # The message in flight is acknowledged, then the session ends.
            accepted = await busy.reply()
            assert accepted.code == 250
            assert trio.current_time() - start == pytest.approx(3, abs=0.01)
            closing = await busy.reply()
            assert (closing.code, closing.enhanced) == (421, "4.3.2")
            assert await busy.closed() == b""
            await server.stopped.wait()
            assert trio.current_time() - start < 10
    assert server.cancelled
    assert len(mailer.delivered) == 1


async def test_shutdown_does_not_wait_out_the_grace_for_a_session_that_answers_a_command(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # The command arrives, and shutdown begins, in the same pass of trio's
    # loop: trio then runs the session and serve's shutdown in either order,
    # and the session may be between its answer and its next wait.  It must
    # not then wait out the grace period, only the short wait for a QUIT.
    # Twenty tries: each order comes up.
    for _ in range(20):
        async with running(cert_set, config=base_config(shutdown_grace=10)) as server:
            raw = socket.create_connection(server.mx)
            client = Client(trio.SocketStream(trio.socket.from_stdlib_socket(raw)))
            async with client:
                await client.greeting_and_ehlo()
                await trio.testing.wait_all_tasks_blocked()
                raw.send(b"NOOP\r\n")  # no checkpoint between the two
                server.stop()
                start = trio.current_time()
                # (NOOP may be answered before the shutdown begins.)
                await expect_shutting_down(client, after_an_answer=True)
                assert trio.current_time() - start <= SHUTDOWN_QUIT_WAIT


async def test_shutdown_tells_a_session_half_way_through_a_command_at_once(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # Between transactions half a line is no message in flight.
    async with (
        running(cert_set, config=base_config(shutdown_grace=10)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        # The line began long after the last reply, and is still unfinished.
        await trio.sleep(SHUTDOWN_QUIT_WAIT + 1)
        await client.send(b"NOO")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        server.stop()
        await expect_shutting_down(client)
        assert trio.current_time() == start


@contextlib.asynccontextmanager
async def accepted_as_shutdown_begins(
    cert_set: CertSet,
) -> AsyncIterator[tuple[Running, Client, RecordingMailer]]:
    """A message in flight when shutdown begins, up to its 250: the session
    is then between transactions, and its client has the next word."""
    mailer = RecordingMailer(delay=3)
    async with (
        running(cert_set, config=base_config(shutdown_grace=10), mailer=mailer) as server,
        await Client.connect(server.mx) as busy,
    ):
        await send_in_flight(busy, mailer)
        server.stop()
        assert (await busy.reply()).code == 250
        yield server, busy, mailer


async def test_shutdown_answers_the_quit_that_follows_the_last_250(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # RFC 5321 4.1.1.10: QUIT gets 221.  A 421 there would tell the client
    # that something failed after its message was accepted.
    async with accepted_as_shutdown_begins(cert_set) as (server, busy, mailer):
        await trio.sleep(SHUTDOWN_QUIT_WAIT / 2)  # a round trip, however slow
        closing = await busy.command("QUIT")
        assert (closing.code, closing.enhanced) == (221, "2.0.0")
        assert await busy.closed() == b""
        await server.stopped.wait()
    assert len(mailer.delivered) == 1


@pytest.mark.parametrize("command", ["NOOP", "RSET", "EHLO client.example", "MAIL FROM:<a@b.c>"])
async def test_shutdown_answers_any_other_command_after_the_last_250_with_421(
    cert_set: CertSet, autojump_clock: MockClock, command: str
) -> None:
    async with accepted_as_shutdown_begins(cert_set) as (_, busy, _):
        await busy.send(command.encode() + b"\r\n")
        await expect_shutting_down(busy)
        assert await busy.closed() == b""


async def test_shutdown_waits_for_the_next_command_only_briefly(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    async with accepted_as_shutdown_begins(cert_set) as (server, busy, _):
        answered = trio.current_time()
        await expect_shutting_down(busy)  # the client says nothing
        assert trio.current_time() - answered == pytest.approx(SHUTDOWN_QUIT_WAIT, abs=0.01)
        await server.stopped.wait()
        assert trio.current_time() - answered == pytest.approx(SHUTDOWN_QUIT_WAIT, abs=0.01)


@pytest.mark.parametrize(
    "line",
    [b"QUIT now", b"NOOP\nX", b"\xff\xfe", b"NOOP " + b"x" * 2000],
    ids=["quit-with-argument", "bare-lf", "not-utf8", "too-long"],
)
async def test_shutdown_ends_a_session_at_its_next_line_however_malformed(
    cert_set: CertSet, autojump_clock: MockClock, line: bytes
) -> None:
    # Answered for its form (501, 500), the line would leave the session
    # open, and each reply would start another wait for a QUIT.
    async with (
        running(cert_set, config=base_config(shutdown_grace=30)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await trio.sleep(SHUTDOWN_QUIT_WAIT / 2)
        server.stop()
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await client.send(line + b"\r\n")
        await expect_shutting_down(client)
        await server.stopped.wait()
        assert trio.current_time() == start


async def test_shutdown_cuts_short_a_penalty_between_transactions(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(shutdown_grace=30, soft_error_limit=0, error_delay=10)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.send(b"XYZZY\r\n")
        await trio.sleep(1)  # ten seconds to wait for the 500
        server.stop()
        start = trio.current_time()
        assert (await client.reply()).code == 500
        assert trio.current_time() == start
        assert (await client.command("QUIT")).code == 221
        await server.stopped.wait()


@contextlib.asynccontextmanager
async def penalised(
    cert_set: CertSet, error_delay: float
) -> AsyncIterator[tuple[Running, Client, RecordingMailer]]:
    """A greeted client whose every refused command costs ``error_delay``."""
    config = base_config(shutdown_grace=30, soft_error_limit=0, error_delay=error_delay)
    mailer = RecordingMailer()
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        yield server, client, mailer


async def test_shutdown_lets_a_pipelined_transaction_finish_through_a_penalty(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # RFC 2920: the whole envelope in one write.  The refused recipient
    # costs a delay; shutdown begins during it, in the transaction.
    async with penalised(cert_set, error_delay=3) as (server, client, mailer):
        await trio.sleep(SHUTDOWN_QUIT_WAIT + 1)
        await client.send(
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@elsewhere.org>\r\n"
            b"RCPT TO:<bob@example.com>\r\nDATA\r\n"
        )
        await trio.sleep(0.5)
        server.stop()
        assert [(await client.reply()).code for _ in range(4)] == [250, 550, 250, 354]
        assert (await client.command(b"Subject: x\r\n\r\nbody\r\n.")).code == 250
        assert (await client.command("QUIT")).code == 221
    assert len(mailer.delivered) == 1


async def test_shutdown_lets_a_pipelined_transaction_finish_through_a_slow_lookup(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # Reverse DNS (on by default) runs at DATA, for the Received: header.
    class SlowResolver(trio.abc.HostnameResolver):
        async def getaddrinfo(self, *args: object, **kwargs: object) -> NoReturn:
            raise OSError("not in this test")

        async def getnameinfo(self, sockaddr: object, flags: int) -> tuple[str, str]:
            await trio.sleep(1.5)
            return ("client.example.org", "0")

    config = base_config(shutdown_grace=30, reverse_dns=True, reverse_dns_timeout=2)
    mailer = RecordingMailer()
    async with running(cert_set, config=config, mailer=mailer) as server:
        client = await Client.connect(server.mx)
        trio.socket.set_custom_hostname_resolver(SlowResolver())
        try:
            async with client:
                await client.greeting_and_ehlo()
                await trio.sleep(SHUTDOWN_QUIT_WAIT + 1)
                await client.send(
                    b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                )
                await trio.sleep(0.5)  # during the lookup
                server.stop()
                assert [(await client.reply()).code for _ in range(3)] == [250, 250, 354]
                assert (await client.command(b"Subject: x\r\n\r\nbody\r\n.")).code == 250
        finally:
            trio.socket.set_custom_hostname_resolver(None)
    assert len(mailer.delivered) == 1


async def test_shutdown_leaves_no_deadline_behind_for_a_transaction_that_goes_on(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # Shutdown begins during a penalty, with the rest of the envelope
    # already received: nothing may then time the client out (421 4.4.2).
    async with penalised(cert_set, error_delay=0.6) as (server, client, mailer):
        await client.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@elsewhere.org>\r\n")
        await trio.sleep(0.05)
        await client.send(b"RCPT TO:<y@elsewhere.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        await trio.sleep(0.25)
        server.stop()
        assert [(await client.reply()).code for _ in range(5)] == [250, 550, 550, 250, 354]
        assert (await client.command(b"Subject: x\r\n\r\nbody\r\n.")).code == 250
    assert len(mailer.delivered) == 1


async def test_shutdown_counts_the_wait_for_quit_from_the_last_reply(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # "QU" came with the end of the data, "IT" after the 250: the wait for
    # it began with the 250, not when the session last waited for a line.
    mailer = RecordingMailer(delay=3)
    async with (
        running(cert_set, config=base_config(shutdown_grace=10), mailer=mailer) as server,
        await Client.connect(server.mx) as busy,
    ):
        await busy.greeting_and_ehlo()
        await trio.sleep(SHUTDOWN_QUIT_WAIT + 1)
        await busy.send(ENVELOPE)
        assert [(await busy.reply()).code for _ in range(3)] == [250, 250, 354]
        await busy.send(b"Subject: x\r\n\r\nin flight\r\n.\r\nQU")
        await mailer.entered.wait()
        server.stop()
        assert (await busy.reply()).code == 250
        assert await busy.silent_for(SHUTDOWN_QUIT_WAIT / 2)
        assert (await busy.command("IT")).code == 221


async def submission_client(server: Running, cert_set: CertSet) -> Client:
    client = await Client.connect(
        server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
    )
    await client.greeting_and_ehlo()
    return client


async def test_shutdown_cuts_short_the_delay_after_a_wrong_password(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(shutdown_grace=30, auth_failure_delay=20)
    async with (
        running(cert_set, config=config) as server,
        await submission_client(server, cert_set) as client,
    ):
        await client.send(b"AUTH PLAIN " + base64.b64encode(b"\0user@example.com\0no") + b"\r\n")
        await trio.sleep(1)
        server.stop()
        start = trio.current_time()
        assert (await client.reply()).code == 535
        assert trio.current_time() == start
        await client.send(b"NOOP\r\n")
        await expect_shutting_down(client)


async def test_shutdown_does_not_wait_for_a_client_silent_in_an_auth_exchange(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    async with (
        running(cert_set, config=base_config(shutdown_grace=30)) as server,
        await submission_client(server, cert_set) as client,
    ):
        assert (await client.command("AUTH LOGIN")).code == 334
        answered = trio.current_time()
        server.stop()
        await expect_shutting_down(client)
        assert trio.current_time() - answered == pytest.approx(SHUTDOWN_QUIT_WAIT, abs=0.01)


async def test_shutdown_does_not_wait_for_a_refused_chunk_outside_a_transaction(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    async with (
        running(cert_set, config=base_config(shutdown_grace=30)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.send(b"BDAT 10000000\r\n" + b"x" * 2048)  # no MAIL: refused, drained
        await trio.sleep(1)
        server.stop()
        start = trio.current_time()
        await expect_shutting_down(client)  # without another byte from the client
        assert trio.current_time() - start <= SHUTDOWN_QUIT_WAIT
        await client.send(b"x" * 2048)


async def test_shutdown_does_not_wait_out_a_stalled_tls_handshake(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(shutdown_grace=30, tls_handshake_timeout=20)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("STARTTLS")).code == 220
        server.stop()
        start = trio.current_time()
        assert await client.closed() == b""
        assert trio.current_time() - start <= SHUTDOWN_QUIT_WAIT


async def test_shutdown_after_starttls_ends_the_session_at_its_first_command(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    async with (
        running(cert_set, config=base_config(shutdown_grace=10)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("STARTTLS")).code == 220
        server.stop()  # during the handshake
        stream = trio.SSLStream(
            client.stream, cert_set.client_context(), server_hostname="mx.example.com"
        )
        await stream.do_handshake()
        client.stream = stream
        await client.send(b"EHLO client.example\r\n")
        await expect_shutting_down(client)
        assert await client.closed() == b""


async def test_shutdown_refuses_a_transaction_pipelined_after_the_one_in_flight(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer(delay=3)
    config = base_config(shutdown_grace=10)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as busy,
    ):
        # RFC 2920: the next envelope may follow the end of the data at once.
        await send_in_flight(busy, mailer, after=ENVELOPE)
        server.stop()
        assert (await busy.reply()).code == 250
        await expect_shutting_down(busy)
        assert await busy.closed() == b""
    assert len(mailer.delivered) == 1


async def test_shutdown_grace_cuts_off_a_mailer_slower_than_it(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer(delay=100)
    config = base_config(shutdown_grace=2)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as busy,
    ):
        await send_in_flight(busy, mailer)
        start = trio.current_time()
        server.stop()
        # No 250: the client keeps the message and tries again later.
        await expect_shutting_down(busy)
        assert trio.current_time() - start == pytest.approx(2, abs=0.01)
        assert await busy.closed() == b""
        await server.stopped.wait()
        assert trio.current_time() - start == pytest.approx(2, abs=0.01)
    # serve ended by the cancellation, which reached the Mailer too.
    assert server.cancelled
    assert mailer.cancelled
    assert mailer.delivered == []


async def test_shutdown_refuses_sessions_still_in_greeting_delay(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(greeting_delay=2, shutdown_grace=10)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await trio.sleep(1)
        server.stop()
        await expect_shutting_down(client)
        await server.stopped.wait()


def test_a_certificate_takes_str_or_path_and_holds_paths() -> None:
    from pathlib import Path

    named = smtp_recv.Certificate("chain.pem", "key.pem")
    assert (named.certfile, named.keyfile) == (Path("chain.pem"), Path("key.pem"))
    # One file, one certificate: its TLS context is made once.
    assert named == smtp_recv.Certificate(Path("chain.pem"), Path("key.pem"))
    assert smtp_recv.Certificate("both.pem").keyfile is None
