"""sd_notify: `smtp-recv serve` tells systemd when it is ready, reloading and stopping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from smtp_recv._notify import Notifier

from .conftest import write_config

TIMEOUT = 30.0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """systemd's side: a datagram socket the server is told of in NOTIFY_SOCKET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = str(tmp_path / "notify")
        sock.bind(path)
        sock.settimeout(TIMEOUT)
        yield sock, path


def next_message(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_server_says_ready_reloading_and_stopping(
    tmp_path: Path,
    certificate_authority: trustme.CA,
    notify_socket: tuple[socket.socket, str],
    workers: str,
) -> None:
    sock, path = notify_socket
    config = write_config(tmp_path, certificate_authority)
    command = [sys.executable, "-m", "smtp_recv", "serve", "--config", str(config)]
    command += ["--mx-port", "0", "--submission-port", "0", "--workers", workers]
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "NOTIFY_SOCKET": path},
        )
        try:
            assert next_message(sock) == "READY=1"
            process.send_signal(signal.SIGHUP)
            reloading = next_message(sock)
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert int(reloading.rpartition("=")[2]) <= time.monotonic_ns() // 1000
            assert next_message(sock) == "READY=1"
            process.send_signal(signal.SIGTERM)
            assert next_message(sock) == "STOPPING=1"
            assert process.wait(TIMEOUT) == 0
            # Only the process systemd started spoke: no worker did.
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(4096)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_without_notify_socket_nothing_is_sent() -> None:
    Notifier(None).ready()  # no socket, no error


def test_the_variable_is_taken_out_of_the_environment() -> None:
    environ = {"NOTIFY_SOCKET": "@systemd/notify", "HOME": "/root"}
    notifier = Notifier.from_environment(environ)
    assert environ == {"HOME": "/root"}
    assert notifier._address == "\0systemd/notify"


def test_an_address_that_is_no_unix_socket_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert notifier._address is None
    assert "not a Unix socket" in caplog.text


def test_a_notification_that_cannot_be_sent_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Notifier(str(tmp_path / "nobody-listens")).stopping()
    assert "could not notify systemd of STOPPING=1" in caplog.text


def test_an_abstract_socket_is_reached(tmp_path: Path) -> None:
    name = f"smtp-recv-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        Notifier("@" + name).ready()
        assert sock.recv(100) == b"READY=1"


def test_nothing_is_said_after_stopping(tmp_path: Path) -> None:
    # READY=1 after STOPPING=1 (a reload ending as the server stops) could
    # make systemd take a draining server for a running one.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = str(tmp_path / "notify")
        sock.bind(path)
        sock.settimeout(0.5)
        notifier = Notifier(path)
        notifier.stopping()
        notifier.reloading()
        notifier.ready()
        notifier.stopping()
        assert sock.recv(100) == b"STOPPING=1"
        with pytest.raises(TimeoutError):
            sock.recv(100)
