"""Paths and ESMTP parameters (RFC 5321 4.1.2, 4.1.3, 4.5.3.1; RFC 1870, 3461, 4954, 6152, 6531).

The parsers are pure functions of one argument string; the same lines are
also fed to a connection whole, byte by byte and with a command after them,
which must give the same events.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from protocol_harness import SPLITS, Dialogue, config, greeted

from smtp_recv.protocol import (
    CommandRejected,
    MailFrom,
    MailParameters,
    RcptParameters,
    RcptTo,
    Reply,
    limits,
    replies,
)
from smtp_recv.protocol._addresses import (
    parse_helo_name,
    parse_mail,
    parse_path,
    parse_rcpt,
    split_path_and_parameters,
)
from smtp_recv.protocol._errors import _Refusal

SENDER = replies.BAD_SENDER_ADDRESS
RECIPIENT = replies.BAD_RECIPIENT_ADDRESS


def refusal_of(call: Callable[[], object]) -> Reply:
    with pytest.raises(_Refusal) as caught:
        call()
    return caught.value.reply


def mail(
    argument: str, *, smtputf8: bool = True, chunking: bool = True, dsn: bool = True
) -> tuple[str, MailParameters]:
    return parse_mail(
        argument, smtputf8_offered=smtputf8, chunking_offered=chunking, dsn_offered=dsn
    )


def rcpt(argument: str, *, smtputf8: bool = False, dsn: bool = True) -> tuple[str, RcptParameters]:
    return parse_rcpt(argument, smtputf8=smtputf8, dsn_offered=dsn)


# -- parse_path ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "mailbox"),
    [
        ("<>", ""),
        ("<user@our.example>", "user@our.example"),
        ("<first.last+tag@sub.our.example>", "first.last+tag@sub.our.example"),
        ("<!#$%&'*+/=?^_`{|}~-@x.example>", "!#$%&'*+/=?^_`{|}~-@x.example"),
        ("<user@localhost>", "user@localhost"),
        ("<user@1host-name.example>", "user@1host-name.example"),
    ],
)
def test_rfc5321_4_1_2_paths(path: str, mailbox: str) -> None:
    assert parse_path(path, SENDER) == mailbox


@pytest.mark.parametrize(
    ("path", "mailbox"),
    [
        ("<@relay.example:user@our.example>", "user@our.example"),
        ("<@a.example,@b.example:user@our.example>", "user@our.example"),
    ],
)
def test_rfc5321_4_1_1_3_source_routes_are_accepted_and_stripped(path: str, mailbox: str) -> None:
    assert parse_path(path, RECIPIENT) == mailbox


@pytest.mark.parametrize(
    "path",
    [
        '<"john doe"@our.example>',
        '<"a\\"quote"@our.example>',
        '<"back\\\\slash"@our.example>',
        '<"a>b"@our.example>',
        '<"@"@our.example>',
        '<""@our.example>',
    ],
)
def test_rfc5321_4_1_2_quoted_local_parts(path: str) -> None:
    assert parse_path(path, RECIPIENT) == path[1:-1]


@pytest.mark.parametrize(
    "literal",
    [
        "[192.0.2.1]",
        "[0.0.0.0]",
        "[255.255.255.255]",
        "[010.000.0.1]",  # Snum is 1*3DIGIT: leading zeros are syntax
        "[IPv6:2001:db8::1]",
        "[ipv6:2001:DB8:0:0:0:0:0:1]",
        "[IPv6:::ffff:192.0.2.1]",
        "[IPv6:::]",
        "[x-tag:any-dcontent]",
        "[future:!\"#$%&'()*+,-./]",
    ],
)
def test_rfc5321_4_1_3_address_literals(literal: str) -> None:
    assert parse_path(f"<user@{literal}>", RECIPIENT) == f"user@{literal}"


@pytest.mark.parametrize(
    "literal",
    [
        "[192.0.2]",
        "[192.0.2.256]",
        "[192.0.2.1.5]",
        "[1234.0.0.1]",
        "[192.0.2.]",
        "[a.b.c.d]",
        "[IPv6:2001:db8::g]",
        "[IPv6:1:2:3:4:5:6:7:8:9]",
        "[IPv6:fe80::1%eth0]",  # no zone index in IPv6-addr
        "[IPv6:192.0.2.1]",
        "[-tag:x]",
        "[tag-:x]",
        "[tag:]",
        "[:x]",
        "[]",
        "[a[b]",
        "[192.0.2.1\\]",
    ],
)
def test_rfc5321_4_1_3_malformed_address_literals_are_refused(literal: str) -> None:
    assert refusal_of(lambda: parse_path(f"<user@{literal}>", RECIPIENT)) is RECIPIENT


def test_rfc5321_4_5_1_postmaster_without_a_domain_only_as_a_recipient() -> None:
    assert parse_path("<Postmaster>", RECIPIENT, postmaster=True) == "Postmaster"
    # "Postmaster" is case-insensitive here (RFC 5321 4.1.1.3).
    assert parse_path("<postMASTER>", RECIPIENT, postmaster=True) == "postMASTER"
    # A reverse-path is "<>" or a whole mailbox: MAIL has no bare <Postmaster>.
    assert refusal_of(lambda: parse_path("<Postmaster>", SENDER)) is SENDER
    # Only the bare form: no source route before it.
    assert refusal_of(lambda: parse_path("<@a.example:Postmaster>", RECIPIENT, postmaster=True))
    assert refusal_of(lambda: parse_path("<Postmistress>", RECIPIENT, postmaster=True))


@pytest.mark.parametrize(
    "path",
    [
        "",
        "<",
        ">",
        "user@our.example",
        "<user@our.example",
        "user@our.example>",
        "<user>",
        "<@our.example>",
        "<user@>",
        "<user@@our.example>",
        "<.user@our.example>",
        "<user.@our.example>",
        "<us..er@our.example>",
        "<user@-our.example>",
        "<user@our-.example>",
        "<user@our..example>",
        "<user@our.example.>",
        "<user name@our.example>",
        "<user@our example>",
        '<"unterminated@our.example>',
        '<"bad\\\x01"@our.example>',
        "<@relay.example:>",
        "<@:user@our.example>",
        "<<user@our.example>>",
    ],
)
def test_malformed_paths_are_refused_with_the_callers_reply(path: str) -> None:
    assert refusal_of(lambda: parse_path(path, SENDER)) is SENDER
    assert refusal_of(lambda: parse_path(path, RECIPIENT)) is RECIPIENT


@pytest.mark.parametrize("char", [chr(c) for c in [*range(0x20), 0x7F, 0x80, 0x85, 0x9F]])
def test_control_characters_and_nul_are_refused_anywhere_in_a_path(char: str) -> None:
    """SECURITY-CASES 6: no hook ever sees a control character or NUL."""
    for path in (
        f"<us{char}er@our.example>",
        f"<user@our{char}.example>",
        f'<"us{char}er"@our.example>',
        f"<user@[192.0.2.1{char}]>",
        f"<@relay{char}.example:user@our.example>",
    ):
        assert refusal_of(lambda path=path: parse_path(path, SENDER)) is SENDER
        assert refusal_of(lambda path=path: parse_path(path, RECIPIENT)) is RECIPIENT


def test_rfc6531_utf8_mailboxes_parse() -> None:
    assert parse_path("<jöran@bücher.example>", RECIPIENT) == "jöran@bücher.example"
    assert parse_path('<"用户 名"@例子.example>', RECIPIENT) == '"用户 名"@例子.example'


def test_rfc5321_4_5_3_1_1_local_part_is_at_most_64_octets() -> None:
    assert parse_path(f"<{'l' * 64}@our.example>", SENDER) == f"{'l' * 64}@our.example"
    assert refusal_of(lambda: parse_path(f"<{'l' * 65}@our.example>", SENDER)) is SENDER
    # Octets, not characters: 33 two-octet characters are 66 octets.
    assert refusal_of(lambda: parse_path(f"<{'é' * 33}@our.example>", SENDER)) is SENDER
    assert parse_path(f"<{'é' * 32}@our.example>", SENDER)


def test_rfc5321_4_5_3_1_3_path_is_at_most_256_octets() -> None:
    # "<" + local (60) + "@" + domain + ">" with labels of 63.
    def path_of(length: int) -> str:
        domain_length = length - 60 - 3
        labels = []
        while domain_length > 0:
            label = min(63, domain_length)
            labels.append("d" * label)
            domain_length -= label + 1
        domain = ".".join(labels)
        return f"<{'l' * 60}@{domain}>"

    exact = path_of(256)
    assert len(exact) == 256
    assert parse_path(exact, RECIPIENT)
    longer = path_of(258)
    assert len(longer) > 256
    assert refusal_of(lambda: parse_path(longer, RECIPIENT)) is RECIPIENT


def test_rfc5321_4_5_3_1_2_domain_is_at_most_255_octets(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the 256-octet path limit a 256-octet domain never gets this far,
    so lift the path limit to see the domain rule on its own."""
    monkeypatch.setattr(limits, "PATH", 1000)
    domain_255 = ".".join(["d" * 63] * 4)  # 4 * 63 + 3 = 255
    assert len(domain_255) == 255
    assert parse_path(f"<u@{domain_255}>", RECIPIENT) == f"u@{domain_255}"
    domain_256 = domain_255 + "e"
    assert refusal_of(lambda: parse_path(f"<u@{domain_256}>", RECIPIENT)) is RECIPIENT


