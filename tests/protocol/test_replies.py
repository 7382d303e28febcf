"""Typed replies (RFC 5321 4.2, RFC 2034, RFC 3463) and the reply table."""

from __future__ import annotations

import re

import pytest

from smtp_recv.protocol import Reply, replies


def table() -> dict[str, Reply]:
    return {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


def test_every_reply_in_the_table_is_well_formed() -> None:
    entries = table()
    assert len(entries) > 50
    for name, reply in entries.items():
        data = reply.to_bytes()
        assert re.fullmatch(rb"(\d{3}[ -][\x20-\x7e]*\r\n)+", data), name
        assert len(data) <= 512, "RFC 5321 4.5.3.1.5: a reply line is at most 512 octets"
        if reply.code // 100 in (2, 4, 5):
            assert reply.enhanced is not None, f"{name} lacks its RFC 3463 code"
            assert reply.enhanced[0] == str(reply.code)[0]


def test_rfc2034_the_greeting_and_hello_replies_have_no_enhanced_code() -> None:
    assert replies.greeting("mx.example").enhanced is None
    assert replies.helo("mx.example", "c").enhanced is None
    assert replies.ehlo("mx.example", "c", ("PIPELINING",)).enhanced is None
    assert replies.START_DATA.enhanced is None


def test_rfc5321_4_2_1_multiline_replies_carry_the_code_on_every_line() -> None:
    reply = Reply(250, "2.0.0", ("first", "second", "last"))
    assert reply.to_bytes() == b"250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 last\r\n"
    assert reply.to_bytes(False) == b"250-first\r\n250-second\r\n250 last\r\n"
    assert str(reply) == "250-2.0.0 first | 250-2.0.0 second | 250 2.0.0 last"


def test_reply_make_and_classification() -> None:
    reply = Reply.make(451, "4.3.0", "Try later")
    assert reply == replies.TEMPORARY_FAILURE.__class__(451, "4.3.0", ("Try later",))
    assert reply.is_transient
    assert not reply.is_positive
    assert not reply.closes
    assert replies.START_DATA.is_positive
    assert not replies.START_DATA.is_transient
    assert replies.TIMEOUT.closes
    assert replies.CLOSING.closes
    assert not replies.NO_SUCH_USER.is_transient


@pytest.mark.parametrize(
    ("code", "enhanced", "lines"),
    [
        (199, None, ("x",)),
        (600, None, ("x",)),
        (250, "5.0.0", ("x",)),
        (550, "5.0", ("x",)),
        (550, "5.0.0.0", ("x",)),
        (550, "5.1000.0", ("x",)),
        (550, "3.0.0", ("x",)),
        (250, None, ()),
        (250, None, ("evil\r\n250 forged",)),
        (250, None, ("bare\nlf",)),
        (250, None, ("nul\x00",)),
    ],
)
def test_malformed_replies_are_refused_at_construction(
    code: int, enhanced: str | None, lines: tuple[str, ...]
) -> None:
    """A hook's text can never forge a second reply line."""
    with pytest.raises(ValueError, match=r"reply|enhanced code"):
        Reply(code, enhanced, lines)


def test_auth_challenges() -> None:
    assert replies.auth_challenge("").to_bytes() == b"334 \r\n"
    assert replies.auth_challenge("VXNlcm5hbWU6").to_bytes() == b"334 VXNlcm5hbWU6\r\n"


def test_chunk_and_message_replies() -> None:
    assert replies.chunk_received(42).to_bytes() == b"250 2.0.0 42 octets received\r\n"
    assert replies.message_accepted("Q1").to_bytes(False) == b"250 OK: queued as Q1\r\n"


@pytest.mark.parametrize(
    "reply",
    [replies.chunk_received(0), replies.message_accepted("17b9c0a1f2e3")],
    ids=["chunk", "message"],
)
def test_per_message_replies_are_what_the_checked_constructor_makes(reply: Reply) -> None:
    """The replies made once per message skip the checks, not the wire format."""
    checked = Reply(reply.code, reply.enhanced, reply.lines)
    assert reply == checked
    assert reply.to_bytes(True) == checked.to_bytes(True)
    assert reply.to_bytes(False) == checked.to_bytes(False)
