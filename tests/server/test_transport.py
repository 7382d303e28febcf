"""The session's transport: non-blocking calls first, waits only when needed.

Real connected sockets (a socketpair, and TCP on 127.0.0.1) and real TLS
(trustme).  The peer is trio's own ``SocketStream`` / ``SSLStream``, so each
test checks our transport against an independent implementation.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trustme

from smtp_recv._transport import Transport

WAIT = 30.0
BIG = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def small_buffers(sock: socket.socket | trio.socket.SocketType) -> None:
    # Small kernel buffers, so that a few hundred KiB fill them.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


@pytest.fixture
async def plain_pair() -> AsyncIterator[tuple[Transport, trio.SocketStream]]:
    ours, theirs = socket.socketpair()
    small_buffers(ours)
    small_buffers(theirs)
    # ``ours`` is blocking, as ``accept`` gives a connection.
    transport = Transport(ours)
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    try:
        yield transport, peer
    finally:
        transport.close()
        await trio.aclose_forcefully(peer)


async def receive_some(transport: Transport) -> bytes:
    while True:
        data = transport.receive_nowait(65536)
        if data is not None:
            return data
        await transport.wait_receivable()


async def read_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = await stream.receive_some(65536)
        assert chunk, "the peer closed early"
        chunks += chunk
    return bytes(chunks)


@pytest.fixture
async def tls_pair(
    ca: trustme.CA, plain_pair: tuple[Transport, trio.SocketStream]
) -> tuple[Transport, trio.SSLStream[trio.SocketStream]]:
    transport, peer = plain_pair
    client = trio.SSLStream(peer, client_context(ca), server_hostname="localhost")
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            tls = await transport.start_tls(server_context(ca))
    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A blocking call would stop every session of the server.
    assert not tls.getblocking()
    return transport, client


async def test_an_accepted_tcp_connection_is_taken_non_blocking_and_without_nagle() -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    with listening, socket.create_connection(listening.getsockname(), timeout=WAIT) as client:
        accepted, _ = listening.accept()
        assert accepted.getblocking()
        transport = Transport(accepted)
        try:
            assert not accepted.getblocking()
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            transport.close()
        # Closed by the transport: the client sees the end.
        assert client.recv(1) == b""


async def test_nothing_waiting_is_none_not_a_block(
    plain_pair: tuple[Transport, trio.SocketStream],
) -> None:
    transport, _peer = plain_pair
    assert transport.receive_nowait(100) is None
    assert not transport.has_data()


async def test_plain_bytes_arrive_and_eof_is_empty(
    plain_pair: tuple[Transport, trio.SocketStream],
) -> None:
    transport, peer = plain_pair
    with trio.fail_after(WAIT):
        await peer.send_all(b"EHLO x\r\n")
        assert transport.has_data()
        assert await receive_some(transport) == b"EHLO x\r\n"
        await peer.send_eof()
        assert await receive_some(transport) == b""


async def test_a_send_larger_than_the_buffers_waits_for_room_and_arrives_whole(
    plain_pair: tuple[Transport, trio.SocketStream],
) -> None:
    transport, peer = plain_pair
    data = bytes(range(256)) * (BIG // 256)
    first = transport.send_nowait(data)
    # The kernel took only part of it: the rest must wait for the reader.
    assert 0 < first < len(data)
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.send_all, data[first:])
            assert await read_exactly(peer, len(data)) == data


async def test_a_send_to_a_reset_connection_is_a_broken_resource(
    plain_pair: tuple[Transport, trio.SocketStream],
) -> None:
    transport, peer = plain_pair
    peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await trio.aclose_forcefully(peer)

    def send_until_refused() -> None:
        for _ in range(100):
            transport.send_nowait(b"x" * 65536)

    with pytest.raises(trio.BrokenResourceError):
        send_until_refused()


async def test_after_close_every_call_is_a_closed_resource(
    plain_pair: tuple[Transport, trio.SocketStream],
) -> None:
    transport, _peer = plain_pair
    transport.close()
    transport.close()  # twice is harmless (and the fixture closes it again)
    with pytest.raises(trio.ClosedResourceError):
        transport.receive_nowait(1)
    with pytest.raises(trio.ClosedResourceError):
        transport.send_nowait(b"x")


async def test_tls_records_both_ways(
    tls_pair: tuple[Transport, trio.SSLStream[trio.SocketStream]],
) -> None:
    transport, client = tls_pair
    with trio.fail_after(WAIT):
        await client.send_all(b"EHLO client\r\n")
        assert await receive_some(transport) == b"EHLO client\r\n"
        await transport.send_all(b"250 hello\r\n")
        assert await read_exactly(client, 11) == b"250 hello\r\n"


async def test_tls_send_larger_than_the_buffers_arrives_whole(
    tls_pair: tuple[Transport, trio.SSLStream[trio.SocketStream]],
) -> None:
    transport, client = tls_pair
    data = bytes(range(251)) * (BIG // 251)
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.send_all, data)
            assert await read_exactly(client, len(data)) == data


async def test_tls_receive_larger_than_the_buffers_arrives_whole(
    tls_pair: tuple[Transport, trio.SSLStream[trio.SocketStream]],
) -> None:
    transport, client = tls_pair
    data = bytes(range(241)) * (BIG // 241)
    received = bytearray()
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, data)
            while len(received) < len(data):
                chunk = await receive_some(transport)
                assert chunk
                received += chunk
    assert received == data


async def test_tls_close_notify_is_eof(
    tls_pair: tuple[Transport, trio.SSLStream[trio.SocketStream]],
) -> None:
    transport, client = tls_pair
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)
            assert await receive_some(transport) == b""


async def test_closing_tls_sends_close_notify_so_the_client_sees_an_end_not_a_truncation(
    tls_pair: tuple[Transport, trio.SSLStream[trio.SocketStream]],
) -> None:
    """RFC 8446 6.1.  Without the alert trio's SSLStream raises BrokenResourceError."""
    transport, client = tls_pair
    await transport.send_all(b"221 Bye\r\n")
    transport.close()
    with trio.fail_after(WAIT):
        assert await read_exactly(client, 9) == b"221 Bye\r\n"
        assert await client.receive_some(65536) == b""


async def test_closing_before_the_handshake_ends_sends_nothing_and_raises_nothing(
    ca: trustme.CA, plain_pair: tuple[Transport, trio.SocketStream]
) -> None:
    transport, peer = plain_pair
    await peer.send_all(b"\x16\x03\x01")  # the start of a ClientHello, no more
    with trio.move_on_after(0.2):
        await transport.start_tls(server_context(ca))
    transport.close()
    with trio.fail_after(WAIT):
        assert await peer.receive_some(65536) == b""


async def test_a_garbage_handshake_is_a_broken_resource(
    ca: trustme.CA, plain_pair: tuple[Transport, trio.SocketStream]
) -> None:
    transport, peer = plain_pair
    await peer.send_all(b"EHLO this is not TLS\r\n" * 10)
    with trio.fail_after(WAIT), pytest.raises(trio.BrokenResourceError):
        await transport.start_tls(server_context(ca))


async def test_garbage_after_the_handshake_is_a_broken_resource(
    ca: trustme.CA, plain_pair: tuple[Transport, trio.SocketStream]
) -> None:
    transport, peer = plain_pair
    client = trio.SSLStream(peer, client_context(ca), server_hostname="localhost")
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            await transport.start_tls(server_context(ca))
        # Plaintext where a record should be: a protocol violation.
        await peer.send_all(b"\x17\x03\x03\x00\x05hello")
        with pytest.raises(trio.BrokenResourceError):
            await receive_some(transport)
