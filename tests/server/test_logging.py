"""What the server logs: a line per connection and per message; never a password;
client text escaped."""

from __future__ import annotations

import base64
import logging
import re

import pytest

from .conftest import PASSWORD, CertSet, Client, base_config, running


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
    assert any(m.endswith(" EHLO ?vil?script??x?") for m in messages), messages
    assert not any("évil" in m or "<script>" in m for m in messages)
    assert any("failed for evil??2024?smtp_recv.session?INFO?forged?line" in m for m in messages)
    assert not any("\r" in m or "\n" in m for m in messages)
