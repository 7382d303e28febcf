"""The built-in :class:`~smtp_recv.Mailer`: one Maildir per mailbox, written durably.

Maildir (https://cr.yp.to/proto/maildir.html) needs no locks: a message is
written under a unique name in ``tmp/``, then renamed into ``new/``, and a
reader only ever looks at ``new/`` and ``cur/``, so it never sees half a
message.  We add the two ``fsync`` calls the spec's "reliable delivery"
relies on: the file before the rename (so ``new/`` never names a file whose
data is not on disk) and the ``new/`` directory after it (so the rename itself
survives a crash).  All of this happens before :meth:`MaildirMailer.forward`
returns, and the server replies ``250`` only after that, so a message the
client was told we have is on disk.

Layout under the root::

    <root>/<domain>/<local part>/{tmp,new,cur}     one per delivery target (MX)
    <root>/.outbox/<user id>/{tmp,new,cur}          submitted mail, per user

Relaying submitted mail onwards is out of scope for smtp_recv: submitted
messages wait in the user's outbox Maildir for whatever sends them on.
Directory names come from :func:`mailbox_directory`, which cannot produce a
path outside the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from ._mail import Mail, MessageContent, UserMail

__all__ = ["MaildirMailer", "mailbox_directory", "outbox_directory"]

#: Characters kept as they are in a local-part directory name; everything else
#: (``/``, NUL, ``%``, ``:``, non-ASCII ...) is percent-encoded as UTF-8 bytes.
_LOCAL_PART_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_=@")
#: Domains are lowercased first, and keep only the characters of a hostname,
#: so ``_`` never appears unencoded in a domain directory (see ``_NO_DOMAIN``).
_DOMAIN_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
#: The domain directory for an address without a domain (RFC 5321 4.5.1 lets
#: ``<postmaster>`` arrive without one); no encoded domain can equal it.
_NO_DOMAIN = "_"
#: Directory names longer than this are shortened and made unique with a hash;
#: most filesystems allow 255 bytes per name, and encoding can triple a name.
_MAX_NAME = 200
#: The outbox lives beside the domain directories; encoded names never start
#: with a dot, so it cannot collide with a domain.
_OUTBOX = ".outbox"

_delivery_counter = itertools.count()


def _encode(text: str, safe: frozenset[str]) -> str:
    """Percent-encode ``text`` so that it is one harmless directory name.

    The encoding is injective (``%`` itself is encoded), so two different
    addresses never share a Maildir.  A leading dot is encoded too, which rules
    out ``.``, ``..`` and hidden names.
    """
    encoded = "".join(
        character if character in safe else "".join(f"%{byte:02X}" for byte in character.encode())
        for character in text
    )
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if not encoded:
        encoded = "%"  # only the empty string encodes to a lone "%"
    if len(encoded) > _MAX_NAME:
        # "~" is never produced by the encoding, so shortened names are distinct.
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        encoded = f"{encoded[:100]}~{digest}"
    return encoded


def mailbox_directory(root: Path, address: str) -> Path:
    """Return the Maildir of ``address`` under ``root``.

    The domain is lowercased (domains are case-insensitive, RFC 5321 2.4); the
    local part keeps its case, because the same RFC leaves its case to the
    receiving host.  The :class:`~smtp_recv.Forward` hook decides which
    spelling is canonical: deliver to the targets it returns.

    Args:
        root: the directory holding every Maildir.
        address: a mailbox address, ``local@domain``.

    Returns:
        ``root / domain / local`` with both names encoded so that no address,
        however hostile (``../``, ``/``, NUL), leads outside ``root``.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        local = address
    domain_name = _encode(domain.lower(), _DOMAIN_SAFE) if at else _NO_DOMAIN
    return root / domain_name / _encode(local, _LOCAL_PART_SAFE)


def outbox_directory(root: Path, user_id: str) -> Path:
    """Return the outbox Maildir where ``user_id``'s submitted mail waits."""
    return root / _OUTBOX / _encode(user_id, _LOCAL_PART_SAFE)


def _unique_name(hostname: str) -> str:
    """Return a file name unique across processes and hosts sharing the root.

    The modern Maildir recipe: seconds, then ``M`` microseconds, ``P`` process
    id, ``Q`` a per-process delivery counter and ``R`` random bits, then the
    hostname with ``/`` and ``:`` escaped as the spec says.
    """
    now = time.time_ns() // 1000
    seconds, microseconds = divmod(now, 1_000_000)
    return (
        f"{seconds}.M{microseconds}P{os.getpid()}Q{next(_delivery_counter)}"
        f"R{secrets.token_hex(8)}.{hostname}"
    )


