"""SECURITY-CASES.md section 5: AUTH on the submission listener.

Submission guards the users' right to send: nothing of a transaction before
a successful AUTH, strict SASL decoding, failures that all look and take
the same, growing delays and a per-address limit, and a sender that must
belong to the user.  The time rows use ``autojump_clock`` with the default
delays.
"""

from __future__ import annotations

import base64
import logging

import pytest
import trio

from smtp_recv import ServerConfig

from .harness import FAST, PLAIN, USER, Client, Row, params, prelude, run_row, running


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


WRONG_PASSWORD = b64(f"\x00{USER}\x00wrong")
UNKNOWN_USER = b64("\x00nobody@our.example\x00password")

rows = [
    # Nothing of a transaction before AUTH.
    Row(
        name="mail-before-auth",
        listener="submission",
        prelude="greet",
        send=b"MAIL FROM:<user@our.example>\r\n",
        expect=("530 5.7.0",),
    ),
    Row(
        name="rcpt-before-auth",
        listener="submission",
        prelude="greet",
        send=b"RCPT TO:<x@victim.example>\r\n",
        expect=("530 5.7.0",),
    ),
    Row(
        name="data-before-auth",
        listener="submission",
        prelude="greet",
        send=b"DATA\r\n",
        expect=("530 5.7.0",),
    ),
    Row(
        name="bdat-before-auth",
        listener="submission",
        prelude="greet",
        send=b"BDAT 29 LAST\r\nMAIL FROM:<ceo@our.example>\r\n",
        expect=("530 5.7.0",),
    ),
    Row(
        name="pipelined-transaction-before-auth",
        listener="submission",
        prelude="greet",
        send=b"MAIL FROM:<user@our.example>\r\nRCPT TO:<x@victim.example>\r\nDATA\r\n"
        b"Subject: x\r\n\r\nx\r\n.\r\n",
        # DATA refused, so its body is read as commands (five refusals).
        expect=(
            "530 5.7.0",
            "530 5.7.0",
            "530 5.7.0",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
        ),
    ),
    Row(
        name="auth-before-ehlo",
        listener="submission",
        prelude="banner",
        send=b"AUTH PLAIN " + PLAIN.encode() + b"\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="auth-after-helo",
        listener="submission",
        prelude="banner",
        send=b"HELO c\r\nAUTH PLAIN " + PLAIN.encode() + b"\r\n",
        expect=("250", "503 5.5.1"),
    ),
    Row(
        name="mail-before-ehlo",
        listener="submission",
        prelude="banner",
        send=b"MAIL FROM:<user@our.example>\r\n",
        expect=("503 5.5.1",),
    ),
    # Mechanisms.
    Row(
        name="mechanism-cram-md5",
        listener="submission",
        prelude="greet",
        send=b"AUTH CRAM-MD5\r\n",
        expect=("504 5.5.4",),
    ),
    Row(
        name="mechanism-foo",
        listener="submission",
        prelude="greet",
        send=b"AUTH FOO\r\n",
        expect=("504 5.5.4",),
    ),
    Row(
        name="mechanism-xoauth2",
        listener="submission",
        prelude="greet",
        send=b"AUTH XOAUTH2 dXNlcj0=\r\n",
        expect=("504 5.5.4",),
    ),
    Row(
        name="mechanism-missing",
        listener="submission",
        prelude="greet",
        send=b"AUTH\r\n",
        expect=("501 5.5.4",),
    ),
    Row(
        name="mechanism-too-many-words",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN AAAA BBBB\r\n",
        expect=("501 5.5.4",),
    ),
    Row(
        name="mechanism-lowercase-ok",
        listener="submission",
        prelude="greet",
        send=b"auth plain " + PLAIN.encode() + b"\r\n",
        expect=("235 2.7.0",),
    ),
    # Out of sequence.
    Row(
        name="auth-twice",
        listener="submission",
        prelude="auth",
        send=b"AUTH PLAIN " + PLAIN.encode() + b"\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="auth-in-transaction",
        listener="submission",
        prelude="envelope",
        send=b"AUTH PLAIN " + PLAIN.encode() + b"\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="auth-in-transaction-after-mail",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<user@our.example>\r\nAUTH LOGIN\r\n",
        expect=("250 2.1.0", "503 5.5.1"),
    ),
    # Cancelling at a 334 prompt: 501, counted as a failure.
    Row(
        name="cancel-plain",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN\r\n*\r\n",
        expect=("334", "501 5.7.0"),
    ),
    Row(
        name="cancel-login-username",
        listener="submission",
        prelude="greet",
        send=b"AUTH LOGIN\r\n*\r\n",
        expect=("334 VXNlcm5hbWU6", "501 5.7.0"),
    ),
    Row(
        name="cancel-login-password",
        listener="submission",
        prelude="greet",
        send=b"AUTH LOGIN\r\n" + b64(USER) + b"\r\n*\r\n",
        expect=("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "501 5.7.0"),
    ),
    Row(
        name="cancel-three-times-closes",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n*\r\n",
        expect=("334", "501 5.7.0", "334", "501 5.7.0", "334", "501 5.7.0", "421 4.7.0"),
        end="closed",
    ),
    # Empty response: a failed attempt, not another prompt.
    Row(
        name="empty-initial-response",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN =\r\n",
        expect=("535 5.7.8",),
    ),
    Row(
        name="empty-response-at-prompt",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN\r\n=\r\n",
        expect=("334", "535 5.7.8"),
    ),
    Row(
        # RFC 4954 4, *(CRLF [base64]): an empty line at a prompt is the
        # empty response, as "=" is initially; for PLAIN a failed attempt.
        name="empty-line-at-prompt",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN\r\n\r\n",
        expect=("334", "535 5.7.8"),
    ),
    # PLAIN with the wrong number of parts, or NULs in the wrong places.
    Row(
        name="plain-two-parts",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN " + b64(f"{USER}\x00password") + b"\r\n",
        expect=("501 5.5.2",),
    ),
    Row(
        name="plain-four-parts",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN " + b64(f"\x00{USER}\x00password\x00x") + b"\r\n",
        expect=("501 5.5.2",),
    ),
    Row(
        name="plain-empty-user",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN " + b64("\x00\x00password") + b"\r\n",
        expect=("501 5.5.2",),
    ),
    Row(
        name="plain-bad-utf8",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN " + base64.b64encode(b"\x00us\xffer\x00password") + b"\r\n",
        expect=("501 5.5.2",),
    ),
    Row(
        name="login-nul-in-username",
        listener="submission",
        prelude="greet",
        send=b"AUTH LOGIN " + b64("us\x00er") + b"\r\n",
        expect=("501 5.5.2",),
    ),
    Row(
        name="sasl-line-too-long",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN\r\n" + b"A" * 13000 + b"\r\n",
        expect=("334", "500 5.5.6"),
    ),
    Row(
        name="sasl-line-with-bare-lf",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN\r\nAGFs\naWNl\r\nNOOP\r\n",
        expect=("334", "501 5.5.2", "250"),
    ),
    Row(
        name="sasl-non-ascii",
        listener="submission",
        prelude="greet",
        send="AUTH PLAIN\r\nAGFsaWNl\u00e9\r\n".encode(),
        expect=("334", "501 5.5.2"),
    ),
    # MAIL FROM an address the user does not own.
    Row(
        name="sender-not-owned",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<ceo@our.example>\r\n",
        expect=("553 5.7.1",),
    ),
    Row(
        name="sender-null-not-owned",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<>\r\n",
        expect=("553 5.7.1",),
    ),
    Row(
        name="sender-other-domain",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<user@victim.example>\r\n",
        expect=("553 5.7.1",),
    ),
    # Quotes that are not needed change nothing (RFC 5322 3.2.4): the
    # user's own mailbox, as for delivery.  Needed ones make another.
    Row(
        name="sender-quoted-for-nothing-is-the-login",
        listener="submission",
        prelude="auth",
        send=b'MAIL FROM:<"user"@our.example>\r\n',
        expect=("250 2.1.0",),
    ),
    Row(
        name="sender-quoted-variant",
        listener="submission",
        prelude="auth",
        send=b'MAIL FROM:<"user "@our.example>\r\n',
        expect=("553 5.7.1",),
    ),
    Row(
        name="sender-case-variant-owned",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<User@OUR.example>\r\n",
        expect=("250 2.1.0",),
    ),
    Row(
        name="sender-route-dropped-owned",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<@victim.example:user@our.example>\r\n",
        expect=("250 2.1.0",),
    ),
    Row(
        name="sender-route-dropped-not-owned",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<@our.example:ceo@our.example>\r\n",
        expect=("553 5.7.1",),
    ),
    Row(
        name="sender-refused-then-data",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<ceo@our.example>\r\nRCPT TO:<x@victim.example>\r\nDATA\r\n",
        expect=("553 5.7.1", "503 5.5.1", "503 5.5.1"),
    ),
    # AUTH on port 25, before and after STARTTLS: never 334 or 235.
    Row(
        name="mx-auth-plain-plaintext",
        listener="mx",
        prelude="greet",
        send=b"AUTH PLAIN " + PLAIN.encode() + b"\r\n",
        expect=("502 5.5.1",),
    ),
    Row(
        name="mx-auth-login-plaintext",
        listener="mx",
        prelude="greet",
        send=b"AUTH LOGIN\r\n",
        expect=("502 5.5.1",),
    ),
    Row(
        name="mx-auth-plain-tls",
        listener="mx",
        prelude="starttls",
        send=b"AUTH PLAIN " + PLAIN.encode() + b"\r\n",
        expect=("502 5.5.1",),
    ),
    Row(
        name="mx-auth-login-tls",
        listener="mx",
        prelude="starttls",
        send=b"AUTH LOGIN\r\n",
        expect=("502 5.5.1",),
    ),
    Row(
        name="mx-auth-bare-tls",
        listener="mx",
        prelude="starttls",
        send=b"AUTH\r\n",
        expect=("502 5.5.1",),
    ),
]
# RFC 4616 section 2: an authorization identity other than the login must
# be authorised, or the authentication fails (fixed in 51bc552; this suite
# found it: Session._on_auth used to ignore the authzid and answer 235).
rows += [
    Row(
        name="plain-foreign-authzid",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN " + b64(f"ceo@our.example\x00{USER}\x00password") + b"\r\n",
        expect=("535 5.7.8",),
    ),
    Row(
        name="plain-own-authzid",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN " + b64(f"{USER}\x00{USER}\x00password") + b"\r\n",
        expect=("235 2.7.0",),
    ),
    Row(
        name="plain-foreign-authzid-cannot-send-as-it",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN "
        + b64(f"ceo@our.example\x00{USER}\x00password")
        + b"\r\nMAIL FROM:<ceo@our.example>\r\n",
        # Whatever AUTH answers, the transaction is never ceo's.
        expect=("", "5"),
    ),
]
# Malformed base64: 501 5.5.2, strictly (b64decode without validate=True
# takes several of these).
BAD_BASE64 = {
    "star-inside": b"AGFsaWNl*AGNvcnJlY3QtaG9yc2U=",
    "padding-inside": b"AAA=BBB",
    "padding-inside-aligned": b"AA==AAAA",
    "missing-padding": b"AGE",
    "missing-padding-2": b"AGFsaWNlAA",
    "too-much-padding": b"AA===",
    "only-padding": b"====",
    "url-safe-alphabet": b"AGFs-WNl_AGNv",
    "space-inside": b"AGFs aWNl",
    "tab-inside": b"AGFs\taWNl",
    "nul-inside": b"AGFs\x00aWNl",
}
for name, response in BAD_BASE64.items():
    words = response.split(b" ")
    rows.append(
        Row(
            name=f"base64-{name}-at-prompt",
            listener="submission",
            prelude="greet",
            send=b"AUTH PLAIN\r\n" + response + b"\r\n",
            expect=("334", "501 5.5.2"),
        )
    )
    if len(words) == 1:
        rows.append(
            Row(
                name=f"base64-{name}-initial",
                listener="submission",
                prelude="greet",
                send=b"AUTH PLAIN " + response + b"\r\n",
                expect=("501 5.5.2",),
            )
        )


@pytest.mark.parametrize("row", params(rows))
async def test_auth(row: Row) -> None:
    await run_row(row)


# -- time: delays, limits, indistinguishable failures (autojump_clock) ------
DEFAULTS = ServerConfig(hostname="mx.our.example", reverse_dns=False)


async def _attempt(client: Client, response: bytes) -> tuple[str, float]:
    start = trio.current_time()
    await client.send(b"AUTH PLAIN " + response + b"\r\n")
    reply = await client.reply()
    return reply.last, trio.current_time() - start


async def test_failures_same_reply_growing_delay_then_421(autojump_clock: trio.abc.Clock) -> None:
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "submission", "greet")
        results = [await _attempt(client, WRONG_PASSWORD) for _ in range(2)]
        last, last_delay = await _attempt(client, WRONG_PASSWORD)
        # The same 535 every time, with doubling delays (1 s, 2 s), then 421.
        assert [reply for reply, _ in results] == [
            "535 5.7.8 Authentication credentials invalid"
        ] * 2
        assert results[0][1] == pytest.approx(1.0, abs=0.1)
        assert results[1][1] == pytest.approx(2.0, abs=0.1)
        # The third failure (max_auth_failures) is answered, then the session ends.
        assert last == "535 5.7.8 Authentication credentials invalid"
        assert last_delay == pytest.approx(4.0, abs=0.1)
        rest = await client.closed()
        await client.aclose()
        assert rest == b"421 4.7.0 Too many authentication failures\r\n"


