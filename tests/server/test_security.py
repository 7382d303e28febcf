"""STARTTLS injection, AUTH only where it belongs, implicit TLS, sender ownership."""

from __future__ import annotations

import re

import pytest
import trio

import smtp_recv

from .conftest import CertSet, Client, RecordingMailer, base_config, running


def no_smtp_bytes(data: bytes) -> bool:
    """Nothing that reads as an SMTP reply (a TLS alert is fine)."""
    return re.search(rb"(^|\n)\d{3}[ -]", data) is None and b"SMTP" not in data


@pytest.mark.parametrize(
    "injected", [b"MAIL FROM:<a@b.example>\r\n", b"EHLO injected.example\r\n"], ids=["mail", "ehlo"]
)
async def test_starttls_discards_pipelined_commands(
    cert_set: CertSet, autojump_clock: trio.testing.MockClock, injected: bytes
) -> None:
    async with running(cert_set) as server, await Client.connect(server.mx) as client:
        await client.greeting_and_ehlo()
        await client.send(b"STARTTLS\r\n" + injected)
        answer = await client.reply()
        assert answer.code == 220
        assert not client.buffer, "nothing may follow the 220 in plaintext"
        ssl_stream = trio.SSLStream(
            client.stream, cert_set.client_context(), server_hostname="mx.example.com"
        )
        await ssl_stream.do_handshake()
        client.stream = ssl_stream
        # The injected command is never answered, inside TLS or out.
        assert await client.silent_for(30)
        # The session started over: no EHLO yet, so MAIL is out of sequence.
        answer = await client.command("MAIL FROM:<a@b.example>")
        assert answer.code == 503
        ehlo = await client.command("EHLO client.example.org")
        assert ehlo.code == 250
        assert "STARTTLS" not in ehlo.lines
        assert (await client.command("STARTTLS")).code == 503


async def test_starttls_inside_a_transaction_is_refused(cert_set: CertSet) -> None:
    async with running(cert_set) as server, await Client.connect(server.mx) as client:
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        assert (await client.command("RCPT TO:<bob@example.com>")).code == 250
        assert (await client.command("STARTTLS")).code == 503
        assert (await client.command("RSET")).code == 250
        await client.starttls(cert_set.client_context(), "mx.example.com")
        await client.command("EHLO client.example.org")
        # Nothing of the old envelope survived the upgrade.
        assert (await client.command("DATA")).code == 503


async def test_garbage_instead_of_client_hello_after_starttls_closes(cert_set: CertSet) -> None:
    async with running(cert_set) as server, await Client.connect(server.mx) as client:
        await client.greeting_and_ehlo()
        assert (await client.command("STARTTLS")).code == 220
        await client.send(b"EHLO plaintext.example\r\nMAIL FROM:<a@b.example>\r\n")
        assert no_smtp_bytes(await client.closed())


async def test_auth_on_mx_is_refused_before_and_after_tls(cert_set: CertSet) -> None:
    async with running(cert_set) as server, await Client.connect(server.mx) as client:
        ehlo = await client.greeting_and_ehlo()
        assert not any(line.startswith("AUTH") for line in ehlo.lines)
        for _ in range(2):
            plain = await client.login()
            assert 500 <= plain.code < 600, plain
            login = await client.command("AUTH LOGIN")
            assert 500 <= login.code < 600, login
            if client.stream.__class__ is trio.SSLStream:
                break
            await client.starttls(cert_set.client_context(), "mx.example.com")
            ehlo = await client.command("EHLO client.example.org")
            assert not any(line.startswith("AUTH") for line in ehlo.lines)
        # Still refused, never 334 or 235, and MAIL needs no AUTH here.
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250


@pytest.mark.parametrize(
    "plaintext",
    [b"EHLO plain.example\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05junk!"],
    ids=["ehlo", "http", "broken-hello"],
)
async def test_plaintext_on_submission_gets_no_smtp_byte(
    cert_set: CertSet, plaintext: bytes
) -> None:
    async with running(cert_set) as server:
        async with await Client.connect(server.submission) as client:
            await client.send(plaintext)
            assert no_smtp_bytes(await client.closed())
        # The listener goes on serving TLS clients.
        async with await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client:
            assert (await client.reply()).code == 220


async def test_mail_before_auth_on_submission_gets_530(cert_set: CertSet) -> None:
    async with (
        running(cert_set) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        for command in ("MAIL FROM:<user@example.com>", "RCPT TO:<x@example.net>", "DATA"):
            answer = await client.command(command)
            assert (answer.code, answer.enhanced) == (530, "5.7.0"), command


async def test_sender_not_owned_by_user_gets_553(cert_set: CertSet) -> None:
    async with (
        running(cert_set) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.login()).code == 235
        refused = await client.command("MAIL FROM:<ceo@example.com>")
        assert (refused.code, refused.enhanced) == (553, "5.7.1")
        assert (await client.command("MAIL FROM:<>")).code == 553
        # The login name itself, in any case, is the user's.
        assert (await client.command("MAIL FROM:<User@Example.COM>")).code == 250


class AliasPolicy:
    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return sender in (username, "sales@example.com")


async def test_custom_sender_policy_allows_an_alias(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer, sender_policy=AliasPolicy()) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.login()).code == 235
        assert (await client.command("MAIL FROM:<ceo@example.com>")).code == 553
        answer = await client.send_message("sales@example.com", ["x@elsewhere.net"])
        assert answer.code == 250
    assert [d.mail.sender for d in mailer.delivered] == ["sales@example.com"]


class ExplodingPolicy:
    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        if sender.startswith("blocked"):
            raise smtp_recv.Reject(550, "5.7.1", "This sender is blocked")
        raise RuntimeError("policy store down")


async def test_sender_policy_failure_is_451_and_reject_is_its_reply(cert_set: CertSet) -> None:
    async with (
        running(cert_set, sender_policy=ExplodingPolicy()) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.login()).code == 235
        failed = await client.command("MAIL FROM:<user@example.com>")
        assert (failed.code, failed.enhanced) == (451, "4.3.0")
        rejected = await client.command("MAIL FROM:<blocked@example.com>")
        assert str(rejected) == "550 5.7.1 This sender is blocked"


@pytest.mark.parametrize("where", ["implicit-tls", "after-starttls"])
async def test_no_plaintext_reply_in_the_middle_of_a_tls_handshake(
    cert_set: CertSet, autojump_clock: trio.testing.MockClock, where: str
) -> None:
    # A session cut off (here by the end of the shutdown grace period) while
    # its handshake is under way must not write "421 ..." in plaintext where
    # the client expects TLS records.
    config = base_config(shutdown_grace=2, tls_handshake_timeout=25)
    async with running(cert_set, config=config) as server:
        if where == "implicit-tls":
            client = await Client.connect(server.submission)
        else:
            client = await Client.connect(server.mx)
            await client.greeting_and_ehlo()
            assert (await client.command("STARTTLS")).code == 220
        async with client:
            await trio.sleep(1)
            server.stop()
            assert no_smtp_bytes(await client.closed())
            await server.stopped.wait()
