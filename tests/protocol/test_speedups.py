"""The DATA reader's C passes agree with their Python twins on every input.

``_data.py`` defines the passes in Python (``py_find_end``, ``py_take``) and
uses ``_speedups.c`` when it is built.  The Python versions are the
specification: each C answer is compared with them, exhaustively on short
inputs over the bytes that matter (".", CR, LF, NUL and one other), and by
hypothesis on long ones.  ``nox -s tests`` fails when the extension did not
build, so these never skip in CI.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_recv import protocol
from smtp_recv.protocol import _data

_speedups = pytest.importorskip("smtp_recv.protocol._speedups")

#: The bytes that the passes treat specially, and one that they do not.
ALPHABET = b".\r\nx"


def strings(max_length: int, alphabet: bytes = ALPHABET) -> Iterator[bytes]:
    for length in range(max_length + 1):
        for letters in itertools.product(alphabet, repeat=length):
            yield bytes(letters)


def test_take_agrees_on_every_short_piece() -> None:
    checked = 0
    for piece in strings(8):
        for starts_line in (False, True):
            assert _speedups.take(piece, len(piece), starts_line) == _data.py_take(
                piece, len(piece), starts_line
            ), (piece, starts_line)
            checked += 1
    assert checked == 2 * sum(4**n for n in range(9))


def test_find_end_agrees_on_every_short_buffer_and_start() -> None:
    for data in strings(7):
        for start in range(len(data) + 2):
            assert _speedups.find_end(data, start) == _data.py_find_end(data, start), (data, start)


def test_take_copies_only_up_to_length() -> None:
    assert _speedups.take(b".a\r\n..b\r\nrest", 9, True) == (b"a\r\n.b\r\n", False)
    assert _speedups.take(b"a\r\nb", 3, False) == (b"a\r\n", False)
    assert _speedups.take(b"a\r", 2, False) == (b"a\r", True)
    assert _speedups.take(b"", 0, True) == (b"", False)


def test_take_reads_bytearrays_as_the_reader_passes_them() -> None:
    data = bytearray(b"Subject: x\r\n..dot\r\nbare\n")
    assert _speedups.take(data, len(data), True) == _data.py_take(data, len(data), True)
    assert _speedups.find_end(bytearray(b"a\r\n.\r\n"), 0) == 1


def test_take_never_reads_before_its_buffer() -> None:
    # A slice whose memory is preceded by CR: the LF that starts it is bare.
    view = memoryview(b"\r\nx\r\n")[1:]
    assert _speedups.take(view, len(view), False) == (b"\nx\r\n", True)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: _speedups.find_end(b"abc", -1), ValueError),
        (lambda: _speedups.take(b"abc", 4, False), ValueError),
        (lambda: _speedups.take(b"abc", -1, False), ValueError),
        (lambda: _speedups.take("abc", 1, False), TypeError),
        (lambda: _speedups.find_end(memoryview(b"abc")[::2], 0), BufferError),
    ],
)
def test_bad_arguments_raise_instead_of_reading_out_of_bounds(
    call: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        call()  # type: ignore[operator]


# Long pieces: mostly ordinary lines, with dots, bare CRs and LFs and NULs
# where hypothesis puts them.
special = st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n.\r\n", b"\x00"])
ordinary = st.binary(min_size=1, max_size=100)
pieces = st.lists(st.one_of(special, ordinary), max_size=60).map(b"".join)


@given(data=pieces, cut=st.integers(min_value=0), starts_line=st.booleans())
def test_property_take_agrees_with_python(data: bytes, cut: int, starts_line: bool) -> None:
    length = cut % (len(data) + 1)
    assert _speedups.take(data, length, starts_line) == _data.py_take(data, length, starts_line)


@given(data=pieces, start=st.integers(min_value=0, max_value=7000))
def test_property_find_end_agrees_with_python(data: bytes, start: int) -> None:
    assert _speedups.find_end(data, start) == _data.py_find_end(data, start)


def test_the_reader_uses_the_c_passes_when_built() -> None:
    assert _data._take is _speedups.take
    assert _data._find_end is _speedups.find_end


def test_without_the_extension_the_reader_uses_the_python_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail as it does where no C
    # compiler built the extension (and the package must not have it either).
    monkeypatch.setitem(sys.modules, "smtp_recv.protocol._speedups", None)
    monkeypatch.delattr(protocol, "_speedups")
    try:
        importlib.reload(_data)
        assert _data._take is _data.py_take
        assert _data._find_end is _data.py_find_end
    finally:
        monkeypatch.undo()
        importlib.reload(_data)
    assert _data._take is _speedups.take
