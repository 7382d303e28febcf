"""Paths and ESMTP parameters of MAIL FROM and RCPT TO (RFC 5321 4.1.2).

Everything here is a pure function of one command's argument text; a
violation raises ``_Refusal`` with the reply that names it.  Addresses are
checked here, before any hook sees them, so a hook never receives NUL,
control characters or an unterminated quote.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from . import _replies as replies
from . import limits
from ._errors import _Refusal
from ._events import NO_MAIL_PARAMETERS, NO_RCPT_PARAMETERS, MailParameters, RcptParameters
from ._replies import Reply

# RFC 5321 4.1.2, with RFC 6531 3.3 adding UTF-8 to atext, qtext and labels.
_UTF8 = "\u00a0-\U0010ffff"  # UTF-8 beyond ASCII, without the C1 controls
_ATEXT = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_UTF8}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_UTF8}](?:[A-Za-z0-9\-{_UTF8}]*[A-Za-z0-9{_UTF8}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
# RFC 5321 4.1.3: Snum = 1*3DIGIT (0 to 255); Standardized-tag = Ldh-str.
_SNUM = re.compile(r"[0-9]{1,3}")
_LDH_STR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")
_MAILBOX = re.compile(rf"(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL})")
#: An unquoted local part (RFC 5321 4.1.2 Dot-string, RFC 6531 UTF-8 included).
DOT_STRING = re.compile(_DOT_STRING)
# A-d-l: "@" Domain *( "," "@" Domain ), then ":"; obsolete, accepted and dropped.
_SOURCE_ROUTE = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
# esmtp-value: any CHAR but "=", SP and controls (RFC 5321), or UTF-8 (RFC 6531).
_VALUE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_UTF8}]+")
# xtext (RFC 3461 section 4): printable ASCII but "+" and "=", or "+" HEX HEX.
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_DIGITS = re.compile(r"[0-9]+")
_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_ENVID_MAX = 100  # RFC 3461 section 4.4


def ascii_upper(text: str) -> str:
    """``text`` in upper case for matching a keyword, or as it is if not ASCII.

    ``str.upper()`` maps some non-ASCII letters onto ASCII ones (U+0131, the
    dotless i, becomes "I"; U+017F, the long s, becomes "S"; the ligature
    U+FB00 becomes "FF"), so ``MAIL`` or ``LAST`` spelt with them would pass
    for the keywords.  SMTP's keywords are ASCII: a word that is not can
    match none of them.
    """
    return text.upper() if text.isascii() else text


def _check_address_literal(literal: str) -> bool:
    """RFC 5321 4.1.3: IPv4, ``IPv6:`` or a ``tag:`` general literal."""
    inner = literal[1:-1]
    if ascii_upper(inner[:5]) == "IPV6:":
        try:
            address = ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        # ``ipaddress`` takes a zone index ("fe80::1%eth0"); IPv6-addr has none.
        return address.scope_id is None
    if ":" in inner:
        # General-address-literal = Standardized-tag ":" 1*dcontent
        tag, _, content = inner.partition(":")
        return bool(_LDH_STR.fullmatch(tag)) and bool(content)
    # IPv4-address-literal = Snum 3("." Snum).  Not ``ipaddress``, which
    # refuses the leading zeros that Snum allows ("[010.0.0.1]").
    parts = inner.split(".")
    return len(parts) == 4 and all(_SNUM.fullmatch(part) and int(part) <= 255 for part in parts)


def parse_path(text: str, bad: Reply, *, postmaster: bool = False) -> str:
    """Parse ``<[A-d-l:]mailbox>`` and return the mailbox, or ``""`` for ``<>``.

    ``bad`` is the reply for a malformed path: 501 5.1.7 for a sender,
    501 5.1.3 for a recipient (RFC 3463).  ``postmaster`` admits the bare
    ``<Postmaster>`` that only RCPT TO allows (RFC 5321 4.1.1.3).
    """
    if len(text.encode("utf-8")) > limits.PATH:
        raise _Refusal(bad)
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise _Refusal(bad)
    inner = text[1:-1]
    if not inner:
        return ""
    if postmaster and ascii_upper(inner) == "POSTMASTER":
        # RFC 5321 4.1.1.3 and 4.5.1: "RCPT TO:<Postmaster>", without a domain
        # or a route, is always accepted (case-insensitively).  MAIL FROM has
        # no such form: a reverse-path is "<>" or a full mailbox.
        return inner
    route = _SOURCE_ROUTE.match(inner)
    if route:
        # RFC 5321 4.1.1.3 and C: source routes must be accepted and ignored.
        inner = inner[route.end() :]
    match = _MAILBOX.fullmatch(inner)
    if match is None:
        raise _Refusal(bad)
    local, domain = match["local"], match["domain"]
    if len(local.encode("utf-8")) > limits.LOCAL_PART:
        raise _Refusal(bad)
    if len(domain.encode("utf-8")) > limits.DOMAIN:
        raise _Refusal(bad)
    if domain[0] == "[" and not _check_address_literal(domain):
        raise _Refusal(bad)
    return inner


def split_path_and_parameters(argument: str, prefix: str, syntax: Reply) -> tuple[str, list[str]]:
    """Split ``FROM:<path> params`` into the path and the parameter words.

    Accepts spaces after the colon, which many clients send although RFC
    5321 has none there; a path without angle brackets is a syntax error.
    """
    if ascii_upper(argument[: len(prefix)]) != prefix:
        raise _Refusal(syntax)
    rest = argument[len(prefix) :].lstrip(" ")
    if not rest.startswith("<"):
        raise _Refusal(syntax)
    close = _path_end(rest)
    if close < 0:
        raise _Refusal(syntax)
    path, params = rest[: close + 1], rest[close + 1 :]
    if params and not params.startswith(" "):
        raise _Refusal(syntax)
    # RFC 5321 4.1.2: parameters are separated by SP alone.  ``str.split()``
    # would also split on HT, FS..US, NEL and NBSP and so let control
    # characters through as separators; runs of spaces are tolerated.
    return path, [word for word in params.split(" ") if word]


def _path_end(text: str) -> int:
    """Index of the ">" that closes the path, skipping quoted local parts."""
    if '"' not in text:
        # No quoted local part, so no ">" inside one (backslashes escape
        # only within quotes): the first ">" closes the path.
        return text.find(">")
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def _parameters(words: list[str]) -> dict[str, str | None]:
    """Split ``KEY[=value]`` words; a key given twice is refused."""
    parsed: dict[str, str | None] = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not _KEYWORD.fullmatch(key) or (equals and not _VALUE.fullmatch(value)):
            raise _Refusal(replies.BAD_PARAMETER)
        key = ascii_upper(key)
        if key in parsed:
            raise _Refusal(replies.DUPLICATE_PARAMETER)
        parsed[key] = value if equals else None
    return parsed


def _xtext(value: str | None, maximum: int) -> str:
    if value is None or not _XTEXT.fullmatch(value) or len(value) > maximum:
        raise _Refusal(replies.BAD_PARAMETER)
    return value


def parse_mail(
    argument: str,
    *,
    smtputf8_offered: bool,
    chunking_offered: bool,
    dsn_offered: bool,
    extended: bool = True,
) -> tuple[str, MailParameters]:
    """Parse the argument of MAIL (``FROM:<path> [parameters]``).

    ``extended``: the session began with EHLO.  After HELO nothing was
    offered, so every parameter is one not offered (RFC 5321 4.1.1.11).
    """
    path, words = split_path_and_parameters(argument, "FROM:", replies.MAIL_SYNTAX)
    if words and not extended:
        raise _Refusal(replies.UNKNOWN_PARAMETER)
    parameters = (
        _mail_parameters(words, smtputf8_offered, chunking_offered, dsn_offered)
        if words
        else NO_MAIL_PARAMETERS
    )
    sender = parse_path(path, replies.BAD_SENDER_ADDRESS)
    if not parameters.smtputf8 and not sender.isascii():
        raise _Refusal(replies.UTF8_NOT_DECLARED)
    return sender, parameters


def _mail_parameters(
    words: list[str], smtputf8_offered: bool, chunking_offered: bool, dsn_offered: bool
) -> MailParameters:
    """MAIL's parameter words, checked (RFC 1870, 6152, 6531, 3461, 4954)."""
    params = _parameters(words)
    size: int | None = None
    body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    auth: str | None = None
    smtputf8 = False
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not _DIGITS.fullmatch(value) or len(value) > limits.SIZE_DIGITS:
                raise _Refusal(replies.BAD_PARAMETER)
            size = int(value)
        elif key == "BODY":
            upper = ascii_upper(value or "")
            if upper == "7BIT":
                body = "7BIT"
            elif upper == "8BITMIME":
                body = "8BITMIME"
            elif upper == "BINARYMIME" and chunking_offered:
                body = "BINARYMIME"
            else:
                raise _Refusal(replies.BAD_PARAMETER)
        elif key == "SMTPUTF8" and smtputf8_offered:
            if value is not None:
                raise _Refusal(replies.BAD_PARAMETER)
            smtputf8 = True
        elif key == "RET" and dsn_offered:
            upper = ascii_upper(value or "")
            if upper == "FULL":
                ret = "FULL"
            elif upper == "HDRS":
                ret = "HDRS"
            else:
                raise _Refusal(replies.BAD_PARAMETER)
        elif key == "ENVID" and dsn_offered:
            envid = _xtext(value, _ENVID_MAX)
        elif key == "AUTH":
            # RFC 4954 section 5; Office 365 sends AUTH=<>.  Informational only:
            # we never trust a client's claim about who authenticated upstream.
            auth = _xtext(value, limits.AUTH_PARAM_ALLOWANCE)
        else:
            raise _Refusal(replies.UNKNOWN_PARAMETER)
    return MailParameters(size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid, auth=auth)


