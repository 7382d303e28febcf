"""SECURITY-CASES.md section 4: resources.

Every buffer is bounded whatever the client sends, every limit answers
with its own reply, and every wait has a deadline.  The size rows run with
``FAST.max_message_size`` (256 KiB); the time rows run on ``autojump_clock``
with the default timeouts, so minutes of virtual time pass in milliseconds.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest
import trio

from smtp_recv import ServerConfig

from .harness import (
    END,
    FAST,
    Client,
    Harness,
    Row,
    connect,
    healthy,
    params,
    peak_rss_kib,
    prelude,
    reset_peak_rss,
    rss_kib,
    run_row,
    running,
    start_tls,
)

LIMIT = FAST.max_message_size


def _lines(total: int, width: int = 998) -> bytes:
    """``total`` bytes or so of ordinary text lines."""
    line = b"y" * width + b"\r\n"
    return line * (total // len(line) + 1)


def _recipients(count: int):  # type: ignore[no-untyped-def]
    def check(harness: Harness) -> None:
        mail = harness.mailer.messages[-1]
        assert len(mail.recipients) == count

    return check


_HUNDRED_AND_ONE = b"".join(b"RCPT TO:<r%d@our.example>\r\n" % i for i in range(101))

rows = [
    # Command lines (RFC 5321 4.5.3.1.4: 512 octets with CRLF).
    Row(
        name="command-line-512-ok",
        listener="mx",
        prelude="greet",
        send=b"NOOP " + b"A" * 505 + b"\r\n",
        expect=("250 2.0.0",),
    ),
    Row(
        name="command-line-513-too-long",
        listener="mx",
        prelude="greet",
        send=b"NOOP " + b"A" * 506 + b"\r\n",
        expect=("500 5.5.2",),
    ),
    Row(
        name="command-line-600",
        listener="mx",
        prelude="greet",
        send=b"NOOP " + b"A" * 600 + b"\r\nNOOP\r\n",
        expect=("500 5.5.2", "250 2.0.0"),
    ),
    Row(
        name="command-line-600-submission",
        listener="submission",
        prelude="auth",
        send=b"NOOP " + b"A" * 600 + b"\r\nNOOP\r\n",
        expect=("500 5.5.2", "250 2.0.0"),
    ),
    Row(
        name="command-line-too-long-is-counted",
        listener="mx",
        prelude="greet",
        send=(b"NOOP " + b"A" * 600 + b"\r\n") * 3,
        expect=("500 5.5.2", "500 5.5.2", "421 4.7.0"),
        end="closed",
        config={"hard_error_limit": 2},
    ),
    Row(
        name="unknown-verb-past-buffer",
        listener="mx",
        prelude="greet",
        send=b"X" * 20000 + b"\r\nNOOP\r\n",
        expect=("500 5.5.2", "250 2.0.0"),
    ),
    Row(
        name="mail-line-too-long",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> ENVID=" + b"a" * 1200 + b"\r\n",
        expect=("500 5.5.2",),
        config={"dsn": True},
    ),
    Row(
        name="rcpt-line-too-long",
        listener="mx",
        prelude="envelope",
        send=b"RCPT TO:<b@our.example> ORCPT=rfc822;" + b"a" * 1100 + b"\r\n",
        expect=("500 5.5.2",),
        lookups=(),
        config={"dsn": True},
    ),
    Row(
        name="path-too-long",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<" + b"a" * 60 + b"@" + b"b" * 200 + b".example>\r\n",
        expect=("501 5.1.7",),
    ),
    Row(
        name="helo-name-too-long",
        listener="mx",
        prelude="banner",
        send=b"EHLO " + b"h" * 300 + b"\r\n",
        expect=("501 5.5.4",),
    ),
    Row(
        name="helo-name-with-control",
        listener="mx",
        prelude="banner",
        send=b"EHLO a\x01b\r\nEHLO a b\r\nEHLO\r\n",
        expect=("501 5.5.4",) * 3,
    ),
    # A DATA line of 100 kB: streamed, no reply before the end.
    Row(
        name="data-line-100k",
        listener="mx",
        prelude="data",
        before=b"x" * 100_000,
        send=END,
        expect=("250 2.0.0",),
        delivered=1,
    ),
    Row(
        name="data-line-100k-submission",
        listener="submission",
        prelude="data",
        before=b"x" * 100_000,
        send=END,
        expect=("250 2.0.0",),
        delivered=1,
    ),
    Row(
        name="data-line-100k-bare-cr",
        listener="mx",
        prelude="data",
        before=b"x" * 50_000 + b"\r" + b"x" * 50_000,
        send=END,
        expect=("550 5.5.2",),
        end="closed",
    ),
    # Twice the size limit, without SIZE: read to its end, then 552.
    Row(
        name="data-twice-the-limit",
        listener="mx",
        prelude="data",
        before=_lines(2 * LIMIT),
        send=END,
        expect=("552 5.3.4",),
    ),
    Row(
        name="data-twice-the-limit-submission",
        listener="submission",
        prelude="data",
        before=_lines(2 * LIMIT),
        send=END,
        expect=("552 5.3.4",),
    ),
    Row(
        name="data-twice-the-limit-one-line",
        listener="mx",
        prelude="data",
        before=b"z" * (2 * LIMIT),
        send=END,
        expect=("552 5.3.4",),
    ),
    Row(
        name="data-just-over-the-limit",
        listener="mx",
        prelude="data",
        send=b"z" * (LIMIT + 1) + END,
        expect=("552 5.3.4",),
    ),
    Row(
        name="data-at-the-limit",
        listener="mx",
        prelude="data",
        send=b"z" * (LIMIT - 2) + END,
        expect=("250 2.0.0",),
        delivered=1,
    ),
    # SIZE= on MAIL: refused at once when over the limit.
    Row(
        name="size-11-digits",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> SIZE=99999999999\r\n",
        expect=("552 5.3.4",),
    ),
    Row(
        name="size-20-digits",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> SIZE=99999999999999999999\r\n",
        expect=("552 5.3.4",),
    ),
    Row(
        name="size-limit-plus-one",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> SIZE=%d\r\n" % (LIMIT + 1),
        expect=("552 5.3.4",),
    ),
    Row(
        name="size-at-limit",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example> SIZE=%d\r\n" % LIMIT,
        expect=("250 2.1.0",),
    ),
    Row(
        name="size-over-limit-submission",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<user@our.example> SIZE=99999999999\r\n",
        expect=("552 5.3.4",),
    ),
    # BDAT counts: nothing is allocated from them.
    Row(
        name="bdat-huge-count",
        listener="mx",
        prelude="envelope",
        send=b"BDAT 99999999999999999999999 LAST\r\n",
        expect=("552 5.3.4",),
        end="closed",
    ),
    Row(
        name="bdat-huge-count-submission",
        listener="submission",
        prelude="envelope",
        send=b"BDAT 99999999999999999999999 LAST\r\n",
        expect=("552 5.3.4",),
        end="closed",
    ),
    Row(
        # Read to its end and refused, as a DATA message too large.
        name="bdat-count-over-limit",
        listener="mx",
        prelude="envelope",
        send=b"BDAT %d LAST\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1) + b"NOOP\r\n",
        expect=("552 5.3.4", "250 2.0.0"),
    ),
    Row(
        name="bdat-huge-count-before-mail",
        listener="mx",
        prelude="greet",
        send=b"BDAT 99999999999999999999999\r\n",
        expect=("552 5.3.4",),
        end="closed",
    ),
    Row(
        name="bdat-leading-zeros",
        listener="mx",
        prelude="envelope",
        send=b"BDAT " + b"0" * 40 + b"5 LAST\r\nhello",
        expect=("250 2.0.0",),
        delivered=1,
    ),
    Row(
        name="bdat-before-mail",
        listener="mx",
        prelude="greet",
        send=b"BDAT 29\r\nMAIL FROM:<ceo@our.example>\r\nNOOP\r\n",
        expect=("503 5.5.1", "250 2.0.0"),
    ),
    Row(
        name="bdat-before-rcpt",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>\r\nBDAT 5 LAST\r\nhelloNOOP\r\n",
        expect=("250 2.1.0", "503 5.5.1", "250 2.0.0"),
    ),
    Row(
        name="bdat-after-last",
        listener="mx",
        prelude="envelope",
        send=b"BDAT 3 LAST\r\nabcBDAT 3 LAST\r\nxyzNOOP\r\n",
        expect=("250 2.0.0", "503 5.5.1", "250 2.0.0"),
        delivered=1,
    ),
    Row(
        name="bdat-chunks-over-limit",
        listener="mx",
        prelude="envelope",
        send=b"BDAT %d\r\n" % (LIMIT - 10)
        + b"a" * (LIMIT - 10)
        + b"BDAT 20 LAST\r\n"
        + b"b" * 20
        + b"BDAT 3 LAST\r\nabc",
        expect=("250 2.0.0", "552 5.3.4", "503 5.5.1"),
    ),
    Row(
        name="bdat-syntax-word",
        listener="mx",
        prelude="envelope",
        send=b"BDAT x\r\n",
        expect=("501 5.5.4",),
        end="closed",
    ),
    Row(
        name="bdat-syntax-negative",
        listener="mx",
        prelude="envelope",
        send=b"BDAT -1\r\n",
        expect=("501 5.5.4",),
        end="closed",
    ),
    Row(
        name="bdat-syntax-not-last",
        listener="mx",
        prelude="envelope",
        send=b"BDAT 5 NOTLAST\r\nhello",
        expect=("501 5.5.4",),
        end="closed",
    ),
    Row(
        name="bdat-syntax-bare",
        listener="mx",
        prelude="envelope",
        send=b"BDAT\r\n",
        expect=("501 5.5.4",),
        end="closed",
    ),
    Row(
        name="bdat-syntax-extra-word",
        listener="mx",
        prelude="envelope",
        send=b"BDAT 5 LAST x\r\nhello",
        expect=("501 5.5.4",),
        end="closed",
    ),
    Row(
        name="bdat-syntax-unicode-digits",
        listener="mx",
        prelude="envelope",
        send="BDAT \u0665\r\n".encode(),
        expect=("501 5.5.4",),
        end="closed",
    ),
    # Recipients: 100 must be accepted; past the limit 452, earlier ones kept.
    Row(
        name="recipients-100-then-452",
        listener="mx",
        prelude="greet",
        send=b"MAIL FROM:<a@victim.example>\r\n" + _HUNDRED_AND_ONE + b"DATA\r\nx\r\n.\r\n",
        expect=("250 2.1.0", *("250 2.1.5",) * 100, "452 4.5.3", "354", "250 2.0.0"),
        delivered=1,
        check=_recipients(100),
        config={"max_recipients": 100},
    ),
    Row(
        name="recipients-100-submission",
        listener="submission",
        prelude="auth",
        send=b"MAIL FROM:<user@our.example>\r\n"
        + _HUNDRED_AND_ONE[: _HUNDRED_AND_ONE.rindex(b"RCPT")]
        + b"DATA\r\nx\r\n.\r\n",
        expect=("250 2.1.0", *("250 2.1.5",) * 100, "354", "250 2.0.0"),
        delivered=1,
        check=_recipients(100),
    ),
    # Junk: 500 for each, then 421 at the hard limit.
    Row(
        name="junk-commands",
        listener="mx",
        prelude="greet",
        send=b"XYZZY\r\n" * 30,
        expect=(*("500 5.5.2",) * 20, "421 4.7.0"),
        end="closed",
    ),
    Row(
        name="junk-commands-submission",
        listener="submission",
        prelude="auth",
        send=b"XYZZY\r\n" * 30,
        expect=(*("500 5.5.2",) * 20, "421 4.7.0"),
        end="closed",
    ),
    Row(
        name="junk-not-implemented",
        listener="mx",
        prelude="greet",
        send=b"EXPN root\r\nTURN\r\nETRN x\r\n",
        expect=("502 5.5.1",) * 3,
    ),
    Row(
        name="junk-binary",
        listener="mx",
        prelude="greet",
        send=b"\xff\xfe\xfd\r\n\x00\x00\r\n",
        expect=("500 5.5.2", "500 5.5.2"),
    ),
]
HTTP = {
    "get": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": b"POST /form HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    "connect": b"CONNECT victim.example:25 HTTP/1.1\r\n\r\n",
    "head-lowercase": b"head / http/1.0\r\n\r\n",
    "options": b"OPTIONS * HTTP/1.1\r\n\r\n",
}
for name, request in HTTP.items():
    rows.append(
        Row(
            name=f"http-{name}",
            listener="mx",
            prelude="banner",
            send=request,
            expect=("554 5.5.0",),
            end="closed",
        )
    )
rows.append(
    Row(
        name="http-get-submission",
        listener="submission",
        prelude="banner",
        send=HTTP["get"],
        expect=("554 5.5.0",),
        end="closed",
    )
)
rows.append(
    Row(
        name="http-get-after-ehlo",
        listener="mx",
        prelude="greet",
        send=HTTP["get"],
        expect=("554 5.5.0",),
        end="closed",
    )
)


@pytest.mark.parametrize("row", params(rows))
async def test_resources(row: Row) -> None:
    await run_row(row)


# -- memory ---------------------------------------------------------------------
MIB = 1024


async def _bounded(client: Client, payload: bytes) -> int:
    """Send ``payload``; return how much the process's peak RSS grew (KiB)."""
    can_reset = reset_peak_rss()
    before = peak_rss_kib() if can_reset else rss_kib()
    # In pieces, as a real client would: trio's client-side SSLStream would
    # otherwise encrypt the whole payload into one buffer in this process.
    view = memoryview(payload)
    for start in range(0, len(view), 65536):
        await client.send(view[start : start + 65536])
    # Let the server read it all.
    await client.quiet(0.3)
    after = peak_rss_kib() if can_reset else rss_kib()
    return after - before


