"""SECURITY-CASES.md section 7: TLS on the implicit-TLS submission port.

No SMTP byte before a handshake succeeds, whatever arrives instead of a
ClientHello; TLS 1.2 at least; no renegotiation; the default certificate
for clients without SNI or with a name we do not know.
"""

from __future__ import annotations

import functools
import re
import shutil
import ssl
import subprocess
import tempfile
import warnings
from pathlib import Path

import pytest
import trio
import trustme

import smtp_recv
from smtp_recv import Certificate, ServerConfig
from smtp_recv._tls import TLSContexts
from smtp_recv.testing import AcceptDomains, MemoryMailer, PasswordTable

from .harness import PASSWORD, USER, connect, healthy, prelude, running, start_tls

_SMTP_REPLY = re.compile(rb"(?m)^[2-5][0-9][0-9][ -]")
NOT_TLS = {
    "ehlo": b"EHLO client.example\r\n",
    "quit": b"QUIT\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "broken-client-hello": b"\x16\x03\x01\x00\x05hello",
    "record-too-long": b"\x16\x03\x01\xff\xff" + b"\x01" * 64,
    "zeros": b"\x00" * 64,
    "ssl2-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x00" * 37,
}


@pytest.mark.parametrize("data", NOT_TLS.values(), ids=NOT_TLS.keys())
async def test_not_tls_on_the_tls_port(data: bytes) -> None:
    """Closed at once, no SMTP byte; the listener keeps serving others."""
    async with running() as harness:
        client = await connect(harness.server.submission)
        try:
            await client.send(data)
            rest = await client.closed()
        finally:
            await client.aclose()
        assert not _SMTP_REPLY.search(rest), rest
        await healthy(harness, "submission")
        assert len(harness.mailer.messages) == 1


def _client_context(server_ca: Path, *, version: ssl.TLSVersion) -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(server_ca))
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def _old_tls_possible(version: ssl.TLSVersion) -> bool:
    """Control: can this OpenSSL speak ``version`` at all (to a lax server)?"""
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = version
        client.maximum_version = version
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    left, right = trio.testing.memory_stream_pair()
    a = trio.SSLStream(left, server, server_side=True)
    b = trio.SSLStream(right, client, server_hostname="localhost")
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.do_handshake)
                nursery.start_soon(b.do_handshake)
    except (trio.BrokenResourceError, ExceptionGroup):
        return False
    return True


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls1.0", "tls1.1"]
)
async def test_old_tls_refused(version: ssl.TLSVersion) -> None:
    if not await _old_tls_possible(version):
        pytest.skip(f"this OpenSSL cannot speak {version.name} even to a lax server")
    async with running() as harness:
        client = await connect(harness.server.submission)
        try:
            with pytest.raises(trio.BrokenResourceError):
                await start_tls(client, _client_context(harness.server.ca_file, version=version))
        finally:
            await client.aclose()
        await healthy(harness, "submission")


async def test_tls12_accepted() -> None:
    async with running() as harness:
        client = await connect(harness.server.submission)
        try:
            context = _client_context(harness.server.ca_file, version=ssl.TLSVersion.TLSv1_2)
            await start_tls(client, context)
            await client.expect("220")
            assert isinstance(client.stream, trio.SSLStream)
            assert client.stream.version() == "TLSv1.2"
        finally:
            await client.aclose()


def test_server_context_hardening(tmp_path: Path) -> None:
    """TLS 1.2 minimum, renegotiation and compression off, on every context."""
    ca = trustme.CA()
    pem = tmp_path / "cert.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    contexts = TLSContexts(_Certs({None: Certificate(pem)}))
    context = contexts.current()
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & ssl.OP_NO_COMPRESSION


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_renegotiation_refused() -> None:
    """A TLS 1.2 client asking to renegotiate gets no second handshake.

    ``openssl s_client`` renegotiates on an ``R`` line; it is sent only
    after the 220 has been read, so that no application data is in flight
    during the renegotiation (the client would abort on it by itself).
    """
    async with running() as harness:
        host, port = harness.server.submission
        command = [
            "openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_2",
            "-CAfile", str(harness.server.ca_file), "-servername", "localhost",
        ]  # fmt: skip
        output = bytearray()
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            with trio.fail_after(20):
                while b"\n220 " not in output:
                    chunk = await process.stdout.receive_some()
                    assert chunk, bytes(output[-2000:])
                    output += chunk
                await process.stdin.send_all(b"R\n")
                await process.stdin.aclose()
                while chunk := await process.stdout.receive_some():
                    output += chunk
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            await process.stdout.aclose()
        assert b"RENEGOTIATING" in output, bytes(output[-2000:])
        # The server answers the second ClientHello with a no_renegotiation
        # alert (OP_NO_RENEGOTIATION): there is no second handshake.
        assert b"no renegotiation" in output.lower(), bytes(output[-2000:])


class _Certs:
    def __init__(self, certificates: dict[str | None, Certificate]) -> None:
        self.certificates = certificates

    def get(self, host: str | None) -> Certificate | None:
        return self.certificates.get(host)


@pytest.mark.parametrize(
    ("sni", "expected"),
    [(None, "localhost"), ("unknown.example", "localhost"), ("other.example", "other.example")],
    ids=["no-sni", "unknown-sni", "known-sni"],
)
async def test_certificate_by_sni(sni: str | None, expected: str) -> None:
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as directory:
        default, other = Path(directory, "default.pem"), Path(directory, "other.pem")
        ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(default))
        ca.issue_cert("other.example").private_key_and_cert_chain_pem.write_to_path(str(other))
        certs = _Certs({None: Certificate(default), "other.example": Certificate(other)})
        config = ServerConfig(
            hostname="mx.our.example",
            reverse_dns=False,
            mx=smtp_recv.ListenerConfig(port=0, host="127.0.0.1"),
            submission=smtp_recv.ListenerConfig(port=0, host="127.0.0.1"),
        )
        table = PasswordTable({USER: PASSWORD})
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(
                functools.partial(
                    smtp_recv.serve,
                    AcceptDomains(["our.example"]),
                    table,
                    MemoryMailer(),
                    certs,
                    config=config,
                    sender_policy=table,
                )
            )
            client = await connect(listening.submission[0])
            context = ssl.create_default_context()
            ca.configure_trust(context)
            context.check_hostname = False
            try:
                await start_tls(client, context, server_hostname=sni)
                await client.expect("220")
                assert isinstance(client.stream, trio.SSLStream)
                der = client.stream.getpeercert(binary_form=True)
                assert der is not None
                subject = ssl.DER_cert_to_PEM_cert(der)
                names = _names(subject)
                assert expected in names, names
            finally:
                await client.aclose()
            nursery.cancel_scope.cancel()


def _names(pem: str) -> str:
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(pem.encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return " ".join(san.value.get_values_for_type(x509.DNSName))


async def test_starttls_tls12_minimum() -> None:
    """The MX listener's STARTTLS uses the same hardened context."""
    async with running() as harness:
        client = await prelude(harness.server, "mx", "greet")
        try:
            await client.command("STARTTLS", "220 2.0.0")
            context = _client_context(harness.server.ca_file, version=ssl.TLSVersion.TLSv1_2)
            await start_tls(client, context)
            await client.command("EHLO client.example", "250")
        finally:
            await client.aclose()
