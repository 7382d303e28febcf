"""SIGHUP: `smtp-recv serve --config` reads its users, recipients and certificates again."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from smtp_recv._maildir import mailbox_directory
from smtp_recv._reload import ConfigTables
from smtp_recv._settings import ConfigError, load_settings
from smtp_recv._users import hash_password

from .conftest import CHEAP, write_certificate, write_config
from .test_cli_serve import MESSAGE, Server, new_messages, start
from .test_workers import gone, supervisor, wait_for, worker_pids

CAROL = '"carol@example.com"'


def add_carol(config: Path) -> None:
    """Make carol@example.com a mailbox in the config file."""
    text = config.read_text()
    config.write_text(text.replace('"bob@example.com"]', f'"bob@example.com", {CAROL}]', 1))


def accepts_carol(port: int) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        return client.rcpt("carol@example.com")[0] == 250


def log_count(log: Path, text: str) -> Callable[[], int]:
    return lambda: log.read_text().count(text)


@pytest.fixture
def server(tmp_path: Path, certificate_authority: trustme.CA) -> Iterator[Server]:
    config = write_config(tmp_path, certificate_authority)
    running = start(
        ["--config", str(config), "--mx-port", "0", "--submission-port", "0"], tmp_path / "unused"
    )
    try:
        yield running
    finally:
        running.close()


def reload(server: Server, expect: str) -> None:
    """SIGHUP, then wait for the log line ``expect`` to appear once more."""
    seen = log_count(server.stderr, expect)
    before = seen()
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: seen() > before, f"{expect!r} in the log")


def test_a_mailbox_added_to_the_config_is_served_after_sighup(
    server: Server, tmp_path: Path
) -> None:
    assert not accepts_carol(server.mx[1])
    add_carol(tmp_path / "config.toml")
    reload(server, "reloaded users, recipients and certificates")
    with smtplib.SMTP(*server.mx, timeout=10) as client:
        client.sendmail("a@example.org", ["carol@example.com"], MESSAGE)
    assert server.stop() == 0
    assert len(new_messages(mailbox_directory(tmp_path / "maildir", "carol@example.com"))) == 1


def test_users_added_and_removed_take_effect_even_on_open_connections(
    server: Server, tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    alice = smtplib.SMTP_SSL(*server.submission, context=context, timeout=10)
    alice.login("alice@example.com", "alice-secret")
    (tmp_path / "users.toml").write_text(
        f'[users."dave@example.com"]\npassword = "{hash_password("dave-secret", **CHEAP)}"\n'
    )
    reload(server, "reloaded users")
    with smtplib.SMTP_SSL(*server.submission, context=context, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice@example.com", "alice-secret")
        client.login("dave@example.com", "dave-secret")
        client.sendmail("dave@example.com", ["x@example.org"], MESSAGE)
    # Logged in before alice was removed: she may no longer send as anyone.
    with pytest.raises(smtplib.SMTPSenderRefused):
        alice.sendmail("alice@example.com", ["x@example.org"], MESSAGE)
    alice.close()
    assert server.stop() == 0


def test_a_config_that_does_not_load_changes_nothing(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    good = config.read_text()
    add_carol(config)
    config.write_text(config.read_text() + "\n[limits]\nnonsense = 1\n")
    reload(server, "reload failed; serving what was loaded before")
    assert "config.toml" in server.stderr.read_text()
    assert server.process.poll() is None
    assert not accepts_carol(server.mx[1])
    config.write_text(good)
    add_carol(config)
    reload(server, "reloaded users")
    assert accepts_carol(server.mx[1])
    assert server.stop() == 0


def test_settings_that_take_a_restart_are_named_and_left_as_they_run(
    server: Server, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    # The file's MX port changes too, but serve runs with --mx-port: no
    # restart would apply it, so it is not named.
    config.write_text(
        config.read_text()
        .replace("max_message_size = 1048576", "max_message_size = 100000")
        .replace("port = 2525", "port = 2526")
    )
    reload(server, "take a restart")
    assert "left as they run): max_message_size" in server.stderr.read_text()
    with smtplib.SMTP(*server.mx, timeout=10) as client:
        client.sendmail("a@example.org", ["bob@example.com"], MESSAGE + b"x" * 200_000)
    assert server.stop() == 0


def test_the_workers_and_the_ones_restarted_later_serve_the_reloaded_tables(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    with supervisor(tmp_path, certificate_authority) as (process, port, log):
        assert not accepts_carol(port)
        add_carol(tmp_path / "config.toml")
        process.send_signal(signal.SIGHUP)
        reloaded = log_count(log, "reloaded users, recipients and certificates")
        wait_for(lambda: reloaded() == 2, "both workers to reload")
        for _ in range(6):  # whichever worker takes the connection
            assert accepts_carol(port)
        first = worker_pids(log)
        os.kill(first[0], signal.SIGKILL)
        os.kill(first[1], signal.SIGKILL)
        wait_for(
            lambda: all(worker_pids(log).get(slot) != first[slot] for slot in (0, 1)),
            "both workers restarted",
        )
        wait_for(lambda: log.read_text().count("listening: mx") == 4, "restarted workers ready")
        for _ in range(6):
            assert accepts_carol(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        for pid in worker_pids(log).values():
            wait_for(lambda pid=pid: gone(pid), "workers to exit")


HELD_IN_THE_WORKER = """
import os, signal, socket, sys
from smtp_recv import _hangup, _workers
def worker(sockets):
    os.kill(os.getpid(), signal.SIGHUP)  # before the worker's loop could take it
    print("asked" if _hangup.take_reload_request() else "lost", flush=True)
    return 0