async def test_ten_megabytes_without_a_line_end() -> None:
    payload = b"A" * 10_000_000
    async with running() as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            growth = await _bounded(client, payload)
            assert growth < 4 * MIB, f"RSS grew by {growth} KiB"
            await client.command("", "500 5.5.2")
            await client.command("NOOP", "250 2.0.0")
        finally:
            await client.aclose()


async def test_ten_megabyte_data_line() -> None:
    payload = b"B" * 10_000_000
    config = ServerConfig(hostname="mx.our.example", reverse_dns=False, max_message_size=1 << 20)
    async with running(config) as harness:
        client = await prelude(harness.server, "mx", "data")
        try:
            growth = await _bounded(client, payload)
            assert growth < 4 * MIB, f"RSS grew by {growth} KiB"
            await client.send(END)
            await client.expect("552 5.3.4")
        finally:
            await client.aclose()
        assert not harness.mailer.messages


async def test_ten_megabyte_sasl_line() -> None:
    payload = b"C" * 10_000_000
    async with running() as harness:
        client = await prelude(harness.server, "submission", "greet")
        try:
            await client.command("AUTH PLAIN", "334")
            growth = await _bounded(client, payload)
            assert growth < 4 * MIB, f"RSS grew by {growth} KiB"
            await client.command("", "500 5.5.6")
        finally:
            await client.aclose()


