"""SECURITY-CASES.md section 1: SMTP smuggling, a fake end of data.

CVE-2023-51764/5/6 and aiosmtpd CVE-2024-27305: a sender hides a second
envelope behind an end-of-data marker that this server and the next hop
read differently.  Only CRLF "." CRLF may end DATA; in strict mode (the
default, ``reject_bare_line_endings=True``) a message with a bare CR, bare
LF or NUL is read to its real end and refused whole; in normalising mode it
is one message that carries the smuggled text verbatim.  Never a reply
before the real end, never a second 250, never a message from the smuggled
sender.
"""

from __future__ import annotations

import pytest

from .harness import (
    END,
    FAST,
    HDR,
    SMUG,
    Harness,
    Row,
    message_body,
    on_both,
    params,
    prelude,
    run_row,
    running,
)

# Fake ends: none of them is CRLF "." CRLF, and each hides a bare CR or LF.
BARE_FAKE_ENDS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "lf-dot-cr": b"\n.\r",
    "cr-dot-lf": b"\r.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-dot-cr-crlf": b"\r\n.\r\r\n",
    "lflf-dot-lflf": b"\n\n.\n\n",
    "crlf-cr-dot-crlf": b"\r\n\r.\r\n",
}
# Fake ends a NUL-stripping hop would read as CRLF "." CRLF.
NUL_FAKE_ENDS = {
    "nul-before-dot": b"\r\n\x00.\r\n",
    "nul-after-dot": b"\r\n.\x00\r\n",
}
# Lines that look like an end to a sloppy parser but are plain text lines:
# no bare CR or LF, so even strict mode takes them as one message.
TEXT_FAKE_ENDS = {
    "dot-space": b"\r\n. \r\n",
    "dot-tab": b"\r\n.\t\r\n",
    "dot-dot": b"\r\n..\r\n",
    "dot-x": b"\r\n.x\r\n",
}


def _no_smuggled_envelope(harness: Harness) -> None:
    for mail in harness.mailer.messages:
        assert all(r.address != "admin@our.example" for r in mail.recipients)


rows: list[Row] = []
for name, fake in BARE_FAKE_ENDS.items():
    attack = HDR + b"line1" + fake + SMUG + END
    # Strict (default): one refusal for the whole message, after the real end.
    rows += on_both(
        f"strict-{name}",
        prelude="data",
        send=attack,
        expect=("550 5.5.2",),
        end="closed",
        check=_no_smuggled_envelope,
    )
    # Normalising: one message, the smuggled envelope inside it as text.
    rows += on_both(
        f"normalising-{name}",
        prelude="data",
        send=attack,
        expect=("250 2.0.0",),
        delivered=1,
        contains=(b"line1", SMUG),
        config={"reject_bare_line_endings": False},
        check=_no_smuggled_envelope,
    )
for name, fake in NUL_FAKE_ENDS.items():
    attack = HDR + b"line1" + fake + SMUG + END
    rows += on_both(
        f"strict-{name}", prelude="data", send=attack, expect=("550 5.6.0",), end="closed"
    )
    rows += on_both(
        f"normalising-{name}",
        prelude="data",
        send=attack,
        expect=("250 2.0.0",),
        delivered=1,
        contains=(SMUG,),
        config={"reject_bare_line_endings": False},
    )
for name, fake in TEXT_FAKE_ENDS.items():
    rows += on_both(
        f"text-line-{name}",
        prelude="data",
        send=HDR + b"line1" + fake + SMUG + END,
        expect=("250 2.0.0",),
        delivered=1,
        contains=(SMUG,),
        check=_no_smuggled_envelope,
    )

# The same attacks on the MX listener inside STARTTLS.
for name in ("lf-dot-lf", "cr-dot-cr", "crlf-dot-lf", "cr-dot-crlf"):
    attack = HDR + b"line1" + BARE_FAKE_ENDS[name] + SMUG + END
    rows.append(
        Row(
            name=f"strict-{name}[mx-starttls]",
            listener="mx",
            prelude="starttls-data",
            send=attack,
            expect=("550 5.5.2",),
            end="closed",
        )
    )
    rows.append(
        Row(
            name=f"normalising-{name}[mx-starttls]",
            listener="mx",
            prelude="starttls-data",
            send=attack,
            expect=("250 2.0.0",),
            delivered=1,
            contains=(SMUG,),
            config={"reject_bare_line_endings": False},
        )
    )

# No reply before the real end: the fake end and the smuggled envelope
# arrive first, the server must stay silent until CRLF.CRLF follows.
for name in ("lf-dot-lf", "cr-dot-crlf", "crlf-dot-lf"):
    rows += on_both(
        f"silent-until-end-{name}",
        prelude="data",
        before=HDR + b"line1" + BARE_FAKE_ENDS[name] + SMUG,
        send=END,
        expect=("550 5.5.2",),
        end="closed",
    )
    rows += on_both(
        f"silent-until-end-normalising-{name}",
        prelude="data",
        before=HDR + b"line1" + BARE_FAKE_ENDS[name] + SMUG,
        send=END,
        expect=("250 2.0.0",),
        delivered=1,
        contains=(SMUG,),
        config={"reject_bare_line_endings": False},
    )

