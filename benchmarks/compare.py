"""smtp_recv against aiosmtpd (and node's smtp-server), scenario by scenario.

    python benchmarks/compare.py [--runs 3] [--quick] [--scenarios ABCDEFGH]
                                 [--servers smtp_recv,aiosmtpd,node] [--json out.json]

Each server runs in its own subprocess pinned to core 0, a fresh one for
every measurement; the load generator (``loadgen.py``) is pinned to core 1.
The servers alternate within each run, so drift on the machine spreads over
all of them.  Reported per scenario: messages/s, MB/s (10**6 bytes of
message), server CPU seconds per 1,000 messages, and the ratio of smtp_recv
to aiosmtpd (messages/s; for H, memory).  Each figure is the median of the
runs.  "srv%" and "gen%" are how busy each core was in the window: the
server's near 100% and the generator's below it means the server is what
was measured.  "oth%" is CPU used by other processes on the machine during the
window (cores' worth, from /proc/stat): anything well above 0 makes that
row's rates unreliable (the CPU-per-message column suffers least).

Scenarios (see ``loadgen.SCENARIOS``): A 1 KiB over 10 reused sessions,
B new connection per message, C 100 KiB, D 10 MiB, E 100 concurrent
sessions, F pipelined envelopes, G implicit TLS + AUTH PLAIN with a new
connection per message, H server memory per idle session (plain and TLS).

node's column appears when ``node`` is on the PATH; ``npm install`` in
``benchmarks/node`` is run when its ``node_modules`` is missing.  Postfix's
``smtp-source`` is used as a cross-check of scenario A when installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402

SERVER_CORE = 0
GENERATOR_CORE = 1
ALL_SERVERS = ("smtp_recv", "aiosmtpd", "node")
# Messages in smtp-source's cross-check of A: a few seconds for each server.
SMTP_SOURCE_MESSAGES = 10_000
# Any one run of this script stays under ten minutes.
DEFAULT_MAX_SECONDS = 570.0
# Other processes may use this much of a core before a measurement starts.
QUIET_THRESHOLD = 0.15


class ServerUnavailable(Exception):
    pass


def available_servers(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    found, skipped = [], {}
    for name in wanted:
        if name == "smtp_recv":
            probe = subprocess.run(
                [sys.executable, "-c", "import smtp_recv; smtp_recv.serve"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if probe.returncode:
                skipped[name] = "smtp_recv.serve does not exist yet"
                continue
        elif name == "aiosmtpd":
            probe = subprocess.run(
                [sys.executable, "-c", "import aiosmtpd.smtp"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if probe.returncode:
                skipped[name] = "aiosmtpd is not installed (pip install aiosmtpd)"
                continue
        elif name == "node":
            reason = ensure_node()
            if reason:
                skipped[name] = reason
                continue
        else:
            raise SystemExit(f"unknown server {name!r}; choose from {', '.join(ALL_SERVERS)}")
        found.append(name)
    return found, skipped


def ensure_node() -> str | None:
    """Return why node's server cannot run, or ``None`` when it can."""
    if shutil.which("node") is None:
        return "node is not on the PATH"
    if (HERE / "node" / "node_modules" / "smtp-server").is_dir():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on the PATH to install smtp-server"
    print("installing smtp-server into benchmarks/node (npm install) ...", flush=True)
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund"],
        cwd=HERE / "node",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode:
        return f"npm install failed: {result.stderr.strip()[-300:]}"
    return None


#: Scenario W's two configurations of the built-in server.
WORKER_COUNTS = (1, 2)
#: Where scenario W keeps its Maildirs (tmpfs), when the machine has it.
MEMORY_FILESYSTEM = "/dev/shm"  # noqa: S108 - a parent for mkdtemp, not a file name
#: The servers scenario M compares (each storing every message).
STORING_SERVERS = ("smtp_recv", "aiosmtpd")


