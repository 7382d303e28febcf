"""An SMTP load generator that stays out of the way of the server it measures.

Every session is its own process (``multiprocessing``, forked) with a plain
blocking socket and a hand-written reply reader: no event loop and no
``smtplib`` between the generator and the kernel, so a message costs the
generator a few ``send``/``recv`` calls.  (A trio client loop was the other
candidate; its per-``recv`` scheduling costs more CPU than a blocked process
waiting in the kernel, and the generator has one core to itself.)

Each scenario runs for a warm-up and then a measured window.  Every session
records the start and end of each message; a message counts in proportion
to the part of it that falls inside the window, so long messages (10 MiB)
straddling the window's edges are neither lost nor double-counted.  The
CPU time of the server and of the generator's processes over the window is
read from ``/proc/<pid>/stat`` (utime + stime, all threads).

Use it through ``benchmarks/compare.py``; alone::

    python benchmarks/loadgen.py A 127.0.0.1:2525 [--tls-port 4650] [--duration 3]
"""

from __future__ import annotations

import argparse
import array
import base64
import contextlib
import multiprocessing
import os

# Before any OpenSSL in this process (or a session forked from it) reads its
# configuration: see openssl-client.cnf and fast_tls_client.  The servers
# are started with SERVER_ENVIRONMENT, as it was.
SERVER_ENVIRONMENT = dict(os.environ)
CLIENT_OPENSSL_CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openssl-client.cnf")
os.environ.setdefault("OPENSSL_CONF", CLIENT_OPENSSL_CONF)

import resource  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

KiB = 1024
MiB = 1024 * 1024
MB = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
SENDER = "user@example.org"
RECIPIENT = "rcpt@example.net"
PASSWORD = "secret-password"  # noqa: S105 - every password is accepted
# Bounds on everything: a stuck server fails the run instead of hanging it.
SOCKET_TIMEOUT = 30.0
MAX_ERRORS_PER_SESSION = 50
OPENING_THREADS = 50


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    body_size: int
    sessions: int
    new_connection: bool = False
    pipelined: bool = False
    tls_auth: bool = False
    #: Seconds of load before the measured window (longer for large bodies).
    warmup: float = 1.0


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("A", "1 KiB, 10 sessions reusing connections", KiB, 10),
        Scenario(
            "B", "1 KiB, new connection per message, 10 sessions", KiB, 10, new_connection=True
        ),
        Scenario("C", "100 KiB, 10 sessions reusing connections", 100 * KiB, 10),
        Scenario("D", "10 MiB, 10 sessions reusing connections", 10 * MiB, 10, warmup=2.0),
        Scenario("E", "1 KiB, 100 concurrent sessions", KiB, 100),
        Scenario("F", "1 KiB, pipelined MAIL/RCPT/DATA+body, 10 sessions", KiB, 10, pipelined=True),
        Scenario(
            "G",
            "1 KiB, implicit TLS + AUTH PLAIN, new connection per message, 10 sessions",
            KiB,
            10,
            new_connection=True,
            tls_auth=True,
        ),
        # A's load against servers that store each message (compare.py picks
        # the servers): smtp_recv's built-in server with its Maildir Mailer
        # (fsync on) against aiosmtpd writing each message to a file.
        Scenario("M", "1 KiB, 10 sessions, stored: Maildir with fsync vs plain files", KiB, 10),
        # The built-in server with 1 and with 2 worker processes.
        # New connections, as MX traffic mostly is: the workers share one
        # accept queue, and a long-lived connection stays where it landed.
        Scenario(
            "W",
            "1 KiB, new connection per message, 20 sessions, built-in server"
            " (Maildir on tmpfs), 1 vs 2 workers",
            KiB,
            20,
            new_connection=True,
        ),
    )
}
IDLE_TITLE = "memory per idle session (server RSS with N idle sessions minus at rest)"


