"""SECURITY-CASES.md section 6: addresses and relaying on port 25.

The MX listener takes mail for the domains it serves and nothing else: the
Forward hook decides every recipient, and an unknown one is refused at RCPT
time (``550``), whatever its spelling.  Malformed addresses are refused
(``501``) before any hook sees them.
"""

from __future__ import annotations

import pytest

from .harness import Harness, Row, params, run_row


def _rcpt(name: str, address: bytes, expect: str, *, asked: str | None = None) -> Row:
    """One RCPT TO on the MX listener, after a valid MAIL FROM."""
    return Row(
        name=name,
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<" + address + b">\r\n",
        expect=("250 2.1.0", expect),
        lookups=(asked,) if asked is not None else (),
    )


# Someone else's domain, however it is spelled: refused.  The hook is asked
# (it decides) and says no; the source route is dropped before it is asked.
RELAY = {
    "plain": (b"user@victim.example", "user@victim.example"),
    "quoted-our-address": (
        b'"user@our.example"@victim.example',
        '"user@our.example"@victim.example',
    ),
    "percent-hack": (b"user%our.example@victim.example", "user%our.example@victim.example"),
    "source-route-via-us": (b"@our.example:user@victim.example", "user@victim.example"),
    "source-route-two-hops": (
        b"@our.example,@mx.our.example:user@victim.example",
        "user@victim.example",
    ),
    "uppercase-domain": (b"user@VICTIM.EXAMPLE", "user@VICTIM.EXAMPLE"),
    "mixed-case-domain": (b"User@Victim.Example", "User@Victim.Example"),
    "ip-literal": (b"user@[1.2.3.4]", "user@[1.2.3.4]"),
    "ip-literal-loopback": (b"user@[127.0.0.1]", "user@[127.0.0.1]"),
    "ipv6-literal": (b"user@[IPv6:::1]", "user@[IPv6:::1]"),
    "general-literal": (b"user@[x-tag:foo]", "user@[x-tag:foo]"),
    "subdomain-of-ours": (b"user@sub.our.example", "user@sub.our.example"),
    "our-name-as-label": (b"user@our.example.victim.example", "user@our.example.victim.example"),
    "postmaster-elsewhere": (b"postmaster@victim.example", "postmaster@victim.example"),
    "bang-path-at-victim": (b"our.example!user@victim.example", "our.example!user@victim.example"),
    "quoted-at-sign-in-local": (b'"@our.example"@victim.example', '"@our.example"@victim.example'),
}
rows = [
    _rcpt(f"relay-{name}", address, "550 5.1.1", asked=asked)
    for name, (address, asked) in RELAY.items()
]

# Spellings that are not an address at all: a syntax error, no hook call.
MALFORMED = {
    "trailing-dot-ours": b"user@our.example.",
    "trailing-dot-victim": b"user@victim.example.",
    "two-at-signs": b"user@our.example@victim.example",
    "space-before-bracket": b"user@our.example ",
    "empty-local": b"@our.example",
    "no-domain": b"user@",
    "no-at": b"user",
    "bad-ipv4-literal": b"user@[1.2.3.400]",
    "ipv6-zone": b"user@[IPv6:fe80::1%eth0]",
    "unterminated-quote": b'"user@our.example',
    "double-dot": b"user..x@our.example",
    "leading-hyphen-label": b"user@-our.example",
    "local-part-too-long": b"x" * 65 + b"@our.example",
    "route-without-mailbox": b"@our.example:",
    "nul": b"us\x00er@our.example",
    "soh": b"us\x01er@our.example",
    "esc": b"us\x1ber@our.example",
    "del": b"us\x7fer@our.example",
    "tab-in-quotes": b'"us\ter"@our.example',
    "nul-in-quotes": b'"us\x00er"@our.example',
    "escaped-nul-in-quotes": b'"us\\\x00er"@our.example',
    "nul-in-domain": b"user@our\x00.example",
    "c1-control-utf8": "us\u0085er@our.example".encode(),
}
# An unterminated quote hides the closing bracket: the whole argument is a
# syntax error (501 5.5.4) rather than a bad address (501 5.1.3).
_UNCLOSED = ("unterminated-quote",)
rows += [
    _rcpt(f"malformed-rcpt-{name}", address, "501 5.5.4" if name in _UNCLOSED else "501 5.1.3")
    for name, address in MALFORMED.items()
]
rows += [
    Row(
        name=f"malformed-mail-{name}",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<" + address + b"> SMTPUTF8\r\n",
        expect=("501 5.5.4" if name in _UNCLOSED else "501 5.1.7",),
        lookups=(),
    )
    for name, address in MALFORMED.items()
    if name not in ("route-without-mailbox",)
]


