"""AUTH PLAIN (RFC 4616) and LOGIN (RFC 4954): decoding and the exchange."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from protocol_harness import SPLITS, SUBMISSION, Dialogue, b64, config, greeted, plain

from smtp_recv.protocol import (
    AuthCredentials,
    CommandRejected,
    Reply,
    State,
    limits,
    replies,
)
from smtp_recv.protocol._errors import _Refusal
from smtp_recv.protocol._sasl import Credentials, SaslExchange, decode_response

Split = Callable[[bytes], list[bytes]]


def refusal_of(call: Callable[[], object]) -> Reply:
    with pytest.raises(_Refusal) as caught:
        call()
    return caught.value.reply


# -- decoding -------------------------------------------------------------------
def test_rfc4954_4_equals_is_the_empty_response() -> None:
    assert decode_response("=") == b""


def test_rfc4954_4_an_empty_line_at_a_prompt_is_the_empty_response() -> None:
    """``*(CRLF [base64])``: only the initial response needs ``=`` for it."""
    assert decode_response("") == b""
    assert refusal_of(lambda: decode_response("", initial=True)) is replies.AUTH_BAD_BASE64


def test_rfc4954_4_star_cancels() -> None:
    reply = refusal_of(lambda: decode_response("*"))
    assert reply is replies.AUTH_CANCELLED
    assert reply.code == 501


def test_valid_base64_decodes() -> None:
    assert decode_response("AGFsaWNlAHNlY3JldA==") == b"\0alice\0secret"
    assert decode_response("YWJj") == b"abc"


@pytest.mark.parametrize(
    "text",
    [
        "AGFsaWNl*AGNvcnJlY3QtaG9yc2U=",  # a character outside the alphabet
        "AAA=BBB",  # padding in the middle
        "AAA=BBBB",
        "YWJjZA",  # missing padding
        "YWJjZA=",
        "YWJjZA===",
        "Y",
        "",
        "YW Jj",
        "YWJj\t",
        "YW-j",
        "YW_j",
        "====",
        "=YWJ",
        "**",
        "YWJj*",
    ],
)
def test_rfc4954_4_bad_base64_is_501_5_5_2(text: str) -> None:
    """Python's ``b64decode`` accepts some of these unless ``validate=True`` (SECURITY-CASES 5)."""
    reply = refusal_of(lambda: decode_response(text, initial=True))
    assert reply is replies.AUTH_BAD_BASE64
    assert (reply.code, reply.enhanced) == (501, "5.5.2")


# -- PLAIN ---------------------------------------------------------------------
def test_rfc4616_2_plain_without_and_with_authzid() -> None:
    exchange = SaslExchange("PLAIN")
    assert exchange.first_challenge() == ""
    assert exchange.step(plain("alice", "correct horse")) == Credentials(
        "PLAIN", "", "alice", "correct horse"
    )
    assert SaslExchange("PLAIN").step(plain("alice", "pw", authzid="admin")) == Credentials(
        "PLAIN", "admin", "alice", "pw"
    )
    # An empty password is the application's to refuse, not a syntax error.
    assert SaslExchange("PLAIN").step(plain("alice", "")) == Credentials("PLAIN", "", "alice", "")
    assert SaslExchange("PLAIN").step(plain("jöran", "пароль")).password == "пароль"  # type: ignore[union-attr]


def test_rfc4616_an_empty_plain_response_is_a_failed_attempt() -> None:
    reply = refusal_of(lambda: SaslExchange("PLAIN").step("="))
    assert reply is replies.AUTH_FAILED
    assert reply.code == 535


