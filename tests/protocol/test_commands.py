"""Command dialogues, as RFC 5321 (and its extensions) write them.

Each test is the client's side of an exchange and the server's exact reply
bytes, taken from the reply table, so a change of wording is one edit in
``_replies.py`` and a change of behaviour is a failing test here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from protocol_harness import (
    CLIENT,
    HOSTNAME,
    LEAVE,
    MX,
    SPLITS,
    SUBMISSION,
    Dialogue,
    codes,
    config,
    greeted,
    in_transaction,
    parse_replies,
    plain,
)

from smtp_recv.protocol import (
    NEED_DATA,
    PAUSED,
    CommandRejected,
    ConnectionClosed,
    Hello,
    LocalProtocolError,
    MailFrom,
    MailParameters,
    MessageComplete,
    ProtocolError,
    RcptTo,
    Reply,
    ServerConnection,
    SessionConfig,
    StartTLS,
    State,
    TransactionReset,
    limits,
    replies,
)

Split = Callable[[bytes], list[bytes]]


# -- greeting, HELO, EHLO ---------------------------------------------------------
def test_rfc5321_4_3_1_greeting_is_220_without_enhanced_code() -> None:
    assert Dialogue().greeting == f"220 {HOSTNAME} ESMTP ready\r\n".encode()


def test_rfc5321_4_1_1_1_helo() -> None:
    dialogue = Dialogue()
    assert dialogue.say(f"HELO {CLIENT}") == f"250 {HOSTNAME} Hello {CLIENT}\r\n".encode()
    assert dialogue.events == [Hello(name=CLIENT, extended=False)]
    assert dialogue.state is State.GREETED
    assert dialogue.conn.helo_name == CLIENT
    assert not dialogue.conn.extended


@pytest.mark.parametrize(
    "parameter", ["SIZE=10", "BODY=8BITMIME", "BODY=BINARYMIME", "SMTPUTF8", "AUTH=<>", "RET=FULL"]
)
def test_rfc5321_4_1_1_11_after_helo_no_mail_parameter_was_offered(parameter: str) -> None:
    """HELO gets no list of extensions, so none of their parameters may be used."""
    dialogue = Dialogue(config(dsn=True))
    dialogue.say(f"HELO {CLIENT}")
    refused = dialogue.say(f"MAIL FROM:<a@b.example> {parameter}")
    assert refused == replies.UNKNOWN_PARAMETER.to_bytes()
    assert (replies.UNKNOWN_PARAMETER.code, replies.UNKNOWN_PARAMETER.enhanced) == (555, "5.5.4")
    # The same after EHLO is fine.
    dialogue.say(f"EHLO {CLIENT}")
    assert dialogue.say(f"MAIL FROM:<a@b.example> {parameter}") == replies.SENDER_OK.to_bytes()


def test_rfc5321_4_1_1_11_after_helo_no_rcpt_parameter_was_offered() -> None:
    dialogue = Dialogue(config(dsn=True))
    dialogue.say(f"HELO {CLIENT}", "MAIL FROM:<a@b.example>")
    refused = dialogue.say("RCPT TO:<r@our.example> NOTIFY=NEVER")
    assert refused == replies.UNKNOWN_PARAMETER.to_bytes()


def test_rfc3030_2_after_helo_bdat_is_not_offered_and_its_chunk_is_skipped() -> None:
    dialogue = Dialogue()
    dialogue.say(f"HELO {CLIENT}", "MAIL FROM:<a@b.example>", "RCPT TO:<r@our.example>")
    out = dialogue.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
    assert out == replies.BDAT_NOT_AVAILABLE.to_bytes() + replies.NOOP_OK.to_bytes()
    assert dialogue.state is State.RCPT
    assert not dialogue.of_type(MessageComplete)


def test_rfc5321_4_1_1_1_ehlo_lists_the_extensions() -> None:
    dialogue = Dialogue()
    out = dialogue.say(f"ehlo {CLIENT}")
    assert (
        out
        == (
            f"250-{HOSTNAME} Hello {CLIENT}\r\n"
            "250-PIPELINING\r\n"
            f"250-SIZE {32 << 20}\r\n"
            "250-8BITMIME\r\n"
            "250-SMTPUTF8\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-CHUNKING\r\n"
            "250 BINARYMIME\r\n"
        ).encode()
    )
    assert dialogue.events == [Hello(name=CLIENT, extended=True)]
    assert dialogue.conn.extended


def test_rfc5321_4_1_1_1_each_ehlo_names_its_own_client() -> None:
    """The EHLO reply is remembered between sessions, but per client name."""
    first, second = Dialogue(), Dialogue()
    assert first.say("EHLO one.example").startswith(
        f"250-{HOSTNAME} Hello one.example\r\n".encode()
    )
    assert second.say("EHLO two.example").startswith(
        f"250-{HOSTNAME} Hello two.example\r\n".encode()
    )
    assert first.say("EHLO two.example") == second.say("EHLO two.example")
    assert first.say("EHLO one.example").startswith(
        f"250-{HOSTNAME} Hello one.example\r\n".encode()
    )


@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_a_client_name_not_in_ascii_is_not_echoed(verb: str) -> None:
    # RFC 6531: no UTF-8 in a reply before the client asked for SMTPUTF8.
    dialogue = Dialogue()
    out = dialogue.say(f"{verb} b\u00fccher.example")
    assert out.isascii()
    assert out.startswith(f"250{'-' if verb == 'EHLO' else ' '}{HOSTNAME} Hello\r\n".encode())
    assert dialogue.conn.helo_name == "b\u00fccher.example"


@pytest.mark.parametrize("verb", ["EHLO", "HELO"])
def test_rfc5321_4_5_3_1_5_a_client_name_too_long_to_echo_is_not_echoed(verb: str) -> None:
    """Our name and a 255-octet HELO name would pass the 512 octets of a reply line."""
    hostname = ("a" * 60 + ".") * 4 + "example"  # 251 characters
    client = ("b" * 62 + ".") * 3 + "c" * 58 + ".example"  # 255
    dialogue = Dialogue(dataclasses.replace(config(), hostname=hostname))
    out = dialogue.say(f"{verb} {client}")
    first = out.split(b"\r\n")[0]
    assert first == f"250{'-' if verb == 'EHLO' else ' '}{hostname} Hello".encode()
    assert dialogue.conn.helo_name == client


def ehlo_keywords(session: SessionConfig) -> list[str]:
    [answer] = parse_replies(Dialogue(session).say("EHLO client.example"))
    assert answer.code == 250
    assert answer.enhanced is None
    return list(answer.lines[1:])


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        (
            {},
            ["PIPELINING", "8BITMIME", "SMTPUTF8", "CHUNKING", "BINARYMIME"],
            ["STARTTLS", "AUTH PLAIN LOGIN", "DSN"],
        ),
        ({"max_message_size": 1000}, ["SIZE 1000"], []),
        ({"dsn": True}, ["DSN"], []),
        ({"smtputf8": False}, [], ["SMTPUTF8"]),
        ({"chunking": False}, [], ["CHUNKING", "BINARYMIME"]),
        ({"enhanced_status_codes": False}, [], ["ENHANCEDSTATUSCODES"]),
        ({"offer_starttls": True}, ["STARTTLS"], ["AUTH PLAIN LOGIN"]),
        ({"offer_starttls": True, "tls_active": True}, [], ["STARTTLS"]),
        # RFC 4954 section 4 / RFC 8314: AUTH only on an encrypted stream.
        ({"offer_auth": True}, [], ["AUTH PLAIN LOGIN"]),
        ({"offer_auth": True, "tls_active": True}, ["AUTH PLAIN LOGIN"], ["STARTTLS"]),
    ],
)
def test_ehlo_keywords_follow_the_configuration_and_state(
    overrides: dict[str, object], present: list[str], absent: list[str]
) -> None:
    keywords = ehlo_keywords(config(**overrides))
    for keyword in present:
        assert keyword in keywords
    for keyword in absent:
        assert keyword not in keywords


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
@pytest.mark.parametrize("line", ["{}", "{}  ", "{} two words", "{} tab\there", "{} bell\x07"])
def test_rfc5321_4_1_4_malformed_helo_is_501(verb: str, line: str) -> None:
    dialogue = Dialogue()
    assert dialogue.say(line.format(verb)) == replies.HELO_SYNTAX.to_bytes()
    assert dialogue.state is State.CONNECTED
    assert dialogue.conn.helo_name is None


def test_rfc5321_4_1_4_ehlo_and_helo_reset_the_transaction() -> None:
    for verb in ("EHLO", "HELO"):
        dialogue = in_transaction()
        assert dialogue.conn.sender == "sender@client.example"
        dialogue.events.clear()
        dialogue.say(f"{verb} other.example")
        assert dialogue.events[0] == TransactionReset()
        assert dialogue.conn.sender is None
        assert dialogue.conn.recipients == ()
        assert dialogue.conn.mail_parameters == MailParameters()
        assert dialogue.state is State.GREETED
        # The transaction really is gone: RCPT needs a new MAIL.
        assert dialogue.say("RCPT TO:<r@our.example>") == replies.NEED_MAIL.to_bytes()


# -- MAIL --------------------------------------------------------------------------
def test_rfc5321_4_1_1_2_mail_from() -> None:
    dialogue = greeted()
    assert dialogue.say("MAIL FROM:<sender@client.example>") == b"250 2.1.0 Sender OK\r\n"
    assert dialogue.events[-1] == MailFrom(
        sender="sender@client.example", parameters=MailParameters()
    )
    assert dialogue.state is State.MAIL
    assert dialogue.conn.sender == "sender@client.example"


def test_rfc5321_4_5_5_null_reverse_path_is_accepted() -> None:
    """Bounces must arrive (SECURITY-CASES 6)."""
    dialogue = greeted()
    assert dialogue.say("MAIL FROM:<>") == replies.SENDER_OK.to_bytes()
    assert dialogue.conn.sender == ""


def test_mail_waits_for_the_applications_decision() -> None:
    dialogue = greeted(decide=lambda event: LEAVE)
    dialogue.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<r@our.example>\r\n")
    conn = dialogue.conn
    assert conn.next_event() is PAUSED
    assert conn.data_to_send() == b""
    assert conn.state is State.GREETED
    conn.reject(replies.SENDER_NOT_OWNED)
    assert conn.data_to_send() == replies.SENDER_NOT_OWNED.to_bytes()
    assert conn.error_count == 1
    # The pipelined RCPT is read only now, and finds no transaction.
    event = conn.next_event()
    assert isinstance(event, CommandRejected)
    assert event.reply is replies.NEED_MAIL
    assert conn.next_event() is NEED_DATA


def test_accept_with_the_applications_own_reply() -> None:
    own = Reply.make(250, "2.1.0", "Originator ok")
    dialogue = greeted(decide=lambda event: own)
    assert dialogue.say("MAIL FROM:<a@b.example>") == b"250 2.1.0 Originator ok\r\n"
    assert dialogue.state is State.MAIL


def test_rfc5321_4_1_4_nested_mail_is_503() -> None:
    dialogue = in_transaction()
    assert dialogue.say("MAIL FROM:<other@client.example>") == replies.NESTED_MAIL.to_bytes()
    assert dialogue.conn.sender == "sender@client.example"


def test_mail_before_helo_is_503() -> None:
    assert Dialogue().say("MAIL FROM:<a@b.example>") == replies.NEED_HELO.to_bytes()


def test_rfc1870_6_1_size_over_the_limit_is_552_at_mail() -> None:
    dialogue = greeted(max_message_size=1000)
    out = dialogue.say("MAIL FROM:<a@b.example> SIZE=1001")
    assert out == b"552 5.3.4 Message size exceeds fixed limit\r\n"
    assert dialogue.state is State.GREETED
    assert not dialogue.of_type(MailFrom)
    assert dialogue.say("MAIL FROM:<a@b.example> SIZE=1000") == replies.SENDER_OK.to_bytes()
    assert dialogue.conn.mail_parameters.size == 1000


def test_size_of_twenty_nines_is_552_not_an_overflow() -> None:
    dialogue = greeted()
    assert (
        dialogue.say("MAIL FROM:<a@b.example> SIZE=" + "9" * 20)
        == replies.MESSAGE_TOO_BIG.to_bytes()
    )


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("MAIL FROM:<a@b.example> SIZE=abc", replies.BAD_PARAMETER),
        ("MAIL FROM:<a@b.example> SIZE=-1", replies.BAD_PARAMETER),
        ("MAIL FROM:<a@b.example> SIZE=1 SIZE=1", replies.DUPLICATE_PARAMETER),
        ("MAIL FROM:<a@b.example> FOO=BAR", replies.UNKNOWN_PARAMETER),
        ("MAIL FROM:<a@b.example> SIZE=1\tBODY=7BIT", replies.BAD_PARAMETER),
        ("MAIL FROM:<jöran@bücher.example>", replies.UTF8_NOT_DECLARED),
        ("MAIL FROM:<a\x01@b.example>", replies.BAD_SENDER_ADDRESS),
        ("MAIL FROM:<Postmaster>", replies.BAD_SENDER_ADDRESS),
        ("MAIL FROM:a@b.example", replies.MAIL_SYNTAX),
        ("MAIL TO:<a@b.example>", replies.MAIL_SYNTAX),
        ("MAIL", replies.MAIL_SYNTAX),
    ],
)
def test_malformed_mail_commands(line: str, reply: Reply) -> None:
    dialogue = greeted()
    assert dialogue.say(line) == reply.to_bytes()
    assert dialogue.state is State.GREETED
    [event] = dialogue.of_type(CommandRejected)
    assert event.reply is reply  # type: ignore[attr-defined]


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\x1b", "\x7f"])
def test_control_characters_in_addresses_are_refused_before_any_hook(char: str) -> None:
    """SECURITY-CASES 6: 501 5.1.7 for a sender, 501 5.1.3 for a recipient."""
    dialogue = greeted()
    assert dialogue.say(f"MAIL FROM:<a{char}b@client.example>") == (
        b"501 5.1.7 Bad sender address syntax\r\n"
    )
    dialogue.say("MAIL FROM:<>")
    assert dialogue.say(f"RCPT TO:<r{char}s@our.example>") == (
        b"501 5.1.3 Bad recipient address syntax\r\n"
    )
    assert [type(event) for event in dialogue.events].count(RcptTo) == 0


def test_rfc6531_smtputf8_session() -> None:
    dialogue = greeted()
    assert dialogue.say("MAIL FROM:<jöran@bücher.example> SMTPUTF8") == replies.SENDER_OK.to_bytes()
    assert dialogue.say("RCPT TO:<用户@例子.example>") == replies.RECIPIENT_OK.to_bytes()
    assert dialogue.conn.recipients == ("用户@例子.example",)


@pytest.mark.parametrize(
    "line", ["MAIL FROM:<a@b.example> RET=HDRS", "MAIL FROM:<a@b.example> ENVID=x"]
)
def test_rfc5321_4_1_1_11_dsn_mail_parameters_not_offered_are_555(line: str) -> None:
    dialogue = greeted()
    assert dialogue.say(line) == replies.UNKNOWN_PARAMETER.to_bytes()
    assert not dialogue.of_type(MailFrom)


def test_rfc5321_4_1_1_11_dsn_rcpt_parameters_not_offered_are_555() -> None:
    dialogue = in_transaction(recipients=())
    for parameter in ("NOTIFY=NEVER", "ORCPT=rfc822;r@our.example"):
        line = f"RCPT TO:<r@our.example> {parameter}"
        assert dialogue.say(line) == replies.UNKNOWN_PARAMETER.to_bytes()
    assert not dialogue.of_type(RcptTo)


def test_rfc6531_smtputf8_not_offered_is_555_and_utf8_553() -> None:
    dialogue = greeted(smtputf8=False)
    assert dialogue.say("MAIL FROM:<a@b.example> SMTPUTF8") == replies.UNKNOWN_PARAMETER.to_bytes()
    assert dialogue.say("MAIL FROM:<jöran@bücher.example>") == replies.UTF8_NOT_DECLARED.to_bytes()


# -- RCPT --------------------------------------------------------------------------
def test_rfc5321_4_1_1_3_rcpt_to() -> None:
    dialogue = greeted(config(dsn=True))
    dialogue.say("MAIL FROM:<>")
    assert dialogue.say("RCPT TO:<r@our.example> NOTIFY=FAILURE ORCPT=rfc822;r@our.example") == (
        b"250 2.1.5 Recipient OK\r\n"
    )
    event = dialogue.events[-1]
    assert isinstance(event, RcptTo)
    assert event.recipient == "r@our.example"
    assert event.parameters.notify == ("FAILURE",)
    assert event.parameters.orcpt == "rfc822;r@our.example"
    assert dialogue.state is State.RCPT


def test_rfc5321_4_5_1_rcpt_to_postmaster_is_accepted() -> None:
    dialogue = in_transaction(recipients=())
    assert dialogue.say("RCPT TO:<Postmaster>") == replies.RECIPIENT_OK.to_bytes()
    assert dialogue.conn.recipients == ("Postmaster",)


# str.upper() takes "\u0131" (dotless i) to "I" and "\u017f" (long s) to "S".
@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("MA\u0131L FROM:<a@b.example>", 500),
        ("\u017fTARTTL\u017f", 500),
        ("RCPT TO:<po\u017ftmaster>", 501),
        ("RCPT TO:<r@our.example> NOTIFY=\u017fUCCESS", 501),
        ("BDAT 3 LA\u017fT", 501),
    ],
)
def test_keywords_are_ascii_and_no_other_letter_upper_cases_into_them(line: str, code: int) -> None:
    dialogue = in_transaction(config(dsn=True), recipients=())
    assert codes(dialogue.say(line)) == [code]
    assert not dialogue.of_type(RcptTo)


def test_rcpt_to_null_path_is_501() -> None:
    dialogue = in_transaction(recipients=())
    assert dialogue.say("RCPT TO:<>") == b"501 5.1.3 The null path is not a recipient\r\n"
    assert dialogue.state is State.MAIL


def test_rcpt_before_mail_is_503_need_mail() -> None:
    assert greeted().say("RCPT TO:<r@our.example>") == b"503 5.5.1 Need MAIL command first\r\n"


def test_a_rejected_recipient_is_not_kept() -> None:
    answers = {"bad@our.example": replies.NO_SUCH_USER}
    dialogue = greeted(decide=lambda event: answers.get(getattr(event, "recipient", "")))
    dialogue.say("MAIL FROM:<>")
    assert dialogue.say("RCPT TO:<bad@our.example>") == replies.NO_SUCH_USER.to_bytes()
    assert dialogue.state is State.MAIL
    assert dialogue.say("RCPT TO:<good@our.example>") == replies.RECIPIENT_OK.to_bytes()
    assert dialogue.conn.recipients == ("good@our.example",)


def test_rfc5321_4_5_3_1_8_a_hundred_recipients_are_accepted() -> None:
    recipients = [f"r{i}@our.example" for i in range(100)]
    dialogue = in_transaction(config(max_recipients=100), recipients=recipients)
    assert dialogue.conn.recipients == tuple(recipients)
    errors = dialogue.conn.error_count
    # Past the limit: 452 4.5.3, the earlier ones kept, not counted as an error.
    out = dialogue.say("RCPT TO:<r100@our.example>", "RCPT TO:<r101@our.example>")
    assert out == replies.TOO_MANY_RECIPIENTS.to_bytes() * 2
    assert (replies.TOO_MANY_RECIPIENTS.code, replies.TOO_MANY_RECIPIENTS.enhanced) == (
        452,
        "4.5.3",
    )
    assert dialogue.conn.recipients == tuple(recipients)
    assert dialogue.conn.error_count == errors
    assert dialogue.say("DATA") == replies.START_DATA.to_bytes()


def test_session_config_refuses_fewer_than_100_recipients_and_no_size() -> None:
    with pytest.raises(ValueError, match="100"):
        config(max_recipients=99)
    with pytest.raises(ValueError, match="positive"):
        config(max_message_size=0)


# -- DATA sequencing -----------------------------------------------------------------
def test_data_without_recipients_is_503_need_rcpt() -> None:
    dialogue = greeted()
    dialogue.say("MAIL FROM:<>")
    assert dialogue.say("DATA") == b"503 5.5.1 Need RCPT command first\r\n"


def test_data_without_mail_is_503_need_mail() -> None:
    assert greeted().say("DATA") == replies.NEED_MAIL.to_bytes()


def test_data_with_an_argument_is_501() -> None:
    assert in_transaction().say("DATA now") == replies.NO_ARGUMENTS_ALLOWED.to_bytes()


def test_rfc3030_3_binarymime_with_data_is_503() -> None:
    dialogue = greeted()
    dialogue.say("MAIL FROM:<a@b.example> BODY=BINARYMIME", "RCPT TO:<r@our.example>")
    assert dialogue.say("DATA") == replies.BINARYMIME_NEEDS_BDAT.to_bytes()
    assert dialogue.state is State.RCPT


# -- RSET, NOOP, VRFY, HELP, QUIT, unknown ---------------------------------------
def test_rfc5321_4_1_1_5_rset_ends_the_transaction() -> None:
    dialogue = in_transaction()
    dialogue.events.clear()
    assert dialogue.say("RSET") == b"250 2.0.0 Reset OK\r\n"
    assert dialogue.events == [TransactionReset()]
    assert dialogue.state is State.GREETED
    assert dialogue.conn.sender is None
    assert dialogue.conn.extended, "RSET keeps the greeting"
    assert dialogue.say("DATA") == replies.NEED_MAIL.to_bytes()


def test_rset_outside_a_transaction_has_no_reset_event() -> None:
    dialogue = Dialogue()
    assert dialogue.say("RSET") == replies.RESET_OK.to_bytes()
    assert dialogue.state is State.CONNECTED
    dialogue.say("EHLO x")
    dialogue.events.clear()
    assert dialogue.say("RSET") == replies.RESET_OK.to_bytes()
    assert dialogue.events == []


def test_rset_with_an_argument_is_501() -> None:
    dialogue = in_transaction()
    assert dialogue.say("RSET now") == replies.NO_ARGUMENTS_ALLOWED.to_bytes()
    assert dialogue.state is State.RCPT


def test_rfc5321_4_1_1_9_noop_may_carry_a_string() -> None:
    dialogue = Dialogue()
    assert dialogue.say("NOOP", "NOOP anything at all") == b"250 2.0.0 OK\r\n" * 2
    assert dialogue.events == []


def test_rfc5321_3_5_3_vrfy_is_252() -> None:
    dialogue = greeted()
    assert dialogue.say("VRFY postmaster") == (
        b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    )
    assert dialogue.say("VRFY") == replies.VRFY_SYNTAX.to_bytes()


def test_rfc5321_4_1_1_8_help() -> None:
    out = Dialogue().say("HELP", "HELP MAIL")
    assert codes(out) == [214, 214]


@pytest.mark.parametrize("verb", ["EXPN list", "TURN", "ETRN our.example", "BURL imap://x LAST"])
def test_rfc5321_4_2_4_known_but_unimplemented_commands_are_502(verb: str) -> None:
    assert greeted().say(verb) == replies.NOT_IMPLEMENTED.to_bytes()


@pytest.mark.parametrize("line", ["XYZZY", "", "MAILFROM:<a@b.example>", "NOOP\x00", "\tNOOP"])
def test_rfc5321_4_2_4_unknown_commands_are_500(line: str) -> None:
    dialogue = greeted()
    assert dialogue.say(line) == b"500 5.5.2 Syntax error, command unrecognized\r\n"
    assert dialogue.state is State.GREETED


def test_rfc5321_4_1_1_10_quit() -> None:
    dialogue = in_transaction()
    dialogue.events.clear()
    assert dialogue.say("QUIT", "NOOP") == b"221 2.0.0 Bye\r\n"
    assert dialogue.events == [TransactionReset(), ConnectionClosed(reply=replies.CLOSING)]
    assert dialogue.state is State.CLOSED
    assert replies.CLOSING.closes
    # Nothing more is read.
    dialogue.conn.receive_data(b"NOOP\r\n")
    assert dialogue.conn.next_event() is PAUSED
    assert dialogue.conn.data_to_send() == b""


# -- shutting down (RFC 5321 3.8) ------------------------------------------------
SHUTDOWN = replies.SHUTTING_DOWN


@pytest.mark.parametrize(
    "line",
    [
        "NOOP",
        "RSET",
        "EHLO again",
        "MAIL FROM:<a@b.example>",
        "XYZZY",
        "BDAT 5 LAST",
        # Lines that would otherwise be refused for their form, and the
        # session left open for another.
        "QUIT now",
        b"NOOP\nX",
        b"\xff\xfe",
        "NOOP " + "x" * limits.MAX_LINE,
    ],
)
def test_rfc5321_3_8_after_shut_down_a_command_between_transactions_gets_421(
    line: str | bytes,
) -> None:
    dialogue = greeted()
    dialogue.conn.shut_down(SHUTDOWN)
    dialogue.events.clear()
    # The next line is never read, though it looks like a command.
    assert dialogue.say(line, "QUIT") == SHUTDOWN.to_bytes()
    assert dialogue.events == [ConnectionClosed(reply=SHUTDOWN)]
    assert dialogue.state is State.CLOSED


def test_after_shut_down_a_refused_chunk_outside_a_transaction_is_not_read_on() -> None:
    dialogue = greeted()
    dialogue.send(b"BDAT 1000\r\n" + b"x" * 10)  # no MAIL: refused, being drained
    assert dialogue.conn.discarding
    dialogue.conn.shut_down(SHUTDOWN)
    assert dialogue.send(b"x" * 10) == SHUTDOWN.to_bytes()
    assert dialogue.state is State.CLOSED


@pytest.mark.parametrize("line", ["quit", "QUIT ", "quit\t"])
def test_after_shut_down_quit_still_gets_221(line: str) -> None:
    dialogue = greeted()
    dialogue.conn.shut_down(SHUTDOWN)
    assert dialogue.say(line) == b"221 2.0.0 Bye\r\n"
    assert dialogue.events[-1] == ConnectionClosed(reply=replies.CLOSING)


def test_after_shut_down_the_transaction_under_way_finishes_first() -> None:
    dialogue = in_transaction()
    dialogue.conn.shut_down(SHUTDOWN)
    out = dialogue.say(
        "RCPT TO:<second@our.example>",
        "DATA",
        b"Subject: x\r\n\r\nbody\r\n.",
        "MAIL FROM:<c@d.example>",
    )
    assert codes(out) == [250, 354, 250, 421]
    assert len(dialogue.of_type(MessageComplete)) == 1
    assert dialogue.state is State.CLOSED


def test_after_shut_down_before_the_greeting_is_answered_ehlo_gets_421() -> None:
    dialogue = Dialogue()
    dialogue.conn.shut_down(SHUTDOWN)
    assert dialogue.say(f"EHLO {CLIENT}") == SHUTDOWN.to_bytes()


def test_shut_down_takes_only_a_421() -> None:
    with pytest.raises(LocalProtocolError):
        greeted().conn.shut_down(replies.CLOSING)


def test_quit_with_an_argument_is_501() -> None:
    dialogue = greeted()
    assert dialogue.say("QUIT now") == replies.NO_ARGUMENTS_ALLOWED.to_bytes()
    assert dialogue.state is State.GREETED


def test_commands_are_case_insensitive() -> None:
    dialogue = Dialogue()
    out = dialogue.say("ehlo x", "mail from:<a@b.example>", "rcpt to:<r@our.example>", "Data")
    assert codes(out) == [250, 250, 250, 354]


# -- line syntax ----------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_2_3_8_only_crlf_ends_a_command(split: Split) -> None:
    """``NOOP\\nNOOP\\r\\n`` is one error, never two commands; the CR is never echoed."""
    dialogue = greeted()
    out = dialogue.send(b"NOOP\nNOOP\r\nNOOP\rQUIT\r\n", split)
    assert out == replies.BARE_LINE_ENDING_IN_COMMAND.to_bytes() * 2
    assert (
        replies.BARE_LINE_ENDING_IN_COMMAND.code,
        replies.BARE_LINE_ENDING_IN_COMMAND.enhanced,
    ) == (
        500,
        "5.5.2",
    )
    assert dialogue.conn.error_count == 2
    assert dialogue.state is State.GREETED


@pytest.mark.parametrize("trailing", [" ", "   ", "\t", " \t "], ids=["sp", "sps", "ht", "mixed"])
def test_rfc5321_4_1_1_trailing_white_space_is_tolerated(trailing: str) -> None:
    """'SMTP receivers SHOULD tolerate trailing white space before the terminating <CRLF>.'"""
    dialogue = Dialogue()
    lines = [
        "EHLO client.example",
        "NOOP",
        "HELP",
        "VRFY postmaster",
        "MAIL FROM:<a@b.example> SIZE=10",
        "RCPT TO:<r@our.example>",
        "RSET",
        "MAIL FROM:<a@b.example>",
        "RCPT TO:<r@our.example>",
        "DATA",
    ]
    out = dialogue.say(*(line + trailing for line in lines))
    assert codes(out) == [250, 250, 214, 252, 250, 250, 250, 250, 250, 354]
    assert dialogue.conn.helo_name == "client.example"
    assert codes(dialogue.say("body", ".")) == [250]
    dialogue.say("MAIL FROM:<a@b.example>", "RCPT TO:<r@our.example>")
    assert codes(dialogue.send(f"BDAT 3 LAST{trailing}\r\nabc".encode())) == [250]
    assert dialogue.body().endswith(b"abc")
    assert dialogue.say("QUIT" + trailing) == replies.CLOSING.to_bytes()
    assert dialogue.conn.error_count == 0


def test_a_message_accepted_forgives_the_errors_before_it_and_a_refused_one_does_not() -> None:
    refuse = [True]

    def decide(event: object) -> Reply | None:
        if isinstance(event, MessageComplete) and refuse[0]:
            return replies.TEMPORARY_FAILURE
        return None

    dialogue = greeted(decide=decide)
    dialogue.say("XYZZY", "MAIL FROM:<a@b.example>", "RCPT TO:<r@our.example>", "DATA", "x", ".")
    assert dialogue.conn.error_count == 1  # the unknown command, still counted
    refuse[0] = False
    dialogue.say("XYZZY", "MAIL FROM:<a@b.example>", "RCPT TO:<r@our.example>", "DATA", "x", ".")
    assert dialogue.conn.error_count == 0


def test_rfc5321_4_2_2_a_known_command_with_an_argument_not_utf8_is_501() -> None:
    dialogue = greeted()
    assert (
        dialogue.say(b"MAIL FROM:<\xff@b.example>") == b"501 5.5.4 Argument is not valid UTF-8\r\n"
    )
    assert dialogue.say(b"NOOP \xff") == b"501 5.5.4 Argument is not valid UTF-8\r\n"
    assert dialogue.state is State.GREETED


def test_a_command_line_not_utf8_that_names_no_command_is_500() -> None:
    dialogue = greeted()
    assert dialogue.say(b"M\xffIL FROM:<a@b.example>") == replies.INVALID_UTF8.to_bytes()
    assert dialogue.say(b"\xff") == replies.INVALID_UTF8.to_bytes()


def test_rfc5321_4_5_3_1_4_noop_with_600_octets_is_500_and_the_session_goes_on() -> None:
    dialogue = greeted()
    out = dialogue.say(b"NOOP " + b"A" * 600, b"NOOP")
    assert out == b"500 5.5.2 Line too long\r\n" + replies.NOOP_OK.to_bytes()
    assert dialogue.conn.error_count == 1
    [event] = dialogue.of_type(CommandRejected)
    assert event == CommandRejected(reply=replies.LINE_TOO_LONG, error_count=1)


def test_unknown_command_of_600_octets_is_line_too_long() -> None:
    assert greeted().say(b"X" * 600) == replies.LINE_TOO_LONG.to_bytes()


def test_a_command_line_of_512_octets_is_read_513_is_too_long() -> None:
    dialogue = greeted()
    line = b"NOOP " + b"x" * (limits.COMMAND_LINE - 7)
    assert len(line) + 2 == limits.COMMAND_LINE
    assert dialogue.say(line) == replies.NOOP_OK.to_bytes()
    assert dialogue.say(line + b"x") == replies.LINE_TOO_LONG.to_bytes()


def test_rfc1870_3_and_rfc4954_5_mail_may_be_longer_by_its_parameters() -> None:
    dialogue = greeted(config(dsn=True))
    envid = "e" * 100
    auth = "a" * 400
    line = f"MAIL FROM:<{'l' * 64}@{'d' * 180}> SIZE=1000 ENVID={envid} AUTH={auth} RET=FULL"
    assert limits.COMMAND_LINE < len(line) + 2 <= limits.MAIL_LINE
    assert dialogue.say(line) == replies.SENDER_OK.to_bytes()
    dialogue.say("RSET")
    padded = line + " " * (limits.MAIL_LINE - len(line) - 1)
    assert dialogue.say(padded) == replies.LINE_TOO_LONG.to_bytes()


def test_rfc3461_rcpt_may_be_longer_by_its_dsn_parameters() -> None:
    dialogue = in_transaction(config(dsn=True), recipients=())
    orcpt = "rfc822;" + "o" * 480
    line = f"RCPT TO:<{'l' * 64}@{'d' * 180}> ORCPT={orcpt}"
    assert limits.COMMAND_LINE < len(line) + 2 <= limits.RCPT_LINE
    assert dialogue.say(line) == replies.RECIPIENT_OK.to_bytes()
    padded = line + " " * (limits.RCPT_LINE - len(line) - 1)
    assert dialogue.say(padded) == replies.LINE_TOO_LONG.to_bytes()


def test_ten_megabytes_without_a_line_end_keep_the_buffer_bounded() -> None:
    """SECURITY-CASES 4: memory stays bounded; the line is refused once it ends."""
    dialogue = greeted()
    conn = dialogue.conn
    conn.receive_data(b"A" * 10_000_000)
    assert conn.next_event() is NEED_DATA
    assert len(conn._buffer) <= limits.MAX_LINE
    assert conn.pending_bytes == len(conn._buffer)
    # Dropped unread, the line is still unfinished: the client is mid-line.
    assert conn.mid_line
    for _ in range(5):
        conn.receive_data(b"A" * 100_000)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buffer) <= limits.MAX_LINE
    assert conn.data_to_send() == b""
    out = dialogue.say("", "NOOP")
    assert out == replies.LINE_TOO_LONG.to_bytes() + replies.NOOP_OK.to_bytes()
    assert conn.pending_bytes == 0
    assert not conn.mid_line


def test_error_count_counts_every_refusal() -> None:
    dialogue = greeted()
    dialogue.say("XYZZY", "DATA", "MAIL FROM:<bad>", "RCPT TO:<r@our.example>")
    rejected = dialogue.of_type(CommandRejected)
    assert [event.error_count for event in rejected] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert dialogue.conn.error_count == 4


@pytest.mark.parametrize(
    "line", [b"GET / HTTP/1.1", b"POST /submit HTTP/1.0", b"CONNECT mx:25 HTTP/1.1"]
)
def test_an_http_request_is_junk_and_ends_the_session(line: bytes) -> None:
    """SECURITY-CASES 4: cross-protocol requests get 554 and a ProtocolError."""
    dialogue = Dialogue()
    out = dialogue.send(line + b"\r\nHost: x\r\n\r\n")
    assert dialogue.error is not None
    assert dialogue.error.reply is replies.NOT_SMTP
    assert out == replies.NOT_SMTP.to_bytes()
    assert dialogue.state is State.CLOSED
    assert dialogue.conn.next_event() is PAUSED


# -- enhanced status codes (RFC 2034) ----------------------------------------------
SESSION = [
    "EHLO client.example",
    "NOOP",
    "VRFY x",
    "HELP",
    "XYZZY",
    "MAIL FROM:<a@b.example>",
    "RCPT TO:<r@our.example>",
    "RCPT TO:<>",
    "DATA",
    "body",
    ".",
    "RSET",
    "BDAT 0",
    "QUIT",
]


def test_rfc2034_3_enhanced_codes_on_every_reply_but_greeting_ehlo_and_3xx() -> None:
    dialogue = Dialogue()
    answers = parse_replies(dialogue.greeting + dialogue.say(*SESSION))
    assert answers[0].code == 220
    assert answers[0].enhanced is None
    assert answers[1].code == 250
    assert answers[1].enhanced is None
    for answer in answers[2:]:
        if answer.code // 100 == 3:
            assert answer.enhanced is None
        else:
            assert answer.enhanced is not None, answer
            assert answer.enhanced[0] == str(answer.code)[0]
    assert {answer.code for answer in answers} >= {214, 252, 250, 500, 501, 503, 354, 221}


def test_rfc2034_enhanced_codes_absent_when_disabled() -> None:
    dialogue = Dialogue(enhanced_status_codes=False)
    out = dialogue.greeting + dialogue.say(*SESSION)
    answers = parse_replies(out)
    assert len(answers) == len(parse_replies(Dialogue().say(*SESSION))) + 1
    assert all(answer.enhanced is None for answer in answers)
    assert b"ENHANCEDSTATUSCODES" not in out
    assert b"2.0.0" not in out
    # The application's own replies follow the setting too.
    dialogue = greeted(
        enhanced_status_codes=False,
        decide=lambda event: replies.RELAY_DENIED if isinstance(event, RcptTo) else None,
    )
    dialogue.say("MAIL FROM:<>")
    assert dialogue.say("RCPT TO:<x@victim.example>") == b"550 Relaying denied\r\n"


# -- pipelining (RFC 2920) ----------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc2920_a_group_is_answered_in_order_in_one_block(split: Split) -> None:
    dialogue = Dialogue()
    group = (
        b"EHLO client.example\r\n"
        b"MAIL FROM:<a@b.example>\r\n"
        b"RCPT TO:<r1@our.example>\r\n"
        b"RCPT TO:<>\r\n"
        b"RCPT TO:<r2@our.example>\r\n"
        b"DATA\r\n"
    )
    conn = dialogue.conn
    for piece in split(group):
        conn.receive_data(piece)
    # Nothing is sent while the group is being read: one block at NEED_DATA.
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, MailFrom | RcptTo):
            conn.accept()
    answers = parse_replies(conn.data_to_send())
    assert [answer.code for answer in answers] == [250, 250, 250, 501, 250, 354]
    assert conn.recipients == ("r1@our.example", "r2@our.example")
    assert conn.state is State.DATA


def test_rfc2920_3_1_commands_after_data_wait_for_the_message() -> None:
    dialogue = in_transaction()
    out = dialogue.send(b"DATA\r\nQUIT\r\n.\r\nNOOP\r\n")
    assert codes(out) == [354, 250, 250]
    assert dialogue.body() == b"QUIT\r\n"


# -- STARTTLS (RFC 3207) -------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc3207_4_2_bytes_after_starttls_are_never_read(split: Split) -> None:
    """CVE-2011-0411: ``STARTTLS\\r\\nEHLO injected\\r\\n`` in one write."""
    dialogue = greeted(MX)
    dialogue.events.clear()
    out = dialogue.send(b"STARTTLS\r\nEHLO injected\r\nMAIL FROM:<x@y.example>\r\n", split)
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    assert dialogue.events == [StartTLS()]
    conn = dialogue.conn
    assert conn.state is State.TLS
    if split is SPLITS["whole"]:
        assert conn.trailing_data == b"EHLO injected\r\nMAIL FROM:<x@y.example>\r\n"
    else:
        # Bytes that arrive after the 220 are the TLS layer's, not ours.
        assert b"EHLO injected\r\n".startswith(conn.trailing_data)
    for _ in range(3):
        conn.receive_data(b"EHLO more\r\n")
        assert conn.next_event() is PAUSED
    assert conn.data_to_send() == b""
    assert conn.pending_bytes == 0


def test_rfc3207_4_2_trailing_data_is_exactly_the_bytes_after_starttls() -> None:
    dialogue = greeted(MX)
    dialogue.conn.receive_data(b"STARTTLS\r\nEHLO injected\r\n")
    assert dialogue.conn.next_event() == StartTLS()
    assert dialogue.conn.trailing_data == b"EHLO injected\r\n"
    assert dialogue.conn.next_event() is PAUSED
    assert dialogue.conn.next_event() is PAUSED


def test_rfc3207_4_2_a_fresh_session_after_tls_starts_over() -> None:
    before = in_transaction(MX)
    before.say("RSET", "STARTTLS")
    after = Dialogue(config(offer_starttls=True, tls_active=True), greet=False)
    assert after.say("MAIL FROM:<a@b.example>") == replies.NEED_HELO.to_bytes()
    keywords = parse_replies(after.say("EHLO client.example"))[0].lines
    assert "STARTTLS" not in keywords
    assert after.say("STARTTLS") == replies.TLS_ALREADY_ACTIVE.to_bytes()


@pytest.mark.parametrize(
    ("session", "prefix", "line", "reply"),
    [
        (MX, ["EHLO x"], "STARTTLS x", replies.NO_ARGUMENTS_ALLOWED),
        (config(), ["EHLO x"], "STARTTLS", replies.STARTTLS_NOT_AVAILABLE),
        (MX, [], "STARTTLS", replies.NEED_HELO),
        (MX, ["HELO x"], "STARTTLS", replies.NEED_EHLO),
        (MX, ["EHLO x", "MAIL FROM:<>"], "STARTTLS", replies.BAD_SEQUENCE),
    ],
)
def test_rfc3207_4_refused_starttls(
    session: SessionConfig, prefix: list[str], line: str, reply: Reply
) -> None:
    dialogue = Dialogue(session)
    for command in prefix:
        dialogue.say(command)
    state = dialogue.state
    assert dialogue.say(line) == reply.to_bytes()
    assert dialogue.state is state
    assert dialogue.conn.trailing_data == b""


# -- AUTH required (RFC 4954 section 6) ----------------------------------------------
@pytest.mark.parametrize(
    "line", ["MAIL FROM:<a@b.example>", "RCPT TO:<r@our.example>", "DATA", "BDAT 0 LAST"]
)
def test_rfc4954_6_transaction_commands_before_auth_are_530(line: str) -> None:
    dialogue = greeted(SUBMISSION)
    assert dialogue.say(line) == b"530 5.7.0 Authentication required\r\n"
    assert dialogue.state is State.GREETED


@pytest.mark.parametrize("line", ["MAIL FROM:<a@b.example>", "DATA", "BDAT 0 LAST"])
def test_before_ehlo_the_sequence_error_comes_first(line: str) -> None:
    assert Dialogue(SUBMISSION).say(line) == replies.NEED_HELO.to_bytes()


def test_after_auth_the_transaction_is_allowed() -> None:
    dialogue = greeted(SUBMISSION)
    dialogue.say(f"AUTH PLAIN {plain('alice', 'pw')}")
    out = dialogue.say("MAIL FROM:<alice@our.example>", "RCPT TO:<x@victim.example>", "DATA")
    assert codes(out) == [250, 250, 354]


# -- the application's side of the API ---------------------------------------------
def test_decisions_out_of_turn_are_local_protocol_errors() -> None:
    conn = ServerConnection(config())
    with pytest.raises(LocalProtocolError):
        conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.reject(replies.NO_SUCH_USER)
    conn.receive_data(b"EHLO x\r\nMAIL FROM:<>\r\n")
    assert isinstance(conn.next_event(), Hello)
    assert isinstance(conn.next_event(), MailFrom)
    with pytest.raises(LocalProtocolError, match="2xx or 3xx"):
        conn.accept(replies.NO_SUCH_USER)
    # The misuse is refused without losing the decision: MAIL still waits.
    conn.receive_data(b"RCPT TO:<r@our.example>\r\n")
    assert conn.next_event() is PAUSED
    conn.accept()
    assert conn.data_to_send().endswith(replies.SENDER_OK.to_bytes())
    assert isinstance(conn.next_event(), RcptTo)


def test_reject_needs_a_failure_reply() -> None:
    conn = ServerConnection(config())
    conn.receive_data(b"EHLO x\r\nMAIL FROM:<>\r\n")
    conn.next_event()
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="4xx or 5xx"):
        conn.reject(replies.OK)
    assert conn.next_event() is PAUSED
    conn.reject(replies.SENDER_NOT_OWNED)
    assert conn.data_to_send().endswith(replies.SENDER_NOT_OWNED.to_bytes())


def test_data_after_eof_is_a_local_protocol_error() -> None:
    conn = ServerConnection(config())
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"NOOP\r\n")


def test_eof_ends_the_session_with_connection_closed() -> None:
    dialogue = greeted()
    dialogue.conn.receive_data(b"NOOP\r\nNOO")
    events = dialogue.eof()
    assert events == [ConnectionClosed(reply=None)]
    assert dialogue.conn.data_to_send() == replies.NOOP_OK.to_bytes()
    assert dialogue.state is State.CLOSED
    # Further EOFs and data are ignored once closed.
    dialogue.conn.receive_data(b"")
    dialogue.conn.receive_data(b"NOOP\r\n")
    assert dialogue.conn.next_event() is PAUSED


def test_eof_with_a_decision_pending_waits_for_it() -> None:
    dialogue = greeted(decide=lambda event: LEAVE)
    dialogue.conn.receive_data(b"MAIL FROM:<>\r\n")
    dialogue.conn.receive_data(b"")
    assert isinstance(dialogue.conn.next_event(), MailFrom)
    assert dialogue.conn.next_event() is PAUSED
    dialogue.conn.accept()
    assert dialogue.conn.next_event() == ConnectionClosed(reply=None)


def test_abort_sends_its_reply_and_closes() -> None:
    dialogue = greeted(decide=lambda event: LEAVE)
    dialogue.feed(b"MAIL FROM:<>\r\n")
    dialogue.conn.abort(replies.TIMEOUT)
    assert dialogue.conn.data_to_send() == b"421 4.4.2 Timeout, closing connection\r\n"
    assert dialogue.state is State.CLOSED
    assert dialogue.conn.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        dialogue.conn.accept()


def test_data_to_send_forgets_what_it_returned() -> None:
    conn = ServerConnection(config())
    conn.send_greeting()
    assert conn.data_to_send().startswith(b"220 ")
    assert conn.data_to_send() == b""


def test_a_protocol_error_is_the_only_exception_and_carries_its_reply() -> None:
    conn = ServerConnection(config())
    conn.receive_data(b"EHLO x\r\nBDAT 99999999999999999999999 LAST\r\n")
    conn.next_event()
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()
    assert caught.value.reply is replies.MESSAGE_TOO_BIG
    assert str(caught.value) == "552 5.3.4 Message size exceeds fixed limit"


def test_sentinels_name_themselves() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert repr(PAUSED) == "PAUSED"
    assert NEED_DATA is not PAUSED


# -- commands without mail ------------------------------------------------------------
def test_non_mail_commands_past_the_limit_end_the_session() -> None:
    """A client may not hold a connection with NOOPs: Postfix's junk command limit."""
    dialogue = Dialogue(max_non_mail_commands=5)
    out = dialogue.say("EHLO c", "NOOP", "VRFY x", "HELP", "RSET")
    assert codes(out)[-4:] == [250, 252, 214, 250]
    assert dialogue.error is None
    out = dialogue.say("NOOP")
    assert dialogue.error is not None
    assert dialogue.error.reply is replies.TOO_MANY_COMMANDS
    assert out == replies.TOO_MANY_COMMANDS.to_bytes()
    assert dialogue.state is State.CLOSED


def test_an_accepted_mail_resets_the_non_mail_count() -> None:
    dialogue = Dialogue(max_non_mail_commands=3)
    dialogue.say("EHLO c", "NOOP", "NOOP")
    dialogue.say("MAIL FROM:<a@example.org>", "RSET", "NOOP", "NOOP")
    assert dialogue.error is None
    dialogue.say("NOOP")
    assert dialogue.error is not None
    assert dialogue.error.reply is replies.TOO_MANY_COMMANDS