def _targets(expected: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def check(harness: Harness) -> None:
        (mail,) = harness.mailer.messages[-1:]
        assert mail.recipients[0].targets == expected

    return check


# Spellings that stay with us: the mailbox decides, not the route.
LOCAL = {
    "source-route-via-victim": (b"@victim.example:user@our.example", "user@our.example"),
    "uppercase-our-domain": (b"user@OUR.EXAMPLE", "user@OUR.EXAMPLE"),
    "percent-hack-at-our-domain": (
        b"user%victim.example@our.example",
        "user%victim.example@our.example",
    ),
    "bang-path-at-our-domain": (
        b"victim.example!user@our.example",
        "victim.example!user@our.example",
    ),
    "quoted-local-part": (
        b'"user@victim.example"@our.example',
        '"user@victim.example"@our.example',
    ),
}
for name, (address, asked) in LOCAL.items():
    rows.append(
        Row(
            name=f"local-{name}",
            listener="mx",
            prelude="greet",
            send=b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<"
            + address
            + b">\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\n",
            expect=("250 2.1.0", "250 2.1.5", "354", "250 2.0.0"),
            delivered=1,
            lookups=(asked,),
            check=_targets((asked,)),
        )
    )

# RFC 5321 4.5.1: <Postmaster>, bare and in any case, is always accepted.
for spelling in (b"Postmaster", b"POSTMASTER", b"postmaster"):
    rows.append(
        Row(
            name=f"postmaster-{spelling.decode()}",
            listener="mx",
            prelude="greet",
            send=b"MAIL FROM:<>\r\nRCPT TO:<" + spelling + b">\r\nDATA\r\nx\r\n.\r\n",
            expect=("250 2.1.0", "250 2.1.5", "354", "250 2.0.0"),
            delivered=1,
        )
    )
rows += [
    # Bounces must arrive: the null sender is accepted.
    Row(
        name="null-sender-accepted",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<>\r\nRCPT TO:<bob@our.example>\r\nDATA\r\nx\r\n.\r\n",
        expect=("250 2.1.0", "250 2.1.5", "354", "250 2.0.0"),
        delivered=1,
    ),
    Row(
        name="null-recipient",
        listener="mx",
        prelude="envelope",
        send=b"RCPT TO:<>\r\n",
        expect=("501 5.1.3",),
        lookups=(),
    ),
    Row(
        name="postmaster-with-route",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<>\r\nRCPT TO:<@victim.example:Postmaster>\r\n",
        expect=("250 2.1.0", "501 5.1.3"),
        lookups=(),
    ),
    # UTF-8 without SMTPUTF8 on MAIL: 553 5.6.7, sender and recipient.
    Row(
        name="utf8-sender-undeclared",
        listener="mx",
        prelude="greet",
        send="MAIL FROM:<jöran@victim.example>\r\n".encode(),
        expect=("553 5.6.7",),
    ),
    Row(
        name="utf8-recipient-undeclared",
        listener="mx",
        prelude="envelope",
        send="RCPT TO:<jöran@our.example>\r\n".encode(),
        expect=("553 5.6.7",),
        lookups=(),
    ),
    Row(
        name="utf8-homoglyph-domain-undeclared",
        listener="mx",
        prelude="envelope",
        send="RCPT TO:<user@\u043eur.example>\r\n".encode(),
        expect=("553 5.6.7",),
        lookups=(),
    ),
    Row(
        name="utf8-homoglyph-domain-declared",
        listener="mx",
        prelude="greet",
        send=(
            "MAIL FROM:<a@victim.example> SMTPUTF8\r\nRCPT TO:<user@\u043eur.example>\r\n"
        ).encode(),
        expect=("250 2.1.0", "550 5.1.1"),
    ),
    Row(
        name="utf8-declared-accepted",
        listener="mx",
        prelude="greet",
        send="MAIL FROM:<jöran@victim.example> SMTPUTF8\r\nRCPT TO:<δ@our.example>\r\n".encode(),
        expect=("250 2.1.0", "250 2.1.5"),
    ),
    Row(
        name="invalid-utf8-command",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<j\xf6ran@victim.example> SMTPUTF8\r\n",
        # RFC 5321 4.2.2: a known command with a bad argument is 501.
        expect=("501 5.5.4",),
    ),
    Row(
        name="path-without-brackets",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:a@victim.example\r\n",
        expect=("501 5.5.4",),
    ),
]

# ESMTP parameters.
MAIL_PARAMETERS = {
    "size-abc": (b"SIZE=abc", "501 5.5.4"),
    "size-negative": (b"SIZE=-1", "501 5.5.4"),
    "size-plus": (b"SIZE=+5", "501 5.5.4"),
    "size-exponent": (b"SIZE=1e3", "501 5.5.4"),
    "size-empty": (b"SIZE=", "501 5.5.4"),
    "size-no-value": (b"SIZE", "501 5.5.4"),
    "size-21-digits": (b"SIZE=" + b"1" * 21, "501 5.5.4"),
    "size-twice": (b"SIZE=10 SIZE=10", "501 5.5.4"),
    "size-twice-case": (b"SIZE=10 size=20", "501 5.5.4"),
    "size-space-value": (b"SIZE= 5", "501 5.5.4"),
    "unknown-foo": (b"FOO=BAR", "555 5.5.4"),
    "unknown-keyword-only": (b"XFORWARD", "555 5.5.4"),
    "body-9bit": (b"BODY=9BIT", "501 5.5.4"),
    "smtputf8-with-value": (b"SMTPUTF8=yes", "501 5.5.4"),
    "ret-twice": (b"RET=FULL RET=HDRS", "501 5.5.4"),
    "keyword-bad": (b"-SIZE=1", "501 5.5.4"),
    "value-with-nul": (b"ENVID=a\x00b", "501 5.5.4"),
    "value-with-control": (b"ENVID=a\x01b", "501 5.5.4"),
    "tab-separator": (b"\tSIZE=10", "501 5.5.4"),
    "auth-null": (b"AUTH=<>", "250 2.1.0"),
    "size-lowercase": (b"size=10", "250 2.1.0"),
    "all-known": (b"SIZE=10 BODY=8BITMIME AUTH=<>", "250 2.1.0"),
    "extra-spaces": (b"  SIZE=10   BODY=7BIT", "250 2.1.0"),
    # DSN is not offered by default: its parameters are not implemented.
    "ret-without-dsn": (b"RET=HDRS", "555 5.5.4"),
    "envid-without-dsn": (b"ENVID=x", "555 5.5.4"),
}
#: With ``dsn=True`` (RFC 3461 offered).
DSN_MAIL_PARAMETERS = {
    "ret-bad": (b"RET=ALL", "501 5.5.4"),
    "envid-bad-xtext": (b"ENVID=a+zz", "501 5.5.4"),
    "envid-too-long": (b"ENVID=" + b"a" * 101, "501 5.5.4"),
    "all-known": (b"SIZE=10 BODY=8BITMIME RET=HDRS ENVID=x+2By AUTH=<>", "250 2.1.0"),
}
rows += [
    Row(
        name=f"mail-parameter-{'dsn-' if dsn else ''}{name}",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>"
        + (b"" if parameters.startswith(b"\t") else b" ")
        + parameters
        + b"\r\n",
        expect=(expect,),
        config={"dsn": True} if dsn else {},
    )
    for dsn, table in ((False, MAIL_PARAMETERS), (True, DSN_MAIL_PARAMETERS))
    for name, (parameters, expect) in table.items()
]
RCPT_PARAMETERS = {
    "unknown": (b"FOO=BAR", "555 5.5.4"),
    "notify-without-dsn": (b"NOTIFY=NEVER", "555 5.5.4"),
    "orcpt-without-dsn": (b"ORCPT=rfc822;bob@our.example", "555 5.5.4"),
}
#: With ``dsn=True`` (RFC 3461 offered).
DSN_RCPT_PARAMETERS = {
    "notify-never-and-success": (b"NOTIFY=NEVER,SUCCESS", "501 5.5.4"),
    "notify-twice-value": (b"NOTIFY=SUCCESS,SUCCESS", "501 5.5.4"),
    "notify-bad": (b"NOTIFY=ALWAYS", "501 5.5.4"),
    "orcpt-no-type": (b"ORCPT=bob@our.example", "501 5.5.4"),
    "orcpt-bad-xtext": (b"ORCPT=rfc822;bob+zz", "501 5.5.4"),
    "notify-ok": (b"NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@our.example", "250 2.1.5"),
}
rows += [
    Row(
        name=f"rcpt-parameter-{'dsn-' if dsn else ''}{name}",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<bob@our.example> " + parameters + b"\r\n",
        expect=("250 2.1.0", expect),
        lookups=("bob@our.example",) if expect.startswith("250") else (),
        config={"dsn": True} if dsn else {},
    )
    for dsn, table in ((False, RCPT_PARAMETERS), (True, DSN_RCPT_PARAMETERS))
    for name, (parameters, expect) in table.items()
]


@pytest.mark.parametrize("row", params(rows))
async def test_relay(row: Row) -> None:
    await run_row(row)


# -- client text in our Received: header is escaped -------------------------------
def _received(harness: Harness) -> bytes:
    data: bytes = harness.mailer.messages[-1].data
    return data[: data.index(b"\r\n", data.index(b";\r\n") + 3) + 2]


def _header_has(expected: bytes, *absent: bytes):  # type: ignore[no-untyped-def]
    def check(harness: Harness) -> None:
        header = _received(harness)
        assert expected in header, header
        for text in absent:
            assert text not in header, header
        # Only ASCII, and every line after the first folded (starts with a tab).
        assert header.isascii()
        assert all(line[:1] == b"\t" for line in header.split(b"\r\n")[1:-1]), header

    return check


HEADER_CASES = {
    # A HELO name that would close the comment and add its own clause.
    "helo-comment-breakout": (
        b"EHLO a)(by=evil.example;\r\n",
        b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n",
        b"from a??by=evil.example? (",
        (b"a)(by", b"evil.example;"),
    ),
    "helo-utf8": (
        "EHLO h\u00e9llo\r\n".encode(),
        b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n",
        b"from h?llo (",
        ("\u00e9".encode(),),
    ),
    "helo-encoded-word": (
        b"EHLO =?utf-8?q?evil?=\r\n",
        b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n",
        b"from =?utf-8?q?evil?= (",
        (),
    ),
    "recipient-quoted-specials": (
        b"EHLO client.example\r\n",
        b'MAIL FROM:<a@victim.example>\r\nRCPT TO:<"x>;y(z"@our.example>\r\n',
        b"(smtp_recv) with ESMTP",
        (b'"x>', b";y(z", b"for <"),
    ),
    "recipient-utf8": (
        b"EHLO client.example\r\n",
        "MAIL FROM:<a@victim.example> SMTPUTF8\r\nRCPT TO:<b\u00fc@our.example>\r\n".encode(),
        b"(smtp_recv) with UTF8SMTP",
        ("\u00fc".encode(), b"for <"),
    ),
}
rows_header = [
    Row(
        name=f"received-header-{name}",
        listener="mx",
        prelude="banner",
        send=hello + envelope + b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\n",
        expect=("250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"),
        delivered=1,
        check=_header_has(expected, *absent),
    )
    for name, (hello, envelope, expected, absent) in HEADER_CASES.items()
]


@pytest.mark.parametrize("row", params(rows_header))
async def test_received_header_escapes_client_text(row: Row) -> None:
    await run_row(row)
