"""`smtp-recv serve --workers N`: processes sharing the listening sockets, supervised."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from smtp_recv._maildir import mailbox_directory

from .conftest import write_config
from .test_cli_serve import MESSAGE, new_messages

BOUND = re.compile(r"^mx socket bound on \[?([^\]]+?)\]?:(\d+)$")
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
TIMEOUT = 30.0


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def worker_pids(log: Path) -> dict[int, int]:
    """The latest pid of each worker slot, from the supervisor's log."""
    pids: dict[int, int] = {}
    for match in STARTED.finditer(log.read_text()):
        pids[int(match[1])] = int(match[2])
    return pids


def test_pin_workers_needs_several_workers(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    config = write_config(tmp_path, certificate_authority)
    command = [sys.executable, "-m", "smtp_recv", "serve", "--config", str(config)]
    result = subprocess.run(
        [*command, "--pin-workers"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 2
    assert "--pin-workers needs --workers" in result.stderr


@contextlib.contextmanager
def supervisor(
    tmp_path: Path,
    certificate_authority: trustme.CA,
    *,
    pinned: bool = False,
    own_group: bool = False,
    limits: str = "",
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """``smtp-recv serve --workers 2`` on free ports: the process, the MX port, its log.

    ``own_group``: in a process group of its own, as a shell runs a command,
    so that the test can signal the whole group without signalling itself.
    """
    config = write_config(tmp_path, certificate_authority, limits=limits)
    log = tmp_path / "supervisor.log"
    with log.open("w") as stderr:
        command = [
            sys.executable,
            "-m",
            "smtp_recv",
            "serve",
            "--config",
            str(config),
            "--mx-port",
            "0",
            "--submission-port",
            "0",
            "--workers",
            "2",
        ]
        if pinned:
            command.append("--pin-workers")
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            process_group=0 if own_group else None,
        )
        # Read in a thread, so that a server that never gets ready fails the
        # test after TIMEOUT instead of hanging it.
        lines: queue.Queue[str] = queue.Queue()
        output = process.stdout
        assert output is not None
        reader = threading.Thread(target=lambda: [lines.put(line) for line in output])
        reader.start()
        try:
            port = 0
            ready = 0
            deadline = time.monotonic() + TIMEOUT
            while ready < 2:
                try:
                    line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
                except queue.Empty:
                    pytest.fail(f"the workers were not ready in {TIMEOUT} s:\n{log.read_text()}")
                if match := BOUND.match(line.strip()):
                    port = int(match[2])
                ready += line.startswith("Ready")
            assert port, "the supervisor printed no MX socket"
            yield process, port, log
        finally:
            for pid in worker_pids(log).values():  # none may outlive the test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
            process.wait()
            reader.join(TIMEOUT)  # every writer is gone: the pipe is at its end
            output.close()


def stored_for_bob(tmp_path: Path) -> int:
    """How many messages the workers stored in bob@example.com's Maildir."""
    return len(new_messages(mailbox_directory(tmp_path / "maildir", "bob@example.com")))


def message_in_flight(port: int) -> smtplib.SMTP:
    """A client that has sent a message's body but not its end (``.``)."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo()
    client.mail("a@example.org")
    client.rcpt("bob@example.com")
    assert client.docmd("DATA")[0] == 354
    client.send(MESSAGE)
    return client


def gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


# With --pin-workers each worker (a restarted one too) runs on its own CPU.
@pytest.mark.parametrize("pinned", [False, True], ids=["plain", "pinned"])
def test_workers_share_the_socket_and_are_restarted(
    tmp_path: Path, certificate_authority: trustme.CA, pinned: bool
) -> None:
    with supervisor(tmp_path, certificate_authority, pinned=pinned) as (
        process,
        port,
        log,
    ):
        first = worker_pids(log)
        assert len(first) == 2

        for number in range(6):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("a@example.org", ["bob@example.com"], MESSAGE + b"%d" % number)

        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: worker_pids(log).get(0, first[0]) != first[0], "a restarted worker")
        cpus = sorted(os.sched_getaffinity(0))
        for slot, pid in worker_pids(log).items():
            expected = {cpus[slot % len(cpus)]} if pinned else set(cpus)
            assert os.sched_getaffinity(pid) == expected, (slot, pid)
        # The restarted worker and the survivor both serve the same socket.
        for number in range(6, 10):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("a@example.org", ["bob@example.com"], MESSAGE + b"%d" % number)

        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        for pid in worker_pids(log).values():
            wait_for(lambda pid=pid: gone(pid), "workers to exit")
    assert stored_for_bob(tmp_path) == 10


def greeting(port: int) -> bytes:
    """The first reply line a new client gets, the connection then left open."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    OPEN.append(client)
    return client.makefile("rb").readline()


OPEN: list[socket.socket] = []


def test_the_connection_limit_per_address_holds_across_the_workers(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    # Whichever worker the kernel gives each connection to, one address has
    # one connection in all, not one per worker.
    limits = "max_connections_per_ip = 1"
    try:
        with supervisor(tmp_path, certificate_authority, limits=limits) as (process, port, log):
            assert greeting(port).startswith(b"220 ")
            for _ in range(8):
                assert greeting(port).startswith(b"421 4.7.0 "), log.read_text()
            OPEN.pop(0).close()
            # Once the first has gone (the worker counts it out, and the
            # others see that), the address may connect again.
            wait_for(lambda: greeting(port).startswith(b"220 "), "the connection to be counted out")
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
    finally:
        while OPEN:
            OPEN.pop().close()


def test_workers_stop_gracefully_when_the_supervisor_is_killed(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    # SIGKILL leaves the supervisor no chance to pass anything on.
    with supervisor(tmp_path, certificate_authority) as (process, _port, log):
        workers = worker_pids(log)
        assert len(workers) == 2
        process.kill()
        process.wait()
        for pid in workers.values():
            wait_for(lambda pid=pid: gone(pid), "workers to exit without their supervisor")


def test_a_stopping_supervisor_refuses_new_clients_while_a_message_finishes(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    with supervisor(tmp_path, certificate_authority) as (process, port, _log):
        client = message_in_flight(port)
        process.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        # Not left in the listening queue until the grace period (5 s) ends.
        wait_for(refused, "new connections to be refused")
        client.send(b".\r\n")
        assert client.getreply()[0] == 250
        client.close()
        assert process.wait(TIMEOUT) == 0
    assert stored_for_bob(tmp_path) == 1


def test_a_second_signal_stops_the_workers_at_once_with_the_status_one_process_gives(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    with supervisor(tmp_path, certificate_authority) as (process, port, log):
        client = message_in_flight(port)  # so the first signal cannot finish the stop
        process.send_signal(signal.SIGTERM)
        # trio merges a signal that comes again before it is read: wait until
        # the workers have taken the first.
        wait_for(lambda: log.read_text().count("SIGTERM: shutting down") == 2, "a graceful stop")
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 128 + signal.SIGTERM
        client.close()
    # The message never had its 250: the client still holds it.
    assert stored_for_bob(tmp_path) == 0


SUPERVISE_ONE = """
import os, signal, socket, sys, threading, time
from smtp_recv._workers import Supervisor
def worker(sockets):
    exec(sys.argv[1])
listener = socket.create_server(("127.0.0.1", 0))
supervisor = Supervisor(worker, [("mx", listener)])
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
sys.exit(supervisor.run(1))
"""


@pytest.mark.parametrize(
    ("worker", "status"),
    [
        # Still starting: the stop signal's default action ends it, with nothing in flight.
        ("import time; time.sleep(30)", 0),
        # A crash while stopping is not a clean stop.
        (
            "import os, signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGSEGV))\n"
            "time.sleep(30)",
            128 + signal.SIGSEGV,
        ),
        (
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
            "time.sleep(30)",
            3,
        ),
        (
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit())\n"
            "time.sleep(30)",
            0,
        ),
    ],
    ids=["killed-while-starting", "crashed", "failed", "exited"],
)
def test_the_supervisor_exit_status_reports_how_its_workers_stopped(
    worker: str, status: int
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SUPERVISE_ONE, worker], capture_output=True, timeout=TIMEOUT
    )
    assert result.returncode == status, result.stderr


def test_a_worker_that_raises_says_why_through_the_log() -> None:
    worker = "raise RuntimeError('the hook module is broken')"
    result = subprocess.run(
        [sys.executable, "-c", SUPERVISE_ONE, worker], capture_output=True, timeout=TIMEOUT
    )
    assert re.search(rb"worker \d+ failed\n", result.stderr), result.stderr
    assert b"RuntimeError: the hook module is broken" in result.stderr


def test_ctrl_c_to_the_whole_group_is_one_graceful_stop(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    # A terminal sends SIGINT to every process of the foreground group; the
    # workers must not take the supervisor's copy for a second signal.
    with supervisor(tmp_path, certificate_authority, own_group=True) as (process, port, log):
        client = message_in_flight(port)
        os.killpg(process.pid, signal.SIGINT)
        wait_for(lambda: "SIGINT: passing it on" in log.read_text(), "the signal")
        client.send(b".\r\n")
        assert client.getreply()[0] == 250
        client.close()
        assert process.wait(TIMEOUT) == 0
    assert "stopping at once" not in log.read_text()
    assert stored_for_bob(tmp_path) == 1


def test_a_restarted_worker_serves_the_config_the_supervisor_loaded(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    # There is no reload: until a restart, every worker serves what was
    # loaded at start, even after the file changed (or was broken).
    with supervisor(tmp_path, certificate_authority) as (process, port, log):
        first = worker_pids(log)
        config = tmp_path / "config.toml"
        config.write_text(config.read_text() + "\nthis is not TOML\n")
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: worker_pids(log).get(0, first[0]) != first[0], "a restarted worker")
        wait_for(lambda: log.read_text().count(" listening: ") == 3, "it to listen")
        for number in range(8):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("a@example.org", ["bob@example.com"], MESSAGE + b"%d" % number)
        assert "exited with 2" not in log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    assert stored_for_bob(tmp_path) == 8


SIGNAL_WHILE_FORKING = """
import logging, os, signal, socket, sys, time
from smtp_recv import _workers
logging.basicConfig(level=logging.INFO)
fork = os.fork
def fork_then_signal():
    pid = fork()
    if pid:  # the stop signal lands while the worker is being forked
        os.kill(os.getpid(), signal.SIGTERM)
    return pid
_workers.os.fork = fork_then_signal
def worker(sockets):
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # as a started worker does
    time.sleep(30)
listener = socket.create_server(("127.0.0.1", 0))
sys.exit(_workers.Supervisor(worker, [("mx", listener)]).run(3))
"""


def test_a_stop_signal_while_a_worker_is_forked_reaches_it_and_no_more_are_started() -> None:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_WHILE_FORKING], capture_output=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 10  # not the worker's 30 s
    assert result.stderr.count(b"started (pid") == 1


NEVER_UNWINDS = """
import logging, os, signal, sys, socket, time
from smtp_recv import _workers
def worker(sockets):
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.pause()
    sys.stdout.close()  # the worker's last flush now fails (ValueError)
    return 0
listener = socket.create_server(("127.0.0.1", 0))
supervisor = _workers.Supervisor(worker, [("mx", listener)])
signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
signal.setitimer(signal.ITIMER_REAL, 1.0)
try:
    status = supervisor.run(1)
finally:
    print("left run in", os.getpid(), file=sys.stderr, flush=True)
sys.exit(status)
"""


def test_a_failing_worker_never_runs_the_supervisors_code() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NEVER_UNWINDS], capture_output=True, timeout=TIMEOUT
    )
    # Only the supervisor leaves Supervisor.run; the worker ends in os._exit.
    assert result.stderr.count(b"left run in") == 1, result.stderr
    assert result.returncode == 1


def test_binding_closes_what_it_bound_when_a_later_listener_fails() -> None:
    from smtp_recv import ListenerConfig, ListenError, ServerConfig
    from smtp_recv._workers import bind_listeners

    with socket.socket() as probe:  # a free port for mx
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as busy:
        config = ServerConfig(
            hostname="mx.example.com",
            mx=ListenerConfig(host="127.0.0.1", port=free),
            submission=ListenerConfig(host="127.0.0.1", port=busy.getsockname()[1]),
        )
        with pytest.raises(ListenError, match=r"^submission on 127\.0\.0\.1 port"):
            bind_listeners(config)
    # The mx socket bound first was closed: its port can be bound again.
    socket.create_server(("127.0.0.1", free)).close()