def parse_rcpt(argument: str, *, smtputf8: bool, dsn_offered: bool) -> tuple[str, RcptParameters]:
    """Parse the argument of RCPT (``TO:<path> [parameters]``)."""
    path, words = split_path_and_parameters(argument, "TO:", replies.RCPT_SYNTAX)
    parameters = _rcpt_parameters(words, dsn_offered) if words else NO_RCPT_PARAMETERS
    recipient = parse_path(path, replies.BAD_RECIPIENT_ADDRESS, postmaster=True)
    if not recipient:
        raise _Refusal(replies.NULL_RECIPIENT)
    if not smtputf8 and not recipient.isascii():
        raise _Refusal(replies.UTF8_NOT_DECLARED)
    return recipient, parameters


def _rcpt_parameters(words: list[str], dsn_offered: bool) -> RcptParameters:
    """RCPT's parameter words, checked (RFC 3461: NOTIFY and ORCPT, when DSN is offered)."""
    params = _parameters(words)
    if not dsn_offered:
        # NOTIFY and ORCPT (DSN) are the only RCPT parameters there are.
        raise _Refusal(replies.UNKNOWN_PARAMETER)
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None
    for key, value in params.items():
        if key == "NOTIFY":
            items = tuple(ascii_upper(value or "").split(","))
            never = items == ("NEVER",)
            if not never and (not set(items) <= _NOTIFY_VALUES or len(set(items)) != len(items)):
                raise _Refusal(replies.BAD_PARAMETER)
            notify = items
        elif key == "ORCPT":
            addr_type, semicolon, address = (value or "").partition(";")
            if not semicolon or not _KEYWORD.fullmatch(addr_type):
                raise _Refusal(replies.BAD_PARAMETER)
            orcpt = f"{addr_type};{_xtext(address, limits.DSN_RCPT_ALLOWANCE)}"
        else:
            raise _Refusal(replies.UNKNOWN_PARAMETER)
    return RcptParameters(notify=notify, orcpt=orcpt)


def parse_helo_name(argument: str) -> str:
    """The HELO/EHLO argument: one word of printable text.

    RFC 5321 asks for a domain or address literal, but many real clients send
    bare or odd names; like Postfix by default we take any single printable
    word, and only refuse empty, multi-word or control-laden arguments.
    """
    name = argument.strip(" ")
    if (
        not name
        or " " in name
        or len(name.encode("utf-8")) > limits.HELO_NAME
        or not name.isprintable()
    ):
        raise _Refusal(replies.HELO_SYNTAX)
    return name
