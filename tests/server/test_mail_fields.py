"""What the Mailer receives: every field of Mail and UserMail, and the trace header."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from smtp_recv import Role, UserMail
from smtp_recv.protocol import MailParameters, RcptParameters

from .conftest import CertSet, Client, RecordingMailer, base_config, running

BODY = b"Subject: t\r\n\r\nhi\r\n"


def header_of(data: bytes) -> str:
    """The Received header, unfolded."""
    assert data.startswith(b"Received: ")
    end = data.index(b"\r\nSubject:")
    return data[:end].decode().replace("\r\n\t", " ")


class Aliases:
    async def lookup(self, recipient: str) -> Sequence[str]:
        table = {
            "sales@example.com": ["alice@example.com", "bob@example.org"],
            "alice@example.com": ["alice@example.com"],
        }
        return table.get(recipient.lower(), [])


async def test_null_sender_is_empty_string(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("", ["bounce@example.com"])).code == 250
    (delivered,) = mailer.delivered
    assert delivered.mail.sender == ""


async def test_forward_targets_kept_beside_original_recipient(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer, forward=Aliases()) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        answer = await client.send_message(
            "a@example.org", ["Sales@example.com", "alice@example.com"]
        )
        assert answer.code == 250
    (delivered,) = mailer.delivered
    recipients = delivered.mail.recipients
    assert [r.address for r in recipients] == ["Sales@example.com", "alice@example.com"]
    assert recipients[0].targets == ("alice@example.com", "bob@example.org")
    assert recipients[1].targets == ("alice@example.com",)


async def test_esmtp_parameters_reach_the_mailer(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer, config=base_config(dsn=True)) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.send(
            "MAIL FROM:<jörg@example.org> SIZE=100 BODY=8BITMIME SMTPUTF8 "
            "RET=HDRS ENVID=id+2Bone\r\n"
            "RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com\r\n"
            "RCPT TO:<carol@example.com>\r\n"
            "DATA\r\n".encode()
        )
        assert [(await client.reply()).code for _ in range(4)] == [250, 250, 250, 354]
        await client.send(BODY + b".\r\n")
        assert (await client.reply()).code == 250
    (delivered,) = mailer.delivered
    mail = delivered.mail
    assert mail.sender == "jörg@example.org"
    assert mail.parameters == MailParameters(
        size=100, body="8BITMIME", smtputf8=True, ret="HDRS", envid="id+2Bone"
    )
    assert mail.recipients[0].parameters == RcptParameters(
        notify=("SUCCESS", "FAILURE"), orcpt="rfc822;bob@example.com"
    )
    assert mail.recipients[1].parameters == RcptParameters()
    # RFC 6531 3.7.3: the with keyword says UTF8SMTP.
    assert " with UTF8SMTP " in header_of(delivered.data)


async def test_received_header_on_plain_mx_names_helo_ip_host_id_and_single_recipient(
    cert_set: CertSet,
) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo("client.example.org")
        assert (await client.send_message("a@example.org", ["bob@example.com"])).code == 250
        assert (
            await client.send_message("a@example.org", ["bob@example.com", "c@example.com"])
        ).code == 250
        assert (await client.command("HELO oldstyle.example.org")).code == 250
        assert (await client.send_message("a@example.org", ["bob@example.com"])).code == 250
    single, double, helo = mailer.delivered
    header = header_of(single.data)
    assert re.fullmatch(
        r"Received: from client\.example\.org \(\[127\.0\.0\.1\]\) by mx\.example\.com "
        r"\(smtp_recv\) with ESMTP id (\S+) for <bob@example\.com>; .+",
        header,
    ), header
    assert f" id {single.mail.message_id} " in header
    assert " for <" not in header_of(double.data)
    assert " with SMTP " in header_of(helo.data)
    assert header_of(helo.data).startswith("Received: from oldstyle.example.org ")


async def test_received_header_names_no_recipient_for_bare_postmaster(cert_set: CertSet) -> None:
    """RFC 5321 4.4: the For clause is a Path or a Mailbox; <Postmaster> is neither."""
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        assert (await client.send_message("a@example.org", ["Postmaster"])).code == 250
    (delivered,) = mailer.delivered
    assert " id " in header_of(delivered.data)
    assert " for <" not in header_of(delivered.data)


async def test_received_header_after_starttls_says_esmtps_with_version_and_cipher(
    cert_set: CertSet,
) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo()
        await client.starttls(cert_set.client_context(), "mx.example.com")
        await client.command("EHLO client.example.org")
        assert (await client.send_message("a@example.org", ["bob@example.com"])).code == 250
    (delivered,) = mailer.delivered
    tls = delivered.mail.tls
    assert tls is not None
    header = header_of(delivered.data)
    assert " with ESMTPS " in header
    assert f"(version={tls.version} cipher={tls.cipher})" in header


async def test_received_header_follows_each_message_of_a_session(cert_set: CertSet) -> None:
    """The header's fixed part is made once per session, but never goes stale."""
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        await client.greeting_and_ehlo("client.example.org")
        await client.send("MAIL FROM:<jörg@example.org> SMTPUTF8\r\n".encode())
        assert (await client.reply()).code == 250
        assert (await client.command("RCPT TO:<bob@example.com>")).code == 250
        assert (await client.command("DATA")).code == 354
        await client.send(BODY + b".\r\n")
        assert (await client.reply()).code == 250
        assert (await client.send_message("a@example.org", ["bob@example.com"])).code == 250
        await client.starttls(cert_set.client_context(), "mx.example.com")
        await client.command("EHLO client.example.org")
        assert (await client.send_message("a@example.org", ["bob@example.com"])).code == 250
    utf8, plain, tls = (header_of(delivered.data) for delivered in mailer.delivered)
    assert " with UTF8SMTP id " in utf8
    assert " with ESMTP id " in plain
    assert " with ESMTPS (version=TLSv1." in tls
    assert "version=" not in utf8 + plain
    ids = [delivered.mail.message_id for delivered in mailer.delivered]
    assert [f" id {i} " in h for i, h in zip(ids, (utf8, plain, tls), strict=True)] == [True] * 3


