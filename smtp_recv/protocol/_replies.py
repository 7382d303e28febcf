"""Typed SMTP replies, and the table of every reply the server sends.

No other module spells a reply: they name one of these constants or call one
of the small functions below, so the wording and the enhanced status codes
(RFC 3463) are reviewed in one place.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
#: RFC 5321 4.5.3.1.5: a reply line, code and CRLF included.
MAX_REPLY_LINE = 512


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a three-digit code, an enhanced status code and text.

    A multi-line reply has several ``lines`` and is serialised as one block
    (RFC 5321 4.2.1: ``250-first``, ``250 last``).
    """

    #: The reply code (RFC 5321 4.2).
    code: int
    #: The enhanced status code (RFC 3463), e.g. ``"2.1.0"``; ``None`` for the
    #: greeting and the HELO/EHLO reply, which RFC 2034 section 3 leaves bare.
    enhanced: str | None
    #: The text lines; at least one.
    lines: tuple[str, ...]
    # The wire form, with and without enhanced codes, made once: most replies
    # are module constants sent over and over.
    _wire: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced is not None and (
            not _ENHANCED.match(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"bad enhanced code {self.enhanced!r} for {self.code}")
        if not self.lines:
            raise ValueError("a reply has at least one line")
        for line in self.lines:
            # Text is ours or a hook's; CR or LF inside would forge extra replies.
            if "\r" in line or "\n" in line or not line.isprintable():
                raise ValueError(f"reply text must be printable, one line each: {line!r}")
        object.__setattr__(self, "_wire", (self._serialise(False), self._serialise(True)))

    @classmethod
    def _unchecked(cls, code: int, enhanced: str, text: str) -> Reply:
        """A one-line reply from parts known to be valid, skipping the checks.

        Only for the replies made once per message from our own text and ids.
        """
        reply = object.__new__(cls)
        set_field = object.__setattr__
        set_field(reply, "code", code)
        set_field(reply, "enhanced", enhanced)
        set_field(reply, "lines", (text,))
        # What _serialise makes of one line, without its generator and join.
        set_field(
            reply,
            "_wire",
            (f"{code} {text}\r\n".encode(), f"{code} {enhanced} {text}\r\n".encode()),
        )
        return reply

    @classmethod
    def make(cls, code: int, enhanced: str | None, text: str) -> Reply:
        """A one-line reply."""
        return cls(code, enhanced, (text,))

    @property
    def is_positive(self) -> bool:
        """2xx and 3xx: the command was accepted (or is under way)."""
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: the client should try again later."""
        return 400 <= self.code < 500

    @property
    def closes(self) -> bool:
        """421 and 221: the server closes the connection after sending it."""
        return self.code in (421, 221)

    def to_bytes(self, enhanced_codes: bool = True) -> bytes:
        """Serialise, with the enhanced code on every line when asked."""
        return self._wire[enhanced_codes]

    def _serialise(self, enhanced_codes: bool) -> bytes:
        prefix = f"{self.code}"
        status = f"{self.enhanced} " if enhanced_codes and self.enhanced else ""
        last = len(self.lines) - 1
        return "".join(
            f"{prefix}{' ' if i == last else '-'}{status}{line}\r\n"
            for i, line in enumerate(self.lines)
        ).encode("utf-8")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8").rstrip("\r\n").replace("\r\n", " | ")


def _r(code: int, enhanced: str | None, text: str) -> Reply:
    return Reply(code, enhanced, (text,))


# -- positive -----------------------------------------------------------
# The greeting and the EHLO reply are made per connection from the same few
# inputs (a client's name varies, but one client sends the same name each
# time), and a checked multi-line Reply costs more than the rest of a short
# session's replies together: so both are remembered, within a bound.
@functools.lru_cache(maxsize=16)
def greeting(hostname: str) -> Reply:
    """RFC 5321 4.3.1: the opening 220; ESMTP announces that EHLO is understood."""
    return _r(220, None, f"{hostname} ESMTP ready")


@functools.lru_cache(maxsize=128)
def ehlo(hostname: str, client: str, keywords: tuple[str, ...]) -> Reply:
    """RFC 5321 4.1.1.1: our name on the first line, one extension per line after."""
    return Reply(250, None, (_hello(hostname, client), *keywords))


def helo(hostname: str, client: str) -> Reply:
    return _r(250, None, _hello(hostname, client))


def _hello(hostname: str, client: str) -> str:
    # The client's name is echoed only in ASCII: no reply carries UTF-8
    # before the client has asked for it (RFC 6531), which it has not yet.
    # Nor when it would make the line longer than the 512 octets of a reply
    # line (RFC 5321 4.5.3.1.5), code and CRLF included.
    text = f"{hostname} Hello {client}"
    if client.isascii() and len(text) + 6 <= MAX_REPLY_LINE:
        return text
    return f"{hostname} Hello"


def message_accepted(message_id: str) -> Reply:
    """The 250 after a message: the Mailer has it."""
    return Reply._unchecked(250, "2.0.0", f"OK: queued as {message_id}")


def chunk_received(size: int) -> Reply:
    """RFC 3030 section 2: the reply to a BDAT chunk that is not the last."""
    return Reply._unchecked(250, "2.0.0", f"{size} octets received")


def auth_challenge(challenge: str) -> Reply:
    """RFC 4954 section 4: a 334 with a base64 challenge (may be empty)."""
    return Reply(334, None, (challenge,)) if challenge else Reply(334, None, ("",))


OK = _r(250, "2.0.0", "OK")
RESET_OK = _r(250, "2.0.0", "Reset OK")
NOOP_OK = _r(250, "2.0.0", "OK")
SENDER_OK = _r(250, "2.1.0", "Sender OK")
RECIPIENT_OK = _r(250, "2.1.5", "Recipient OK")
START_DATA = _r(354, None, "End data with <CR><LF>.<CR><LF>")
READY_FOR_TLS = _r(220, "2.0.0", "Ready to start TLS")
AUTH_OK = _r(235, "2.7.0", "Authentication successful")
CLOSING = _r(221, "2.0.0", "Bye")
CANNOT_VRFY = _r(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = _r(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")

# -- syntax (RFC 5321 4.2.2, RFC 3463 X.5.x) ----------------------------
UNRECOGNISED = _r(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = _r(500, "5.5.2", "Line too long")
BARE_LINE_ENDING_IN_COMMAND = _r(500, "5.5.2", "Bare CR or LF in command line")
INVALID_UTF8 = _r(500, "5.5.2", "Command line is not valid UTF-8")
INVALID_UTF8_ARGUMENT = _r(501, "5.5.4", "Argument is not valid UTF-8")
NO_ARGUMENTS_ALLOWED = _r(501, "5.5.4", "Syntax error: no parameters allowed")
HELO_SYNTAX = _r(501, "5.5.4", "Syntax: HELO/EHLO hostname")
MAIL_SYNTAX = _r(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
RCPT_SYNTAX = _r(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
BDAT_SYNTAX = _r(501, "5.5.4", "Syntax: BDAT size [LAST]")
AUTH_SYNTAX = _r(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
VRFY_SYNTAX = _r(501, "5.5.4", "Syntax: VRFY address")
BAD_SENDER_ADDRESS = _r(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_ADDRESS = _r(501, "5.1.3", "Bad recipient address syntax")
NULL_RECIPIENT = _r(501, "5.1.3", "The null path is not a recipient")
BAD_PARAMETER = _r(501, "5.5.4", "Malformed parameter value")
DUPLICATE_PARAMETER = _r(501, "5.5.4", "Parameter given twice")
UNKNOWN_PARAMETER = _r(555, "5.5.4", "Unsupported parameter")
NOT_IMPLEMENTED = _r(502, "5.5.1", "Command not implemented")
AUTH_NOT_AVAILABLE = _r(502, "5.5.1", "AUTH not available")
STARTTLS_NOT_AVAILABLE = _r(502, "5.5.1", "STARTTLS not available")
BDAT_NOT_AVAILABLE = _r(502, "5.5.1", "CHUNKING not available")

# -- sequence (RFC 5321 4.3.2, RFC 3463 X.5.1) ---------------------------
BAD_SEQUENCE = _r(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = _r(503, "5.5.1", "Send HELO/EHLO first")
NEED_EHLO = _r(503, "5.5.1", "Send EHLO first")
NEED_MAIL = _r(503, "5.5.1", "Need MAIL command first")
NEED_RCPT = _r(503, "5.5.1", "Need RCPT command first")
NESTED_MAIL = _r(503, "5.5.1", "Sender already specified")
ALREADY_AUTHENTICATED = _r(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = _r(503, "5.5.1", "AUTH not allowed during a mail transaction")
TLS_ALREADY_ACTIVE = _r(503, "5.5.1", "TLS already active")
DATA_AFTER_BDAT = _r(503, "5.5.1", "DATA not allowed after BDAT")
BINARYMIME_NEEDS_BDAT = _r(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
BDAT_AFTER_FAILURE = _r(503, "5.5.1", "Transaction failed; send RSET")

# -- AUTH (RFC 4954 section 6) --------------------------------------------
UNKNOWN_MECHANISM = _r(504, "5.5.4", "Unrecognized authentication mechanism")
AUTH_CANCELLED = _r(501, "5.7.0", "Authentication cancelled")
AUTH_BAD_BASE64 = _r(501, "5.5.2", "Invalid base64 data")
AUTH_BAD_RESPONSE = _r(501, "5.5.2", "Malformed authentication response")
ENCRYPTION_REQUIRED = _r(538, "5.7.11", "Encryption required for authentication")
AUTH_REQUIRED = _r(530, "5.7.0", "Authentication required")
AUTH_FAILED = _r(535, "5.7.8", "Authentication credentials invalid")
#: RFC 4954 section 6: a SASL response longer than we accept.
AUTH_LINE_TOO_LONG = _r(500, "5.5.6", "Authentication Exchange line is too long")
AUTH_TEMPORARY_FAILURE = _r(454, "4.7.0", "Temporary authentication failure")
SENDER_NOT_OWNED = _r(553, "5.7.1", "Sender address not owned by user")

# -- addresses and messages -------------------------------------------------
NO_SUCH_USER = _r(550, "5.1.1", "No such user here")
RELAY_DENIED = _r(550, "5.7.1", "Relaying denied")
UTF8_NOT_DECLARED = _r(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = _r(552, "5.3.4", "Message size exceeds fixed limit")
BARE_LINE_ENDING_IN_DATA = _r(
    550, "5.5.2", "Message contains bare CR or LF; only CRLF ends a line (RFC 5321 2.3.8)"
)
#: RFC 6152 section 3 and RFC 2045 2.8: neither 7bit nor 8bit text has a NUL.
NUL_IN_DATA = _r(550, "5.6.0", "Message contains NUL, which text cannot carry (RFC 6152)")
TEMPORARY_FAILURE = _r(451, "4.3.0", "Temporary failure, please try again later")
#: RFC 5321 4.2.2 (452) and RFC 3463 (4.3.1, mail system full).
INSUFFICIENT_STORAGE = _r(452, "4.3.1", "Insufficient system storage, please try again later")

# -- the connection -------------------------------------------------------
EARLY_TALKER = _r(554, "5.5.0", "Protocol error: client sent data before the greeting")
NOT_SMTP = _r(554, "5.5.0", "This is an SMTP server")
TOO_MANY_ERRORS = _r(421, "4.7.0", "Too many errors, closing connection")
TOO_MANY_COMMANDS = _r(421, "4.7.0", "Too many commands without mail, closing connection")
TOO_MANY_AUTH_FAILURES = _r(421, "4.7.0", "Too many authentication failures")
TOO_MANY_CONNECTIONS = _r(421, "4.3.2", "Too many connections, try again later")
TOO_MANY_CONNECTIONS_FROM_IP = _r(421, "4.7.0", "Too many connections from your address")
TIMEOUT = _r(421, "4.4.2", "Timeout, closing connection")
SHUTTING_DOWN = _r(421, "4.3.2", "Service shutting down, try again later")
LOCAL_ERROR = _r(421, "4.3.0", "Local error, closing connection")
