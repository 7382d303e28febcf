"""The built-in :class:`~smtp_recv.Forward` hooks: who we accept mail for, and where it goes.

:class:`Recipients` answers from three tables given in the config file:
local mailboxes, forwarding entries (an address to its targets) and domain
catch-alls (``@example.com`` to targets).  Anything else is unknown, and the
server refuses it at RCPT time with ``550 5.1.1``; that includes every domain
we do not serve, so the server is never an open relay.

Addresses match case-insensitively, local part included: RFC 5321 2.4 allows
a case-sensitive local part, but nearly every mail system treats
``Alice@`` and ``alice@`` as one person and senders do not preserve case
reliably.  The targets returned are spelled as in the config file, so each
mailbox has one Maildir however the sender wrote the address.

``postmaster`` is always accepted, bare or at any domain we serve (RFC 5321
4.5.1 requires it): a ``postmaster`` forwarding entry takes it, else the
domain's catch-all, else it is a mailbox of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["AcceptEveryRecipient", "Recipients"]


def _fold(address: str) -> str:
    return address.casefold()


class Recipients:
    """A :class:`~smtp_recv.Forward` hook from static tables.

    An exact address (mailbox or forwarding entry) wins over its domain's
    catch-all.  Targets are final: a target that is itself a forwarding entry
    is not expanded again, so no configuration can loop.

    Args:
        mailboxes: addresses delivered to their own Maildir.
        forwards: an address to the addresses its mail goes to; list the
            address itself among its targets to keep a copy.
        catch_alls: a domain (``example.com``, no ``@``) to the targets of
            every address at it that is neither a mailbox nor forwarded.

    Raises:
        ValueError: an address is both a mailbox and forwarded, an entry has
            no targets, or two entries differ only in case.

    Example::

        recipients = Recipients(
            mailboxes=["alice@example.com"],
            forwards={"sales@example.com": ["alice@example.com", "bob@example.org"]},
            catch_alls={"example.com": ["alice@example.com"]},
        )
        await recipients.lookup("SALES@example.com")
        # ('alice@example.com', 'bob@example.org')
    """

    def __init__(
        self,
        *,
        mailboxes: Iterable[str] = (),
        forwards: Mapping[str, Sequence[str]] | None = None,
        catch_alls: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._spelling: dict[str, str] = {}
        for mailbox in mailboxes:
            self._add(mailbox, (mailbox,), "mailbox")
        for address, targets in (forwards or {}).items():
            if not targets:
                raise ValueError(f"forwarding entry {address!r} has no targets")
            self._add(address, tuple(targets), "forwarding entry")
        self._domains: dict[str, tuple[str, ...]] = {}
        for domain, targets in (catch_alls or {}).items():
            if not targets:
                raise ValueError(f"catch-all for {domain!r} has no targets")
            folded = domain.removeprefix("@").casefold()
            if folded in self._domains:
                raise ValueError(f"catch-all for {domain!r} is given twice")
            self._domains[folded] = tuple(targets)
        # A target that is one of our addresses takes the spelling it is
        # listed with: the Maildir is named after the spelling, and each
        # address must have exactly one.
        spelling = self._spelling
        for table in (self._addresses, self._domains):
            for key, found in table.items():
                table[key] = tuple(spelling.get(_fold(target), target) for target in found)
        self._served = self.domains
        # RFC 5321 4.5.1: postmaster, with or without a served domain, is
        # always accepted; unless forwarded, it is a mailbox of its own.
        self._postmaster = self._addresses.get("postmaster")

    def _add(self, address: str, targets: tuple[str, ...], kind: str) -> None:
        folded = _fold(address)
        if folded in self._addresses:
            raise ValueError(f"{kind} {address!r} is already listed as {self._spelling[folded]!r}")
        self._addresses[folded] = targets
        self._spelling[folded] = address

    @property
    def domains(self) -> frozenset[str]:
        """The domains we accept any mail for (lowercase)."""
        return frozenset(self._domains) | frozenset(
            address.rpartition("@")[2] for address in self._addresses if "@" in address
        )

    async def lookup(self, recipient: str) -> Sequence[str]:
        """Return the targets of ``recipient``; empty when we do not take its mail."""
        return self.targets(recipient)

    def targets(self, recipient: str) -> tuple[str, ...]:
        """The synchronous core of :meth:`lookup`."""
        exact = self._addresses.get(_fold(recipient))
        if exact is not None:
            return exact
        local, at, domain = recipient.rpartition("@")
        if not at:
            if _fold(recipient) == "postmaster":
                return self._postmaster or ("postmaster",)
            return ()
        if not local:
            return ()
        domain = domain.casefold()
        if _fold(local) == "postmaster" and domain in self._served:
            return self._postmaster or self._domains.get(domain) or (f"postmaster@{domain}",)
        return self._domains.get(domain, ())


class AcceptEveryRecipient:
    """A :class:`~smtp_recv.Forward` hook that accepts any address as its own mailbox.

    Only for the development server, which listens on 127.0.0.1 alone: on a
    public address this would accept mail for the whole world.
    """

    async def lookup(self, recipient: str) -> Sequence[str]:
        """Return ``recipient`` itself: every address is a local mailbox."""
        return (recipient,)