async def test_unknown_user_and_wrong_password_indistinguishable(
    autojump_clock: trio.abc.Clock,
) -> None:
    outcomes = []
    for response in (WRONG_PASSWORD, UNKNOWN_USER):
        async with running(DEFAULTS) as harness:
            client = await prelude(harness.server, "submission", "greet")
            outcomes.append([await _attempt(client, response) for _ in range(2)])
            await client.aclose()
    assert outcomes[0] == outcomes[1]


async def test_failures_across_connections_rate_limited(autojump_clock: trio.abc.Clock) -> None:
    """10 failures from one address in the window: then even good credentials get 421."""
    async with running(DEFAULTS) as harness:
        failures = 0
        replies: list[str] = []
        delays: list[float] = []
        while failures < 10:
            client = await prelude(harness.server, "submission", "greet")
            for _ in range(2):
                reply, delay = await _attempt(client, WRONG_PASSWORD)
                replies.append(reply)
                delays.append(delay)
                failures += 1
            await client.aclose()
        assert set(replies) == {"535 5.7.8 Authentication credentials invalid"}
        # The delay grows with the address's failures, across connections.
        assert delays == sorted(delays)
        assert delays[-1] > delays[0]
        client = await prelude(harness.server, "submission", "greet")
        reply, _ = await _attempt(client, PLAIN.encode())
        assert reply.startswith("421 4.7.0"), reply
        assert not await client.closed()
        # The MX listener is not affected.
        await client.aclose()
        mx = await prelude(harness.server, "mx", "greet")
        await mx.command("QUIT", "221")
        await mx.aclose()


