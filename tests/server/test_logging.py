"""What the server logs: a line per connection and per message; never a password;
client text escaped."""

from __future__ import annotations

import base64
import logging
import re

import pytest
import trio
import trio.testing

from smtp_recv import Mail, UserMail
from smtp_recv._trace import loggable

from .conftest import (
    PASSWORD,
    CertSet,
    Client,
    RecordingMailer,
    base_config,
    running,
    send_in_flight,
)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record's message, arguments and traceback, as one text."""
    parts = []
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    return "\n".join(parts) + caplog.text


async def test_logs_connection_open_close_and_each_message(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smtp_recv")
    async with running(cert_set) as server, await Client.connect(server.mx) as client:
        port = client.stream.socket.getsockname()[1]  # type: ignore[attr-defined]
        await client.greeting_and_ehlo()
        accepted = await client.send_message("a@b.example", ["bob@example.com"])
        bounce = await client.send_message("", ["bob@example.com"])
        assert (await client.command("QUIT")).code == 221
        assert await client.closed() == b""
    session_lines = [r.getMessage() for r in caplog.records if r.name == "smtp_recv.session"]
    message_id = accepted.text.rsplit(" ", 1)[1]
    (connect,) = [line for line in session_lines if " connect " in line]
    session_id = connect.split(" ")[0]
    assert connect == f"{session_id} connect mx [127.0.0.1]:{port}"
    assert f"{session_id} disconnect" in session_lines
    message, bounced = [line for line in session_lines if " message " in line]
    assert re.fullmatch(
        rf"{session_id} message {message_id} from=<a@b\.example> rcpts=1 size=\d+ result=250",
        message,
    ), message
    # The null path as it was sent, so that bounces can be found.
    bounce_id = bounce.text.rsplit(" ", 1)[1]
    assert re.fullmatch(
        rf"{session_id} message {bounce_id} from=<> rcpts=1 size=\d+ result=250", bounced
    ), bounced
    assert session_lines.index(connect) < session_lines.index(message)
    assert session_lines.index(message) < session_lines.index(f"{session_id} disconnect")


async def test_auth_password_never_appears_in_any_log_record(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plain = base64.b64encode(f"\0user@example.com\0{PASSWORD}".encode()).decode()
    wrong = "Wr0ng-but-also-very-distinctive"
    wrong_plain = base64.b64encode(f"\0user@example.com\0{wrong}".encode()).decode()
    config = base_config(auth_failure_delay=0.01)
    async with running(cert_set, config=config) as server:
        for mechanism in ("PLAIN", "LOGIN"):
            async with await Client.connect(
                server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
            ) as client:
                await client.greeting_and_ehlo()
                if mechanism == "PLAIN":
                    assert (await client.command(f"AUTH PLAIN {wrong_plain}")).code == 535
                    assert (await client.command(f"AUTH PLAIN {plain}")).code == 235
                else:
                    for password, code in ((wrong, 535), (PASSWORD, 235)):
                        assert (await client.command("AUTH LOGIN")).code == 334
                        user = base64.b64encode(b"user@example.com").decode()
                        assert (await client.command(user)).code == 334
                        secret = base64.b64encode(password.encode()).decode()
                        assert (await client.command(secret)).code == code
    logged = everything_logged(caplog)
    assert "AUTH" in logged  # the attempts are logged, just not their secrets
    for secret in (PASSWORD, wrong, plain, wrong_plain):
        assert secret not in logged
    for password in (PASSWORD, wrong):
        assert base64.b64encode(password.encode()).decode() not in logged


async def test_client_text_is_escaped_in_logs(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtp_recv")
    forged_user = "evil\r\n2024 smtp_recv.session INFO forged line"
    token = base64.b64encode(f"\0{forged_user}\0x".encode()).decode()
    config = base_config(auth_failure_delay=0.01)
    async with running(cert_set, config=config) as server:
        async with await Client.connect(server.mx) as client:
            await client.reply()
            assert (await client.command('EHLO évil<script>"x"')).code == 250
        async with await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client:
            await client.greeting_and_ehlo()
            assert (await client.command(f"AUTH PLAIN {token}")).code == 535
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("smtp_recv")]
    # As Python escapes: one ASCII word, and nothing of the text is lost.
    assert any(m.endswith(r" EHLO \xe9vil\x3cscript\x3e\x22x\x22") for m in messages), messages
    assert not any("évil" in m or "<script>" in m for m in messages)
    forged = r"failed for evil\x0d\x0a2024\x20smtp_recv.session\x20INFO\x20forged\x20line"
    assert any(forged in m for m in messages)
    assert not any("\r" in m or "\n" in m for m in messages)


def test_logged_client_text_tells_apart_what_it_names() -> None:
    """Two logins that differ only outside ASCII (or by a backslash) never log alike."""
    names = [
        "jörg@example.com",
        "jürg@example.com",
        "j?rg@example.com",
        r"j\xf6rg@example.com",
        "?",
        "",
    ]
    logged = [loggable(name) for name in names]
    assert len(set(logged)) == len(names)
    assert all(line.isascii() and line.isprintable() and " " not in line for line in logged)


def message_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "smtp_recv.session" and " message " in r.getMessage()
    ]


async def test_a_message_cut_off_by_its_deadline_or_the_shutdown_is_logged_with_its_reply(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO, logger="smtp_recv")
    mailer = RecordingMailer(delay=100)
    config = base_config(mailer_timeout=10, shutdown_grace=2)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 451
        await client.send(b"MAIL FROM:<c@d.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        assert [(await client.reply()).code for _ in range(3)] == [250, 250, 354]
        await client.send(b"Subject: t\r\n\r\nhi\r\n.\r\n")
        await trio.sleep(1)  # in the Mailer
        server.stop()
        assert (await client.reply()).code == 421
    timed_out, cut_off = message_lines(caplog)
    assert re.search(
        r" message \S+ from=<a@b\.example> rcpts=1 size=\d+ result=451 \(timeout\)$", timed_out
    )
    assert re.search(
        r" message \S+ from=<c@d\.example> rcpts=1 size=\d+ result=421 \(shutdown\)$", cut_off
    )


@pytest.mark.parametrize("shutdown", [False, True], ids=["serving", "in-shutdown-grace"])
async def test_a_mailer_cut_off_by_the_session_time_limit_is_logged_so(
    cert_set: CertSet,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
    shutdown: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="smtp_recv")
    mailer = RecordingMailer(delay=100)
    config = base_config(mailer_timeout=50, session_timeout=10, shutdown_grace=30)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await send_in_flight(client, mailer)
        if shutdown:
            server.stop()  # its grace outlasts the session's limit
        answer = await client.reply()
        assert (answer.code, answer.enhanced) == (421, "4.4.2")
    (cut_off,) = message_lines(caplog)
    assert re.search(r" result=421 \(session time limit\)$", cut_off), cut_off


class SlowToStop:
    """A Mailer whose cleanup, once cancelled, outlasts the session's time limit."""

    def __init__(self) -> None:
        self.entered = trio.Event()

    async def forward(self, mail: Mail) -> None:
        self.entered.set()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(20)

    async def send(self, mail: UserMail) -> None:
        raise AssertionError("MX only")


async def test_the_cause_logged_is_the_reply_the_client_gets(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """The grace ends first; the session's limit passes in the Mailer's cleanup."""
    caplog.set_level(logging.INFO, logger="smtp_recv")
    mailer = SlowToStop()
    config = base_config(session_timeout=10, shutdown_grace=5, mailer_timeout=100)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await send_in_flight(client, mailer)
        server.stop()
        answer = await client.reply()
        assert (answer.code, answer.enhanced) == (421, "4.3.2")
    (cut_off,) = message_lines(caplog)
    assert cut_off.endswith(" result=421 (shutdown)"), cut_off


async def test_a_message_the_client_never_finished_is_logged_as_dropped(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smtp_recv")
    async with running(cert_set) as server, await Client.connect(server.mx) as client:
        await client.greeting_and_ehlo()
        await client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        assert [(await client.reply()).code for _ in range(3)] == [250, 250, 354]
        await client.send(b"Subject: half\r\n\r\nonly half\r\n")
    # (The server has stopped, its sessions with it.)
    (dropped,) = message_lines(caplog)
    assert re.search(r" message \S+ dropped: the session ended before it did$", dropped)