listener = socket.create_server(("127.0.0.1", 0))
supervisor = _workers.Supervisor(worker, [("mx", listener)])
signal.signal(signal.SIGALRM, lambda *_: supervisor._on_signal(signal.SIGTERM, None))
signal.setitimer(signal.ITIMER_REAL, 0.5)
sys.exit(supervisor.run(1))
"""


def test_a_sighup_to_a_worker_before_its_loop_runs_is_held_for_it() -> None:
    # By default SIGHUP ends a process: one sent as a worker starts would
    # kill it.  run_server reloads for one held so.
    result = subprocess.run(
        [sys.executable, "-c", HELD_IN_THE_WORKER], capture_output=True, timeout=30, check=False
    )
    assert result.stdout.startswith(b"asked\n"), result


HELD_BEFORE_THE_PROGRAM_LOADS = """
import signal, sys
import smtp_recv
def loading(name, *args, **kwargs):
    if name == "_cli" or name.endswith("._cli"):
        print("held" if signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL else "not held")
        sys.exit(0)
    return real_import(name, *args, **kwargs)
real_import, __builtins__.__import__ = __builtins__.__import__, loading
from smtp_recv import _entry
sys.argv = ["smtp-recv", *sys.argv[1:]]
_entry.main()
"""


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [(["serve", "--config", "x.toml"], b"held\n"), (["serve"], b"not held\n")],
    ids=["config", "development"],
)
def test_the_command_holds_sighup_before_it_loads_the_program(
    arguments: list[str], expected: bytes
) -> None:
    # Loading trio and the rest takes a fifth of a second: a SIGHUP then
    # (a reload just after a start) must not find the default action.
    result = subprocess.run(
        [sys.executable, "-c", HELD_BEFORE_THE_PROGRAM_LOADS, *arguments],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.stdout == expected, result


EMPTY_CONFIG = """
import os, signal, sys
from smtp_recv import _cli, _hangup
_hangup.hold_reload_signal()  # as the entry point does on seeing --config
os.kill(os.getpid(), signal.SIGHUP)
sys.exit(_cli.main(sys.argv[1:]))
"""


def test_an_empty_config_is_the_development_server_which_stops_on_sighup(
    tmp_path: Path,
) -> None:
    # `--config ""` is no config file: the hang-up held as it started is
    # delivered, and ends the development server as it always did.
    result = subprocess.run(
        [
            *(sys.executable, "-c", EMPTY_CONFIG, "serve", "--config="),
            *("--state-dir", str(tmp_path), "--mx-port", "0", "--submission-port", "0"),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == -signal.SIGHUP, result


HUP_WHILE_STARTING = """
import os, signal, sys
from smtp_recv import _cli
load = _cli.production_plan
def production_plan(args):
    os.kill(os.getpid(), signal.SIGHUP)  # `systemctl reload` just after the start
    return load(args)
