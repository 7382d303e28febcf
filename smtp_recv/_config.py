"""Settings of a server: listeners, limits and timeouts, each with a safe default."""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from .protocol import limits

MiB = 1 << 20

# RFC 5321 4.1.2: a Domain (letters, digits and hyphens in dot-separated
# labels, up to 253 characters; underscores too, which some systems' names
# have) or an address literal.  Anything else would garble the greeting and
# every Received: header.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOST_NAME = re.compile(
    rf"(?=.{{1,253}}\Z)(?:{_LABEL}(?:\.{_LABEL})*|\[[A-Za-z0-9.:-]+\])", re.ASCII
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    """Where one listener accepts connections.

    Args:
        port: the TCP port; 0 picks a free one (tests).  Unused with
            ``sockets``.
        host: the address to bind; ``None`` binds every interface.
        enabled: ``False`` switches the listener off.
        sockets: already-bound listening sockets to use instead of binding
            (systemd socket activation passes them as ``LISTEN_FDS``; that is
            how ports 25 and 465 are served without running as root).
            ``serve`` takes them over: it makes them non-blocking and closes
            them when it stops, so that new clients are refused at once.
    """

    port: int
    host: str | None = None
    enabled: bool = True
    sockets: Sequence[socket.socket] = ()

    def __post_init__(self) -> None:
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {port!r}")
        if not 0 <= port <= 65535:
            # The system would take it modulo 65536: 70000 would be 4464.
            raise ValueError(f"port must be 0 to 65535, not {port}")
        if self.host == "":
            # Some resolvers read it as every interface: say None for that.
            raise ValueError("host must be an address, or None for every interface")
        for sock in self.sockets:
            # The server accepts from these itself: anything else would fail
            # on every accept (or spin on it) after serve had started.
            name = f"socket {sock.fileno()} on {sock.getsockname()!r}"
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                raise ValueError(f"{name} is not an IPv4 or IPv6 socket")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"{name} is not a stream (TCP) socket")
            try:
                listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            except OSError:  # not every system can tell (macOS)
                listening = 1
            if not listening:
                raise ValueError(f"{name} is not listening")


class ListenError(OSError):
    """A listener could not be bound: the message names it and its address.

    An ``OSError`` (``errno`` is the system's), so code that caught the bare
    one from binding still catches it.
    """

    @classmethod
    def of(cls, name: str, listener: ListenerConfig, error: OSError) -> ListenError:
        host = listener.host or "every address"
        failure = cls(f"{name} on {host} port {listener.port}: {error.strerror or error}")
        failure.errno = error.errno
        return failure


#: Lower bounds of ServerConfig's whole numbers, past "not negative" (which
#: every number must be); the TOML loader checks the same.
MINIMUM: dict[str, int] = {
    "max_recipients": limits.MIN_RECIPIENTS,
    "max_message_size": 1,
    "max_connections": 1,
    "max_connections_per_ip": 1,
    "max_non_mail_commands": 1,
    "hard_error_limit": 1,
    "max_auth_failures": 1,
    "max_auth_failures_per_ip": 1,
}
#: Settings that must be above 0: a timeout of 0 would end every wait before
#: it began, and the body-rate deadline divides by min_data_rate.  Delays and
#: graces may be 0 (none), and so may reverse_dns_timeout (no lookup waited
#: for) and auth_failure_window (failures forgotten at once).
POSITIVE = frozenset(
    {
        "command_timeout",
        "command_line_timeout",
        "data_block_timeout",
        "tls_handshake_timeout",
        "session_timeout",
        "hook_timeout",
        "mailer_timeout",
        "min_data_rate",
    }
)


