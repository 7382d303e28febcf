"""TLS contexts for both listeners, with the certificate chosen by SNI."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from ._hooks import CertByHost, Certificate

log = logging.getLogger("smtp_recv.tls")

# The attribute under which the SNI name is kept on the SSLSocket of a
# handshake; Python has no public server-side accessor for it.
_SNI_ATTRIBUTE = "_smtp_recv_server_name"


class TLSContexts:
    """Builds and caches one hardened ``SSLContext`` per certificate.

    ``context`` is the context every handshake starts with: it holds the
    default certificate (``certs.get(None)``), and its ``sni_callback`` swaps
    in the context of the certificate for the name the client asked for.  No
    SNI or an unknown name keeps the default, on both listeners: Postfix, the
    most common sending MTA, sends no SNI by default.
    """

    def __init__(self, certs: CertByHost) -> None:
        self._certs = certs
        self._cache: dict[Certificate, ssl.SSLContext] = {}
        default = certs.get(None)
        if default is None:
            raise ValueError("CertByHost.get(None) must return the default certificate")
        self.context = self._context_for(default)

    def _context_for(self, certificate: Certificate) -> ssl.SSLContext:
        context = self._cache.get(certificate)
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            # RFC 8996 deprecates TLS 1.0 and 1.1; RFC 8314 4.1 asks for 1.2+.
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            # Renegotiation is a DoS lever and has no use in SMTP.
            context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
            context.load_cert_chain(certificate.certfile, certificate.keyfile)
            # TLS 1.3 sends session tickets after every handshake, two by
            # default, for browsers that open connections in parallel.  An
            # SMTP client opens one at a time, and every connection, resumed
            # or not, hands it a fresh ticket: one is enough for it to resume
            # the next, and each one costs the server a ticket to encrypt.
            context.num_tickets = 1
            context.sni_callback = self._choose
            self._cache[certificate] = context
        return context

    def _choose(self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        setattr(ssl_object, _SNI_ATTRIBUTE, server_name)
        if server_name is None:
            return
        try:
            certificate = self._certs.get(server_name.lower())
            if certificate is not None:
                ssl_object.context = self._context_for(certificate)
        except Exception:
            # A failing lookup must not fail the handshake: keep the default.
            log.exception("certificate lookup for %r failed; using the default", server_name)


def server_name(ssl_object: object) -> str | None:
    """The SNI name the client sent in this handshake, if any."""
    name = getattr(ssl_object, _SNI_ATTRIBUTE, None)
    return name if isinstance(name, str) else None