def server_command(name: str, certfile: Path, keyfile: Path, letter: str = "A") -> list[str]:
    """The command for ``name`` in scenario ``letter`` (M and W start other configurations)."""
    builtin = [
        sys.executable,
        str(HERE / "servers" / "smtp_recv_cli_server.py"),
        str(certfile),
        str(keyfile),
    ]
    if letter == "W":
        # name is "N worker(s)": the built-in server with N workers.
        command = [*builtin, "--workers", name.split()[0]]
        if Path(MEMORY_FILESYSTEM).is_dir():
            # Measure CPU scaling, not the disk's fsync rate.
            command += ["--store-in", MEMORY_FILESYSTEM]
        return command
    if letter == "M" and name == "smtp_recv":
        return builtin
    if letter == "M" and name == "aiosmtpd":
        script = HERE / "servers" / "aiosmtpd_server.py"
        return [sys.executable, str(script), str(certfile), str(keyfile), "--files"]
    if name == "node":
        node = shutil.which("node")
        assert node is not None
        return [node, str(HERE / "node" / "server.js"), str(certfile), str(keyfile)]
    script = HERE / "servers" / f"{name}_server.py"
    return [sys.executable, str(script), str(certfile), str(keyfile)]


def _pin_to_server_core() -> None:
    os.sched_setaffinity(0, {SERVER_CORE})


def _unpin() -> None:
    # This script runs on the generator's core; a server that is not pinned
    # must not inherit that.
    os.sched_setaffinity(0, range(os.cpu_count() or 1))


@contextlib.contextmanager
def running_server(
    name: str, certs: tuple[Path, Path], log_dir: Path, letter: str = "A"
) -> Iterator[dict[str, Any]]:
    """Start one server, pinned to the server core; yield its pid and addresses; stop it.

    In scenario W, several workers are not pinned: they may use every core.
    """
    log_path = log_dir / f"{name.replace(' ', '-')}.stderr.log"
    pin = _pinning() and not (letter == "W" and name != "1 worker")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            server_command(name, *certs, letter=letter),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=_pin_to_server_core if pin else _unpin,
            env=loadgen.SERVER_ENVIRONMENT,
        )
    try:
        assert process.stdout is not None
        line = _read_line(process, timeout=30.0)
        ports = json.loads(line)
        yield {
            "pid": process.pid,
            "plain": (ports["plain"][0], int(ports["plain"][1])),
            "tls": (ports["tls"][0], int(ports["tls"][1])),
        }
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log_path}")
    except (ValueError, KeyError, TimeoutError) as error:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise ServerUnavailable(f"{name} did not start ({error}):\n{tail}") from None
    finally:
        _stop(process)


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no ports printed within {timeout} s")
    line = process.stdout.readline().decode()
    if not line:
        raise ValueError(f"exited with {process.wait(timeout=5)} before printing its ports")
    return line


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def _pinning() -> bool:
    return (
        len(os.sched_getaffinity(0) | {SERVER_CORE, GENERATOR_CORE}) >= 2
        and (os.cpu_count() or 1) >= 2
    )


