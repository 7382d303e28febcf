"""The ``Received:`` trace header (RFC 5321 4.4) and the ids it names."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from datetime import datetime
from email.utils import format_datetime

_counter = itertools.count(1)
# Anything but printable ASCII that needs no quoting inside a comment
# (RFC 5322 ctext): one C-level pass replaces it, instead of a Python-level
# test per character.
_UNSAFE = re.compile(r"[^a-zA-Z0-9.\-_:\[\]@+=!#$%&*/?^{|}~]")


def _process_tag() -> str:
    # The pid is read once per process (and again in a forked child), not
    # once per id: getpid() is a system call.
    return f"{os.getpid():x}"


_pid = _process_tag()
os.register_at_fork(after_in_child=lambda: globals().update(_pid=_process_tag()))
_SALT = secrets.token_hex(2)


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


# The date line of the trace header changes once a second; messages within
# one second share its text instead of formatting it again.
_date_cache: tuple[float, str] = (-1.0, "")


def _date(when: datetime) -> str:
    global _date_cache
    second = when.timestamp() // 1
    cached_second, text = _date_cache
    if second != cached_second:
        text = format_datetime(when.replace(microsecond=0))
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
    lines.append(f"\t{_date(when)}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
