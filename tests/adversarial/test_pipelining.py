"""SECURITY-CASES.md section 2: pipelining and synchronisation.

A client that talks before the greeting is refused (``554 5.5.0``) and
dropped; commands pipelined in one write are answered in order, in one
write, and each is judged on its own.
"""

from __future__ import annotations

import pytest
import trio

from .harness import Row, params, prelude, run_row, running

EARLY = {
    "ehlo": b"EHLO client.example\r\n",
    "crlf": b"\r\n",
    "one-byte": b"E",
    "whole-transaction": b"EHLO c\r\nMAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n"
    b"DATA\r\nx\r\n.\r\nQUIT\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}
rows = [
    # With a greeting delay, whatever the client sends first is caught.
    Row(
        name=f"early-talker-{name}",
        listener="mx",
        prelude="connect",
        send=data,
        expect=("554 5.5.0",),
        end="closed",
        config={"greeting_delay": 0.3},
    )
    for name, data in EARLY.items()
]
rows += [
    Row(
        name="pipelined-envelope-in-order",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n"
        b"RCPT TO:<c@victim.example>\r\nRCPT TO:<d@our.example>\r\nDATA\r\n",
        expect=("250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354"),
        lookups=("b@our.example", "c@victim.example", "d@our.example"),
    ),
    Row(
        name="pipelined-whole-session",
        listener="mx",
        prelude="banner",
        send=b"EHLO c\r\nMAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n"
        b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@our.example>\r\n"
        b"DATA\r\ny\r\n.\r\nQUIT\r\n",
        expect=(
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0",
        ),
        end="closed",
        delivered=2,
    ),
    Row(
        name="pipelined-whole-session-submission",
        listener="submission",
        prelude="greet",
        send=b"AUTH PLAIN AHVzZXJAb3VyLmV4YW1wbGUAcGFzc3dvcmQ=\r\n"
        b"MAIL FROM:<user@our.example>\r\nRCPT TO:<x@victim.example>\r\n"
        b"BDAT 3 LAST\r\nabcQUIT\r\n",
        expect=("235 2.7.0", "250 2.1.0", "250 2.1.5", "250 2.0.0", "221 2.0.0"),
        end="closed",
        delivered=1,
    ),
    Row(
        name="pipelined-errors-do-not-shift-replies",
        listener="mx",
        prelude="greet",
        send=b"NOOP\r\nXYZZY\r\nMAIL FROM:<bad\r\nMAIL FROM:<a@victim.example>\r\n"
        b"MAIL FROM:<b@victim.example>\r\nRSET\r\nRCPT TO:<b@our.example>\r\nVRFY\r\n"
        b"VRFY b\r\nEXPN x\r\nHELP\r\n",
        expect=(
            "250 2.0.0",
            "500 5.5.2",
            "501 5.5.4",
            "250 2.1.0",
            "503 5.5.1",
            "250 2.0.0",
            "503 5.5.1",
            "501 5.5.4",
            "252 2.5.0",
            "502 5.5.1",
            "214",
        ),
    ),
    Row(
        name="pipelined-refused-rcpt-then-data",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<c@victim.example>\r\nDATA\r\n",
        expect=("250 2.1.0", "550 5.1.1", "503 5.5.1"),
    ),
    Row(
        name="ehlo-resets-transaction",
        listener="mx",
        prelude="envelope",
        send=b"EHLO again\r\nDATA\r\nRCPT TO:<b@our.example>\r\n",
        expect=("250", "503 5.5.1", "503 5.5.1"),
    ),
    Row(
        name="data-with-argument",
        listener="mx",
        prelude="envelope",
        send=b"DATA x\r\nRSET x\r\nQUIT x\r\n",
        expect=("501 5.5.4", "501 5.5.4", "501 5.5.4"),
    ),
    Row(
        name="nested-mail",
        listener="mx",
        prelude="envelope",
        send=b"MAIL FROM:<ceo@our.example>\r\n",
        expect=("503 5.5.1",),
    ),
    Row(
        name="binarymime-needs-bdat",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> BODY=BINARYMIME\r\nRCPT TO:<b@our.example>\r\nDATA\r\n",
        expect=("250 2.1.0", "250 2.1.5", "503 5.5.1"),
    ),
    Row(
        name="data-after-bdat",
        listener="mx",
        prelude="envelope",
        send=b"BDAT 3\r\nabcDATA\r\n",
        expect=("250 2.0.0", "503 5.5.1"),
    ),
    Row(
        name="quit-mid-pipeline",
        listener="mx",
        prelude="greet",
        send=b"NOOP\r\nQUIT\r\nMAIL FROM:<ceo@our.example>\r\nRCPT TO:<b@our.example>\r\n",
        expect=("250 2.0.0", "221 2.0.0"),
        end="closed",
        lookups=(),
    ),
]


@pytest.mark.parametrize("row", params(rows))
async def test_pipelining(row: Row) -> None:
    await run_row(row)


async def test_pipelined_replies_in_one_write() -> None:
    """RFC 2920: the replies to a group come back together."""
    async with running() as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.send(
                b"MAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\n"
                b"RCPT TO:<c@victim.example>\r\nNOOP\r\nRSET\r\n"
            )
            await trio.sleep(0.2)
            first = await client.stream.receive_some(65536)
            assert first.count(b"\r\n") == 5, first
        finally:
            await client.aclose()
