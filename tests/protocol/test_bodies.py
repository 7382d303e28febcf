"""Message bodies: DATA (RFC 5321 4.1.1.4, 4.5.2) and BDAT (RFC 3030)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from protocol_harness import (
    LEAVE,
    SPLITS,
    Dialogue,
    bytewise,
    codes,
    greeted,
    in_transaction,
    message_outcomes,
    parse_replies,
    whole,
)

from smtp_recv.protocol import (
    NEED_DATA,
    PAUSED,
    CommandRejected,
    ConnectionClosed,
    DataStarted,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    Reply,
    State,
    TransactionReset,
    limits,
    replies,
)

Split = Callable[[bytes], list[bytes]]


# -- DATA ----------------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_1_1_4_data_exchange(split: Split) -> None:
    dialogue = in_transaction(recipients=("a@our.example", "b@our.example"))
    dialogue.events.clear()
    out = dialogue.send(b"DATA\r\nSubject: x\r\n\r\nHello\r\n.\r\nNOOP\r\n", split)
    assert out == (
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
        + replies.OK.to_bytes()
        + replies.NOOP_OK.to_bytes()
    )
    assert dialogue.events[0] == DataStarted(chunked=False)
    assert dialogue.body() == b"Subject: x\r\n\r\nHello\r\n"
    [complete] = dialogue.of_type(MessageComplete)
    assert complete == MessageComplete(
        sender="sender@client.example",
        recipients=("a@our.example", "b@our.example"),
        size=len(b"Subject: x\r\n\r\nHello\r\n"),
    )
    assert dialogue.state is State.GREETED
    assert dialogue.conn.sender is None
    assert dialogue.conn.recipients == ()


def test_the_message_waits_for_the_applications_verdict() -> None:
    dialogue = in_transaction()
    dialogue.decide = lambda event: LEAVE
    dialogue.send(b"DATA\r\nx\r\n.\r\nQUIT\r\n")
    conn = dialogue.conn
    assert conn.next_event() is PAUSED
    assert conn.state is State.DATA
    conn.accept(replies.message_accepted("ABC123"))
    assert conn.data_to_send() == b"250 2.0.0 OK: queued as ABC123\r\n"
    assert conn.next_event() == ConnectionClosed(reply=replies.CLOSING)


def test_a_message_refused_by_the_application_is_not_a_client_error() -> None:
    dialogue = in_transaction()
    dialogue.decide = lambda event: replies.TEMPORARY_FAILURE
    out = dialogue.send(b"DATA\r\nx\r\n.\r\n")
    assert codes(out) == [354, 451]
    assert dialogue.conn.error_count == 0
    assert dialogue.state is State.GREETED


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_5_2_transparency(split: Split) -> None:
    """SECURITY-CASES 1: ``..``, ``. ``, ``.x``, ``..`` are ``.``, `` ``, ``x``, ``.``."""
    dialogue = in_transaction()
    out = dialogue.send(b"DATA\r\n..\r\n. \r\n.x\r\n..\r\n.\r\n", split)
    assert codes(out) == [354, 250]
    assert dialogue.body() == b".\r\n \r\nx\r\n.\r\n"
    [complete] = dialogue.of_type(MessageComplete)
    assert complete.size == len(b".\r\n \r\nx\r\n.\r\n")  # type: ignore[attr-defined]


def test_an_empty_message() -> None:
    dialogue = in_transaction()
    assert codes(dialogue.send(b"DATA\r\n.\r\n")) == [354, 250]
    assert dialogue.body() == b""
    assert dialogue.of_type(MessageComplete)[0].size == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_2_3_8_bare_lf_in_data_is_read_to_the_end_then_550_and_the_end(
    split: Split,
) -> None:
    """Refused whole at the real end; then nothing more is read (see
    ``_end_after_fake_end``: a lenient parser in front may have ended the
    message at the bare LF and read what followed as commands)."""
    dialogue = in_transaction()
    out = dialogue.send(b"DATA\r\nline\nwith bare lf\r\nQUIT\r\n.\r\nNOOP\r\n", split)
    answers = parse_replies(out)
    assert [answer.code for answer in answers] == [354, 550]
    assert (answers[1].code, answers[1].enhanced) == (550, "5.5.2")
    assert not dialogue.of_type(MessageComplete)
    assert dialogue.of_type(MessageAborted) == [
        MessageAborted(reply=replies.BARE_LINE_ENDING_IN_DATA)
    ]
    assert dialogue.events[-1] == ConnectionClosed(reply=replies.BARE_LINE_ENDING_IN_DATA)
    assert dialogue.state is State.CLOSED


def test_bare_line_endings_pass_through_verbatim_when_lenient() -> None:
    dialogue = in_transaction(reject_bare_line_endings=False)
    out = dialogue.send(b"DATA\r\na\nb\rc\r\n..d\n.\ne\r\n.\r\n")
    assert codes(out) == [354, 250]
    assert dialogue.body() == b"a\nb\rc\r\n.d\n.\ne\r\n"


def test_rfc6152_nul_in_data_is_550_when_strict_and_kept_when_lenient() -> None:
    strict = in_transaction()
    out = strict.send(b"DATA\r\nnul\x00byte\r\n.\r\n")
    assert out.endswith(replies.NUL_IN_DATA.to_bytes())
    assert (replies.NUL_IN_DATA.code, replies.NUL_IN_DATA.enhanced) == (550, "5.6.0")
    assert strict.of_type(MessageAborted) == [MessageAborted(reply=replies.NUL_IN_DATA)]
    lenient = in_transaction(reject_bare_line_endings=False)
    assert codes(lenient.send(b"DATA\r\nnul\x00byte\r\n.\r\n")) == [354, 250]
    assert lenient.body() == b"nul\x00byte\r\n"


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc1870_a_message_over_the_limit_is_drained_then_552(split: Split) -> None:
    """SECURITY-CASES 4: twice the limit without SIZE: read to its end, then 552 5.3.4."""
    dialogue = in_transaction(max_message_size=100)
    body = b"0123456789abcdefghi\r\n" * 10  # 210 octets
    dialogue.feed(b"DATA\r\n", split)
    assert dialogue.conn.data_to_send() == replies.START_DATA.to_bytes()
    out = dialogue.send(body, split)
    assert out == b"", "no reply before the end of the data"
    out = dialogue.send(b".\r\nNOOP\r\n", split)
    assert out == b"552 5.3.4 Message size exceeds fixed limit\r\n" + replies.NOOP_OK.to_bytes()
    assert not dialogue.of_type(MessageComplete)
    assert dialogue.of_type(MessageAborted) == [MessageAborted(reply=replies.MESSAGE_TOO_BIG)]
    # The refusal is the client's error too, told just before.
    rejected, aborted = dialogue.events[-2:]
    assert (rejected, aborted) == (
        CommandRejected(reply=replies.MESSAGE_TOO_BIG, error_count=1),
        MessageAborted(reply=replies.MESSAGE_TOO_BIG),
    )
    assert len(dialogue.body()) <= 100
    assert dialogue.state is State.GREETED


@pytest.mark.parametrize(
    ("body", "limit", "reply"),
    [
        (
            b"nul\x00\r\n" + b"pad\r\n" * 20 + b"bare\nlf\r\n",
            1 << 20,
            replies.BARE_LINE_ENDING_IN_DATA,
        ),
        (
            b"bare\nlf\r\n" + b"pad\r\n" * 20 + b"nul\x00\r\n",
            1 << 20,
            replies.BARE_LINE_ENDING_IN_DATA,
        ),
        (b"pad\r\n" * 20 + b"bare\nlf\r\n", 50, replies.MESSAGE_TOO_BIG),
        (b"bare\nlf\r\n" + b"pad\r\n" * 20, 50, replies.MESSAGE_TOO_BIG),
        (b"nul\x00\r\n" + b"pad\r\n" * 20, 50, replies.MESSAGE_TOO_BIG),
    ],
)
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_the_verdict_on_a_refused_message_does_not_depend_on_the_split(
    body: bytes, limit: int, reply: object, split: Split
) -> None:
    """Too big before bare line endings before NUL, from the whole message."""
    dialogue = in_transaction(max_message_size=limit)
    dialogue.send(b"DATA\r\n" + body + b".\r\n", split)
    assert dialogue.of_type(MessageAborted) == [MessageAborted(reply=reply)]  # type: ignore[arg-type]


def test_a_message_of_exactly_the_limit_is_accepted() -> None:
    dialogue = in_transaction(max_message_size=12)
    assert codes(dialogue.send(b"DATA\r\n0123456789\r\n.\r\n")) == [354, 250]
    assert dialogue.of_type(MessageComplete)[0].size == 12  # type: ignore[attr-defined]


def test_a_data_line_of_100_kb_is_streamed_with_memory_bounded() -> None:
    dialogue = in_transaction()
    dialogue.send(b"DATA\r\n")
    conn = dialogue.conn
    for _ in range(100):
        conn.receive_data(b"L" * 1000)
        while (event := conn.next_event()) is not NEED_DATA:
            assert isinstance(event, MessageData)
            dialogue.events.append(event)
        assert len(conn._buffer) < limits.DATA_FLUSH
    assert conn.data_to_send() == b""
    assert codes(dialogue.send(b"\r\n.\r\n")) == [250]
    assert dialogue.body() == b"L" * 100_000 + b"\r\n"


def test_a_refused_message_keeps_draining_what_is_buffered() -> None:
    """Past the fault nothing is passed on, yet the buffer is still emptied."""
    dialogue = in_transaction()
    dialogue.send(b"DATA\r\nbare\nlf\r\n" + b"x" * (3 * limits.DATA_FLUSH))
    assert len(dialogue.conn._buffer) < limits.DATA_FLUSH
    assert dialogue.state is State.DATA
    assert codes(dialogue.send(b"\r\n.\r\n")) == [550]


def test_eof_in_the_middle_of_data_delivers_nothing() -> None:
    dialogue = in_transaction()
    dialogue.send(b"DATA\r\npartial\r\n")
    events = dialogue.eof()
    assert events[-1] == ConnectionClosed(reply=None)
    assert not dialogue.of_type(MessageComplete)
    assert dialogue.state is State.CLOSED


def test_two_messages_in_one_session() -> None:
    dialogue = in_transaction()
    dialogue.send(b"DATA\r\none\r\n.\r\n")
    out = dialogue.say("MAIL FROM:<>", "RCPT TO:<r2@our.example>", "DATA", "two", ".")
    assert codes(out) == [250, 250, 354, 250]
    completes = dialogue.of_type(MessageComplete)
    assert [(c.sender, c.recipients) for c in completes] == [  # type: ignore[attr-defined]
        ("sender@client.example", ("rcpt@our.example",)),
        ("", ("r2@our.example",)),
    ]


# -- BDAT ----------------------------------------------------------------------------
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc3030_2_chunks_and_last(split: Split) -> None:
    dialogue = in_transaction()
    dialogue.events.clear()
    out = dialogue.send(b"BDAT 5\r\nhelloBDAT 6 LAST\r\n world", split)
    assert out == b"250 2.0.0 5 octets received\r\n" + replies.OK.to_bytes()
    assert dialogue.events[0] == DataStarted(chunked=True)
    assert dialogue.body() == b"hello world"
    [complete] = dialogue.of_type(MessageComplete)
    assert complete.size == 11  # type: ignore[attr-defined]
    assert dialogue.state is State.GREETED


def test_rfc3030_2_states_between_chunks() -> None:
    dialogue = in_transaction()
    dialogue.send(b"BDAT 3\r\n")
    assert dialogue.state is State.BDAT
    dialogue.send(b"ab")
    assert dialogue.state is State.BDAT
    dialogue.send(b"c")
    assert dialogue.state is State.CHUNKING
    assert dialogue.say("NOOP") == replies.NOOP_OK.to_bytes()
    assert dialogue.say("DATA") == replies.DATA_AFTER_BDAT.to_bytes()
    assert dialogue.say("MAIL FROM:<>") == replies.NESTED_MAIL.to_bytes()
    assert dialogue.say("RCPT TO:<x@our.example>") == replies.BAD_SEQUENCE.to_bytes()
    assert codes(dialogue.send(b"BDAT 0 LAST\r\n")) == [250]
    assert dialogue.body() == b"abc"


def test_rfc3030_bdat_0_last_is_an_empty_message() -> None:
    dialogue = in_transaction()
    assert codes(dialogue.send(b"BDAT 0 LAST\r\n")) == [250]
    assert dialogue.of_type(MessageComplete)[0].size == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "strict", "reply"),
    [
        (" BODY=BINARYMIME", True, replies.OK),
        ("", False, replies.OK),
        ("", True, replies.BARE_LINE_ENDING_IN_DATA),
    ],
    ids=["binarymime", "text-lenient", "text-strict"],
)
def test_rfc3030_2_chunk_contents_are_never_parsed(body: str, strict: bool, reply: Reply) -> None:
    """SECURITY-CASES 1: BDAT chunk contents are never parsed, refused or not."""
    chunk = b"line\r\n.\r\nQUIT\r\nMAIL FROM:<ceo@our.example>\r\n\n.\n\x00"
    dialogue = greeted(reject_bare_line_endings=strict)
    dialogue.say(f"MAIL FROM:<a@b.example>{body}", "RCPT TO:<r@our.example>")
    out = dialogue.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert out == reply.to_bytes() + replies.NOOP_OK.to_bytes()
    if reply is replies.OK:
        assert dialogue.body() == chunk
    assert len(dialogue.of_type(MailFrom)) == 1
    assert not dialogue.of_type(ConnectionClosed)


@pytest.mark.parametrize(
    ("chunks", "reply"),
    [
        ([b"line\r", b"\nnext\r\n"], replies.OK),  # a CRLF split between chunks
        ([b"line\r", b"", b"\n"], replies.OK),  # around an empty chunk
        ([b"line\r", b"next\r\n"], replies.BARE_LINE_ENDING_IN_DATA),
        ([b"line\r\n", b"\nnext\r\n"], replies.BARE_LINE_ENDING_IN_DATA),
        ([b"line\r\n", b"last\r"], replies.BARE_LINE_ENDING_IN_DATA),  # a CR at the very end
        ([b"line\r\n", b"x\x00y\r\n"], replies.NUL_IN_DATA),
        ([b"a\x00\r\n", b"b\nc"], replies.BARE_LINE_ENDING_IN_DATA),  # as DATA would rank them
    ],
)
def test_rfc3030_3_a_text_message_over_bdat_is_checked_like_data(
    chunks: list[bytes], reply: Reply
) -> None:
    """Not BINARYMIME: 7bit or 8bitMIME text, whose CR and LF come only as CRLF
    (RFC 5321 2.3.8, RFC 6152).  Each chunk is read to its end and answered;
    the verdict comes after the last, for the whole message."""
    for split in (whole, bytewise):
        dialogue = in_transaction()
        stream = b"".join(b"BDAT %d\r\n" % len(chunk) + chunk for chunk in chunks[:-1])
        stream += b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1]
        answers = parse_replies(dialogue.send(stream, split))
        assert [answer.code for answer in answers[:-1]] == [250] * (len(chunks) - 1)
        assert answers[-1].code == reply.code
        [outcome] = message_outcomes(dialogue.events)
        if reply is replies.OK:
            assert isinstance(outcome, MessageComplete)
            assert dialogue.body() == b"".join(chunks)
        else:
            assert outcome == MessageAborted(reply=reply)
        assert dialogue.state is State.GREETED


@pytest.mark.parametrize(
    ("prefix", "reply"),
    [
        (["EHLO x"], replies.NEED_MAIL),
        (["EHLO x", "MAIL FROM:<>"], replies.NEED_RCPT),
        ([], replies.NEED_HELO),
    ],
)
def test_rfc3030_bdat_out_of_sequence_is_503_and_its_chunk_is_skipped(
    prefix: list[str], reply: object
) -> None:
    dialogue = Dialogue()
    for line in prefix:
        dialogue.say(line)
    state = dialogue.state
    chunk = b"QUIT\r\nRSET\r\n"
    out = dialogue.send(b"BDAT %d\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert out == reply.to_bytes() + replies.NOOP_OK.to_bytes()  # type: ignore[attr-defined]
    assert dialogue.state is state
    assert not dialogue.of_type(MessageData)


def test_rfc3030_bdat_after_last_is_503() -> None:
    dialogue = in_transaction()
    out = dialogue.send(b"BDAT 1 LAST\r\nxBDAT 2 LAST\r\nyy")
    assert out == replies.OK.to_bytes() + replies.NEED_MAIL.to_bytes()
    assert dialogue.body() == b"x"


def test_a_refused_chunk_is_skipped_byte_by_byte_too() -> None:
    dialogue = greeted()
    out = dialogue.send(b"BDAT 4\r\nQUITNOOP\r\n", SPLITS["bytewise"])
    assert out == replies.NEED_MAIL.to_bytes() + replies.NOOP_OK.to_bytes()


def test_rfc3030_size_is_counted_across_chunks() -> None:
    dialogue = in_transaction(max_message_size=10)
    out = dialogue.send(b"BDAT 6\r\n123456BDAT 6\r\n789012BDAT 1 LAST\r\nxNOOP\r\n")
    answers = parse_replies(out)
    # The chunk that passes the limit is read and refused, and so is the
    # transaction: the pipelined chunk after it is read and refused too.
    assert [(a.code, a.enhanced) for a in answers] == [
        (250, "2.0.0"),
        (552, "5.3.4"),
        (503, "5.5.1"),
        (250, "2.0.0"),
    ]
    assert dialogue.of_type(MessageAborted) == [MessageAborted(reply=replies.MESSAGE_TOO_BIG)]
    # Told at the chunk's command; its CommandRejected once the chunk is read.
    aborted = dialogue.events.index(MessageAborted(reply=replies.MESSAGE_TOO_BIG))
    assert dialogue.events[aborted + 1] == CommandRejected(
        reply=replies.MESSAGE_TOO_BIG, error_count=1
    )
    assert not dialogue.of_type(MessageComplete)
    assert dialogue.state is State.GREETED
    assert dialogue.conn.sender is None


def test_bdat_of_exactly_the_limit_is_accepted() -> None:
    dialogue = in_transaction(max_message_size=10)
    assert codes(dialogue.send(b"BDAT 4\r\n1234BDAT 6 LAST\r\n567890")) == [250, 250]


def test_a_huge_bdat_count_is_552_and_ends_the_session_with_nothing_allocated() -> None:
    """SECURITY-CASES 4: ``BDAT 99999999999999999999999 LAST``."""
    dialogue = in_transaction()
    out = dialogue.send(b"BDAT 99999999999999999999999 LAST\r\n" + b"x" * 100)
    assert out == replies.MESSAGE_TOO_BIG.to_bytes()
    assert dialogue.error is not None
    assert dialogue.error.reply is replies.MESSAGE_TOO_BIG
    assert dialogue.state is State.CLOSED
    conn = dialogue.conn
    assert conn._chunk_remaining == 0
    assert conn._discard_remaining == 0
    assert not dialogue.of_type(MessageData)


@pytest.mark.parametrize("count", ["0" * 400 + "1" * 21, "1" * 21])
def test_a_chunk_size_past_20_digits_ends_the_session(count: str) -> None:
    """RFC 3030 section 2: no size has more digits; nothing frames the chunk."""
    dialogue = greeted()
    dialogue.send(f"BDAT {count}\r\n".encode())
    assert dialogue.error is not None
    assert dialogue.error.reply is replies.MESSAGE_TOO_BIG


@pytest.mark.parametrize("first", [True, False], ids=["first-chunk", "later-chunk"])
def test_a_chunk_past_the_limit_is_read_and_refused_and_the_session_goes_on(first: bool) -> None:
    """As a DATA message too large: read to its end, then 552 (RFC 5321 3.8
    closes a session only with 421).  The message is refused whole."""
    dialogue = in_transaction(max_message_size=10)
    if not first:
        assert codes(dialogue.send(b"BDAT 3\r\nabc")) == [250]
    chunk = b"MAIL FROM:<ceo@our.example>\r\n"
    out = dialogue.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert out == replies.MESSAGE_TOO_BIG.to_bytes() + replies.NOOP_OK.to_bytes()
    assert dialogue.of_type(MessageAborted) == [MessageAborted(reply=replies.MESSAGE_TOO_BIG)]
    assert not dialogue.of_type(MessageComplete)
    assert len(dialogue.of_type(MailFrom)) == 1
    assert dialogue.state is State.GREETED


def test_leading_zeros_in_a_chunk_size_are_just_zeros() -> None:
    dialogue = in_transaction()
    assert codes(dialogue.send(b"BDAT " + b"0" * 300 + b"3 LAST\r\nabc")) == [250]
    assert dialogue.body() == b"abc"


@pytest.mark.parametrize(
    "argument", ["", "x", "-1", "+1", "1 NOTLAST", "1 LAST x", " 1", "1  LAST", "\uff11"]
)
def test_rfc3030_bdat_without_a_readable_size_ends_the_session(argument: str) -> None:
    """Without a size the stream cannot be framed any further: 501 and close."""
    dialogue = in_transaction()
    out = dialogue.send(
        f"BDAT {argument}".rstrip(" ").encode() + b"\r\n" if argument else b"BDAT\r\n"
    )
    assert out == replies.BDAT_SYNTAX.to_bytes()
    assert dialogue.error is not None
    assert dialogue.state is State.CLOSED


def test_rfc3030_a_bdat_line_not_utf8_ends_the_session() -> None:
    # Its size cannot be read either: the chunk's bytes must never be taken
    # for commands.
    dialogue = in_transaction()
    assert dialogue.send(b"BDAT 3\xff LAST\r\nMAIL FROM:<x@y.z>\r\n") == (
        replies.BDAT_SYNTAX.to_bytes()
    )
    assert dialogue.state is State.CLOSED


SMUGGLED = b"MAIL FROM:<ceo@our.example>\r\nRCPT TO:<r@our.example>\r\nDATA\r\nx\r\n.\r\n"


@pytest.mark.parametrize(
    "line",
    [
        b"BDAT %d LAST\n",  # a bare LF
        b"BDAT %d LAST\r",  # a bare CR
        b"bdat %d last\r\r",
        b"BDAT " + b"0" * 600 + b"%d LAST",  # over the 512 octets of a command line
        b"BDAT " + b"0" * (limits.MAX_LINE + 10) + b"%d LAST",  # over what is kept
        b"BDAT\t%d LAST",  # a tab where the space goes: no command we know
    ],
    ids=["bare-lf", "bare-cr", "lower-case", "too-long", "far-too-long", "tab"],
)
def test_rfc3030_a_bdat_line_refused_unread_ends_the_session(line: bytes) -> None:
    """Its chunk follows unannounced: no byte of it may be read as a command."""
    dialogue = in_transaction()
    out = dialogue.send(line % len(SMUGGLED) + b"\r\n" + SMUGGLED)
    assert out == replies.BDAT_SYNTAX.to_bytes()
    assert dialogue.state is State.CLOSED
    assert len(dialogue.of_type(MailFrom)) == 1  # the transaction's own


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize(
    "line",
    [
        b" BDAT %d LAST",
        b"\tBDAT %d LAST",
        b"BDAT\x0b%d LAST",
        b"BDAT\x0c%d LAST",
        b"NOOP\nBDAT %d LAST",
        b"NOOP\r \tbdat %d LAST",
        b" " * 600 + b"BDAT %d LAST",  # too long for a command
        b" " * (limits.MAX_LINE + 10) + b"BDAT %d LAST",  # the command past all that is kept
        b" " * 10 + b"BDAT " + b"0" * limits.MAX_LINE + b"%d LAST",  # too long, after spaces
        b"NOOP " + b"x" * limits.MAX_LINE + b"\nBDAT %d LAST",  # too long, a bare LF far in
        b"NOOP " + b"x" * limits.MAX_LINE + b"\rBDAT %d LAST",  # too long, a bare CR far in
    ],
    ids=[
        "space",
        "tab",
        "vt",
        "ff",
        "after-lf",
        "after-cr",
        "spaces",
        "far-spaces",
        "far-after-spaces",
        "far-lf",
        "far-cr",
    ],
)
def test_a_line_a_lenient_parser_may_read_as_bdat_ends_the_session(
    line: bytes, split: Split
) -> None:
    """A proxy in front of us that skips white space, splits on any of it, or
    ends lines at a bare LF (as Postfix's parser does) would see a BDAT here
    and frame its chunk; we must not read that chunk as commands."""
    dialogue = in_transaction()
    out = dialogue.send(line % len(SMUGGLED) + b"\r\n" + SMUGGLED, split)
    assert out == replies.BDAT_SYNTAX.to_bytes()
    assert dialogue.state is State.CLOSED
    assert len(dialogue.of_type(MailFrom)) == 1  # the transaction's own


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize(
    "line", [b"\x00BDAT %d LAST", b"BD\x00AT %d LAST"], ids=["nul-before", "nul-inside"]
)
def test_a_line_that_is_bdat_once_a_hop_deletes_its_nuls_ends_the_session(
    line: bytes, split: Split
) -> None:
    dialogue = in_transaction()
    out = dialogue.send(line % len(SMUGGLED) + b"\r\n" + SMUGGLED, split)
    assert out == replies.BDAT_SYNTAX.to_bytes()
    assert len(dialogue.of_type(MailFrom)) == 1


def test_an_over_long_line_whose_bdat_a_read_splits_ends_the_session() -> None:
    """What is kept of an over-long line to name its command may take more than one read."""
    dialogue = in_transaction()
    assert dialogue.send(b" " * (limits.MAX_LINE - 1) + b"B") == b""
    out = dialogue.send(b"DAT %d LAST\r\n" % len(SMUGGLED) + SMUGGLED)
    assert out == replies.BDAT_SYNTAX.to_bytes()
    assert len(dialogue.of_type(MailFrom)) == 1


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize(
    "response",
    [b"abc\nBDAT %d", b"abc\r \tbdat %d LAST", b"A" * (limits.SASL_LINE + 10) + b"\nBDAT %d"],
    ids=["after-lf", "after-cr", "over-long"],
)
def test_an_auth_response_a_lenient_parser_ends_before_a_bdat_ends_the_session(
    response: bytes, split: Split
) -> None:
    dialogue = greeted(tls_active=True, offer_auth=True)
    assert dialogue.say("AUTH LOGIN") == b"334 VXNlcm5hbWU6\r\n"
    out = dialogue.send(response % len(SMUGGLED) + b"\r\n" + SMUGGLED, split)
    assert out == replies.BDAT_SYNTAX.to_bytes()
    assert not dialogue.of_type(MailFrom)
    assert dialogue.state is State.CLOSED


def test_an_auth_response_may_begin_with_bdat() -> None:
    """Base64 may: only after a bare CR or LF is it taken for a command."""
    dialogue = greeted(tls_active=True, offer_auth=True)
    dialogue.say("AUTH LOGIN")
    assert dialogue.say("BDAT\nabcd") == replies.AUTH_BAD_BASE64.to_bytes()
    assert dialogue.state is State.GREETED


def test_a_message_too_big_with_a_fake_end_still_ends_the_session() -> None:
    """The size refuses it first; the bare LF still made a fake end for some parser."""
    dialogue = in_transaction(max_message_size=1024)
    hidden = b"MAIL FROM:<ceo@our.example>\r\nRCPT TO:<r@our.example>\r\nDATA\r\n"
    out = dialogue.send(
        b"DATA\r\nline1\n.\nBDAT 2000 LAST\r\n" + b"x" * 2000 + b"\r\n.\r\n" + hidden
    )
    assert codes(out) == [354, 552]
    assert len(dialogue.of_type(MailFrom)) == 1  # the transaction's own
    assert dialogue.state is State.CLOSED


@pytest.mark.parametrize(
    "line",
    [
        b" NOOP",
        b"NOOP\nNOOP",
        b"XBDAT 5",
        b"NOOP BDAT 5",
        b" " * 600 + b"NOOP",
        b"N" * 600,
        b"NOOP " + b"x" * limits.MAX_LINE,
        b" " * 10 + b"NOOP " + b"x" * limits.MAX_LINE,
    ],
    ids=[
        "space-noop",
        "lf-noop",
        "xbdat",
        "bdat-argument",
        "long-spaces-noop",
        "long",
        "far",
        "far-after-spaces",
    ],
)
def test_a_refused_line_no_parser_reads_as_bdat_leaves_the_session_open(line: bytes) -> None:
    dialogue = in_transaction()
    out = dialogue.send(line + b"\r\nNOOP\r\n")
    assert codes(out)[-1] == 250
    assert dialogue.state is State.RCPT


def test_bdat_without_chunking_is_502_and_its_chunk_skipped() -> None:
    dialogue = in_transaction(chunking=False)
    out = dialogue.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
    assert out == replies.BDAT_NOT_AVAILABLE.to_bytes() + replies.NOOP_OK.to_bytes()
    assert dialogue.state is State.RCPT


def test_rfc3030_3_binarymime_over_bdat_is_opaque_even_when_strict() -> None:
    dialogue = greeted()
    dialogue.say("MAIL FROM:<a@b.example> BODY=BINARYMIME", "RCPT TO:<r@our.example>")
    chunk = bytes(range(256))
    assert codes(dialogue.send(b"BDAT 256 LAST\r\n" + chunk)) == [250]
    assert dialogue.body() == chunk


def test_rset_between_chunks_resets_the_transaction() -> None:
    dialogue = in_transaction()
    dialogue.send(b"BDAT 2\r\nab")
    dialogue.events.clear()
    assert dialogue.say("RSET") == replies.RESET_OK.to_bytes()
    assert dialogue.events == [TransactionReset()]
    assert dialogue.state is State.GREETED
    # The size of the dropped message is forgotten too.
    dialogue.say("MAIL FROM:<>", "RCPT TO:<r@our.example>")
    dialogue.send(b"BDAT 1 LAST\r\nz")
    assert dialogue.of_type(MessageComplete)[0].size == 1  # type: ignore[attr-defined]


def test_eof_before_bdat_last_delivers_nothing() -> None:
    dialogue = in_transaction()
    dialogue.send(b"BDAT 3\r\nabcBDAT 5 LAST\r\nab")
    events = dialogue.eof()
    assert events == [ConnectionClosed(reply=None)]
    assert not dialogue.of_type(MessageComplete)


def test_eof_while_skipping_a_refused_chunk() -> None:
    dialogue = greeted()
    dialogue.send(b"BDAT 10\r\nabc")
    assert dialogue.eof() == [ConnectionClosed(reply=None)]
    assert not dialogue.of_type(CommandRejected)
