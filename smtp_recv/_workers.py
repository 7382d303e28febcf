"""``smtp-recv serve --workers N``: N server processes sharing the listening sockets.

One trio loop uses one core.  To use more, the parent loads the config,
binds the listening sockets once, and forks N workers that inherit both, so
the kernel spreads the connections among the workers' ``accept`` calls.
Inheriting one socket, rather than each worker binding its own with
``SO_REUSEPORT``, works on every Unix and keeps the connection queue shared:
a busy worker does not strand connections the kernel hashed to it.

Forked, not started afresh: every worker, a restarted one too, serves the
config, users and recipients the parent loaded, as the single process does
until it is restarted.  A worker started as a new program would read the
files again, so after an edit (or a typo) the workers would disagree, or the
restarted one would not start at all.  The parent runs no trio loop and no
thread before it forks; each worker starts its own loop.

The parent supervises: a worker that dies is started again (with a pause,
and giving up if they keep dying), and SIGINT/SIGTERM are passed on to
every worker, whose own handling makes the first signal graceful and the
second immediate.  SIGHUP reloads: the parent reads the config file again
first (the workers it starts from then on fork its new tables), then
passes the signal on, and each worker reloads its own copy.  Each worker
is in a process group of its own, so that a signal sent to the parent's
whole group (Ctrl-C in a terminal) reaches the workers once, from the
parent, and is not taken for the second.  Once stopping, the parent
closes its copies of the listening sockets, so that new clients are refused
as soon as the workers have closed theirs, not left in the queue until the
grace period ends.  A worker whose parent dies (killed, so it could pass
nothing on) gets SIGTERM from the kernel and shuts down gracefully (Linux;
elsewhere it runs on).

The connection and AUTH-failure limits hold for the server as a whole: the
workers add up their counts in a table the parent maps, shared, before it
forks them (``_shared_counts``).

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

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import FrameType

from ._clients import share_counts
from ._config import ListenerConfig, ListenError, ServerConfig
from ._hangup import RELOAD_SIGNAL, hold_reload_signal, take_reload_request
from ._notify import Notifier
from ._shared_counts import SharedCounts

log = logging.getLogger("smtp_recv.workers")

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
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Blocked while forking.
_SIGNALS = (*STOP_SIGNALS, RELOAD_SIGNAL)


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
        try:
            bound.append((name, _bind(listener)))
        except OSError as error:
            for _, sock in bound:
                sock.close()
            raise ListenError.of(name, listener, error) from error
    return bound


def _bind(listener: ListenerConfig) -> socket.socket:
    if listener.host is None and socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", listener.port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=BACKLOG
        )
    host = "0.0.0.0" if listener.host is None else listener.host  # noqa: S104 - every interface
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, listener.port), family=family, backlog=BACKLOG)


#: A worker: runs the server on the sockets it is given; returns the exit status.
Worker = Callable[[Sequence[tuple[str, socket.socket]]], int]


class Supervisor:
    """Runs and restarts the workers; passes signals on to them."""

    def __init__(
        self,
        worker: Worker,
        sockets: Sequence[tuple[str, socket.socket]],
        *,
        pin: bool = False,
        reload: Callable[[], bool] | None = None,
        notifier: Notifier | None = None,
    ):
        """``reload`` runs in the parent on SIGHUP, before the signal is
        passed on; ``False`` says it failed (and said why), and the workers
        are then not asked to reload."""
        self._worker = worker
        self._reload = reload
        self._reloads = 0
        # The sockets are bound and listening before any worker runs:
        # clients wait in the queue, so the service is ready once forked.
        self._notifier = notifier or Notifier()
        #: The CPUs workers are pinned to, in turn; empty: no pinning.
        self._cpus = sorted(os.sched_getaffinity(0)) if pin else []
        self._sockets = list(sockets)
        #: The running workers' pids, by slot.
        self._workers: dict[int, int] = {}
        self._deaths: deque[float] = deque(maxlen=MAX_RESTARTS)
        self._signals = 0
        self._prctl = _parent_death_signal()
        self._counts: SharedCounts | None = None

    def _spawn(self, slot: int) -> None:
        cpu = self._cpus[slot % len(self._cpus)] if self._cpus else None
        parent = os.getpid()
        sys.stdout.flush()  # or the child would write what is buffered again
        sys.stderr.flush()
        # Signals wait until the child has put its own handlers in place
        # (the parent's must not run in it) and the parent has the new
        # worker in its table (or the signal would not be passed on to it).
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            if self._stopping():
                return
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    status = self._in_child(parent, cpu, slot)
                finally:
                    os._exit(status)  # never unwind into the parent's frames
            self._workers[slot] = pid
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        where = f" on CPU {cpu}" if cpu is not None else ""
        log.info("worker %d started (pid %d)%s", slot, pid, where)

    def _in_child(self, parent: int, cpu: int | None, slot: int) -> int:
        """The worker's life, in the forked child; its exit status."""
        try:
            for number in STOP_SIGNALS:
                signal.signal(number, signal.SIG_DFL)
            take_reload_request()  # the parent's, if any, is the parent's
            hold_reload_signal()  # until the worker's loop can reload
            os.setpgid(0, 0)
            if self._prctl is not None:
                self._prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            if os.getppid() != parent:  # it died before the prctl call
                return 128 + signal.SIGTERM
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            assert self._counts is not None
            share_counts(self._counts.row(slot))
            return self._worker(self._sockets)
        except SystemExit as exit_:
            code = exit_.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException:
            # The worker is over: say why, through the log's formatter.
            log.critical("worker %d failed", os.getpid(), exc_info=True)
            return 1
        finally:
            with contextlib.suppress(OSError):  # a reader that has gone
                sys.stdout.flush()
                sys.stderr.flush()

    def _on_reload_signal(self, number: int, frame: FrameType | None) -> None:
        self._reloads += 1  # acted on in run(), outside the signal handler

    def _reload_now(self) -> None:
        self._reloads = 0
        if self._reload is not None:
            self._notifier.reloading()
            try:
                reloaded = self._reload()
            except Exception:
                log.exception("reload failed; the workers go on with what they have")
                return
            finally:
                self._notifier.ready()
            if not reloaded or self._stopping():  # stopping: no worker needs it
                return
        log.info("SIGHUP: passing it on to %d workers", len(self._workers))
        for pid in self._workers.values():
            with contextlib.suppress(ProcessLookupError):  # gone already
                os.kill(pid, RELOAD_SIGNAL)

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(number).name
        log.info("%s: passing it on to %d workers", name, len(self._workers))
        for pid in self._workers.values():
            with contextlib.suppress(ProcessLookupError):  # gone already
                os.kill(pid, number)

    def run(self, count: int) -> int:
        """Start ``count`` workers and keep them running until a signal; the exit status."""
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)
        signal.signal(RELOAD_SIGNAL, self._on_reload_signal)
        if take_reload_request():  # one came as the supervisor started
            self._reloads += 1
        self._counts = SharedCounts(count)
        for slot in range(count):
            self._spawn(slot)
        self._notifier.ready()
        try:
            while True:
                if self._stopping():
                    self._notifier.stopping()
                    self._close_sockets()
                    return self._wait_for_all()
                if self._reloads:
                    self._reload_now()
                for slot, pid in list(self._workers.items()):
                    if self._stopping():
                        break  # _wait_for_all reaps it, and reports its status
                    status = _exit_status(pid, block=False)
                    if status is None:
                        continue
                    del self._workers[slot]
                    self._counts.clear(slot)  # its connections died with it
                    log.error("worker %d (pid %d) exited with %d", slot, pid, status)
                    now = time.monotonic()
                    self._deaths.append(now)
                    if len(self._deaths) == MAX_RESTARTS and now - self._deaths[0] < RESTART_WINDOW:
                        log.error("workers keep dying; stopping")
                        self._notifier.stopping()
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
        for pid in self._workers.values():
            code = _exit_status(pid, block=True)
            assert code is not None
            if code < 0:  # killed by a signal it did not handle
                code = 0 if -code in STOP_SIGNALS else 128 - code
            status = status or code
        self._workers.clear()
        log.info("all workers stopped")
        return status


def _exit_status(pid: int, *, block: bool) -> int | None:
    """A child's exit code (``-N`` for signal N), or ``None`` while it runs."""
    done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    return None if done == 0 else os.waitstatus_to_exitcode(status)
