"""The standard library's smtplib as a real client against a real server."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence

import trio

from smtp_recv import Role
from smtp_recv.testing import AcceptDomains, serve_for_tests

from .conftest import PASSWORD, USERS, CertSet, Client, RecordingMailer, base_config, running

BODY = b"Subject: hello\r\nFrom: a@example.org\r\n\r\nHello there.\r\n"


async def test_smtplib_plain_mx_delivers_message() -> None:
    async with serve_for_tests() as server:

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(*server.mx, timeout=10) as smtp:
                return smtp.sendmail("a@example.org", ["bob@example.com"], BODY)

        refused = await trio.to_thread.run_sync(send)
        with trio.fail_after(10):
            mail = await server.mailer.wait_for_message()
    assert refused == {}
    assert mail.sender == "a@example.org"
    assert [r.address for r in mail.recipients] == ["bob@example.com"]
    assert mail.role is Role.MX
    assert mail.tls is None
    assert mail.data.startswith(b"Received: from ")
    assert mail.data.endswith(BODY)


async def test_smtplib_starttls_delivers_over_tls() -> None:
    async with serve_for_tests() as server:

        def send() -> None:
            with smtplib.SMTP(*server.mx, timeout=10) as smtp:
                smtp.starttls(context=server.client_context())
                smtp.ehlo()
                assert not smtp.has_extn("starttls")
                smtp.sendmail("a@example.org", ["bob@example.com"], BODY)

        await trio.to_thread.run_sync(send)
        with trio.fail_after(10):
            mail = await server.mailer.wait_for_message()
    assert mail.tls is not None
    assert mail.tls.version.startswith("TLSv1.")
    assert b"with ESMTPS" in mail.data.split(b"\r\n\r\n")[0]


def _submit(server_address: tuple[str, int], context: object, mechanism: str) -> None:
    with smtplib.SMTP_SSL(*server_address, context=context, timeout=10) as smtp:  # type: ignore[arg-type]
        smtp.ehlo("laptop")
        assert smtp.has_extn("auth")
        if mechanism == "PLAIN":
            smtp.login("user@example.com", PASSWORD)
        else:
            smtp.user, smtp.password = "user@example.com", PASSWORD
            smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        smtp.sendmail("user@example.com", ["friend@elsewhere.net"], BODY)


async def test_smtplib_smtp_ssl_auth_plain_submits() -> None:
    async with serve_for_tests(users=USERS) as server:
        await trio.to_thread.run_sync(_submit, server.submission, server.client_context(), "PLAIN")
        with trio.fail_after(10):
            mail = await server.mailer.wait_for_message()
    assert mail.role is Role.SUBMISSION
    assert mail.user_id == "user@example.com"
    assert mail.username == "user@example.com"
    assert [r.address for r in mail.recipients] == ["friend@elsewhere.net"]
    assert b"with ESMTPSA" in mail.data


async def test_smtplib_smtp_ssl_auth_login_submits() -> None:
    async with serve_for_tests(users=USERS) as server:
        await trio.to_thread.run_sync(_submit, server.submission, server.client_context(), "LOGIN")
        with trio.fail_after(10):
            mail = await server.mailer.wait_for_message()
    assert mail.username == "user@example.com"
    assert mail.data.endswith(BODY)


class SlowForward:
    """Accepts example.com after a pause: replies flushed per command would
    show up before the pipelined group is done."""

    async def lookup(self, recipient: str) -> Sequence[str]:
        await trio.sleep(0.05)
        return [recipient] if recipient.endswith("@example.com") else []


async def test_pipelined_envelope_replies_come_in_order_in_one_read() -> None:
    async with serve_for_tests(forward=SlowForward()) as server:
        async with await Client.connect(server.mx) as client:
            ehlo = await client.greeting_and_ehlo()
            assert "PIPELINING" in ehlo.lines
            await client.send(
                b"MAIL FROM:<a@example.org>\r\n"
                b"RCPT TO:<one@example.com>\r\n"
                b"RCPT TO:<nobody@elsewhere.org>\r\n"
                b"RCPT TO:<two@example.com>\r\n"
                b"DATA\r\n"
            )
            with trio.fail_after(10):
                first_read = await client.stream.receive_some(65536)
            lines = first_read.decode().split("\r\n")
            assert [line[:3] for line in lines if line] == ["250", "250", "550", "250", "354"]
            await client.send(b"Subject: p\r\n\r\nbody\r\n.\r\n")
            assert (await client.reply()).code == 250
        with trio.fail_after(10):
            mail = await server.mailer.wait_for_message()
    assert [r.address for r in mail.recipients] == ["one@example.com", "two@example.com"]


async def test_large_message_is_spooled_and_delivered_byte_exact() -> None:
    # 5 MB with lines that need dot-stuffing: spool_threshold is 1 MiB.
    line = b".leading dot and some text to fill the line up to a hundred bytes or so........\r\n"
    body = b"Subject: big\r\n\r\n" + line * (5_000_000 // len(line))
    mailer = RecordingMailer()
    async with serve_for_tests(mailer=mailer, config=base_config()) as server:

        def send() -> None:
            with smtplib.SMTP(*server.mx, timeout=30) as smtp:
                smtp.sendmail("a@example.org", ["bob@example.com"], body)

        await trio.to_thread.run_sync(send)
    (delivered,) = mailer.delivered
    assert delivered.in_memory is False
    assert delivered.data.endswith(body)
    header = delivered.data[: -len(body)]
    assert header.startswith(b"Received: from ")
    assert header.endswith(b"\r\n")
    # The trace header is the only thing before the body: one folded header.
    assert all(part.startswith(b"\t") for part in header.split(b"\r\n")[1:-1])
    assert delivered.mail.content.size == len(delivered.data)


async def test_partial_recipient_refusal_gives_smtplib_refused_dict() -> None:
    async with serve_for_tests(forward=AcceptDomains(["example.com"])) as server:

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(*server.mx, timeout=10) as smtp:
                return smtp.sendmail(
                    "a@example.org",
                    ["one@example.com", "x@elsewhere.org", "two@example.com"],
                    BODY,
                )

        refused = await trio.to_thread.run_sync(send)
        with trio.fail_after(10):
            mail = await server.mailer.wait_for_message()
    assert refused == {"x@elsewhere.org": (550, b"5.1.1 No such user here")}
    assert [r.address for r in mail.recipients] == ["one@example.com", "two@example.com"]


async def test_smtplib_with_block_ends_cleanly_when_the_server_stops_mid_message(
    cert_set: CertSet,
) -> None:
    # smtplib's `with` says QUIT on leaving and raises unless it gets 221: a
    # 421 there would make the sender believe an accepted message failed.
    mailer = RecordingMailer(delay=0.2)
    refused: list[dict[str, tuple[int, bytes]]] = []
    async with running(cert_set, config=base_config(shutdown_grace=10), mailer=mailer) as server:

        def send() -> None:
            with smtplib.SMTP(*server.mx, timeout=10) as smtp:
                refused.append(smtp.sendmail("a@example.org", ["bob@example.com"], BODY))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, send)
            with trio.fail_after(10):
                await mailer.entered.wait()
            server.stop()
        with trio.fail_after(10):
            await server.stopped.wait()
    assert refused == [{}]
    assert len(mailer.delivered) == 1