# -- connections ----------------------------------------------------------------
async def test_too_many_connections_from_one_address() -> None:
    async with running(max_connections_per_ip=2) as harness:
        first = await prelude(harness.server, "mx", "banner")
        second = await prelude(harness.server, "submission", "banner")
        third = await connect(harness.server.mx)
        try:
            await third.expect("421 4.7.0")
            assert not await third.closed()
        finally:
            await third.aclose()
        await first.aclose()
        await trio.sleep(0.1)
        again = await prelude(harness.server, "mx", "greet")
        await again.aclose()
        await second.aclose()


async def test_too_many_connections_in_all() -> None:
    async with running(max_connections=2, max_connections_per_ip=100) as harness:
        clients = [await prelude(harness.server, "mx", "banner") for _ in range(2)]
        extra = await connect(harness.server.mx)
        try:
            await extra.expect("421 4.3.2")
            assert not await extra.closed()
        finally:
            await extra.aclose()
            for client in clients:
                await client.aclose()


async def test_a_flood_past_the_connection_limit_is_closed_without_a_word() -> None:
    # Past max_connections a connection still costs a task and a 421 (on
    # 465 a TLS handshake first); past 100 more it costs nothing.  These
    # wait in their TLS handshake, so they all count at once, and they are
    # all queued before the server accepts the first (blocking connects,
    # no checkpoint in between).
    async with running(max_connections=1, max_connections_per_ip=1000) as harness:
        queued = [socket.create_connection(harness.server.submission) for _ in range(102)]
        held = [Client(stream, stream) for stream in map(_stream, queued[:101])]
        last = _stream(queued[101])
        extra = Client(last, last)
        try:
            assert await extra.closed() == b""
            for client in (held[0], held[100]):
                await client.quiet(0.2)
        finally:
            for client in [*held, extra]:
                await client.aclose()


