"""The built-in Forward hook: mailboxes, forwarding, catch-alls, and nothing else."""

from __future__ import annotations

import pytest

from smtp_recv import Forward
from smtp_recv._recipients import AcceptEveryRecipient, Recipients


@pytest.fixture
def recipients() -> Recipients:
    return Recipients(
        mailboxes=["alice@example.com", "Bob@example.com"],
        forwards={
            "sales@example.com": ["alice@example.com", "carol@example.org"],
            "postmaster": ["alice@example.com"],
        },
        catch_alls={"example.net": ["alice@example.com"], "@Example.Org": ["bob@example.com"]},
    )


def test_fits_the_forward_protocol(recipients: Recipients) -> None:
    assert isinstance(recipients, Forward)
    assert isinstance(AcceptEveryRecipient(), Forward)


async def test_mailbox_is_its_own_target(recipients: Recipients) -> None:
    assert await recipients.lookup("alice@example.com") == ("alice@example.com",)


async def test_forwarding_entry_gives_its_targets(recipients: Recipients) -> None:
    assert await recipients.lookup("sales@example.com") == (
        "alice@example.com",
        "carol@example.org",
    )


async def test_matching_ignores_case_and_returns_the_configured_spelling(
    recipients: Recipients,
) -> None:
    assert await recipients.lookup("ALICE@Example.COM") == ("alice@example.com",)
    assert await recipients.lookup("bob@EXAMPLE.com") == ("Bob@example.com",)
    assert await recipients.lookup("PostMaster") == ("alice@example.com",)


async def test_catch_all_takes_the_rest_of_its_domain(recipients: Recipients) -> None:
    assert await recipients.lookup("anyone@example.net") == ("alice@example.com",)
    assert await recipients.lookup("Anyone@EXAMPLE.NET") == ("alice@example.com",)
    # (bob@example.com is the mailbox listed as Bob@example.com: see below.)
    assert await recipients.lookup("x@example.org") == ("Bob@example.com",)


async def test_a_target_that_is_our_mailbox_takes_its_listed_spelling() -> None:
    # The Maildir is named after the spelling: "bob" beside "Bob" would be
    # a second mailbox that nobody reads.
    recipients = Recipients(
        mailboxes=["Bob@Test.Example"],
        forwards={"sales@test.example": ["bob@test.example", "carol@elsewhere.example"]},
        catch_alls={"test.example": ["BOB@TEST.EXAMPLE"]},
    )
    assert await recipients.lookup("sales@test.example") == (
        "Bob@Test.Example",
        "carol@elsewhere.example",
    )
    assert await recipients.lookup("anyone@test.example") == ("Bob@Test.Example",)


async def test_exact_entry_wins_over_catch_all() -> None:
    recipients = Recipients(
        forwards={"info@example.net": ["bob@example.com"]},
        catch_alls={"example.net": ["alice@example.com"]},
    )
    assert await recipients.lookup("info@example.net") == ("bob@example.com",)


@pytest.mark.parametrize(
    "address",
    [
        "carol@example.com",  # our domain, unknown user
        "alice@example.com.evil.org",
        "alice@gmail.com",  # a domain we do not serve: no open relay
        "carol@example.org.",
        "alice",
        "@example.net",
        "",
    ],
)
async def test_unknown_recipients_get_nothing(recipients: Recipients, address: str) -> None:
    assert await recipients.lookup(address) == ()


async def test_postmaster_is_always_accepted_at_the_domains_we_serve() -> None:
    # RFC 5321 4.5.1: every domain served has a postmaster, bare or not.
    plain = Recipients(mailboxes=["alice@example.com"], catch_alls={"example.net": ["a@x.org"]})
    assert await plain.lookup("PostMaster") == ("postmaster",)
    assert await plain.lookup("POSTMASTER@Example.COM") == ("postmaster@example.com",)
    assert await plain.lookup("postmaster@example.net") == ("a@x.org",)  # its catch-all
    assert await plain.lookup("postmaster@gmail.com") == ()  # not served: no relay
    forwarded = Recipients(
        mailboxes=["alice@example.com"], forwards={"Postmaster": ["alice@example.com"]}
    )
    assert await forwarded.lookup("postmaster") == ("alice@example.com",)
    assert await forwarded.lookup("postmaster@example.com") == ("alice@example.com",)


async def test_targets_are_not_expanded_again() -> None:
    recipients = Recipients(
        forwards={"a@example.com": ["b@example.com"], "b@example.com": ["c@example.com"]}
    )
    assert await recipients.lookup("a@example.com") == ("b@example.com",)


def test_served_domains(recipients: Recipients) -> None:
    assert recipients.domains == {"example.com", "example.net", "example.org"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mailboxes": ["a@example.com", "A@Example.com"]}, "already listed"),
        (
            {"mailboxes": ["a@example.com"], "forwards": {"a@example.com": ["b@example.com"]}},
            "already listed",
        ),
        ({"forwards": {"a@example.com": []}}, "no targets"),
        ({"catch_alls": {"example.com": []}}, "no targets"),
        ({"catch_alls": {"example.com": ["a@x"], "@EXAMPLE.com": ["b@x"]}}, "twice"),
    ],
)
def test_contradictions_are_refused(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recipients(**arguments)  # type: ignore[arg-type]


async def test_accept_every_recipient() -> None:
    assert await AcceptEveryRecipient().lookup("Anyone@Anywhere.example") == (
        "Anyone@Anywhere.example",
    )
