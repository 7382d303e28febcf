"""The DATA reader: finds the end of a message and undoes dot-stuffing.

It works on whole buffers, never with a Python loop per line.  Its two
passes over message bytes, finding the end and unstuffing a piece, are
``py_find_end`` and ``py_take`` below; ``_speedups.c`` does the same in C
and is used when the package was built with it (the tests check that both
give the same answer for every input).  The rules (RFC 5321 4.1.1.4 and
4.5.2, and the SMTP smuggling advisories of 2023):

* Only CRLF "." CRLF ends the data.  A bare CR or LF is never a line end, so
  ``\\n.\\n``, ``\\r.\\r`` and every mix of them are ordinary message bytes.
* A line that begins with "." loses that one dot (transparency).
* The size limit is applied while streaming: past it the reader keeps
  reading to the real end but passes nothing more on.  Pieces passed on
  before a refusal was found must be dropped on ``MessageAborted``.
* In strict mode a message with a bare CR or LF, or with a NUL, is read to
  its end and refused.  DATA carries 7bit or 8bitMIME text, which has CR and
  LF only as CRLF and no NUL at all (RFC 5321 2.3.8, RFC 6152 section 3 and
  RFC 2045 2.7/2.8); both are what smuggling hides its fake ends behind, for
  a hop that strips NULs or takes a bare LF as a line end.
"""

from __future__ import annotations

from collections.abc import Callable

from ._buffer import ReceiveBuffer
from .limits import DATA_FLUSH

_END = b"\r\n.\r\n"
# The end marker when the data starts at a line start: "." CRLF.
_END_AT_LINE_START = b".\r\n"


class DataReader:
    """Reads one DATA body out of a ``ReceiveBuffer``."""

    __slots__ = (
        "_at_line_start",
        "_limit",
        "_searched",
        "_strict",
        "bare_line_ending",
        "nul",
        "oversized",
        "size",
    )

    def __init__(self, limit: int, strict: bool) -> None:
        # DATA's 354 is followed by the first line of the message.
        self._at_line_start = True
        # Bytes of the buffer before this offset are known not to hold _END.
        self._searched = 0
        self._limit = limit
        self._strict = strict
        #: Bytes of message so far, after unstuffing (refused or not).
        self.size = 0
        #: The message passed the size limit; nothing more is passed on.
        self.oversized = False
        #: A bare CR or LF was seen (only tracked in strict mode).
        self.bare_line_ending = False
        #: A NUL was seen (only tracked in strict mode).
        self.nul = False

    @property
    def refused(self) -> bool:
        return self.oversized or self.bare_line_ending or self.nul

    def read(self, buffer: ReceiveBuffer) -> tuple[bytes, bool]:
        """Take what can be taken from ``buffer``.

        Returns ``(piece, ended)``: ``piece`` is unstuffed message data (empty
        when there is none yet, or once the message is refused), and ``ended``
        tells that the terminating CRLF.CRLF has been consumed.
        """
        data = buffer.raw()
        starts_line = self._at_line_start
        if starts_line and data[:3] == _END_AT_LINE_START:
            buffer.consume(3)
            return b"", True
        end = _find_end(data, self._searched)
        ended = end >= 0
        if ended:
            # The CRLF before "." ends the last line and belongs to the message.
            cut, consumed = end + 2, end + 5
        else:
            last_crlf = data.rfind(b"\r\n", self._searched)
            if last_crlf >= 0:
                # Pass on whole lines; the rest may be the start of the end marker.
                cut = consumed = last_crlf + 2
            elif len(data) >= DATA_FLUSH:
                # A very long line: pass on all but a last byte that may be CR.
                cut = consumed = len(data) - 1
            else:
                # Nothing to pass on yet.  No CRLF lies before the last 4
                # bytes, so the next search starts there: linear time even
                # when the client sends one byte at a time.
                self._searched = max(len(data) - 4, 0)
                return b"", False
        # Pieces end at a CRLF, except the long-line flush which ends mid-line.
        self._at_line_start = data.endswith(b"\r\n", 0, cut)
        piece, bare = _take(data, cut, starts_line)
        buffer.consume(consumed)
        self._searched = 0
        return self._checked(piece, bare), ended

    def _checked(self, piece: bytes, bare: bool) -> bytes:
        """Count an unstuffed piece and look for faults; ``b""`` once refused."""
        # Every fault is looked for in every piece, even once the message is
        # refused: which reply it gets must depend on the whole message, not
        # on which fault happened to arrive in an earlier read.
        if self._strict:
            if bare:
                self.bare_line_ending = True
            if not self.nul and b"\x00" in piece:
                self.nul = True
        self.size += len(piece)
        if self.size > self._limit:
            self.oversized = True
        if self.refused:
            return b""
        return piece


