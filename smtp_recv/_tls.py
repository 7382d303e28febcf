"""TLS contexts for both listeners, with the certificate chosen by SNI."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._hooks import CertByHost, Certificate

log = logging.getLogger("smtp_recv.tls")

# The attribute under which the SNI name is kept on the SSLSocket of a
# handshake; Python has no public server-side accessor for it.
_SNI_ATTRIBUTE = "_smtp_recv_server_name"
#: Seconds between two looks at a certificate's files (and at the default
#: certificate the hook names): renewed files are served within this long.
RECHECK_INTERVAL = 1.0
#: Contexts kept for certificates no longer in use are dropped past this many.
MAX_CONTEXTS = 256
# RFC 6066 section 3: the name is a DNS host name, in ASCII (an IDN in its
# A-label form), without the trailing dot.  Lower case: it is stored so.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*", re.ASCII)


class _UnraisableNames:
    """Logs, as the client's fault, the SNI names Python's ``ssl`` cannot decode.

    CPython decodes the name as ASCII before it calls ``sni_callback``; a
    client that sends ``caf\xc3\xa9.example`` fails the handshake there
    (alert 80), and the error goes to ``sys.unraisablehook``, by default a
    traceback on stderr, past ``logging`` (and through JSON logs), as often
    as any client likes.  While a server runs, this hook takes those errors
    (a ``UnicodeDecodeError`` about a ``bytes`` object) and passes every
    other one on to the hook it replaced.

    One per ``serve``.  When it ends, the hook it replaced comes back, unless
    another has been put on top of this one meanwhile, which may call this
    one: then this one stays, passing everything on, until it can be taken
    out of the chain (``_compact``).  So hooks never call each other round
    in a loop, and the chain does not grow, however serves (overlapping in
    a rolling restart) and other libraries come and go.
    """

    def __init__(self, replaced: Any) -> None:
        self._replaced = replaced
        self._active = True

    def __call__(self, unraisable: Any) -> None:
        name = unraisable.object
        if (
            self._active
            and isinstance(name, bytes)
            and isinstance(unraisable.exc_value, UnicodeDecodeError)
        ):
            log.info(
                "TLS handshake refused: the client sent a server name that is not ASCII: %s",
                repr(name)[:300],
            )
            return
        self._replaced(unraisable)


_hooks_lock = threading.Lock()


def _next_live(hook: Any) -> Any:
    """``hook``, or the first hook after it that is not one of ours ended."""
    while isinstance(hook, _UnraisableNames) and not hook._active:
        hook = hook._replaced
    return hook


def _compact() -> None:
    """Take our ended hooks out of the chain, where only ours point to them.

    Those another library's hook points to stay, passing everything on:
    the ones that ran when it was put in, and no more after.
    """
    current = _next_live(sys.unraisablehook)
    if current is not sys.unraisablehook:
        sys.unraisablehook = current
    while isinstance(current, _UnraisableNames):
        current._replaced = _next_live(current._replaced)
        current = current._replaced


@contextlib.contextmanager
def sni_errors_logged() -> Iterator[None]:
    """For ``serve``: the unraisable errors of bad SNI names logged, while it runs."""
    with _hooks_lock:
        _compact()
        hook = _UnraisableNames(sys.unraisablehook)
        sys.unraisablehook = hook
    try:
        yield
    finally:
        with _hooks_lock:
            hook._active = False
            _compact()


def _identity(path: Path | None) -> tuple[int, int, int, int] | None:
    """What changes when a file is replaced or rewritten (certbot renews in place)."""
    if path is None:
        return None
    status = os.stat(path)
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


@dataclass(slots=True)
class _Loaded:
    context: ssl.SSLContext
    files: tuple[tuple[int, int, int, int] | None, ...]
    checked_at: float


class TLSContexts:
    """Builds and caches one hardened ``SSLContext`` per certificate.

    :meth:`current` is the context every handshake starts with: it holds the
    default certificate (``certs.get(None)``), and its ``sni_callback`` swaps
    in the context of the certificate for the name the client asked for.  No
    SNI or an unknown name keeps the default, on both listeners: Postfix, the
    most common sending MTA, sends no SNI by default.

    Certificates are renewed without a restart: at most once a second per
    certificate, the files are looked at again, and a context whose files
    were replaced or rewritten is built anew (the old one serves on if the
    new files do not load, for instance while half written).  The default is
    asked of the hook again just as often.
    """

    def __init__(self, certs: CertByHost) -> None:
        self._certs = certs
        self._loaded: dict[Certificate, _Loaded] = {}
        default = certs.get(None)
        if default is None:
            raise ValueError("CertByHost.get(None) must return the default certificate")
        self._default = default
        self._default_checked_at = time.monotonic()
        # A new default that did not load, and its files then.
        self._failed_default: tuple[Certificate, object] | None = None
        self._context_for(default)

    def current(self) -> ssl.SSLContext:
        """The context for a new handshake: the default certificate's."""
        now = time.monotonic()
        if now - self._default_checked_at >= RECHECK_INTERVAL:
            self._default_checked_at = now
            try:
                default = self._certs.get(None)
            except Exception:
                log.exception("the default certificate lookup failed; keeping the last one")
            else:
                if default is not None and default != self._default:
                    self._change_default(default)
        return self._context_for(self._default)

    def _change_default(self, default: Certificate) -> None:
        """Serve ``default`` from now on, if it loads; otherwise keep the last.

        A default that failed is tried again only once its files change (in
        content, or in owner and mode: the usual fix for a key the server
        may not read), so that the warning comes once, not at every recheck.
        """
        paths = [path for path in (default.certfile, default.keyfile) if path is not None]
        files: object
        try:
            files = [
                (
                    status.st_dev,
                    status.st_ino,
                    status.st_size,
                    status.st_mtime_ns,
                    status.st_ctime_ns,
                )
                for status in map(os.stat, paths)
            ]
        except OSError:
            files = None
        if self._failed_default == (default, files):
            return
        try:
            self._context_for(default)
        except (OSError, ssl.SSLError) as error:
            self._failed_default = (default, files)
            log.warning(
                "the new default certificate %s does not load (%s); keeping %s",
                default.certfile,
                error,
                self._default.certfile,
            )
        else:
            self._failed_default = None
            self._default = default

    def _context_for(self, certificate: Certificate) -> ssl.SSLContext:
        loaded = self._loaded.get(certificate)
        now = time.monotonic()
        if loaded is not None and now - loaded.checked_at < RECHECK_INTERVAL:
            return loaded.context
        try:
            files = (_identity(certificate.certfile), _identity(certificate.keyfile))
            if loaded is not None and files == loaded.files:
                loaded.checked_at = now
                return loaded.context
            context = self._build(certificate)
        except (OSError, ssl.SSLError) as error:
            if loaded is None:
                raise
            log.warning(
                "reloading %s failed (%s); serving the one loaded before",
                certificate.certfile,
                error,
            )
            loaded.checked_at = now
            return loaded.context
        if loaded is not None:
            log.info("certificate %s reloaded", certificate.certfile)
        self._loaded.pop(certificate, None)
        if len(self._loaded) >= MAX_CONTEXTS:
            del self._loaded[next(iter(self._loaded))]  # the least recently built
        self._loaded[certificate] = _Loaded(context, files, now)
        return context

    def _build(self, certificate: Certificate) -> ssl.SSLContext:
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
        return context

    def _choose(self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        if server_name is not None:
            server_name = server_name.lower()
            if not _HOST_NAME.fullmatch(server_name):
                # Not a host name (a line break to forge log lines, say):
                # as if none was sent.  It reaches no log, hook or header.
                server_name = None
        setattr(ssl_object, _SNI_ATTRIBUTE, server_name)
        if server_name is None:
            return
        try:
            certificate = self._certs.get(server_name)
            if certificate is not None:
                ssl_object.context = self._context_for(certificate)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            # A failing lookup must not fail the handshake: keep the default.
            # (Nothing here can be a trio cancellation: this runs inside
            # OpenSSL's callback, where nothing is awaited.)
            log.exception("certificate lookup for %r failed; using the default", server_name)


def server_name(ssl_object: object) -> str | None:
    """The SNI name the client sent in this handshake, if any."""
    name = getattr(ssl_object, _SNI_ATTRIBUTE, None)
    return name if isinstance(name, str) else None