def system_hostname() -> str:
    """The machine's fully qualified name, looked up when a config is made.

    Without the root's trailing dot (``mybox.example.com.``), which no
    greeting or ``Received:`` header carries.
    """
    return socket.getfqdn().removesuffix(".")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Everything :func:`smtp_recv.serve` needs besides the hooks.

    Every limit is per ``serve`` (the workers of ``smtp-recv serve
    --workers N`` share their connection and AUTH-failure counts); the
    defaults follow the RFCs and Postfix's long-tested values, which are
    cited beside each field.
    """

    #: Our name in the greeting, EHLO reply and ``Received:`` headers.
    hostname: str = field(default_factory=system_hostname)
    #: The public inbound listener (RFC 5321 port 25).
    mx: ListenerConfig = field(default_factory=lambda: ListenerConfig(port=25))
    #: The implicit-TLS submission listener (RFC 8314 port 465).
    submission: ListenerConfig = field(default_factory=lambda: ListenerConfig(port=465))

    # -- message limits ---------------------------------------------------
    #: Largest message accepted, advertised as ``SIZE`` (RFC 1870).
    max_message_size: int = 32 * MiB
    #: Recipients per message; RFC 5321 4.5.3.1.8 requires at least 100.
    max_recipients: int = 1000
    #: Messages larger than this are spooled to a temporary file, not memory.
    spool_threshold: int = 1 * MiB
    #: Refuse (``550 5.5.2``) messages with a bare CR or LF, or a NUL, as
    #: the SMTP smuggling advisories recommend: with DATA, and with BDAT
    #: unless ``BODY=BINARYMIME``.  ``False`` passes them through unchanged
    #: (they still never end a message).
    reject_bare_line_endings: bool = True
    #: NOOP, VRFY, HELP, RSET, HELO and EHLO allowed between accepted MAILs;
    #: past it ``421 4.7.0`` (Postfix's ``smtpd_junk_command_limit``).
    max_non_mail_commands: int = limits.NON_MAIL_COMMANDS

    # -- connection limits ------------------------------------------------
    #: Concurrent connections over both listeners (``421 4.3.2`` beyond).
    max_connections: int = 1000
    #: Concurrent connections from one IP address (Postfix's
    #: ``smtpd_client_connection_count_limit`` is 50; ``421 4.7.0`` beyond).
    max_connections_per_ip: int = 20
    #: Errors after which each further error is delayed (Postfix's soft limit
    #: is 10; we start sooner, as real clients rarely make even three).
    soft_error_limit: int = 3
    #: Errors after which the session ends with ``421`` (Postfix hard limit 20).
    hard_error_limit: int = 20
    #: Seconds of delay per error past the soft limit; grows with each error.
    error_delay: float = 1.0
    #: Failed AUTH attempts per connection before ``421``.
    max_auth_failures: int = 3
    #: Failed AUTH attempts from one IP within ``auth_failure_window`` after
    #: which further attempts get ``421 4.7.0`` without being checked.
    max_auth_failures_per_ip: int = 10
    #: Seconds a failed AUTH attempt counts against its IP.
    auth_failure_window: float = 600.0
    #: Seconds of delay before answering a failed AUTH, doubled per failure.
    auth_failure_delay: float = 1.0

    # -- timeouts (RFC 5321 4.5.3.2), in seconds --------------------------
    #: Waiting for the next command (RFC 5321 4.5.3.2.7: at least 5 minutes).
    command_timeout: float = 300.0
    #: Once a command line has begun, time for the rest of it to arrive;
    #: stops a client dribbling one byte at a time (slowloris).
    command_line_timeout: float = 60.0
    #: Waiting for the next piece of DATA (RFC 5321 4.5.3.2.5: 3 minutes).
    data_block_timeout: float = 180.0
    #: Minimum average rate of DATA and BDAT in bytes per second, measured
    #: after ``data_rate_grace`` seconds over the whole message (all its BDAT
    #: chunks and the waits between them).
    min_data_rate: float = 1024.0
    #: Seconds of DATA before the minimum rate applies.
    data_rate_grace: float = 30.0
    #: The TLS handshake (STARTTLS or implicit TLS).
    tls_handshake_timeout: float = 30.0
    #: A whole session, however active.
    session_timeout: float = 3600.0
    #: A hook call (Forward, Auth, SenderPolicy); the Mailer has ``mailer_timeout``.
    hook_timeout: float = 60.0
    #: A Mailer call (RFC 5321 4.5.3.2.6 gives the client 10 minutes for the
    #: reply after DATA; we answer well before that).
    mailer_timeout: float = 300.0
    #: After ``serve`` is cancelled, how long a message in flight may take to
    #: finish (its Mailer call included) before the session gets ``421``.
    shutdown_grace: float = 30.0

    #: Seconds to wait before the greeting on the MX listener; a client that
    #: talks in that time is refused (``554 5.5.0``), as Postfix's postscreen
    #: does.  With 0, only bytes that are already there are caught.
    greeting_delay: float = 0.0
    #: Look up the client's name by reverse DNS for the ``Received:`` header.
    reverse_dns: bool = True
    #: Seconds a reverse DNS lookup may take before the header goes without.
    reverse_dns_timeout: float = 2.0

    # -- protocol options ---------------------------------------------------
    #: Offer SMTPUTF8 (RFC 6531).
    smtputf8: bool = True
    #: Offer CHUNKING / BDAT (RFC 3030).
    chunking: bool = True
    #: Offer DSN (RFC 3461): the client's RET, ENVID, NOTIFY and ORCPT reach
    #: the Mailer in ``Mail.parameters`` and each ``Recipient``.  Turn it on
    #: only when the Mailer honours them: offering DSN promises the delivery
    #: notifications they ask for, or that they are relayed to a next hop
    #: that offers DSN.  Off, they get ``555 5.5.4``, as any parameter of an
    #: extension not offered (RFC 5321 4.1.1.11).
    dsn: bool = False

    def __post_init__(self) -> None:
        name = self.hostname
        if isinstance(name, str) and name.endswith("."):
            # A fully qualified name may end in the root's dot; it is not sent.
            name = name[:-1]
            object.__setattr__(self, "hostname", name)
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name):
            # It goes into the greeting and every Received: header, which are
            # ASCII (RFC 5321 4.1.2); an internationalised name goes in its
            # IDNA A-label form (RFC 5890), e.g. "mx.xn--exmple-cua.com".
            raise ValueError(
                f"hostname must be an ASCII domain name or address literal, not {name!r}"
            )
        for field_ in fields(self):
            name, value = field_.name, getattr(self, field_.name)
            # Annotations are strings here (postponed evaluation).
            if field_.type == "bool":
                if not isinstance(value, bool):
                    raise TypeError(f"{name} must be a bool, not {value!r}")
                continue
            if field_.type not in ("int", "float"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                # "300" from an environment variable, say: every session
                # would fail on it, long after the server started.
                raise TypeError(f"{name} must be a number, not {value!r}")
            if field_.type == "int" and not isinstance(value, int):
                # It goes into replies as it is: SIZE 1000.5 is no size.
                raise ValueError(f"{name} must be a whole number, not {value}")
            if not math.isfinite(value):
                # Every wait has a bound; inf would be none (and nan no order).
                raise ValueError(f"{name} must be a finite number, not {value}")
            if value < MINIMUM.get(name, 0) or (name in POSITIVE and value <= 0):
                least = "above 0" if name in POSITIVE else f"at least {MINIMUM.get(name, 0)}"
                if name == "max_recipients":
                    least += " (RFC 5321 4.5.3.1.8)"
                raise ValueError(f"{name} must be {least}, not {value}")