# BDAT frames the message by its chunk sizes, so no fake end can end it.  But
# without BODY=BINARYMIME the message is text all the same, and a bare LF
# taken in here would be a fake end for the next hop that relays it with DATA.
for name in ("lf-dot-lf", "cr-dot-cr", "crlf-dot-lf", "cr-dot-crlf"):
    body = HDR + b"line1" + BARE_FAKE_ENDS[name] + SMUG + b"\r\n"
    rows += on_both(
        f"bdat-strict-{name}",
        prelude="envelope",
        send=b"BDAT %d LAST\r\n" % len(body) + body,
        expect=("550 5.5.2",),
        check=_no_smuggled_envelope,
    )
    rows += on_both(
        f"bdat-normalising-{name}",
        prelude="envelope",
        send=b"BDAT %d LAST\r\n" % len(body) + body,
        expect=("250 2.0.0",),
        delivered=1,
        contains=(SMUG,),
        config={"reject_bare_line_endings": False},
        check=_no_smuggled_envelope,
    )


def _boundaries(data: bytes, fake: bytes) -> tuple[bytes, ...]:
    """``data`` split before, inside and after the fake end and the real end."""
    cuts: set[int] = set()
    for marker in (fake, END):
        start = data.find(marker) if marker is fake else data.rfind(marker)
        cuts.update(range(start, start + len(marker) + 1))
    points = sorted(cut for cut in cuts if 0 < cut < len(data))
    pieces, previous = [], 0
    for point in points:
        pieces.append(data[previous:point])
        previous = point
    pieces.append(data[previous:])
    return tuple(pieces)


# Other chunkings of the same bytes: one byte per write, and a write
# boundary at every byte of the fake and of the real end.
for name in ("lf-dot-lf", "cr-dot-cr", "crlf-dot-cr"):
    attack = HDR + b"line1" + BARE_FAKE_ENDS[name] + SMUG + END
    rows += on_both(
        f"boundaries-{name}",
        prelude="data",
        send=_boundaries(attack, BARE_FAKE_ENDS[name]),
        expect=("550 5.5.2",),
        end="closed",
    )
    rows += on_both(
        f"boundaries-normalising-{name}",
        prelude="data",
        send=_boundaries(attack, BARE_FAKE_ENDS[name]),
        expect=("250 2.0.0",),
        delivered=1,
        contains=(SMUG,),
        config={"reject_bare_line_endings": False},
    )
for name in ("lf-dot-lf", "cr-dot-crlf"):
    attack = HDR + b"line1" + BARE_FAKE_ENDS[name] + SMUG + END
    rows.append(
        Row(
            name=f"bytewise-{name}[mx]",
            listener="mx",
            prelude="data",
            send=tuple(attack[i : i + 1] for i in range(len(attack))),
            expect=("550 5.5.2",),
            end="closed",
        )
    )
rows.append(
    Row(
        name="bytewise-normalising-lf-dot-lf[submission]",
        listener="submission",
        prelude="data",
        send=tuple((HDR + b"x\n.\n" + SMUG + END)[i : i + 1] for i in range(len(HDR + SMUG) + 9)),
        expect=("250 2.0.0",),
        delivered=1,
        contains=(SMUG,),
        config={"reject_bare_line_endings": False},
    )
)


def _dot_stuffing(harness: Harness) -> None:
    mail = harness.mailer.messages[-1]
    assert message_body(mail) == b"Subject: t\r\n\r\n.\r\n \r\nx\r\n.\r\n"


# Dot-stuffing: "..", ". ", ".x" lines are stored as ".", " ", "x" and end nothing.
rows += on_both(
    "dot-stuffing",
    prelude="data",
    send=b"Subject: t\r\n\r\n..\r\n. \r\n.x\r\n..\r\n" + b".\r\n",
    expect=("250 2.0.0",),
    delivered=1,
    check=_dot_stuffing,
)
# A message that is only the end marker, right after the 354.
rows += on_both("empty-message", prelude="data", send=b".\r\n", expect=("250 2.0.0",), delivered=1)
# SIZE= never decides where a message ends.
rows.append(
    Row(
        name="size-does-not-frame[mx]",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> SIZE=10\r\nRCPT TO:<b@our.example>\r\nDATA\r\n"
        + b"0123456789"
        + SMUG
        + END,
        expect=("250 2.1.0", "250 2.1.5", "354", "250 2.0.0"),
        delivered=1,
        contains=(b"0123456789" + SMUG,),
    )
)
# BDAT chunk contents are never parsed: a fake (or real) end inside is data.
_CHUNK = b"x\r\n.\r\n" + SMUG + b".\r\n"
rows.append(
    Row(
        name="bdat-opaque[mx]",
        listener="mx",
        prelude="envelope",
        send=b"BDAT %d LAST\r\n" % len(_CHUNK) + _CHUNK,
        expect=("250 2.0.0",),
        delivered=1,
        contains=(_CHUNK,),
    )
)
rows.append(
    Row(
        name="bdat-opaque-two-chunks[submission]",
        listener="submission",
        prelude="envelope",
        send=b"BDAT %d\r\n" % len(_CHUNK) + _CHUNK + b"BDAT 5 LAST\r\n\r\n.\r\n",
        expect=("250 2.0.0", "250 2.0.0"),
        delivered=1,
        contains=(_CHUNK + b"\r\n.\r\n",),
    )
)

