"""What the server remembers about clients across connections: counts by IP.

Both tables are bounded, so a flood from many addresses (an IPv6 /64 has
plenty) cannot grow them without limit.

With ``smtp-recv serve --workers N`` the limits hold for the whole server,
not for each worker: the workers also add up their counts in a
``SharedCounts`` table, which the supervisor maps before it forks them.
"""

from __future__ import annotations

import mmap
import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Addresses remembered for AUTH failures; the oldest is forgotten first.
MAX_TRACKED_ADDRESSES = 65536

#: Buckets per worker in the shared table.  Addresses are counted by bucket
#: there, so two in one bucket count together against the other workers'
#: share of a limit (a worker's own share is exact).  With the default 1,000
#: connections over as many addresses, a given address shares its bucket
#: with another 3% of the time, and only a client with many connections
#: open could then push a neighbour over its limit.
SHARED_BUCKETS = 1 << 15
# A worker's row of ints: its open connections in all, then by bucket its
# open connections, the fixed window of its latest AUTH failures, and their
# number in that window.
_TOTAL = 0
_CONNECTIONS = 1
_AUTH_WINDOW = _CONNECTIONS + SHARED_BUCKETS
_AUTH_COUNT = _AUTH_WINDOW + SHARED_BUCKETS
_ROW = _AUTH_COUNT + SHARED_BUCKETS


class SharedCounts:
    """Counts by IP address that the forked workers of one server share.

    The supervisor makes the table before it forks, in an anonymous shared
    mapping that every worker inherits.  Each worker slot has a row that
    only its worker writes, so no lock is needed: a worker adds what the
    other rows hold to its own exact counts.  A worker that dies takes its
    connections with it, so the supervisor clears its row before it starts
    the next one in the slot.

    Addresses go to buckets by ``hash()``, whose key the workers inherit
    from the supervisor: the same in every worker, and not one a client can
    aim at.  AUTH failures are shared per fixed window of the configured
    length (of the system's monotonic clock, which every process reads
    alike): the other workers' failures count while their window is the
    current one, the worker's own within its exact sliding window.
    """

    def __init__(self, workers: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self._clock = clock
        self._memory = mmap.mmap(-1, workers * _ROW * 4)
        self._ints = memoryview(self._memory).cast("i")

    def row(self, slot: int) -> SharedRow:
        """The view of worker ``slot``: its own row, and the others to read."""
        if not 0 <= slot < self.workers:
            raise ValueError(f"no worker slot {slot} of {self.workers}")
        return SharedRow(self._ints, slot, self.workers, self._clock)

    def clear(self, slot: int) -> None:
        """Forget what worker ``slot`` counted (it has exited)."""
        start = slot * _ROW * 4
        self._memory[start : start + _ROW * 4] = bytes(_ROW * 4)


class SharedRow:
    """One worker's part of ``SharedCounts``."""

    __slots__ = ("_clock", "_ints", "_others", "_own")

    def __init__(
        self, ints: memoryview, slot: int, workers: int, clock: Callable[[], float]
    ) -> None:
        self._ints = ints
        self._own = slot * _ROW
        self._others = tuple(other * _ROW for other in range(workers) if other != slot)
        self._clock = clock

    def total(self) -> int:
        """Open connections in all the workers."""
        ints = self._ints
        return ints[self._own + _TOTAL] + sum(ints[row + _TOTAL] for row in self._others)

    def connection(self, address: str, change: int) -> int:
        """Count a connection opened (+1) or closed (-1); the others' count for ``address``."""
        ints, bucket = self._ints, _bucket(address)
        own = self._own
        ints[own + _TOTAL] += change
        ints[own + _CONNECTIONS + bucket] += change
        return sum(ints[row + _CONNECTIONS + bucket] for row in self._others)

    def auth_failed(self, address: str, window: float) -> None:
        """Count an AUTH failure of ``address`` in the current fixed window."""
        ints, bucket = self._ints, _bucket(address)
        current = self._window(window)
        own = self._own
        if ints[own + _AUTH_WINDOW + bucket] != current:
            ints[own + _AUTH_COUNT + bucket] = 0
            ints[own + _AUTH_WINDOW + bucket] = current
        ints[own + _AUTH_COUNT + bucket] += 1

    def auth_failures_elsewhere(self, address: str, window: float) -> int:
        """The other workers' AUTH failures for ``address`` in the current window."""
        ints, bucket = self._ints, _bucket(address)
        current = self._window(window)
        return sum(
            ints[row + _AUTH_COUNT + bucket]
            for row in self._others
            if ints[row + _AUTH_WINDOW + bucket] == current
        )

    def _window(self, window: float) -> int:
        # Numbered from 1: a row's zeroes must not read as a current window.
        return int(self._clock() // window) % 0x7FFFFFFF + 1


def _bucket(address: str) -> int:
    return hash(address) & (SHARED_BUCKETS - 1)


#: This worker's row of the server's shared table (``serve --workers N``);
#: ``None`` in a single process.  Set in the forked worker, before its loop.
_shared_row: SharedRow | None = None


def share_counts(row: SharedRow | None) -> None:
    """Make the servers this process starts count in ``row`` too (a forked worker)."""
    global _shared_row
    _shared_row = row


class ConnectionCounter:
    """Open connections, in all and per IP address (with the other workers')."""

    __slots__ = ("_by_address", "_own_total", "_shared")

    def __init__(self, shared: SharedRow | None = None) -> None:
        self._own_total = 0
        self._by_address: dict[str, int] = {}
        self._shared = shared if shared is not None else _shared_row

    @property
    def total(self) -> int:
        shared = self._shared
        return self._own_total if shared is None else shared.total()

    def opened(self, address: str) -> int:
        """Count a new connection; return how many ``address`` now has."""
        self._own_total += 1
        count = self._by_address.get(address, 0) + 1
        self._by_address[address] = count
        shared = self._shared
        if shared is not None:
            count += shared.connection(address, +1)
        return count

    def closed(self, address: str) -> None:
        self._own_total -= 1
        count = self._by_address[address] - 1
        if count:
            self._by_address[address] = count
        else:
            del self._by_address[address]
        shared = self._shared
        if shared is not None:
            shared.connection(address, -1)


class AuthFailures:
    """Failed AUTH attempts per IP address within a sliding window (with the other workers')."""

    __slots__ = ("_failures", "_limit", "_shared", "_window")

    def __init__(self, limit: int, window: float, shared: SharedRow | None = None) -> None:
        self._limit = limit
        self._window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # A window of 0 forgets failures at once: nothing to share.
        if shared is None:
            shared = _shared_row
        self._shared = shared if window > 0 else None

    def _elsewhere(self, address: str) -> int:
        shared = self._shared
        return 0 if shared is None else shared.auth_failures_elsewhere(address, self._window)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is not None:
            while times and times[0] <= now - self._window:
                times.popleft()
        return times

    def blocked(self, address: str, now: float) -> bool:
        """Whether ``address`` has used up its failures for the window."""
        times = self._recent(address, now)
        own = 0 if times is None else len(times)
        return own + self._elsewhere(address) >= self._limit

    def failed(self, address: str, now: float) -> int:
        """Record a failure; return the failures of ``address`` in the window."""
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self._limit)
            if len(self._failures) > MAX_TRACKED_ADDRESSES:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        times.append(now)
        shared = self._shared
        if shared is not None:
            shared.auth_failed(address, self._window)
        return len(times) + self._elsewhere(address)
