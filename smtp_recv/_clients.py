"""What the server remembers about clients across connections: counts by IP.

Both tables are bounded, so a flood from many addresses (an IPv6 /64 has
plenty) cannot grow them without limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque

# Addresses remembered for AUTH failures; the oldest is forgotten first.
MAX_TRACKED_ADDRESSES = 65536


class ConnectionCounter:
    """Open connections, in all and per IP address."""

    __slots__ = ("_by_address", "total")

    def __init__(self) -> None:
        self.total = 0
        self._by_address: dict[str, int] = {}

    def opened(self, address: str) -> int:
        """Count a new connection; return how many ``address`` now has."""
        self.total += 1
        count = self._by_address.get(address, 0) + 1
        self._by_address[address] = count
        return count

    def closed(self, address: str) -> None:
        self.total -= 1
        count = self._by_address[address] - 1
        if count:
            self._by_address[address] = count
        else:
            del self._by_address[address]


class AuthFailures:
    """Failed AUTH attempts per IP address within a sliding window."""

    __slots__ = ("_failures", "_limit", "_window")

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is not None:
            while times and times[0] <= now - self._window:
                times.popleft()
        return times

    def blocked(self, address: str, now: float) -> bool:
        """Whether ``address`` has used up its failures for the window."""
        times = self._recent(address, now)
        return times is not None and len(times) >= self._limit

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
        return len(times)
