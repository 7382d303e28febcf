"""The DATA reader: the end of a message, dot-unstuffing, strictness and size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from protocol_harness import SPLITS

from smtp_recv.protocol import limits
from smtp_recv.protocol._buffer import ReceiveBuffer
from smtp_recv.protocol._data import DataReader

# Each test runs with the C passes over message bytes and with the Python ones.
pytestmark = pytest.mark.usefixtures("data_passes")

Split = Callable[[bytes], list[bytes]]

#: The fake ends of data of the 2023 SMTP smuggling advisories, and a NUL one.
SMUGGLING_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n\x00.\r\n"]


@dataclass
class Read:
    body: bytes
    ended: bool
    reader: DataReader
    #: What was left in the buffer after the end (the next commands).
    rest: bytes
    #: How many pieces came out before the end.
    pieces: int


def read(pieces: list[bytes], *, limit: int = 1 << 20, strict: bool = True) -> Read:
    """Feed ``pieces`` and read after each; what follows the end stays buffered."""
    buffer = ReceiveBuffer()
    reader = DataReader(limit, strict)
    body, ended, count = b"", False, 0
    for piece in pieces:
        buffer.append(piece)
        while not ended:
            before = len(buffer)
            out, ended = reader.read(buffer)
            body += out
            count += bool(out)
            if len(buffer) == before and not ended:
                break
        if not ended:
            # Whatever waits for more bytes is less than one flush.
            assert len(buffer) < limits.DATA_FLUSH
    return Read(body, ended, reader, bytes(buffer.raw()), count)


def read_split(data: bytes, split: Split, *, limit: int = 1 << 20, strict: bool = True) -> Read:
    return read(split(data), limit=limit, strict=strict)


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_1_1_4_data_ends_only_at_crlf_dot_crlf(split: Split) -> None:
    result = read_split(b"Subject: hi\r\n\r\nbody\r\n.\r\n", split)
    assert result.ended
    assert result.body == b"Subject: hi\r\n\r\nbody\r\n"
    assert result.reader.size == len(result.body)
    assert result.rest == b""


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_bytes_after_the_end_stay_for_the_next_command(split: Split) -> None:
    result = read_split(b"line\r\n.\r\nQUIT\r\nNOOP", split)
    assert result.ended
    assert result.body == b"line\r\n"
    assert result.rest == b"QUIT\r\nNOOP"


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_1_1_4_an_empty_message_is_a_lone_dot(split: Split) -> None:
    result = read_split(b".\r\nQUIT\r\n", split)
    assert result.ended
    assert result.body == b""
    assert result.reader.size == 0
    assert result.rest == b"QUIT\r\n"


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_5_2_dot_unstuffing(split: Split) -> None:
    """``..``, ``. ``, ``.x`` and ``..`` come out as ``.``, `` ``, ``x`` and ``.``."""
    result = read_split(b"..\r\n. \r\n.x\r\n..\r\n.\r\n", split)
    assert result.ended
    assert result.body == b".\r\n \r\nx\r\n.\r\n"
    assert result.reader.size == len(result.body)


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_rfc5321_4_5_2_only_one_dot_is_removed(split: Split) -> None:
    result = read_split(b"...\r\n....x\r\na.b\r\n.\r\n", split)
    assert result.body == b"..\r\n...x\r\na.b\r\n"


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_dot_in_the_middle_of_a_line_is_kept(split: Split) -> None:
    result = read_split(b"a .\r\nb.\r\n.\r\n", split)
    assert result.body == b"a .\r\nb.\r\n"


@pytest.mark.parametrize("fake_end", SMUGGLING_ENDS)
@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_smuggled_ends_never_end_the_data(fake_end: bytes, split: Split) -> None:
    """SMTP smuggling (CVE-2023-51764/5/6): only CRLF.CRLF ends the message."""
    data = b"line1" + fake_end + b"MAIL FROM:<ceo@our.example>\r\n.\r\nNOOP\r\n"
    strict = read_split(data, split, strict=True)
    assert strict.ended
    assert strict.rest == b"NOOP\r\n"
    assert strict.reader.refused
    assert strict.reader.bare_line_ending or strict.reader.nul
    lenient = read_split(data, split, strict=False)
    assert lenient.ended
    assert lenient.rest == b"NOOP\r\n"
    assert not lenient.reader.refused
    assert b"MAIL FROM:<ceo@our.example>\r\n" in lenient.body
    assert lenient.body.startswith(b"line1")


def test_lenient_mode_passes_bare_line_endings_verbatim() -> None:
    result = read([b"a\nb\rc\r\r\n\n.\n\r.\r\r\n.\r\n"], strict=False)
    assert result.ended
    assert result.body == b"a\nb\rc\r\r\n\n.\n\r.\r\r\n"
    assert not result.reader.bare_line_ending


@pytest.mark.parametrize(
    ("body", "bare", "nul"),
    [
        (b"ok\r\n", False, False),
        (b"bare\nlf\r\n", True, False),
        (b"bare\rcr\r\n", True, False),
        (b"cr before crlf\r\r\n", True, False),
        (b"lf after crlf\r\n\nx\r\n", True, False),
        (b"nul \x00 here\r\n", False, True),
    ],
)
def test_strict_mode_refuses_bare_line_endings_and_nul(body: bytes, bare: bool, nul: bool) -> None:
    result = read([body + b".\r\n"], strict=True)
    assert result.ended
    assert result.reader.bare_line_ending is bare
    assert result.reader.nul is nul
    assert result.reader.refused is (bare or nul)
    if bare or nul:
        assert result.body == b""


def test_a_refused_message_passes_nothing_on_after_the_fault() -> None:
    result = read([b"first\r\n", b"bare\nline\r\n", b"later\r\n", b".\r\n"], strict=True)
    assert result.ended
    assert result.body == b"first\r\n"
    assert result.reader.bare_line_ending


def test_size_limit_is_applied_while_streaming_and_the_rest_drained() -> None:
    """RFC 1870 / RFC 5321 4.5.3.1.7: read to the real end, pass nothing past the limit."""
    pieces = [b"0123456789\r\n"] * 5 + [b".\r\nQUIT\r\n"]
    result = read(pieces, limit=30)
    assert result.ended
    assert result.reader.oversized
    assert result.reader.refused
    assert len(result.body) <= 30
    assert result.rest == b"QUIT\r\n"


def test_a_message_of_exactly_the_limit_is_not_oversized() -> None:
    result = read([b"12345678\r\n.\r\n"], limit=10)
    assert result.ended
    assert not result.reader.oversized
    assert result.body == b"12345678\r\n"
    assert result.reader.size == 10


def test_the_size_counts_octets_after_unstuffing() -> None:
    result = read([b"..\r\n..\r\n.\r\n"], limit=6)
    assert not result.reader.oversized
    assert result.reader.size == 6


def test_a_long_line_is_streamed_not_buffered() -> None:
    long_line = b"A" * (limits.DATA_FLUSH + 100)
    buffer = ReceiveBuffer()
    reader = DataReader(1 << 20, strict=True)
    buffer.append(long_line)
    piece, ended = reader.read(buffer)
    assert not ended
    # All but the last byte, which might be the CR of a CRLF.
    assert piece == long_line[:-1]
    assert len(buffer) == 1
    buffer.append(b"\r\n.\r\n")
    piece, ended = reader.read(buffer)
    assert ended
    assert piece == b"A\r\n"
    assert not reader.refused


def test_a_flushed_long_line_keeps_its_final_cr_for_the_lf() -> None:
    """The flush must not split a CRLF, or strict mode would see a bare CR."""
    body = b"B" * limits.DATA_FLUSH + b"\r"
    result = read([body, b"\n.\r\n"], strict=True)
    assert result.ended
    assert not result.reader.bare_line_ending
    assert result.body == b"B" * limits.DATA_FLUSH + b"\r\n"


def test_a_dot_after_a_flush_is_mid_line_and_kept() -> None:
    result = read([b"C" * limits.DATA_FLUSH, b".D\r\n..\r\n.\r\n"])
    assert result.body == b"C" * limits.DATA_FLUSH + b".D\r\n.\r\n"


def test_a_bare_cr_at_the_edge_of_a_flush_is_seen() -> None:
    result = read([b"E" * limits.DATA_FLUSH + b"\rF", b"\r\n.\r\n"], strict=True)
    assert result.ended
    assert result.reader.bare_line_ending


def test_a_stuffed_dot_line_is_not_the_end_however_it_is_split() -> None:
    for point in range(1, 8):
        data = b"a\r\n..\r\n.\r\n"
        result = read([data[:point], data[point:]])
        assert result.ended
        assert result.body == b"a\r\n.\r\n"


def test_one_byte_at_a_time_is_linear() -> None:
    """Bytes that cannot end the data are not searched again (h11's rule)."""
    buffer = ReceiveBuffer()
    reader = DataReader(1 << 20, strict=True)
    for count in range(1, 100):
        buffer.append(b"y")
        assert reader.read(buffer) == (b"", False)
        assert reader._searched == max(count - 4, 0)
