"""``smtp_recv.serve``: starting, listeners, sockets, stopping, and isolation of sessions."""

from __future__ import annotations

import errno
import functools
import gc
import os
import resource
import socket
import struct
import threading
import warnings
from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio

import smtp_recv
from smtp_recv.testing import AcceptDomains, MemoryMailer, PasswordTable

from .conftest import USERS, CertSet, Client, RecordingMailer, base_config, running

ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"


def serve_partial(
    cert_set: CertSet, config: smtp_recv.ServerConfig, mailer: object = None
) -> functools.partial[object]:
    table = PasswordTable(USERS)
    return functools.partial(
        smtp_recv.serve,
        AcceptDomains(["example.com"]),
        table,
        mailer or MemoryMailer(),
        cert_set.certs(),
        config=config,
        sender_policy=table,
    )


def local(port: int = 0, **options: object) -> smtp_recv.ListenerConfig:
    return smtp_recv.ListenerConfig(host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


async def test_serve_started_with_nursery_start_reports_both_listeners(cert_set: CertSet) -> None:
    config = base_config(mx=local(), submission=local())
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(serve_partial(cert_set, config))
        assert isinstance(listening, smtp_recv.Listening)
        ((mx_host, mx_port),) = listening.mx
        ((sub_host, sub_port),) = listening.submission
        assert mx_host == sub_host == "127.0.0.1"
        assert 0 not in (mx_port, sub_port)
        assert mx_port != sub_port
        async with await Client.connect(listening.mx[0]) as client:
            assert (await client.reply()).code == 220
        async with await Client.connect(
            listening.submission[0], tls=cert_set.client_context(), server_hostname="localhost"
        ) as client:
            assert (await client.reply()).code == 220
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("disabled", ["mx", "submission"])
async def test_either_listener_can_be_disabled(cert_set: CertSet, disabled: str) -> None:
    listeners = {"mx": local(), "submission": local()}
    listeners[disabled] = local(enabled=False)
    config = base_config(**listeners)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(serve_partial(cert_set, config))
        assert getattr(listening, disabled) == ()
        other = "submission" if disabled == "mx" else "mx"
        assert len(getattr(listening, other)) == 1
        nursery.cancel_scope.cancel()


async def test_serve_uses_already_bound_sockets(cert_set: CertSet) -> None:
    # As systemd socket activation hands them over (LISTEN_FDS).
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    mailer = MemoryMailer()
    config = base_config(mx=local(25, sockets=[sock]), submission=local(enabled=False))
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(serve_partial(cert_set, config, mailer))
        assert listening.mx == (("127.0.0.1", port),)
        async with await Client.connect(("127.0.0.1", port)) as client:
            await client.greeting_and_ehlo()
            assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 250
        nursery.cancel_scope.cancel()
    assert len(mailer.messages) == 1
    assert sock.fileno() == -1  # serve owned it and closed it


async def test_out_of_descriptors_the_server_waits_and_accepts_again(
    cert_set: CertSet, caplog: pytest.LogCaptureFixture
) -> None:
    # EMFILE on accept must not end serve: the connection waits in the
    # kernel's queue until a descriptor is free, then gets its greeting.
    config = base_config(mx=local(), submission=local(enabled=False))
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(serve_partial(cert_set, config))
        client = socket.socket()  # its descriptor, before there are none
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(client.fileno())
        os.close(lowest_free)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            client.connect(listening.mx[0])  # completes in the kernel's queue
            await trio.sleep(0.3)  # two or three tries of the accept loop
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert "accept failed (EMFILE); retrying" in caplog.text
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
        with trio.fail_after(10):
            assert (await stream.receive_some(100)).startswith(b"220 ")
        await stream.aclose()
        nursery.cancel_scope.cancel()


def test_an_empty_host_is_refused_rather_than_read_as_every_interface() -> None:
    with pytest.raises(ValueError, match="None for every interface"):
        smtp_recv.ListenerConfig(port=25, host="")


def test_a_socket_that_cannot_accept_tcp_connections_is_refused_at_once() -> None:
    # Given to serve, each would fail (or spin) on every accept once it runs.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))  # bound, but listen() was never called
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("")  # Linux's abstract namespace: no file left behind
    unix.listen()
    with udp, bound, unix:
        with pytest.raises(ValueError, match="not a stream"):
            smtp_recv.ListenerConfig(port=25, sockets=[udp])
        with pytest.raises(ValueError, match="not listening"):
            smtp_recv.ListenerConfig(port=25, sockets=[bound])
        with pytest.raises(ValueError, match="not an IPv4 or IPv6"):
            smtp_recv.ListenerConfig(port=25, sockets=[unix])


async def test_cancelling_serve_stops_it_and_closes_listeners(cert_set: CertSet) -> None:
    config = base_config(mx=local(), submission=local())
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(serve_partial(cert_set, config))
            scope.cancel()
    assert scope.cancelled_caught
    for address in (*listening.mx, *listening.submission):
        with pytest.raises(OSError, match="all attempts to connect"):
            await trio.open_tcp_stream(*address)


async def test_bind_failure_raises_oserror_and_leaks_no_socket(cert_set: CertSet) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config = base_config(mx=local(), submission=local(port))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(OSError, match="in use") as excinfo:
                await serve_partial(cert_set, config)()
            assert excinfo.value.errno == errno.EADDRINUSE
            # Which listener, on which address: the error names them.
            assert isinstance(excinfo.value, smtp_recv.ListenError)
            assert str(excinfo.value).startswith(f"submission on 127.0.0.1 port {port}: ")
            del excinfo
            gc.collect()
    finally:
        busy.close()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


class WeirdForward:
    """Hooks that fail in odd ways; each must stay inside its session."""

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("even printing this fails")

    async def lookup(self, recipient: str) -> Sequence[str]:
        local_part = recipient.split("@")[0]
        if local_part == "none":
            return None  # type: ignore[return-value]
        if local_part == "group":
            raise ExceptionGroup("several", [ValueError("a"), KeyError("b")])
        if local_part == "unprintable":
            raise self.Unprintable
        if local_part == "string":
            return recipient  # a str is a Sequence[str], but not a list of addresses
        return [recipient]


async def test_weird_hook_errors_stay_in_their_session(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, forward=WeirdForward(), mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
        for name in ("none", "group", "unprintable", "string"):
            answer = await client.command(f"RCPT TO:<{name}@example.com>")
            assert (answer.code, answer.enhanced) == (451, "4.3.0"), name
        assert (await client.command("RCPT TO:<fine@example.com>")).code == 250
        assert (await client.command("DATA")).code == 354
        await client.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        assert (await client.reply()).code == 250
    (delivered,) = mailer.delivered
    assert [(r.address, r.targets) for r in delivered.mail.recipients] == [
        ("fine@example.com", ("fine@example.com",))
    ]
    assert server.cancelled  # serve ended by our stop, not by an error


def reset(client: Client) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = client.stream.socket  # type: ignore[attr-defined]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("how", ["reset", "eof"])
async def test_connection_dropped_mid_data_delivers_nothing_and_others_go_on(
    cert_set: CertSet, how: str
) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as other,
    ):
        await other.greeting_and_ehlo()
        dropped = await Client.connect(server.mx)
        await dropped.greeting_and_ehlo()
        await dropped.send(ENVELOPE)
        assert [(await dropped.reply()).code for _ in range(3)] == [250, 250, 354]
        await dropped.send(b"Subject: half\r\n\r\nonly half of it\r\n")
        if how == "reset":
            reset(dropped)
        else:
            await dropped.stream.send_eof()  # type: ignore[attr-defined]
            assert await dropped.closed() == b""
            await dropped.aclose()
        answer = await other.send_message("a@b.example", ["bob@example.com"])
        assert answer.code == 250
    assert [d.mail.session_id for d in mailer.delivered] == [mailer.delivered[0].mail.session_id]
    assert len(mailer.delivered) == 1
    assert b"only half" not in mailer.delivered[0].data


async def test_bdat_message_is_delivered_and_dropped_before_last_is_not(
    cert_set: CertSet,
) -> None:
    mailer = RecordingMailer()
    async with running(cert_set, mailer=mailer) as server:
        async with await Client.connect(server.mx) as client:
            await client.greeting_and_ehlo()
            first, last = b"Subject: b\r\n\r\nab", b".\r\n\r\n"
            await client.send(
                b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\n"
                + f"BDAT {len(first)}\r\n".encode()
                + first
                + f"BDAT {len(last)} LAST\r\n".encode()
                + last
            )
            answers = [await client.reply() for _ in range(4)]
            assert [a.code for a in answers] == [250, 250, 250, 250]
        dropped = await Client.connect(server.mx)
        await dropped.greeting_and_ehlo()
        await dropped.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nBDAT 10\r\n0123456789"
        )
        assert [(await dropped.reply()).code for _ in range(3)] == [250, 250, 250]
        reset(dropped)
    (delivered,) = mailer.delivered
    assert delivered.data.endswith(b"\r\nSubject: b\r\n\r\nab.\r\n\r\n")


