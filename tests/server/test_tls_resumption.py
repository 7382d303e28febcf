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

from smtp_recv._tls import TLSContexts

from .conftest import WAIT, CertSet, running


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
        return tls.session, tls.session_reused


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


def test_one_ticket_per_handshake(cert_set: CertSet) -> None:
    assert TLSContexts(cert_set.certs()).context.num_tickets == 1