@pytest.mark.parametrize(
    "raw",
    [b"alice", b"alice\0pw", b"\0\0pw", b"a\0b\0c\0d", b"\0al\xffice\0pw", b"\0alice\0p\xc3"],
)
def test_rfc4616_malformed_plain_messages_are_501(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert refusal_of(lambda: SaslExchange("PLAIN").step(text)) is replies.AUTH_BAD_RESPONSE


def test_login_asks_for_username_then_password() -> None:
    exchange = SaslExchange("LOGIN")
    assert base64.b64decode(exchange.first_challenge()) == b"Username:"
    prompt = exchange.step(b64("alice"))
    assert prompt == base64.b64encode(b"Password:").decode()
    assert exchange.step(b64("secret")) == Credentials("LOGIN", "", "alice", "secret")


@pytest.mark.parametrize("raw", [b"al\0ice", b"\xff\xfe"])
def test_login_refuses_nul_and_invalid_utf8(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert refusal_of(lambda: SaslExchange("LOGIN").step(text)) is replies.AUTH_BAD_RESPONSE
    exchange = SaslExchange("LOGIN")
    exchange.step(b64("alice"))
    assert refusal_of(lambda: exchange.step(text)) is replies.AUTH_BAD_RESPONSE


# -- through a connection ---------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc4954_4_plain_with_initial_response(split: Split) -> None:
    dialogue = greeted(SUBMISSION)
    out = dialogue.say(f"AUTH PLAIN {plain('alice', 'pw')}", "NOOP", split=split)
    assert out == replies.AUTH_OK.to_bytes() + replies.NOOP_OK.to_bytes()
    [event] = dialogue.of_type(AuthCredentials)
    assert event == AuthCredentials(
        mechanism="PLAIN", authorization_id="", username="alice", password="pw"
    )
    assert "pw" not in repr(event)
    assert dialogue.conn.authenticated
    assert dialogue.state is State.GREETED


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc4954_4_plain_in_two_steps(split: Split) -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say("AUTH PLAIN", split=split) == b"334 \r\n"
    assert dialogue.state is State.AUTH
    assert dialogue.say(plain("alice", "pw"), split=split) == replies.AUTH_OK.to_bytes()
    assert dialogue.state is State.GREETED


def test_rfc5321_4_1_1_trailing_white_space_after_auth_and_its_responses_is_tolerated() -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say("AUTH LOGIN \t") == b"334 VXNlcm5hbWU6\r\n"
    assert dialogue.say(b64("alice") + " ") == b"334 UGFzc3dvcmQ6\r\n"
    assert dialogue.say(b64("secret") + "\t ") == replies.AUTH_OK.to_bytes()
    [event] = dialogue.of_type(AuthCredentials)
    assert (event.username, event.password) == ("alice", "secret")  # type: ignore[attr-defined]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc4954_4_login_in_three_steps(split: Split) -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say("AUTH LOGIN", split=split) == b"334 VXNlcm5hbWU6\r\n"
    assert dialogue.say(b64("alice"), split=split) == b"334 UGFzc3dvcmQ6\r\n"
    assert dialogue.say(b64("secret"), split=split) == replies.AUTH_OK.to_bytes()
    [event] = dialogue.of_type(AuthCredentials)
    assert (event.mechanism, event.username, event.password) == ("LOGIN", "alice", "secret")  # type: ignore[attr-defined]


def test_rfc4954_4_login_with_an_empty_password_reaches_the_application() -> None:
    """An empty line at the password prompt (curl sends it for an empty password)."""
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH LOGIN", b64("alice"))
    assert dialogue.say("") == replies.AUTH_OK.to_bytes()
    [event] = dialogue.of_type(AuthCredentials)
    assert (event.username, event.password) == ("alice", "")  # type: ignore[attr-defined]


@pytest.mark.parametrize("empty", ["", "="])
def test_login_with_an_empty_username_is_501(empty: str) -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH LOGIN")
    assert dialogue.say(empty) == replies.AUTH_BAD_RESPONSE.to_bytes()
    assert not dialogue.of_type(AuthCredentials)
    assert dialogue.state is State.GREETED


def test_an_empty_line_at_the_plain_prompt_is_a_failed_attempt() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH PLAIN")
    assert dialogue.say("") == replies.AUTH_FAILED.to_bytes()


def test_login_with_initial_response_skips_the_username_prompt() -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say(f"AUTH login {b64('alice')}") == b"334 UGFzc3dvcmQ6\r\n"
    assert dialogue.say(b64("pw")) == replies.AUTH_OK.to_bytes()


@pytest.mark.parametrize("step", [0, 1, 2])
def test_rfc4954_4_star_at_any_prompt_cancels_with_501(step: int) -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH LOGIN")
    if step >= 1:
        dialogue.say(b64("alice"))
    if step == 2:
        # The exchange ended with the credentials: "*" is a command line again.
        dialogue.say(b64("pw"))
        assert dialogue.say("*") == replies.UNRECOGNISED.to_bytes()
        return
    before = dialogue.conn.error_count
    out = dialogue.say("*")
    assert out == replies.AUTH_CANCELLED.to_bytes()
    assert dialogue.conn.error_count == before + 1
    assert dialogue.state is State.GREETED
    assert not dialogue.conn.authenticated
    # The session goes on and AUTH may be tried again.
    assert dialogue.say(f"AUTH PLAIN {plain('alice', 'pw')}") == replies.AUTH_OK.to_bytes()


def test_star_as_initial_response_cancels() -> None:
    assert greeted(SUBMISSION).say("AUTH PLAIN *") == replies.AUTH_CANCELLED.to_bytes()


@pytest.mark.parametrize(
    "response", ["AGFsaWNl*AGNvcnJlY3QtaG9yc2U=", "AAA=BBB", "AGFsaWNlAHB3"[:-1]]
)
def test_bad_base64_at_a_prompt_or_initially_is_501_5_5_2(response: str) -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say(f"AUTH PLAIN {response}") == replies.AUTH_BAD_BASE64.to_bytes()
    dialogue.say("AUTH PLAIN")
    assert dialogue.say(response) == replies.AUTH_BAD_BASE64.to_bytes()
    assert dialogue.state is State.GREETED


def test_non_ascii_sasl_response_is_501() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH PLAIN")
    assert dialogue.say("AGFsaWNlAHB3é=") == replies.AUTH_BAD_BASE64.to_bytes()
    dialogue.say("AUTH PLAIN")
    assert dialogue.say(b"AGFs\naWNl") == replies.AUTH_BAD_BASE64.to_bytes()
    assert dialogue.state is State.GREETED


def test_auth_plain_equals_is_535_not_334() -> None:
    """SECURITY-CASES 5: an empty PLAIN response is a failed attempt."""
    dialogue = greeted(SUBMISSION)
    out = dialogue.say("AUTH PLAIN =")
    assert out == replies.AUTH_FAILED.to_bytes()
    assert b"334" not in out
    assert not dialogue.of_type(AuthCredentials)
    dialogue.say("AUTH PLAIN")
    assert dialogue.say("=") == replies.AUTH_FAILED.to_bytes()


def test_a_rejected_auth_gives_the_applications_reply_and_allows_another_try() -> None:
    answers = iter([replies.AUTH_FAILED, None])
    dialogue = greeted(SUBMISSION, decide=lambda event: next(answers))
    assert dialogue.say(f"AUTH PLAIN {plain('alice', 'wrong')}") == replies.AUTH_FAILED.to_bytes()
    assert not dialogue.conn.authenticated
    assert dialogue.conn.error_count == 1
    assert dialogue.say(f"AUTH PLAIN {plain('alice', 'right')}") == replies.AUTH_OK.to_bytes()
    assert dialogue.conn.authenticated


def test_rfc4954_4_auth_after_success_is_503() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say(f"AUTH PLAIN {plain('alice', 'pw')}")
    assert (
        dialogue.say(f"AUTH PLAIN {plain('bob', 'pw')}") == replies.ALREADY_AUTHENTICATED.to_bytes()
    )
    # EHLO does not forget the authentication.
    dialogue.say("EHLO again.example")
    assert dialogue.conn.authenticated


def test_rfc4954_4_auth_in_a_transaction_is_503() -> None:
    dialogue = greeted(config(tls_active=True, offer_auth=True))
    dialogue.say("MAIL FROM:<a@b.example>")
    assert dialogue.say(f"AUTH PLAIN {plain('a', 'b')}") == replies.AUTH_IN_TRANSACTION.to_bytes()


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("AUTH", replies.AUTH_SYNTAX),
        ("AUTH PLAIN a b", replies.AUTH_SYNTAX),
        ("AUTH CRAM-MD5", replies.UNKNOWN_MECHANISM),
        ("AUTH FOO", replies.UNKNOWN_MECHANISM),
        ("AUTH PLAIN a!b=", replies.AUTH_BAD_BASE64),
    ],
)
def test_rfc4954_malformed_auth_commands(command: str, reply: Reply) -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say(command) == reply.to_bytes()
    assert dialogue.state is State.GREETED


