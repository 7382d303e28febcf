"""Embed smtp_recv in a trio application, with hooks of your own.

The app below runs both listeners inside its own nursery, next to whatever
else it does, with four small hooks:

* a :class:`~smtp_recv.Forward` with an alias map (``sales@`` goes to two people);
* an :class:`~smtp_recv.Auth` backed by a dict of passwords;
* a :class:`~smtp_recv.Mailer` that keeps messages in a list and prints a line;
* a :class:`~smtp_recv.CertByHost` choosing the certificate by SNI name.

Run it with your own certificate::

    python examples/embed_in_trio_app.py --cert mail.pem --key mail-key.pem

or let it test itself: it starts on free ports with a throwaway certificate
(needs ``trustme``, in the ``test`` extra), sends itself one message over
STARTTLS with :mod:`smtplib`, prints what arrived and exits::

    python examples/embed_in_trio_app.py --selftest
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hmac
import smtplib
import ssl
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

import smtp_recv


class AliasForward:
    """Our domains' mailboxes, plus aliases that fan out to several of them."""

    def __init__(self, domains: Sequence[str], aliases: Mapping[str, Sequence[str]]) -> None:
        self.domains = {domain.lower() for domain in domains}
        self.aliases = {alias.lower(): list(targets) for alias, targets in aliases.items()}

    async def lookup(self, recipient: str) -> Sequence[str]:
        address = recipient.lower()
        if address in self.aliases:
            return self.aliases[address]
        if address.rpartition("@")[2] in self.domains:
            return [address]
        return []  # not ours: 550 5.1.1, so we are no open relay


class DictAuth:
    """Logins and passwords from a dict; the user id is the login."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        expected = self.users.get(username, "")
        # Compare in constant time, and as long for unknown users as for known ones.
        if hmac.compare_digest(expected.encode(), password.encode()) and expected:
            return username
        return None


@dataclass
class ListMailer:
    """Keeps every message; a real app would store or relay it here."""

    messages: list[smtp_recv.Mail] = field(default_factory=list)
    quiet: bool = False
    arrived: trio.Event = field(default_factory=trio.Event)

    def _keep(self, mail: smtp_recv.Mail) -> None:
        # The server releases mail.content once we return (a large message
        # is in a spool file): keep a copy whose content is in memory.
        content = smtp_recv.MessageContent.from_bytes(mail.data)
        self.messages.append(dataclasses.replace(mail, content=content))
        if not self.quiet:
            targets = [t for r in mail.recipients for t in (r.targets or (r.address,))]
            print(f"{mail.message_id}: <{mail.sender}> -> {targets}, {mail.content.size} bytes")
        self.arrived.set()

    async def forward(self, mail: smtp_recv.Mail) -> None:
        self._keep(mail)

    async def send(self, mail: smtp_recv.UserMail) -> None:
        self._keep(mail)


class CertByName:
    """Certificates by SNI name; ``None`` is the default for everyone else."""

    def __init__(self, default: smtp_recv.Certificate, **by_name: smtp_recv.Certificate) -> None:
        self.by_name: dict[str | None, smtp_recv.Certificate] = {None: default}
        self.by_name.update({name.lower(): cert for name, cert in by_name.items()})

    def get(self, host: str | None) -> smtp_recv.Certificate | None:
        return self.by_name.get(host, self.by_name[None])


@dataclass
class App:
    """What the running app exposes to the rest of the program (and tests)."""

    listening: smtp_recv.Listening
    mailer: ListMailer


async def run_app(
    certs: smtp_recv.CertByHost,
    *,
    config: smtp_recv.ServerConfig,
    users: Mapping[str, str],
    aliases: Mapping[str, Sequence[str]],
    domains: Sequence[str],
    quiet: bool = False,
    task_status: trio.TaskStatus[App] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the mail server until cancelled; ``started`` with an :class:`App`."""
    mailer = ListMailer(quiet=quiet)
    auth = DictAuth(users)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            functools.partial(
                smtp_recv.serve,
                AliasForward(domains, aliases),
                auth,
                mailer,
                certs,
                config=config,
            )
        )
        if not quiet:
            print(f"MX on {listening.mx}, submission on {listening.submission}")
        task_status.started(App(listening, mailer))
        # ...the rest of the application runs here, in this nursery...


def local_config(mx_port: int, submission_port: int) -> smtp_recv.ServerConfig:
    return smtp_recv.ServerConfig(
        hostname="mx.example.com",
        mx=smtp_recv.ListenerConfig(host="127.0.0.1", port=mx_port),
        submission=smtp_recv.ListenerConfig(host="127.0.0.1", port=submission_port),
        reverse_dns=False,
        shutdown_grace=5,
    )


USERS = {"alice@example.com": "correct horse battery staple"}
ALIASES = {"sales@example.com": ["alice@example.com", "bob@example.com"]}
DOMAINS = ["example.com"]


async def selftest(*, quiet: bool = False) -> smtp_recv.Mail:
    """Start on free ports, send one message to ``sales@`` over STARTTLS, stop.

    Returns the message as the Mailer got it.
    """
    import trustme

    with tempfile.TemporaryDirectory() as directory:
        ca = trustme.CA()
        pem = Path(directory, "server.pem")
        issued = ca.issue_cert("mx.example.com", "localhost", "127.0.0.1")
        issued.private_key_and_cert_chain_pem.write_to_path(str(pem))
        certs = CertByName(smtp_recv.Certificate(pem))
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with trio.open_nursery() as nursery:
            app: App = await nursery.start(
                functools.partial(
                    run_app,
                    certs,
                    config=local_config(0, 0),
                    users=USERS,
                    aliases=ALIASES,
                    domains=DOMAINS,
                    quiet=quiet,
                )
            )

            def send() -> None:
                with smtplib.SMTP(*app.listening.mx[0], timeout=10) as smtp:
                    smtp.starttls(context=client_context)
                    smtp.sendmail(
                        "customer@example.org",
                        ["sales@example.com"],
                        b"Subject: An order\r\n\r\nTen of the blue ones, please.\r\n",
                    )

            await trio.to_thread.run_sync(send)
            with trio.fail_after(10):
                await app.mailer.arrived.wait()
            nursery.cancel_scope.cancel()  # graceful shutdown
        return app.mailer.messages[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", type=Path, help="certificate chain (PEM)")
    parser.add_argument("--key", type=Path, help="private key (PEM)")
    parser.add_argument("--mx-port", type=int, default=2525)
    parser.add_argument("--submission-port", type=int, default=4650)
    parser.add_argument("--selftest", action="store_true", help="send one message and exit")
    options = parser.parse_args(argv)
    if options.selftest:
        mail = trio.run(selftest)
        print("selftest delivered", mail.message_id, "to", [r.targets for r in mail.recipients])
        return 0
    if options.cert is None:
        parser.error("--cert is required (or use --selftest)")
    certs = CertByName(smtp_recv.Certificate(options.cert, options.key))
    try:
        trio.run(
            functools.partial(
                run_app,
                certs,
                config=local_config(options.mx_port, options.submission_port),
                users=USERS,
                aliases=ALIASES,
                domains=DOMAINS,
            )
        )
    except* KeyboardInterrupt:
        # Ctrl-C: trio raises it bare or, from inside the server's
        # nurseries, in an exception group.
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