def _stream(sock: socket.socket) -> trio.SocketStream:
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


DROPS = {
    "mid-data": (b"data", b"Subject: x\r\n\r\nhalf a messa"),
    "mid-data-after-crlf": (b"data", b"Subject: x\r\n\r\nline\r\n"),
    "mid-end-marker-dot": (b"data", b"Subject: x\r\n\r\nline\r\n."),
    "mid-end-marker-cr": (b"data", b"Subject: x\r\n\r\nline\r\n.\r"),
    "bdat-not-last": (b"envelope", b"BDAT 5\r\nhello"),
    "bdat-last-partial": (b"envelope", b"BDAT 5\r\nhelloBDAT 10 LAST\r\nworld"),
    "bdat-last-zero-missing": (b"envelope", b"BDAT 5\r\nhelloBDAT 0 LA"),
}


@pytest.mark.parametrize("listener", ["mx", "submission"])
@pytest.mark.parametrize(("kind", "data"), DROPS.values(), ids=DROPS.keys())
async def test_dropped_connection_delivers_nothing(listener: str, kind: bytes, data: bytes) -> None:
    async with running() as harness:
        client = await prelude(harness.server, listener, kind.decode())  # type: ignore[arg-type]
        await client.send(data)
        await trio.sleep(0.05)
        await client.aclose()
        await trio.sleep(0.2)
        assert not harness.mailer.messages


