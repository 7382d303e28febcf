"""Collects a message's bytes as they arrive: in memory, or in a temporary file.

Pieces are kept as a list and joined once at the end, so a message is copied
once, not once per piece.  Past ``threshold`` bytes the message moves to an
anonymous temporary file, written from a worker thread in large batches, so a
30 MB message neither sits in memory nor blocks the event loop on the disk.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import IO

import trio

from ._mail import MessageContent

# Pieces are written to the spool file in batches of about this many bytes:
# one thread hop per batch rather than per received piece.
_BATCH = 1 << 20


class Spool:
    """The bytes of one message under way."""

    __slots__ = ("_file", "_pending", "_pending_size", "_threshold", "failure", "size")

    def __init__(self, header: bytes, threshold: int) -> None:
        self._threshold = threshold
        self._pending: list[bytes] = [header]
        self._pending_size = len(header)
        self._file: IO[bytes] | None = None
        #: Bytes so far, header included.
        self.size = len(header)
        #: Why the spool file could not be written (the disk is full, say):
        #: the message is lost to us, the rest of it is only counted.
        self.failure: OSError | None = None

    async def append(self, data: bytes) -> None:
        if self.failure is not None:
            self.size += len(data)
            return
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)
        # Past the threshold the message moves to the file at once, however
        # small the threshold; after that, writes go in batches.
        if self.size > self._threshold and (self._file is None or self._pending_size >= _BATCH):
            try:
                await self._flush()
            except OSError as error:
                # The client is still sending: read the rest, then refuse.
                self.failure = error
                self.discard()

    async def _flush(self, *, final: bool = False) -> IO[bytes]:
        """Write the pending pieces to the spool file: one thread hop."""
        pieces, self._pending, self._pending_size = self._pending, [], 0
        self._file = await trio.to_thread.run_sync(self._write, self._file, pieces, final)
        return self._file

    @staticmethod
    def _write(file: IO[bytes] | None, pieces: list[bytes], final: bool) -> IO[bytes]:
        created = file is None
        if file is None:
            file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by MessageContent.close
        try:
            file.writelines(pieces)
            if final:
                file.flush()
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    file.close()
            raise
        return file

    async def finish(self) -> MessageContent:
        """The whole message; the spool is spent afterwards.

        Raises:
            OSError: the spool file could not be written, now or before.
        """
        if self.failure is not None:
            raise self.failure
        if self._file is None and self.size <= self._threshold:
            data = b"".join(self._pending)
            self._pending = []
            return MessageContent(data, None, self.size)
        try:
            file = await self._flush(final=True)
        except OSError as error:
            self.failure = error
            self.discard()
            raise
        self._file = None
        return MessageContent(None, file, self.size)

    def discard(self) -> None:
        """Drop everything (message refused, reset or connection lost)."""
        self._pending = []
        file, self._file = self._file, None
        if file is not None:
            # Closing flushes what is buffered: on a full disk that fails
            # again, and nothing of it is wanted any more.
            with contextlib.suppress(OSError):
                file.close()
