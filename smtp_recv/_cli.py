"""The ``smtp-recv`` command: run the built-in server, hash passwords, check a config.

Without ``--config``, ``smtp-recv serve`` is a development server that is
safe to start anywhere: it listens on 127.0.0.1 only, on unprivileged ports,
accepts mail for any recipient into Maildirs under its state directory, and
has one user, ``dev@localhost``, with a fresh random password printed at
start.  With ``--config`` it is the production server described by the file
(see :mod:`smtp_recv._settings`).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import trio

from ._config import ListenerConfig, ListenError, ServerConfig
from ._devcerts import dev_certificate
from ._hangup import (
    RELOAD_SIGNAL,
    hold_reload_signal,
    release_reload_signal,
    take_reload_request,
)
from ._hooks import Auth, CertByHost, Forward, Mailer, SenderPolicy
from ._maildir import MaildirMailer
from ._notify import Notifier
from ._recipients import AcceptEveryRecipient
from ._reload import ConfigTables, Reloaded
from ._settings import CertificateMap, ConfigError, Settings, is_login, load_settings
from ._trace import defanged, json_defanged
from ._users import User, Users, hash_password
from ._workers import STOP_SIGNALS

if TYPE_CHECKING:
    from ._server import Listening

__all__ = ["main"]

log = logging.getLogger("smtp_recv.cli")

PROGRAM = "smtp-recv"
#: Development ports: unprivileged stand-ins for 25 and 465.
DEV_MX_PORT = 2525
DEV_SUBMISSION_PORT = 4650
DEV_HOST = "127.0.0.1"
DEV_LOGIN = "dev@localhost"
#: Exit status for a bad command line or config (as argparse uses).
EXIT_USAGE = 2
EXIT_FAILURE = 1
#: sd_listen_fds(3): passed sockets start at file descriptor 3.
SYSTEMD_FIRST_FD = 3

EXAMPLES = """\
examples:
  smtp-recv serve
      development server on 127.0.0.1:2525 (MX) and 127.0.0.1:4650 (submission)
  smtp-recv serve --mx-port 0 --submission-port 0
      the same on free ports (printed at start)
  smtp-recv serve --config /etc/smtp-recv/config.toml --log-format json
      production server
  smtp-recv serve --config /etc/smtp-recv/config.toml --workers 2
      the same with two server processes sharing the sockets (one per core)
  smtp-recv check --config /etc/smtp-recv/config.toml
      validate a config and its certificates, show what would listen where
  smtp-recv passwd alice@example.com >> /etc/smtp-recv/users.toml
      hash a new password (asked twice, never on the command line)
"""


# -- logging -------------------------------------------------------------------

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log collectors (journald, Loki, ELK).

    Keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, any
    ``extra=`` fields, and ``exception`` with the traceback text.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_defanged(json.dumps(entry, ensure_ascii=False, default=repr))


class TextLogFormatter(logging.Formatter):
    """Time, level, logger and message; a traceback on the indented lines after.

    Characters that could forge or hide a line are escaped (``\\u2028``) and
    every line after a record's first is indented, in a hook's exception
    message too (see ``defanged``).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return defanged(super().format(record))


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to stderr, as text or JSON."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(TextLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- systemd socket activation -----------------------------------------------------


