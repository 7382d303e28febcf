"""The Maildir Mailer: complete files in new/, unique names, safe directory names."""

from __future__ import annotations

import os
import smtplib
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st

from smtp_recv import MessageContent
from smtp_recv._maildir import MaildirMailer, _unique_name, mailbox_directory, outbox_directory
from smtp_recv.testing import serve_for_tests

from .conftest import make_mail, make_user_mail

MESSAGE = b"Received: from client\r\nSubject: test\r\n\r\nHello.\r\n"


def delivered(maildir: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((maildir / "new").iterdir())]


async def test_message_is_complete_in_new_when_forward_returns(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path)
    await mailer.forward(make_mail([("alice@example.com", ["alice@example.com"])], MESSAGE))
    maildir = tmp_path / "example.com" / "alice"
    assert delivered(maildir) == [
        b"Return-Path: <sender@example.org>\r\nDelivered-To: alice@example.com\r\n" + MESSAGE
    ]
    assert list((maildir / "tmp").iterdir()) == []
    assert (maildir / "cur").is_dir()


async def test_one_copy_per_distinct_target(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path)
    mail = make_mail(
        [
            ("sales@example.com", ["alice@example.com", "bob@example.com"]),
            ("alice@example.com", ["alice@example.com"]),
            ("ALICE@EXAMPLE.COM", ["alice@EXAMPLE.com"]),  # same mailbox: domain case only
        ],
        MESSAGE,
    )
    await mailer.forward(mail)
    assert len(delivered(tmp_path / "example.com" / "alice")) == 1
    bob = delivered(tmp_path / "example.com" / "bob")
    assert len(bob) == 1
    assert b"Delivered-To: bob@example.com\r\n" in bob[0]
    assert bob[0].endswith(MESSAGE)


async def test_recipient_without_targets_is_its_own_mailbox(tmp_path: Path) -> None:
    await MaildirMailer(tmp_path).forward(make_mail([("carol@example.com", [])], MESSAGE))
    assert len(delivered(tmp_path / "example.com" / "carol")) == 1


async def test_spooled_message_is_copied_whole(tmp_path: Path) -> None:
    body = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    with tempfile.TemporaryFile() as spool:
        spool.write(body * 3000)
        content = MessageContent(None, spool, len(body) * 3000)
        await MaildirMailer(tmp_path).forward(
            make_mail([("alice@example.com", ["alice@example.com"])], content=content)
        )
    (stored,) = delivered(tmp_path / "example.com" / "alice")
    assert stored.endswith(body * 3000)


async def test_submitted_mail_goes_to_the_users_outbox_with_its_envelope(tmp_path: Path) -> None:
    mail = make_user_mail("dev@localhost", ["a@example.org", "b@example.net"], MESSAGE)
    await MaildirMailer(tmp_path).send(mail)
    outbox = outbox_directory(tmp_path, "dev@localhost")
    assert outbox == tmp_path / ".outbox" / "dev@localhost"
    (stored,) = delivered(outbox)
    assert stored == (
        b"Return-Path: <dev@localhost>\r\n"
        b"X-Envelope-To: <a@example.org>\r\nX-Envelope-To: <b@example.net>\r\n" + MESSAGE
    )


async def test_concurrent_deliveries_get_distinct_names(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path)
    async with trio.open_nursery() as nursery:
        for number in range(40):
            mail = make_mail(
                [("alice@example.com", ["alice@example.com"])], b"Subject: %d\r\n\r\n" % number
            )
            nursery.start_soon(mailer.forward, mail)
    files = list((tmp_path / "example.com" / "alice" / "new").iterdir())
    assert len(files) == 40
    assert len({path.read_bytes() for path in files}) == 40


def test_unique_names_differ_within_one_microsecond() -> None:
    assert len({_unique_name("host") for _ in range(1000)}) == 1000


async def test_file_name_has_the_maildir_parts_and_escapes_the_hostname(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path, hostname="host/with:odd")
    await mailer.forward(make_mail([("a@example.com", ["a@example.com"])]))
    (path,) = (tmp_path / "example.com" / "a" / "new").iterdir()
    seconds, rest = path.name.split(".", 1)
    assert seconds.isdigit()
    assert f"P{os.getpid()}Q" in rest
    assert rest.endswith(r".host\057with\072odd")


@pytest.mark.parametrize(
    "address",
    [
        "../../etc/passwd@example.com",
        "alice@../../etc",
        "a/b@example.com",
        "alice@a/b",
        "..@..",
        ".@.",
        "alice\x00@example.com",
        "@",
        "",
        "postmaster",
        "x" * 300 + "@example.com",
        "ünïcode@exämple.com",
    ],
)
def test_hostile_addresses_stay_inside_the_root(tmp_path: Path, address: str) -> None:
    directory = mailbox_directory(tmp_path, address)
    relative = directory.relative_to(tmp_path)
    assert len(relative.parts) == 2
    for part in relative.parts:
        assert part not in (".", "..")
        assert not part.startswith(".")
        assert "/" not in part
        assert "\x00" not in part
        assert len(part.encode()) <= 255
    assert directory.resolve().is_relative_to(tmp_path.resolve())