# -- time (autojump_clock, default timeouts) ------------------------------------
DEFAULTS = ServerConfig(hostname="mx.our.example", reverse_dns=False)


async def _dribble(client: Client, data: bytes, every: float) -> float:
    """Send ``data`` a byte every ``every`` seconds until the server answers."""
    start = trio.current_time()
    for byte in data:
        try:
            await client.send(bytes([byte]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            break
        with trio.move_on_after(every):
            await client.expect("421 4.4.2")
            return trio.current_time() - start
    await client.expect("421 4.4.2")
    return trio.current_time() - start


async def test_slow_command_line(autojump_clock: trio.abc.Clock) -> None:
    """A byte every 10 s: the line deadline (60 s) ends it, not the idle one."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            elapsed = await _dribble(client, b"NOOP " + b"x" * 100 + b"\r\n", 10.0)
            assert 55 <= elapsed <= 65 + 10, elapsed
            assert not await client.closed()
        finally:
            await client.aclose()


async def test_slow_data(autojump_clock: trio.abc.Clock) -> None:
    """A byte every 5 s in DATA: the minimum rate ends it; nothing delivered."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "data")
        try:
            elapsed = await _dribble(client, b"Subject: x\r\n\r\n" + b"x" * 100, 5.0)
            # (Plus the growing delays before the replies to refused commands.)
            assert elapsed <= DEFAULTS.data_rate_grace + 20, elapsed
            assert not await client.closed()
        finally:
            await client.aclose()
        assert not harness.mailer.messages


async def test_slow_bdat(autojump_clock: trio.abc.Clock) -> None:
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "submission", "envelope")
        try:
            await client.send(b"BDAT 100 LAST\r\n")
            elapsed = await _dribble(client, b"x" * 100, 5.0)
            # (Plus the growing delays before the replies to refused commands.)
            assert elapsed <= DEFAULTS.data_rate_grace + 20, elapsed
        finally:
            await client.aclose()
        assert not harness.mailer.messages


async def test_the_minimum_data_rate_runs_from_each_message(autojump_clock: trio.abc.Clock) -> None:
    """RFC 2920: one message's end and the next MAIL may share a write.

    The time between the two messages is not the second body's: it gets
    its own grace period and rate, as it would on a fresh connection.
    """
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "data")
        try:
            await client.send(
                b"Subject: one\r\n\r\none" + END + b"MAIL FROM:<a@victim.example>\r\n"
            )
            await client.expect("250 2.0.0")
            await client.expect("250 2.1.0")
            await trio.sleep(DEFAULTS.data_rate_grace + 60)  # well within command_timeout
            await client.command("RCPT TO:<bob@our.example>", "250 2.1.5")
            await client.command("DATA", "354")
            await trio.sleep(1)  # so the server waits for the body
            await client.send(b"Subject: two\r\n\r\ntwo" + END)
            await client.expect("250 2.0.0")
        finally:
            await client.aclose()
        assert len(harness.mailer.messages) == 2


