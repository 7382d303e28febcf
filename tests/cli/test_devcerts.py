"""The development server's self-signed localhost certificate."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import trio
import trio.testing
from cryptography import x509

from smtp_recv._devcerts import dev_certificate


def test_made_on_first_run_and_reused_after(tmp_path: Path) -> None:
    first = dev_certificate(tmp_path)
    assert first.keyfile is not None
    pem = first.certfile.read_bytes()
    assert stat.S_IMODE(first.keyfile.stat().st_mode) == 0o600
    second = dev_certificate(tmp_path)
    assert second == first
    assert second.certfile.read_bytes() == pem


def test_names_localhost_and_loopback(tmp_path: Path) -> None:
    certificate = dev_certificate(tmp_path)
    loaded = x509.load_pem_x509_certificate(certificate.certfile.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


def test_broken_or_mismatched_files_are_replaced(tmp_path: Path) -> None:
    certificate = dev_certificate(tmp_path)
    certificate.certfile.write_bytes(b"garbage")
    replaced = dev_certificate(tmp_path)
    assert b"BEGIN CERTIFICATE" in replaced.certfile.read_bytes()

    # A key from another run (a crash between the two writes) is noticed too.
    other = dev_certificate(tmp_path / "other")
    assert other.keyfile is not None
    assert replaced.keyfile is not None
    replaced.keyfile.write_bytes(other.keyfile.read_bytes())
    before = replaced.certfile.read_bytes()
    dev_certificate(tmp_path)
    assert replaced.certfile.read_bytes() != before


async def test_a_client_trusting_the_file_verifies_localhost(tmp_path: Path) -> None:
    certificate = dev_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.certfile, certificate.keyfile)
    client_context = ssl.create_default_context(cafile=str(certificate.certfile))
    # What Python 3.13's default context adds; the certificate must pass it.
    client_context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_raw, client_context, server_hostname="localhost")
    server = trio.SSLStream(server_raw, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert client.version() in ("TLSv1.2", "TLSv1.3")
