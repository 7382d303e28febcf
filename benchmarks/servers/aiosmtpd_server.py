"""aiosmtpd as a benchmark server for ``benchmarks/compare.py``, without a Controller.

    python benchmarks/servers/aiosmtpd_server.py CERTFILE KEYFILE [--files]

Two asyncio servers on 127.0.0.1 in one process, like smtp_recv's two
listeners: a plaintext one (MX-like: no AUTH, every recipient accepted) and
an implicit-TLS one (``ssl=`` on ``create_server``) that requires AUTH and
accepts any credentials.  Each message is accepted and discarded, or with
``--files`` written to a file of its own in a temporary directory (no
fsync: the comparison for smtp_recv's Maildir, which does fsync).  Prints
``{"plain": [host, port], "tls": [host, port]}`` once both listen; exits on
SIGTERM or SIGINT.

aiosmtpd only offers AUTH on a connection it upgraded with STARTTLS itself,
so the implicit-TLS server sets ``auth_require_tls=False``: the transport is
already TLS, which is what that check is for.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import resource
import shutil
import signal
import ssl
import tempfile
import warnings
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult


class Discard:
    """Accepts every recipient and every message, and keeps nothing."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return "250 OK"


class ToFiles(Discard):
    """Writes each message to a new file (as a simple handler would), no fsync."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counter = itertools.count()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        path = self.directory / f"{next(self.counter)}.eml"
        path.write_bytes(envelope.original_content)
        return "250 OK"


def accept_any(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True)


async def main(certfile: str, keyfile: str, files: Path | None) -> None:
    # aiosmtpd logs a deprecation warning on every AUTH (Session.login_data);
    # writing that to stderr would be charged to its CPU time.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    handler = Discard() if files is None else ToFiles(files)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)

    def plain_factory() -> SMTP:
        return SMTP(handler, hostname="bench.local", data_size_limit=64 << 20, loop=loop)

    def tls_factory() -> SMTP:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": the transport is TLS.
            warnings.simplefilter("ignore")
            return SMTP(
                handler,
                hostname="bench.local",
                data_size_limit=64 << 20,
                auth_required=True,
                auth_require_tls=False,
                authenticator=accept_any,
                loop=loop,
            )

    plain = await loop.create_server(plain_factory, "127.0.0.1", 0, backlog=4096)
    tls = await loop.create_server(tls_factory, "127.0.0.1", 0, ssl=context, backlog=4096)
    ports = {
        "plain": list(plain.sockets[0].getsockname()[:2]),
        "tls": list(tls.sockets[0].getsockname()[:2]),
    }
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    plain.close()
    tls.close()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parser = argparse.ArgumentParser()
    parser.add_argument("certfile")
    parser.add_argument("keyfile")
    parser.add_argument("--files", action="store_true", help="write each message to a file")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="aiosmtpd-bench-", dir="/tmp")) if args.files else None
    try:
        asyncio.run(main(args.certfile, args.keyfile, directory))
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
