"""``smtp-recv serve --workers N``: N server processes sharing the listening sockets.

One trio loop uses one core.  To use more, the parent binds the listening
sockets once and starts N copies of ``smtp-recv serve`` that inherit them,
exactly as systemd socket activation would (``LISTEN_FDS`` from fd 3,
``LISTEN_FDNAMES``, ``LISTEN_PID``), so a worker is an ordinary server and
the kernel spreads the connections among the workers' ``accept`` calls.
Inheriting one socket, rather than each worker binding its own with
``SO_REUSEPORT``, works on every Unix and keeps the connection queue shared:
a busy worker does not strand connections the kernel hashed to it.

The parent supervises: a worker that dies is started again (with a pause,
and giving up if they keep dying), and SIGINT/SIGTERM/SIGHUP are passed on
to every worker, whose own handling makes the first signal graceful and the
second immediate.  Once stopping, the parent closes its copies of the
listening sockets, so that new clients are refused as soon as the workers
have closed theirs, not left in the queue until the grace period ends.  A
worker whose parent dies (killed, so it could pass nothing on) gets SIGTERM
from the kernel and shuts down gracefully (Linux; elsewhere it runs on).

With ``--pin-workers`` each worker is bound to one CPU of those the parent
may use (worker ``i`` to the ``i``-th, round robin), as nginx's
``worker_cpu_affinity`` does: a worker's event loop and its helper threads
(Maildir writes) then stay on one core, instead of handing each write across
cores (on the benchmark machine, two unpinned workers delivered fewer
messages per second than one pinned worker).
It is off by default, because on a machine shared with other services the
kernel's own placement may serve better.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from types import FrameType

from ._config import ListenerConfig, ServerConfig

log = logging.getLogger("smtp_recv.workers")

#: sd_listen_fds(3): passed sockets start at file descriptor 3.
FIRST_FD = 3
#: A worker that dies is restarted after this pause (seconds)...
RESTART_PAUSE = 1.0
#: ...unless this many died within RESTART_WINDOW seconds: then we give up.
MAX_RESTARTS = 10
RESTART_WINDOW = 60.0
#: How often the parent looks at its workers.
POLL_INTERVAL = 0.2
#: The listen() backlog of the shared sockets.
BACKLOG = 1024
#: The signals that stop the server (and that the parent passes on).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: prctl(2): the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> ctypes._NamedFuncPointer | None:
    """libc's prctl, loaded before any fork, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def bind_listeners(config: ServerConfig) -> list[tuple[str, socket.socket]]:
    """Bind the enabled listeners that have no sockets yet; return (name, socket) pairs.

    With no host, one dual-stack IPv6 socket serves IPv4 as well where the
    system allows it, else an IPv4 one.
    """
    bound: list[tuple[str, socket.socket]] = []
    for name, listener in (("mx", config.mx), ("submission", config.submission)):
        if not listener.enabled:
            continue
        if listener.sockets:
            bound.extend((name, sock) for sock in listener.sockets)
            continue
        bound.append((name, _bind(listener)))
    return bound


def _bind(listener: ListenerConfig) -> socket.socket:
    if listener.host is None and socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", listener.port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=BACKLOG
        )
    host = "0.0.0.0" if listener.host is None else listener.host  # noqa: S104 - every interface
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, listener.port), family=family, backlog=BACKLOG)


def _place_at_listen_fds(
    sockets: Sequence[tuple[str, socket.socket]],
) -> list[tuple[str, socket.socket]]:
    """Move the sockets to descriptors 3, 4, ... in this process.

    Workers inherit them at the same numbers, where sd_listen_fds(3) looks.
    Doing it here rather than in the child keeps those numbers from being
    taken by anything subprocess opens while starting a worker.  Whatever
    was at those numbers (a descriptor inherited from our own parent) is
    replaced.
    """
    count = len(sockets)
    floor = FIRST_FD + count
    # First above every target, so that no move overwrites a socket still to move.
    lifted = []
    for name, sock in sockets:
        lifted.append((name, fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor)))
        sock.close()
    placed = []
    for index, (name, descriptor) in enumerate(lifted):
        target = FIRST_FD + index
        os.dup2(descriptor, target, inheritable=False)
        os.close(descriptor)
        placed.append((name, socket.socket(fileno=target)))
    return placed


