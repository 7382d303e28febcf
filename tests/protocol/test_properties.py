"""Hypothesis properties of the core (``nox -s fuzz`` runs them with a big budget).

1. The same bytes, split anywhere, give the same events and the same replies.
2. Whatever the client sends, the core gives events or ``ProtocolError``,
   never another exception, and its buffer stays bounded.
3. Generated sessions round-trip: the body delivered is the body sent, for
   DATA (dot-stuffed) and for BDAT (chunked).
4. (In ``test_state.py``: every state against every command.)
5. Smuggled ends of data never end the data.
6. After ``shut_down`` no transaction begins, and 421 is the last word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from unittest import mock

from hypothesis import assume, given
from hypothesis import strategies as st
from protocol_harness import (
    Dialogue,
    config,
    cut,
    dot_stuff,
    message_outcomes,
    normalise,
    parse_replies,
    plain,
    unstuff_reference,
)

from smtp_recv.protocol import (
    PAUSED,
    ConnectionClosed,
    DataStarted,
    Event,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    ProtocolError,
    RcptTo,
    ServerConnection,
    SessionConfig,
    State,
    TransactionReset,
    _data,
    limits,
    replies,
)

# -- strategies ----------------------------------------------------------------------
#: Command lines, mostly valid, with the pieces that have broken parsers before.
COMMANDS = [
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"MAIL FROM:<sender@client.example>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<j\xc3\xb6ran@b\xc3\xbccher.example> SMTPUTF8\r\n",
    b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
    b"RCPT TO:<rcpt@our.example>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"RCPT TO:<>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN " + plain("alice", "pw").encode() + b"\r\n",
    plain("alice", "pw").encode() + b"\r\n",
    b"*\r\n",
    b"=\r\n",
    b".\r\n",
    b"..\r\n",
    b"\r\n",
    b"line of text\r\n",
]
JUNK = [b"\r", b"\n", b".", b"\x00", b"\xff", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"A" * 700, b" "]

SESSION_CONFIGS = st.builds(
    config,
    max_message_size=st.sampled_from([10, 200, 32 << 20]),
    offer_starttls=st.booleans(),
    tls_active=st.booleans(),
    offer_auth=st.booleans(),
    auth_required=st.booleans(),
    smtputf8=st.booleans(),
    chunking=st.booleans(),
    enhanced_status_codes=st.booleans(),
    reject_bare_line_endings=st.booleans(),
)

streams = st.lists(
    st.one_of(
        st.sampled_from(COMMANDS),
        st.sampled_from(COMMANDS),
        st.sampled_from(JUNK),
        st.binary(max_size=40),
    ),
    max_size=40,
).map(b"".join)


@dataclass
class Run:
    events: list[Event]
    output: bytes
    error: ProtocolError | None
    conn: ServerConnection


def run(session: SessionConfig, pieces: list[bytes], *, eof: bool = False) -> Run:
    """Feed ``pieces`` to a fresh connection, accepting every decision.

    After each ``NEED_DATA`` the buffer must be within its bound for the state.
    """
    dialogue = Dialogue(session)
    conn = dialogue.conn
    # An empty piece would mean EOF: only ``eof`` sends one.
    for piece in [*(piece for piece in pieces if piece), *([b""] if eof else [])]:
        conn.receive_data(piece)
        dialogue.pump()
        if dialogue.error is not None:
            break
        check_bounded(conn)
    return Run(dialogue.events, conn.data_to_send(), dialogue.error, conn)


def check_bounded(conn: ServerConnection) -> None:
    state = conn.state
    size = len(conn._buffer)
    if conn._pending is not None or state in (State.TLS, State.CLOSED):
        return
    if state is State.DATA:
        assert size < limits.DATA_FLUSH
    elif state is State.BDAT or conn._discard_remaining:
        assert size == 0
    else:
        assert size < limits.MAX_LINE


# -- 1. splitting does not matter ----------------------------------------------------
@given(
    session=SESSION_CONFIGS,
    data=streams,
    points=st.lists(st.integers(0, 2000), max_size=12),
    eof=st.booleans(),
)
def test_property_arbitrary_splits_give_the_same_events_and_replies(
    session: SessionConfig, data: bytes, points: list[int], eof: bool
) -> None:
    whole = run(session, [data], eof=eof)
    split = run(session, cut(data, points), eof=eof)
    assert normalise(split.events) == normalise(whole.events)
    assert split.output == whole.output
    assert (split.error is None) == (whole.error is None)
    if whole.error is not None:
        assert split.error is not None
        assert split.error.reply == whole.error.reply
    assert split.conn.state is whole.conn.state
    assert split.conn.error_count == whole.conn.error_count
    assert split.conn.trailing_data.startswith(
        whole.conn.trailing_data
    ) or whole.conn.trailing_data.startswith(split.conn.trailing_data)


@given(session=SESSION_CONFIGS, data=streams)
def test_property_one_byte_at_a_time_equals_all_at_once(
    session: SessionConfig, data: bytes
) -> None:
    whole = run(session, [data])
    bytewise = run(session, [data[i : i + 1] for i in range(len(data))])
    assert normalise(bytewise.events) == normalise(whole.events)
    assert bytewise.output == whole.output


# -- 2. nothing but events or ProtocolError ----------------------------------------
@given(session=SESSION_CONFIGS, data=st.binary(max_size=3000), chunk=st.integers(1, 600))
def test_property_arbitrary_bytes_give_events_or_protocol_error(
    session: SessionConfig, data: bytes, chunk: int
) -> None:
    result = run(session, [data[i : i + chunk] for i in range(0, len(data), chunk)], eof=True)
    assert_sane(result)


@given(session=SESSION_CONFIGS, data=streams, prefix=st.sampled_from([b"", b"EHLO x\r\n"]))
def test_property_mostly_valid_command_streams_give_events_or_protocol_error(
    session: SessionConfig, data: bytes, prefix: bytes
) -> None:
    result = run(session, [prefix + data], eof=True)
    assert_sane(result)


def assert_sane(result: Run) -> None:
    """What must hold after any input: well-formed replies, a finished
    session, and messages that are only ever delivered whole."""
    parse_replies(result.output)
    conn = result.conn
    if result.error is None and conn._pending is None:
        # The input ended with EOF: the session is over one way or another.
        assert conn.state in (State.CLOSED, State.TLS)
        assert conn.next_event() is PAUSED
    body: bytes | None = None
    chunked = False
    for event in result.events:
        if isinstance(event, DataStarted):
            assert body is None, "a message began inside another"
            body, chunked = b"", event.chunked
        elif isinstance(event, MessageData):
            assert body is not None, "message data outside a message"
            body += event.data
        elif isinstance(event, MessageComplete):
            assert body is not None, "a message completed that never began"
            assert event.size == len(body)
            assert event.recipients
            if not chunked and conn.config.reject_bare_line_endings:
                # Strict mode delivers only CRLF-structured text without NUL.
                assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")
                assert b"\x00" not in body
            body = None
        elif isinstance(event, MessageAborted | TransactionReset | ConnectionClosed):
            body = None


# -- 3. round trips ---------------------------------------------------------------
#: A body line: any bytes but CR, LF and NUL (strict mode refuses those), with
#: the lines that need transparency made likely.
body_lines = st.one_of(
    st.binary(max_size=60).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
    ),
    st.sampled_from(
        [b".", b"..", b". ", b".x", b"...", b"", b"\xc3\xa9t\xc3\xa9", b"\x80\xff", b"QUIT", b"."]
    ),
)
bodies = st.lists(body_lines, max_size=30).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)
addresses = st.from_regex(
    r"[a-z0-9][a-z0-9.+_-]{0,10}@[a-z][a-z0-9-]{0,10}\.example", fullmatch=True
).filter(
    lambda address: (
        ".." not in address and ".@" not in address and not address.endswith("-.example")
    )
)


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[str, list[str], bytes]:
    sender = draw(st.one_of(st.just(""), addresses))
    recipients = draw(st.lists(addresses, min_size=1, max_size=5))
    return sender, recipients, draw(bodies)


def envelope_lines(sender: str, recipients: list[str]) -> bytes:
    lines = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{recipient}>" for recipient in recipients]
    return "".join(line + "\r\n" for line in lines).encode()


def split_messages(events: list[Event]) -> list[tuple[bytes, Event]]:
    """The body of each message, with the event that ended it."""
    messages: list[tuple[bytes, Event]] = []
    body = b""
    for event in events:
        if isinstance(event, DataStarted):
            body = b""
        elif isinstance(event, MessageData):
            body += event.data
        elif isinstance(event, MessageComplete | MessageAborted):
            messages.append((body, event))
    return messages


@given(
    transactions=st.lists(envelopes(), min_size=1, max_size=4),
    points=st.lists(st.integers(0, 5000), max_size=10),
)
def test_property_data_sessions_round_trip(
    transactions: list[tuple[str, list[str], bytes]], points: list[int]
) -> None:
    """RFC 5321 4.5.2: dot-stuffed by the client, unstuffed by us, equal to the original."""
    stream = b"EHLO client.example\r\n"
    for sender, recipients, body in transactions:
        stream += envelope_lines(sender, recipients) + b"DATA\r\n" + dot_stuff(body) + b".\r\n"
    stream += b"QUIT\r\n"
    result = run(config(), cut(stream, points))
    assert result.error is None
    messages = split_messages(result.events)
    assert len(messages) == len(transactions)
    for (body, event), (sender, recipients, sent) in zip(messages, transactions, strict=True):
        assert body == sent
        assert event == MessageComplete(sender=sender, recipients=tuple(recipients), size=len(sent))
    answers = parse_replies(result.output)
    assert answers[-1].code == 221
    assert all(answer.code < 400 for answer in answers)


@given(body=st.binary(max_size=400), points=st.lists(st.integers(0, 600), max_size=8))
def test_property_lenient_data_round_trips_any_bytes(body: bytes, points: list[int]) -> None:
    """With ``reject_bare_line_endings=False`` any body (ending in CRLF) comes back verbatim."""
    body += b"\r\n"
    stream = (
        b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<r@our.example>\r\nDATA\r\n"
        + dot_stuff(body)
        + b".\r\n"
    )
    result = run(config(reject_bare_line_endings=False), cut(stream, points))
    [(delivered, event)] = split_messages(result.events)
    assert isinstance(event, MessageComplete)
    assert delivered == body


@given(
    body=st.one_of(
        st.binary(max_size=600),
        # Text, with now and then a bare CR or LF or a NUL.
        st.lists(
            st.one_of(
                st.sampled_from([b"\r\n", b"\r", b"\n", b"\x00", b"x", b".\r\n"]),
                st.binary(max_size=3).filter(lambda piece: not set(piece) & {0, 10, 13}),
            ),
            max_size=60,
        ).map(b"".join),
    ),
    sizes=st.lists(st.integers(0, 120), max_size=10),
    points=st.lists(st.integers(0, 1000), max_size=10),
    binarymime=st.booleans(),
    strict=st.booleans(),
)
def test_property_bdat_sessions_round_trip(
    body: bytes, sizes: list[int], points: list[int], binarymime: bool, strict: bool
) -> None:
    """RFC 3030: the chunks are the message, byte for byte, however it is cut.

    Unless it is ``BODY=BINARYMIME``, it is text all the same: in strict mode
    a bare CR or LF (a CRLF split between chunks is none) or a NUL gets it
    refused after its last chunk, as DATA would.
    """
    chunks, rest = [], body
    for size in sizes:
        chunks.append(rest[:size])
        rest = rest[size:]
    chunks.append(rest)
    stream = (
        b"EHLO x\r\nMAIL FROM:<>"
        + (b" BODY=BINARYMIME" if binarymime else b"")
        + b"\r\nRCPT TO:<r@our.example>\r\n"
    )
    for chunk in chunks[:-1]:
        stream += b"BDAT %d\r\n" % len(chunk) + chunk
    stream += b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1] + b"QUIT\r\n"
    result = run(config(reject_bare_line_endings=strict), cut(stream, points))
    [(delivered, event)] = split_messages(result.events)
    codes = [answer.code for answer in parse_replies(result.output)]
    assert codes[:-2] == [250, 250, 250] + [250] * (len(chunks) - 1)
    text = strict and not binarymime
    if text and re.search(rb"\r(?!\n)|(?<!\r)\n", body):
        assert event == MessageAborted(reply=replies.BARE_LINE_ENDING_IN_DATA)
        assert codes[-2:] == [550, 221]
    elif text and b"\x00" in body:
        assert event == MessageAborted(reply=replies.NUL_IN_DATA)
        assert codes[-2:] == [550, 221]
    else:
        assert delivered == body
        assert isinstance(event, MessageComplete)
        assert event.size == len(body)
        assert codes[-2:] == [250, 221]


@given(body=bodies)
def test_property_dot_stuffing_round_trips_through_the_reference(body: bytes) -> None:
    """The harness's own stuffer and the line-by-line reference agree."""
    assert unstuff_reference(dot_stuff(body)) == body