_cli.production_plan = production_plan
sys.exit(_cli.main(sys.argv[1:]))
"""


@contextlib.contextmanager
def patched_server(
    script: str, tmp_path: Path, ca: trustme.CA, *arguments: str
) -> Iterator[tuple[subprocess.Popen[str], Path, int]]:
    """``smtp-recv serve --config`` run by ``script`` (which patches the CLI
    first), up to its first Ready: the process, its log and the MX port."""
    config = write_config(tmp_path, ca)
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                *(sys.executable, "-c", script, "serve", "--config", str(config)),
                *("--mx-port", "0", "--submission-port", "0", *arguments),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert process.stdout is not None
            mx = 0
            for line in process.stdout:
                if line.startswith("MX listening on"):
                    mx = int(line.split()[3].rpartition(":")[2])
                if line.startswith("Ready"):
                    break
            yield process, log, mx
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_sighup_while_the_server_starts_is_a_reload_once_it_can_be(
    tmp_path: Path, certificate_authority: trustme.CA, workers: str
) -> None:
    with patched_server(
        HUP_WHILE_STARTING, tmp_path, certificate_authority, "--workers", workers
    ) as (process, log, _):
        seen = log_count(log, "reloaded users, recipients and certificates")
        wait_for(lambda: seen() >= int(workers) or process.poll() is not None, "the reload")
        assert process.poll() is None, log.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


SLOW_RELOAD = """
import sys, time
from smtp_recv import _cli, _reload
reload = _reload.ConfigTables.reload
def slow_reload(self):
    time.sleep(1)  # a slow disk, a costly password hash
    return reload(self)
_reload.ConfigTables.reload = slow_reload
sys.exit(_cli.main(sys.argv[1:]))
"""


def test_a_sighup_as_the_server_stops_does_not_kill_it(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    # A reload under way, a stop, and another reload: the last one comes as
    # the server finishes, and must not end it with SIGHUP's default action.
    with patched_server(SLOW_RELOAD, tmp_path, certificate_authority) as (process, log, _):
        for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGHUP):
            process.send_signal(number)
            time.sleep(0.05)
        assert process.wait(30) == 0, log.read_text()
        text = log.read_text()
        assert "stopped" in text
        assert text.count("reloaded users") <= 1  # not the second: it came too late


HUP_AFTER_STOPPING = """
import os, signal, sys, time
from smtp_recv import _cli
run_server = _cli.run_server
async def run_then_hang_up(plan, out):
    await run_server(plan, out)
    # The server has stopped; trio's idle worker threads (Maildir writes)
    # live on for a while, and a process-wide SIGHUP may land on one.
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.3)
_cli.run_server = run_then_hang_up
sys.exit(_cli.main(sys.argv[1:]))
"""


def test_a_sighup_after_the_server_stopped_does_not_kill_it(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    with patched_server(HUP_AFTER_STOPPING, tmp_path, certificate_authority) as (
        process,
        log,
        mx,
    ):
        with smtplib.SMTP("127.0.0.1", mx, timeout=10) as client:
            client.sendmail("a@example.org", ["bob@example.com"], MESSAGE)  # a thread
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()


def test_a_sighup_during_the_grace_period_is_no_reload(server: Server) -> None:
    client = smtplib.SMTP(*server.mx, timeout=10)
    client.ehlo()
    client.mail("a@example.org")
    client.rcpt("bob@example.com")
    client.putcmd("data")
    assert client.getreply()[0] == 354  # a message in flight holds the grace period
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in server.stderr.read_text(), "the shutdown")
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "not reloading" in server.stderr.read_text(), "the SIGHUP")
    client.send(MESSAGE + b".\r\n")
    assert client.getreply()[0] == 250
    client.close()
    assert server.process.wait(30) == 0
    assert "reloaded" not in server.stderr.read_text()


# -- ConfigTables itself -----------------------------------------------------------------
def test_reload_compares_with_what_runs_not_with_the_last_file(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    config = write_config(tmp_path, certificate_authority)
    tables = ConfigTables(load_settings(config))
    original = config.read_text()
    config.write_text(original.replace("max_recipients = 200", "max_recipients = 150"))
    assert tables.reload().restart_needed == ("max_recipients",)
    # Still not applied, so still reported.
    assert tables.reload().restart_needed == ("max_recipients",)
    assert tables.settings.config.max_recipients == 200
    config.write_text(original.replace('maildir_root = "maildir"', 'maildir_root = "other"'))
    assert tables.reload().restart_needed == ("maildir_root",)
    config.write_text(original)
    assert tables.reload().restart_needed == ()


async def test_a_failed_reload_keeps_the_tables(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    config = write_config(tmp_path, certificate_authority)
    tables = ConfigTables(load_settings(config))
    config.write_text("hostname = ")
    with pytest.raises(ConfigError):
        tables.reload()
    assert await tables.lookup("bob@example.com") == ("bob@example.com",)
    assert await tables.lookup("carol@example.com") == ()


def test_the_systems_name_looked_up_again_is_no_change_of_the_file(
    tmp_path: Path, certificate_authority: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, certificate_authority)
    config.write_text(config.read_text().replace('hostname = "mx.example.com"\n', ""))
    monkeypatch.setattr(socket, "getfqdn", lambda: "mx.example.com")
    tables = ConfigTables(load_settings(config))
    monkeypatch.setattr(socket, "getfqdn", lambda: "localhost")  # a resolver's hiccup
    assert tables.reload().restart_needed == ()
    config.write_text('hostname = "mail.example.com"\n' + config.read_text())
    assert tables.reload().restart_needed == ("hostname",)


def test_a_listener_the_command_line_sets_needs_no_restart_when_the_file_changes(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    config = write_config(tmp_path, certificate_authority)
    tables = ConfigTables(load_settings(config), overridden=["mx"])  # serve --mx-port N
    config.write_text(config.read_text().replace("port = 2525", "port = 2526"))
    assert tables.reload().restart_needed == ()
    config.write_text(config.read_text().replace("port = 4650", "port = 4651"))
    assert tables.reload().restart_needed == ("submission",)


def repoint(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` in one step, as certbot and ``ln -sfn`` do."""
    temporary = link.with_name(link.name + ".new")
    temporary.symlink_to(target)
    os.replace(temporary, link)