def systemd_sockets(environ: Mapping[str, str], pid: int) -> list[tuple[str, socket.socket]]:
    """Return the listening sockets systemd passed us, with their names.

    Follows sd_listen_fds(3): only when ``LISTEN_PID`` is our pid (the
    variables may have been inherited from a parent), ``LISTEN_FDS`` sockets
    from fd 3, named by ``LISTEN_FDNAMES`` (``FileDescriptorName=``).

    Args:
        environ: the environment, usually ``os.environ``.
        pid: our process id.

    Returns:
        ``(name, socket)`` pairs; the name is ``""`` when systemd gave none.

    Raises:
        ConfigError: the variables are malformed.
    """
    if environ.get("LISTEN_PID") != str(pid):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        raise ConfigError(Path("LISTEN_FDS"), None, "not a number") from None
    names = environ.get("LISTEN_FDNAMES", "").split(":") if environ.get("LISTEN_FDNAMES") else []
    passed: list[tuple[str, socket.socket]] = []
    for index in range(count):
        descriptor = SYSTEMD_FIRST_FD + index
        name = names[index] if index < len(names) else ""
        try:
            os.set_inheritable(descriptor, False)  # not for programs we may run
            passed.append((name, socket.socket(fileno=descriptor)))
        except OSError as error:  # closed, or a file rather than a socket
            raise ConfigError(
                Path("LISTEN_FDS"),
                None,
                f"descriptor {descriptor} ({name or 'unnamed'}) is not a socket: {error.strerror}",
            ) from None
    return passed


def assign_sockets(
    config: ServerConfig, passed: Sequence[tuple[str, socket.socket]]
) -> ServerConfig:
    """Give each passed socket to the listener it belongs to.

    A socket named ``mx`` or ``submission`` goes to that listener; an unnamed
    one (a single ``.socket`` unit with both ports) goes to the listener whose
    configured port it is bound to.

    Raises:
        ConfigError: a socket belongs to neither listener, or is not a
            listening TCP socket.
    """
    if not passed:
        return config
    by_role: dict[str, list[socket.socket]] = {"mx": [], "submission": []}
    for name, passed_socket in passed:
        role = name if name in by_role else None
        if role is None:
            port = passed_socket.getsockname()[1]
            role = next(
                (
                    candidate
                    for candidate, listener in (
                        ("mx", config.mx),
                        ("submission", config.submission),
                    )
                    if listener.port == port
                ),
                None,
            )
        if role is None:
            raise ConfigError(
                Path("LISTEN_FDNAMES"),
                None,
                f"socket {name or '(unnamed)'} on {passed_socket.getsockname()} is neither mx nor"
                " submission: name it with FileDescriptorName= or use the configured ports",
            )
        by_role[role].append(passed_socket)
    try:
        return replace(
            config,
            mx=replace(config.mx, sockets=by_role["mx"], enabled=True)
            if by_role["mx"]
            else config.mx,
            submission=replace(config.submission, sockets=by_role["submission"], enabled=True)
            if by_role["submission"]
            else config.submission,
        )
    except ValueError as error:  # a socket the server cannot accept from
        raise ConfigError(Path("LISTEN_FDS"), None, str(error)) from None


# -- what to serve --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPlan:
    """The hooks and config of one ``serve`` run, and what to tell the operator."""

    forward: Forward
    auth: Auth
    mailer: Mailer
    certs: CertByHost
    sender_policy: SenderPolicy
    config: ServerConfig
    #: Printed once the listeners are bound.
    notes: list[str] = field(default_factory=list)
    #: Reads the config file again (SIGHUP); blocking.  ``None``: SIGHUP
    #: stops the server instead (the development server, which has no
    #: file, and runs in a terminal whose hang-up should end it).
    reload: Callable[[], Reloaded] | None = None
    #: Tells systemd (``Type=notify``) when we are ready, reloading, stopping.
    notifier: Notifier = field(default_factory=Notifier)


class AnySender:
    """The development server's :class:`~smtp_recv.SenderPolicy`: any sender goes.

    Applications under test send as ``noreply@their-domain``; refusing that
    on a local test server would only get in the way.
    """

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return True