async def test_received_header_on_submission_says_esmtpsa(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo("laptop")
        assert (await client.login()).code == 235
        answer = await client.send_message("user@example.com", ["x@elsewhere.net"])
        assert answer.code == 250
    (delivered,) = mailer.delivered
    assert " with ESMTPSA " in header_of(delivered.data)


async def test_mail_records_peer_helo_tls_role_ids_and_time(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    async with (
        running(cert_set, mailer=mailer) as server,
        await Client.connect(server.mx) as client,
    ):
        local = client.stream.socket.getsockname()  # type: ignore[attr-defined]
        await client.greeting_and_ehlo()
        await client.starttls(cert_set.client_context(), "mail.example.com")
        await client.command("EHLO tls.example.org")
        before = datetime.now(UTC)
        answer = await client.send_message("a@example.org", ["bob@example.com"])
        after = datetime.now(UTC)
        await client.send_message("a@example.org", ["bob@example.com"])
    first, second = mailer.delivered
    mail = first.mail
    assert mail.peer == ("127.0.0.1", local[1])
    assert mail.helo == "tls.example.org"
    assert mail.role is Role.MX
    assert mail.tls is not None
    assert mail.tls.server_name == "mail.example.com"
    assert mail.tls.version in ("TLSv1.2", "TLSv1.3")
    assert mail.tls.cipher
    assert mail.message_id in answer.text
    assert mail.session_id == second.mail.session_id
    assert mail.message_id != second.mail.message_id
    assert mail.session_id != mail.message_id
    assert before <= mail.received_at <= after
    assert mail.received_at.tzinfo is not None


class NumberedUsers:
    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        return "u-42" if (username, password) == ("Alice@Example.com", "pw") else None

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return user_id == "u-42" and sender == "alice@example.com"


async def test_user_mail_has_user_id_and_username(cert_set: CertSet) -> None:
    mailer = RecordingMailer()
    users = NumberedUsers()
    async with (
        running(cert_set, mailer=mailer, auth=users, sender_policy=users) as server,
        await Client.connect(
            server.submission, tls=cert_set.client_context(), server_hostname="mx.example.com"
        ) as client,
    ):
        await client.greeting_and_ehlo("laptop")
        assert (await client.login("Alice@Example.com", "pw")).code == 235
        answer = await client.send_message("alice@example.com", ["x@elsewhere.net"])
        assert answer.code == 250
    (delivered,) = mailer.delivered
    mail = delivered.mail
    assert isinstance(mail, UserMail)
    assert (mail.user_id, mail.username) == ("u-42", "Alice@Example.com")
    assert mail.role is Role.SUBMISSION
    assert mail.helo == "laptop"
    assert mail.recipients[0].targets == ()
    assert mail.tls is not None
    assert mail.tls.server_name == "mx.example.com"


class HostRecordingUsers(NumberedUsers):
    def __init__(self) -> None:
        self.hosts: list[str | None] = []

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        self.hosts.append(host)
        return await super().verify(host, username, password)


@pytest.mark.parametrize(
    ("sni", "seen"),
    [
        ("MX.Example.com", "mx.example.com"),
        ("mx.example.com\n2026-01-01 INFO smtp_recv.session forged", None),
        ("mx example com", None),
        ("-" * 64, None),
    ],
    ids=["upper-case", "line-break", "space", "not-a-label"],
)
async def test_an_sni_name_that_is_no_host_name_counts_as_none(
    cert_set: CertSet, sni: str, seen: str | None
) -> None:
    # RFC 6066 3: a DNS host name.  Anything else reaches no hook, log or header.
    mailer = RecordingMailer()
    users = HostRecordingUsers()
    context = cert_set.client_context()
    context.check_hostname = False
    async with (
        running(cert_set, mailer=mailer, auth=users, sender_policy=users) as server,
        await Client.connect(server.submission, tls=context, server_hostname=sni) as client,
    ):
        await client.greeting_and_ehlo("laptop")
        assert (await client.login("Alice@Example.com", "pw")).code == 235
        assert (await client.send_message("alice@example.com", ["x@elsewhere.net"])).code == 250
    assert users.hosts == [seen]
    (delivered,) = mailer.delivered
    assert delivered.mail.tls is not None
    assert delivered.mail.tls.server_name == seen
