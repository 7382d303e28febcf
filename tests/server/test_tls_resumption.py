"""TLS session resumption: a client that reconnects skips the full handshake.

RFC 8446 4.6.1: after a TLS 1.3 handshake the server may send session
tickets.  SMTP clients open one connection at a time, so the server sends one
per connection, and the next connection resumes with it.
"""

from __future__ import annotations

import socket
import ssl

import pytest
import trio

from .conftest import WAIT, CertSet, running

#: The handshake message type of a session ticket (RFC 8446 section 4).
NEW_SESSION_TICKET = 4


def _connect(
    address: tuple[str, int], context: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[ssl.SSLSession | None, bool]:
    """One submission session up to QUIT: its TLS session, and whether the
    handshake resumed ``session``."""
    with (
        socket.create_connection(address, timeout=WAIT) as raw,
        context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
    ):
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += tls.recv(1024)
        assert reply.startswith(b"220 ")
        tls.sendall(b"QUIT\r\n")
        while not reply.endswith(b"221 2.0.0 Bye\r\n") and (data := tls.recv(1024)):
            reply += data
        return tls.session, bool(tls.session_reused)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_a_reconnecting_client_resumes_its_session(
    cert_set: CertSet, version: ssl.TLSVersion
) -> None:
    context = cert_set.client_context()
    context.maximum_version = version
    async with running(cert_set) as server:
        first, resumed = await trio.to_thread.run_sync(_connect, server.submission, context, None)
        assert not resumed
        assert first is not None
        assert first.has_ticket
        second, resumed = await trio.to_thread.run_sync(_connect, server.submission, context, first)
        assert resumed
        # The resumed connection brought a new ticket for the next one.
        assert second is not None
        assert second.has_ticket


async def test_tls_1_3_sends_one_ticket_per_handshake(cert_set: CertSet) -> None:
    context = cert_set.client_context()
    tickets: list[object] = []

    # The standard library's (undocumented) hook on each TLS message; for
    # TLS 1.3 it sees the handshake messages inside the encrypted records.
    def seen(
        conn: object, direction: str, version: object, kind: object, message: object, data: bytes
    ) -> None:
        if direction == "read" and message == NEW_SESSION_TICKET:
            tickets.append(message)

    context._msg_callback = seen  # type: ignore[attr-defined]
    async with running(cert_set) as server:
        first, _ = await trio.to_thread.run_sync(_connect, server.submission, context, None)
        assert len(tickets) == 1
        await trio.to_thread.run_sync(_connect, server.submission, context, first)
        assert len(tickets) == 2
