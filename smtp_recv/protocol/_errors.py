"""The core's two exception types.

``ProtocolError`` is the only exception client input can raise out of the
core: it carries the reply to send, after which the connection is over.
``LocalProtocolError`` means the *application* misused the core (replying
when no decision was pending, say): a bug in the caller, never the client.
"""

from __future__ import annotations

from ._replies import Reply


class ProtocolError(Exception):
    """The client broke the protocol past recovery; send ``reply`` and close."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        #: The reply to send before closing the connection.
        self.reply = reply


class LocalProtocolError(Exception):
    """The application used the core out of turn (a bug in the caller)."""


class _Refusal(Exception):
    """Internal: a command is refused with ``reply``; the session goes on.

    Raised deep in the parsers and caught at one boundary in the connection,
    which queues the reply and counts the error, as h11 does with its own
    internal error type.
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply
