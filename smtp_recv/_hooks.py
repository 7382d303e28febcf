"""The four hooks through which a server hands decisions to the application.

Each hook is a :class:`typing.Protocol`, so any object with the right methods
fits; nothing needs to inherit from these classes.  The async ones may do I/O
(a database, a queue, a remote API); the server applies its own deadlines
around them, so a hook never needs a timeout of its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._mail import Mail, UserMail
from ._mailboxes import same_mailbox
from .protocol import Reply
from .protocol._replies import MAX_REPLY_LINE


class Reject(Exception):
    """Raised by a hook to give the client exactly this reply.

    Any other exception from a hook is a temporary failure (``451 4.3.0``, or
    ``454 4.7.0`` for :class:`Auth`), so the client retries and nothing is lost.
    Raise :class:`Reject` for a decision, not for a failure::

        raise smtp_recv.Reject(550, "5.7.1", "Mail from this sender is refused")

    Args:
        code: a 4xx or 5xx SMTP reply code.
        enhanced: the RFC 3463 enhanced status code, e.g. ``"5.7.1"``.
        text: the reply text: one line of printable text.  ASCII is
            safest (a client may not expect UTF-8); an address the
            client sent may be quoted as it was sent.
    """

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        # Checked here, where the mistake is, not when the reply is sent:
        # there a reply that cannot be sent could only become a 451, and a
        # refusal meant to be permanent would be retried for days.
        if not 400 <= code <= 599:
            raise ValueError(f"Reject needs a 4xx or 5xx code, not {code}")
        reply = Reply.make(code, enhanced, text)  # raises ValueError for what cannot be sent
        if len(reply.to_bytes()) > MAX_REPLY_LINE:
            raise ValueError(
                f"Reject text too long: a reply line is at most {MAX_REPLY_LINE} octets"
                " (RFC 5321 4.5.3.1.5)"
            )
        super().__init__(code, enhanced, text)
        self.code = code
        self.enhanced = enhanced
        self.text = text


@runtime_checkable
class Forward(Protocol):
    """Decides, at RCPT time on the MX listener, where a recipient's mail goes."""

    async def lookup(self, recipient: str) -> Sequence[str]:
        """Return the forwarding targets of ``recipient``.

        An empty sequence means there is no such recipient, and the client gets
        ``550 5.1.1``.  A local mailbox returns itself.  Checking at RCPT time,
        not after DATA, lets the sending server bounce the message itself
        instead of us accepting mail we then cannot deliver (backscatter).

        Args:
            recipient: the address as the client gave it, without angle brackets.
        """
        ...


@runtime_checkable
class Auth(Protocol):
    """Checks AUTH PLAIN and AUTH LOGIN credentials on the submission listener."""

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        """Return the user id for good credentials, or ``None`` for bad ones.

        ``None`` gives ``535 5.7.8``; an exception gives ``454 4.7.0`` (a
        temporary failure: the client may retry later).  :class:`Reject`
        gives its own reply; a permanent one counts as a failed attempt, with
        the same delays and limits as a wrong password.

        Args:
            host: the SNI name the client asked for, in lower case, or
                ``None`` without SNI (or with one that is no host name); lets
                one server host several domains with separate user bases.
            username: the authentication identity.
            password: the password, never logged by the server.
        """
        ...


@runtime_checkable
class SenderPolicy(Protocol):
    """Decides which envelope senders an authenticated user may use."""

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        """Return whether ``sender`` (``""`` for ``<>``) belongs to the user."""
        ...


class SenderIsLogin:
    """The default :class:`SenderPolicy`: the sender must be the login's mailbox.

    Compared as the built-in recipient map compares addresses: the local
    part by lower case (nearly all mail systems ignore its case), the domain
    in its lower-case ``xn--`` form, whichever form the client wrote.
    """

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return same_mailbox(sender, username)


@runtime_checkable
class Mailer(Protocol):
    """Takes responsibility for every accepted message.

    The server replies ``250`` to the end of a message only after the method
    returned; an exception gives ``451 4.3.0`` so the client retries, and a
    :class:`Reject` gives its own reply.  Either way, nothing acknowledged is lost.
    ``mail.content`` is released when the method returns: copy what you keep.
    """

    async def send(self, mail: UserMail) -> None:
        """Take a message submitted by an authenticated user (submission listener)."""
        ...

    async def forward(self, mail: Mail) -> None:
        """Take an inbound message for our recipients (MX listener)."""
        ...


@dataclass(frozen=True, slots=True, init=False)
class Certificate:
    """A certificate chain and its private key, as PEM files.

    Args:
        certfile: the certificate chain, leaf first.
        keyfile: the private key; ``None`` when it is in ``certfile``.
    """

    certfile: Path
    keyfile: Path | None

    def __init__(
        self, certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str] | None = None
    ) -> None:
        # Held as Paths whatever was given, so that two spellings of one
        # file are one certificate (its TLS context is made once).
        object.__setattr__(self, "certfile", Path(certfile))
        object.__setattr__(self, "keyfile", None if keyfile is None else Path(keyfile))


@runtime_checkable
class CertByHost(Protocol):
    """Chooses the certificate for a TLS handshake from the SNI name.

    The lookup is synchronous on purpose: Python's ``ssl`` module asks for the
    certificate from inside the handshake (``SSLContext.sni_callback``), where
    nothing can be awaited.  The alternative, reading and parsing the
    ClientHello ourselves before the handshake, would put a hand-written TLS
    parser in front of every connection.  The map changes rarely, so keep it
    in memory and refresh it from a task of your own.  The files a
    :class:`Certificate` names are looked at again at most once a second,
    so a certificate renewed in place is served without a restart.
    """

    def get(self, host: str | None) -> Certificate | None:
        """Return the certificate for ``host``, or ``None`` for the default.

        ``host`` is ``None`` when the client sent no SNI (Postfix sends none by
        default).  ``get(None)`` must return a certificate: it is the default
        for clients without SNI and for names we do not know.
        """
        ...
