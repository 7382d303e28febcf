"""Typed events: what the core tells the application the client did.

Some events need a *decision*: the application answers them with
``ServerConnection.accept()`` or ``ServerConnection.reject(reply)`` before the
core goes on to the next command (``next_event()`` returns ``PAUSED`` until
then).  The others are notices: the core has already queued its reply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from ._replies import Reply


class Sentinel(enum.Enum):
    """What ``next_event()`` returns when it has no event.

    An enum, so that ``event is NEED_DATA`` narrows ``event``'s type for a
    type checker, which can then tell whether a loop handles every event.
    """

    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.name


#: ``next_event()`` needs more bytes: send ``data_to_send()``, then receive.
NEED_DATA: Final = Sentinel.NEED_DATA
#: ``next_event()`` waits for the application: a decision is pending, or the
#: connection is switching to TLS or is closed.
PAUSED: Final = Sentinel.PAUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class MailParameters:
    """The ESMTP parameters of MAIL FROM, parsed and validated."""

    #: ``SIZE=`` (RFC 1870): the client's estimate, never trusted for framing.
    size: int | None = None
    #: ``BODY=`` (RFC 6152, RFC 3030): ``7BIT``, ``8BITMIME`` or ``BINARYMIME``.
    body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None
    #: ``SMTPUTF8`` (RFC 6531) was given.
    smtputf8: bool = False
    #: ``RET=`` (RFC 3461, only when ``SessionConfig.dsn``): ``FULL`` or ``HDRS``.
    ret: Literal["FULL", "HDRS"] | None = None
    #: ``ENVID=`` (RFC 3461, only when ``SessionConfig.dsn``), still xtext-encoded.
    envid: str | None = None
    #: ``AUTH=`` (RFC 4954 section 5), e.g. ``"<>"``; informational only.
    auth: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptParameters:
    """The ESMTP parameters of RCPT TO (RFC 3461 DSN, only when ``SessionConfig.dsn``)."""

    #: ``NOTIFY=``: ``("NEVER",)`` or a subset of SUCCESS, FAILURE, DELAY.
    notify: tuple[str, ...] | None = None
    #: ``ORCPT=``: ``addr-type;xtext-address``, still xtext-encoded.
    orcpt: str | None = None


# Most MAIL and RCPT commands carry no parameters.  The classes are frozen,
# so one instance of each serves every such command instead of a new one per
# command (and per transaction reset).
NO_MAIL_PARAMETERS = MailParameters()
NO_RCPT_PARAMETERS = RcptParameters()


class Event:
    """Base class of every event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Event):
    """HELO or EHLO was answered; any transaction was reset (RFC 5321 4.1.4)."""

    #: The client's name for itself, as given.
    name: str
    #: ``True`` for EHLO.
    extended: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFrom(Event):
    """Decision: MAIL FROM.  ``accept()`` opens the transaction."""

    #: The reverse-path without brackets; ``""`` for the null sender ``<>``.
    sender: str
    parameters: MailParameters


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptTo(Event):
    """Decision: RCPT TO.  ``accept()`` adds the recipient."""

    #: The forward-path without brackets (source routes stripped).
    recipient: str
    parameters: RcptParameters


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthCredentials(Event):
    """Decision: a complete AUTH PLAIN or LOGIN exchange.

    ``accept()`` sends ``235``; ``reject()`` with ``AUTH_FAILED`` sends ``535``.
    """

    mechanism: Literal["PLAIN", "LOGIN"]
    #: The authorization identity (PLAIN only), ``""`` when absent.
    authorization_id: str
    username: str
    #: Not shown in ``repr``: events end up in logs.
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataStarted(Event):
    """DATA was answered with 354, or the first BDAT chunk began."""

    #: ``True`` for BDAT, ``False`` for DATA.
    chunked: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageData(Event):
    """A piece of the message body, unstuffed (DATA) or verbatim (BDAT)."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageComplete(Event):
    """Decision: the message ended (CRLF.CRLF or BDAT LAST).

    Deliver it, then ``accept(reply)`` (``250``) or ``reject(reply)``.
    """

    sender: str
    recipients: tuple[str, ...]
    #: The message size in bytes, as delivered (after dot-unstuffing).
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageAborted(Event):
    """The core refused the message; discard what was received of it.

    ``reply`` is ``552`` (too big) or ``550`` (a bare line ending, a NUL).
    The refusal also comes as a ``CommandRejected`` with that reply, which
    counts as the client's error: just before this event when the message's
    end has been read, or, for a BDAT chunk that takes the message past the
    size limit, once the chunk has been read and thrown away.
    """

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionReset(Event):
    """RSET, HELO or EHLO ended a transaction: drop any partial message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected(Event):
    """The core refused a command; its reply is already queued.

    ``error_count`` counts such errors in this session, for the I/O layer's
    soft and hard error limits.
    """

    reply: Reply
    error_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS(Event):
    """STARTTLS was answered with 220.

    The core is now paused for good: send ``data_to_send()``, discard
    ``trailing_data`` (RFC 3207 section 4.2 / CVE-2011-0411), run the TLS
    handshake and start a fresh ``ServerConnection`` on the TLS stream.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The session is over: QUIT was answered, the client closed (EOF), or
    a command came after ``ServerConnection.shut_down``.

    ``reply`` is the 221 for QUIT, the 421 given to ``shut_down``, or
    ``None`` for EOF.  A message under way at
    EOF is dropped: nothing partial is delivered.
    """

    reply: Reply | None


#: Every event ``next_event()`` returns: a closed union, so that a ``match``
#: over them can end in ``assert_never``.
AnyEvent: TypeAlias = (
    Hello
    | MailFrom
    | RcptTo
    | AuthCredentials
    | DataStarted
    | MessageData
    | MessageComplete
    | MessageAborted
    | TransactionReset
    | CommandRejected
    | StartTLS
    | ConnectionClosed
)
