"""smtp_recv.testing (serve_for_tests, ThreadedTestServer) and smtp_recv.pytest_plugin."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing

from smtp_recv import Mail
from smtp_recv.testing import (
    MemoryMailer,
    TestServer,
    ThreadedTestServer,
    config_for_tests,
    serve_for_tests,
)

BODY = b"Subject: threaded\r\n\r\nHello from a thread.\r\n"


def test_threaded_test_server_receives_from_smtplib_on_both_listeners() -> None:
    with ThreadedTestServer() as server:
        with smtplib.SMTP(*server.mx, timeout=10) as smtp:
            smtp.sendmail("a@example.org", ["bob@example.com"], BODY)
        mail = server.mailer.wait_for_message_blocking()
        assert mail.sender == "a@example.org"
        assert mail.data.endswith(BODY)
        with smtplib.SMTP_SSL(
            *server.submission, context=server.client_context(), timeout=10
        ) as smtp:
            smtp.login("user@example.com", "password")
            smtp.sendmail("user@example.com", ["x@elsewhere.net"], BODY)
        submitted = server.mailer.wait_for_message_blocking(2)
        assert submitted.username == "user@example.com"
        address = server.mx
    # Stopped on exit: nothing listens any more.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(address, timeout=5):
        pass


def test_threaded_test_server_wait_times_out() -> None:
    with ThreadedTestServer() as server, pytest.raises(TimeoutError, match="0 of 1"):
        server.mailer.wait_for_message_blocking(timeout=0.05)


async def test_wait_for_message_gives_up_after_its_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with serve_for_tests() as server:
        start = trio.current_time()
        with pytest.raises(TimeoutError, match="0 of 1"):
            await server.mailer.wait_for_message()
        assert trio.current_time() - start == pytest.approx(10)


async def test_a_trio_test_may_wait_on_the_threaded_server() -> None:
    # The server's trio run is in its thread; the test's is another.
    def send() -> None:
        with smtplib.SMTP(*server.mx, timeout=10) as smtp:
            smtp.sendmail("a@example.org", ["bob@example.com"], BODY)

    with ThreadedTestServer() as server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, send)
            mail = await server.mailer.wait_for_message()
        assert mail.sender == "a@example.org"


async def test_config_for_tests_changes_a_limit_and_keeps_the_test_settings() -> None:
    config = config_for_tests(max_message_size=2000)
    assert (config.reverse_dns, config.shutdown_grace) == (False, 0.5)
    async with serve_for_tests(config=config) as server:
        assert server.config.max_message_size == 2000
        assert not server.config.reverse_dns


def test_smtp_server_thread_fixture(smtp_server_thread: TestServer[MemoryMailer]) -> None:
    with smtplib.SMTP(*smtp_server_thread.mx, timeout=10) as smtp:
        refused = smtp.sendmail("a@example.org", ["bob@example.com", "x@nowhere.org"], BODY)
    assert list(refused) == ["x@nowhere.org"]
    mail = smtp_server_thread.mailer.wait_for_message_blocking()
    assert [r.address for r in mail.recipients] == ["bob@example.com"]


async def test_smtp_server_fixture(smtp_server: TestServer[MemoryMailer]) -> None:
    def send() -> None:
        with smtplib.SMTP(*smtp_server.mx, timeout=10) as smtp:
            smtp.starttls(context=smtp_server.client_context())
            smtp.sendmail("a@example.org", ["bob@example.com"], BODY)

    await trio.to_thread.run_sync(send)
    with trio.fail_after(10):
        mail = await smtp_server.mailer.wait_for_message()
    assert mail.tls is not None
    assert smtp_server.config.hostname == "mx.example.com"


async def test_serve_for_tests_lets_the_body_exception_through_unwrapped() -> None:
    with pytest.raises(KeyError, match="raised in the body"):
        async with serve_for_tests():
            raise KeyError("raised in the body")


async def test_a_test_that_ends_mid_message_is_not_held_up_by_the_grace_period(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with serve_for_tests() as server:
        stream = await trio.open_tcp_stream(*server.mx)
        await stream.send_all(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
        await stream.send_all(b"RCPT TO:<bob@example.com>\r\nDATA\r\nhalf a mess")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
    assert trio.current_time() - start <= 0.5
    await stream.aclose()


async def test_serve_for_tests_can_disable_a_listener() -> None:
    from smtp_recv import ListenerConfig, ServerConfig

    config = ServerConfig(
        hostname="mx.example.com",
        reverse_dns=False,
        submission=ListenerConfig(port=0, enabled=False),
    )
    async with serve_for_tests(config=config) as server:
        assert server.submission == ("", 0)
        assert server.mx[1] != 0


def test_pytest_plugin_loads_with_dash_p(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            import smtplib
            import trio

            MESSAGE = b"Subject: x\\r\\n\\r\\nx\\r\\n"

            def test_thread(smtp_server_thread):
                server = smtp_server_thread
                with smtplib.SMTP(*server.mx, timeout=10) as smtp:
                    smtp.sendmail("a@example.org", ["b@example.com"], MESSAGE)
                assert server.mailer.wait_for_message_blocking().sender == "a@example.org"

            async def test_trio(smtp_server):
                def send():
                    with smtplib.SMTP(*smtp_server.mx, timeout=10) as smtp:
                        smtp.sendmail("c@example.org", ["b@example.com"], MESSAGE)
                await trio.to_thread.run_sync(send)
                with trio.fail_after(10):
                    assert (await smtp_server.mailer.wait_for_message()).sender == "c@example.org"
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "smtp_recv.pytest_plugin",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


async def test_the_test_servers_sender_policy_is_the_built_in_servers() -> None:
    from smtp_recv.testing import PasswordTable

    table = PasswordTable({})
    assert await table.may_send_as("u", "bob@ex\u00e4mple.com", "BOB@xn--exmple-cua.com")
    assert not await table.may_send_as("u", "stra\u00dfe@example.com", "STRASSE@example.com")


def test_a_threaded_test_server_entered_twice_at_once_is_refused() -> None:
    """A second server on the same instance would leave the first running, unowned."""
    threaded = ThreadedTestServer()
    with threaded as server:
        with pytest.raises(RuntimeError, match="already running"), threaded:
            pass
        with smtplib.SMTP(*server.mx, timeout=10) as smtp:
            assert smtp.noop()[0] == 250
    with pytest.raises(OSError):  # noqa: PT011 - refused or reset, by platform
        socket.create_connection(server.mx, timeout=5).close()
    # One after another is fine.
    with threaded as again, smtplib.SMTP(*again.mx, timeout=10) as smtp:
        assert smtp.noop()[0] == 250


class ExitingMailer(MemoryMailer):
    async def forward(self, mail: Mail) -> None:
        raise SystemExit(3)


def test_a_threaded_test_server_that_dies_says_so_when_the_test_leaves_it() -> None:
    """README: SystemExit from a hook ends the server; here it reaches the test."""
    with (
        pytest.raises(BaseException) as raised,  # noqa: PT011 - checked below
        ThreadedTestServer(mailer=ExitingMailer()) as server,
        smtplib.SMTP(*server.mx, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPServerDisconnected),
    ):
        smtp.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
    error = raised.value
    # From inside serve's nurseries it may come in an exception group.
    if isinstance(error, BaseExceptionGroup):
        exits = error.subgroup(SystemExit)
        assert exits is not None, error
        error = exits.exceptions[0]
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
    assert isinstance(error, SystemExit)
    assert error.code == 3


def test_a_threaded_test_server_that_failed_to_start_may_be_started_again() -> None:
    threaded = ThreadedTestServer(hostnames=["not a host name"])  # refused by trustme
    with pytest.raises(ValueError), threaded:  # noqa: PT011 - trustme's own message
        pass
    threaded._options["hostnames"] = ["localhost"]
    with threaded as server, smtplib.SMTP(*server.mx, timeout=10) as smtp:
        assert smtp.noop()[0] == 250