def test_auth_before_ehlo_and_after_helo_is_503() -> None:
    dialogue = Dialogue(SUBMISSION)
    assert dialogue.say(f"AUTH PLAIN {plain('a', 'b')}") == replies.NEED_HELO.to_bytes()
    dialogue.say("HELO client.example")
    assert dialogue.say(f"AUTH PLAIN {plain('a', 'b')}") == replies.NEED_EHLO.to_bytes()


def test_auth_not_offered_is_5xx_never_334() -> None:
    """SECURITY-CASES 3: AUTH on port 25, before or after TLS."""
    for session in (config(), config(offer_starttls=True), config(tls_active=True)):
        dialogue = greeted(session)
        for command in ("AUTH PLAIN", f"AUTH PLAIN {plain('a', 'b')}", "AUTH LOGIN"):
            out = dialogue.say(command)
            assert out == replies.AUTH_NOT_AVAILABLE.to_bytes()
            assert out.startswith(b"5")
        assert not dialogue.of_type(AuthCredentials)
        assert b"AUTH" not in Dialogue(session).say("EHLO x")


def test_rfc4954_auth_on_a_plaintext_session_is_538() -> None:
    dialogue = greeted(config(offer_auth=True))
    assert dialogue.say("AUTH PLAIN") == replies.ENCRYPTION_REQUIRED.to_bytes()
    assert replies.ENCRYPTION_REQUIRED.code == 538


