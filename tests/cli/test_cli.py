"""The smtp-recv command outside `serve`: check, --version, --help, sockets, logs."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import smtp_recv
from smtp_recv import ListenerConfig, ServerConfig
from smtp_recv._cli import (
    JsonLogFormatter,
    TextLogFormatter,
    assign_sockets,
    build_parser,
    configure_logging,
    default_state_directory,
    main,
    systemd_sockets,
)
from smtp_recv._settings import ConfigError
from smtp_recv._trace import defanged, json_defanged

from .conftest import write_config


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtp_recv", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_on_a_good_config_shows_what_would_listen(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    result = run_cli("check", "--config", str(write_config(tmp_path, certificate_authority)))
    assert result.returncode == 0, result.stderr
    assert "MX: would listen on 127.0.0.1 port 2525" in result.stdout
    assert "Submission: would listen on 127.0.0.1 port 4650" in result.stdout
    assert "mx.example.com" in result.stdout
    assert "[default]" in result.stdout


def test_check_lists_the_domains_as_the_config_writes_them(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(
        path.read_text().replace(
            '"@example.net" = ["alice@example.com"]', '"@ex\u00e4mple.net" = ["alice@example.com"]'
        )
    )
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "recipient domains: example.com, ex\u00e4mple.net\n" in result.stdout


def test_check_on_a_broken_config_exits_2_with_a_readable_message(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace("max_recipients = 200", "max_recipients = 5"))
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("smtp-recv: error: ")
    assert str(path.resolve()) in line
    assert "limits.max_recipients" in line


def test_check_on_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("check", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_broken_config_exits_2(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[storage]\n")
    result = run_cli("serve", "--config", str(tmp_path / "config.toml"))
    assert result.returncode == 2
    assert "storage" in result.stderr
    assert "maildir_root" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_symlink_loop_in_the_config_exits_2_naming_the_key(
    tmp_path: Path, certificate_authority: trustme.CA, command: str
) -> None:
    path = write_config(tmp_path, certificate_authority)
    (tmp_path / "loop").symlink_to("back")
    (tmp_path / "back").symlink_to("loop")
    path.write_text(path.read_text().replace('"maildir"', '"loop"'))
    result = run_cli(command, "--config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path.resolve()}: storage.maildir_root: " in result.stderr


def test_an_abbreviated_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # An abbreviation would change meaning the day another option shares its prefix.
    parser = build_parser()
    assert parser.parse_args(["serve", "--pin-workers"]).pin_workers
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["serve", "--pin"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --pin" in capsys.readouterr().err


@pytest.mark.parametrize("descriptor", ["a file", "closed"])
def test_a_passed_descriptor_that_is_not_a_socket_is_named(tmp_path: Path, descriptor: str) -> None:
    # As systemd would pass it: at fd 3, LISTEN_PID the pid that exec keeps.
    wrapper = (
        "import os, sys\n"
        "if sys.argv[1] == 'a file':\n"
        "    os.dup2(os.open(os.devnull, os.O_RDONLY), 3)\n"
        "    os.set_inheritable(3, True)\n"  # if open gave 3, dup2 left it as it was
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='mx')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'smtp_recv', *sys.argv[2:]])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, descriptor, "serve", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    reason = "Socket operation on non-socket" if descriptor == "a file" else "Bad file descriptor"
    assert f"LISTEN_FDS: descriptor 3 (mx) is not a socket: {reason}" in result.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"smtp-recv {smtp_recv.__version__}"


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "smtp-recv check --config" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--mx-port", "70000"])
    assert exited.value.code == 2


def test_state_directory_follows_xdg(tmp_path: Path) -> None:
    assert default_state_directory({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "smtp-recv"
    relative = default_state_directory({"XDG_STATE_HOME": "relative/dir"})
    assert relative == Path.home() / ".local" / "state" / "smtp-recv"


def test_systemd_variables_for_another_process_are_ignored() -> None:
    assert systemd_sockets({"LISTEN_PID": "1", "LISTEN_FDS": "2"}, pid=12345) == []
    assert systemd_sockets({}, pid=12345) == []


def test_systemd_malformed_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        systemd_sockets({"LISTEN_PID": "7", "LISTEN_FDS": "two"}, pid=7)


@pytest.fixture
def listening_sockets() -> Iterator[list[socket.socket]]:
    sockets = []
    for _ in range(3):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        sockets.append(listener)
    yield sockets
    for listener in sockets:
        listener.close()


def test_named_sockets_go_to_their_listener(listening_sockets: list[socket.socket]) -> None:
    first, second, third = listening_sockets
    config = assign_sockets(
        ServerConfig(hostname="h"), [("mx", first), ("submission", second), ("mx", third)]
    )
    assert list(config.mx.sockets) == [first, third]
    assert list(config.submission.sockets) == [second]


def test_unnamed_sockets_go_by_configured_port(listening_sockets: list[socket.socket]) -> None:
    first, second, _ = listening_sockets
    config = ServerConfig(
        hostname="h",
        mx=ListenerConfig(port=first.getsockname()[1]),
        submission=ListenerConfig(port=second.getsockname()[1], enabled=False),
    )
    assigned = assign_sockets(config, [("smtp-recv.socket", second), ("", first)])
    assert list(assigned.mx.sockets) == [first]
    assert list(assigned.submission.sockets) == [second]
    assert assigned.submission.enabled


def test_a_socket_for_neither_listener_is_refused(listening_sockets: list[socket.socket]) -> None:
    with pytest.raises(ConfigError, match="neither mx nor submission"):
        assign_sockets(ServerConfig(hostname="h"), [("", listening_sockets[0])])


def test_a_passed_socket_that_is_not_listening_is_refused() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # a unit that forgot ListenStream=
        with pytest.raises(ConfigError, match="not listening"):
            assign_sockets(ServerConfig(hostname="h"), [("mx", bound)])


def _log_through(formatter: logging.Formatter, quoted: str) -> str:
    """What a hook's failure logs through ``formatter``, its message quoting ``quoted``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("smtp_recv.test_formatters")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            _lookup_that_quotes(quoted)
        except LookupError:
            logger.exception("S1 Forward hook failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def _lookup_that_quotes(text: str) -> None:
    raise LookupError(text)


# An SMTPUTF8 address may hold U+2028, which ends a line in some log
# viewers, and U+202E, which reverses what follows; the rest is what a
# hook might quote from elsewhere: a terminal escape, C1 NEL, a tag
# character (invisible, beyond U+FFFF).
FORGED = "j\u00f6rg\u2028INFO all is well\u202egro.elpmaxe@x\x1b[2J\x85\U000e0041"
# An AUTH PLAIN login may hold a line feed (RFC 4616 refuses only NUL).
FORGED_LOGIN = "bob\n2026-11-30 12:00:00,000 INFO smtp_recv.session: S1 authenticated"


def test_text_logs_escape_what_could_forge_or_hide_a_line() -> None:
    lines = _log_through(TextLogFormatter(), FORGED).splitlines()
    assert lines[0].endswith("S1 Forward hook failed")
    assert lines[-1] == (
        "    LookupError: j\u00f6rg\\u2028INFO all is well\\u202egro.elpmaxe@x\\x1b[2J\\x85"
        "\\U000e0041"
    )


def test_text_logs_indent_every_line_after_a_records_first() -> None:
    lines = _log_through(TextLogFormatter(), FORGED_LOGIN).splitlines()
    assert lines[1] == "    Traceback (most recent call last):"
    assert lines[-2:] == [
        "    LookupError: bob",
        "    2026-11-30 12:00:00,000 INFO smtp_recv.session: S1 authenticated",
    ]
    assert all(line.startswith("    ") for line in lines[1:])


def test_json_logs_escape_what_could_forge_or_hide_a_line_and_keep_the_text() -> None:
    text = _log_through(JsonLogFormatter(), FORGED)
    assert "\u2028" not in text
    assert "\u202e" not in text
    assert "\x85" not in text
    assert "\U000e0041" not in text
    (entry,) = (json.loads(line) for line in text.splitlines())
    assert entry["exception"].endswith(f"LookupError: {FORGED}")


def test_every_control_format_and_separator_character_is_escaped() -> None:
    unsafe = "".join(
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} and c not in "\n\t"
    )
    escaped = defanged(unsafe)
    assert escaped.isascii()
    assert escaped.isprintable()
    assert len(re.findall(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", escaped)) == len(unsafe)
    assert json.loads(json_defanged(json.dumps(unsafe, ensure_ascii=False))) == unsafe
    assert json_defanged(json.dumps(unsafe, ensure_ascii=False)).isascii()
    # Letters of any script, and what a traceback is made of, stay.
    kept = "jörg Ωμέγα 漢字 \\ \t\"'"
    assert defanged(kept) == kept


def test_the_built_in_server_logs_text_through_the_escaping_formatter() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", "text", io.StringIO())
        (handler,) = root.handlers
        assert isinstance(handler.formatter, TextLogFormatter)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)  # (and clears the loggers' cached levels)


def test_json_log_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("smtp_recv.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("hello %s", "wörld", extra={"session_id": "S1"})
        try:
            int("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "WARNING"
    assert first["logger"] == "smtp_recv.test_json"
    assert first["message"] == "hello wörld"
    assert first["session_id"] == "S1"
    assert first["time"].endswith("+00:00")
    assert "ValueError: invalid literal" in second["exception"]
