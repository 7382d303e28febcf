"""SECURITY-CASES.md section 3: STARTTLS (CVE-2011-0411, aiosmtpd CVE-2024-34083).

Whatever a client pipelines after STARTTLS was sent in plaintext, where a
man in the middle could have put it: it is thrown away, never answered
inside TLS or out.  After the handshake the session starts over, and the
server says nothing until the client speaks.
"""

from __future__ import annotations

import re

import pytest

from .harness import Client, Harness, Row, params, prelude, run_row, running, start_tls

rows = [
    Row(
        name="starttls-with-argument",
        listener="mx",
        prelude="greet",
        send=b"STARTTLS x\r\n",
        expect=("501 5.5.4",),
    ),
    Row(
        name="starttls-before-ehlo",
        listener="mx",
        prelude="banner",
        send=b"STARTTLS\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="starttls-after-helo",
        listener="mx",
        prelude="banner",
        send=b"HELO c\r\nSTARTTLS\r\n",
        expect=("250", "503 5.5.1"),
    ),
    Row(
        name="starttls-in-transaction",
        listener="mx",
        prelude="envelope",
        send=b"STARTTLS\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="starttls-twice",
        listener="mx",
        prelude="starttls",
        send=b"STARTTLS\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="starttls-on-implicit-tls",
        listener="submission",
        prelude="greet",
        send=b"STARTTLS\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="mail-after-tls-before-ehlo-is-fresh-session",
        listener="mx",
        prelude="starttls",
        send=b"RSET\r\nRCPT TO:<b@our.example>\r\n",
        expect=("250 2.0.0", "503 5.5.1"),
    ),
]


@pytest.mark.parametrize("row", params(rows))
async def test_starttls(row: Row) -> None:
    await run_row(row)


INJECTIONS = {
    "ehlo": b"EHLO injected\r\n",
    "mail": b"MAIL FROM:<ceo@our.example>\r\n",
    "envelope": b"EHLO injected\r\nMAIL FROM:<ceo@our.example>\r\nRCPT TO:<b@our.example>\r\n",
    "quit": b"QUIT\r\n",
    "noop": b"NOOP\r\n",
    "partial-line": b"EHL",
    "auth": b"AUTH PLAIN AHVzZXJAb3VyLmV4YW1wbGUAcGFzc3dvcmQ=\r\n",
    "lf-only-line": b"NOOP\n",
}


async def _greeted_on_tls(harness: Harness, injected: bytes) -> Client:
    client = await prelude(harness.server, "mx", "greet")
    await client.send(b"STARTTLS\r\n" + injected)
    await client.expect("220 2.0.0")
    # Nothing else came in plaintext: the injected command got no answer.
    await client.quiet(0.05)
    await start_tls(client, harness.server.client_context())
    return client


@pytest.mark.parametrize("injected", INJECTIONS.values(), ids=INJECTIONS.keys())
async def test_injection_after_starttls_is_discarded(injected: bytes) -> None:
    async with running() as harness:
        client = await _greeted_on_tls(harness, injected)
        try:
            # After the handshake the server says nothing until we speak.
            await client.quiet()
            # A fresh session: the injected EHLO or MAIL never happened.
            await client.command("MAIL FROM:<a@victim.example>", "503 5.5.1")
            ehlo = await client.command("EHLO client.example", "250")
            assert not any(line.startswith("STARTTLS") for line in ehlo.lines)
            assert not any(line.startswith("AUTH") for line in ehlo.lines)
            await client.command("MAIL FROM:<a@victim.example>", "250 2.1.0")
            await client.command("RCPT TO:<b@our.example>", "250 2.1.5")
            await client.command("DATA", "354")
            await client.send(b"x\r\n.\r\n")
            await client.expect("250 2.0.0")
            await client.quiet()
        finally:
            await client.aclose()
        assert harness.forward.lookups == ["b@our.example"]
        assert [mail.sender for mail in harness.mailer.messages] == ["a@victim.example"]


async def test_envelope_before_starttls_is_gone() -> None:
    async with running() as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            # STARTTLS is only allowed outside a transaction (RFC 3207 4.2).
            await client.command("MAIL FROM:<a@victim.example>", "250 2.1.0")
            await client.command("STARTTLS", "503 5.5.1")
            await client.command("RSET", "250 2.0.0")
            await client.command("STARTTLS", "220 2.0.0")
            await start_tls(client, harness.server.client_context())
            await client.command("EHLO client.example", "250")
            await client.command("RCPT TO:<b@our.example>", "503 5.5.1")
            await client.command("DATA", "503 5.5.1")
        finally:
            await client.aclose()


NOT_A_CLIENT_HELLO = {
    "ehlo": b"EHLO client.example\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "broken-hello": b"\x16\x03\x01\x00\x05hello",
    "zeros": b"\x00" * 100,
    "ssl2-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x00" * 37,
}
_SMTP_REPLY = re.compile(rb"(?m)^[2-5][0-9][0-9][ -]")


@pytest.mark.parametrize("garbage", NOT_A_CLIENT_HELLO.values(), ids=NOT_A_CLIENT_HELLO.keys())
async def test_garbage_instead_of_client_hello(garbage: bytes) -> None:
    """The handshake fails, the connection closes, no plaintext fallback."""
    async with running() as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.command("STARTTLS", "220 2.0.0")
            await client.send(garbage)
            rest = await client.closed()
        finally:
            await client.aclose()
        # At most a TLS alert; never an SMTP reply.
        assert not _SMTP_REPLY.search(rest), rest
        # The listener still serves others.
        other = await prelude(harness.server, "mx", "starttls")
        await other.command("QUIT", "221")
        await other.aclose()


async def test_ehlo_after_tls_does_not_offer_starttls() -> None:
    async with running() as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.command("STARTTLS", "220 2.0.0")
            await start_tls(client, harness.server.client_context())
            for _ in range(2):
                ehlo = await client.command("EHLO client.example", "250")
                assert "STARTTLS" not in ehlo.lines
        finally:
            await client.aclose()


# Fixed in 51bc552 (found by this suite): the TLS session used to start with
# a fresh error count, doubling the hard limit for a client that STARTTLSes.
async def test_errors_before_starttls_still_count() -> None:
    async with running(hard_error_limit=3) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.command("XYZZY", "500 5.5.2")
            await client.command("XYZZY", "500 5.5.2")
            await client.command("STARTTLS", "220 2.0.0")
            await start_tls(client, harness.server.client_context())
            await client.command("EHLO client.example", "250")
            # The third error of the connection reaches the hard limit.
            await client.command("XYZZY", "500 5.5.2")
            await client.expect("421 4.7.0")
        finally:
            await client.aclose()
