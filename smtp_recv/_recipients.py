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

An internationalised domain has two spellings, the U-label (``exämple.com``)
and the A-label (``xn--exmple-cua.com``), and they name one domain (RFC 5890
2.3.2.1).  A sender without SMTPUTF8 must use the A-label (RFC 6531 3.2), one
with it may use either, so every domain, in the tables and in the recipient,
is compared in its lower-case A-label form.

``postmaster`` is always accepted, bare or at any domain we serve (RFC 5321
4.5.1 requires it): a ``postmaster`` forwarding entry takes it, else the
domain's catch-all, else it is a mailbox of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ._mailboxes import canonical_address, listed_address, listed_domain

__all__ = ["AcceptEveryRecipient", "Recipients"]


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
            no targets, two entries differ only in case or in the form of
            their domain (U-label or A-label), or a domain is not valid IDNA.

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
        # A served domain as first written in the tables, for the Maildir of
        # a postmaster that has no entry: one directory per domain, beside
        # its mailboxes, whichever form the sender used.
        self._domain_spelling: dict[str, str] = {}
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
            bare = domain.removeprefix("@")
            canonical = listed_domain(bare, f"catch-all for {domain!r}")
            if canonical in self._domains:
                raise ValueError(f"catch-all for {domain!r} is given twice")
            self._domains[canonical] = tuple(targets)
            self._domain_spelling.setdefault(canonical, bare.lower())
        # A target that is one of our addresses takes the spelling it is
        # listed with: the Maildir is named after the spelling, and each
        # address must have exactly one.
        for table in (self._addresses, self._domains):
            for key, found in table.items():
                table[key] = tuple(self._listed_spelling(target) for target in found)
        self._served = self.domains
        # RFC 5321 4.5.1: postmaster, with or without a served domain, is
        # always accepted; unless forwarded, it is a mailbox of its own.
        self._postmaster = self._addresses.get("postmaster")

    def _add(self, address: str, targets: tuple[str, ...], kind: str) -> None:
        canonical = listed_address(address, f"{kind} {address!r}")
        if canonical in self._addresses:
            raise ValueError(
                f"{kind} {address!r} is already listed as {self._spelling[canonical]!r}"
            )
        self._addresses[canonical] = targets
        self._spelling[canonical] = address
        _, at, domain = address.rpartition("@")
        if at:
            self._domain_spelling.setdefault(canonical.rpartition("@")[2], domain.lower())

    def _listed_spelling(self, target: str) -> str:
        try:
            canonical = canonical_address(target)
        except UnicodeError:
            # A target whose domain has no A-label form is none of ours: it
            # keeps its own spelling.
            return target
        return self._spelling.get(canonical, target)

    @property
    def domains(self) -> frozenset[str]:
        """The domains we accept any mail for, each in its lower-case A-label form."""
        return frozenset(self._domains) | frozenset(
            address.rpartition("@")[2] for address in self._addresses if "@" in address
        )

    @property
    def listed_domains(self) -> list[str]:
        """The domains we accept any mail for, as first written in the tables, sorted."""
        return sorted(self._domain_spelling[domain] for domain in self.domains)

    async def lookup(self, recipient: str) -> Sequence[str]:
        """Return the targets of ``recipient``; empty when we do not take its mail."""
        return self.targets(recipient)

    def targets(self, recipient: str) -> tuple[str, ...]:
        """The synchronous core of :meth:`lookup`."""
        try:
            canonical = canonical_address(recipient)
        except UnicodeError:
            # Not a domain (invalid IDNA): none of ours, refused like any
            # other unknown recipient.
            return ()
        exact = self._addresses.get(canonical)
        if exact is not None:
            return exact
        local_part, at, domain = canonical.rpartition("@")
        if not at:
            if canonical == "postmaster":
                return self._postmaster or ("postmaster",)
            return ()
        if not local_part:
            return ()
        if local_part == "postmaster" and domain in self._served:
            return (
                self._postmaster
                or self._domains.get(domain)
                or (f"postmaster@{self._domain_spelling[domain]}",)
            )
        return self._domains.get(domain, ())


class AcceptEveryRecipient:
    """A :class:`~smtp_recv.Forward` hook that accepts any address as its own mailbox.

    Only for the development server, which listens on 127.0.0.1 alone: on a
    public address this would accept mail for the whole world.
    """

    async def lookup(self, recipient: str) -> Sequence[str]:
        """Return ``recipient`` itself: every address is a local mailbox.

        In the one spelling the server compares addresses in (lower case, a
        domain in its ``xn--`` form), so that ``Bob@`` and ``bob@`` share a
        Maildir here as they would with a recipient map.
        """
        try:
            return (canonical_address(recipient),)
        except UnicodeError:
            # Not a domain IDNA can encode: a mailbox of its own as written.
            return (recipient,)
