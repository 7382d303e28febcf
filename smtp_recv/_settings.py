"""The config file of the ``smtp-recv`` server: TOML in, :class:`ServerConfig` and hooks out.

Read with the standard library's :mod:`tomllib` and checked with ``msgspec``
structs: the structs are the typed schema in one place, unknown keys are
refused (a misspelt ``max_recipents`` must not be silently ignored), and
msgspec's errors carry the key path (``$.limits.max_recipients``), which we
turn into a :class:`ConfigError` naming the file, the key and the problem.
pydantic would do the same with a larger dependency and a slower import.

Example file::

    hostname = "mx.example.com"
    users_file = "users.toml"          # relative to this file

    [mx]
    address = "0.0.0.0"
    port = 25

    [submission]
    port = 465

    [limits]
    max_message_size = 52428800

    [timeouts]
    command_timeout = 300

    [[tls.certificates]]
    cert = "/etc/letsencrypt/live/mx.example.com/fullchain.pem"
    key = "/etc/letsencrypt/live/mx.example.com/privkey.pem"
    default = true

    [recipients]
    mailboxes = ["alice@example.com", "bob@example.com"]
    forward = { "sales@example.com" = ["alice@example.com", "bob@example.com"],
                "@example.org" = ["alice@example.com"] }   # catch-all

    [storage]
    maildir_root = "/var/lib/smtp-recv/maildir"
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import ssl
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
from cryptography import x509

from ._config import (
    HOST_NAME,
    MINIMUM,
    POSITIVE,
    ListenerConfig,
    ServerConfig,
    system_hostname,
)
from ._hooks import Certificate
from ._maildir import MaildirMailer, mailbox_directory, outbox_directory
from ._recipients import Recipients
from ._users import PasswordHashError, User, Users, check_password_hash
from .protocol import replies
from .protocol._addresses import parse_path
from .protocol._errors import _Refusal

__all__ = [
    "CertificateMap",
    "ConfigError",
    "Settings",
    "certificate_names",
    "load_settings",
    "load_users",
]


class ConfigError(Exception):
    """A config or users file is wrong; the message says where and how.

    Args:
        source: the file.
        key: the dotted key path, e.g. ``limits.max_recipients``; ``None`` for
            the file as a whole.
        problem: what is wrong, in words.
    """

    def __init__(self, source: Path, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else str(source)
        super().__init__(f"{where}: {problem}")


# -- the schema ---------------------------------------------------------------

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

#: ServerConfig fields by the table they are set in.  Names are the field
#: names, so the API reference documents the config file too.
LIMIT_FIELDS = (
    "max_message_size",
    "max_recipients",
    "spool_threshold",
    "max_non_mail_commands",
    "max_connections",
    "max_connections_per_ip",
    "soft_error_limit",
    "hard_error_limit",
    "error_delay",
    "max_auth_failures",
    "max_auth_failures_per_ip",
    "auth_failure_window",
    "auth_failure_delay",
)
TIMEOUT_FIELDS = (
    "command_timeout",
    "command_line_timeout",
    "data_block_timeout",
    "min_data_rate",
    "data_rate_grace",
    "tls_handshake_timeout",
    "session_timeout",
    "hook_timeout",
    "mailer_timeout",
    "shutdown_grace",
    "greeting_delay",
    "reverse_dns_timeout",
)
PROTOCOL_FIELDS = ("smtputf8", "chunking", "reject_bare_line_endings", "reverse_dns")

#: The largest number a seconds (or bytes per second) setting may have: a week's seconds.
_LONGEST = 7 * 24 * 3600.0


def _field_type(name: str) -> Any:
    """The msgspec type of a ServerConfig field, with its bounds."""
    kind = {field.name: field.type for field in dataclasses.fields(ServerConfig)}[name]
    if kind in ("bool", bool):
        return bool | None
    # ServerConfig's own bounds, checked here too so that an error names its key.
    if kind in ("int", int):
        return Annotated[int, msgspec.Meta(ge=MINIMUM.get(name, 0))] | None
    # Every wait has a bound: inf (which TOML allows) is none.
    if name in POSITIVE:
        return Annotated[float, msgspec.Meta(gt=0, le=_LONGEST)] | None
    return Annotated[float, msgspec.Meta(ge=0, le=_LONGEST)] | None


def _table(name: str, fields: Sequence[str]) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        name,
        [(field, _field_type(field), None) for field in fields],
        forbid_unknown_fields=True,
        kw_only=True,
    )


_Limits = _table("_Limits", LIMIT_FIELDS)
_Timeouts = _table("_Timeouts", TIMEOUT_FIELDS)
_Protocol = _table("_Protocol", PROTOCOL_FIELDS)


class _Listener(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Empty would mean every interface to some resolvers: leave the key out.
    address: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    port: Port | None = None
    enabled: bool = True


class _CertificateEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cert: str
    key: str | None = None
    default: bool = False


class _TLS(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    certificates: list[_CertificateEntry] = msgspec.field(default_factory=list)


class _Recipients(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mailboxes: list[str] = msgspec.field(default_factory=list)
    # Checked entry by entry below, so that errors name the address.
    forward: dict[str, Any] = msgspec.field(default_factory=dict)


class _Storage(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    maildir_root: Annotated[str, msgspec.Meta(min_length=1)]


class _ConfigFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    storage: _Storage
    hostname: str | None = None
    users_file: str | None = None
    mx: _Listener = msgspec.field(default_factory=_Listener)
    submission: _Listener = msgspec.field(default_factory=_Listener)
    # Built from ServerConfig's fields at import (``defstruct``), which a
    # static annotation cannot name; converted on their own in load_settings.
    limits: dict[str, Any] = msgspec.field(default_factory=dict)
    timeouts: dict[str, Any] = msgspec.field(default_factory=dict)
    protocol: dict[str, Any] = msgspec.field(default_factory=dict)
    tls: _TLS = msgspec.field(default_factory=_TLS)
    recipients: _Recipients = msgspec.field(default_factory=_Recipients)


class _UserEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    password: str
    senders: list[str] = msgspec.field(default_factory=list)


class _UsersFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    users: dict[str, Any] = msgspec.field(default_factory=dict)


# -- helpers ------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MSGSPEC_PATH = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _key(*parts: str | int) -> str:
    """Spell a key path as in TOML: ``recipients.forward."sales@example.com"``."""
    spelt = ""
    for part in parts:
        if isinstance(part, int):
            spelt += f"[{part}]"
        else:
            spelt += ("." if spelt else "") + (
                part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            )
    return spelt


def _convert(source: Path, value: object, kind: Any, *prefix: str | int) -> Any:
    """``msgspec.convert`` whose errors become a :class:`ConfigError` at the right key."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as error:
        match = _MSGSPEC_PATH.match(str(error))
        assert match is not None  # the pattern matches any text
        path = (match["path"] or "").lstrip(".")
        key = ".".join(part for part in (_key(*prefix), path) if part)
        raise ConfigError(source, key or None, match["problem"]) from None