def make_certificates(directory: Path) -> tuple[Path, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("bench.local", "127.0.0.1")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    keyfile.write_bytes(cert.private_key_pem.bytes())
    return certfile, keyfile


def smtp_source_check(server: dict[str, Any], messages: int) -> dict[str, Any] | None:
    """Scenario A driven by Postfix's smtp-source instead, as a cross-check.

    A first pass of a fifth as many messages is not measured: it warms the
    server up (node compiles its hot paths as they run), as the warm-up
    window does for the generator's own scenarios.
    """
    tool = shutil.which("smtp-source")
    if tool is None:
        return None
    host, port = server["plain"]

    def run(count: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                tool,
                "-s",
                "10",
                "-m",
                str(count),
                "-l",
                "1024",
                "-d",
                "-M",
                "loadgen.example.org",
                "-f",
                loadgen.SENDER,
                "-t",
                loadgen.RECIPIENT,
                f"{host}:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    warm_up = run(max(1, messages // 5))
    if warm_up.returncode != 0:
        return {"returncode": warm_up.returncode, "stderr": warm_up.stderr[-500:]}
    cpu0 = loadgen.cpu_seconds(server["pid"])
    start = time.monotonic()
    result = run(messages)
    seconds = time.monotonic() - start
    cpu = loadgen.cpu_seconds(server["pid"]) - cpu0
    return {
        "returncode": result.returncode,
        "messages_per_s": messages / seconds,
        "server_cpu_per_1000_messages": cpu / messages * 1000,
    }


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median); default 3")
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--duration", type=float, help="seconds of each measured window")
    parser.add_argument("--scenarios", default="ABCDEFGHMW", help="letters, e.g. ABH")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--idle-sessions", type=int, default=1000)
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds in all (over the whole invocation) to wait before measurements "
        "for other processes to go idle; default 30",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help="stop starting measurements after this long and report what was measured",
    )
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    duration = args.duration or (1.5 if args.quick else 3.0)
    letters = [c for c in args.scenarios.upper() if c.isalpha()]
    for letter in letters:
        if letter not in loadgen.SCENARIOS and letter != "H":
            raise SystemExit(f"unknown scenario {letter}")
    began = time.monotonic()

    loadgen.raise_nofile(args.idle_sessions * 2 + 1024)
    pinned = _pinning()
    if pinned:
        os.sched_setaffinity(0, {GENERATOR_CORE})
    servers, skipped = available_servers([s.strip() for s in args.servers.split(",") if s])
    if not shutil.which("smtp-source"):
        skipped["postfix smtp-source"] = (
            "not installed (apt-get install postfix): cross-check skipped"
        )
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}")
    if not servers:
        print("no server to measure")
        return 1
    print(
        f"servers: {', '.join(servers)}; {runs} run(s), {duration:g} s windows; "
        f"servers on core {SERVER_CORE}, generator on core {GENERATOR_CORE}"
        if pinned
        else "fewer than 2 cores: no pinning, figures are not comparable to pinned ones",
        flush=True,
    )
    if "G" in letters:
        print(f"G's TLS client: {loadgen.tls_client_description()}", flush=True)

    results: dict[str, Any] = {
        "python": platform.python_version(),
        "node": _node_version(),
        "runs": runs,
        "window_seconds": duration,
        "idle_sessions": args.idle_sessions,
        "servers": servers,
        "skipped": skipped,
        "raw": {},
        "cross_check_smtp_source": {},
    }
    raw: dict[str, dict[str, list[dict[str, Any]]]] = results["raw"]
    truncated = False
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as tmp:
        tmpdir = Path(tmp)
        certs = make_certificates(tmpdir)
        for run in range(runs):
            for letter in letters:
                names = servers_for(letter, servers)
                for name in names if run % 2 == 0 else list(reversed(names)):
                    if time.monotonic() - began > args.max_seconds:
                        truncated = True
                        break
                    measure(letter, name, certs, tmpdir, duration, args, raw)
                    if letter == "A" and run == 0 and shutil.which("smtp-source"):
                        with running_server(name, certs, tmpdir) as server:
                            check = smtp_source_check(server, SMTP_SOURCE_MESSAGES)
                        results["cross_check_smtp_source"][name] = check
        results["truncated"] = truncated
        results["summary"] = summarise(raw, servers, letters)
        print()
        print_tables(results, servers, letters)
        logs = {p.name: p.read_text(errors="replace")[-3000:] for p in tmpdir.glob("*.log")}
        results["server_stderr_tails"] = {k: v for k, v in logs.items() if v.strip()}
        for name, text in results["server_stderr_tails"].items():
            print(f"\n{name} (last lines):\n{text[-600:]}")
    if truncated:
        print(f"\nstopped early after --max-seconds {args.max_seconds:g}: fewer runs than asked")
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {args.json}")
    return 0


def servers_for(letter: str, servers: list[str]) -> list[str]:
    """Who runs scenario ``letter``: W is smtp_recv's worker counts, M the storing servers."""
    if letter == "W":
        if "smtp_recv" not in servers:
            return []
        return [f"{count} worker{'s' if count > 1 else ''}" for count in WORKER_COUNTS]
    if letter == "M":
        return [name for name in servers if name in STORING_SERVERS]
    return servers


