"""The counts by client address that the forked workers of one server share.

With ``smtp-recv serve --workers N`` each worker counts its own clients
exactly (``_clients``), and the limits hold for the server as a whole only
if each also sees the others' counts.  The supervisor maps this table,
shared and anonymous, before it forks; every worker inherits it.

Layout: the open connections of each worker, then one row per worker of
``ENTRIES`` entries, each five 64-bit integers: the address's fingerprint,
its open connections on that worker, and its AUTH failures there (the
fixed window they fall in, the failures in it, the failures in the window
before).  Only a row's own worker writes it, so no lock is needed; the
others read it.  A reader may see an entry half written, and a count off
by one for a moment; a limit is then one connection or one failure loose,
never stuck.  A slot being given to another address is marked as taken
(-1, which no fingerprint is) until its fingerprint is written, so that a
reader never stops at it as if it were empty.

Entries are found by a 64-bit fingerprint of the address, a BLAKE2b keyed
with a secret the supervisor draws at random: two addresses never count
together (a collision takes some 2**32 addresses by chance), and where an
address's entry goes cannot be aimed at without the key.  An entry is
found within ``PROBES`` slots of its home (linear probing); when they are
all taken by live entries the worker does not share that address (its own
counts stay exact, the others see none of them: the limit is then per
worker for it, as without this table).  An attacker with many addresses
can push the table that far, but never make it refuse anyone.

A slot once used is reused for another address when its counts are over,
and emptied when the slot after it is empty: a search can then stop at the
first empty slot (no entry lies past an empty slot on its way from home),
so looking up an address the other workers do not have costs one slot in
each of their rows while they are not crowded, and ``PROBES`` at most.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time
from collections.abc import Callable, Mapping

#: Entries per worker: the addresses with open connections or recent AUTH
#: failures it can share at once (the default limit is 1,000 connections).
ENTRIES = 4096
#: Slots looked at for an address, from its home slot on.
PROBES = 16
#: Slots looked over for entries to empty at each new connection: the
#: whole row every ENTRIES / SWEEP connections.
SWEEP = 2
# An entry's fields, in 64-bit integers.
_FINGERPRINT, _CONNECTIONS, _WINDOW, _FAILURES, _FAILURES_BEFORE = range(5)
_ENTRY = 5
# Fingerprints never take these values: an empty slot, and one being claimed.
_EMPTY, _CLAIMING = 0, -1
_ROW = ENTRIES * _ENTRY
_WORD = 8
#: AUTH failure windows shorter than this are not shared.
MIN_SHARED_WINDOW = 1.0


class SharedCounts:
    """The table of one server's workers; made by the supervisor before it forks."""

    def __init__(self, workers: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self._clock = clock
        self._key = os.urandom(16)
        self._memory = mmap.mmap(-1, (workers + workers * _ROW) * _WORD)
        self._ints = memoryview(self._memory).cast("q")

    def row(self, slot: int) -> SharedRow:
        """What worker ``slot`` writes, and reads of the others."""
        if not 0 <= slot < self.workers:
            raise ValueError(f"no worker slot {slot} of {self.workers}")
        return SharedRow(self._ints, slot, self.workers, self._key, self._clock)

    def clear(self, slot: int) -> None:
        """Forget what worker ``slot`` counted (it has exited)."""
        self._ints[slot] = 0
        start = (self.workers + slot * _ROW) * _WORD
        self._memory[start : start + _ROW * _WORD] = bytes(_ROW * _WORD)


class SharedRow:
    """One worker's view of ``SharedCounts``."""

    __slots__ = (
        "_clock",
        "_cursor",
        "_entries",
        "_ints",
        "_key",
        "_others",
        "_own",
        "_slot",
        "_workers",
        "auth_window",
        "connections_here",
    )

    def __init__(
        self,
        ints: memoryview,
        slot: int,
        workers: int,
        key: bytes,
        clock: Callable[[], float],
    ) -> None:
        self._ints = ints
        self._slot = slot
        self._workers = workers
        self._own = workers + slot * _ROW
        self._others = tuple(workers + other * _ROW for other in range(workers) if other != slot)
        self._key = key
        self._clock = clock
        # Where this worker's addresses with open connections have their
        # entry (and fingerprint), so that closing costs no search.
        self._entries: dict[str, tuple[int, int]] = {}
        # Where the sweep for entries to empty goes on from (see opened).
        self._cursor = 0
        #: The worker's own open connections by address (``ConnectionCounter``
        #: sets it): an entry claimed for an address gets its exact count.
        self.connections_here: Mapping[str, int] = {}
        #: The length of the AUTH failure windows (``auth_failure_window``);
        #: 0 until ``AuthFailures`` sets it: failures are not shared.
        self.auth_window = 0.0

    # -- connections ---------------------------------------------------------------
    def total(self) -> int:
        """Open connections in all the workers."""
        return sum(self._ints[: self._workers])

    def opened(self, address: str, here: int, total_here: int) -> int:
        """Record that ``address`` now has ``here`` connections on this worker
        (of ``total_here``); return how many it has on the others.

        The worker's exact counts are written, not added to, so that an
        address the table had no room for is recorded right once it has.
        """
        ints = self._ints
        ints[self._slot] = total_here
        fingerprint, entry = self._entry_for(address)
        if entry is not None:
            ints[entry + _CONNECTIONS] = here
        # A little of the row at a time: entries whose counts are over (old
        # AUTH failures) are emptied even where no search passes, so that
        # the other workers' searches stay short.
        cursor = self._cursor
        for _ in range(SWEEP):
            self._release(self._own + cursor * _ENTRY)
            cursor = (cursor + 1) % ENTRIES
        self._cursor = cursor
        return sum(ints[other + _CONNECTIONS] for other in self._entries_elsewhere(fingerprint))

    def closed(self, address: str, here: int, total_here: int) -> None:
        """Record that ``address`` now has ``here`` connections on this worker."""
        ints = self._ints
        ints[self._slot] = total_here
        known = self._entries.get(address)
        if known is None:
            if here:
                self._entry_for(address)  # it had no room: it may now
            return
        entry = known[1]
        ints[entry + _CONNECTIONS] = here
        if not here:
            del self._entries[address]
            self._release(entry)

    # -- AUTH failures (with auth_window set) ---------------------------------------
    def auth_failed(self, address: str) -> None:
        """Count an AUTH failure of ``address`` in the current fixed window."""
        ints = self._ints
        entry = self._entry_for(address)[1]
        if entry is None:
            return
        current = self._window()
        recorded = ints[entry + _WINDOW]
        if recorded == current:
            ints[entry + _FAILURES] += 1
            return
        before = ints[entry + _FAILURES] if recorded == current - 1 else 0
        ints[entry + _FAILURES_BEFORE] = before
        ints[entry + _FAILURES] = 1
        ints[entry + _WINDOW] = current

    def auth_failures_elsewhere(self, address: str) -> int:
        """The other workers' AUTH failures of ``address`` in this window and the one before.

        Counting the window before too keeps the limit whole across a
        window's end (a client cannot fail the limit's worth just before
        it, and again just after); an address may so stay refused for up
        to two windows.
        """
        ints = self._ints
        current = self._window()
        failures = 0
        for entry in self._entries_elsewhere(self._fingerprint(address)):
            recorded = ints[entry + _WINDOW]
            if recorded == current:
                failures += ints[entry + _FAILURES] + ints[entry + _FAILURES_BEFORE]
            elif recorded == current - 1:
                failures += ints[entry + _FAILURES]
        return failures

    # -- the table -----------------------------------------------------------------
    def _fingerprint(self, address: str) -> int:
        digest = hashlib.blake2b(address.encode(), key=self._key, digest_size=_WORD).digest()
        fingerprint = int.from_bytes(digest, "little", signed=True)
        return fingerprint if fingerprint not in (_EMPTY, _CLAIMING) else 1

    def _entry_for(self, address: str) -> tuple[int, int | None]:
        """The fingerprint of ``address`` and its entry in this worker's row,
        claimed (with its exact count of connections) if need be and if
        there is room."""
        known = self._entries.get(address)
        if known is not None:
            return known
        fingerprint = self._fingerprint(address)
        entry, claimed = self._entry(fingerprint)
        here = self.connections_here.get(address, 0)
        if claimed:
            assert entry is not None
            self._ints[entry + _CONNECTIONS] = here
        if entry is not None and here:
            self._entries[address] = (fingerprint, entry)
        return fingerprint, entry

    def _window(self) -> int:
        # From 2: a zeroed entry (window 0) is neither in this window nor the one before.
        return int(self._clock() // self.auth_window) + 2

    def _entry(self, fingerprint: int) -> tuple[int | None, bool]:
        """This worker's entry for ``fingerprint``, or a free one claimed for
        it (then ``True``); ``None`` when there is no room."""
        ints, row = self._ints, self._own
        home = fingerprint % ENTRIES
        free = None
        previous = None
        for probe in range(PROBES):
            entry = row + (home + probe) % ENTRIES * _ENTRY
            found = ints[entry + _FINGERPRINT]
            if found == fingerprint:
                return entry, False
            if found == _EMPTY:  # nothing lies past an empty slot
                if previous is not None:
                    # Entries whose counts are over, just before: empty
                    # them, or other workers' searches pass them for ever.
                    self._release(previous)
                if free is None:
                    free = entry
                break
            if free is None and self._stale(entry):
                free = entry
            previous = entry
        if free is None:
            return None, False
        # Marked taken, not empty, while its counts are another address's:
        # a reader neither stops at it nor matches it.
        ints[free + _FINGERPRINT] = _CLAIMING
        ints[free + _CONNECTIONS] = 0
        ints[free + _WINDOW] = 0
        ints[free + _FINGERPRINT] = fingerprint
        return free, True

    def _stale(self, entry: int) -> bool:
        """Whether an entry holds nothing that counts: no connection, no recent failure."""
        ints = self._ints
        if ints[entry + _CONNECTIONS]:
            return False
        recorded = ints[entry + _WINDOW]
        return not recorded or not self.auth_window or recorded < self._window() - 1

    def _release(self, entry: int) -> None:
        """Empty ``entry`` if its counts are over and the slot after it is empty,
        and so on backwards: emptying a slot never hides an entry past it."""
        ints, row = self._ints, self._own
        index = (entry - row) // _ENTRY
        for _ in range(PROBES):
            after = row + (index + 1) % ENTRIES * _ENTRY
            entry = row + index * _ENTRY
            if (
                ints[after + _FINGERPRINT] != _EMPTY
                or ints[entry + _FINGERPRINT] == _EMPTY  # already
                or not self._stale(entry)
            ):
                return
            ints[entry + _FINGERPRINT] = _EMPTY
            index = (index - 1) % ENTRIES

    def _entries_elsewhere(self, fingerprint: int) -> list[int]:
        ints = self._ints
        home = fingerprint % ENTRIES
        entries = []
        for row in self._others:
            for probe in range(PROBES):
                entry = row + (home + probe) % ENTRIES * _ENTRY
                found = ints[entry + _FINGERPRINT]
                if found == fingerprint:
                    entries.append(entry)
                    break
                if found == _EMPTY:
                    break
        return entries