# -- splitting MAIL FROM: / RCPT TO: ------------------------------------------
def test_split_path_and_parameters() -> None:
    syntax = replies.MAIL_SYNTAX
    assert split_path_and_parameters("FROM:<a@b.example>", "FROM:", syntax) == ("<a@b.example>", [])
    # Many clients put a space after the colon; it is tolerated.
    assert split_path_and_parameters("from: <a@b.example> SIZE=1", "FROM:", syntax) == (
        "<a@b.example>",
        ["SIZE=1"],
    )
    # Runs of spaces between parameters are tolerated too.
    assert split_path_and_parameters("FROM:<> A=1  B ", "FROM:", syntax) == ("<>", ["A=1", "B"])
    # A quote escaped inside quotes does not end them, so its ">" is still quoted.
    assert split_path_and_parameters('FROM:<"a\\">b"@c.example> X', "FROM:", syntax) == (
        '<"a\\">b"@c.example>',
        ["X"],
    )
    # A quoted ">" does not close the path.
    assert split_path_and_parameters('FROM:<"a>b"@c.example> X', "FROM:", syntax) == (
        '<"a>b"@c.example>',
        ["X"],
    )


@pytest.mark.parametrize(
    "argument",
    [
        "",
        "FROM",
        "FROM:",
        "TO:<a@b.example>",
        "FROM:a@b.example",
        "FROM:<a@b.example",
        "FROM:<a@b.example>X",
        "FROM <a@b.example>",
        'FROM:<"a@b.example>',
    ],
)
def test_split_refuses_what_is_not_from_path(argument: str) -> None:
    assert (
        refusal_of(lambda: split_path_and_parameters(argument, "FROM:", replies.MAIL_SYNTAX))
        is replies.MAIL_SYNTAX
    )