async def test_internal_error_in_a_session_gives_421_and_serving_goes_on(
    cert_set: CertSet, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    # A bug of ours while the message ends: the session says 421 and ends;
    # the message is not acknowledged, and the server goes on.
    async def broken(self: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(smtp_recv._spool.Spool, "finish", broken)
    mailer = RecordingMailer()
    config = base_config(spool_threshold=100)
    async with running(cert_set, config=config, mailer=mailer) as server:
        async with await Client.connect(server.mx) as client:
            await client.greeting_and_ehlo()
            await client.send(ENVELOPE)
            assert [(await client.reply()).code for _ in range(3)] == [250, 250, 354]
            await client.send(b"Subject: big\r\n\r\n" + b"z" * 500 + b"\r\n.\r\n")
            failed = await client.reply()
            assert (failed.code, failed.enhanced) == (421, "4.3.0")
            assert await client.closed() == b""
        monkeypatch.undo()
        async with await Client.connect(server.mx) as client:
            await client.greeting_and_ehlo()
            assert (await client.send_message("a@b.example", ["bob@example.com"])).code == 250
    assert len(mailer.delivered) == 1


def given_sockets() -> tuple[socket.socket, socket.socket]:
    """Two bound, listening sockets, as systemd hands them over."""
    pair = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        pair.append(sock)
    return pair[0], pair[1]


def ends_within(seconds: float, main: Callable[[], Awaitable[object]]) -> None:
    """Run ``main`` in a trio run of its own, in a thread: a hang is a failure.

    Not ``fail_after``: it cannot reach a task waiting in a shielded scope.
    """
    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "serve did not end"


@pytest.mark.parametrize("checkpoints", range(8))
def test_serve_cancelled_while_it_starts_ends(cert_set: CertSet, checkpoints: int) -> None:
    """Cancelled at any point of its start, serve ends: none of its waits outlives it."""
    mx, submission = given_sockets()
    config = base_config(mx=local(sockets=[mx]), submission=local(sockets=[submission]))

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def cancel_soon() -> None:
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()

            nursery.start_soon(cancel_soon)
            await nursery.start(serve_partial(cert_set, config))

    ends_within(10, main)
    assert (mx.fileno(), submission.fileno()) == (-1, -1)


def test_serve_in_a_cancelled_scope_ends_and_closes_its_sockets(cert_set: CertSet) -> None:
    mx, submission = given_sockets()
    config = base_config(mx=local(sockets=[mx]), submission=local(sockets=[submission]))

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await serve_partial(cert_set, config)()

    ends_within(10, main)
    assert (mx.fileno(), submission.fileno()) == (-1, -1)


class NoDefault:
    def get(self, host: str | None) -> smtp_recv.Certificate | None:
        return None


async def test_given_sockets_are_closed_when_serve_fails_to_start(cert_set: CertSet) -> None:
    """``serve`` takes them over (ListenerConfig), even if it ends before it listens."""
    mx, submission = given_sockets()
    config = base_config(mx=local(sockets=[mx]), submission=local(sockets=[submission]))
    table = PasswordTable(USERS)
    with pytest.raises(ValueError, match="default certificate"):
        await smtp_recv.serve(
            AcceptDomains(["example.com"]),
            table,
            MemoryMailer(),
            NoDefault(),  # type: ignore[arg-type]
            config=config,
        )
    assert (mx.fileno(), submission.fileno()) == (-1, -1)


async def test_given_sockets_are_closed_when_the_other_listener_cannot_bind(
    cert_set: CertSet,
) -> None:
    busy, submission = given_sockets()
    try:
        config = base_config(
            mx=local(busy.getsockname()[1]), submission=local(sockets=[submission])
        )
        with pytest.raises(smtp_recv.ListenError):
            await serve_partial(cert_set, config)()
        assert submission.fileno() == -1
    finally:
        busy.close()
