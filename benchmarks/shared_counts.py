"""What counting a connection costs when the workers share their counts.

    python benchmarks/shared_counts.py

Per connection, as the server does it: ``ConnectionCounter.opened``, two
reads of ``total`` (the accept loop's ceiling, the greeting's limit) and
``closed``, for 1,000 addresses in turn (each connection from an address
with none open: the costliest case, an entry claimed and released each
time), in one process and with the table of 2, 8 and 64 workers.
"""

from __future__ import annotations

import time

from smtp_recv._clients import ConnectionCounter
from smtp_recv._shared_counts import SharedCounts

ROUNDS = 20


def microseconds_per_connection(counter: ConnectionCounter) -> float:
    addresses = [f"10.0.{number // 250}.{number % 250}" for number in range(1000)]
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for address in addresses:
            counter.opened(address)
            _ = counter.total
            _ = counter.total
            counter.closed(address)
    return (time.perf_counter() - start) / (ROUNDS * len(addresses)) * 1e6


def main() -> None:
    print(f"one process: {microseconds_per_connection(ConnectionCounter()):.2f} µs per connection")
    for workers in (2, 8, 64):
        counter = ConnectionCounter(SharedCounts(workers).row(0))
        cost = microseconds_per_connection(counter)
        print(f"{workers} workers:   {cost:.2f} µs per connection")


if __name__ == "__main__":
    main()
