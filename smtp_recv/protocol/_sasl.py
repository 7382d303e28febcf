"""AUTH PLAIN (RFC 4616) and AUTH LOGIN, as a small step machine.

The exchange only decodes credentials; checking them is the application's
decision.  Base64 is decoded strictly (RFC 4954 section 4): Python's
``b64decode`` quietly skips characters outside the alphabet unless asked
not to, which would let ``AGFsaWNl*AGNvcnJlY3Q=`` through.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

from . import _replies as replies
from ._errors import _Refusal

MECHANISMS = ("PLAIN", "LOGIN")
# The LOGIN mechanism's customary prompts, base64 of "Username:"/"Password:".
_USERNAME_PROMPT = base64.b64encode(b"Username:").decode("ascii")
_PASSWORD_PROMPT = base64.b64encode(b"Password:").decode("ascii")


@dataclass(frozen=True, slots=True)
class Credentials:
    mechanism: Literal["PLAIN", "LOGIN"]
    authorization_id: str
    username: str
    password: str


def decode_response(text: str, *, initial: bool = False) -> bytes:
    """Decode one client response (RFC 4954 section 4).

    ``=`` is the empty initial response; a line at a 334 prompt may also be
    empty (``*(CRLF [base64])``), as clients send an empty password.
    """
    if text == "*":
        raise _Refusal(replies.AUTH_CANCELLED)
    if text == "=" or (not text and not initial):
        return b""
    if not text or len(text) % 4:
        raise _Refusal(replies.AUTH_BAD_BASE64)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Refusal(replies.AUTH_BAD_BASE64) from None


def _utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(replies.AUTH_BAD_RESPONSE) from None
    if "\x00" in text:
        raise _Refusal(replies.AUTH_BAD_RESPONSE)
    return text


class SaslExchange:
    """One AUTH exchange; ``step`` takes each client response in turn."""

    __slots__ = ("_username", "mechanism")

    def __init__(self, mechanism: Literal["PLAIN", "LOGIN"]) -> None:
        self.mechanism = mechanism
        self._username: str | None = None

    def first_challenge(self) -> str:
        """The 334 text when AUTH came without an initial response."""
        return "" if self.mechanism == "PLAIN" else _USERNAME_PROMPT

    def step(self, response: str, *, initial: bool = False) -> Credentials | str:
        """Take a response; return the next challenge or the credentials.

        ``initial``: the response came on the AUTH line, where an empty one
        is ``=``; at a 334 prompt an empty line is one too.
        """
        raw = decode_response(response, initial=initial)
        if self.mechanism == "PLAIN":
            return self._plain(raw)
        if self._username is None:
            if not raw:
                # As an empty authcid in PLAIN: no one to check.
                raise _Refusal(replies.AUTH_BAD_RESPONSE)
            self._username = _utf8(raw)
            return _PASSWORD_PROMPT
        return Credentials("LOGIN", "", self._username, _utf8(raw))

    @staticmethod
    def _plain(raw: bytes) -> Credentials:
        # message = [authzid] NUL authcid NUL passwd  (RFC 4616 section 2)
        if not raw:
            # An empty response carries no credentials at all: it is a failed
            # attempt (535), not a request for another challenge.
            raise _Refusal(replies.AUTH_FAILED)
        parts = raw.split(b"\x00")
        if len(parts) != 3 or not parts[1]:
            raise _Refusal(replies.AUTH_BAD_RESPONSE)
        authzid, authcid, password = (_utf8(part) for part in parts)
        return Credentials("PLAIN", authzid, authcid, password)
