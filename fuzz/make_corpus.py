"""Write the seed corpus: real SMTP dialogues, each with a fuzzer trailer.

Run from the repository root: ``python fuzz/make_corpus.py``.  Each seed is
checked to decode back to its own dialogue (see ``fuzz_core.decode``).
"""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzz_core  # noqa: E402

MX, MX_TLS, SUBMISSION, MX_LOOSE, SUBMISSION_LOOSE, SMALL, BARE, AUTH_NO_TLS = range(8)

PLAIN = base64.b64encode(b"\x00user@our.example\x00password")
ENVELOPE = b"EHLO client.example\r\nMAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n"
SMUGGLED = (
    b"MAIL FROM:<ceo@our.example>\r\nRCPT TO:<b@our.example>\r\nDATA\r\n"
    b"From: ceo@our.example\r\n\r\nsmuggled\r\n"
)
AUTH = b"EHLO client.example\r\nAUTH PLAIN " + PLAIN + b"\r\n"

SEEDS: dict[str, tuple[int, bytes]] = {
    "mx_simple": (MX, ENVELOPE + b"DATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n"),
    "mx_helo": (MX, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nx\r\n.\r\n"),
    "mx_two_messages": (
        MX,
        ENVELOPE + b"DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@our.example>\r\n"
        b"DATA\r\ntwo\r\n.\r\nQUIT\r\n",
    ),
    "mx_dot_stuffing": (MX, ENVELOPE + b"DATA\r\n..\r\n. \r\n.x\r\n..\r\n...\r\n.\r\n"),
    "mx_empty_message": (MX, ENVELOPE + b"DATA\r\n.\r\n"),
    "mx_rset_noop_vrfy": (
        MX,
        b"EHLO c\r\nNOOP\r\nNOOP hello\r\nHELP\r\nVRFY root\r\nVRFY\r\nRSET\r\nRSET x\r\nQUIT\r\n",
    ),
    "mx_params": (
        MX,
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=x+2B AUTH=<>\r\n"
        b"RCPT TO:<b@our.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@our.example\r\n"
        b"DATA\r\nx\r\n.\r\n",
    ),
    "mx_bad_params": (
        MX,
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=abc\r\nMAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\n"
        b"MAIL FROM:<a@b.example> FOO=BAR\r\nMAIL FROM:<a@b.example> SIZE=99999999999\r\n",
    ),
    "mx_utf8": (
        MX,
        "EHLO c\r\nMAIL FROM:<jöran@b.example>\r\nMAIL FROM:<jöran@b.example> SMTPUTF8\r\n"
        "RCPT TO:<δ@our.example>\r\nDATA\r\nx\r\n.\r\n".encode(),
    ),
    "mx_addresses": (
        MX,
        b'EHLO c\r\nMAIL FROM:<"a b"@[1.2.3.4]>\r\nRCPT TO:<@our.example:b@victim.example>\r\n'
        b"RCPT TO:<b%our.example@victim.example>\r\nRCPT TO:<B@OUR.EXAMPLE.>\r\n"
        b"RCPT TO:<b@[IPv6:::1]>\r\nRCPT TO:<>\r\nRCPT TO:<a\x00b@our.example>\r\n",
    ),
    "mx_bdat": (
        MX,
        ENVELOPE + b"BDAT 5\r\nhello BDAT 7 LAST\r\n world\r\nQUIT\r\n",
    ),
    "mx_bdat_binary": (
        MX,
        b"EHLO c\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nRCPT TO:<b@our.example>\r\n"
        b"DATA\r\nBDAT 3 LAST\r\n\x00\r\n",
    ),
    "mx_bdat_errors": (
        MX,
        b"EHLO c\r\nBDAT 4\r\nabcdMAIL FROM:<>\r\nRCPT TO:<b@our.example>\r\nBDAT 0 LAST\r\n"
        b"BDAT 2 LAST\r\nxyBDAT 99999999999999999999999 LAST\r\n",
    ),
    "mx_bdat_syntax": (MX, ENVELOPE + b"BDAT x\r\n"),
    "mx_starttls_injection": (MX, b"EHLO c\r\nSTARTTLS\r\nEHLO injected\r\nMAIL FROM:<>\r\n"),
    "mx_starttls_errors": (MX, b"STARTTLS\r\nHELO c\r\nSTARTTLS\r\nEHLO c\r\nSTARTTLS x\r\n"),
    "mx_tls_session": (MX_TLS, b"EHLO c\r\nSTARTTLS\r\nAUTH PLAIN\r\nMAIL FROM:<>\r\n"),
    "mx_auth_refused": (MX, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nAUTH LOGIN\r\n"),
    "mx_pipelined": (
        MX,
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<b@our.example>\r\n"
        b"RCPT TO:<c@our.example>\r\nRCPT TO:<d@victim.example>\r\nDATA\r\nx\r\n.\r\n"
        b"RSET\r\nQUIT\r\n",
    ),
    "mx_early_http": (MX, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "mx_junk": (MX, b"XYZZY\r\n" * 8 + b"EXPN x\r\n\xff\xfe\r\nNOOP\nNOOP\r\nNOOP\rX\r\n"),
    "mx_long_line": (MX, b"NOOP " + b"A" * 600 + b"\r\nEHLO c\r\n"),
    "mx_smuggle_lf": (MX, ENVELOPE + b"DATA\r\nline1\n.\n" + SMUGGLED + b"\r\n.\r\n"),
    "mx_smuggle_lf_crlf": (MX, ENVELOPE + b"DATA\r\nline1\n.\r\n" + SMUGGLED + b"\r\n.\r\n"),
    "mx_smuggle_crlf_lf": (MX, ENVELOPE + b"DATA\r\nline1\r\n.\n" + SMUGGLED + b"\r\n.\r\n"),
    "mx_smuggle_cr": (MX, ENVELOPE + b"DATA\r\nline1\r.\r" + SMUGGLED + b"\r\n.\r\n"),
    "mx_smuggle_cr_crlf": (MX, ENVELOPE + b"DATA\r\nline1\r.\r\n" + SMUGGLED + b"\r\n.\r\n"),
    "mx_smuggle_nul": (MX, ENVELOPE + b"DATA\r\nline1\r\n\x00.\r\n" + SMUGGLED + b"\r\n.\r\n"),
    "loose_smuggle_lf": (MX_LOOSE, ENVELOPE + b"DATA\r\nline1\n.\n" + SMUGGLED + b"\r\n.\r\n"),
    "loose_smuggle_cr": (MX_LOOSE, ENVELOPE + b"DATA\r\nline1\r.\r" + SMUGGLED + b"\r\n.\r\n"),
    "small_too_big": (SMALL, ENVELOPE + b"DATA\r\n" + b"x" * 100 + b"\r\n.\r\nQUIT\r\n"),
    "small_bdat_too_big": (SMALL, ENVELOPE + b"BDAT 100 LAST\r\n" + b"y" * 100),
    "small_bdat_sum": (
        SMALL,
        ENVELOPE + b"BDAT 40\r\n" + b"a" * 40 + b"BDAT 40 LAST\r\n" + b"b" * 40,
    ),
    "bare_no_extensions": (
        BARE,
        ENVELOPE + b"BDAT 3 LAST\r\nabcMAIL FROM:<a@b.example> SMTPUTF8\r\n",
    ),
    "sub_auth_plain": (
        SUBMISSION,
        AUTH + b"MAIL FROM:<user@our.example>\r\nRCPT TO:<x@victim.example>\r\n"
        b"DATA\r\nhello\r\n.\r\nQUIT\r\n",
    ),
    "sub_auth_plain_prompt": (SUBMISSION, b"EHLO c\r\nAUTH PLAIN\r\n" + PLAIN + b"\r\nNOOP\r\n"),
    "sub_auth_login": (
        SUBMISSION,
        b"EHLO c\r\nAUTH LOGIN\r\n"
        + base64.b64encode(b"user@our.example")
        + b"\r\n"
        + base64.b64encode(b"password")
        + b"\r\nMAIL FROM:<user@our.example>\r\n",
    ),
    "sub_auth_login_initial": (
        SUBMISSION,
        b"EHLO c\r\nAUTH LOGIN "
        + base64.b64encode(b"u")
        + b"\r\n"
        + base64.b64encode(b"p")
        + b"\r\n",
    ),
    "sub_auth_cancel": (SUBMISSION, b"EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\n"),
    "sub_auth_bad_base64": (
        SUBMISSION,
        b"EHLO c\r\nAUTH PLAIN AGFsaWNl*AGNvcnJlY3QtaG9yc2U=\r\nAUTH PLAIN AAA=BBB\r\n"
        b"AUTH PLAIN AGE\r\nAUTH PLAIN =\r\nAUTH CRAM-MD5\r\nAUTH\r\nAUTH FOO\r\n",
    ),
    "sub_before_auth": (
        SUBMISSION,
        b"AUTH PLAIN " + PLAIN + b"\r\nEHLO c\r\nMAIL FROM:<user@our.example>\r\n"
        b"RCPT TO:<x@y.example>\r\nDATA\r\nBDAT 3\r\nabc",
    ),
    "sub_auth_twice": (SUBMISSION, AUTH + AUTH[len(b"EHLO client.example\r\n") :]),
    "sub_auth_in_transaction": (
        SUBMISSION,
        AUTH + b"MAIL FROM:<user@our.example>\r\nAUTH PLAIN " + PLAIN + b"\r\n",
    ),
    "sub_auth_long": (SUBMISSION, b"EHLO c\r\nAUTH PLAIN\r\n" + b"A" * 13000 + b"\r\n"),
    "sub_smuggle": (
        SUBMISSION,
        AUTH + b"MAIL FROM:<user@our.example>\r\nRCPT TO:<x@victim.example>\r\n"
        b"DATA\r\nline1\n.\n" + SMUGGLED + b"\r\n.\r\n",
    ),
    "sub_bdat": (
        SUBMISSION,
        AUTH + b"MAIL FROM:<user@our.example>\r\nRCPT TO:<x@victim.example>\r\n"
        b"BDAT 10 LAST\r\n\r\n.\r\nMAIL F",
    ),
    "auth_no_tls": (AUTH_NO_TLS, AUTH + b"MAIL FROM:<>\r\n"),
}


def encode(
    stream: bytes, config: int, decisions: int, points: list[int], eof: bool, flush: int = 0
) -> bytes:
    """The fuzzer input that ``fuzz_core.decode`` reads back as this case."""
    trailer = bytearray([flush, int(eof)])
    for point in reversed(points):
        trailer += point.to_bytes(2, "little")
    trailer += bytes([len(points)])
    trailer += decisions.to_bytes(2, "big")
    trailer += bytes([config])
    return stream + bytes(trailer)


def main() -> None:
    corpus = HERE / "corpus"
    corpus.mkdir(exist_ok=True)
    for name, (config, stream) in SEEDS.items():
        # Accept everything but the third decision; split at a few places.
        digest = hashlib.sha256(stream).digest()
        points = [int.from_bytes(digest[i : i + 2], "little") for i in range(0, 8, 2)]
        # Every seed with the real DATA flush size; DATA seeds also with a tiny one.
        flushes = (0, 2) if b"DATA\r\n" in stream else (0,)
        for flush in flushes:
            data = encode(stream, config, 0xFFFB, points, eof=True, flush=flush)
            case = fuzz_core.decode(data)
            assert case.stream == stream, name
            assert case.config is fuzz_core.CONFIGS[config], name
            assert case.flush == fuzz_core.FLUSH_SIZES[flush], name
            fuzz_core.check(case)
            suffix = "" if flush == 0 else f"_flush{fuzz_core.FLUSH_SIZES[flush]}"
            (corpus / f"seed_{name}{suffix}").write_bytes(data)
    print(f"wrote {len(list(corpus.iterdir()))} seeds to {corpus}")


if __name__ == "__main__":
    main()