def default_state_directory(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/smtp-recv``, or ``~/.local/state/smtp-recv`` (XDG base dirs)."""
    state_home = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore a relative path.
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return base / PROGRAM


def _port(value: int | None, default: int) -> int:
    return default if value is None else value


def development_plan(args: argparse.Namespace) -> ServerPlan:
    """The safe local server: 127.0.0.1 only, any recipient, one generated user."""
    state = Path(args.state_dir) if args.state_dir else default_state_directory(os.environ)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    certificate = dev_certificate(state)
    password = secrets.token_urlsafe(12)
    password_hash = hash_password(password)
    _write_private(
        state / "dev-users.toml",
        f"# Made by `smtp-recv serve` at each start; the password was printed once.\n"
        f"[users.{json.dumps(DEV_LOGIN)}]\npassword = {json.dumps(password_hash)}\n",
    )
    maildir_root = state / "maildir"
    config = ServerConfig(
        hostname="localhost",
        mx=ListenerConfig(host=DEV_HOST, port=_port(args.mx_port, DEV_MX_PORT)),
        submission=ListenerConfig(
            host=DEV_HOST, port=_port(args.submission_port, DEV_SUBMISSION_PORT)
        ),
    )
    return ServerPlan(
        forward=AcceptEveryRecipient(),
        auth=Users({DEV_LOGIN: User(password_hash)}),
        mailer=MaildirMailer(maildir_root),
        certs=CertificateMap(certificate),
        sender_policy=AnySender(),
        config=config,
        notes=[
            f"Login: {DEV_LOGIN}  password: {password}  (new at each start, shown only now)",
            f"TLS certificate: {certificate.certfile} (self-signed for localhost;"
            " trust this file in your client)",
            f"Mail is stored in Maildirs under {maildir_root}:"
            " MX mail in <domain>/<local part>/new/, submitted mail in .outbox/<login>/new/",
            "Every recipient is accepted on MX; any sender on submission.",
        ],
    )


def production_plan(args: argparse.Namespace) -> ServerPlan:
    """The server the config file describes, ports optionally overridden."""
    settings = load_settings(Path(args.config))
    for warning in settings.warnings:
        log.warning("%s", warning)
    config = settings.config
    if args.mx_port is not None:
        config = replace(config, mx=replace(config.mx, port=args.mx_port))
    if args.submission_port is not None:
        config = replace(config, submission=replace(config.submission, port=args.submission_port))
    overridden = [
        name
        for name, port in (("mx", args.mx_port), ("submission", args.submission_port))
        if port is not None
    ]
    tables = ConfigTables(settings, overridden=overridden)
    return ServerPlan(
        forward=tables,
        auth=tables,
        mailer=settings.mailer(),
        certs=tables,
        sender_policy=tables,
        config=config,
        notes=[f"Mail is stored in Maildirs under {settings.maildir_root}"],
        reload=tables.reload,
    )


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def announce(listening: Listening, plan: ServerPlan, out: TextIO) -> None:
    """Print where the server listens, then the plan's notes.

    In one write: workers share the supervisor's output, and with
    PYTHONUNBUFFERED each print is a write of its own, so two workers'
    lines could otherwise interleave mid-line.
    """
    lines: list[str] = []
    for title, kind, addresses in (
        ("MX", "SMTP with STARTTLS", listening.mx),
        ("Submission", "implicit TLS, AUTH PLAIN/LOGIN", listening.submission),
    ):
        for host, port in addresses:
            lines.append(f"{title} listening on {_format_address(host, port)} ({kind})")
        if not addresses:
            lines.append(f"{title} disabled")
    lines.extend(plan.notes)
    if plan.reload is None:
        lines.append("Ready; Ctrl-C, SIGTERM or SIGHUP stops gracefully, a second one at once.")
    else:
        lines.append(
            "Ready; Ctrl-C or SIGTERM stops gracefully, a second one at once;"
            " SIGHUP reloads users, recipients and certificates."
        )
    out.write("".join(f"{line}\n" for line in lines))
    out.flush()


# -- running -------------------------------------------------------------------------


def log_reload(reloaded: Reloaded) -> None:
    """Tell the operator what a reload did, and what it left for a restart."""
    for warning in reloaded.warnings:
        log.warning("%s", warning)
    log.info("reloaded users, recipients and certificates")
    if reloaded.restart_needed:
        log.warning(
            "these settings changed and take a restart (they are left as they run): %s",
            ", ".join(reloaded.restart_needed),
        )


async def _reload(plan: ServerPlan, lock: trio.Lock) -> None:
    assert plan.reload is not None
    async with lock:  # one at a time, in the order asked
        plan.notifier.reloading()
        try:
            reloaded: Reloaded | ConfigError = await trio.to_thread.run_sync(plan.reload)
        except ConfigError as error:
            reloaded = error  # said below, without a traceback: it names file and key
        except Exception:
            # A reload must never take the server down with it.
            log.exception("reload failed; serving what was loaded before")
            return
        finally:
            plan.notifier.ready()
    if isinstance(reloaded, ConfigError):
        log.error("reload failed; serving what was loaded before: %s", reloaded)
    else:
        log_reload(reloaded)


async def _on_signals(
    signals: AsyncIterator[int],
    serve_scope: trio.CancelScope,
    plan: ServerPlan,
    nursery: trio.Nursery,
    reloading: trio.Lock,
) -> None:
    """SIGHUP: reload (with a config file).  First stop signal: graceful
    shutdown; second: exit at once."""
    async for number in signals:
        name = signal.Signals(number).name
        if number == RELOAD_SIGNAL and plan.reload is not None:
            if serve_scope.cancel_called:
                log.info("%s: not reloading, the server is stopping", name)
            elif reloading.statistics().tasks_waiting:
                log.info("%s: a reload is already waiting to run", name)
            else:
                log.info("%s: reloading", name)
                nursery.start_soon(_reload, plan, reloading)
            continue
        grace = plan.config.shutdown_grace
        if not serve_scope.cancel_called:
            log.info(
                "%s: shutting down; messages in progress have %.0f s to finish"
                " (send it again to stop at once)",
                name,
                grace,
            )
            plan.notifier.stopping()
            serve_scope.cancel()
        else:
            log.warning("%s again: stopping at once", name)
            sys.stdout.flush()
            sys.stderr.flush()
            # Nothing acknowledged is lost: a message gets 250 only once it is
            # on disk, and a client without 250 retries.
            os._exit(128 + number)


async def run_server(plan: ServerPlan, out: TextIO) -> None:
    """Serve ``plan`` until SIGINT or SIGTERM, then shut down gracefully.

    SIGHUP reloads the config file's tables, or without a file (the
    development server) stops the server like the others: a hang-up must
    not end it without its grace period.
    """
    # With a config file, a SIGHUP before the receiver is open, or after it
    # closes, is held (hold_reload_signal, from serve_command or the fork).
    with trio.open_signal_receiver(*STOP_SIGNALS, RELOAD_SIGNAL) as signals:
        await _serve_until_signalled(plan, out, signals)
    log.info("stopped")


async def _serve_until_signalled(
    plan: ServerPlan, out: TextIO, signals: AsyncIterator[int]
) -> None:
    from ._server import serve  # imported here so `check` and `passwd` never need it

    serve_scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:

        async def serve_until_cancelled(
            *, task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED
        ) -> None:
            with serve_scope:
                await serve(
                    plan.forward,
                    plan.auth,
                    plan.mailer,
                    plan.certs,
                    config=plan.config,
                    sender_policy=plan.sender_policy,
                    task_status=task_status,
                )
            nursery.cancel_scope.cancel()  # stop watching for signals

        listening: Listening = await nursery.start(serve_until_cancelled)
        announce(listening, plan, out)
        plan.notifier.ready()
        reloading = trio.Lock()
        if plan.reload is not None and take_reload_request():
            log.info("SIGHUP while starting: reloading")
            nursery.start_soon(_reload, plan, reloading)
        # A signal during start-up waits in the receiver until now.
        nursery.start_soon(_on_signals, signals, serve_scope, plan, nursery, reloading)


# -- commands ----------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)


def _leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, which trio nurseries make."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def serve_command(args: argparse.Namespace) -> int:
    """``smtp-recv serve``."""
    if args.config:
        # SIGHUP reloads, once the server can (run_server, the supervisor);
        # one that comes before is noted, instead of killing the server as
        # it starts (a `systemctl reload` just after a start).
        hold_reload_signal()
    else:
        # The development server stops on SIGHUP (`--config ""` is none).
        release_reload_signal()
    configure_logging(args.log_level, args.log_format)
    try:
        plan = production_plan(args) if args.config else development_plan(args)
        plan = replace(
            plan,
            config=assign_sockets(plan.config, systemd_sockets(os.environ, os.getpid())),
            notifier=Notifier.from_environment(os.environ),
        )
    except ConfigError as error:
        _error(str(error))
        return EXIT_USAGE
    except OSError as error:  # the development server's state directory
        _error(f"{error.filename}: {error.strerror}" if error.filename else str(error))
        return EXIT_FAILURE
    for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(variable, None)  # sd_listen_fds(unset_environment=1)
    if args.workers > 1:
        return _supervise_workers(args, plan)
    if args.pin_workers:
        _error("--pin-workers needs --workers N (N > 1)")
        return EXIT_USAGE

    failure: str | None = None
    try:
        trio.run(run_server, plan, sys.stdout)
    except* ListenError as group:
        # Binding failed (port in use, no permission for a port below 1024,
        # an address that does not resolve).  Any other error is a bug, and
        # goes out with its traceback.
        failure = "; ".join(str(error) for error in _leaves(group))
    if failure is not None:
        _error(f"cannot listen: {failure}")
        return EXIT_FAILURE
    return 0


def _supervise_workers(args: argparse.Namespace, plan: ServerPlan) -> int:
    """``serve --workers N``: bind once, run N worker processes on the sockets."""
    from ._workers import Supervisor, bind_listeners

    if not args.config:
        # The development server is one developer's: its banner and
        # password would come once per worker.
        _error("--workers needs --config")
        return EXIT_USAGE
    try:
        sockets = bind_listeners(plan.config)
    except OSError as error:  # a ListenError names the listener
        _error(f"cannot listen: {error}")
        return EXIT_FAILURE
    for name, sock in sockets:
        host, port = sock.getsockname()[:2]
        print(f"{name} socket bound on {_format_address(host, port)}", file=sys.stdout)
    sys.stdout.flush()
    supervisor = Supervisor(
        partial(run_worker, plan),
        sockets,
        pin=args.pin_workers,
        reload=partial(_reload_for_new_workers, plan),
        notifier=plan.notifier,
    )
    return supervisor.run(args.workers)


def _reload_for_new_workers(plan: ServerPlan) -> bool:
    """SIGHUP in the supervisor: the tables the workers it forks from now on get.

    The running workers reload their own copy once it has worked here; they
    say what they did, so nothing more is logged here on success.
    """
    assert plan.reload is not None
    try:
        plan.reload()
    except ConfigError as error:
        failure = error
    else:
        return True
    log.error("reload failed; the workers go on with what they have: %s", failure)
    return False


def run_worker(plan: ServerPlan, sockets: Sequence[tuple[str, socket.socket]]) -> int:
    """One worker of ``--workers N``, in its forked process: ``plan`` on ``sockets``.

    The supervisor alone speaks to systemd for the service.
    """
    config = assign_sockets(plan.config, sockets)
    trio.run(run_server, replace(plan, config=config, notifier=Notifier()), sys.stdout)
    return 0


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= count <= 256:
        raise argparse.ArgumentTypeError(f"{count} is not between 1 and 256")
    return count


def passwd_command(args: argparse.Namespace) -> int:
    """``smtp-recv passwd``: hash a password typed twice at a prompt."""
    if args.login and not is_login(args.login):
        # Before the prompt: the block printed would fail ``check`` anyway.
        _error(f"{args.login!r} is not a login: it must be an address, user@domain")
        return EXIT_USAGE
    try:
        password = getpass.getpass("New password: ")
        repeated = getpass.getpass("Repeat it: ")
    except EOFError:
        _error("no password given")
        return EXIT_FAILURE
    if password != repeated:
        _error("the passwords differ")
        return EXIT_FAILURE
    if not password:
        _error("the password is empty")
        return EXIT_FAILURE
    if args.login:
        print(f"[users.{json.dumps(args.login)}]")
    print(f"password = {json.dumps(hash_password(password))}")
    return 0


def _describe_listener(title: str, listener: ListenerConfig, kind: str) -> str:
    if not listener.enabled:
        return f"{title}: disabled"
    host = listener.host or "every address"
    return f"{title}: would listen on {host} port {listener.port} ({kind})"


def describe_settings(settings: Settings) -> list[str]:
    """What ``check`` reports about a valid config."""
    config = settings.config
    lines = [
        f"{settings.source}: OK",
        f"hostname: {config.hostname}",
        _describe_listener("MX", config.mx, "SMTP with STARTTLS"),
        _describe_listener("Submission", config.submission, "implicit TLS, AUTH"),
    ]
    for loaded in settings.loaded_certificates:
        names = ", ".join(loaded.names) or "(no DNS names)"
        default = " [default]" if loaded.default else ""
        lines.append(
            f"certificate {loaded.certificate.certfile}{default}: {names};"
            f" valid until {loaded.not_valid_after:%Y-%m-%d}"
        )
    domains = ", ".join(settings.recipients.listed_domains) or "none"
    lines.append(f"recipient domains: {domains}")
    if settings.users_file is not None:
        lines.append(f"users: {len(settings.users.logins)} from {settings.users_file}")
    lines.append(f"maildir root: {settings.maildir_root}")
    lines.extend(f"warning: {warning}" for warning in settings.warnings)
    return lines


def check_command(args: argparse.Namespace) -> int:
    """``smtp-recv check``: validate a config; exit 2 on any error."""
    try:
        settings = load_settings(Path(args.config))
    except ConfigError as error:
        _error(str(error))
        return EXIT_USAGE
    for line in describe_settings(settings):
        print(line)
    return 0


# -- the parser --------------------------------------------------------------------


def _port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not between 0 and 65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    """The ``smtp-recv`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="An SMTP receiving server: MX with STARTTLS, submission with implicit TLS.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Options are spelt out: an abbreviation in a unit file or script
        # (--pin for --pin-workers) would break, or change meaning, the day
        # another option shares its prefix.
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the server (a local development server without --config)",
        description="Run the server.  Without --config: a development server on 127.0.0.1"
        f" (MX port {DEV_MX_PORT}, submission port {DEV_SUBMISSION_PORT}) that accepts every"
        " recipient into Maildirs under the state directory.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    serve.add_argument("--config", metavar="FILE", help="the TOML config file (production)")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe messages logged (default: info)",
    )
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default: text)",
    )
    serve.add_argument("--mx-port", type=_port_number, metavar="PORT", help="0 picks a free port")
    serve.add_argument(
        "--submission-port", type=_port_number, metavar="PORT", help="0 picks a free port"
    )
    serve.add_argument(
        "--state-dir",
        metavar="DIR",
        help="development server's certificate, users and mail"
        " (default: $XDG_STATE_HOME/smtp-recv or ~/.local/state/smtp-recv)",
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        metavar="N",
        help="run N server processes sharing the listening sockets, one per core"
        " (needs --config; default 1)",
    )
    serve.add_argument(
        "--pin-workers",
        action="store_true",
        help="bind worker i to the i-th CPU this process may use (with --workers N)",
    )
    serve.set_defaults(handler=serve_command)

    passwd = commands.add_parser(
        "passwd",
        help="hash a password for the users file",
        description="Ask for a password twice and print its scrypt hash as a users-file line.",
        allow_abbrev=False,
    )
    passwd.add_argument("login", nargs="?", help='also print the [users."LOGIN"] table header')
    passwd.set_defaults(handler=passwd_command)

    check = commands.add_parser(
        "check",
        help="validate a config file and its certificates",
        description="Validate a config file, its users file and certificates, and show what"
        " would listen where.  Exit status 2 on any error.",
        allow_abbrev=False,
    )
    check.add_argument("--config", metavar="FILE", required=True, help="the TOML config file")
    check.set_defaults(handler=check_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smtp-recv`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
