"""The ``Received:`` trace header (RFC 5321 4.4) and the ids it names."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime

_counter = itertools.count(1)
# Anything but printable ASCII that needs no quoting inside a comment
# (RFC 5322 ctext): one C-level pass replaces it, instead of a Python-level
# test per character.
_UNSAFE = re.compile(r"[^a-zA-Z0-9.\-_:\[\]@+=!#$%&*/?^{|}~]")
# The same, and "?" too: in a log line "?" stands for empty text.
_LOG_UNSAFE = re.compile(r"[^a-zA-Z0-9.\-_:\[\]@+=!#$%&*/^{|}~]")


def _process_tag() -> str:
    # The pid is read once per process (and again in a forked child), not
    # once per id: getpid() is a system call.
    return f"{os.getpid():x}"


_pid = _process_tag()
_SALT = secrets.token_hex(2)
# A forked worker takes a pid and a salt of its own: a worker restarted
# within the second may get a pid used before.
os.register_at_fork(
    after_in_child=lambda: globals().update(_pid=_process_tag(), _SALT=secrets.token_hex(2))
)


def new_id() -> str:
    """A short id unique across processes and restarts: time, pid, counter, salt.

    Cheap enough to make one per message: no system call beyond ``time``.
    """
    return f"{int(time.time()):x}{_pid}{next(_counter):x}{_SALT}"


def escape(text: str, limit: int = 255) -> str:
    """Client-supplied text made safe for a header comment or a log line.

    Everything outside a conservative printable set becomes ``?``, so a HELO
    name can neither fold the header, close the comment nor smuggle UTF-8.
    """
    return _UNSAFE.sub("?", text[:limit]) or "?"


def loggable(text: str, limit: int = 255) -> str:
    """Client-supplied text made safe for a log line, without losing who it names.

    What :func:`escape` turns into ``?`` comes out as a Python-style escape
    instead (``j\\xf6rg``, a space as ``\\x20``, a backslash as
    ``\\x5c``, and ``?`` itself as ``\\x3f``): still one ASCII word that
    cannot forge a line or a field, and two different texts of up to
    ``limit`` characters never look alike (empty text is a lone ``?``).
    """
    text = text[:limit]
    if _LOG_UNSAFE.search(text) is None:
        return text or "?"
    return _LOG_UNSAFE.sub(_escaped, text)


# What can end, hide or reorder a line in a terminal or a log viewer: every
# character of Unicode's categories Cc (controls), Cf (invisible formatting:
# soft hyphen, bidirectional overrides, tags...), Zl and Zp (the line and
# paragraph separators), but for the newline and tab a traceback is made of.
# (tests/cli/test_cli.py checks the ranges against unicodedata.)
_LINE_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f"
    "\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)


def defanged(text: str) -> str:
    """A log record's text, unable to forge or hide a line.

    Our own log lines escape client text where they put it; a hook's
    exception message is the hook author's, and may quote what a client sent:
    an SMTPUTF8 address with U+2028 or U+202E in it, an AUTH login with a line
    feed.  So the characters of ``_LINE_UNSAFE`` come out escaped as
    :func:`loggable` writes them (``\\u2028``), and every line after the
    first is indented: a traceback's lines, and any line a message carries,
    continue the record and cannot pass for one.  (A backslash stays as it
    is: ``\\u2028`` in the text itself reads the same, but forges nothing.)
    """
    if _LINE_UNSAFE.search(text) is not None:
        text = _LINE_UNSAFE.sub(_escaped, text)
    return text.replace("\n", "\n    ") if "\n" in text else text


def json_defanged(text: str) -> str:
    """JSON text with the characters :func:`defanged` escapes written as JSON escapes.

    ``json.dumps`` escapes the C0 controls but leaves U+2028 and the rest as
    they are; written as ``\\uXXXX`` (a surrogate pair above U+FFFF) they
    decode to the same text.  (They can only stand inside JSON strings, where
    such an escape is valid.)
    """
    if _LINE_UNSAFE.search(text) is None:
        return text
    return _LINE_UNSAFE.sub(_json_escaped, text)


def _json_escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# The date line of the trace header changes once a second; messages within
# one second share its text instead of formatting it again.
_date_cache: tuple[int, str] = (-1, "")


def _date(now: float) -> str:
    """RFC 5322 date-time of ``now`` (seconds since the epoch), in UTC."""
    global _date_cache
    second = int(now)
    cached_second, text = _date_cache
    if second != cached_second:
        text = format_datetime(datetime.fromtimestamp(second, UTC))
        _date_cache = (second, text)
    return text


def with_protocol(*, extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The ``with`` keyword: RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA), RFC 6531 (UTF8SMTP...)."""
    if not extended:
        return "SMTP"
    suffix = ("S" if tls else "") + ("A" if authenticated else "")
    if smtputf8:
        return "UTF8SMTP" + suffix
    return "ESMTP" + suffix


class ReceivedHeaders:
    """The ``Received:`` headers of one session's messages, folded as MTAs do.

    All but the last lines (the client's names and address, our name, the
    protocol, TLS) stay the same from one message of a session to the next:
    they are escaped and formatted once, and again only when they change
    (a new HELO, AUTH, or one message with SMTPUTF8).
    """

    __slots__ = ("_client_ip", "_head", "_hostname", "_key")

    def __init__(self, hostname: str, client_ip: str) -> None:
        self._hostname = hostname
        self._client_ip = client_ip
        self._key: tuple[str, str | None, str, tuple[str, str] | None] | None = None
        self._head = ""

    def header(
        self,
        *,
        helo: str,
        client_name: str | None,
        protocol: str,
        tls: tuple[str, str] | None,
        message_id: str,
        recipient: str | None,
    ) -> bytes:
        """The header of one message, dated now."""
        key = (helo, client_name, protocol, tls)
        if key != self._key:
            self._head = self._make_head(helo, client_name, protocol, tls)
            self._key = key
        last = f"\tid {message_id}"
        if recipient is not None and "@" in recipient and escape(recipient, 256) == recipient:
            # The clause is optional (RFC 5321 4.4): an address that escaping
            # would change (UTF-8, a quoted local part) is left out rather
            # than shown as some other address, and so is <Postmaster>,
            # which is neither a Path nor a Mailbox as the clause requires.
            last += f"\r\n\tfor <{recipient}>"
        return f"{self._head}{last};\r\n\t{_date(time.time())}\r\n".encode("ascii")

    def _make_head(
        self, helo: str, client_name: str | None, protocol: str, tls: tuple[str, str] | None
    ) -> str:
        client_ip = self._client_ip
        ip_literal = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
        client = f"{escape(client_name)} " if client_name else ""
        head = (
            f"Received: from {escape(helo)} ({client}[{ip_literal}])\r\n"
            f"\tby {self._hostname} (smtp_recv) with {protocol}\r\n"
        )
        if tls is not None:
            head += f"\t(version={escape(tls[0])} cipher={escape(tls[1])})\r\n"
        return head