@pytest.mark.parametrize(
    "separator", ["\t", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2003", "\u3000"]
)
def test_rfc5321_4_1_2_parameters_are_separated_by_sp_only(separator: str) -> None:
    """HT, other controls and Unicode spaces are not separators: 501, not two parameters."""
    assert refusal_of(lambda: mail(f"FROM:<a@b.example> SIZE=1{separator}BODY=8BITMIME")) in (
        replies.BAD_PARAMETER,
        replies.UNKNOWN_PARAMETER,
    )
    assert refusal_of(lambda: mail(f"FROM:<a@b.example>{separator}SIZE=1")) is replies.MAIL_SYNTAX


# -- MAIL parameters --------------------------------------------------------------
def test_rfc5321_4_1_1_2_null_reverse_path_is_accepted() -> None:
    assert mail("FROM:<>") == ("", MailParameters())


@pytest.mark.parametrize(
    ("value", "size"),
    [("0", 0), ("1", 1), ("1048576", 1048576), ("9" * 20, int("9" * 20)), ("007", 7)],
)
def test_rfc1870_size(value: str, size: int) -> None:
    assert mail(f"FROM:<a@b.example> SIZE={value}")[1].size == size


@pytest.mark.parametrize(
    "parameter",
    [
        "SIZE=abc",
        "SIZE=-1",
        "SIZE=+1",
        "SIZE=1.5",
        "SIZE=",
        "SIZE",
        "SIZE=" + "9" * 21,
        "SIZE=\uff11\uff12",  # fullwidth digits
        "SIZE==1",
    ],
)
def test_rfc1870_malformed_size_is_501_5_5_4(parameter: str) -> None:
    reply = refusal_of(lambda: mail(f"FROM:<a@b.example> {parameter}"))
    assert (reply.code, reply.enhanced) == (501, "5.5.4")


def test_a_parameter_given_twice_is_501_5_5_4() -> None:
    for words in ("SIZE=1 SIZE=2", "SIZE=1 size=1", "BODY=7BIT BODY=8BITMIME"):
        reply = refusal_of(lambda words=words: mail(f"FROM:<a@b.example> {words}"))
        assert reply is replies.DUPLICATE_PARAMETER
        assert (reply.code, reply.enhanced) == (501, "5.5.4")


@pytest.mark.parametrize(
    ("value", "body"),
    [
        ("7BIT", "7BIT"),
        ("8bitmime", "8BITMIME"),
        ("8BITMIME", "8BITMIME"),
        ("BinaryMIME", "BINARYMIME"),
    ],
)
def test_rfc6152_and_rfc3030_body(value: str, body: str) -> None:
    assert mail(f"FROM:<a@b.example> BODY={value}")[1].body == body


def test_body_values_that_are_not_offered_or_unknown_are_501() -> None:
    assert (
        refusal_of(lambda: mail("FROM:<a@b.example> BODY=BINARYMIME", chunking=False))
        is replies.BAD_PARAMETER
    )
    for parameter in ("BODY=QUOTED", "BODY", "BODY=8BIT"):
        assert (
            refusal_of(lambda parameter=parameter: mail(f"FROM:<a@b.example> {parameter}"))
            is replies.BAD_PARAMETER
        )


def test_rfc6531_smtputf8() -> None:
    sender, parameters = mail("FROM:<jöran@bücher.example> SMTPUTF8")
    assert sender == "jöran@bücher.example"
    assert parameters.smtputf8
    assert refusal_of(lambda: mail("FROM:<a@b.example> SMTPUTF8=yes")) is replies.BAD_PARAMETER
    # Not offered: an unknown parameter.
    assert (
        refusal_of(lambda: mail("FROM:<a@b.example> SMTPUTF8", smtputf8=False))
        is replies.UNKNOWN_PARAMETER
    )


def test_rfc6531_3_4_utf8_sender_without_smtputf8_is_553_5_6_7() -> None:
    reply = refusal_of(lambda: mail("FROM:<jöran@bücher.example>"))
    assert reply is replies.UTF8_NOT_DECLARED
    assert (reply.code, reply.enhanced) == (553, "5.6.7")


def test_rfc3461_ret_and_envid() -> None:
    parameters = mail("FROM:<a@b.example> RET=hdrs ENVID=QQ+2B123")[1]
    assert parameters.ret == "HDRS"
    assert parameters.envid == "QQ+2B123"
    assert mail("FROM:<> RET=FULL")[1].ret == "FULL"
    for parameter in ("RET=ALL", "RET", "ENVID=a+zz", "ENVID=a+2b", "ENVID", "ENVID=" + "e" * 101):
        assert (
            refusal_of(lambda parameter=parameter: mail(f"FROM:<> {parameter}"))
            is replies.BAD_PARAMETER
        )
    assert mail("FROM:<> ENVID=" + "e" * 100)[1].envid == "e" * 100


@pytest.mark.parametrize("parameter", ["RET=FULL", "ENVID=x"])
def test_rfc3461_mail_parameters_without_dsn_offered_are_555(parameter: str) -> None:
    """RFC 5321 4.1.1.11: a parameter of an extension not offered is not implemented."""
    reply = refusal_of(lambda: mail(f"FROM:<a@b.example> {parameter}", dsn=False))
    assert reply is replies.UNKNOWN_PARAMETER


def test_rfc4954_5_auth_parameter_is_accepted_and_informational() -> None:
    """Office 365 sends ``AUTH=<>`` on port 25 (SECURITY-CASES 6)."""
    assert mail("FROM:<a@b.example> AUTH=<>")[1].auth == "<>"
    assert mail("FROM:<a@b.example> AUTH=user+40b.example")[1].auth == "user+40b.example"
    assert refusal_of(lambda: mail("FROM:<a@b.example> AUTH")) is replies.BAD_PARAMETER
    assert refusal_of(lambda: mail("FROM:<a@b.example> AUTH=a+zz")) is replies.BAD_PARAMETER


def test_all_mail_parameters_together() -> None:
    sender, parameters = mail(
        "FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x AUTH=<>"
    )
    assert sender == "a@b.example"
    assert parameters == MailParameters(
        size=1000, body="8BITMIME", smtputf8=True, ret="FULL", envid="x", auth="<>"
    )


def test_unknown_parameter_is_555_5_5_4() -> None:
    reply = refusal_of(lambda: mail("FROM:<a@b.example> FOO=BAR"))
    assert reply is replies.UNKNOWN_PARAMETER
    assert (reply.code, reply.enhanced) == (555, "5.5.4")
    assert refusal_of(lambda: mail("FROM:<a@b.example> XFLAG")) is replies.UNKNOWN_PARAMETER


@pytest.mark.parametrize("word", ["-X=1", "=1", "A_B=1", "K=v=w", "K=", "SIZE=1\x00"])
def test_malformed_parameter_words_are_501(word: str) -> None:
    assert refusal_of(lambda: mail(f"FROM:<a@b.example> {word}")) is replies.BAD_PARAMETER


def test_rfc5321_4_1_1_2_malformed_sender_is_501_5_1_7() -> None:
    reply = refusal_of(lambda: mail("FROM:<a\x00@b.example>"))
    assert (reply.code, reply.enhanced) == (501, "5.1.7")
    assert refusal_of(lambda: mail("FROM:<Postmaster>")) is replies.BAD_SENDER_ADDRESS


# -- RCPT -----------------------------------------------------------------------
def test_rfc5321_4_1_1_3_rcpt() -> None:
    assert rcpt("TO:<rcpt@our.example>") == (
        "rcpt@our.example",
        RcptParameters(),
    )
    assert rcpt("to:<Postmaster>")[0] == "Postmaster"
    assert rcpt("TO:<@relay.example:rcpt@our.example>")[0] == "rcpt@our.example"


def test_rcpt_to_the_null_path_is_501_5_1_3() -> None:
    reply = refusal_of(lambda: rcpt("TO:<>"))
    assert reply is replies.NULL_RECIPIENT
    assert (reply.code, reply.enhanced) == (501, "5.1.3")


def test_malformed_recipient_is_501_5_1_3() -> None:
    reply = refusal_of(lambda: rcpt("TO:<rc\x01pt@our.example>"))
    assert (reply.code, reply.enhanced) == (501, "5.1.3")


def test_rfc6531_utf8_recipient_needs_smtputf8_on_mail() -> None:
    assert rcpt("TO:<jöran@bücher.example>", smtputf8=True)[0] == "jöran@bücher.example"
    assert refusal_of(lambda: rcpt("TO:<jöran@bücher.example>")) is replies.UTF8_NOT_DECLARED


@pytest.mark.parametrize(
    ("value", "notify"),
    [
        ("NEVER", ("NEVER",)),
        ("never", ("NEVER",)),
        ("SUCCESS", ("SUCCESS",)),
        ("SUCCESS,FAILURE,DELAY", ("SUCCESS", "FAILURE", "DELAY")),
        ("delay,failure", ("DELAY", "FAILURE")),
    ],
)
def test_rfc3461_notify(value: str, notify: tuple[str, ...]) -> None:
    assert rcpt(f"TO:<r@our.example> NOTIFY={value}")[1].notify == notify


@pytest.mark.parametrize("value", ["NEVER,SUCCESS", "SUCCESS,SUCCESS", "SOMETIMES", "", "SUCCESS,"])
def test_rfc3461_malformed_notify_is_501(value: str) -> None:
    parameter = f"NOTIFY={value}" if value else "NOTIFY"
    assert refusal_of(lambda: rcpt(f"TO:<r@our.example> {parameter}")) is replies.BAD_PARAMETER


def test_rfc3461_orcpt() -> None:
    parameters = rcpt("TO:<r@our.example> ORCPT=rfc822;r+40our.example NOTIFY=NEVER")[1]
    assert parameters == RcptParameters(notify=("NEVER",), orcpt="rfc822;r+40our.example")
    for value in ("ORCPT=rfc822", "ORCPT", "ORCPT=;a", "ORCPT=rfc_822;a", "ORCPT=rfc822;a+zz"):
        assert (
            refusal_of(lambda value=value: rcpt(f"TO:<r@our.example> {value}"))
            is replies.BAD_PARAMETER
        )


@pytest.mark.parametrize("parameter", ["NOTIFY=NEVER", "ORCPT=rfc822;r@our.example"])
def test_rfc3461_rcpt_parameters_without_dsn_offered_are_555(parameter: str) -> None:
    reply = refusal_of(lambda: rcpt(f"TO:<r@our.example> {parameter}", dsn=False))
    assert reply is replies.UNKNOWN_PARAMETER
    # A malformed word is still a syntax error first, as for MAIL.
    assert refusal_of(lambda: rcpt("TO:<r@our.example> =x", dsn=False)) is replies.BAD_PARAMETER


def test_unknown_rcpt_parameter_is_555() -> None:
    assert refusal_of(lambda: rcpt("TO:<r@our.example> SIZE=1")) is replies.UNKNOWN_PARAMETER


def test_rcpt_syntax_errors_are_501_5_5_4() -> None:
    for argument in ("", "TO", "FROM:<r@our.example>", "TO:r@our.example"):
        assert refusal_of(lambda argument=argument: rcpt(argument)) is replies.RCPT_SYNTAX


# -- HELO names -------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["client.example", "[192.0.2.1]", "[IPv6:2001:db8::1]", "localhost", " spaced ", "under_score"],
)
def test_rfc5321_4_1_1_1_helo_names(name: str) -> None:
    assert parse_helo_name(name) == name.strip(" ")


