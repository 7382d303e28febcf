"""The built-in :class:`~smtp_recv.Auth` and :class:`~smtp_recv.SenderPolicy`: a users file.

Passwords are stored as scrypt hashes (RFC 7914) made with the standard
library's :func:`hashlib.scrypt`:

* no dependency: argon2 would need a C extension (``argon2-cffi``), and
  scrypt is the memory-hard function that ships with Python (via OpenSSL);
* memory-hard: each guess costs ``128 * r * n`` bytes (16 MiB by default), so
  a stolen users file is expensive to attack on GPUs, unlike PBKDF2;
* self-describing: the hash string carries its own parameters and salt,
  ``scrypt$n=16384,r=8,p=1$<salt base64>$<hash base64>``, so the cost can be
  raised later without breaking the existing hashes.

Checking a password is slow on purpose, so it runs in a worker thread; a
limiter bounds how many run at once, so a burst of AUTH attempts cannot take
all memory.  An unknown user costs the same work as a known one (a hash of a
dummy password is checked), so timing does not reveal which users exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

from ._mailboxes import canonical_address, listed_address, same_mailbox

__all__ = ["PasswordHashError", "User", "Users", "hash_password", "verify_password"]

#: Default scrypt cost: n=2**14, r=8, p=1 is the RFC 7914 interactive-login
#: example and uses 16 MiB per check.
SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
#: Refuse hashes asking for more memory than this per check (a hostile or
#: mistyped users file must not make each AUTH allocate gigabytes).
MAX_SCRYPT_MEMORY = 256 << 20
SALT_BYTES = 16
HASH_BYTES = 32
#: Password checks in progress at once, over all connections.
CONCURRENT_CHECKS = 4

_HASH_FORMAT = re.compile(
    r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)"
)


class PasswordHashError(ValueError):
    """A stored password hash is not in the ``scrypt$n=...,r=...,p=...$salt$hash`` form."""


@dataclass(frozen=True, slots=True)
class _ParsedHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # One password has several spellings in Unicode (a precomposed "é", or
    # "e" and a combining accent, as some keyboards and systems send it):
    # hashed and checked in NFKC, the normalisation SASLprep (RFC 4013, which
    # RFC 4616 names for PLAIN) uses, they all match.
    prepared = unicodedata.normalize("NFKC", password).encode()
    # OpenSSL refuses to use more than maxmem: give it what it allocates,
    # 128 * r * (n + p + 2) bytes, and as much again.
    return hashlib.scrypt(
        prepared, salt=salt, n=n, r=r, p=p, maxmem=256 * r * (n + p + 2), dklen=length
    )


def _parse_hash(encoded: str) -> _ParsedHash:
    match = _HASH_FORMAT.fullmatch(encoded)
    if match is None:
        raise PasswordHashError(
            "not a password hash of the form scrypt$n=16384,r=8,p=1$<salt>$<hash>"
            " (make one with `smtp-recv passwd`)"
        )
    if any(len(match[i]) > 9 for i in (1, 2, 3)):
        raise PasswordHashError("scrypt parameters are too costly to check")
    n, r, p = (int(match[i]) for i in (1, 2, 3))
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        raise PasswordHashError("scrypt n must be a power of two above 1, r and p positive")
    if 128 * r * n > MAX_SCRYPT_MEMORY or p > 16:
        raise PasswordHashError("scrypt parameters are too costly to check")
    try:
        salt = base64.b64decode(match[4], validate=True)
        digest = base64.b64decode(match[5], validate=True)
    except binascii.Error as error:
        raise PasswordHashError(f"bad base64 in password hash: {error}") from None
    if not digest:
        raise PasswordHashError("empty hash")
    return _ParsedHash(n, r, p, salt, digest)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _b64_padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """Return the storable scrypt hash of ``password``, with a fresh random salt.

    Slow on purpose (tens of milliseconds): call it from a worker thread in
    async code.

    Example::

        >>> hash_password("correct horse").startswith("scrypt$n=16384,r=8,p=1$")
        True
    """
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def check_password_hash(encoded: str) -> None:
    """Raise :class:`PasswordHashError` unless ``encoded`` is a usable hash."""
    _parse_hash(_pad_hash(encoded))


def _pad_hash(encoded: str) -> str:
    # We write base64 without padding; accept it with or without.
    parts = encoded.split("$")
    if len(parts) == 4:
        parts[2], parts[3] = _b64_padded(parts[2]), _b64_padded(parts[3])
    return "$".join(parts)


def verify_password(password: str, encoded: str) -> bool:
    """Return whether ``password`` matches the stored hash ``encoded``.

    The comparison takes constant time (:func:`hmac.compare_digest`).

    Raises:
        PasswordHashError: ``encoded`` is not a valid hash.
    """
    parsed = _parse_hash(_pad_hash(encoded))
    candidate = _scrypt(password, parsed.salt, parsed.n, parsed.r, parsed.p, len(parsed.digest))
    return hmac.compare_digest(candidate, parsed.digest)


def _cost(encoded: str) -> tuple[int, int, int]:
    parsed = _parse_hash(_pad_hash(encoded))
    return parsed.n, parsed.r, parsed.p


@dataclass(frozen=True, slots=True)
class User:
    """One account of the users file.

    Args:
        password_hash: the scrypt hash from :func:`hash_password`.
        senders: the envelope senders the user may use besides their login.
    """

    password_hash: str
    senders: tuple[str, ...] = ()


class Users:
    """The accounts that may submit mail: both :class:`~smtp_recv.Auth` and
    :class:`~smtp_recv.SenderPolicy`.

    Logins and senders are compared as the recipient map compares addresses
    (people type ``Alice@Example.com``, and a domain may come in its Unicode
    or its ``xn--`` form); the user id handed to the server is the address
    as written in the users file.  The SNI ``host`` is not used: one users
    file serves every domain.

    Args:
        users: the accounts, keyed by login address.

    Raises:
        ValueError: two logins name one mailbox, or a login's domain is not
            a valid domain name.
    """

    def __init__(self, users: Mapping[str, User]) -> None:
        self._users = dict(users)
        self._by_login: dict[str, str] = {}
        for login in users:
            canonical = listed_address(login, f"user {login!r}")
            if canonical in self._by_login:
                raise ValueError(
                    f"users {self._by_login[canonical]!r} and {login!r} are one mailbox"
                    " (they differ only in case or in the form of their domain)"
                )
            self._by_login[canonical] = login
        # Checked instead of a real hash when the user is unknown, so that an
        # unknown user costs the same time as a wrong password: made with
        # the parameters most of the users' hashes have.
        n, r, p = self.common_cost
        self._dummy_hash = hash_password(secrets.token_urlsafe(16), n=n, r=r, p=p)
        self._limiter = trio.CapacityLimiter(CONCURRENT_CHECKS)

    @property
    def costs(self) -> set[tuple[int, int, int]]:
        """The scrypt parameters ``(n, r, p)`` of the users' hashes.

        More than one lets the time of a failed AUTH tell the users of the
        less common ones from unknown logins.
        """
        return {_cost(user.password_hash) for user in self._users.values()}

    @property
    def common_cost(self) -> tuple[int, int, int]:
        """The parameters most hashes have (the costliest of a tie); the default for none."""
        counted = Counter(_cost(user.password_hash) for user in self._users.values())
        if not counted:
            return SCRYPT_N, SCRYPT_R, SCRYPT_P
        return max(counted, key=lambda cost: (counted[cost], cost[0] * cost[1] * cost[2]))

    @property
    def logins(self) -> Sequence[str]:
        """The login addresses, as written in the users file."""
        return tuple(self._users)

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        """Return the user id for a good login and password, ``None`` otherwise."""
        try:
            user_id = self._by_login.get(canonical_address(username))
        except UnicodeError:  # no valid domain: no user of ours
            user_id = None
        stored = self._users[user_id].password_hash if user_id is not None else self._dummy_hash
        matches = await trio.to_thread.run_sync(
            verify_password, password, stored, limiter=self._limiter
        )
        return user_id if matches and user_id is not None else None

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        """Allow the user's own address and the senders listed for them.

        The null sender ``<>`` is refused: users do not send bounces.
        """
        try:
            # The login as the file writes it now: a reload may have changed
            # its case since the client logged in.
            login = self._by_login.get(canonical_address(user_id))
        except UnicodeError:
            login = None
        if login is None or not sender:
            return False
        user = self._users[login]
        return any(same_mailbox(sender, allowed) for allowed in (login, *user.senders))