def _read_toml(source: Path) -> dict[str, Any]:
    try:
        # Opened without waiting (a FIFO would block a plain open) and read
        # only if it is a file: /dev/zero would be read until memory ran out.
        descriptor = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise ConfigError(source, None, "not a regular file")
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(source, None, f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, None, f"not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, None, "not valid TOML: not UTF-8") from None
    except RecursionError:
        raise ConfigError(
            source, None, "not valid here: arrays or tables nested too deeply"
        ) from None


def is_login(text: str) -> bool:
    """Whether ``text`` may be a login: an address in form, not in every detail.

    Logins are AUTH names, which no address parser sees; some mail services
    hand out names that RFC 5321 would refuse (``a..b@example.jp``).
    """
    if is_address(text):  # quoted local parts included
        return True
    local, at, domain = text.rpartition("@")
    return bool(at and local and domain) and not any(c.isspace() or c in "<>" for c in text)


def is_address(text: str) -> bool:
    """Whether ``text`` is a mailbox as a client would send it (RFC 5321 4.1.2).

    Checked by the parser the listeners use: an address it would refuse
    (``alice@example.com.``, ``a@@b``) could never match a recipient.
    """
    try:
        return parse_path(f"<{text}>", replies.BAD_RECIPIENT_ADDRESS) == text
    except _Refusal:
        return False


def _resolve(source: Path, key: str | None, path: Path) -> Path:
    """``path`` made absolute, its symlinks kept; ``key`` names it in errors.

    Symlinks are followed at each use, not once here: certbot renews by
    pointing ``live/`` at new files, a deployment swaps a symlinked config
    directory, and a reload or the next handshake must see the new target.
    """
    try:
        return path.absolute()
    except OSError as error:  # the working directory is gone
        raise ConfigError(source, key, f"cannot resolve {path}: {error.strerror}") from None


def _in_config_directory(source: Path, path: str, key: str) -> Path:
    """A path from the config file: relative ones are relative to the file's directory.

    The directory the file is in once its own symlinks are followed, and
    only those: a config linked from ``/etc`` into a release directory finds
    its files beside it, while symlinked directories on the way stay as they
    are (Kubernetes swaps ``..data``, a deploy ``current``), so that what
    they point to next is seen.  Nor is ``..`` collapsed: the kernel follows
    it from where the links lead, at each use.
    """
    try:
        return _config_file(source).parent / Path(path).expanduser()
    except RuntimeError as error:  # ~someone unknown, or no home directory
        raise ConfigError(source, key, f"cannot expand {path!r}: {error}") from None


def _config_file(source: Path) -> Path:
    """``source`` past the symlinks that are the file itself (not its directories)."""
    file = source
    for _ in range(40):  # the kernel's own bound on a chain of links
        try:
            target = Path(os.readlink(file))
        except OSError:  # not a link (or gone): this is the file
            return file
        file = target if target.is_absolute() else file.parent / target
    return source


def _stat(source: Path, key: str, path: Path) -> os.stat_result | None:
    """``path``'s status, ``None`` when it does not exist.

    Not ``Path.exists()``: it returns False for a parent that is a file and
    raises for a directory we may not search (certbot's 0700 ``live/`` when
    the server runs as another user), so either way the operator would not
    learn which key is wrong.
    """
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(source, key, f"cannot access {path}: {error.strerror}") from None


def _check_maildir_root(source: Path, root: Path) -> None:
    """Refuse a Maildir root the server could not write into (or create).

    Otherwise ``check`` says OK, and then every message gets 451 and is
    retried by its sender for days before it bounces.
    """
    key = "storage.maildir_root"
    # The nearest existing directory is where the server creates the rest.
    existing = root
    status = _stat(source, key, existing)
    while status is None and existing.parent != existing:
        existing = existing.parent
        status = _stat(source, key, existing)
    if status is None or not stat.S_ISDIR(status.st_mode):
        raise ConfigError(source, key, f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write into" if existing == root else f"create {root} in"
        raise ConfigError(source, key, f"this user (uid {os.geteuid()}) cannot {what} {existing}")


def _unwritable_maildirs(directories: Sequence[Path]) -> list[str]:
    """Warnings for the Maildirs that exist but this user cannot write into.

    A run as root leaves them root's; the server, run as its own user then,
    would answer every message for them with 451 until it bounced.  Only a
    warning: one mailbox must not keep the rest from being served.
    """
    unwritable = []
    for directory in directories:
        for path in (directory, directory / "tmp", directory / "new"):
            if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
                unwritable.append(path)
                break
    if not unwritable:
        return []
    shown = ", ".join(str(path) for path in unwritable[:5])
    more = f" and {len(unwritable) - 5} more" if len(unwritable) > 5 else ""
    return [
        f"this user (uid {os.geteuid()}) cannot write into {shown}{more}:"
        " mail for them will get 451"
    ]


# -- certificates -------------------------------------------------------------


def certificate_names(certfile: Path) -> tuple[str, ...]:
    """Return the DNS names of the leaf certificate's subjectAltName, lowercase.

    Clients match the server name against the SAN only (RFC 6125 6.4.4 lets
    them ignore the common name), so the SAN is what a certificate serves.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file holds no PEM certificate.
    """
    leaf = x509.load_pem_x509_certificates(certfile.read_bytes())[0]
    try:
        extension = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(
        name.lower().rstrip(".") for name in extension.value.get_values_for_type(x509.DNSName)
    )


class CertificateMap:
    """A :class:`~smtp_recv.CertByHost` from SNI names to certificates, held in memory.

    An exact name wins over a wildcard; ``*.example.com`` matches exactly one
    label (``mx.example.com``, not ``example.com`` nor ``a.b.example.com``,
    RFC 6125 6.4.3).  Clients without SNI and unknown names get the default.

    Args:
        default: the certificate for every name not in ``names``.
        names: lowercase DNS names (``*.`` wildcards allowed) to certificates.
    """

    def __init__(
        self, default: Certificate, names: Mapping[str, Certificate] | None = None
    ) -> None:
        self.default = default
        self.names: Mapping[str, Certificate] = dict(names or {})

    def get(self, host: str | None) -> Certificate:
        """Return the certificate for the SNI name ``host`` (the default for ``None``)."""
        if not host:
            return self.default
        name = host.lower().rstrip(".")
        exact = self.names.get(name)
        if exact is not None:
            return exact
        _, dot, parent = name.partition(".")
        if dot and parent:
            wildcard = self.names.get(f"*.{parent}")
            if wildcard is not None:
                return wildcard
        return self.default


@dataclass(frozen=True, slots=True)
class LoadedCertificate:
    """A certificate from the config file, checked, with what ``check`` reports."""

    certificate: Certificate
    names: tuple[str, ...]
    default: bool
    not_valid_after: datetime.datetime


def _load_certificates(
    source: Path, entries: Sequence[_CertificateEntry], warnings: list[str]
) -> tuple[CertificateMap, tuple[LoadedCertificate, ...]]:
    if not entries:
        raise ConfigError(
            source, "tls.certificates", "at least one [[tls.certificates]] entry is needed"
        )
    defaults = [index for index, entry in enumerate(entries) if entry.default]
    if len(entries) > 1 and len(defaults) != 1:
        raise ConfigError(
            source,
            "tls.certificates",
            f"exactly one certificate must have default = true, not {len(defaults)}",
        )
    default_index = defaults[0] if defaults else 0
    loaded: list[LoadedCertificate] = []
    owner: dict[str, int] = {}
    names_map: dict[str, Certificate] = {}
    now = datetime.datetime.now(datetime.UTC)
    for index, entry in enumerate(entries):
        cert_key = _key("tls", "certificates", index, "cert")
        key_key = _key("tls", "certificates", index, "key")
        certfile = _resolve(source, cert_key, _in_config_directory(source, entry.cert, cert_key))
        keyfile = (
            _resolve(source, key_key, _in_config_directory(source, entry.key, key_key))
            if entry.key
            else None
        )
        for name, path in ((cert_key, certfile), (key_key, keyfile)):
            if path is None:
                continue
            status = _stat(source, name, path)
            # A device (/dev/zero, a FIFO) would be read forever, here and
            # by OpenSSL.
            if status is not None and not stat.S_ISREG(status.st_mode):
                raise ConfigError(source, name, f"{path} is not a regular file")
        try:
            leaf = x509.load_pem_x509_certificates(certfile.read_bytes())[0]
            names = certificate_names(certfile)
        except OSError as error:
            raise ConfigError(
                source,
                _key("tls", "certificates", index, "cert"),
                f"cannot read {certfile}: {error.strerror}",
            ) from None
        except ValueError:
            raise ConfigError(
                source,
                _key("tls", "certificates", index, "cert"),
                f"{certfile} holds no PEM certificate",
            ) from None
        try:
            # Exactly what the server will do: proves the files exist and match.
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except OSError as error:
            key_name = "key" if keyfile is not None else "cert"
            raise ConfigError(
                source,
                _key("tls", "certificates", index, key_name),
                f"cannot load the private key: {error.strerror or error}"
                + ("" if keyfile is not None else " (no key = ... given, so it must be in cert)"),
            ) from None
        certificate = Certificate(certfile, keyfile)
        if not names and index != default_index:
            raise ConfigError(
                source,
                _key("tls", "certificates", index, "cert"),
                f"{certfile} has no DNS names in its subjectAltName, so no client could ask for it",
            )
        for name in names:
            if name in owner:
                raise ConfigError(
                    source,
                    _key("tls", "certificates", index, "cert"),
                    f"{name} is also served by tls.certificates[{owner[name]}]",
                )
            owner[name] = index
            names_map[name] = certificate
        if leaf.not_valid_after_utc < now:
            warnings.append(
                f"certificate {certfile} expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
            )
        elif leaf.not_valid_before_utc > now:
            warnings.append(
                f"certificate {certfile} is not valid before {leaf.not_valid_before_utc}"
            )
        loaded.append(
            LoadedCertificate(certificate, names, index == default_index, leaf.not_valid_after_utc)
        )
    return CertificateMap(loaded[default_index].certificate, names_map), tuple(loaded)


# -- users ------------------------------------------------------------------


def load_users(source: Path) -> Users:
    """Read a users file::

        [users."alice@example.com"]
        password = "scrypt$n=16384,r=8,p=1$..."   # from `smtp-recv passwd`
        senders = ["alice@example.com", "sales@example.com"]

    Raises:
        ConfigError: the file is unreadable or an entry is wrong.
    """
    raw = _convert(source, _read_toml(source), _UsersFile)
    users: dict[str, User] = {}
    for login, value in raw.users.items():
        entry = _convert(source, value, _UserEntry, "users", login)
        if not is_login(login):
            raise ConfigError(
                source, _key("users", login), "a login must be an address, user@domain"
            )
        try:
            check_password_hash(entry.password)
        except PasswordHashError as error:
            raise ConfigError(source, _key("users", login, "password"), str(error)) from None
        for index, sender in enumerate(entry.senders):
            if not is_address(sender):
                raise ConfigError(
                    source, _key("users", login, "senders", index), f"{sender!r} is not an address"
                )
        users[login] = User(entry.password, tuple(entry.senders))
    try:
        return Users(users)
    except ValueError as error:
        raise ConfigError(source, "users", str(error)) from None


# -- the whole file -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``smtp-recv serve`` needs, read from a config file."""

    source: Path
    config: ServerConfig
    recipients: Recipients
    users: Users
    users_file: Path | None
    certificates: CertificateMap
    loaded_certificates: tuple[LoadedCertificate, ...]
    maildir_root: Path
    #: Problems that do not stop the server (an expired certificate).
    warnings: tuple[str, ...]
    #: The file names the host; otherwise it is the system's name, looked up.
    hostname_in_file: bool = True

    def mailer(self) -> MaildirMailer:
        """The Mailer storing into :attr:`maildir_root`."""
        return MaildirMailer(self.maildir_root)


def _listener(raw: _Listener, default_port: int) -> ListenerConfig:
    return ListenerConfig(
        port=default_port if raw.port is None else raw.port, host=raw.address, enabled=raw.enabled
    )


def _recipients(source: Path, raw: _Recipients) -> Recipients:
    for index, mailbox in enumerate(raw.mailboxes):
        if not is_address(mailbox):
            raise ConfigError(
                source, _key("recipients", "mailboxes", index), f"{mailbox!r} is not an address"
            )
    forwards: dict[str, list[str]] = {}
    catch_alls: dict[str, list[str]] = {}
    for address, value in raw.forward.items():
        key = ("recipients", "forward", address)
        targets = [value] if isinstance(value, str) else _convert(source, value, list[str], *key)
        if not targets:
            raise ConfigError(source, _key(*key), "no targets")
        for index, target in enumerate(targets):
            if not is_address(target):
                raise ConfigError(source, _key(*key, index), f"{target!r} is not an address")
        if address.startswith("@") and is_address(f"postmaster{address}"):
            # (A domain, or an address literal: whatever may follow "@".)
            catch_alls[address[1:]] = targets
        elif address.startswith("*@"):
            raise ConfigError(
                source, _key(*key), f"a domain catch-all is written @domain, not {address!r}"
            )
        elif is_address(address) or address.lower() == "postmaster":
            forwards[address] = targets
        else:
            raise ConfigError(
                source,
                _key(*key),
                "a key must be an address (user@domain) or a domain catch-all (@domain)",
            )
    try:
        return Recipients(mailboxes=raw.mailboxes, forwards=forwards, catch_alls=catch_alls)
    except ValueError as error:
        raise ConfigError(source, "recipients", str(error)) from None


def load_settings(source: Path) -> Settings:
    """Read and check a config file, its users file and its certificates.

    Relative paths in the file are relative to the file's directory.

    Raises:
        ConfigError: anything is wrong; the message names the file and key.
    """
    source = _resolve(source, None, source)
    raw = _convert(source, _read_toml(source), _ConfigFile)
    options: dict[str, Any] = {}
    for table, kind, names in (
        ("limits", _Limits, LIMIT_FIELDS),
        ("timeouts", _Timeouts, TIMEOUT_FIELDS),
        ("protocol", _Protocol, PROTOCOL_FIELDS),
    ):
        values = _convert(source, getattr(raw, table), kind, table)
        for name in names:
            value = getattr(values, name)
            if value is not None:
                options[name] = value
    if raw.hostname is not None:
        # A fully qualified name may end in the root's dot; it is not sent.
        hostname = raw.hostname.removesuffix(".")
        problem = f"{raw.hostname!r} is not a host name (use the xn-- form for a non-ASCII name)"
    else:
        hostname = system_hostname()
        problem = f"the system's name {hostname!r} is not a host name: set hostname in the file"
    if not HOST_NAME.fullmatch(hostname):
        raise ConfigError(source, "hostname", problem)
    options["hostname"] = hostname
    try:
        config = ServerConfig(
            mx=_listener(raw.mx, 25), submission=_listener(raw.submission, 465), **options
        )
    except ValueError as error:
        raise ConfigError(source, "limits", str(error)) from None

    if not config.mx.enabled and not config.submission.enabled:
        raise ConfigError(source, None, "[mx] and [submission] are both disabled: nothing to serve")
    if (
        config.mx.enabled
        and config.submission.enabled
        and config.mx.port == config.submission.port != 0
        and config.mx.host == config.submission.host
    ):
        raise ConfigError(source, "submission.port", "the same port as [mx]")
    # Unlike the files, which are read again (a renewal, a reload), the
    # Maildir root takes a restart: its symlinks are followed once, here, so
    # that a deploy swapping a release directory moves no mail under a
    # running server, and a reload sees any such move as a change.
    key = "storage.maildir_root"
    maildir_root = Path(
        os.path.realpath(_in_config_directory(source, raw.storage.maildir_root, key))
    )
    _check_maildir_root(source, maildir_root)

    warnings: list[str] = []
    certificates, loaded = _load_certificates(source, raw.tls.certificates, warnings)

    users_file: Path | None = None
    if raw.users_file is not None:
        users_file = _resolve(
            source, "users_file", _in_config_directory(source, raw.users_file, "users_file")
        )
        status = _stat(source, "users_file", users_file)
        if status is None:
            raise ConfigError(source, "users_file", f"{users_file} does not exist")
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(source, "users_file", f"{users_file} is not a regular file")
        users = load_users(users_file)
    elif config.submission.enabled:
        raise ConfigError(
            source,
            "users_file",
            "required while [submission] is enabled (set enabled = false to run MX only)",
        )
    else:
        users = Users({})
    if len(users.costs) > 1:
        warnings.append(
            "the users' password hashes have different scrypt costs, so the time a failed"
            " AUTH takes tells some users apart from unknown logins: rehash them with"
            " `smtp-recv passwd`"
        )
    if config.submission.enabled and not users.logins:
        warnings.append("the users file has no users: nobody can log in on submission")

    recipients = _recipients(source, raw.recipients)
    if config.mx.enabled and not recipients.domains:
        warnings.append("[recipients] is empty: the MX listener refuses every recipient")
    warnings += _unwritable_maildirs(
        [mailbox_directory(maildir_root, mailbox) for mailbox in raw.recipients.mailboxes]
        + [outbox_directory(maildir_root, login) for login in users.logins]
    )
    return Settings(
        source=source,
        config=config,
        recipients=recipients,
        users=users,
        users_file=users_file,
        certificates=certificates,
        loaded_certificates=loaded,
        maildir_root=maildir_root,
        warnings=tuple(warnings),
        hostname_in_file=raw.hostname is not None,
    )