@pytest.mark.parametrize(
    "name", ["", "   ", "two words", "tab\there", "nul\x00", "bell\x07", "x" * 256, "line\u2028sep"]
)
def test_malformed_helo_names_are_501_5_5_4(name: str) -> None:
    assert refusal_of(lambda: parse_helo_name(name)) is replies.HELO_SYNTAX


def test_helo_name_limit_is_in_octets() -> None:
    assert parse_helo_name("x" * 255) == "x" * 255
    assert refusal_of(lambda: parse_helo_name("é" * 128)) is replies.HELO_SYNTAX


# -- the same lines through a connection ---------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_mail_and_rcpt_lines_fed_whole_bytewise_and_with_trailing_data(
    split: Callable[[bytes], list[bytes]],
) -> None:
    dialogue = greeted(config(dsn=True))
    events = dialogue.feed(
        b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n"
        b"RCPT TO:<@relay.example:r@our.example> NOTIFY=NEVER\r\n"
        b"RCPT TO:<>\r\n"
        b"NOOP\r\n",
        split,
    )
    assert events[0] == MailFrom(
        sender="a@b.example", parameters=MailParameters(size=100, body="8BITMIME")
    )
    assert events[1] == RcptTo(
        recipient="r@our.example", parameters=RcptParameters(notify=("NEVER",))
    )
    assert isinstance(events[2], CommandRejected)
    assert events[2].reply is replies.NULL_RECIPIENT
    assert len(events) == 3
    assert dialogue.conn.data_to_send() == (
        replies.SENDER_OK.to_bytes()
        + replies.RECIPIENT_OK.to_bytes()
        + replies.NULL_RECIPIENT.to_bytes()
        + replies.NOOP_OK.to_bytes()
    )


def test_dialogue_harness_rejects_unfinished_multiline_replies() -> None:
    # The harness itself must be able to fail: a reply block cut short.
    from protocol_harness import parse_replies

    with pytest.raises(AssertionError):
        parse_replies(b"250-first line\r\n")
    assert Dialogue().greeting == replies.greeting("mx.our.example").to_bytes()
