"""Regression file for SMTP smuggling and STARTTLS injection (SECURITY-CASES 1 and 3).

CVE-2023-51764/5/6 (fake ends of data), aiosmtpd CVE-2024-27305 (bare LF
end of data), CVE-2011-0411 and aiosmtpd CVE-2024-34083 (commands injected
after STARTTLS).  Each case is the exact bytes of the advisory, in one write
and one byte at a time.  ``test_properties.py`` generalises them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from protocol_harness import (
    MX,
    SPLITS,
    SUBMISSION,
    Dialogue,
    config,
    greeted,
    message_outcomes,
    parse_replies,
    plain,
)

from smtp_recv.protocol import (
    MailFrom,
    MessageAborted,
    MessageComplete,
    RcptTo,
    SessionConfig,
    StartTLS,
    State,
    replies,
)

# Each test runs with the C passes over message bytes and with the Python ones.
pytestmark = pytest.mark.usefixtures("data_passes")

Split = Callable[[bytes], list[bytes]]

HDR = b"From: alice@client.example\r\nTo: bob@our.example\r\nSubject: hello\r\n\r\n"
SMUG = (
    b"MAIL FROM:<ceo@our.example>\r\n"
    b"RCPT TO:<bob@our.example>\r\n"
    b"DATA\r\n"
    b"From: ceo@our.example\r\n"
    b"To: bob@our.example\r\n"
    b"Subject: urgent\r\n"
    b"\r\n"
    b"Please wire the money.\r\n"
)
FAKE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
}


def open_data(session: SessionConfig) -> Dialogue:
    dialogue = Dialogue(session)
    prelude = ["EHLO client.example"]
    if session.offer_auth:
        prelude.append(f"AUTH PLAIN {plain('alice', 'pw')}")
    prelude += ["MAIL FROM:<alice@client.example>", "RCPT TO:<bob@our.example>", "DATA"]
    assert parse_replies(dialogue.say(*prelude))[-1].code == 354
    dialogue.events.clear()
    return dialogue


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("fake_end", FAKE_ENDS.values(), ids=FAKE_ENDS.keys())
@pytest.mark.parametrize(
    "session",
    [config(), config(reject_bare_line_endings=False), SUBMISSION],
    ids=["mx-strict", "mx-lenient", "submission"],
)
def test_a_fake_end_of_data_never_ends_the_message(
    session: SessionConfig, fake_end: bytes, split: Split
) -> None:
    dialogue = open_data(session)
    out = dialogue.send(HDR + b"line1" + fake_end + SMUG, split)
    assert out == b"", "no reply before the real end of data"
    assert message_outcomes(dialogue.events) == []
    out = dialogue.send(b"\r\n.\r\n", split)
    [answer] = parse_replies(out)
    [outcome] = message_outcomes(dialogue.events)
    # The smuggled envelope is never read as commands.
    assert not [event for event in dialogue.events if isinstance(event, MailFrom | RcptTo)]
    if session.reject_bare_line_endings:
        assert isinstance(outcome, MessageAborted)
        assert answer.code == 550
        # And nothing after it is read: a parser in front of us that took
        # the fake end for the end read what followed as commands.
        assert dialogue.say("NOOP") == b""
        assert dialogue.state is State.CLOSED
    else:
        assert isinstance(outcome, MessageComplete)
        assert outcome.sender == "alice@client.example"
        assert answer.code == 250
        assert SMUG in dialogue.body()
        # And the session is still in step: the next command is answered as one.
        assert dialogue.say("NOOP") == replies.NOOP_OK.to_bytes()
        assert dialogue.state is State.GREETED


def test_a_body_line_that_is_a_lone_dot_after_a_bare_lf_is_data() -> None:
    """aiosmtpd CVE-2024-27305: ``\\n.\\r\\n`` was taken as the end."""
    dialogue = open_data(config(reject_bare_line_endings=False))
    dialogue.send(b"a\n.\r\nMAIL FROM:<x@y.example>\r\n\r\n.\r\n")
    [outcome] = message_outcomes(dialogue.events)
    assert isinstance(outcome, MessageComplete)
    assert dialogue.body() == b"a\n.\r\nMAIL FROM:<x@y.example>\r\n\r\n"


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_bare_lf_in_a_command_line_is_one_error_never_two_commands(split: Split) -> None:
    dialogue = greeted()
    out = dialogue.send(b"RSET\nMAIL FROM:<ceo@our.example>\r\n", split)
    assert out == replies.BARE_LINE_ENDING_IN_COMMAND.to_bytes()
    assert b"\r\r" not in out
    assert not dialogue.of_type(MailFrom)


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_size_never_decides_where_a_message_ends(split: Split) -> None:
    dialogue = greeted()
    dialogue.say("MAIL FROM:<a@client.example> SIZE=5", "RCPT TO:<bob@our.example>", "DATA")
    out = dialogue.send(b"12345MAIL FROM:<ceo@our.example>\r\n.\r\n", split)
    assert parse_replies(out)[0].code == 250
    assert dialogue.body() == b"12345MAIL FROM:<ceo@our.example>\r\n"
    assert len(dialogue.of_type(MailFrom)) == 1


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_starttls_injection_is_never_answered(split: Split) -> None:
    """CVE-2011-0411: ``STARTTLS\\r\\nEHLO injected\\r\\n`` in one write."""
    dialogue = greeted(MX)
    dialogue.events.clear()
    out = dialogue.send(b"STARTTLS\r\nEHLO injected\r\n", split)
    assert out == replies.READY_FOR_TLS.to_bytes()
    assert dialogue.events == [StartTLS()]
    assert dialogue.state is State.TLS
    if split is SPLITS["whole"]:
        assert dialogue.conn.trailing_data == b"EHLO injected\r\n"


def test_an_envelope_begun_before_starttls_cannot_reach_the_tls_session() -> None:
    """aiosmtpd CVE-2024-34083: STARTTLS is refused inside a transaction."""
    dialogue = greeted(MX)
    dialogue.say("MAIL FROM:<alice@client.example>")
    assert dialogue.say("STARTTLS") == replies.BAD_SEQUENCE.to_bytes()
    assert dialogue.state is State.MAIL