async def test_a_refused_chunk_is_read_at_its_own_rate(autojump_clock: trio.abc.Clock) -> None:
    """A BDAT chunk refused (503, no transaction) is still read to its end,
    under the minimum rate from its own first byte, not an earlier message's."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "data")
        try:
            await client.send(b"Subject: one\r\n\r\none" + END)
            await client.expect("250 2.0.0")
            await trio.sleep(DEFAULTS.data_rate_grace + 60)  # well within command_timeout
            await client.send(b"BDAT 10\r\n01234")
            await trio.sleep(1)
            await client.send(b"56789")
            await client.expect("503")
            await client.command("NOOP", "250")
        finally:
            await client.aclose()


async def test_each_refused_chunk_drained_has_a_rate_clock_of_its_own(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The refusal that ends a drained chunk ends its clock: a later chunk,
    sent at twice the minimum rate, is not judged by the earlier one's."""
    config = dataclasses.replace(DEFAULTS, min_data_rate=1000.0, data_rate_grace=1.0)
    async with running(config) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.send(b"BDAT 10\r\n")
            await trio.sleep(0.3)  # the chunk is waited for: its clock starts
            await client.send(b"0123456789")
            await client.expect("503")
            await trio.sleep(3)
            await client.command("NOOP", "250")
            await client.send(b"BDAT 4000\r\n")
            for _ in range(8):  # 500 octets every 0.25 s: 2000 octets/s
                await client.send(b"x" * 500)
                await trio.sleep(0.25)
            await client.expect("503")
        finally:
            await client.aclose()


