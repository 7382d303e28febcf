"""The sans-IO SMTP server core: bytes in, typed events out, replies to bytes.

Nothing here does I/O or imports ``trio``, ``socket`` or ``ssl``: the same
core runs under trio (``smtp_recv.serve``), asyncio or a blocking socket.
"""

from . import _replies as replies
from . import limits
from ._connection import ServerConnection, SessionConfig
from ._errors import LocalProtocolError, ProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    AnyEvent,
    AuthCredentials,
    CommandRejected,
    ConnectionClosed,
    DataStarted,
    Event,
    Hello,
    MailFrom,
    MailParameters,
    MessageAborted,
    MessageComplete,
    MessageData,
    RcptParameters,
    RcptTo,
    Sentinel,
    StartTLS,
    TransactionReset,
)
from ._replies import Reply
from ._state import State, Verb

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AnyEvent",
    "AuthCredentials",
    "CommandRejected",
    "ConnectionClosed",
    "DataStarted",
    "Event",
    "Hello",
    "LocalProtocolError",
    "MailFrom",
    "MailParameters",
    "MessageAborted",
    "MessageComplete",
    "MessageData",
    "ProtocolError",
    "RcptParameters",
    "RcptTo",
    "Reply",
    "Sentinel",
    "ServerConnection",
    "SessionConfig",
    "StartTLS",
    "State",
    "TransactionReset",
    "Verb",
    "limits",
    "replies",
]
