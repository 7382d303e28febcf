"""What the server hands to a :class:`~smtp_recv.Mailer`: one accepted message."""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, BinaryIO

from .protocol import MailParameters, RcptParameters


class Role(enum.Enum):
    """Which listener a message arrived on."""

    #: Public inbound mail (port 25): plaintext with STARTTLS, recipients checked.
    MX = "mx"
    #: Authenticated submission (port 465): implicit TLS, AUTH required.
    SUBMISSION = "submission"


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSInfo:
    """The TLS session a message arrived over."""

    #: e.g. ``"TLSv1.3"``.
    version: str
    #: e.g. ``"TLS_AES_256_GCM_SHA384"``.
    cipher: str
    #: The SNI name the client asked for, in lower case; ``None`` without
    #: one, or for one that is no host name (RFC 6066 section 3).
    server_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """One accepted recipient of a message."""

    #: The address from RCPT TO, without angle brackets.
    address: str
    #: Where the :class:`~smtp_recv.Forward` hook sends it (MX); empty on submission.
    targets: tuple[str, ...] = ()
    #: The DSN parameters of RCPT TO (RFC 3461); given only when
    #: :attr:`ServerConfig.dsn <smtp_recv.ServerConfig.dsn>` offers DSN.
    parameters: RcptParameters = field(default_factory=RcptParameters)


class MessageContent:
    """The bytes of a message, ``Received:`` header first, in memory or spooled.

    Small messages stay in memory; a message larger than the server's
    ``spool_threshold`` is written to an anonymous temporary file as it
    arrives, so a 30 MB message never sits whole in memory.  Read it with
    :meth:`read`, or stream it with :meth:`chunks` or :meth:`copy_to`.  These
    read a file when spooled, so call them from a worker thread
    (``trio.to_thread.run_sync``) when the message may be large.  Each call
    reads from the start on its own, so several may run at once (a copy to
    each of several mailboxes, in threads).

    The content is valid until the Mailer returns: the server then releases
    it, and reading it raises ``ValueError``, whatever its size.  A Mailer
    that hands the message on to be stored later must copy it first.
    """

    __slots__ = ("_data", "_file", "size")

    def __init__(self, data: bytes | None, file: IO[bytes] | None, size: int) -> None:
        self._data = data
        self._file = file
        #: The size in bytes, ``Received:`` header included.
        self.size = size

    @classmethod
    def from_bytes(cls, data: bytes) -> MessageContent:
        """Wrap bytes already in memory (e.g. in tests)."""
        return cls(data, None, len(data))

    @property
    def in_memory(self) -> bool:
        """Whether the message is held in memory rather than in a spool file."""
        return self._file is None

    def read(self) -> bytes:
        """Return the whole message."""
        if self._data is not None:
            return self._data
        # One piece as large as the message: join() hands it back uncopied.
        return b"".join(self._pieces(max(self.size, 1)))

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the message in pieces of at most ``size`` bytes."""
        if self._data is not None:
            view = memoryview(self._data)
            for start in range(0, len(view), size):
                yield bytes(view[start : start + size])
            return
        yield from self._pieces(size)

    def copy_to(self, target: BinaryIO | IO[bytes]) -> None:
        """Write the whole message to an open binary file."""
        if self._data is not None:
            target.write(self._data)
            return
        for piece in self._pieces(1 << 20):
            target.write(piece)

    def _pieces(self, size: int) -> Iterator[bytes]:
        # By offset (pread), not through the file's one shared position:
        # readers in several threads must not move each other's place.
        if self._file is None or self._file.closed:
            raise ValueError("the message content was released when the Mailer returned")
        descriptor = self._file.fileno()
        offset = 0
        while offset < self.size:
            piece = os.pread(descriptor, min(size, self.size - offset), offset)
            if not piece:
                raise ValueError(f"the spool file ended at {offset} of {self.size} bytes")
            offset += len(piece)
            yield piece

    def close(self) -> None:
        """Release the message; the server calls this after the Mailer returns."""
        self._data = None
        if self._file is not None:
            self._file.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """An inbound message accepted on the MX listener, with its whole envelope."""

    #: The envelope sender, ``""`` for the null reverse-path ``<>`` (bounces).
    sender: str
    #: The accepted recipients, in RCPT order, each with its forwarding targets.
    recipients: tuple[Recipient, ...]
    #: The ESMTP parameters of MAIL FROM (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH).
    parameters: MailParameters
    #: The message, with our ``Received:`` trace header prepended (RFC 5321 4.4).
    content: MessageContent
    #: The client's IP address and port.
    peer: tuple[str, int]
    #: The name the client gave in HELO or EHLO.
    helo: str
    #: The TLS session, or ``None`` for plaintext.
    tls: TLSInfo | None
    #: The listener the message arrived on.
    role: Role
    #: Unique id of the connection, as in the logs.
    session_id: str
    #: Unique id of this message, as in the ``Received:`` header and the logs.
    message_id: str
    #: When the end of the message arrived (UTC).
    received_at: datetime

    @property
    def data(self) -> bytes:
        """The whole message as bytes (reads the spool file when spooled)."""
        return self.content.read()


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMail(Mail):
    """A message submitted by an authenticated user on the submission listener."""

    #: The user id the :class:`~smtp_recv.Auth` hook returned.
    user_id: str
    #: The login name the user authenticated with.
    username: str
