"""Counts by IP that the workers of ``serve --workers N`` share: limits for the whole server."""

from __future__ import annotations

import os

import pytest

from smtp_recv._clients import (
    SHARED_BUCKETS,
    AuthFailures,
    ConnectionCounter,
    SharedCounts,
    _bucket,
    share_counts,
)

CLIENT = "192.0.2.1"


def other_bucket_address() -> str:
    """An address that is not counted in CLIENT's bucket."""
    for last in range(2, 256):
        address = f"198.51.100.{last}"
        if _bucket(address) != _bucket(CLIENT):
            return address
    raise AssertionError("every address in one bucket")  # pragma: no cover


def test_connections_on_other_workers_count_towards_an_address_and_the_total() -> None:
    table = SharedCounts(3)
    first, second = ConnectionCounter(table.row(0)), ConnectionCounter(table.row(1))
    assert first.opened(CLIENT) == 1
    assert first.opened(CLIENT) == 2
    assert second.opened(CLIENT) == 3
    assert first.opened(CLIENT) == 4
    assert first.total == second.total == 4
    # A third worker, with no connection of its own, sees them all.
    assert ConnectionCounter(table.row(2)).total == 4


def test_closed_connections_stop_counting_everywhere() -> None:
    table = SharedCounts(2)
    first, second = ConnectionCounter(table.row(0)), ConnectionCounter(table.row(1))
    first.opened(CLIENT)
    second.opened(CLIENT)
    first.closed(CLIENT)
    assert second.total == 1
    assert first.opened(CLIENT) == 2
    first.closed(CLIENT)
    second.closed(CLIENT)
    assert first.total == second.total == 0
    assert first.opened(CLIENT) == 1


def test_addresses_in_other_buckets_do_not_count_together() -> None:
    table = SharedCounts(2)
    first, second = ConnectionCounter(table.row(0)), ConnectionCounter(table.row(1))
    for _ in range(5):
        first.opened(CLIENT)
    assert second.opened(other_bucket_address()) == 1
    assert second.total == 6


def test_a_workers_own_count_is_exact_whatever_shares_its_bucket() -> None:
    counter = ConnectionCounter(SharedCounts(1).row(0))
    assert counter.opened(CLIENT) == 1
    assert counter.opened(other_bucket_address()) == 1
    assert counter.total == 2


def test_clearing_a_dead_workers_row_forgets_its_connections() -> None:
    table = SharedCounts(2)
    survivor, dead = ConnectionCounter(table.row(0)), ConnectionCounter(table.row(1))
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


def test_a_slot_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no worker slot 2 of 2"):
        SharedCounts(2).row(2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_auth_failures_on_other_workers_count_within_the_window() -> None:
    clock = Clock()
    table = SharedCounts(2, clock=clock)
    first = AuthFailures(3, 600, table.row(0))
    second = AuthFailures(3, 600, table.row(1))
    assert first.failed(CLIENT, 0) == 1
    assert first.failed(CLIENT, 0) == 2
    assert not second.blocked(CLIENT, 0)
    assert second.failed(CLIENT, 0) == 3
    assert first.blocked(CLIENT, 0)
    assert second.blocked(CLIENT, 0)
    assert not second.blocked(other_bucket_address(), 0)
    # Another window: the other worker's failures are forgotten (its own
    # sliding window is the worker's business, and it has moved on too).
    clock.now += 600
    assert not second.blocked(CLIENT, 600)
    assert not first.blocked(CLIENT, 600)


def test_a_window_of_zero_shares_nothing() -> None:
    table = SharedCounts(2)
    first = AuthFailures(1, 0, table.row(0))
    first.failed(CLIENT, 0)
    assert not AuthFailures(1, 0, table.row(1)).blocked(CLIENT, 0)


def test_the_table_has_room_for_every_bucket_of_every_worker() -> None:
    table = SharedCounts(2)
    last = ConnectionCounter(table.row(1))
    address = next(
        f"2001:db8::{n:x}"
        for n in range(1 << 20)
        if _bucket(f"2001:db8::{n:x}") == SHARED_BUCKETS - 1
    )
    assert last.opened(address) == 1
    assert ConnectionCounter(table.row(0)).opened(address) == 2


def test_in_a_worker_the_servers_counters_count_in_its_row() -> None:
    # What the supervisor does in each forked worker, before serve().
    table = SharedCounts(2)
    ConnectionCounter(table.row(1)).opened(CLIENT)
    AuthFailures(2, 600, table.row(1)).failed(CLIENT, 0)
    share_counts(table.row(0))
    try:
        assert ConnectionCounter().opened(CLIENT) == 2
        assert AuthFailures(2, 600).failed(CLIENT, 0) == 2
    finally:
        share_counts(None)
    assert ConnectionCounter().opened(CLIENT) == 1
