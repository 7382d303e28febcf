"""A self-signed certificate for ``localhost``, so the development server has TLS.

The submission listener speaks implicit TLS only, so even a local test
server needs a certificate.  We make one on first run and keep it in the
state directory; mail clients can then be told to trust that one file
(``ssl.create_default_context(cafile=...)``, ``swaks --tls-ca-path``) and
keep verifying hostnames, instead of switching verification off.

It is its own CA (``CA:TRUE``, ``keyCertSign``) because OpenSSL only accepts a
self-signed certificate as a trust anchor when it may sign certificates; it
also carries the key identifiers that strict X.509 verification requires.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._hooks import Certificate

__all__ = ["dev_certificate"]

CERTIFICATE_FILE = "localhost.pem"
KEY_FILE = "localhost-key.pem"
#: Long enough not to bother a developer, short enough that a leaked dev key
#: does not stay trusted for years.
VALIDITY = datetime.timedelta(days=365)
#: A certificate this close to expiry is replaced at start.
RENEW_BEFORE = datetime.timedelta(days=7)


def dev_certificate(state_directory: Path) -> Certificate:
    """Return the localhost certificate in ``state_directory``, making it if needed.

    The certificate is reused while it is readable and not about to expire,
    so a client told to trust it keeps working across restarts.

    Args:
        state_directory: where the files live (``tls/`` below it).

    Returns:
        The certificate and key files.
    """
    directory = state_directory / "tls"
    certificate = Certificate(directory / CERTIFICATE_FILE, directory / KEY_FILE)
    if _still_usable(certificate):
        return certificate
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtp-recv development"),
        ]
    )
    public_key = key.public_key()
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    assert certificate.keyfile is not None
    _write_atomically(
        certificate.keyfile,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    _write_atomically(
        certificate.certfile, built.public_bytes(serialization.Encoding.PEM), mode=0o644
    )
    return certificate


def _still_usable(certificate: Certificate) -> bool:
    if certificate.keyfile is None or not certificate.keyfile.is_file():
        return False
    try:
        loaded = x509.load_pem_x509_certificate(certificate.certfile.read_bytes())
    except (OSError, ValueError):
        return False
    remaining = loaded.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    if remaining <= RENEW_BEFORE:
        return False
    # A crash between writing the key and the certificate leaves a pair that
    # does not match; loading them as the server will catches that.
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            certificate.certfile, certificate.keyfile
        )
    except (OSError, ssl.SSLError):
        return False
    return True


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``path`` so that a crash leaves the old file or the new one, never half."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
