"""Counts by IP that the workers of ``serve --workers N`` share: limits for the whole server."""

from __future__ import annotations

import os
import time

import pytest

from smtp_recv._clients import AuthFailures, ConnectionCounter, share_counts
from smtp_recv._shared_counts import _EMPTY, _ENTRY, ENTRIES, SharedCounts, SharedRow

CLIENT = "192.0.2.1"
OTHER = "198.51.100.7"


def counters(workers: int = 2) -> tuple[SharedCounts, list[ConnectionCounter]]:
    table = SharedCounts(workers)
    return table, [ConnectionCounter(table.row(slot)) for slot in range(workers)]


def test_connections_on_other_workers_count_towards_an_address_and_the_total() -> None:
    _, (first, second, third) = counters(3)
    assert first.opened(CLIENT) == 1
    assert first.opened(CLIENT) == 2
    assert second.opened(CLIENT) == 3
    assert first.opened(CLIENT) == 4
    assert first.total == second.total == third.total == 4
    assert (first.here, second.here, third.here) == (3, 1, 0)


def test_closed_connections_stop_counting_everywhere() -> None:
    _, (first, second) = counters()
    first.opened(CLIENT)
    second.opened(CLIENT)
    first.closed(CLIENT)
    assert second.total == 1
    assert first.opened(CLIENT) == 2
    first.closed(CLIENT)
    second.closed(CLIENT)
    assert first.total == second.total == 0
    assert first.opened(CLIENT) == 1


def test_other_addresses_never_count_together() -> None:
    _, (first, second) = counters()
    for number in range(2000):
        first.opened(f"2001:db8::{number:x}")
    assert second.opened(CLIENT) == 1
    assert second.opened(OTHER) == 1
    assert second.total == 2002


def fill(counter: ConnectionCounter) -> list[str]:
    """Open connections from so many addresses that the worker's entries are all taken.

    Until every slot of its row is taken, not for a fixed number of
    addresses: with random fingerprints a few slots may stay free after
    twice as many addresses as slots, and a newcomer would find room.
    """
    row = counter._shared
    assert row is not None
    crowd: list[str] = []
    while not crowd or _EMPTY in row._ints[row._own : row._own + ENTRIES * _ENTRY : _ENTRY]:
        assert len(crowd) < 16 * ENTRIES, "the row does not fill"
        more = [f"2001:db8::{number:x}" for number in range(len(crowd), len(crowd) + ENTRIES)]
        for address in more:
            counter.opened(address)
        crowd += more
    return crowd


def test_an_address_the_table_has_no_room_for_is_counted_per_worker() -> None:
    # A full table makes the limit per worker for newcomers; it never makes
    # the server refuse them.
    _, (first, second) = counters()
    fill(first)
    newcomers = [f"2001:db8:1::{number:x}" for number in range(100)]
    for address in newcomers:
        assert first.opened(address) == 1
    assert [second.opened(address) for address in newcomers] == [1] * 100


def test_room_made_by_closed_connections_is_used_again() -> None:
    _, (first, second) = counters()
    for address in fill(first):
        first.closed(address)
    first.opened(CLIENT)
    assert second.opened(CLIENT) == 2


def test_a_count_recorded_late_is_the_exact_one() -> None:
    # A worker writes its count, not a change to it: an address that had no
    # room when it connected is counted right once it has.
    _, (first, second) = counters()
    crowd = fill(first)
    first.opened(CLIENT)
    assert second.opened(CLIENT) == 1  # not shared
    second.closed(CLIENT)
    for address in crowd:
        first.closed(address)
    first.opened(CLIENT)
    assert second.opened(CLIENT) == 3


def test_clearing_a_dead_workers_row_forgets_its_connections() -> None:
    table, (survivor, dead) = counters()
    survivor.opened(CLIENT)
    for _ in range(10):
        dead.opened(CLIENT)
    table.clear(1)
    assert survivor.total == 1
    assert survivor.opened(CLIENT) == 2


def test_a_forked_worker_counts_in_the_same_memory() -> None:
    table = SharedCounts(2)
    pid = os.fork()
    if pid == 0:  # the worker in slot 1
        status = 1
        try:
            worker = ConnectionCounter(table.row(1))
            for _ in range(5):
                worker.opened(CLIENT)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = ConnectionCounter(table.row(0))
    assert parent.opened(CLIENT) == 6
    assert parent.total == 6


def test_each_table_has_a_key_of_its_own() -> None:
    first, second = SharedCounts(1).row(0), SharedCounts(1).row(0)
    assert first._fingerprint(CLIENT) != second._fingerprint(CLIENT)


