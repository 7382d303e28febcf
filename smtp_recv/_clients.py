"""What the server remembers about clients across connections: counts by IP.

Both tables are bounded, so a flood from many addresses (an IPv6 /64 has
plenty) cannot grow them without limit.

With ``smtp-recv serve --workers N`` the limits hold for the whole server,
not for each worker: each worker also writes its counts to the table the
supervisor shares with them all, and adds up the others' (``_shared_counts``).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ._shared_counts import MIN_SHARED_WINDOW, SharedRow

# Addresses remembered for AUTH failures; the oldest is forgotten first.
MAX_TRACKED_ADDRESSES = 65536

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
        if self._shared is not None:
            self._shared.connections_here = self._by_address

    @property
    def total(self) -> int:
        shared = self._shared
        return self._own_total if shared is None else shared.total()

    @property
    def here(self) -> int:
        """Open connections of this process."""
        return self._own_total

    def opened(self, address: str) -> int:
        """Count a new connection; return how many ``address`` now has."""
        self._own_total += 1
        count = self._by_address.get(address, 0) + 1
        self._by_address[address] = count
        shared = self._shared
        if shared is not None:
            return count + shared.opened(address, count, self._own_total)
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
            shared.closed(address, count, self._own_total)


class AuthFailures:
    """Failed AUTH attempts per IP address within a sliding window (with the other workers')."""

    __slots__ = ("_attempts", "_failures", "_limit", "_shared", "_window")

    def __init__(self, limit: int, window: float, shared: SharedRow | None = None) -> None:
        self._limit = limit
        self._window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # Attempts being checked now, per address: each may yet fail, so each
        # holds a place under the limit (one entry per session at most).
        self._attempts: dict[str, int] = {}
        if shared is None:
            shared = _shared_row
        # A window of 0 forgets failures at once: nothing to share (nor in
        # windows too short for the table to tell apart).
        if shared is not None and window >= MIN_SHARED_WINDOW:
            shared.auth_window = window
        else:
            shared = None
        self._shared = shared

    def _elsewhere(self, address: str) -> int:
        shared = self._shared
        return 0 if shared is None else shared.auth_failures_elsewhere(address)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is not None:
            while times and times[0] <= now - self._window:
                times.popleft()
        return times

    def blocked(self, address: str, now: float) -> bool:
        """Whether ``address`` has no place left for an attempt: see ``begin``."""
        return self.begin(address, now, take=False) is not True

    def begin(self, address: str, now: float, *, take: bool = True) -> bool | None:
        """Start an attempt from ``address`` (unless ``take`` is false).

        Attempts under way (``begin`` without ``end``) hold a place each, as
        failures do: otherwise many connections that each try at once,
        before any of them has failed, would all be let through.  Returns
        True once started; False if the address has used up its failures;
        None if attempts under way here fill its other places, so that one
        of them ending (``end``) may free one.
        """
        times = self._recent(address, now)
        failures = (0 if times is None else len(times)) + self._elsewhere(address)
        if failures >= self._limit:
            return False
        attempts = self._attempts.get(address, 0)
        if failures + attempts >= self._limit:
            return None
        if take:
            self._attempts[address] = attempts + 1
        return True

    def end(self, address: str) -> None:
        """End an attempt that ``begin`` started (before ``failed`` records its failure)."""
        attempts = self._attempts[address] - 1
        if attempts:
            self._attempts[address] = attempts
        else:
            del self._attempts[address]

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
            shared.auth_failed(address)
        return len(times) + self._elsewhere(address)