def test_a_reload_reads_the_file_the_config_symlink_points_to_now(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """A deployment swaps the file a symlinked config names: SIGHUP reads the new one."""
    config = write_config(tmp_path, certificate_authority)
    first, second = tmp_path / "config.v1.toml", tmp_path / "config.v2.toml"
    config.rename(first)
    second.write_text(first.read_text())
    add_carol(second)
    config.symlink_to(first.name)
    running = start(
        ["--config", str(config), "--mx-port", "0", "--submission-port", "0"], tmp_path / "unused"
    )
    try:
        assert not accepts_carol(running.mx[1])
        repoint(config, Path(second.name))
        reload(running, "reloaded users, recipients and certificates")
        assert accepts_carol(running.mx[1])
        assert running.stop() == 0
    finally:
        running.close()


def served_names(server: Server, context: ssl.SSLContext) -> list[str]:
    with (
        socket.create_connection(server.submission, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="mx.example.com") as tls,
    ):
        certificate = tls.getpeercert()
    assert certificate is not None
    return [value for kind, value in certificate["subjectAltName"] if kind == "DNS"]


def test_a_certificate_renewed_by_moving_its_symlinks_is_served_without_a_reload(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """certbot's layout: ``live/`` links to ``archive/``, and a renewal moves the links."""
    config = write_config(tmp_path, certificate_authority)
    archive = tmp_path / "archive"
    archive.mkdir()
    for suffix in (".pem", ".key"):
        (tmp_path / f"mx{suffix}").rename(archive / f"mx1{suffix}")
        (tmp_path / f"mx{suffix}").symlink_to(Path("archive") / f"mx1{suffix}")
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    running = start(
        ["--config", str(config), "--mx-port", "0", "--submission-port", "0"], tmp_path / "unused"
    )
    try:
        assert "renewed.example.com" not in served_names(running, context)
        write_certificate(
            certificate_authority, archive, "mx2", "mx.example.com", "renewed.example.com"
        )
        for suffix in (".pem", ".key"):
            repoint(tmp_path / f"mx{suffix}", Path("archive") / f"mx2{suffix}")
        wait_for(
            lambda: "renewed.example.com" in served_names(running, context),
            "the renewed certificate",
        )
        assert running.stop() == 0
    finally:
        running.close()
