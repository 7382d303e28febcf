"""A bounded receive buffer that finds lines in linear time.

Like h11's ``ReceiveBuffer``, it remembers how far it has already searched
for a line end, so a long line fed one byte at a time costs O(n), not O(n^2);
and it never holds more than ``limits.MAX_LINE`` bytes of an unfinished line:
past that it discards the line and reports it as too long once it ends.
"""

from __future__ import annotations

from typing import Final


class _Overlong:
    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


#: Returned by ``ReceiveBuffer.next_line`` for a line that passed the limit.
LINE_TOO_LONG: Final = _Overlong()
# How much of an over-long line is kept to name its command.
_START = 16
# Leading white space a lenient parser would skip before a command.
_WHITE_SPACE = b" \t\x0b\x0c"


class ReceiveBuffer:
    """Bytes received and not yet parsed."""

    __slots__ = ("_data", "_discarding", "_searched", "skipped_bare_line_end", "skipped_start")

    def __init__(self) -> None:
        self._data = bytearray()
        # Bytes before this offset hold no CRLF; the next search starts here.
        self._searched = 0
        # An over-long line is being skipped until its CRLF.
        self._discarding = False
        #: The first bytes of the last over-long line after any leading white
        #: space (and without NULs), enough to tell which command it was
        #: meant to be.
        self.skipped_start = b""
        #: Whether the last over-long line held a bare CR or LF.
        self.skipped_bare_line_end = False

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    @property
    def skipping(self) -> bool:
        """Whether an over-long line is being dropped, up to its CRLF."""
        return self._discarding

    def append(self, data: bytes | bytearray) -> None:
        self._data += data

    def next_line(self, limit: int) -> bytes | _Overlong | None:
        """Remove and return the next line without its CRLF.

        Only CRLF ends a line (RFC 5321 2.3.8); a bare CR or LF stays inside
        the line for the caller to refuse.  Returns ``None`` when no complete
        line is buffered, and ``LINE_TOO_LONG`` once for a line longer than
        ``limit`` bytes (CRLF included), after skipping all of it.
        """
        data = self._data
        end = data.find(b"\r\n", self._searched)
        if end < 0:
            # A CR at the very end may be the first half of the CRLF.
            self._searched = max(len(data) - 1, 0)
            if len(data) + 1 > limit or self._discarding:
                # Keep only that possible CR: the buffer stays bounded.
                keep = 1 if data.endswith(b"\r") else 0
                self._skip(len(data) - keep)
                self._searched = 0
                self._discarding = True
            return None
        self._searched = 0
        if self._discarding or end + 2 > limit:
            self._skip(end)
            del data[:2]
            self._discarding = False
            return LINE_TOO_LONG
        line = bytes(data[:end])
        del data[: end + 2]
        return line

    def _skip(self, count: int) -> None:
        """Drop ``count`` bytes of an over-long line, none of them part of its CRLF."""
        data = self._data
        if not self._discarding:
            self.skipped_start = b""
            self.skipped_bare_line_end = False
        if len(self.skipped_start) < _START:
            # Over as many reads as it takes (a read may end inside the
            # command's name), and without the NULs a hop may delete.
            start = self.skipped_start + bytes(data[:count]).replace(b"\0", b"")
            self.skipped_start = start.lstrip(_WHITE_SPACE)[:_START]
        # No CRLF lies before ``count``: any CR or LF there is a bare one.
        if data.find(b"\n", 0, count) >= 0 or data.find(b"\r", 0, count) >= 0:
            self.skipped_bare_line_end = True
        del data[:count]

    def take(self, count: int) -> bytes:
        """Remove and return up to ``count`` bytes (BDAT chunk contents)."""
        data = self._data
        if count >= len(data):
            piece = bytes(data)
            data.clear()
        else:
            piece = bytes(data[:count])
            del data[:count]
        self._searched = 0
        return piece

    def take_all(self) -> bytes:
        """Remove and return everything (the bytes after STARTTLS)."""
        return self.take(len(self._data))

    def raw(self) -> bytearray:
        """The buffered bytes, for the DATA reader to scan in place."""
        return self._data

    def consume(self, count: int) -> None:
        """Drop the first ``count`` bytes."""
        del self._data[:count]
        self._searched = 0
