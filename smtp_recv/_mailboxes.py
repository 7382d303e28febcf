"""When two spellings of an address name one mailbox.

One rule for the whole server: the recipient map, the users file's logins
and senders, and the default sender policy all compare addresses this way,
so that what is one mailbox for delivery is one mailbox for sending too.
Local parts compare in NFC by lower case; domains by their lower-case A-label.
"""

from __future__ import annotations

import re
import unicodedata

from .protocol._addresses import DOT_STRING

__all__ = [
    "canonical_address",
    "canonical_domain",
    "listed_address",
    "listed_domain",
    "same_mailbox",
]


_QUOTED_PAIR = re.compile(r"\\(.)")


def _unquoted(local_part: str) -> str:
    """A quoted local part that needs no quotes, without them: ``"alice"`` is ``alice``.

    RFC 5321 4.1.2 says not to quote what a Dot-string can say, and RFC 5322
    3.4.1 makes both spellings one local part.  One that needs its quotes
    (``"john doe"``) keeps them and is compared as written.
    """
    if len(local_part) < 2 or local_part[0] != '"' or local_part[-1] != '"':
        return local_part
    value = _QUOTED_PAIR.sub(r"\1", local_part[1:-1])
    return value if DOT_STRING.fullmatch(value) else local_part


def _fold_local_part(local_part: str) -> str:
    """The local part as compared: composed (NFC) and in lower case, no more.

    NFC because one letter may come composed or decomposed (``é``, or ``e``
    and a combining accent): RFC 6532 3.1 asks for NFC, and a client, or an
    operator's editor, may not have applied it.  NFC merges only such
    canonical equivalents, never two letters that look different (NFKC
    would take the ligature ``ﬁ`` to ``fi``).

    ``str.lower()`` rather than ``str.casefold()``: case folding also expands
    and merges letters that are not case variants of one another (``ß`` to
    ``ss``, final sigma to sigma, ``ﬁ`` to ``fi``), which would deliver
    ``STRASSE@`` to the ``straße@`` mailbox, two people's mail in one Maildir.
    Lower-casing only pairs a letter with its own capital, so ``BØB@`` still
    reaches ``bøb@`` (SMTPUTF8 senders are no more careful with case than
    ASCII ones) while distinct letters stay distinct.  Folding only ASCII
    would keep letters apart too, but would refuse ``BØB@`` for no reason.
    """
    if local_part.isascii():
        return local_part.lower()
    return unicodedata.normalize("NFC", local_part.lower())


def canonical_domain(domain: str) -> str:
    """The domain as compared: its A-label form in lower case.

    The standard library's ``idna`` codec implements IDNA 2003 (RFC 3490):
    nameprep, then Punycode, label by label; ASCII labels, ``xn--`` ones
    included, pass through with only their length checked.  What it does not
    cover, and so neither do we:

    * IDNA 2008 (RFC 5891) and its UTS 46 mapping.  IDNA 2003 maps the
      "deviation" characters away (``ß`` to ``ss``, final sigma to sigma,
      ZWJ and ZWNJ to nothing), so ``straße.de`` compares equal to
      ``strasse.de``, not to its IDNA 2008 A-label ``xn--strae-oqa.de``.
      An operator of such a domain lists the xn-- form, which matches
      exactly, and may forward the U-label to it.
    * Code points unassigned in Unicode 3.2 are let through (nameprep's
      query mode) without the normalisation IDNA 2008 would apply.
    * A-labels are not decoded, so one that is not valid Punycode or would
      not survive a round trip is compared as written: IDNA 2003's decoder
      would refuse valid IDNA 2008 A-labels such as ``xn--strae-oqa``.

    Address literals (``[192.0.2.1]``, RFC 5321 4.1.3) are ASCII by grammar
    and are only lower-cased (``IPv6:`` and hex digits ignore case).

    Raises:
        UnicodeError: the domain has no A-label form (invalid IDNA): an empty
            or over-long label, a code point nameprep prohibits, a label
            mixing right-to-left and left-to-right letters.
    """
    if domain.startswith("["):
        return domain.lower()
    return domain.encode("idna").decode("ascii").lower()


def canonical_address(address: str) -> str:
    """The address as compared.

    Raises:
        UnicodeError: its domain has no A-label form.
    """
    local_part, at, domain = address.rpartition("@")
    if not at:
        return _fold_local_part(address)
    return f"{_fold_local_part(_unquoted(local_part))}@{canonical_domain(domain)}"


def listed_address(address: str, what: str) -> str:
    """:func:`canonical_address` of an address from one of our own tables.

    Raises:
        ValueError: its domain is not a valid domain name; names ``what``.
    """
    try:
        return canonical_address(address)
    except UnicodeError as error:
        raise ValueError(f"{what}: {_not_a_domain(error)}") from None


def listed_domain(domain: str, what: str) -> str:
    """:func:`canonical_domain` of a domain from one of our own tables.

    Raises:
        ValueError: it is not a valid domain name; names ``what``.
    """
    try:
        return canonical_domain(domain)
    except UnicodeError as error:
        raise ValueError(f"{what}: {_not_a_domain(error)}") from None


def _not_a_domain(error: UnicodeError) -> str:
    return f"its domain is not a valid domain name (IDNA 2003): {error}"


def same_mailbox(first: str, second: str) -> bool:
    """Whether two addresses name one mailbox; an invalid domain matches nothing."""
    try:
        return canonical_address(first) == canonical_address(second)
    except UnicodeError:
        return False
