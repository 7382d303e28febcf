"""``ReceiveBuffer.next_line``: only CRLF ends a line, and the buffer stays bounded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from protocol_harness import SPLITS

from smtp_recv.protocol import limits
from smtp_recv.protocol._buffer import LINE_TOO_LONG, ReceiveBuffer

Split = Callable[[bytes], list[bytes]]


def read_lines(pieces: list[bytes], limit: int = limits.COMMAND_LINE) -> tuple[list[object], int]:
    """Feed ``pieces``, taking every line as soon as it is complete."""
    buffer = ReceiveBuffer()
    lines: list[object] = []
    for piece in pieces:
        buffer.append(piece)
        while (line := buffer.next_line(limit)) is not None:
            lines.append(line)
        assert len(buffer) < limit, "the buffer outgrew the line limit"
    return lines, len(buffer)


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_lines_come_out_in_order_without_their_crlf(split: Split) -> None:
    lines, left = read_lines(split(b"EHLO client.example\r\nMAIL FROM:<>\r\n\r\nNOOP\r\n"))
    assert lines == [b"EHLO client.example", b"MAIL FROM:<>", b"", b"NOOP"]
    assert left == 0


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_trailing_partial_line_stays_buffered(split: Split) -> None:
    lines, left = read_lines(split(b"NOOP\r\nRSET\r\nQUI"))
    assert lines == [b"NOOP", b"RSET"]
    assert left == len(b"QUI")


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_2_3_8_bare_lf_does_not_end_a_line(split: Split) -> None:
    """``NOOP\\nNOOP\\r\\n`` is one line holding a bare LF, never two commands."""
    lines, _ = read_lines(split(b"NOOP\nNOOP\r\n"))
    assert lines == [b"NOOP\nNOOP"]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_2_3_8_bare_cr_does_not_end_a_line(split: Split) -> None:
    lines, _ = read_lines(split(b"NOOP\rNOOP\r\rX\n\r\n"))
    assert lines == [b"NOOP\rNOOP\r\rX\n"]


def test_a_cr_at_the_end_waits_for_its_lf() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"NOOP\r")
    assert buffer.next_line(limits.COMMAND_LINE) is None
    buffer.append(b"\n")
    assert buffer.next_line(limits.COMMAND_LINE) == b"NOOP"
    assert not buffer


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_5_3_1_4_a_line_of_exactly_the_limit_is_accepted(split: Split) -> None:
    line = b"N" * (limits.COMMAND_LINE - 2)
    lines, _ = read_lines(split(line + b"\r\nNOOP\r\n"))
    assert lines == [line, b"NOOP"]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_line_one_octet_too_long_is_reported_once_and_skipped(split: Split) -> None:
    line = b"N" * (limits.COMMAND_LINE - 1)
    lines, _ = read_lines(split(line + b"\r\nNOOP\r\n"))
    assert lines == [LINE_TOO_LONG, b"NOOP"]


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_an_over_long_line_with_crs_inside_is_skipped_to_its_crlf(split: Split) -> None:
    data = b"A" * 1000 + b"\r" + b"B" * 1000 + b"\r\r\n" + b"QUIT\r\n"
    lines, _ = read_lines(split(data))
    assert lines == [LINE_TOO_LONG, b"QUIT"]


def test_an_over_long_line_split_inside_its_crlf_is_reported_once() -> None:
    # The CR of the CRLF arrives while the line is being discarded: it must be
    # kept so that the LF that follows still ends the line.
    lines, _ = read_lines([b"A" * 2000 + b"\r", b"\n", b"NOOP\r\n"])
    assert lines == [LINE_TOO_LONG, b"NOOP"]
    lines, _ = read_lines([b"A" * 2000, b"\r", b"\nNOOP\r\n"])
    assert lines == [LINE_TOO_LONG, b"NOOP"]


def test_ten_megabytes_without_a_line_end_keep_the_buffer_bounded() -> None:
    buffer = ReceiveBuffer()
    for _ in range(10):
        buffer.append(b"A" * 1_000_000)
        assert buffer.next_line(limits.MAX_LINE) is None
        assert len(buffer) <= limits.MAX_LINE
    buffer.append(b"\r\nNOOP\r\n")
    assert buffer.next_line(limits.MAX_LINE) is LINE_TOO_LONG
    assert buffer.next_line(limits.MAX_LINE) == b"NOOP"
    assert buffer.next_line(limits.MAX_LINE) is None


def test_search_resumes_where_it_stopped() -> None:
    """A long line fed one byte at a time is scanned once, not once per byte (h11)."""
    buffer = ReceiveBuffer()
    for count in range(1, 200):
        buffer.append(b"x")
        assert buffer.next_line(limits.COMMAND_LINE) is None
        # Everything but a possible final CR is known to hold no CRLF.
        assert buffer._searched == count - 1
    buffer.append(b"\r\n")
    assert buffer.next_line(limits.COMMAND_LINE) == b"x" * 199
    assert buffer._searched == 0


def test_take_returns_at_most_what_is_buffered() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"abcdef")
    assert buffer.take(4) == b"abcd"
    assert buffer.take(10) == b"ef"
    assert buffer.take(3) == b""
    assert len(buffer) == 0
    assert not buffer


def test_take_all_and_consume() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"STARTTLS\r\nEHLO injected\r\n")
    assert buffer.next_line(limits.COMMAND_LINE) == b"STARTTLS"
    assert buffer.take_all() == b"EHLO injected\r\n"
    buffer.append(b"0123456789")
    assert bytes(buffer.raw()) == b"0123456789"
    buffer.consume(4)
    assert bool(buffer)
    assert bytes(buffer.raw()) == b"456789"


def test_line_too_long_marker_names_itself() -> None:
    assert repr(LINE_TOO_LONG) == "LINE_TOO_LONG"