async def test_a_command_lines_deadline_starts_with_that_line(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Each command line has command_line_timeout (60 s) from its first byte.

    Lines split across writes are ordinary TCP: here DATA, the pipelined
    start of MAIL after a NOOP, and QUIT after a 70-second body.
    """
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.send(b"NO")
            await trio.sleep(30)
            await client.send(b"OP\r\nMAIL FROM:<a@vic")
            await client.expect("250 2.0.0")
            await trio.sleep(45)  # 75 s after NOOP began, 45 s into MAIL
            await client.send(b"tim.example>\r\n")
            await client.expect("250 2.1.0")
            await client.command("RCPT TO:<bob@our.example>", "250 2.1.5")
            await client.send(b"DA")
            await trio.sleep(1)
            await client.send(b"TA\r\n")
            await client.expect("354")
            for _ in range(70):  # 2 KiB/s: above the minimum rate
                await client.send(b"x" * 2046 + b"\r\n")
                await trio.sleep(1)
            await client.send(b".\r\nQU")
            await trio.sleep(1)
            await client.send(b"IT\r\n")
            await client.expect("250 2.0.0")
            await client.expect("221")
        finally:
            await client.aclose()
        assert len(harness.mailer.messages) == 1


async def test_bytes_that_arrive_as_the_deadline_passes_end_the_wait_there(
    mock_clock: trio.testing.MockClock,
) -> None:
    """The body's end and the deadline in the same instant: a timeout.

    The wait for the client returns with the bytes, but its cancel scope has
    fired too.  The session must time out at that wait (421, nothing
    delivered, the client retries), not carry the cancellation into the
    Mailer's call or a later wait.
    """
    async with running(DEFAULTS) as harness:
        raw = socket.create_connection(harness.server.mx)
        stream = _stream(raw)
        client = Client(stream, stream)
        try:
            await client.expect("220")
            await client.command("EHLO client.example", "250")
            await client.command("MAIL FROM:<a@victim.example>", "250 2.1.0")
            await client.command("RCPT TO:<bob@our.example>", "250 2.1.5")
            await client.command("DATA", "354")
            await trio.testing.wait_all_tasks_blocked()  # the server waits for the body
            # No checkpoint between the two: trio sees both in one pass.
            raw.send(b"Subject: late\r\n\r\nlate" + END)
            mock_clock.jump(DEFAULTS.data_block_timeout + 1)
            await client.expect("421 4.4.2")
            assert await client.closed() == b""
        finally:
            await client.aclose()
        assert not harness.mailer.messages


@pytest.mark.parametrize(
    "between", [b"", b"XYZZY\r\n", b"NOOP\r\n"], ids=["nothing", "refused", "noop"]
)
async def test_a_byte_per_bdat_chunk_meets_the_minimum_rate(
    autojump_clock: trio.abc.Clock, between: bytes
) -> None:
    """Each chunk sent with its command: no wait inside a chunk, and still
    the message as a whole must keep the minimum rate; nothing delivered.
    A command between chunks, refused or not, does not start it again."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "envelope")
        start = trio.current_time()
        try:
            while True:
                try:
                    await client.send(b"BDAT 1\r\nx" + between)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                reply = await client.reply()
                if reply.code != 250:
                    assert reply.matches("421 4.4.2"), reply.last
                    break
                if between:
                    reply = await client.reply()
                    if reply.matches("421 4.4.2"):
                        break
                    assert reply.code in (250, 500), reply.last
                await trio.sleep(10)
            elapsed = trio.current_time() - start
            # (Plus the growing delays before the replies to refused commands.)
            assert elapsed <= DEFAULTS.data_rate_grace + 20, elapsed
        finally:
            await client.aclose()
        assert not harness.mailer.messages


@pytest.mark.parametrize("listener", ["mx", "submission"])
async def test_idle_client(autojump_clock: trio.abc.Clock, listener: str) -> None:
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, listener, "greet")  # type: ignore[arg-type]
        try:
            start = trio.current_time()
            await client.expect("421 4.4.2")
            assert trio.current_time() - start == pytest.approx(DEFAULTS.command_timeout, abs=1)
            assert not await client.closed()
        finally:
            await client.aclose()


async def test_idle_in_data(autojump_clock: trio.abc.Clock) -> None:
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "data")
        try:
            await client.send(b"Subject: x\r\n\r\npart")
            start = trio.current_time()
            await client.expect("421 4.4.2")
            assert trio.current_time() - start <= DEFAULTS.data_block_timeout + 1
        finally:
            await client.aclose()
        assert not harness.mailer.messages


