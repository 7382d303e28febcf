"""The built-in server (``smtp-recv serve --config``) as a benchmark server.

    python benchmarks/servers/smtp_recv_cli_server.py CERTFILE KEYFILE \\
        [--workers N] [--store-in DIR]

Writes a config into a temporary directory: the MX listener on a free port
of 127.0.0.1 (submission off), the load generator's recipient as a mailbox,
and the built-in Maildir Mailer (fsync on) storing under that directory, on
the disk of ``/tmp`` unless ``--store-in`` names another place (``/dev/shm``
takes the disk out of a measurement of CPU scaling).  Then runs ``smtp-recv serve`` as a child
process (``--workers N --pin-workers`` if asked), prints ``{"plain": [host, port],
"tls": [host, port]}`` once it listens (``tls`` repeats the MX address:
there is no submission listener), passes SIGTERM/SIGINT on and removes the
directory when the server has stopped.

Logging is at ``warning``, as the other benchmark servers log nothing per
message: this measures storage, not log lines.  ``compare.py`` counts the
CPU of this process and all its descendants.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPIENT = "rcpt@example.net"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, certfile: str, keyfile: str, port: int) -> Path:
    config = directory / "config.toml"
    config.write_text(
        f"""hostname = "bench.local"

[mx]
address = "127.0.0.1"
port = {port}

[submission]
enabled = false

[limits]
max_message_size = {64 << 20}
max_connections = 5000
max_connections_per_ip = 5000

[protocol]
reverse_dns = false

[[tls.certificates]]
cert = {json.dumps(certfile)}
key = {json.dumps(keyfile)}
default = true

[recipients]
mailboxes = [{json.dumps(RECIPIENT)}]

[storage]
maildir_root = {json.dumps(str(directory / "maildir"))}
"""
    )
    return config


def wait_until_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"smtp-recv serve exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-recv serve did not listen in time")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("certfile")
    parser.add_argument("keyfile")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store-in", default=tempfile.gettempdir(), help="where the Maildirs go")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="smtp-recv-bench-", dir=args.store_in))
    port = free_port()
    config = write_config(
        directory, str(Path(args.certfile).resolve()), str(Path(args.keyfile).resolve()), port
    )
    command = [sys.executable, "-m", "smtp_recv", "serve", "--config", str(config)]
    command += ["--log-level", "warning"]
    if args.workers > 1:
        # One worker per CPU, each kept on its own (see smtp_recv/_workers.py).
        command += ["--workers", str(args.workers), "--pin-workers"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def forward(number: int, frame: object) -> None:
        server.send_signal(number)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        wait_until_listening(port, server)
        address = ["127.0.0.1", port]
        print(json.dumps({"plain": address, "tls": address}), flush=True)
        return server.wait()
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