def measure(
    letter: str,
    name: str,
    certs: tuple[Path, Path],
    tmpdir: Path,
    duration: float,
    args: argparse.Namespace,
    raw: dict[str, dict[str, list[dict[str, Any]]]],
) -> None:
    slot = raw.setdefault(letter, {}).setdefault(name, [])
    label = f"  {letter} {name:<10}"
    waited, other = wait_for_quiet(max(0.0, args.quiet_wait))
    args.quiet_wait -= waited
    if other > QUIET_THRESHOLD:
        print(f"  (machine busy: {other:.0%} of a core used by other processes)", flush=True)
    started = time.monotonic()
    try:
        if letter == "H":
            entry: dict[str, Any] = {}
            for tls in (False, True):
                with running_server(name, certs, tmpdir) as server:
                    address = server["tls"] if tls else server["plain"]
                    entry["tls" if tls else "plain"] = loadgen.idle_memory(
                        address, server["pid"], tls=tls, count=args.idle_sessions
                    )
            slot.append(entry)
            print(
                f"{label} {entry['plain']['kib_per_session']:.1f} KiB/session plain, "
                f"{entry['tls']['kib_per_session']:.1f} KiB/session TLS "
                f"({time.monotonic() - started:.1f} s)",
                flush=True,
            )
            return
        scenario = loadgen.SCENARIOS[letter]
        with running_server(name, certs, tmpdir, letter) as server:
            address = server["tls"] if scenario.tls_auth else server["plain"]
            result = loadgen.run_scenario(scenario, address, server["pid"], duration)
        slot.append(result)
        print(
            f"{label} {result['messages_per_s']:9.1f} msg/s {result['mb_per_s']:8.2f} MB/s "
            f"srv {result['server_core_utilisation']:4.0%} gen "
            f"{result['generator_core_utilisation']:4.0%} other "
            f"{result['foreign_cpu_utilisation']:4.0%} errors {result['errors']} "
            f"({time.monotonic() - started:.1f} s)"
            + (f" {result['error_samples'][:2]}" if result["errors"] else ""),
            flush=True,
        )
    except ServerUnavailable as error:
        print(f"{label} failed: {error}", flush=True)
        slot.append({"failed": str(error)})


def wait_for_quiet(limit: float) -> tuple[float, float]:
    """Wait (up to ``limit`` s) until other processes use under QUIET_THRESHOLD of a core.

    Returns the seconds waited and the last load seen (cores' worth).
    """
    start = time.monotonic()
    while True:
        before = loadgen.busy_cpu_seconds()
        time.sleep(0.3)
        other = (loadgen.busy_cpu_seconds() - before) / 0.3
        waited = time.monotonic() - start
        if other <= QUIET_THRESHOLD or waited >= limit:
            return waited, other
        time.sleep(0.7)