# -- secrets never reach the logs; client text in logs is escaped ---------------
SECRET = "S3cret-Pa55word"


async def test_auth_secrets_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [
        b64(f"\x00{USER}\x00{SECRET}"),
        b64(f"\x00{USER}\x00{SECRET}x"),
        b64(SECRET),
    ]
    async with running(users={USER: SECRET}) as harness:
        client = await prelude(harness.server, "submission", "greet")
        try:
            await client.command(f"AUTH PLAIN {tokens[1].decode()}", "535 5.7.8")
            await client.command("AUTH LOGIN", "334")
            await client.command(b64(USER).decode(), "334")
            await client.command(tokens[2].decode() + "x", "501 5.5.2")
            await client.command(f"AUTH PLAIN {tokens[0].decode()}", "235 2.7.0")
        finally:
            await client.aclose()
    text = caplog.text
    assert SECRET not in text
    for token in tokens:
        assert token.decode() not in text
    for record in caplog.records:
        assert SECRET not in repr(record.args)


async def test_client_text_in_logs_is_escaped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    forged = "evil\r\n2026-01-01 INFO smtp_recv.session AUTH PLAIN as admin"
    async with running() as harness:
        client = await prelude(harness.server, "submission", "greet")
        try:
            await client.command("AUTH LOGIN", "334")
            await client.command(b64(forged).decode(), "334")
            await client.command(b64("wrong").decode(), "535 5.7.8")
        finally:
            await client.aclose()
    for record in caplog.records:
        message = record.getMessage()
        assert "\r" not in message, message
        assert "\n" not in message, message
    assert any(
        r"failed for evil\x0d\x0a2026-01-01\x20INFO" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.parametrize(
    ("listener", "kind", "auth_offered", "starttls_offered"),
    [
        ("mx", "greet", False, True),
        ("mx", "starttls", False, False),
        ("submission", "greet", True, False),
    ],
    ids=["mx-plaintext", "mx-after-starttls", "submission"],
)
async def test_ehlo_offers_auth_only_on_submission(
    listener: str, kind: str, auth_offered: bool, starttls_offered: bool
) -> None:
    """RFC 4954 section 4 and RFC 8314: AUTH is never offered in plaintext
    (nor on the MX listener at all); STARTTLS only before TLS."""
    async with running() as harness:
        client = await prelude(harness.server, listener, kind)  # type: ignore[arg-type]
        try:
            ehlo = await client.command("EHLO again.example", "250")
        finally:
            await client.aclose()
    keywords = [line.split(" ")[0] for line in ehlo.lines[1:]]
    assert ("AUTH" in keywords) is auth_offered
    assert ("STARTTLS" in keywords) is starttls_offered
    if auth_offered:
        assert "AUTH PLAIN LOGIN" in ehlo.lines
    assert f"SIZE {FAST.max_message_size}" in ehlo.lines
