"""smtp_recv as a benchmark server for ``benchmarks/compare.py``.

    python benchmarks/servers/smtp_recv_server.py CERTFILE KEYFILE

Runs ``smtp_recv.serve`` on 127.0.0.1 with both listeners on free ports: the
MX listener (plaintext; every recipient forwards to itself) and the
implicit-TLS submission listener (any credentials accepted, any sender
allowed).  Every message is accepted and discarded.  Reverse DNS of the
client is off, as in the other benchmark servers.  Prints
``{"plain": [host, port], "tls": [host, port]}`` once both listen; exits on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

import smtp_recv


class Everyone:
    """Forward: every recipient is a local mailbox."""

    async def lookup(self, recipient: str) -> Sequence[str]:
        return (recipient,)


class AnyPassword:
    """Auth: every username and password is good."""

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        return username


class AnySender:
    """SenderPolicy: any user may use any sender."""

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return True


class Discard:
    """Mailer: takes every message and keeps nothing."""

    async def send(self, mail: smtp_recv.UserMail) -> None:
        return None

    async def forward(self, mail: smtp_recv.Mail) -> None:
        return None


class OneCert:
    """CertByHost: the same certificate for every name."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.cert = smtp_recv.Certificate(certfile=Path(certfile), keyfile=Path(keyfile))

    def get(self, host: str | None) -> smtp_recv.Certificate | None:
        return self.cert


def _address(value: object) -> list[object]:
    """``(host, port)``, from either ``(host, port)`` or a sequence of them."""
    assert isinstance(value, Sequence)
    first = value if isinstance(value[0], str) else value[0]
    return [first[0], first[1]]


async def main(certfile: str, keyfile: str) -> None:
    config = smtp_recv.ServerConfig(
        hostname="bench.local",
        mx=smtp_recv.ListenerConfig(host="127.0.0.1", port=0),
        submission=smtp_recv.ListenerConfig(host="127.0.0.1", port=0),
        max_message_size=64 << 20,
        max_connections=5000,
        max_connections_per_ip=5000,
        # Like the other servers here (node's runs with disableReverseLookup):
        # the benchmark measures the server, not the resolver.
        reverse_dns=False,
    )
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            lambda task_status: smtp_recv.serve(  # type: ignore[attr-defined]
                Everyone(),
                AnyPassword(),
                Discard(),
                OneCert(certfile, keyfile),
                config=config,
                sender_policy=AnySender(),
                task_status=task_status,
            )
        )
        ports = {"plain": _address(listening.mx), "tls": _address(listening.submission)}
        print(json.dumps(ports), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(main, sys.argv[1], sys.argv[2])