def test_domain_is_lowercased_and_local_part_kept() -> None:
    root = Path("/maildir")
    assert mailbox_directory(root, "Alice@Example.COM") == root / "example.com" / "Alice"
    assert mailbox_directory(root, "alice@example.com") != mailbox_directory(
        root, "Alice@example.com"
    )


@given(st.text(), st.text())
@example("x@", "x")
@example("%@a", "@a")
@example(".a@b", "%2Ea@b")
def test_distinct_addresses_get_distinct_safe_directories(first: str, second: str) -> None:
    root = Path("/maildir")
    one, two = mailbox_directory(root, first), mailbox_directory(root, second)
    for directory in (one, two):
        parts = directory.relative_to(root).parts
        assert len(parts) == 2
        assert not any(part.startswith(".") or "/" in part or "\x00" in part for part in parts)
    folded = [
        (local, domain.lower()) if at else (address, None)
        for address in (first, second)
        for local, at, domain in [address.rpartition("@")]
    ]
    if folded[0] != folded[1]:
        assert one != two


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
async def test_read_only_maildir_raises(tmp_path: Path) -> None:
    (tmp_path / "example.com").mkdir(mode=0o500)
    with pytest.raises(PermissionError):
        await MaildirMailer(tmp_path).forward(
            make_mail([("alice@example.com", ["alice@example.com"])])
        )


async def test_disk_error_raises_and_delivers_no_copy(tmp_path: Path) -> None:
    # bob's new/ is a file: the rename there would fail (as on a broken or
    # read-only disk, also for root).  alice must not get a copy either, so
    # that the client's retry does not duplicate her message.
    bob = tmp_path / "example.com" / "bob"
    bob.mkdir(parents=True)
    (bob / "tmp").write_bytes(b"")
    mail = make_mail([("sales@example.com", ["alice@example.com", "bob@example.com"])])
    with pytest.raises(OSError):  # noqa: PT011 - which OSError depends on the platform
        await MaildirMailer(tmp_path).forward(mail)
    alice = tmp_path / "example.com" / "alice"
    assert list((alice / "new").iterdir()) == []
    assert list((alice / "tmp").iterdir()) == []


async def test_a_failed_rename_takes_back_the_copies_already_delivered(tmp_path: Path) -> None:
    # zed's new/ is a file (the Maildir check lets it pass, as another
    # delivery may be creating it): every copy is written, alice's and bob's
    # are renamed into new/, then the rename into zed's fails.  Their copies
    # must go again, or the client's retry would give them the message twice.
    zed = tmp_path / "example.com" / "zed"
    for sub in ("tmp", "cur"):
        (zed / sub).mkdir(parents=True)
    (zed / "new").write_bytes(b"")
    targets = ["alice@example.com", "bob@example.com", "zed@example.com"]
    mail = make_mail([("sales@example.com", targets)])
    mailer = MaildirMailer(tmp_path)
    with pytest.raises(NotADirectoryError):
        await mailer.forward(mail)
    for name in ("alice", "bob"):
        assert list((tmp_path / "example.com" / name / "new").iterdir()) == []
    for name in ("alice", "bob", "zed"):
        assert list((tmp_path / "example.com" / name / "tmp").iterdir()) == []
    # Repaired, the retry delivers exactly one copy to each.
    (zed / "new").unlink()
    (zed / "new").mkdir()
    await mailer.forward(mail)
    for name in ("alice", "bob", "zed"):
        assert len(delivered(tmp_path / "example.com" / name)) == 1


async def test_root_that_is_a_file_raises(tmp_path: Path) -> None:
    root = tmp_path / "maildir"
    root.write_bytes(b"not a directory")
    with pytest.raises(OSError):  # noqa: PT011
        await MaildirMailer(root).forward(make_mail([("a@example.com", ["a@example.com"])]))


async def test_disk_error_gives_451_to_the_client_and_a_retry_succeeds(tmp_path: Path) -> None:
    """End to end: the Maildir cannot be written, so no 250; once it can, the retry lands."""
    bob = tmp_path / "example.com" / "bob"
    bob.mkdir(parents=True)
    (bob / "tmp").write_bytes(b"")  # tmp/ is a file: every write fails

    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(*server.mx, timeout=10) as client:
            return client.sendmail(
                "a@example.org", ["bob@example.com"], b"Subject: x\r\n\r\nhi\r\n"
            )

    async with serve_for_tests(mailer=MaildirMailer(tmp_path)) as server:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await trio.to_thread.run_sync(send)
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.0")
        (bob / "tmp").unlink()  # the disk is repaired
        assert await trio.to_thread.run_sync(send) == {}
    assert len(list((bob / "new").iterdir())) == 1