def summarise(
    raw: dict[str, dict[str, list[dict[str, Any]]]], servers: list[str], letters: list[str]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for letter in letters:
        per_server: dict[str, Any] = {}
        for name in servers_for(letter, servers):
            entries = [e for e in raw.get(letter, {}).get(name, []) if "failed" not in e]
            if not entries:
                continue
            if letter == "H":
                per_server[name] = {
                    kind: median([e[kind]["kib_per_session"] for e in entries])
                    for kind in ("plain", "tls")
                }
                per_server[name]["runs"] = len(entries)
            else:
                per_server[name] = {
                    key: median([e[key] for e in entries])
                    for key in (
                        "messages_per_s",
                        "mb_per_s",
                        "server_cpu_per_1000_messages",
                        "server_core_utilisation",
                        "generator_core_utilisation",
                        "foreign_cpu_utilisation",
                    )
                }
                per_server[name]["runs"] = len(entries)
                per_server[name]["errors"] = sum(e["errors"] for e in entries)
        ours, theirs = per_server.get("smtp_recv"), per_server.get("aiosmtpd")
        one, two = per_server.get("1 worker"), per_server.get("2 workers")
        if one and two:
            per_server["ratio_2_to_1_workers"] = {
                "messages_per_s": _ratio(two["messages_per_s"], one["messages_per_s"]),
                "server_cpu_per_1000_messages": _ratio(
                    two["server_cpu_per_1000_messages"], one["server_cpu_per_1000_messages"]
                ),
            }
        if ours and theirs:
            if letter == "H":
                per_server["ratio_smtp_recv_to_aiosmtpd"] = {
                    k: _ratio(ours[k], theirs[k]) for k in ("plain", "tls")
                }
            else:
                per_server["ratio_smtp_recv_to_aiosmtpd"] = {
                    "messages_per_s": _ratio(ours["messages_per_s"], theirs["messages_per_s"]),
                    "server_cpu_per_1000_messages": _ratio(
                        ours["server_cpu_per_1000_messages"], theirs["server_cpu_per_1000_messages"]
                    ),
                }
        summary[letter] = per_server
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_tables(results: dict[str, Any], servers: list[str], letters: list[str]) -> None:
    summary = results["summary"]
    print(
        f"median of {results['runs']} run(s), {results['window_seconds']:g} s windows; "
        "MB = 10**6 bytes of message; cpu = server CPU s per 1,000 messages"
    )
    head = f"{'':3}"
    for name in servers:
        head += (
            f" | {name + ' msg/s':>16} {'MB/s':>7} {'cpu':>6} {'srv%':>5} {'gen%':>5} {'oth%':>5}"
        )
    if "smtp_recv" in servers and "aiosmtpd" in servers:
        head += f" | {'ratio msg/s':>11} {'ratio cpu':>9}"
    message_letters = [x for x in letters if x not in ("H", "W")]
    if message_letters:
        print(head)
        print("-" * len(head))
    for letter in message_letters:
        row = f"{letter:3}"
        for name in servers:
            s = summary.get(letter, {}).get(name)
            if not s:
                row += f" | {'-':>16} {'-':>7} {'-':>6} {'-':>5} {'-':>5} {'-':>5}"
                continue
            row += (
                f" | {_fmt(s['messages_per_s'], '.0f'):>16} {_fmt(s['mb_per_s'], '.2f'):>7}"
                f" {_fmt(s['server_cpu_per_1000_messages'], '.3f'):>6}"
                f" {_fmt(s['server_core_utilisation'], '.0%'):>5}"
                f" {_fmt(s['generator_core_utilisation'], '.0%'):>5}"
                f" {_fmt(s['foreign_cpu_utilisation'], '.0%'):>5}"
            )
        ratio = summary.get(letter, {}).get("ratio_smtp_recv_to_aiosmtpd")
        if "smtp_recv" in servers and "aiosmtpd" in servers:
            row += (
                f" | {_fmt(ratio and ratio['messages_per_s'], '.2f'):>11}"
                f" {_fmt(ratio and ratio['server_cpu_per_1000_messages'], '.2f'):>9}"
                if ratio
                else f" | {'-':>11} {'-':>9}"
            )
        print(row)
    for letter in message_letters:
        print(f"  {letter}: {loadgen.SCENARIOS[letter].title}")
    short = sorted(
        {
            f"{letter}/{name}: {s['runs']}"
            for letter, per in summary.items()
            for name, s in per.items()
            if name in servers and s["runs"] < results["runs"]
        }
    )
    if short:
        print(f"fewer runs than asked: {', '.join(short)}")
    if "W" in letters and summary.get("W"):
        print()
        print(
            f"W: {loadgen.SCENARIOS['W'].title}"
            " (1 worker pinned to the server core; 2 workers with --pin-workers, one per core)"
        )
        print(f"{'':<12}{'msg/s':>10}{'cpu':>8}{'srv%':>7}{'gen%':>7}{'oth%':>7}")
        for name in servers_for("W", servers):
            s = summary["W"].get(name)
            if s:
                print(
                    f"{name:<12}{_fmt(s['messages_per_s'], '.0f'):>10}"
                    f"{_fmt(s['server_cpu_per_1000_messages'], '.3f'):>8}"
                    f"{_fmt(s['server_core_utilisation'], '.0%'):>7}"
                    f"{_fmt(s['generator_core_utilisation'], '.0%'):>7}"
                    f"{_fmt(s['foreign_cpu_utilisation'], '.0%'):>7}"
                )
        ratio = summary["W"].get("ratio_2_to_1_workers")
        if ratio:
            print(f"{'2 / 1':<12}{_fmt(ratio['messages_per_s'], '.2f'):>10}")
    if "H" in letters:
        print()
        print(f"H: {loadgen.IDLE_TITLE}, N = {results['idle_sessions']}, KiB per session")
        print(f"{'server':<12}{'plain':>10}{'TLS':>10}")
        for name in servers:
            s = summary.get("H", {}).get(name)
            if s:
                print(f"{name:<12}{_fmt(s['plain'], '.1f'):>10}{_fmt(s['tls'], '.1f'):>10}")
        ratio = summary.get("H", {}).get("ratio_smtp_recv_to_aiosmtpd")
        if ratio:
            print(f"{'ratio':<12}{_fmt(ratio['plain'], '.2f'):>10}{_fmt(ratio['tls'], '.2f'):>10}")
    checks = results.get("cross_check_smtp_source") or {}
    for name, check in checks.items():
        if not check:
            continue
        if check["returncode"] != 0 or "messages_per_s" not in check:
            print(f"smtp-source cross-check of A on {name} failed: {check}")
            continue
        print(
            f"smtp-source cross-check of A on {name}: {check['messages_per_s']:.0f} msg/s, "
            f"{check['server_cpu_per_1000_messages']:.3f} cpu s/1000"
        )


def _node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    return re.sub(r"\s+", "", out) or None


if __name__ == "__main__":
    sys.exit(main())
