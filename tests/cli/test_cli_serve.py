"""`smtp-recv serve` as a real process, spoken to with the stdlib's smtplib.

Each test starts ``python -m smtp_recv serve`` on free ports, reads the
addresses it prints, and checks the Maildirs afterwards: what the client was
told (250) against what is on disk, through SIGTERM and SIGKILL.
"""

from __future__ import annotations

import json
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import trustme

from smtp_recv._maildir import mailbox_directory, outbox_directory

from .conftest import write_config

LISTENING = re.compile(r"^(MX|Submission) listening on \[?([^\]]+?)\]?:(\d+) ")
PASSWORD = re.compile(r"^Login: (\S+)  password: (\S+) ")
START_TIMEOUT = 30.0
MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello there.\r\n"


@dataclass
class Server:
    process: subprocess.Popen[str]
    mx: tuple[str, int]
    submission: tuple[str, int]
    state: Path
    stderr: Path
    login: tuple[str, str] | None
    stderr_file: IO[str]

    @property
    def maildir(self) -> Path:
        return self.state / "maildir"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.state / "tls" / "localhost.pem"))

    def close(self) -> None:
        """Kill the process if it still runs, and release its pipe and log file."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.stderr_file.close()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start(
    arguments: list[str],
    state: Path,
    *,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    shell_prefix: list[str] | None = None,
) -> Server:
    stderr = state.parent / f"{state.name}-stderr.log"
    stderr_file = stderr.open("w")
    command = [sys.executable, "-m", "smtp_recv", "serve", *arguments]
    process = subprocess.Popen(
        [*(shell_prefix or []), *command],
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        env=env,
        pass_fds=pass_fds,
    )
    assert process.stdout is not None
    addresses: dict[str, tuple[str, int]] = {}
    login = None
    deadline = time.monotonic() + START_TIMEOUT
    for line in process.stdout:
        if match := LISTENING.match(line):
            addresses[match[1]] = (match[2], int(match[3]))
        elif match := PASSWORD.match(line):
            login = (match[1], match[2])
        elif line.startswith("Ready"):
            break
        assert time.monotonic() < deadline, "server did not start"
    else:
        process.wait(10)
        process.stdout.close()
        stderr_file.close()
        pytest.fail(f"server exited ({process.returncode}): {stderr.read_text()}")
    return Server(
        process,
        addresses.get("MX", ("", 0)),
        addresses.get("Submission", ("", 0)),
        state,
        stderr,
        login,
        stderr_file,
    )


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[Server]:
    state = tmp_path / "state"
    server = start(["--state-dir", str(state), "--mx-port", "0", "--submission-port", "0"], state)
    yield server
    server.close()


def new_messages(maildir: Path) -> list[bytes]:
    new = maildir / "new"
    return [path.read_bytes() for path in sorted(new.iterdir())] if new.is_dir() else []


def test_dev_server_listens_on_loopback_only(dev_server: Server) -> None:
    assert dev_server.mx[0] == "127.0.0.1"
    assert dev_server.submission[0] == "127.0.0.1"
    assert dev_server.login is not None
    assert dev_server.login[0] == "dev@localhost"
    stored = (dev_server.state / "dev-users.toml").read_text()
    assert dev_server.login[1] not in stored  # only the hash is kept
    assert "scrypt$" in stored


def test_dev_server_receives_on_mx_with_and_without_starttls(dev_server: Server) -> None:
    with smtplib.SMTP(*dev_server.mx, timeout=10) as client:
        client.sendmail("a@example.org", ["Bob@Example.COM"], MESSAGE)
    with smtplib.SMTP(*dev_server.mx, timeout=10) as client:
        client.starttls(context=dev_server.tls_context())
        client.sendmail("a@example.org", ["bob@example.com", "carol@example.net"], MESSAGE)
    # Bob@Example.COM and bob@example.com are one mailbox, as with a recipient map.
    assert not mailbox_directory(dev_server.maildir, "Bob@example.com").exists()
    bob = new_messages(mailbox_directory(dev_server.maildir, "bob@example.com"))
    carol = new_messages(mailbox_directory(dev_server.maildir, "carol@example.net"))
    assert (len(bob), len(carol)) == (2, 1)
    for stored in (*bob, *carol):
        assert stored.endswith(MESSAGE)
        assert b"Return-Path: <a@example.org>\r\n" in stored
    assert dev_server.stop() == 0


def test_dev_server_receives_on_submission(dev_server: Server) -> None:
    assert dev_server.login is not None
    login, password = dev_server.login
    with smtplib.SMTP_SSL(
        *dev_server.submission, context=dev_server.tls_context(), timeout=10
    ) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(login, password + "x")
        client.login(login, password)
        client.sendmail("noreply@myapp.example", ["someone@example.org"], MESSAGE)
    (stored,) = new_messages(outbox_directory(dev_server.maildir, login))
    assert stored.endswith(MESSAGE)
    assert b"X-Envelope-To: <someone@example.org>\r\n" in stored
    assert dev_server.stop() == 0


def open_data(server: Server) -> smtplib.SMTP:
    """A session that is in the middle of DATA, with part of the message sent."""
    client = smtplib.SMTP(*server.mx, timeout=10)
    client.ehlo()
    client.mail("a@example.org")
    client.rcpt("bob@example.com")
    client.putcmd("data")
    code, _ = client.getreply()
    assert code == 354
    client.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    return client


# The development server stops on SIGHUP too (it has no config file to
# reload), and a terminal's hang-up must not cut messages off.
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_data_lets_the_message_finish(
    dev_server: Server, number: signal.Signals
) -> None:
    client = open_data(dev_server)
    dev_server.process.send_signal(number)
    time.sleep(0.5)
    # The listener is closed at once: new connections are refused.
    with pytest.raises(OSError):  # noqa: PT011
        smtplib.SMTP(*dev_server.mx, timeout=5).noop()
    client.send(b"second half\r\n.\r\n")
    code, _ = client.getreply()
    assert code == 250
    client.close()
    assert dev_server.process.wait(30) == 0
    (stored,) = new_messages(mailbox_directory(dev_server.maildir, "bob@example.com"))
    assert stored.endswith(b"first half\r\nsecond half\r\n")


def test_second_signal_stops_at_once(dev_server: Server) -> None:
    client = open_data(dev_server)
    dev_server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    dev_server.process.send_signal(signal.SIGTERM)
    assert dev_server.process.wait(10) == 128 + signal.SIGTERM
    client.close()
    # Never acknowledged, so never stored: the client will retry.
    assert new_messages(mailbox_directory(dev_server.maildir, "bob@example.com")) == []


def test_sigkill_after_250_loses_nothing(dev_server: Server) -> None:
    bodies = [MESSAGE + b"number %d\r\n" % number for number in range(5)]
    with smtplib.SMTP(*dev_server.mx, timeout=10) as client:
        for body in bodies:
            client.sendmail("a@example.org", ["bob@example.com"], body)
        dev_server.process.kill()  # right after the last 250
    dev_server.process.wait(10)
    maildir = mailbox_directory(dev_server.maildir, "bob@example.com")
    stored = new_messages(maildir)
    assert sorted(message[message.index(MESSAGE) :] for message in stored) == sorted(bodies)
    assert list((maildir / "tmp").iterdir()) == []


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start(
        [
            "--state-dir",
            str(state),
            "--mx-port",
            "0",
            "--submission-port",
            "0",
            "--log-format",
            "json",
        ],
        state,
    )
    assert server.stop() == 0
    server.close()
    lines = server.stderr.read_text().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= entry.keys()


def test_production_config(tmp_path: Path, certificate_authority: trustme.CA) -> None:
    config = write_config(tmp_path, certificate_authority)
    server = start(
        ["--config", str(config), "--mx-port", "0", "--submission-port", "0"], tmp_path / "unused"
    )
    try:
        context = ssl.create_default_context()
        certificate_authority.configure_trust(context)
        with smtplib.SMTP(*server.mx, timeout=10) as client:
            client.starttls(context=context)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("a@example.org", ["nobody@example.com"], MESSAGE)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("a@example.org", ["someone@gmail.com"], MESSAGE)
            client.sendmail("a@example.org", ["SALES@example.com"], MESSAGE)
        with smtplib.SMTP_SSL(*server.submission, context=context, timeout=10) as client:
            client.login("alice@example.com", "alice-secret")
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.sendmail("bob@example.com", ["x@example.org"], MESSAGE)
            client.sendmail("sales@example.com", ["x@example.org"], MESSAGE)
        assert server.stop() == 0
    finally:
        server.close()
    root = tmp_path / "maildir"
    for mailbox in ("alice@example.com", "bob@example.com"):
        assert len(new_messages(mailbox_directory(root, mailbox))) == 1
    assert len(new_messages(outbox_directory(root, "alice@example.com"))) == 1


def test_systemd_socket_activation(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    state = tmp_path / "state"
    # This wrapper puts the socket at fd 3 and sets LISTEN_PID to the pid
    # that exec keeps, as systemd does.
    wrapper = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.close(int(sys.argv[1]));"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='mx');"
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    server = start(
        ["--state-dir", str(state), "--submission-port", "0"],
        state,
        pass_fds=(listener.fileno(),),
        shell_prefix=[sys.executable, "-c", wrapper, str(listener.fileno())],
    )
    listener.close()
    try:
        assert server.mx == ("127.0.0.1", port)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["bob@example.com"], MESSAGE)
        assert server.stop() == 0
    finally:
        server.close()
    assert len(new_messages(mailbox_directory(state / "maildir", "bob@example.com"))) == 1


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("listener", ["mx", "submission"])
def test_port_in_use_is_a_one_line_error_naming_the_listener(
    tmp_path: Path, certificate_authority: trustme.CA, listener: str, workers: int
) -> None:
    # --workers binds in the supervisor, with other code: it needs --config.
    config = write_config(tmp_path, certificate_authority)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "submission" if listener == "mx" else "mx"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "smtp_recv",
                "serve",
                "--config",
                str(config),
                f"--{listener}-port",
                str(port),
                f"--{other}-port",
                "0",
                "--workers",
                str(workers),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"smtp-recv: error: cannot listen: {listener} on 127.0.0.1 port {port}:"
        " Address already in use"
    ) in result.stderr
