"""Every limit and timeout of ServerConfig, one test each, named after the field.

Time-based tests run on trio's autojump clock with trio-native clients in the
same run, so a 30-second timeout takes no wall time and is measured exactly.
"""

from __future__ import annotations

import base64
import contextlib
import io
import ssl
from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing

import smtp_recv
from smtp_recv._session import MAX_PENALTY_DELAY
from smtp_recv.protocol import limits

from .conftest import (
    PASSWORD,
    CertSet,
    Client,
    Delivered,
    RecordingMailer,
    Running,
    base_config,
    running,
)

MockClock = trio.testing.MockClock
ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"


async def open_data(client: Client) -> None:
    """Greet, then a pipelined envelope up to the 354."""
    await client.greeting_and_ehlo()
    await client.send(ENVELOPE)
    assert [(await client.reply()).code for _ in range(3)] == [250, 250, 354]


async def submission_client(server_address: tuple[str, int], cert_set: CertSet) -> Client:
    client = await Client.connect(
        server_address, tls=cert_set.client_context(), server_hostname="mx.example.com"
    )
    await client.greeting_and_ehlo()
    return client


def client_hello() -> bytes:
    """The first flight of a real TLS client, to stall in the middle of."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="mx.example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# -- message limits -------------------------------------------------------------
async def test_max_message_size_is_advertised_drained_then_refused(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer()
    config = base_config(max_message_size=10_000)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        ehlo = await client.greeting_and_ehlo()
        assert "SIZE 10000" in ehlo.lines
        await client.send(ENVELOPE)
        assert [(await client.reply()).code for _ in range(3)] == [250, 250, 354]
        # Twice the limit, without SIZE: read to its end before any reply.
        await client.send(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 200)
        assert await client.silent_for(5)
        await client.send(b".\r\n")
        refused = await client.reply()
        assert (refused.code, refused.enhanced) == (552, "5.3.4")
        # The session goes on, and SIZE= too large is refused at MAIL.
        too_big = await client.command("MAIL FROM:<a@b.example> SIZE=10001")
        assert (too_big.code, too_big.enhanced) == (552, "5.3.4")
        huge = await client.command("MAIL FROM:<a@b.example> SIZE=99999999999")
        assert huge.code == 552
        assert (await client.command("MAIL FROM:<a@b.example> SIZE=9000")).code == 250
    assert mailer.delivered == []


async def test_max_recipients_refuses_past_limit_and_keeps_earlier(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, config=base_config(max_recipients=100), mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.send(
            b"MAIL FROM:<a@b.example>\r\n"
            + b"".join(f"RCPT TO:<r{i}@example.com>\r\n".encode() for i in range(102))
            + b"DATA\r\n"
        )
        answers = [await client.reply() for _ in range(1 + 102 + 1)]
        assert {a.code for a in answers[1:101]} == {250}
        assert [(a.code, a.enhanced) for a in answers[101:103]] == [(452, "4.5.3")] * 2
        assert answers[-1].code == 354
        await client.send(b"Subject: many\r\n\r\nhi\r\n.\r\n")
        assert (await client.reply()).code == 250
    (delivered,) = mailer.delivered
    assert [r.address for r in delivered.mail.recipients] == [
        f"r{i}@example.com" for i in range(100)
    ]


@pytest.mark.parametrize("size", [500, 5_000, 50_000])
async def test_spool_threshold_spools_only_messages_over_it(cert_set: CertSet, size: int) -> None:
    mailer = RecordingMailer()
    threshold = 2_000
    body = b"Subject: s\r\n\r\n" + b"y" * size + b"\r\n"
    async with (
        running(cert_set, config=base_config(spool_threshold=threshold), mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@b.example", ["bob@example.com"], body)).code == 250
    (delivered,) = mailer.delivered
    assert delivered.data.endswith(body)
    assert delivered.in_memory is (len(delivered.data) <= threshold)


def spool_on_a_full_disk(monkeypatch: pytest.MonkeyPatch) -> list[io.BufferedRandom]:
    """Spool files on /dev/full, where every write that reaches it fails with ENOSPC.

    Returns the files the spool opens, for the test to see them closed.
    """
    opened: list[io.BufferedRandom] = []

    def temporary_file() -> io.BufferedRandom:
        file = open("/dev/full", "w+b")  # noqa: SIM115 - the spool closes it
        opened.append(file)
        return file

    monkeypatch.setattr(smtp_recv._spool.tempfile, "TemporaryFile", temporary_file)
    return opened


@pytest.mark.parametrize(
    "size",
    [3_000, 3_000_000],
    ids=["fails-at-the-last-flush", "fails-while-the-message-arrives"],
)
async def test_a_spool_that_cannot_be_written_gives_452_and_the_session_goes_on(
    cert_set: CertSet,
    size: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk under the temporary files is no fault of the client's:
    ``452 4.3.1`` (RFC 3463), it keeps the message, and the session goes on."""
    full = spool_on_a_full_disk(monkeypatch)
    mailer = RecordingMailer()
    body = b"Subject: s\r\n\r\n" + b"y" * size + b"\r\n"
    async with (
        running(cert_set, config=base_config(spool_threshold=2_000), mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        refused = await client.send_message("a@b.example", ["bob@example.com"], body)
        assert (refused.code, refused.enhanced) == (452, "4.3.1")
        small = b"Subject: s\r\n\r\nsmall\r\n"
        assert (await client.send_message("a@b.example", ["bob@example.com"], small)).code == 250
    (delivered,) = mailer.delivered
    assert delivered.data.endswith(small)
    assert full
    assert all(file.closed for file in full)
    assert "not kept: the spool file failed" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_spool_whose_later_write_fails_keeps_the_failure_not_raises_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first bytes sit in the file's buffer; a later batch fails, and so
    would the close that flushes them.  The client is still sending: the
    spool only counts from then on, and ``finish`` gives the error."""
    full = spool_on_a_full_disk(monkeypatch)
    spool = smtp_recv._spool.Spool(b"Received: x\r\n", threshold=10)
    await spool.append(b"x" * 3_000)  # to the file's buffer: no error yet
    assert spool.failure is None
    await spool.append(b"y" * (1 << 20))  # a batch: ENOSPC
    assert isinstance(spool.failure, OSError)
    await spool.append(b"z" * 10)
    with pytest.raises(OSError, match="No space left"):
        await spool.finish()
    assert spool.size == len(b"Received: x\r\n") + 3_000 + (1 << 20) + 10
    assert [file.closed for file in full] == [True]


@pytest.mark.parametrize("size", [500, 3_000_000])
async def test_readers_of_one_message_at_once_each_get_all_of_it(
    cert_set: CertSet, size: int
) -> None:
    # A Mailer storing a copy per mailbox, in threads, reads the content
    # several times at once; in memory or spooled, no reader moves another.
    body = b"Subject: s\r\n\r\n" + bytes(range(32, 127)) * (size // 95) + b"\r\n"
    copies: list[bytes] = []

    class CopyingMailer(RecordingMailer):
        async def _take(self, mail: smtp_recv.Mail) -> None:
            def copy() -> None:
                out = io.BytesIO()
                mail.content.copy_to(out)
                copies.append(out.getvalue())

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(trio.to_thread.run_sync, copy)
            # Two streams taken in turn, a read() between their pieces.
            first, second = mail.content.chunks(65536), mail.content.chunks(65536)
            interleaved: tuple[list[bytes], list[bytes]] = ([], [])
            for a, b in zip(first, second, strict=True):
                interleaved[0].append(a)
                interleaved[1].append(b)
                assert len(mail.content.read()) == mail.content.size
            copies.extend(b"".join(part) for part in interleaved)
            await super()._take(mail)

    mailer = CopyingMailer()
    config = base_config(spool_threshold=2_000)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@b.example", ["bob@example.com"], body)).code == 250
    (delivered,) = mailer.delivered
    assert delivered.in_memory is (size < 2_000)
    assert len(copies) == 6
    assert all(copy == delivered.data for copy in copies)
    assert delivered.data.endswith(body)


@pytest.mark.parametrize("size", [500, 50_000])
async def test_the_content_is_released_when_the_mailer_returns_whatever_its_size(
    cert_set: CertSet, size: int
) -> None:
    # The same rule in memory and spooled, so a Mailer that keeps the
    # content past its return fails in its tests, not on the first large
    # message in production.
    kept: list[smtp_recv.Mail] = []

    class KeepingMailer(RecordingMailer):
        async def _take(self, mail: smtp_recv.Mail) -> None:
            kept.append(mail)

    body = b"Subject: s\r\n\r\n" + b"y" * size + b"\r\n"
    async with (
        running(
            cert_set, config=base_config(spool_threshold=2_000), mailer=KeepingMailer()
        ) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@b.example", ["bob@example.com"], body)).code == 250
    (mail,) = kept
    with pytest.raises(ValueError, match="released when the Mailer returned"):
        mail.content.read()
    with pytest.raises(ValueError, match="released when the Mailer returned"):
        list(mail.content.chunks())


SMUGGLED = (
    b"Subject: s\r\n\r\nline1\n.\nMAIL FROM:<ceo@example.com>\r\n"
    b"RCPT TO:<bob@example.com>\r\nDATA\r\nfake\r\n"
)


async def test_reject_bare_line_endings_true_refuses_the_message_and_reads_no_more(
    cert_set: CertSet,
) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await open_data(client)
        await client.send(SMUGGLED + b".\r\nMAIL FROM:<ceo@example.com>\r\n")
        refused = await client.reply()
        assert (refused.code, refused.enhanced) == (550, "5.5.2")
        assert await client.closed() == b""  # the MAIL after it is never read
    assert mailer.delivered == []


async def test_a_refusal_that_ends_the_session_is_not_delayed(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """Past the soft error limit a refusal waits; not the one after which nothing is read."""
    # With no error free, this refusal is past the soft limit.
    config = base_config(soft_error_limit=0, error_delay=20.0)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await open_data(client)
        start = trio.current_time()
        await client.send(SMUGGLED + b".\r\n")
        assert (await client.reply()).code == 550
        assert trio.current_time() - start == pytest.approx(0, abs=0.1)
        assert await client.closed() == b""


async def test_reject_bare_line_endings_false_passes_bytes_verbatim(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    config = base_config(reject_bare_line_endings=False)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await open_data(client)
        await client.send(SMUGGLED + b".\r\n")
        assert (await client.reply()).code == 250
        assert (await client.command("NOOP")).code == 250
    (delivered,) = mailer.delivered
    assert delivered.data.endswith(SMUGGLED)
    assert delivered.mail.sender == "a@b.example"


# -- connection limits ------------------------------------------------------------
async def test_max_connections_gets_421_at_greeting(cert_set: CertSet) -> None:
    config = base_config(max_connections=1)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as first,
    ):
        assert (await first.reply()).code == 220
        async with await Client.connect(server.mx) as second:
            refused = await second.reply()
            assert (refused.code, refused.enhanced) == (421, "4.3.2")
            assert await second.closed() == b""
        # Over both listeners: submission says so inside TLS.
        async with await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as third:
            assert (await third.reply()).code == 421
        assert (await first.command("EHLO client.example.org")).code == 250


async def test_max_connections_per_ip_gets_421_at_greeting(cert_set: CertSet) -> None:
    config = base_config(max_connections_per_ip=2, max_connections=10)
    async with running(cert_set, config=config) as server:
        async with await Client.connect(server.mx) as first:
            assert (await first.reply()).code == 220
            async with await Client.connect(server.submission) as second:
                # Counted before the handshake: the second connection is this one.
                async with await Client.connect(server.mx) as third:
                    refused = await third.reply()
                    assert (refused.code, refused.enhanced) == (421, "4.7.0")
                    assert await third.closed() == b""
                await second.aclose()
            assert (await first.command("QUIT")).code == 221
        # Once those are gone, the address may connect again.
        with trio.fail_after(5):
            while True:
                async with await Client.connect(server.mx) as again:
                    if (await again.reply()).code == 220:
                        break
                await trio.sleep(0.01)


async def test_soft_and_hard_error_limits_delay_then_close(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(soft_error_limit=2, hard_error_limit=5, error_delay=1.0)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        delays = []
        for _ in range(4):
            start = trio.current_time()
            assert (await client.command("XYZZY")).code == 500
            delays.append(trio.current_time() - start)
        # No delay up to the soft limit, then error_delay times the excess.
        assert delays == pytest.approx([0, 0, 1.0, 2.0], abs=0.01)
        await client.send(b"XYZZY\r\n")
        assert (await client.reply()).code == 500
        closing = await client.reply()
        assert (closing.code, closing.enhanced) == (421, "4.7.0")
        assert await client.closed() == b""


async def test_max_auth_failures_closes_with_421(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(max_auth_failures=2, auth_failure_delay=0.5)
    async with (
        running(cert_set, config=config) as server,
        await submission_client(server.submission, cert_set) as client,
    ):
        failed = await client.login(password="wrong")
        assert (failed.code, failed.enhanced) == (535, "5.7.8")
        assert (await client.login(password="wrong")).code == 535
        closing = await client.reply()
        assert (closing.code, closing.enhanced) == (421, "4.7.0")
        assert await client.closed() == b""


class CountingAuth:
    def __init__(self) -> None:
        self.calls = 0

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        self.calls += 1
        return username if password == PASSWORD else None


async def test_max_auth_failures_per_ip_counts_across_connections_within_window(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    auth = CountingAuth()
    config = base_config(
        max_auth_failures=10,
        max_auth_failures_per_ip=3,
        auth_failure_window=600,
        auth_failure_delay=0.1,
    )
    async with running(cert_set, config=config, auth=auth) as server:
        async with await submission_client(server.submission, cert_set) as client:
            for _ in range(2):
                assert (await client.login(password="wrong")).code == 535
        async with await submission_client(server.submission, cert_set) as client:
            assert (await client.login(password="wrong")).code == 535
            # The address used up its failures: even good credentials are not checked.
            blocked = await client.login()
            assert (blocked.code, blocked.enhanced) == (421, "4.7.0")
            assert await client.closed() == b""
        async with await submission_client(server.submission, cert_set) as client:
            assert (await client.login()).code == 421
        assert auth.calls == 3
        # auth_failure_window: after it, the failures no longer count.
        await trio.sleep(601)
        async with await submission_client(server.submission, cert_set) as client:
            assert (await client.login()).code == 235


class SlowAuth:
    """An Auth hook that holds every check until ``release`` is set.

    It answers ``good`` (the login, or None), and counts the checks under
    way at once.  ``shielded`` checks ignore their deadline, as a check
    in a thread that cannot be abandoned does.
    """

    def __init__(self, good: bool = False, shielded: bool = False) -> None:
        self.good, self.shielded = good, shielded
        self.started = self.in_flight = self.most_in_flight = 0
        self.release = trio.Event()

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        self.started += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            with trio.CancelScope(shield=self.shielded):
                await self.release.wait()
        finally:
            self.in_flight -= 1
        return username if self.good else None


def plain(username: str, password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{username}\0{password}".encode()).decode()


async def try_at_once(server: Running, cert_set: CertSet, count: int) -> list[Client]:
    """``count`` connections from one address, each sending AUTH PLAIN at once."""
    clients = [await submission_client(server.submission, cert_set) for _ in range(count)]
    for client in clients:
        await client.send(f"AUTH PLAIN {plain('user@example.com')}\r\n")
    return clients


async def test_max_auth_failures_per_ip_counts_attempts_under_way(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """Connections that each try at once get no more checks than the limit."""
    auth = SlowAuth()
    config = base_config(max_auth_failures_per_ip=3, auth_failure_delay=0.1)
    async with running(cert_set, config=config, auth=auth) as server:
        clients = await try_at_once(server, cert_set, 5)
        try:
            # Three checks are under way; the other two wait for a place.
            assert all([await client.silent_for(1.0) for client in clients])
            assert auth.in_flight == 3
            auth.release.set()
            codes = sorted([(await client.reply()).code for client in clients])
            # The three failed; by then the address had used up its failures.
            assert codes == [421, 421, 535, 535, 535]
        finally:
            for client in clients:
                await client.aclose()
        async with await submission_client(server.submission, cert_set) as client:
            assert (await client.login()).code == 421
        assert auth.started == 3


async def test_good_logins_at_once_from_one_address_all_get_in(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """A NAT's users, or an application's pool: checks wait for a place, not refused."""
    auth = SlowAuth(good=True)
    config = base_config(max_auth_failures_per_ip=3)
    async with running(cert_set, config=config, auth=auth) as server:
        clients = await try_at_once(server, cert_set, 8)
        try:
            await trio.sleep(1)
            auth.release.set()
            assert [(await client.reply()).code for client in clients] == [235] * 8
        finally:
            for client in clients:
                await client.aclose()
    assert (auth.started, auth.most_in_flight) == (8, 3)


async def test_a_wait_for_a_place_gives_up_after_hook_timeout_with_454(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    auth = SlowAuth(good=True, shielded=True)
    config = base_config(max_auth_failures_per_ip=1, hook_timeout=10)
    async with running(cert_set, config=config, auth=auth) as server:
        first, waiting = await try_at_once(server, cert_set, 2)
        async with first, waiting:
            start = trio.current_time()
            try:
                answer = await waiting.reply()
                assert (answer.code, answer.enhanced) == (454, "4.7.0")
                assert trio.current_time() - start == pytest.approx(10, abs=0.1)
            finally:
                auth.release.set()  # or the shielded check holds the shutdown for ever
            # The shielded check's late answer stands; the waiter may try again.
            assert (await first.reply()).code == 235
            assert (await waiting.login()).code == 235


async def test_auth_checks_waiting_for_a_place_are_refused_at_shutdown(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """The shutdown waits for no check that has not started (README: messages in flight)."""
    auth = SlowAuth(good=True)
    config = base_config(max_auth_failures_per_ip=1, shutdown_grace=30)
    async with running(cert_set, config=config, auth=auth) as server:
        first, *waiting = await try_at_once(server, cert_set, 3)
        try:
            await trio.sleep(1)
            start = trio.current_time()
            server.stop()
            for client in waiting:
                refused = await client.reply()
                assert (refused.code, refused.enhanced) == (421, "4.3.2")
                assert await client.closed() == b""
            assert trio.current_time() - start < 0.1
            auth.release.set()
            assert (await first.reply()).code == 235
        finally:
            for client in (first, *waiting):
                await client.aclose()
    assert auth.started == 1


async def test_a_check_ending_as_the_shutdown_begins_starts_no_waiter(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """The place and the shutdown come in the same pass: the waiter is refused all the same."""
    auth = SlowAuth(good=True)
    config = base_config(max_auth_failures_per_ip=1, shutdown_grace=30)
    async with running(cert_set, config=config, auth=auth) as server:
        first, waiting = await try_at_once(server, cert_set, 2)
        try:
            await trio.sleep(1)
            # The shutdown begins a pass after stop(), as the first check
            # ends: both before the waiter, woken by either, runs again.
            server.stop()
            await trio.lowlevel.checkpoint()
            auth.release.set()
            assert (await first.reply()).code == 235
            refused = await waiting.reply()
            assert (refused.code, refused.enhanced) == (421, "4.3.2")
        finally:
            for client in (first, waiting):
                await client.aclose()
    assert auth.started == 1


async def test_checks_waiting_for_a_place_take_it_in_arrival_order(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """A newcomer does not take the place of a session that has waited longer."""
    auth = HeldOrWrong()
    async with one_failure_made(cert_set, auth) as server:
        failed_at = trio.current_time()  # the failure was made up to 0.1 s before
        held, waiting, newcomer = [
            await submission_client(server.submission, cert_set) for _ in range(3)
        ]
        try:
            await held.send(f"AUTH PLAIN {plain('held@example.com')}\r\n")
            await trio.sleep_until(failed_at + 95.5)
            await waiting.send(f"AUTH PLAIN {plain('waiting@example.com')}\r\n")
            # The failure leaves the window by failed_at + 100 s and frees a
            # place, waking nobody: the waiter looks again once a second,
            # next at + 100.5 s.  The newcomer comes between.
            await trio.sleep_until(failed_at + 100.2)
            await newcomer.send(f"AUTH PLAIN {plain('newcomer@example.com')}\r\n")
            assert (await waiting.reply()).code == 235
            assert (await newcomer.reply()).code == 235
            assert auth.order == [
                "user@example.com",
                "held@example.com",
                "waiting@example.com",
                "newcomer@example.com",
            ]
        finally:
            auth.release.set()  # or the held check holds the shutdown for ever
            for client in (held, waiting, newcomer):
                await client.aclose()


@contextlib.asynccontextmanager
async def one_failure_made(cert_set: CertSet, auth: HeldOrWrong) -> AsyncIterator[Running]:
    """A server whose address has two places for AUTH, one taken by a
    failure (window 100 s) made as this yields."""
    config = base_config(
        max_auth_failures_per_ip=2, auth_failure_window=100, auth_failure_delay=0.1, hook_timeout=30
    )
    async with running(cert_set, config=config, auth=auth) as server:
        async with await submission_client(server.submission, cert_set) as client:
            assert (await client.login(password="wrong")).code == 535
        yield server


class HeldOrWrong:
    """Refuses the password "wrong" at once; holds logins of held@ until ``release``."""

    def __init__(self) -> None:
        self.release = trio.Event()
        #: The logins checked, in the order their checks started.
        self.order: list[str] = []

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        self.order.append(username)
        if password == "wrong":
            return None
        if username.startswith("held@"):
            with trio.CancelScope(shield=True):  # past its deadline, as a thread may be
                await self.release.wait()
        return username


async def test_a_failure_leaving_the_window_frees_a_place_for_a_waiting_check(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    auth = HeldOrWrong()
    async with one_failure_made(cert_set, auth) as server:
        await trio.sleep(90)
        held = await submission_client(server.submission, cert_set)
        waiting = await submission_client(server.submission, cert_set)
        async with held, waiting:
            await held.send(f"AUTH PLAIN {plain('held@example.com')}\r\n")
            await trio.sleep(5)
            start = trio.current_time()
            await waiting.send(f"AUTH PLAIN {plain('user@example.com')}\r\n")
            try:
                # Its place comes when the failure, made 95 s before, leaves the window.
                assert (await waiting.reply()).code == 235
                assert 5 <= trio.current_time() - start <= 5 + 1.5
            finally:
                auth.release.set()  # or the held check holds the shutdown for ever
            assert (await held.reply()).code == 235


class FailingAuth:
    """An Auth hook that fails in turn by an exception, a temporary Reject and its deadline."""

    def __init__(self) -> None:
        self.calls = 0

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        self.calls += 1
        if self.calls % 3 == 1:
            raise RuntimeError("directory down")
        if self.calls % 3 == 2:
            raise smtp_recv.Reject(454, "4.7.0", "Try later")
        await trio.sleep(1000)  # past hook_timeout
        return None


async def test_a_check_that_fails_gives_its_place_back(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """None of these is the client's failed attempt: the address is never refused."""
    auth = FailingAuth()
    config = base_config(max_auth_failures_per_ip=2, hook_timeout=5)
    async with running(cert_set, config=config, auth=auth) as server:
        for _ in range(6):
            async with await submission_client(server.submission, cert_set) as client:
                assert (await client.login()).code == 454
    assert auth.calls == 6


async def test_an_attempt_ended_holds_no_place_under_the_per_ip_limit(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(max_auth_failures_per_ip=2, auth_failure_delay=0.1)
    async with running(cert_set, config=config) as server:
        for _ in range(3):
            async with await submission_client(server.submission, cert_set) as client:
                assert (await client.login()).code == 235
        async with await submission_client(server.submission, cert_set) as client:
            # Acting as another identity fails like a wrong password: one failure.
            token = base64.b64encode(f"other@example.com\0user@example.com\0{PASSWORD}".encode())
            assert (await client.command(b"AUTH PLAIN " + token)).code == 535
            assert (await client.login()).code == 235


async def test_auth_failure_delay_doubles_with_each_failure(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # The soft error limit is out of the way: only the AUTH delay is measured.
    config = base_config(auth_failure_delay=1.0, max_auth_failures=5, soft_error_limit=10)
    async with (
        running(cert_set, config=config) as server,
        await submission_client(server.submission, cert_set) as client,
    ):
        delays = []
        for _ in range(3):
            start = trio.current_time()
            assert (await client.login(password="wrong")).code == 535
            delays.append(trio.current_time() - start)
        assert delays == pytest.approx([1.0, 2.0, 4.0], abs=0.01)
        # A cancelled exchange (RFC 4954 "*") is a failure like a wrong password.
        assert (await client.command("AUTH LOGIN")).code == 334
        start = trio.current_time()
        assert (await client.command("*")).code == 501
        assert trio.current_time() - start == pytest.approx(8.0, abs=0.01)


async def test_auth_failure_delay_stops_growing_at_its_cap(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # Limits high enough that failures go on until 2 ** failures no longer
    # fits a float: the delay must stay at its cap, not fail.
    config = base_config(
        auth_failure_delay=1.0,
        max_auth_failures=2000,
        max_auth_failures_per_ip=2000,
        soft_error_limit=2000,
        hard_error_limit=2000,
        session_timeout=86400,
    )
    async with (
        running(cert_set, config=config) as server,
        await submission_client(server.submission, cert_set) as client,
    ):
        for _ in range(1030):
            start = trio.current_time()
            assert (await client.login(password="wrong")).code == 535
        assert trio.current_time() - start == pytest.approx(MAX_PENALTY_DELAY, abs=0.01)
        assert (await client.login()).code == 235


# -- timeouts ---------------------------------------------------------------------
async def test_command_timeout_closes_idle_session_with_421(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    async with (
        running(cert_set, config=base_config(command_timeout=10)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        start = trio.current_time()
        assert await client.silent_for(9)
        timeout = await client.reply()
        assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
        assert trio.current_time() - start == pytest.approx(10, abs=0.01)
        assert await client.closed() == b""


@pytest.mark.parametrize(
    "opening",
    [b"MAIL FROM:<a", b"NOOP " + b"a" * 2 * limits.MAX_LINE],
    # The server drops the bytes of a line too long to keep as they come:
    # it must still know that the client is in the middle of one.
    ids=["line", "line-too-long-to-keep"],
)
async def test_command_line_timeout_stops_a_slowloris_command(
    cert_set: CertSet, autojump_clock: MockClock, opening: bytes
) -> None:
    config = base_config(command_timeout=30, command_line_timeout=12)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        # Idle between commands is bounded by command_timeout only.
        assert await client.silent_for(20)
        assert (await client.command("NOOP")).code == 250
        start = trio.current_time()
        await client.send(opening)
        while await client.silent_for(5):
            await client.send(b"b")
        timeout = await client.reply()
        assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
        assert trio.current_time() - start == pytest.approx(12, abs=0.01)
        assert await client.closed() == b""


async def test_data_block_timeout_gives_421_and_delivers_nothing(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer()
    config = base_config(data_block_timeout=10)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await open_data(client)
        await client.send(b"Subject: stalled\r\n\r\nhalf a message\r\n")
        start = trio.current_time()
        timeout = await client.reply()
        assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
        assert trio.current_time() - start == pytest.approx(10, abs=0.01)
        assert await client.closed() == b""
    assert mailer.delivered == []


async def test_min_data_rate_stops_a_slow_data_sender(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer()
    config = base_config(data_block_timeout=60, min_data_rate=100, data_rate_grace=5)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await open_data(client)
        start = trio.current_time()
        await client.send(b"Subject: x\r\n")
        # Ten bytes every four seconds: each block is in time, the rate is not.
        while await client.silent_for(4):
            await client.send(b"0123456789")
        timeout = await client.reply()
        assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
        # data_rate_grace plus what the bytes so far paid for: well before 60 s.
        assert 5 < trio.current_time() - start < 6
        assert await client.closed() == b""
    assert mailer.delivered == []


async def test_min_data_rate_spares_a_sender_at_the_rate(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer()
    config = base_config(data_block_timeout=60, min_data_rate=100, data_rate_grace=5)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await open_data(client)
        await client.send(b"Subject: x\r\n\r\n")
        for _ in range(10):
            await trio.sleep(2)
            await client.send(b"x" * 248 + b"\r\n")
        await client.send(b".\r\n")
        assert (await client.reply()).code == 250
    assert len(mailer.delivered) == 1


@pytest.mark.parametrize("stall", ["silent", "mid-handshake", "after-starttls"])
async def test_tls_handshake_timeout_closes_a_stalled_handshake(
    cert_set: CertSet, autojump_clock: MockClock, stall: str
) -> None:
    config = base_config(tls_handshake_timeout=10)
    async with running(cert_set, config=config) as server:
        if stall == "after-starttls":
            client = await Client.connect(server.mx)
            await client.greeting_and_ehlo()
            assert (await client.command("STARTTLS")).code == 220
        else:
            client = await Client.connect(server.submission)
            if stall == "mid-handshake":
                await client.send(client_hello()[:40])
        async with client:
            start = trio.current_time()
            assert await client.closed() == b""
            assert trio.current_time() - start == pytest.approx(10, abs=0.01)
        # The listener is unaffected.
        async with await submission_client(server.submission, cert_set) as other:
            assert (await other.command("NOOP")).code == 250


async def test_session_timeout_ends_even_a_busy_session(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(session_timeout=20, command_timeout=300)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        start = trio.current_time()
        await client.greeting_and_ehlo()
        while True:
            await trio.sleep(3)
            answer = await client.command("NOOP")
            if answer.code != 250:
                break
        assert (answer.code, answer.enhanced) == (421, "4.4.2")
        assert 20 <= trio.current_time() - start <= 21
        assert await client.closed() == b""


class StuckHooks:
    async def lookup(self, recipient: str) -> Sequence[str]:
        await trio.sleep_forever()
        raise AssertionError

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        await trio.sleep_forever()
        raise AssertionError


async def test_hook_timeout_gives_temporary_failures(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    hooks = StuckHooks()
    config = base_config(hook_timeout=5)
    async with running(cert_set, config=config, forward=hooks, auth=hooks) as server:
        async with await Client.connect(server.mx) as client:
            await client.greeting_and_ehlo()
            assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
            start = trio.current_time()
            rcpt = await client.command("RCPT TO:<bob@example.com>")
            assert (rcpt.code, rcpt.enhanced) == (451, "4.3.0")
            assert trio.current_time() - start == pytest.approx(5, abs=0.01)
            assert (await client.command("NOOP")).code == 250
        async with await submission_client(server.submission, cert_set) as client:
            start = trio.current_time()
            auth = await client.login()
            assert (auth.code, auth.enhanced) == (454, "4.7.0")
            assert trio.current_time() - start == pytest.approx(5, abs=0.01)
            assert (await client.command("NOOP")).code == 250


class ScopedHooks:
    """Hooks that open their own cancel scopes and nurseries before they wait.

    The session bounds a hook without a cancel scope around it; these make
    sure the hook's own scopes nest and unwind as they would under ``await``.
    """

    async def lookup(self, recipient: str) -> Sequence[str]:
        if recipient.startswith("stuck"):
            with trio.move_on_after(1000):
                await trio.sleep_forever()
            raise AssertionError("the session's deadline comes first")
        if recipient.startswith("tasks"):
            # Cut off with tasks running: the Cancelled comes out in a group.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                if recipient.startswith("tasks-failing"):
                    nursery.start_soon(self._fails_when_cancelled)
                await trio.sleep_forever()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 1)
            with trio.fail_after(60):
                await trio.sleep(2)
        return (recipient,)

    @staticmethod
    async def _fails_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise ConnectionError("the directory connection did not close cleanly")


async def test_hooks_with_their_own_scopes_are_bounded_and_the_session_goes_on(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    config = base_config(hook_timeout=5)
    async with (
        running(cert_set, config=config, forward=ScopedHooks()) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        start = trio.current_time()
        assert (await client.command("RCPT TO:<bob@example.com>")).code == 250
        assert trio.current_time() - start == pytest.approx(2, abs=0.01)
        start = trio.current_time()
        stuck = await client.command("RCPT TO:<stuck@example.com>")
        assert (stuck.code, stuck.enhanced) == (451, "4.3.0")
        assert trio.current_time() - start == pytest.approx(5, abs=0.01)
        for name in ("tasks", "tasks-failing"):
            start = trio.current_time()
            stuck = await client.command(f"RCPT TO:<{name}@example.com>")
            assert (stuck.code, stuck.enhanced) == (451, "4.3.0"), name
            assert trio.current_time() - start == pytest.approx(5, abs=0.01)
        # The transaction goes on with the recipient that was accepted.
        assert (await client.command("RCPT TO:<carol@example.com>")).code == 250
        assert (await client.command("DATA")).code == 354
        await client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert (await client.reply()).code == 250


@pytest.mark.parametrize(
    ("fails", "expected"),
    [(False, (250, "2.1.5")), (True, (451, "4.3.0"))],
    ids=["answers", "fails"],
)
async def test_a_hook_that_answers_as_its_deadline_passes_is_heard(
    cert_set: CertSet, autojump_clock: MockClock, fails: bool, expected: tuple[int, str]
) -> None:
    # The hook's last wait ends before the deadline, then it works past the
    # deadline without another checkpoint (the clock jumps under it), as a
    # thread that cannot be abandoned does.  Its answer, or its failure, is
    # used, and the session goes on in a fresh scope, without failing later
    # at some unrelated wait (a timeout blamed on the client, or an error
    # delay cut short into an internal error).
    class LateHook:
        async def lookup(self, recipient: str) -> Sequence[str]:
            await trio.sleep(4)
            autojump_clock.jump(2)
            if fails:
                raise ConnectionError("the directory went away")
            return (recipient,)

    config = base_config(hook_timeout=5, soft_error_limit=0)
    async with (
        running(cert_set, config=config, forward=LateHook()) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        late = await client.command("RCPT TO:<bob@example.com>")
        assert (late.code, late.enhanced) == expected
        assert (await client.command("NOOP")).code == 250
        assert (await client.command("RSET")).code == 250


async def test_a_mailer_that_stores_the_message_as_its_deadline_passes_gets_250(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    # RFC 5321 6.1: once the message is stored, a failure reply would make
    # the client send it again, and every retry would store another copy.
    class LateMailer(RecordingMailer):
        async def _take(self, mail: smtp_recv.Mail) -> None:
            await trio.sleep(4)
            autojump_clock.jump(4)  # a Maildir write on a slow disk, in a thread
            self.delivered.append(Delivered(mail, mail.data, mail.content.in_memory))

    mailer = LateMailer()
    config = base_config(mailer_timeout=7)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        stored = await client.send_message("a@b.example", ["bob@example.com"])
        assert (stored.code, stored.enhanced) == (250, "2.0.0")
        assert (await client.command("NOOP")).code == 250
    assert len(mailer.delivered) == 1


async def test_mailer_timeout_gives_451_and_the_retry_succeeds(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    mailer = RecordingMailer(delay=1000)
    config = base_config(mailer_timeout=7)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        start = trio.current_time()
        failed = await client.send_message("a@b.example", ["bob@example.com"])
        assert (failed.code, failed.enhanced) == (451, "4.3.0")
        assert trio.current_time() - start == pytest.approx(7, abs=0.01)
        mailer.delay = 0
        assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 250
    assert len(mailer.delivered) == 1


async def test_greeting_delay_refuses_early_talkers(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    async with running(cert_set, config=base_config(greeting_delay=3)) as server:
        async with await Client.connect(server.mx) as early:
            await early.send(b"EHLO impatient.example\r\n")
            refused = await early.reply()
            assert (refused.code, refused.enhanced) == (554, "5.5.0")
            assert await early.closed() == b""
        async with await Client.connect(server.mx) as patient:
            start = trio.current_time()
            greeting = await patient.reply()
            assert greeting.code == 220
            assert trio.current_time() - start == pytest.approx(3, abs=0.01)
            assert (await patient.command("EHLO patient.example")).code == 250


async def test_greeting_delay_zero_still_catches_bytes_already_there(cert_set: CertSet) -> None:
    async with running(cert_set) as server, await Client.connect(server.mx) as early:
        # Nothing the server did can have come before this in the queue;
        # the check peeks, so it may see it or not, but never answer it.
        await early.send(b"EHLO impatient.example\r\n")
        first = await early.reply()
        assert first.code in (554, 220)
        if first.code == 220:
            assert (await early.reply()).code == 250


# -- protocol options and names -------------------------------------------------------
async def test_smtputf8_and_chunking_can_be_switched_off(cert_set: CertSet) -> None:
    config = base_config(smtputf8=False, chunking=False)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        ehlo = await client.greeting_and_ehlo()
        assert ehlo.lines[0] == "mx.example.com Hello client.example.org"
        assert not {"SMTPUTF8", "CHUNKING", "BINARYMIME"} & set(ehlo.lines)
        assert (await client.command("MAIL FROM:<a@b.example> SMTPUTF8")).code == 555
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        assert (await client.command("RCPT TO:<bob@example.com>")).code == 250
        assert (await client.command("BDAT 0 LAST")).code == 502


async def test_hostname_names_us_in_greeting_and_ehlo(cert_set: CertSet) -> None:
    async with (
        running(cert_set, config=base_config(hostname="smtp.example.net")) as server,
        await Client.connect(server.mx) as client,
    ):
        greeting = await client.reply()
        assert greeting.text.startswith("smtp.example.net ")
        ehlo = await client.command("EHLO c.example")
        assert ehlo.lines[0].startswith("smtp.example.net ")


@pytest.mark.parametrize(
    ("lookup_timeout", "expected"),
    [(5.0, b"(localhost [127.0.0.1])"), (0.0, b"([127.0.0.1])")],
)
async def test_reverse_dns_and_its_timeout_name_the_client(
    cert_set: CertSet, lookup_timeout: float, expected: bytes
) -> None:
    mailer = RecordingMailer()
    config = base_config(reverse_dns=True, reverse_dns_timeout=lookup_timeout)
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 250
    (delivered,) = mailer.delivered
    assert expected in delivered.data.split(b"\r\n")[0]


@pytest.mark.parametrize(
    "options",
    [
        {"max_recipients": 99},
        {"max_message_size": 0},
        {"max_connections": 0},
        {"max_connections_per_ip": 0},
        {"hard_error_limit": 0},
        {"min_data_rate": 0.0},  # the rate deadline divides by it
        # Every wait has a bound: inf is none, and nan has no order.
        {"command_timeout": float("inf")},
        {"shutdown_grace": float("inf")},
        {"session_timeout": float("nan")},
        {"error_delay": float("inf")},
        # A timeout of 0 ends every wait at once; nothing is negative.
        {"command_timeout": 0},
        {"tls_handshake_timeout": 0.0},
        {"max_message_size": float("nan")},
        {"spool_threshold": float("inf")},
        {"mailer_timeout": -1.0},
        {"shutdown_grace": -0.5},
        {"greeting_delay": -1.0},
        {"reverse_dns_timeout": -1.0},
        {"spool_threshold": -1},
        {"max_auth_failures": 0},
        {"max_auth_failures_per_ip": 0},
    ],
)
def test_server_config_refuses_unsafe_limits(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        smtp_recv.ServerConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"reverse_dns_timeout": 0.0},  # no lookup waited for
        {"auth_failure_window": 0.0},  # failures forgotten at once
        {"greeting_delay": 0.0, "error_delay": 0.0, "shutdown_grace": 0.0},
        {"spool_threshold": 0, "soft_error_limit": 0},
    ],
)
def test_server_config_takes_zero_where_it_means_none(options: dict[str, float]) -> None:
    smtp_recv.ServerConfig(hostname="mx.example.com", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "hostname",
    [
        "mx.exämple.com",
        "",
        "mx example",
        "mx\r\n.example",
        "mx.example.com/x",
        "-bad..host-",
        "mx.example.com..",
        ".",
        "a" * 64 + ".example",  # a label is at most 63
        ("a" * 63 + ".") * 3 + "a" * 62,  # a name is at most 253
        "[1.2.3.4",
    ],
)
def test_hostname_must_be_an_ascii_name(hostname: str) -> None:
    # A name that cannot go into a Received header would fail every message.
    with pytest.raises(ValueError, match="hostname"):
        smtp_recv.ServerConfig(hostname=hostname)


@pytest.mark.parametrize(
    "hostname", ["mx", "MX.Example.COM", "mail_01.example.com", "[192.0.2.1]", "[IPv6:2001:db8::1]"]
)
def test_hostname_may_be_any_domain_or_address_literal(hostname: str) -> None:
    assert smtp_recv.ServerConfig(hostname=hostname).hostname == hostname


def test_hostname_may_end_in_the_roots_dot_which_is_not_sent() -> None:
    assert smtp_recv.ServerConfig(hostname="mx.example.com.").hostname == "mx.example.com"


async def test_hostname_in_idna_form_works_end_to_end(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    config = base_config(hostname="mx.xn--exmple-cua.com")
    async with (
        running(cert_set, config=config, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 250
    (delivered,) = mailer.delivered
    assert b"by mx.xn--exmple-cua.com (smtp_recv)" in delivered.data


async def test_max_non_mail_commands_gets_421_and_close(cert_set: CertSet) -> None:
    async with (
        running(cert_set, config=base_config(max_non_mail_commands=3)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.send(b"NOOP\r\nNOOP\r\nNOOP\r\n")
        answers = [await client.reply() for _ in range(3)]
        assert [a.code for a in answers] == [250, 250, 421]
        assert answers[-1].enhanced == "4.7.0"
        assert await client.closed() == b""


async def test_unknown_recipients_count_toward_the_error_limits(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """Guessing addresses (directory harvesting) meets the same delays and 421."""
    config = base_config(soft_error_limit=2, hard_error_limit=5, error_delay=1.0)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        start = trio.current_time()
        codes = [
            (await client.command(f"RCPT TO:<guess{i}@nowhere.example>")).code for i in range(4)
        ]
        assert codes == [550, 550, 550, 550]
        # Errors 3 and 4 are past the soft limit: 1 s, then 2 s.
        assert trio.current_time() - start == pytest.approx(3, abs=0.1)
        await client.send(b"RCPT TO:<guess5@nowhere.example>\r\n")
        assert [(await client.reply()).code for _ in range(2)] == [550, 421]
        assert await client.closed() == b""


async def test_a_relay_delivering_its_queue_is_forgiven_each_unknown_recipient(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """Each message accepted starts the error count over, as Postfix does.

    Without that, a relay sending many messages over one connection, each
    with one recipient we do not know, would meet growing delays and then
    421, every message before having been accepted.
    """
    config = base_config(soft_error_limit=2, hard_error_limit=5, error_delay=1.0)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        start = trio.current_time()
        for i in range(8):
            assert (await client.command("MAIL FROM:<relay@b.example>")).code == 250
            assert (await client.command(f"RCPT TO:<gone{i}@nowhere.example>")).code == 550
            assert (await client.command("RCPT TO:<bob@example.com>")).code == 250
            assert (await client.command("DATA")).code == 354
            assert (await client.command(b"Subject: queued\r\n\r\nhi\r\n.")).code == 250
        assert trio.current_time() - start == pytest.approx(0, abs=0.1)  # no delay at all


async def test_a_refused_bdat_chunk_must_arrive_at_the_minimum_rate(
    cert_set: CertSet, autojump_clock: MockClock
) -> None:
    """BDAT before MAIL is refused only once its chunk is read; trickling that
    chunk must not hold the connection past the data rate deadline."""
    config = base_config(min_data_rate=100, data_rate_grace=5, data_block_timeout=60)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        start = trio.current_time()
        await client.send(b"BDAT 1000000\r\nx")
        while await client.silent_for(4):
            await client.send(b"x")
        timeout = await client.reply()
        assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
        assert trio.current_time() - start < 6
        assert await client.closed() == b""


async def test_a_hook_rejecting_with_421_closes_the_connection(cert_set: CertSet) -> None:
    class Busy:
        async def lookup(self, recipient: str) -> Sequence[str]:
            raise smtp_recv.Reject(421, "4.7.0", "Try again later")

    async with (
        running(cert_set, forward=Busy()) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\nNOOP\r\n")
        answers = [await client.reply() for _ in range(2)]
        assert [(a.code, a.enhanced) for a in answers] == [(250, "2.1.0"), (421, "4.7.0")]
        assert await client.closed() == b""


async def test_submission_refuses_surplus_connections_before_tls(cert_set: CertSet) -> None:
    """Past max_connections_per_ip, port 465 closes without a handshake."""
    config = base_config(max_connections_per_ip=1)
    async with (
        running(cert_set, config=config) as server,
        await Client.connect(server.mx) as first,
    ):
        assert (await first.reply()).code == 220
        stream = await trio.open_tcp_stream(*server.submission)
        try:
            with trio.fail_after(5):
                assert await stream.receive_some(1024) == b""
        finally:
            await stream.aclose()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"command_timeout": "300"}, TypeError, "command_timeout must be a number"),
        ({"max_recipients": "1000"}, TypeError, "max_recipients must be a number"),
        ({"max_connections": True}, TypeError, "max_connections must be a number"),
        ({"smtputf8": 1}, TypeError, "smtputf8 must be a bool"),
        ({"max_message_size": 1000.5}, ValueError, "max_message_size must be a whole number"),
        ({"max_recipients": 99}, ValueError, r"at least 100 \(RFC 5321 4.5.3.1.8\)"),
    ],
)
def test_server_config_refuses_values_of_the_wrong_kind(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    """A value that would fail every session later is refused when the config is made."""
    with pytest.raises(error, match=match):
        smtp_recv.ServerConfig(hostname="mx.example.com", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_a_listener_port_out_of_range_is_refused(port: int) -> None:
    # The system would take it modulo 65536: 70000 would listen on 4464.
    with pytest.raises(ValueError, match="port must be 0 to 65535"):
        smtp_recv.ListenerConfig(port=port)


def test_a_listener_port_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="port must be an int"):
        smtp_recv.ListenerConfig(port="25")  # type: ignore[arg-type]