class Supervisor:
    """Runs and restarts the workers; passes signals on to them."""

    def __init__(
        self,
        command: Sequence[str],
        sockets: Sequence[tuple[str, socket.socket]],
        *,
        pin: bool = False,
    ):
        self._command = list(command)
        #: The CPUs workers are pinned to, in turn; empty: no pinning.
        self._cpus = sorted(os.sched_getaffinity(0)) if pin else []
        self._sockets = _place_at_listen_fds(sockets)
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        self._deaths: deque[float] = deque(maxlen=MAX_RESTARTS)
        self._signals = 0
        self._prctl = _parent_death_signal()

    def _spawn(self, slot: int) -> None:
        names = ":".join(name for name, _ in self._sockets)
        count = len(self._sockets)
        cpu = self._cpus[slot % len(self._cpus)] if self._cpus else None

        prctl, parent = self._prctl, os.getpid()

        def in_child() -> None:
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
                if os.getppid() != parent:  # it died before the call
                    os.kill(os.getpid(), signal.SIGTERM)
            # Only the child knows its pid; sd_listen_fds(3) checks it.
            os.environ["LISTEN_PID"] = str(os.getpid())
            os.environ["LISTEN_FDS"] = str(count)
            os.environ["LISTEN_FDNAMES"] = names
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            self._command,
            pass_fds=tuple(range(FIRST_FD, FIRST_FD + count)),
            preexec_fn=in_child,  # the parent runs no other threads
        )
        self._workers[slot] = worker
        where = f" on CPU {cpu}" if cpu is not None else ""
        log.info("worker %d started (pid %d)%s", slot, worker.pid, where)

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(number).name
        log.info("%s: passing it on to %d workers", name, len(self._workers))
        for worker in self._workers.values():
            if worker.poll() is None:
                worker.send_signal(number)

    def run(self, count: int) -> int:
        """Start ``count`` workers and keep them running until a signal; the exit status."""
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)
        for slot in range(count):
            self._spawn(slot)
        try:
            while True:
                if self._stopping():
                    self._close_sockets()
                    return self._wait_for_all()
                for slot, worker in list(self._workers.items()):
                    status = worker.poll()
                    if status is None:
                        continue
                    if self._stopping():
                        break
                    log.error("worker %d (pid %d) exited with %d", slot, worker.pid, status)
                    now = time.monotonic()
                    self._deaths.append(now)
                    if len(self._deaths) == MAX_RESTARTS and now - self._deaths[0] < RESTART_WINDOW:
                        log.error("workers keep dying; stopping")
                        self._on_signal(signal.SIGTERM, None)
                        self._wait_for_all()
                        return 1
                    time.sleep(RESTART_PAUSE)
                    if self._stopping():
                        # A signal came during the pause: nobody to restart for.
                        break
                    self._spawn(slot)
                time.sleep(POLL_INTERVAL)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for _, sock in self._sockets:
            sock.close()

    def _stopping(self) -> bool:
        """Whether a signal asked us to stop (set from the signal handler)."""
        return self._signals > 0

    def _wait_for_all(self) -> int:
        """Wait for every worker; the status one process would have exited with.

        A graceful stop is 0 in every worker.  A second signal stops them at
        once with ``128 + signal``, as it does one process, and the
        supervisor says so too: a service manager must see the difference.
        A worker still starting when the stop signal came dies of it before
        it can handle it; it served nobody, so that is a clean stop too.
        """
        status = 0
        for worker in self._workers.values():
            code = worker.wait()
            if code < 0:  # killed by a signal it did not handle
                code = 0 if -code in STOP_SIGNALS else 128 - code
            status = status or code
        log.info("all workers stopped")
        return status


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: ours, with ``--workers 1`` (and no pinning)."""
    command = [sys.executable, "-m", "smtp_recv"]
    skip = False
    for argument in argv:
        if skip:
            skip = False
            continue
        if argument == "--workers":
            skip = True
            continue
        if argument.startswith("--workers=") or argument == "--pin-workers":
            continue
        command.append(argument)
    return [*command, "--workers", "1"]