def _sanitise_hostname(hostname: str) -> str:
    return hostname.replace("/", r"\057").replace(":", r"\072") or "localhost"


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_directories_durably(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each one synced into its parent.

    Without the parent's ``fsync`` a crash could forget the new directory, and
    with it the message renamed into it.
    """
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another delivery made it first
            path.mkdir(mode=0o700)
        _fsync_directory(path.parent)


def _ensure_maildir(maildir: Path) -> None:
    if all((maildir / sub).is_dir() for sub in ("tmp", "new", "cur")):
        return
    for sub in ("tmp", "new", "cur"):
        _make_directories_durably(maildir / sub)


@dataclass(frozen=True, slots=True)
class _Delivery:
    maildir: Path
    #: Trace header lines (with CRLF) written before the message.
    header: bytes


def _write_all(deliveries: Sequence[_Delivery], content: MessageContent, hostname: str) -> None:
    """Deliver one message to several Maildirs, all or nothing as far as we can.

    Every copy is written and synced in ``tmp/`` before the first rename, so a
    write error (a full disk, a read-only directory) leaves no delivered copy
    behind and the client's retry does not duplicate the message.  Should a
    rename (or the ``fsync`` after it) fail, the copies already renamed into
    ``new/`` are taken back before the error goes on to the client as a
    ``4xx``; a reader may have seen one in that moment.  The retry then
    delivers a second copy only where a reader had already moved the first
    out of ``new/``, or where the process died (or the power failed) between
    the renames and the take-back.  Nothing is lost either way.
    """
    written: list[tuple[Path, Path]] = []
    try:
        for delivery in deliveries:
            _ensure_maildir(delivery.maildir)
            name = _unique_name(hostname)
            temporary = delivery.maildir / "tmp" / name
            # O_EXCL: never overwrite, even if a name were somehow reused.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            written.append((temporary, delivery.maildir / "new" / name))
            with os.fdopen(descriptor, "wb") as file:
                file.write(delivery.header)
                content.copy_to(file)
                file.flush()
                os.fsync(file.fileno())
    except BaseException:
        _remove(temporary for temporary, _ in written)
        raise
    renamed = 0
    try:
        for temporary, final in written:
            os.rename(temporary, final)
            renamed += 1
            _fsync_directory(final.parent)
    except BaseException:
        _remove(final for _, final in written[:renamed])
        _remove(temporary for temporary, _ in written[renamed:])
        raise


def _remove(paths: Iterable[Path]) -> None:
    """Best effort: unlink each file and sync its directory."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
            _fsync_directory(path.parent)


def _header_line(name: str, value: str) -> bytes:
    # Addresses reach us through the protocol core's parser, which admits no
    # CR or LF; refuse them anyway rather than write a broken header.
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in {name} value {value!r}")
    return f"{name}: {value}\r\n".encode()


def _distinct(addresses: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


class MaildirMailer:
    """A :class:`~smtp_recv.Mailer` that stores every message in Maildirs.

    Inbound mail (:meth:`forward`) gets one copy per distinct forwarding
    target, each starting with ``Return-Path:`` (RFC 5321 4.4 asks the final
    delivery to add it) and ``Delivered-To:`` (the target; what mail readers
    and loop detection look for).  Submitted mail (:meth:`send`) goes to the
    user's outbox with its envelope as ``Return-Path:`` and one
    ``X-Envelope-To:`` per recipient, for the program that relays it, which
    must remove ``X-Envelope-To:`` (it reveals Bcc recipients).

    Any ``OSError`` propagates: the server turns it into ``451 4.3.0`` and the
    client retries later.

    Args:
        root: the directory holding every Maildir; created on demand.
        hostname: the name in Maildir file names; defaults to this host's.

    Example::

        mailer = MaildirMailer(Path("/var/mail/smtp-recv"))
        await smtp_recv.serve(forward, auth, mailer, certs)
    """

    def __init__(self, root: Path, *, hostname: str | None = None) -> None:
        self.root = root
        self._hostname = _sanitise_hostname(hostname or socket.gethostname())

    async def forward(self, mail: Mail) -> None:
        """Store one copy of an inbound message per distinct target."""
        # A recipient without targets came from a Forward hook that names the
        # mailbox implicitly; deliver to the address itself.
        targets = _distinct(
            target
            for recipient in mail.recipients
            for target in (recipient.targets or (recipient.address,))
        )
        return_path = _header_line("Return-Path", f"<{mail.sender}>")
        deliveries: list[_Delivery] = []
        seen: set[Path] = set()
        for target in targets:
            maildir = mailbox_directory(self.root, target)
            if maildir in seen:  # e.g. two spellings whose domains differ only in case
                continue
            seen.add(maildir)
            deliveries.append(
                _Delivery(maildir, return_path + _header_line("Delivered-To", target))
            )
        await self._write(deliveries, mail.content)

    async def send(self, mail: UserMail) -> None:
        """Store a submitted message in the user's outbox."""
        header = _header_line("Return-Path", f"<{mail.sender}>") + b"".join(
            _header_line("X-Envelope-To", f"<{recipient.address}>") for recipient in mail.recipients
        )
        await self._write(
            [_Delivery(outbox_directory(self.root, mail.user_id), header)], mail.content
        )

    async def _write(self, deliveries: Sequence[_Delivery], content: MessageContent) -> None:
        # One thread hop per message: the work is blocking file I/O and fsync,
        # which must not stall the event loop serving other sessions.  The
        # thread is not abandoned on cancellation, so a cancelled delivery
        # still finishes or cleans up its tmp/ files.
        await trio.to_thread.run_sync(_write_all, deliveries, content, self._hostname)