def make_body(size: int) -> bytes:
    """About ``size`` bytes of message as sent after DATA, dot-stuffed, without the final ".".

    76-character lines; every 16th starts with "." (sent as "..").
    """
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz"[:76]
    header = (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: benchmark\r\n"
        "Message-ID: <bench@example.org>\r\n\r\n"
    ).encode()
    parts = [header]
    total = len(header)
    i = 0
    while total < size:
        piece = (b".." + line[1:] if i % 16 == 15 else line) + b"\r\n"
        parts.append(piece)
        total += len(piece)
        i += 1
    return b"".join(parts)


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (or the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and every live descendant (a server and its workers)."""
    total = cpu_seconds(pid)
    for child in _children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += tree_cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"/proc/{pid}/task/{task}/children") as f,
            ):
                children += [int(x) for x in f.read().split()]
    return children


def busy_cpu_seconds() -> float:
    """CPU time spent on all cores by everything (from /proc/stat), in seconds."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    # user nice system idle iowait irq softirq steal: all but idle and iowait.
    values = [int(v) for v in fields[:8]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def client_tls_context() -> ssl.SSLContext:
    # The generator does not verify: it measures the server, not the PKI.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fast_tls_client() -> FastTLS | None:
    """The generator's TLS client for G: pyOpenSSL when it is installed.

    A handshake with the standard library's ``ssl`` (this machine's OpenSSL
    3.0) cost the generator's core about as much as the server's, so G
    measured the generator.  pyOpenSSL drives the newer OpenSSL that
    ``cryptography``'s wheels bundle, whose client handshake costs less.
    The servers keep theirs: only the client changes.
    """
    try:
        from OpenSSL import SSL
    except ImportError:
        return None
    return FastTLS(SSL)


def tls_client_description() -> str:
    """Which TLS client G's sessions use, for the results."""
    fast = fast_tls_client()
    if fast is None:
        return f"ssl, {ssl.OPENSSL_VERSION} (pyOpenSSL is not installed)"
    return fast.library


class FastTLS:
    """Blocking TLS client connections on pyOpenSSL, bounded by socket timeouts."""

    def __init__(self, ssl_module: Any) -> None:
        self._ssl = ssl_module
        self._context = ssl_module.Context(ssl_module.TLS_CLIENT_METHOD)
        self._context.set_verify(ssl_module.VERIFY_NONE)  # the server, not the PKI

    @property
    def library(self) -> str:
        """The client's library, and the key shares its ClientHello really offers."""
        version = self._ssl.OpenSSL_version(self._ssl.OPENSSL_VERSION).decode()
        return f"pyOpenSSL, {version}, key shares: {', '.join(self.key_shares())}"

    def key_shares(self) -> list[str]:
        """The groups of the key shares in a ClientHello made in memory.

        (Whether openssl-client.cnf took effect depends on when OpenSSL
        started in this process: this reads what it does, not what was meant.)
        """
        conn = self._ssl.Connection(self._context, None)
        conn.set_tlsext_host_name(b"bench.local")
        conn.set_connect_state()
        with contextlib.suppress(self._ssl.WantReadError):
            conn.do_handshake()
        groups = _key_share_groups(conn.bio_read(65536))
        return [_GROUP_NAMES.get(group, f"0x{group:04x}") for group in groups]

    def wrap(self, sock: socket.socket) -> _FastTLSSocket:
        # pyOpenSSL needs a blocking descriptor: the kernel's send and receive
        # timeouts bound each call instead of Python's.
        sock.settimeout(None)
        seconds, fraction = divmod(SOCKET_TIMEOUT, 1.0)
        timeout = struct.pack("ll", int(seconds), max(1, int(fraction * 1e6)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        conn = self._ssl.Connection(self._context, sock)
        conn.set_tlsext_host_name(b"bench.local")
        conn.set_connect_state()
        wrapped = _FastTLSSocket(self._ssl, conn, sock)
        wrapped.call(conn.do_handshake)
        return wrapped


_GROUP_NAMES = {0x001D: "X25519", 0x0017: "P-256", 0x0018: "P-384", 0x11EC: "X25519MLKEM768"}


def _key_share_groups(record: bytes) -> list[int]:
    """The groups of the key_share extension of a TLS record holding a ClientHello."""
    # Record header (5), handshake header (4), legacy version (2), random (32).
    at = 5 + 4 + 2 + 32
    at += 1 + record[at]  # session id
    at += 2 + int.from_bytes(record[at : at + 2])  # cipher suites
    at += 1 + record[at]  # compression methods
    end = at + 2 + int.from_bytes(record[at : at + 2])
    at += 2
    while at < end:
        kind, size = int.from_bytes(record[at : at + 2]), int.from_bytes(record[at + 2 : at + 4])
        at += 4
        if kind == 51:  # key_share: a length, then (group, length, key) entries
            groups, share, stop = [], at + 2, at + size
            while share < stop:
                groups.append(int.from_bytes(record[share : share + 2]))
                share += 4 + int.from_bytes(record[share + 2 : share + 4])
            return groups
        at += size
    return []


class _FastTLSSocket:
    """The calls ``Client`` makes on its socket, over a pyOpenSSL connection."""

    __slots__ = ("_conn", "_raw", "_ssl")

    def __init__(self, ssl_module: Any, conn: Any, raw: socket.socket) -> None:
        self._ssl, self._conn, self._raw = ssl_module, conn, raw

    def call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except self._ssl.ZeroReturnError:
            return b""
        except self._ssl.Error as error:
            # A receive timeout comes back as "want read", say.
            raise OSError(f"TLS: {type(error).__name__} {error}") from error

    def sendall(self, data: bytes) -> None:
        self.call(self._conn.sendall, data)

    def recv(self, size: int) -> bytes:
        data: bytes = self.call(self._conn.recv, size)
        return data

    def close(self) -> None:
        # As the standard library's SSLSocket.close(): no close_notify (the
        # client has said QUIT).
        self._raw.close()


class SMTPError(Exception):
    pass


class Client:
    """One SMTP client session over a blocking socket."""

    __slots__ = ("buf", "sock")

    def __init__(
        self, address: tuple[str, int], tls: ssl.SSLContext | FastTLS | None = None
    ) -> None:
        sock = socket.create_connection(address, timeout=SOCKET_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket | _FastTLSSocket = sock
        if isinstance(tls, FastTLS):
            self.sock = tls.wrap(sock)
        elif tls is not None:
            self.sock = tls.wrap_socket(sock, server_hostname="bench.local")
        self.buf = bytearray()

    def reply(self) -> int:
        """Read one whole reply (all its lines); return its code."""
        buf = self.buf
        while True:
            start = 0
            while (end := buf.find(b"\r\n", start)) >= 0:
                if end - start == 3 or buf[start + 3] == 32:  # "250" or "250 ..."
                    code = int(buf[start : start + 3])
                    del buf[: end + 2]
                    return code
                start = end + 2
            data = self.sock.recv(65536)
            if not data:
                raise SMTPError("connection closed by the server")
            buf += data

    def expect(self, code: int) -> None:
        got = self.reply()
        if got != code:
            raise SMTPError(f"expected {code}, got {got}")

    def command(self, line: bytes, code: int) -> None:
        self.sock.sendall(line)
        self.expect(code)

    def greet(self) -> None:
        self.expect(220)
        self.command(b"EHLO loadgen.example.org\r\n", 250)

    def login(self) -> None:
        token = base64.b64encode(f"\0{SENDER}\0{PASSWORD}".encode()).decode()
        self.command(f"AUTH PLAIN {token}\r\n".encode(), 235)

    def quit(self) -> None:
        with contextlib.suppress(OSError, SMTPError):
            self.command(b"QUIT\r\n", 221)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


_MAIL = f"MAIL FROM:<{SENDER}>\r\n".encode()
_RCPT = f"RCPT TO:<{RECIPIENT}>\r\n".encode()
_DATA = b"DATA\r\n"
_END = b".\r\n"


def send_message(client: Client, message: bytes) -> None:
    """MAIL, RCPT, DATA and the message, each waiting for its reply."""
    client.command(_MAIL, 250)
    client.command(_RCPT, 250)
    client.command(_DATA, 354)
    client.command(message, 250)


def send_pipelined(client: Client, wire: bytes) -> None:
    """The whole envelope and message in one write, then the four replies."""
    client.sock.sendall(wire)
    for code in (250, 250, 354, 250):
        client.expect(code)


def session(
    scenario: Scenario,
    address: tuple[str, int],
    end_at: float,
    results: Connection,
) -> None:
    """One session's loop (in its own process): send until ``end_at``, report the times."""
    times = array.array("d")
    errors: list[str] = []
    message = make_body(scenario.body_size) + _END
    pipelined = _MAIL + _RCPT + _DATA + message
    tls: ssl.SSLContext | FastTLS | None = None
    if scenario.tls_auth:
        tls = fast_tls_client() or client_tls_context()
    client: Client | None = None
    try:
        while time.monotonic() < end_at and len(errors) < MAX_ERRORS_PER_SESSION:
            start = time.monotonic()
            try:
                if client is None:
                    client = Client(address, tls)
                    client.greet()
                    if scenario.tls_auth:
                        client.login()
                if scenario.pipelined:
                    send_pipelined(client, pipelined)
                else:
                    send_message(client, message)
                if scenario.new_connection:
                    client.quit()
                    client = None
            except (OSError, SMTPError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                if client is not None:
                    client.close()
                    client = None
                time.sleep(0.01)
                continue
            times.append(start)
            times.append(time.monotonic())
        if client is not None:
            client.quit()
    finally:
        results.send((times.tobytes(), errors))
        results.close()


def _overlap(times: array.array[float], start: float, end: float) -> float:
    """Messages inside [start, end], each counted by the fraction of it inside."""
    total = 0.0
    for i in range(0, len(times), 2):
        s, e = times[i], times[i + 1]
        if e <= start or s >= end:
            continue
        if e - s <= 0:
            total += 1.0
        else:
            total += (min(e, end) - max(s, start)) / (e - s)
    return total


def run_scenario(
    scenario: Scenario,
    address: tuple[str, int],
    server_pid: int,
    duration: float = 3.0,
) -> dict[str, Any]:
    """Run ``scenario`` against ``address``; return rates and CPU figures."""
    raise_nofile(4 * scenario.sessions + 256)
    ctx = multiprocessing.get_context("fork")
    launch = time.monotonic()
    fork_allowance = 0.2 + 0.005 * scenario.sessions
    window_start = launch + fork_allowance + scenario.warmup
    window_end = window_start + duration
    workers = []
    for _ in range(scenario.sessions):
        receiver, sender = ctx.Pipe(duplex=False)
        process = ctx.Process(target=session, args=(scenario, address, window_end, sender))
        process.start()
        sender.close()
        workers.append((process, receiver))
    pids = [p.pid for p, _ in workers if p.pid is not None]

    time.sleep(max(0.0, window_start - time.monotonic()))
    server_cpu0 = tree_cpu_seconds(server_pid)
    gen_cpu0 = sum(_cpu_or_zero(pid) for pid in pids)
    busy0 = busy_cpu_seconds()
    # Starting many sessions can take longer than planned (the forks share
    # the generator's core with the sessions already sending): the window,
    # for messages and CPU alike, then starts when the CPU was first read.
    late = max(0.0, time.monotonic() - window_start)
    window_start += late
    duration = max(window_end - window_start, 1e-3)
    time.sleep(max(0.0, window_end - time.monotonic()))
    server_cpu1 = tree_cpu_seconds(server_pid)
    gen_cpu1 = sum(_cpu_or_zero(pid) for pid in pids)
    busy1 = busy_cpu_seconds()

    # A message under way at the end of the window finishes; wait for it, bounded.
    messages = 0.0
    completed = 0
    errors: list[str] = []
    deadline = window_end + SOCKET_TIMEOUT * 4 + 10
    for _, receiver in workers:
        if receiver.poll(max(0.1, deadline - time.monotonic())):
            raw, session_errors = receiver.recv()
            times = array.array("d")
            times.frombytes(raw)
            messages += _overlap(times, window_start, window_end)
            completed += len(times) // 2
            errors += session_errors
        else:
            errors.append("session did not report before the deadline")
        receiver.close()
    for process, _ in workers:
        process.join(timeout=max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=5)

    server_cpu = server_cpu1 - server_cpu0
    body_bytes = len(make_body(scenario.body_size))
    return {
        "scenario": scenario.key,
        "tls_client": tls_client_description() if scenario.tls_auth else None,
        "window_seconds": duration,
        # Seconds the window lost to slow session start-up (see above).
        "window_started_late_by": late,
        "messages_in_window": messages,
        "messages_completed": completed,
        "messages_per_s": messages / duration,
        "mb_per_s": messages * body_bytes / duration / MB,
        "server_cpu_seconds": server_cpu,
        "server_cpu_per_1000_messages": server_cpu / messages * 1000 if messages else None,
        "server_core_utilisation": server_cpu / duration,
        "generator_core_utilisation": (gen_cpu1 - gen_cpu0) / duration,
        # Other processes on the machine (cores' worth): should be near 0.
        "foreign_cpu_utilisation": max(0.0, (busy1 - busy0) - server_cpu - (gen_cpu1 - gen_cpu0))
        / duration,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
    }


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def idle_memory(
    address: tuple[str, int], server_pid: int, tls: bool, count: int = 1000, settle: float = 1.0
) -> dict[str, Any]:
    """Server RSS per idle session: ``count`` sessions after greeting and EHLO (and AUTH on TLS).

    A few sessions are opened and closed first, so that what the first
    connection initialises lazily is in the at-rest figure.
    """
    raise_nofile(count + 256)
    context = client_tls_context() if tls else None

    def open_one() -> Client:
        client = Client(address, context)
        client.greet()
        if tls:
            client.login()
        return client

    def try_open(_: int) -> Client | str:
        try:
            return open_one()
        except (OSError, SMTPError) as error:
            return f"{type(error).__name__}: {error}"

    for client in [open_one() for _ in range(10)]:
        client.quit()
    time.sleep(settle)
    at_rest = rss_kib(server_pid)
    clients: list[Client] = []
    errors: list[str] = []
    start = time.monotonic()
    try:
        # Opened from a pool of threads: some servers hold the greeting back
        # (node's smtp-server waits 100 ms for early talkers), and the
        # sessions need not be opened one after the other.
        with ThreadPoolExecutor(max_workers=OPENING_THREADS) as pool:
            for outcome in pool.map(try_open, range(count)):
                if isinstance(outcome, Client):
                    clients.append(outcome)
                else:
                    errors.append(outcome)
        open_seconds = time.monotonic() - start
        time.sleep(settle)
        loaded = rss_kib(server_pid)
    finally:
        for client in clients:
            client.close()
    return {
        "tls": tls,
        "sessions": len(clients),
        "rss_at_rest_kib": at_rest,
        "rss_loaded_kib": loaded,
        "kib_per_session": (loaded - at_rest) / len(clients) if clients else None,
        "open_seconds": open_seconds,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one scenario against a running server.")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("address", help="HOST:PORT of the plaintext listener")
    parser.add_argument("--tls-port", type=int, help="port of the implicit-TLS listener (G)")
    parser.add_argument("--pid", type=int, required=True, help="server pid, for its CPU time")
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    host, port = args.address.rsplit(":", 1)
    scenario = SCENARIOS[args.scenario]
    if scenario.tls_auth:
        port = args.tls_port
    result = run_scenario(scenario, (host, int(port)), args.pid, args.duration)
    for key, value in result.items():
        print(f"{key:32}{value}")


if __name__ == "__main__":
    main()
