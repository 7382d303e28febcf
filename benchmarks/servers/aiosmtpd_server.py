"""aiosmtpd as a benchmark server for ``benchmarks/compare.py``, without a Controller.

    python benchmarks/servers/aiosmtpd_server.py CERTFILE KEYFILE

Two asyncio servers on 127.0.0.1 in one process, like smtp_recv's two
listeners: a plaintext one (MX-like: no AUTH, every recipient accepted) and
an implicit-TLS one (``ssl=`` on ``create_server``) that requires AUTH and
accepts any credentials.  Each message is accepted and discarded.  Prints
``{"plain": [host, port], "tls": [host, port]}`` once both listen; exits on
SIGTERM or SIGINT.

aiosmtpd only offers AUTH on a connection it upgraded with STARTTLS itself,
so the implicit-TLS server sets ``auth_require_tls=False``: the transport is
already TLS, which is what that check is for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult


class Discard:
    """Accepts every recipient and every message, and keeps nothing."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return "250 OK"


def accept_any(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True)


async def main(certfile: str, keyfile: str) -> None:
    # aiosmtpd logs a deprecation warning on every AUTH (Session.login_data);
    # writing that to stderr would be charged to its CPU time.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    handler = Discard()
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
    asyncio.run(main(sys.argv[1], sys.argv[2]))