def test_rfc4954_4_an_over_long_sasl_line_is_500_5_5_6() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH PLAIN")
    out = dialogue.send(b"A" * (limits.SASL_LINE + 10) + b"\r\nNOOP\r\n")
    assert out == replies.AUTH_LINE_TOO_LONG.to_bytes() + replies.NOOP_OK.to_bytes()
    assert (replies.AUTH_LINE_TOO_LONG.code, replies.AUTH_LINE_TOO_LONG.enhanced) == (500, "5.5.6")
    assert dialogue.state is State.GREETED


@pytest.mark.parametrize("extra", [1, limits.MAX_LINE])
def test_rfc4954_4_an_over_long_auth_line_is_500_5_5_6(extra: int) -> None:
    """Its initial response is a response too long: the same code, and the session goes on."""
    dialogue = greeted(SUBMISSION)
    # ``extra`` octets past the 12288 allowed, CRLF included.
    line = b"AUTH PLAIN " + b"A" * (limits.SASL_LINE + extra - len(b"AUTH PLAIN \r\n"))
    out = dialogue.send(line + b"\r\nNOOP\r\n")
    assert out == replies.AUTH_LINE_TOO_LONG.to_bytes() + replies.NOOP_OK.to_bytes()
    assert dialogue.state is State.GREETED


def test_rfc4954_4_a_sasl_line_of_12288_octets_is_read() -> None:
    """The whole response line, CRLF included, may be 12288 octets."""
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH PLAIN")
    password = "p" * 9206
    response = plain("alice", password)
    # The longest base64 line that fits: 12284 + CRLF.
    assert len(response) + 2 == limits.SASL_LINE - 2
    assert dialogue.say(response) == replies.AUTH_OK.to_bytes()
    [event] = dialogue.of_type(AuthCredentials)
    assert event.password == password  # type: ignore[attr-defined]


def test_the_auth_command_itself_may_carry_a_long_initial_response() -> None:
    dialogue = greeted(SUBMISSION)
    response = plain("alice", "q" * 8000)
    assert dialogue.say(f"AUTH PLAIN {response}") == replies.AUTH_OK.to_bytes()


def test_eof_in_the_middle_of_auth_closes_without_credentials() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH LOGIN")
    events = dialogue.eof()
    assert [type(event).__name__ for event in events] == ["ConnectionClosed"]
    assert dialogue.state is State.CLOSED
    assert not dialogue.of_type(AuthCredentials)


def test_a_sasl_failure_is_counted_as_an_error() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say("AUTH PLAIN =")
    [event] = dialogue.of_type(CommandRejected)
    assert event.reply is replies.AUTH_FAILED  # type: ignore[attr-defined]
    assert event.error_count == 1  # type: ignore[attr-defined]
