"""Shared helpers for the built-in server's tests: messages, certificates, config files."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import pytest
import trustme

from smtp_recv import Mail, MessageContent, Recipient, Role, UserMail
from smtp_recv._users import hash_password
from smtp_recv.protocol import MailParameters

#: Cheap scrypt parameters: the tests check the logic, not the cost.
CHEAP = {"n": 1 << 10, "r": 8, "p": 1}


def make_mail(
    recipients: Sequence[tuple[str, Sequence[str]]],
    data: bytes = b"Subject: test\r\n\r\nHello.\r\n",
    *,
    sender: str = "sender@example.org",
    content: MessageContent | None = None,
) -> Mail:
    """An MX message for ``(address, targets)`` recipients."""
    return Mail(
        sender=sender,
        recipients=tuple(
            Recipient(address=address, targets=tuple(targets)) for address, targets in recipients
        ),
        parameters=MailParameters(),
        content=content or MessageContent.from_bytes(data),
        peer=("192.0.2.1", 40000),
        helo="client.example.org",
        tls=None,
        role=Role.MX,
        session_id="S1",
        message_id="M1",
        received_at=datetime.datetime.now(datetime.UTC),
    )


def make_user_mail(user_id: str, recipients: Sequence[str], data: bytes) -> UserMail:
    """A submitted message from ``user_id``."""
    return UserMail(
        sender=user_id,
        recipients=tuple(Recipient(address=address) for address in recipients),
        parameters=MailParameters(),
        content=MessageContent.from_bytes(data),
        peer=("127.0.0.1", 40000),
        helo="laptop",
        tls=None,
        role=Role.SUBMISSION,
        session_id="S2",
        message_id="M2",
        received_at=datetime.datetime.now(datetime.UTC),
        user_id=user_id,
        username=user_id,
    )


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def write_certificate(ca: trustme.CA, directory: Path, stem: str, *names: str) -> tuple[Path, Path]:
    """Issue a certificate for ``names`` and write ``stem.pem`` and ``stem.key``."""
    issued = ca.issue_cert(*names)
    certfile, keyfile = directory / f"{stem}.pem", directory / f"{stem}.key"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in issued.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    issued.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


def write_config(
    directory: Path,
    ca: trustme.CA,
    *,
    extra: str = "",
    users: str | None = None,
    limits: str = "",
) -> Path:
    """A complete, valid config file (and users file, certificate) in ``directory``.

    ``extra`` goes before the tables, ``limits`` into ``[limits]``.
    """
    write_certificate(ca, directory, "mx", "mx.example.com", "localhost", "127.0.0.1")
    write_certificate(ca, directory, "other", "*.example.org")
    if users is None:
        users = (
            '[users."alice@example.com"]\n'
            f'password = "{hash_password("alice-secret", **CHEAP)}"\n'
            'senders = ["sales@example.com"]\n'
        )
    (directory / "users.toml").write_text(users)
    config = directory / "config.toml"
    config.write_text(
        'hostname = "mx.example.com"\n'
        'users_file = "users.toml"\n'
        f"{extra}\n"
        '[mx]\naddress = "127.0.0.1"\nport = 2525\n'
        '[submission]\naddress = "127.0.0.1"\nport = 4650\n'
        f"[limits]\nmax_message_size = 1048576\nmax_recipients = 200\n{limits}\n"
        "[timeouts]\ncommand_timeout = 120\nshutdown_grace = 5\n"
        '[[tls.certificates]]\ncert = "mx.pem"\nkey = "mx.key"\ndefault = true\n'
        '[[tls.certificates]]\ncert = "other.pem"\nkey = "other.key"\n'
        "[recipients]\n"
        'mailboxes = ["alice@example.com", "bob@example.com"]\n'
        "[recipients.forward]\n"
        '"sales@example.com" = ["alice@example.com", "bob@example.com"]\n'
        '"@example.net" = ["alice@example.com"]\n'
        '[storage]\nmaildir_root = "maildir"\n'
    )
    return config