def test_a_slot_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no worker slot 2 of 2"):
        SharedCounts(2).row(2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def auth_failures(limit: int, window: float) -> tuple[Clock, AuthFailures, AuthFailures]:
    clock = Clock()
    table = SharedCounts(2, clock=clock)
    return (
        clock,
        AuthFailures(limit, window, table.row(0)),
        AuthFailures(limit, window, table.row(1)),
    )


def test_auth_failures_on_other_workers_count_within_the_window() -> None:
    _, first, second = auth_failures(3, 600)
    assert first.failed(CLIENT, 0) == 1
    assert first.failed(CLIENT, 0) == 2
    assert not second.blocked(CLIENT, 0)
    assert second.failed(CLIENT, 0) == 3
    assert first.blocked(CLIENT, 0)
    assert second.blocked(CLIENT, 0)
    assert not second.blocked(OTHER, 0)


def test_failures_of_other_addresses_never_block_a_client() -> None:
    _, first, second = auth_failures(3, 600)
    for number in range(20_000):
        first.failed(f"2001:db8::{number:x}", 0)
    assert not second.blocked(CLIENT, 0)
    assert second.failed(CLIENT, 0) == 1


def test_a_windows_end_does_not_double_the_limit() -> None:
    # Failures just before a window ends still count just after it.
    clock, first, second = auth_failures(4, 600)
    clock.now = 1199.0  # the last second of a window
    first.failed(CLIENT, 0)
    first.failed(CLIENT, 0)
    first.failed(CLIENT, 0)
    clock.now = 1201.0
    assert second.failed(CLIENT, 0) == 4
    assert second.blocked(CLIENT, 0)
    # Two windows on, they are forgotten.
    clock.now = 1801.0
    assert second._elsewhere(CLIENT) == 0


@pytest.mark.parametrize("window", [0.0, 1e-310, 0.5])
def test_windows_too_short_to_tell_apart_are_not_shared(window: float) -> None:
    _, first, second = auth_failures(1, window)
    first.failed(CLIENT, 0)
    assert not second.blocked(CLIENT, 0)


def test_in_a_worker_the_servers_counters_count_in_its_row() -> None:
    # What the supervisor does in each forked worker, before serve().
    table = SharedCounts(2)
    other = table.row(1)
    ConnectionCounter(other).opened(CLIENT)
    AuthFailures(2, 600, other).failed(CLIENT, 0)
    share_counts(table.row(0))
    try:
        assert ConnectionCounter().opened(CLIENT) == 2
        assert AuthFailures(2, 600).failed(CLIENT, 0) == 2
    finally:
        share_counts(None)
    assert ConnectionCounter().opened(CLIENT) == 1


def same_home(row: SharedRow, count: int) -> list[str]:
    """``count`` addresses whose entries start at one slot of ``row``'s table."""
    found: dict[int, list[str]] = {}
    for number in range(1_000_000):
        address = f"2001:db8:2::{number:x}"
        group = found.setdefault(row._fingerprint(address) % ENTRIES, [])
        group.append(address)
        if len(group) == count:
            return group
    raise AssertionError("no slot shared")  # pragma: no cover


def test_a_reader_finds_an_entry_while_the_slot_before_it_changes_hands() -> None:
    # The slot before C is reused, for A then D, again and again: a reader
    # in another process must never take it for empty and stop before C.
    table = SharedCounts(2)
    writer, reader = table.row(0), table.row(1)
    first, second, third, fourth = same_home(writer, 4)
    counter = ConnectionCounter(writer)
    counter.opened(second)
    counter.opened(third)  # lies past second's slot
    counter.closed(second)  # its slot is over, but stays: third lies past it
    fingerprint = reader._fingerprint(third)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read)
            deadline = time.monotonic() + 0.5
            misses = lookups = 0
            while time.monotonic() < deadline:
                lookups += 1
                misses += not reader._entries_elsewhere(fingerprint)
            os.write(write, f"{misses} {lookups}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        for address in (first, fourth):
            counter.opened(address)
            counter.closed(address)
    misses, lookups = map(int, os.read(read, 100).split())
    os.close(read)
    os.waitpid(pid, 0)
    assert lookups > 1000
    assert misses == 0


def test_an_auth_failure_that_makes_room_for_an_address_brings_its_connections() -> None:
    _, (first, second) = counters()
    crowd = fill(first)
    first.opened(CLIENT)  # no room: not shared
    for address in crowd:
        first.closed(address)
    AuthFailures(3, 600, first._shared).failed(CLIENT, 0)  # claims its entry
    assert second.opened(CLIENT) == 2


def test_entries_whose_failures_are_old_are_emptied_as_the_worker_goes_on() -> None:
    clock = Clock()
    table = SharedCounts(2, clock=clock)
    row = table.row(0)
    failures = AuthFailures(3, 1.0, row)
    for number in range(1000):
        failures.failed(f"2001:db8::{number:x}", 0)
    clock.now += 10  # their windows are over
    counter = ConnectionCounter(row)
    for number in range(4000):  # the worker goes on with other clients
        address = f"2001:db8:1::{number:x}"
        counter.opened(address)
        counter.closed(address)
    occupied = sum(1 for slot in range(ENTRIES) if row._ints[row._own + slot * 5])
    assert occupied < 50
