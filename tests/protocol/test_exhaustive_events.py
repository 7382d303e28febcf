"""A loop that handles every event, checked by mypy (``nox -s typecheck``).

``next_event()`` returns a closed union of events and an enum of sentinels,
so a ``match`` over it can end in ``assert_never``: forget an event, or add
one to the core, and the type check fails here, as it would in a user's loop.
"""

from __future__ import annotations

from typing import assert_never

from smtp_recv.protocol import (
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    CommandRejected,
    ConnectionClosed,
    DataStarted,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    RcptTo,
    ServerConnection,
    SessionConfig,
    StartTLS,
    TransactionReset,
    replies,
)


def run(wire: bytes) -> list[str]:
    """Feed ``wire`` and name every event, answering each decision."""
    conn = ServerConnection(SessionConfig(hostname="mx.our.example"))
    conn.send_greeting()
    conn.receive_data(wire)
    seen: list[str] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return seen
        seen.append(type(event).__name__)
        match event:
            case MailFrom() | RcptTo() | MessageComplete():
                conn.accept()
            case AuthCredentials():
                conn.reject(replies.AUTH_FAILED)
            case (
                Hello()
                | DataStarted()
                | MessageData()
                | MessageAborted()
                | TransactionReset()
                | CommandRejected()
                | StartTLS()
            ):
                pass
            case ConnectionClosed():
                return seen
            case _:
                assert_never(event)


def test_every_event_is_handled() -> None:
    assert run(
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r@our.example>\r\nDATA\r\n"
        b"hi\r\n.\r\nQUIT\r\n"
    ) == [
        "Hello",
        "MailFrom",
        "RcptTo",
        "DataStarted",
        "MessageData",
        "MessageComplete",
        "ConnectionClosed",
    ]