# -- 5. smuggling -------------------------------------------------------------------
FAKE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n\x00.\r\n"]
SMUGGLED = (
    b"MAIL FROM:<ceo@our.example>\r\n"
    b"RCPT TO:<victim@our.example>\r\n"
    b"DATA\r\n"
    b"From: ceo@our.example\r\n"
    b"\r\n"
    b"Wire the money.\r\n"
)
text_lines = st.lists(
    st.binary(max_size=30).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
    ),
    max_size=6,
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


@given(
    head=text_lines,
    tail=text_lines,
    fake_end=st.sampled_from(FAKE_ENDS),
    position=st.integers(0, 10_000),
    strict=st.booleans(),
    submission=st.booleans(),
    points=st.lists(st.integers(0, 2000), max_size=8),
)
def test_property_smuggled_ends_never_end_the_data(
    head: bytes,
    tail: bytes,
    fake_end: bytes,
    position: int,
    strict: bool,
    submission: bool,
    points: list[int],
) -> None:
    """SECURITY-CASES 1: exactly one outcome, only after the real CRLF.CRLF."""
    # The fake end goes anywhere in the head, even in the middle of a line.
    position %= len(head) + 1
    raw = head[:position] + fake_end + SMUGGLED + head[position:] + tail
    # The client ends with CRLF "." CRLF, as in the advisories; that must be
    # the first end of data in the stream (the head and tail cannot make one
    # with the fake end, but a line of their own could be a lone ".").
    end = b"\r\n.\r\n"
    assume((b"\r\n" + raw + end).find(end) == 2 + len(raw))
    if submission:
        session = config(
            tls_active=True,
            offer_auth=True,
            auth_required=True,
            reject_bare_line_endings=strict,
        )
        prelude = f"EHLO x\r\nAUTH PLAIN {plain('alice', 'pw')}\r\n".encode()
    else:
        session = config(reject_bare_line_endings=strict)
        prelude = b"EHLO x\r\n"
    prelude += b"MAIL FROM:<alice@client.example>\r\nRCPT TO:<bob@our.example>\r\nDATA\r\n"
    dialogue = Dialogue(session)
    before = dialogue.send(prelude)
    assert [answer.code for answer in parse_replies(before)][-1] == 354
    dialogue.events.clear()

    # Everything but the real end: no reply, no outcome, no envelope.
    for piece in cut(raw, points):
        assert dialogue.send(piece) == b""
    assert message_outcomes(dialogue.events) == []
    assert not any(isinstance(event, MailFrom | RcptTo) for event in dialogue.events)

    out = dialogue.send(end + b"QUIT\r\n")
    answers = parse_replies(out)
    [outcome] = message_outcomes(dialogue.events)
    assert not any(isinstance(event, MailFrom | RcptTo) for event in dialogue.events)
    if strict:
        # The refusal, and nothing read after it: the session is over.
        assert [answer.code for answer in answers] == [550]
        assert isinstance(outcome, MessageAborted)
        assert outcome.reply in (replies.BARE_LINE_ENDING_IN_DATA, replies.NUL_IN_DATA)
        assert dialogue.state is State.CLOSED
    else:
        assert [answer.code for answer in answers][-1] == 221
        assert len(answers) == 2, "exactly one reply for the message"
        assert isinstance(outcome, MessageComplete)
        assert outcome.sender == "alice@client.example"
        assert answers[0].code == 250
        delivered = dialogue.body()
        assert SMUGGLED in delivered
        assert delivered == unstuff_reference(raw + b"\r\n")


@given(
    raw=st.lists(
        st.one_of(
            st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"\r\n.", b"\x00", b"x"]),
            st.binary(max_size=20),
        ),
        max_size=40,
    ).map(b"".join),
    points=st.lists(st.integers(0, 1000), max_size=10),
    # limits.DATA_FLUSH: at least 3, so that no flush can split a lone "." CRLF.
    flush=st.integers(3, 12),
    strict=st.booleans(),
    limit=st.sampled_from([1, 16, 64, 1 << 20]),
)
def test_property_message_verdicts_do_not_depend_on_reads_or_flushes(
    raw: bytes, points: list[int], flush: int, strict: bool, limit: int
) -> None:
    """With a tiny ``DATA_FLUSH`` nearly every line is passed on in pieces; the
    message, its verdict (too big, bare line ending, NUL, or accepted) and the
    reference unstuffing must not notice, nor depend on where reads end."""
    end = b"\r\n.\r\n"
    assume((b"\r\n" + raw + end).find(end) == 2 + len(raw))
    stream = (
        b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<r@our.example>\r\nDATA\r\n" + raw + end + b"QUIT\r\n"
    )
    session = config(reject_bare_line_endings=strict, max_message_size=limit)
    with mock.patch.object(_data, "DATA_FLUSH", flush):
        flushed = run(session, cut(stream, points))
    whole = run(session, [stream])
    assert normalise(flushed.events) == normalise(whole.events)
    assert flushed.output == whole.output
    [(body, outcome)] = split_messages(whole.events)
    expected = unstuff_reference(raw + b"\r\n")
    bare = raw.replace(b"\r\n", b"")
    if len(expected) > limit:
        assert outcome == MessageAborted(reply=replies.MESSAGE_TOO_BIG)
    elif strict and (b"\r" in bare or b"\n" in bare):
        assert outcome == MessageAborted(reply=replies.BARE_LINE_ENDING_IN_DATA)
    elif strict and b"\x00" in raw:
        assert outcome == MessageAborted(reply=replies.NUL_IN_DATA)
    else:
        assert isinstance(outcome, MessageComplete)
        assert body == expected
        assert split_messages(flushed.events)[0][0] == body