class ChunkChecker:
    """Checks the BDAT chunks of a text message for what strict DATA refuses.

    Chunk sizes frame a BDAT message, so nothing inside a chunk can end it.
    But a message that is not ``BODY=BINARYMIME`` is 7bit or 8bitMIME text
    all the same (RFC 3030 section 3, RFC 6152), with CR and LF only as
    CRLF and no NUL: a bare LF taken in here would go out as a fake end of
    data the day the message is relayed with DATA.  A CRLF may be split
    between two chunks, or two reads of one.
    """

    __slots__ = ("_cr_pending", "bare_line_ending", "nul")

    def __init__(self) -> None:
        # The last piece ended with a CR: bare unless the next starts with LF.
        self._cr_pending = False
        self.bare_line_ending = False
        self.nul = False

    @property
    def refused(self) -> bool:
        return self.bare_line_ending or self.nul

    def check(self, piece: bytes) -> None:
        """Look at the next piece of the message (never empty)."""
        if self._cr_pending:
            if piece.startswith(b"\n"):
                piece = piece[1:]
            else:
                self.bare_line_ending = True
        self._cr_pending = piece.endswith(b"\r")
        if self._cr_pending:
            piece = piece[:-1]
        if not self.bare_line_ending and _has_bare_line_ending(piece):
            self.bare_line_ending = True
        if not self.nul and b"\x00" in piece:
            self.nul = True

    def end(self) -> None:
        """The message is complete: a CR at its very end is bare."""
        if self._cr_pending:
            self.bare_line_ending = True


def _has_bare_line_ending(piece: bytes) -> bool:
    """Whether a CR or an LF in ``piece`` is not part of a CRLF.

    ``splitlines`` counts line ends the way the smuggling attacks need them
    counted: CRLF once, a bare CR once, a bare LF once.  With ``t`` line ends,
    ``n`` LFs and ``r`` CRs: ``n`` is CRLFs plus bare LFs and ``r`` is CRLFs
    plus bare CRs, so ``t == n == r`` holds exactly when there are neither.
    Three C-level passes, each faster than counting the two-byte CRLF.
    """
    lf = piece.count(b"\n")
    if piece.count(b"\r") != lf:
        return True
    if not lf:
        return False
    ends = len(piece.splitlines())
    if piece[-1:] not in (b"\r", b"\n"):
        # The last, unterminated line is a line to splitlines, not an end.
        ends -= 1
    return ends != lf


def py_find_end(data: bytes | bytearray, start: int) -> int:
    """The index of the first CRLF "." CRLF at or after ``start``, or -1."""
    return data.find(_END, start)


def py_take(data: bytes | bytearray, length: int, starts_line: bool) -> tuple[bytes, bool]:
    """``data[:length]`` unstuffed, and whether it has a bare CR or LF.

    A "." that begins a line is removed (RFC 5321 4.5.2).  The first byte
    begins a line when ``starts_line``; after it only CRLF begins one.
    """
    piece = bytes(data[:length])
    if starts_line and piece[:1] == b".":
        piece = piece[1:]
    if b"\r\n." in piece:
        # split + join is one pass over the piece; replace() makes two (it
        # counts first).
        piece = b"\r\n".join(piece.split(b"\r\n."))
    return piece, _has_bare_line_ending(piece)


_find_end: Callable[[bytes | bytearray, int], int] = py_find_end
_take: Callable[[bytes | bytearray, int, bool], tuple[bytes, bool]] = py_take
try:
    from . import _speedups
except ImportError:  # pragma: no cover - tested by reloading without it
    pass
else:
    _find_end = _speedups.find_end
    _take = _speedups.take