# The same bytes in other reads give the same reply.  The message is always
# refused; which refusal it gets must not depend on where the reads fall.
# F1 (found by the fuzzer, fixed in smtp_recv/protocol/_data.py): the reply
# used to depend on which fault arrived in an earlier read.
_NUL_LINE, _BARE_LINE = b"a\x00b\r\n", b"c\nd\r\n"
_BIG_LINE = b"x" * 2000 + b"\r\n"
#: (first read, second read, max_message_size): a message refused for two reasons.
TWO_REASONS = {
    "nul-then-bare-lf": (_NUL_LINE, _BARE_LINE + END, FAST.max_message_size),
    "bare-lf-then-nul": (_BARE_LINE, _NUL_LINE + END, FAST.max_message_size),
    "too-big-then-bare-lf": (_BIG_LINE, _BARE_LINE + END, 1024),
    "too-big-then-nul": (_BIG_LINE, _NUL_LINE + END, 1024),
}
for name, (first, second, size) in TWO_REASONS.items():
    # Refused (550 or 552) however the reads fall; nothing delivered; and
    # with a bare LF or a NUL in it, a fake end to some parser, the session
    # ends there, even when the size was what refused the message.
    rows += on_both(
        f"refused-in-one-read-{name}",
        prelude="data",
        send=first + second,
        expect=("55",),
        end="closed",
        config={"max_message_size": size},
    )
    rows += on_both(
        f"refused-in-two-reads-{name}",
        prelude="data",
        before=first,
        send=second,
        expect=("55",),
        end="closed",
        config={"max_message_size": size},
    )


async def _refusal(first: bytes, second: bytes, size: int, *, split: bool) -> str:
    async with running(max_message_size=size) as harness:
        client = await prelude(harness.server, "mx", "data")
        try:
            if split:
                await client.send(first)
                await client.quiet()
                await client.send(second)
            else:
                await client.send(first + second)
            return (await client.reply()).last
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("first", "second", "size"),
    [
        TWO_REASONS[name]
        for name in ("nul-then-bare-lf", "too-big-then-bare-lf", "too-big-then-nul")
    ],
    ids=["nul-then-bare-lf", "too-big-then-bare-lf", "too-big-then-nul"],
)
async def test_refusal_reason_does_not_depend_on_reads(
    first: bytes, second: bytes, size: int
) -> None:
    """The same bytes in one read or two get the same reply."""
    whole = await _refusal(first, second, size, split=False)
    assert await _refusal(first, second, size, split=True) == whole


# A bare CR or LF in a command line: one error, never two commands.
COMMAND_LINES = {
    "noop-lf-noop": b"NOOP\nNOOP\r\n",
    "noop-cr-noop": b"NOOP\rNOOP\r\n",
    "noop-cr": b"NOOP\r\r\n",
    "lf-only": b"\n\r\n",
    "rset-lf-mail": b"RSET\nMAIL FROM:<ceo@our.example>\r\n",
    "ehlo-cr-name": b"EHLO a\rb\r\n",
    "quit-lf": b"QUIT\n\r\n",
}
for name, line in COMMAND_LINES.items():
    rows += on_both(f"command-bare-{name}", prelude="greet", send=line, expect=("500 5.5.2",))
# In a transaction: "MAIL ...\nRCPT ..." is not a MAIL and not a RCPT.
rows += on_both(
    "command-bare-lf-in-envelope",
    prelude="auth",
    send=b"MAIL FROM:<user@our.example>\nRCPT TO:<ceo@our.example>\r\nRCPT TO:<x@our.example>\r\n",
    expect=("500 5.5.2", "503 5.5.1"),
    config={},
)
rows.append(
    Row(
        name="command-bare-lf-then-data[mx]",
        listener="mx",
        prelude="envelope",
        send=b"DATA\nMAIL FROM:<ceo@our.example>\r\nDATA\r\nx\r\n.\r\n",
        expect=("500 5.5.2", "354", "250 2.0.0"),
        delivered=1,
    )
)


@pytest.mark.parametrize("row", params(rows))
async def test_smuggling(row: Row) -> None:
    await run_row(row)
