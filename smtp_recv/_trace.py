"""The ``Received:`` trace header (RFC 5321 4.4) and the ids it names."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from datetime import datetime
from email.utils import format_datetime

_counter = itertools.count(1)
# Printable ASCII that needs no quoting inside a comment (RFC 5322 ctext).
_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]@+=!#$%&*/?^{|}~"
)


def new_id() -> str:
    """A short id unique across processes and restarts: time, pid, counter, salt.

    Cheap enough to make one per message: no system call beyond ``time``.
    """
    return f"{int(time.time()):x}{os.getpid():x}{next(_counter):x}{_SALT}"


_SALT = secrets.token_hex(2)


def escape(text: str, limit: int = 255) -> str:
    """Client-supplied text made safe for a header comment or a log line.

    Everything outside a conservative printable set becomes ``?``, so a HELO
    name can neither fold the header, close the comment nor smuggle UTF-8.
    """
    cleaned = "".join(char if char in _SAFE else "?" for char in text[:limit])
    return cleaned or "?"


def with_protocol(*, extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The ``with`` keyword: RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA), RFC 6531 (UTF8SMTP...)."""
    if not extended:
        return "SMTP"
    suffix = ("S" if tls else "") + ("A" if authenticated else "")
    if smtputf8:
        return "UTF8SMTP" + suffix
    return "ESMTP" + suffix


def received_header(
    *,
    helo: str,
    client_name: str | None,
    client_ip: str,
    hostname: str,
    protocol: str,
    tls: tuple[str, str] | None,
    message_id: str,
    recipient: str | None,
    when: datetime,
) -> bytes:
    """Build the header, folded onto several lines as MTAs customarily do."""
    ip_literal = f"IPv6:{client_ip}" if ":" in client_ip else client_ip
    client = f"{escape(client_name)} " if client_name else ""
    lines = [
        f"Received: from {escape(helo)} ({client}[{ip_literal}])",
        f"\tby {hostname} (smtp_recv) with {protocol}",
    ]
    if tls is not None:
        lines.append(f"\t(version={escape(tls[0])} cipher={escape(tls[1])})")
    lines.append(f"\tid {message_id}")
    if recipient is not None:
        lines.append(f"\tfor <{escape(recipient, 256)}>")
    lines[-1] += ";"
    lines.append(f"\t{format_datetime(when)}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