async def test_growing_error_delays(autojump_clock: trio.abc.Clock) -> None:
    """Past the soft limit each error costs more time; at the hard limit, 421."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        delays = []
        try:
            for _ in range(DEFAULTS.hard_error_limit - 1):
                start = trio.current_time()
                await client.command("XYZZY", "500 5.5.2")
                delays.append(trio.current_time() - start)
            await client.send(b"XYZZY\r\n")
            await client.expect("500 5.5.2")
            await client.expect("421 4.7.0")
            assert not await client.closed()
        finally:
            await client.aclose()
    soft = DEFAULTS.soft_error_limit
    assert all(delay < 0.01 for delay in delays[:soft])
    growing = delays[soft:]
    assert growing == sorted(growing)
    assert growing[0] >= DEFAULTS.error_delay * 0.9
    assert growing[-1] > growing[0]


async def test_junk_in_one_write_is_slowed(autojump_clock: trio.abc.Clock) -> None:
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            start = trio.current_time()
            await client.send(b"XYZZY\r\n" * 30)
            for _ in range(20):
                await client.expect("500 5.5.2")
            await client.expect("421 4.7.0")
            elapsed = trio.current_time() - start
            # Errors 4 to 19 wait 1 + 2 + ... + 16 seconds.
            assert elapsed >= sum(range(1, 17)) - 1, elapsed
            assert not await client.closed()
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    "sent",
    [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    ids=["nothing", "partial-client-hello"],
)
async def test_handshake_stall_implicit_tls(autojump_clock: trio.abc.Clock, sent: bytes) -> None:
    async with running(DEFAULTS) as harness:
        client = await connect(harness.server.submission)
        try:
            start = trio.current_time()
            if sent:
                await client.send(sent)
            rest = await client.closed()
            assert trio.current_time() - start == pytest.approx(
                DEFAULTS.tls_handshake_timeout, abs=1
            )
            assert b"220" not in rest
        finally:
            await client.aclose()


async def test_handshake_stall_starttls(autojump_clock: trio.abc.Clock) -> None:
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.command("STARTTLS", "220 2.0.0")
            start = trio.current_time()
            await client.send(b"\x16\x03\x01\x02\x00")
            rest = await client.closed()
            assert trio.current_time() - start == pytest.approx(
                DEFAULTS.tls_handshake_timeout, abs=1
            )
            assert b"421" not in rest
        finally:
            await client.aclose()


async def test_session_deadline(autojump_clock: trio.abc.Clock) -> None:
    """A client that keeps busy forever still ends at ``session_timeout``."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            start = trio.current_time()
            while True:
                await client.send(b"NOOP\r\n")
                reply = await client.reply()
                if not reply.matches("250"):
                    break
                await trio.sleep(60)
            assert reply.matches("421 4.4.2")
            assert trio.current_time() - start <= DEFAULTS.session_timeout + 61
        finally:
            await client.aclose()


async def test_tls_client_then_idle(autojump_clock: trio.abc.Clock) -> None:
    async with running(DEFAULTS) as harness:
        client = await connect(harness.server.submission)
        try:
            await start_tls(client, harness.server.client_context())
            await client.expect("220")
            await client.expect("421 4.4.2")
        finally:
            await client.aclose()


async def test_client_that_stops_reading(autojump_clock: trio.abc.Clock) -> None:
    """Pipelined commands whose replies are never read: the server's send
    blocks, and ``command_timeout`` ends the session instead of buffering
    replies without bound.  (The NOOP limit is lifted here: it would end
    the session first, as the next test shows.)"""
    config = dataclasses.replace(DEFAULTS, max_non_mail_commands=10**9)
    async with running(config) as harness:
        client = await prelude(harness.server, "mx", "greet")
        start = trio.current_time()
        block = b"NOOP\r\n" * 10_000
        sent = 0
        try:
            with trio.fail_after(3600):
                while True:
                    await client.send(block)
                    sent += len(block)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await client.aclose()
        elapsed = trio.current_time() - start
        assert elapsed == pytest.approx(config.command_timeout, abs=5), elapsed
        # The kernel buffers took some; the server took no more than that.
        assert sent < 64 * 1024 * 1024
        await healthy(harness, "mx")


async def test_noop_flood_ends_at_the_non_mail_command_limit(
    autojump_clock: trio.abc.Clock,
) -> None:
    """``NOOP`` forever, never a MAIL: 100 are answered, then 421 4.7.0 and close."""
    async with running(DEFAULTS) as harness:
        client = await prelude(harness.server, "mx", "greet")
        await client.send(b"NOOP\r\n" * 500)
        data = await client.closed()
        lines = data.split(b"\r\n")
        # The prelude's EHLO is a command without mail too.
        assert lines.count(b"250 2.0.0 OK") == DEFAULTS.max_non_mail_commands - 1
        assert b"421 4.7.0 Too many commands without mail, closing connection" in lines
        await client.aclose()
        await healthy(harness, "mx")