# -- 6. shutting down ------------------------------------------------------------------
@given(session=SESSION_CONFIGS, before=streams, after=streams)
def test_property_after_shut_down_no_transaction_begins_and_421_is_the_last_word(
    session: SessionConfig, before: bytes, after: bytes
) -> None:
    """RFC 5321 3.8: once the server is going away, the transaction under
    way may end, no new one begins, and 421 ends the session."""
    dialogue = Dialogue(session)
    dialogue.feed(b"EHLO x\r\n" + before)
    if dialogue.error is not None or dialogue.conn._pending is not None:
        return
    dialogue.conn.shut_down(replies.SHUTTING_DOWN)
    dialogue.conn.data_to_send()
    start = len(dialogue.events)
    dialogue.feed(after)
    later = dialogue.events[start:]
    assert not any(isinstance(event, MailFrom) for event in later)
    assert sum(isinstance(event, MessageComplete) for event in later) <= 1
    answers = parse_replies(dialogue.conn.data_to_send())
    closing = [n for n, answer in enumerate(answers) if answer.code == 421]
    assert closing in ([], [len(answers) - 1])
    if closing and answers[-1].enhanced == "4.3.2":
        assert dialogue.state is State.CLOSED
        assert later[-1] == ConnectionClosed(reply=replies.SHUTTING_DOWN)
