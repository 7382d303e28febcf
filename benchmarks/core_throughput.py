"""Throughput of the sans-IO protocol core, with no I/O at all.

Feeds a ``ServerConnection`` the way the trio server does (64 KiB reads,
``next_event()`` until ``NEED_DATA``, every decision accepted) and reports:

* DATA body throughput for 1 KiB, 100 KiB and 10 MiB messages (76-character
  lines, every 16th starting with "." so dot-unstuffing is exercised);
* envelopes per second for pipelined ``MAIL/RCPT/DATA/body/.`` sequences;
* a 1 MiB line fed one byte at a time, in command mode and in DATA mode,
  timed at 256 KiB, 512 KiB and 1 MiB: linear time means the time doubles.

Each figure is the median of ``--runs`` runs.  MB is 10**6 bytes; body
throughput counts the bytes on the wire (dot-stuffed body and terminator).

    python benchmarks/core_throughput.py [--runs 5] [--quick] [--json out.json]

The target is at least 150 MB/s on the 10 MiB body; the exit status is 1
when it is missed (``--no-check`` to only report).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from smtp_recv.protocol import (
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    ConnectionClosed,
    MailFrom,
    MessageComplete,
    MessageData,
    RcptTo,
    ServerConnection,
    SessionConfig,
)

CHUNK = 64 * 1024
KiB = 1024
MiB = 1024 * 1024
MB = 1_000_000
TARGET_10MIB_MBPS = 150.0

_DECISIONS = (MailFrom, RcptTo, MessageComplete, AuthCredentials)
_ENVELOPE = b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n"


def make_body(size: int) -> bytes:
    """A dot-stuffed body of about ``size`` bytes on the wire, with its terminator.

    76-character lines (78 with CRLF); every 16th line starts with "." and is
    stuffed to "..", as a client sends it.
    """
    line = (b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz")[
        :76
    ]
    assert len(line) == 76
    header = (
        b"From: sender@example.org\r\nTo: rcpt@example.net\r\n"
        b"Subject: benchmark\r\nMessage-ID: <bench@example.org>\r\n\r\n"
    )
    lines = [header]
    total = len(header)
    i = 0
    while total < size:
        piece = (b".." + line[1:] if i % 16 == 15 else line) + b"\r\n"
        lines.append(piece)
        total += len(piece)
        i += 1
    return b"".join(lines) + b".\r\n"


def pump(conn: ServerConnection, data: bytes, sink: list[int]) -> None:
    """Feed ``data`` in 64 KiB pieces, handling events as a server would."""
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        conn.receive_data(bytes(view[start : start + CHUNK]))
        drain(conn, sink)


def drain(conn: ServerConnection, sink: list[int]) -> None:
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.data_to_send()
            return
        if isinstance(event, MessageData):
            sink[0] += len(event.data)
        elif isinstance(event, _DECISIONS):
            if isinstance(event, MessageComplete):
                sink[1] += 1
            conn.accept()
        elif event is PAUSED or isinstance(event, ConnectionClosed):
            raise RuntimeError(f"unexpected {event!r}")


def new_connection() -> ServerConnection:
    conn = ServerConnection(SessionConfig(hostname="bench.local", max_message_size=1 << 30))
    conn.send_greeting()
    conn.receive_data(b"EHLO client.example.org\r\n")
    drain(conn, [0, 0])
    conn.data_to_send()
    return conn


def timed(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_body(size: int, runs: int) -> dict[str, Any]:
    """One session; each message fed as ``MAIL/RCPT/DATA`` then the body in 64 KiB pieces."""
    body = make_body(size)
    # Enough messages for at least ~20 MiB per run (at least 3 messages).
    count = max(3, (20 * MiB) // len(body))
    envelope_len = len(_ENVELOPE)

    def run() -> None:
        conn = new_connection()
        sink = [0, 0]
        for _ in range(count):
            conn.receive_data(_ENVELOPE)
            drain(conn, sink)
            pump(conn, body, sink)
        assert sink[1] == count, sink

    times = [timed(run) for _ in range(runs)]
    median = statistics.median(times)
    wire = count * len(body)
    return {
        "body_bytes_on_wire": len(body),
        "messages_per_run": count,
        "seconds_median": median,
        "seconds_all": times,
        "mb_per_s": wire / median / MB,
        "mb_per_s_with_envelope": (wire + count * envelope_len) / median / MB,
        "messages_per_s": count / median,
    }


def bench_pipelined(runs: int, count: int = 20_000) -> dict[str, Any]:
    """``count`` pipelined envelopes with a small (about 500 byte) body, in 64 KiB reads."""
    body = make_body(400)
    one = _ENVELOPE + body
    stream = one * count

    def run() -> None:
        conn = new_connection()
        sink = [0, 0]
        pump(conn, stream, sink)
        assert sink[1] == count, sink

    times = [timed(run) for _ in range(runs)]
    median = statistics.median(times)
    return {
        "envelopes": count,
        "bytes_per_envelope": len(one),
        "seconds_median": median,
        "seconds_all": times,
        "envelopes_per_s": count / median,
        "mb_per_s": len(stream) / median / MB,
    }


def bench_byte_at_a_time(mode: str, sizes: list[int], runs: int) -> dict[str, dict[str, Any]]:
    """A line of ``size`` bytes fed one byte per ``receive_data`` call, then its CRLF."""
    results: dict[str, dict[str, Any]] = {}
    one = [bytes([b]) for b in range(256)]
    x = one[ord("x")]

    for size in sizes:

        def run(size: int = size) -> None:
            conn = new_connection()
            sink = [0, 0]
            if mode == "data":
                conn.receive_data(_ENVELOPE)
                drain(conn, sink)
            receive = conn.receive_data
            next_event = conn.next_event
            for _ in range(size):
                receive(x)
                event = next_event()
                if event is not NEED_DATA:
                    # DATA mode flushes a long line in 64 KiB pieces.
                    assert isinstance(event, MessageData), event
                    sink[0] += len(event.data)
                    drain(conn, sink)
            if mode == "data":
                conn.receive_data(b"\r\n.\r\n")
                drain(conn, sink)
                assert sink[1] == 1, sink
                assert sink[0] == size + 2, sink
            else:
                conn.receive_data(b"\r\n")
                event = conn.next_event()
                assert type(event).__name__ == "CommandRejected", event
                assert conn.data_to_send().startswith(b"500 5.5.2 Line too long"), conn

        times = [timed(run) for _ in range(runs)]
        results[f"{size // KiB}KiB"] = {
            "bytes": size,
            "seconds_median": statistics.median(times),
            "seconds_all": times,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="1 run, smaller byte-at-a-time sizes")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--no-check", action="store_true", help="do not fail below the target")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    slow_sizes = [64 * KiB, 128 * KiB, 256 * KiB] if args.quick else [256 * KiB, 512 * KiB, MiB]
    slow_runs = 1 if args.quick else min(runs, 3)

    results: dict[str, object] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "runs": runs,
    }
    bodies = {}
    for label, size in (("1KiB", KiB), ("100KiB", 100 * KiB), ("10MiB", 10 * MiB)):
        bodies[label] = bench_body(size, runs)
    results["data_body"] = bodies
    results["pipelined"] = bench_pipelined(runs)
    results["byte_at_a_time"] = {
        "command": bench_byte_at_a_time("command", slow_sizes, slow_runs),
        "data": bench_byte_at_a_time("data", slow_sizes, slow_runs),
    }

    print(f"smtp_recv protocol core, Python {platform.python_version()}, median of {runs} run(s)")
    print()
    print(f"{'DATA body':<12}{'MB/s':>10}{'msgs/s':>12}{'MB/s incl. envelope':>22}")
    for label, r in bodies.items():
        print(
            f"{label:<12}{r['mb_per_s']:>10.1f}{r['messages_per_s']:>12.0f}"
            f"{r['mb_per_s_with_envelope']:>22.1f}"
        )
    p = results["pipelined"]
    assert isinstance(p, dict)
    print()
    print(
        f"pipelined MAIL/RCPT/DATA/body/. ({p['bytes_per_envelope']} bytes each): "
        f"{p['envelopes_per_s']:.0f} envelopes/s ({p['mb_per_s']:.1f} MB/s)"
    )
    print()
    print("one line fed one byte at a time (linear time: each row about double the last)")
    print(f"{'size':<10}{'command mode s':>16}{'ratio':>8}{'DATA mode s':>14}{'ratio':>8}")
    bat = results["byte_at_a_time"]
    assert isinstance(bat, dict)
    prev: dict[str, float] = {}
    for key in bat["command"]:
        row = f"{key:<10}"
        for mode in ("command", "data"):
            t = bat[mode][key]["seconds_median"]
            ratio = f"{t / prev[mode]:.2f}" if mode in prev else "-"
            bat[mode][key]["ratio_to_previous"] = t / prev[mode] if mode in prev else None
            prev[mode] = t
            row += f"{t:>16.3f}{ratio:>8}" if mode == "command" else f"{t:>14.3f}{ratio:>8}"
        print(row)

    ten = bodies["10MiB"]["mb_per_s"]
    ok = ten >= TARGET_10MIB_MBPS
    results["target_10mib_mb_per_s"] = TARGET_10MIB_MBPS
    results["target_met"] = ok
    print()
    print(
        f"target: >= {TARGET_10MIB_MBPS:.0f} MB/s on the 10 MiB body: {'met' if ok else 'MISSED'}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"results written to {args.json}")
    return 0 if ok or args.no_check else 1


if __name__ == "__main__":
    sys.exit(main())
