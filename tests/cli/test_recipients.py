"""The built-in Forward hook: mailboxes, forwarding, catch-alls, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from smtp_recv import Forward
from smtp_recv._recipients import AcceptEveryRecipient, Recipients
from smtp_recv._settings import ConfigError, load_settings

from .conftest import write_config

#: One domain in its two spellings (RFC 5890 2.3.2.1): the U-label an
#: SMTPUTF8 sender may use, the A-label every other sender must use.
U_LABEL = "exämple.com"
A_LABEL = "xn--exmple-cua.com"


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


async def test_a_local_part_quoted_for_nothing_is_the_same_mailbox(
    recipients: Recipients,
) -> None:
    """RFC 5321 4.1.2 and RFC 5322 3.4.1: ``"alice"`` and ``alice`` are one local part."""
    assert await recipients.lookup('"alice"@example.com') == ("alice@example.com",)
    assert await recipients.lookup('"al\\ice"@example.com') == ("alice@example.com",)
    assert await recipients.lookup('"Bob"@example.com') == ("Bob@example.com",)
    # Quotes that are needed make another local part: no such mailbox here.
    assert await recipients.lookup('"alice smith"@example.com') == ()
    # At a catch-all's domain it is still alice, not the catch-all.
    catch_all = Recipients(
        mailboxes=["alice@example.net"], forwards={}, catch_alls={"example.net": ["x@example.com"]}
    )
    assert await catch_all.lookup('"alice"@example.net') == ("alice@example.net",)


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
        # Not domains (invalid IDNA): refused, never a crash.
        "alice@example..com",
        f"alice@{'x' * 64}.com",
        "alice@ex\ufffdmple.com",  # prohibited by nameprep
        "alice@\u05d0a.com",  # mixes right-to-left and left-to-right
        "alice@exa\udcffmple.com",  # a lone surrogate
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
        # One domain in its two forms is one domain.
        ({"mailboxes": [f"a@{U_LABEL}", f"A@{A_LABEL.upper()}"]}, "already listed"),
        ({"catch_alls": {U_LABEL: ["a@x"], f"@{A_LABEL}": ["b@x"]}}, "twice"),
    ],
)
def test_contradictions_are_refused(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recipients(**arguments)  # type: ignore[arg-type]


async def test_accept_every_recipient_in_one_spelling_per_mailbox() -> None:
    accept = AcceptEveryRecipient()
    assert await accept.lookup("Anyone@Anywhere.example") == ("anyone@anywhere.example",)
    assert await accept.lookup("J\u00f6ran@B\u00fccher.example") == (
        "j\u00f6ran@xn--bcher-kva.example",
    )
    assert await accept.lookup("j\u00f6ran@xn--bcher-kva.example") == (
        "j\u00f6ran@xn--bcher-kva.example",
    )
    # An address IDNA cannot encode is still a mailbox, as written.
    assert await accept.lookup("a@" + "x" * 64 + ".example") == ("a@" + "x" * 64 + ".example",)


# -- internationalised domains and non-ASCII local parts ------------------------


@pytest.mark.parametrize(
    ("listed", "written"),
    [
        (U_LABEL, A_LABEL),  # a sender without SMTPUTF8 (RFC 6531 3.2)
        (U_LABEL, A_LABEL.upper()),
        (A_LABEL, U_LABEL),  # a map written in A-labels, an SMTPUTF8 sender
        (A_LABEL, "EXÄMPLE.COM"),
        (f"mail.{U_LABEL}", f"mail.{A_LABEL}"),
    ],
)
async def test_a_domain_matches_in_either_form(listed: str, written: str) -> None:
    recipients = Recipients(
        mailboxes=[f"a@{listed}"],
        forwards={f"sales@{listed}": [f"a@{listed}"]},
        catch_alls={listed: [f"a@{listed}"]},
    )
    assert await recipients.lookup(f"a@{written}") == (f"a@{listed}",)
    assert await recipients.lookup(f"sales@{written}") == (f"a@{listed}",)
    assert await recipients.lookup(f"anyone@{written}") == (f"a@{listed}",)


async def test_a_catch_all_at_an_internationalised_domain() -> None:
    recipients = Recipients(catch_alls={f"@{U_LABEL.upper()}": ["alice@example.com"]})
    assert await recipients.lookup(f"anyone@{A_LABEL}") == ("alice@example.com",)
    assert await recipients.lookup(f"anyone@{U_LABEL}") == ("alice@example.com",)
    # The A-label's ASCII letters are not the domain.
    assert await recipients.lookup("anyone@exmple.com") == ()


async def test_a_target_in_the_other_form_takes_the_listed_spelling() -> None:
    # One Maildir per mailbox, whichever form of its domain a target uses.
    recipients = Recipients(
        mailboxes=[f"a@{U_LABEL}"],
        forwards={"sales@example.com": [f"A@{A_LABEL}"]},
        catch_alls={"example.com": [f"a@{A_LABEL}"]},
    )
    assert await recipients.lookup("sales@example.com") == (f"a@{U_LABEL}",)
    assert await recipients.lookup("anyone@example.com") == (f"a@{U_LABEL}",)


async def test_postmaster_at_an_internationalised_domain() -> None:
    # RFC 5321 4.5.1 holds for every form of a served domain, and the
    # postmaster's own Maildir is named as the domain is listed, beside its
    # mailboxes, not once per form a sender happened to use.
    plain = Recipients(mailboxes=[f"a@{U_LABEL}"])
    assert await plain.lookup(f"postmaster@{A_LABEL}") == (f"postmaster@{U_LABEL}",)
    assert await plain.lookup(f"PostMaster@{U_LABEL.upper()}") == (f"postmaster@{U_LABEL}",)
    caught = Recipients(catch_alls={A_LABEL: ["a@example.com"]})
    assert await caught.lookup(f"postmaster@{U_LABEL}") == ("a@example.com",)
    forwarded = Recipients(forwards={f"postmaster@{A_LABEL}": ["a@example.com"]})
    assert await forwarded.lookup(f"postmaster@{U_LABEL}") == ("a@example.com",)


def test_served_domains_are_compared_in_their_a_label_form_and_shown_as_written() -> None:
    recipients = Recipients(mailboxes=[f"a@{U_LABEL}"], catch_alls={"[192.0.2.1]": ["a@x"]})
    assert recipients.domains == {A_LABEL, "[192.0.2.1]"}
    assert recipients.listed_domains == ["[192.0.2.1]", U_LABEL]


async def test_address_literals_match_as_before() -> None:
    recipients = Recipients(mailboxes=["a@[192.0.2.1]", "b@[IPv6:2001:db8::1]"])
    assert await recipients.lookup("A@[192.0.2.1]") == ("a@[192.0.2.1]",)
    assert await recipients.lookup("b@[ipv6:2001:DB8::1]") == ("b@[IPv6:2001:db8::1]",)
    assert await recipients.lookup("postmaster@[192.0.2.1]") == ("postmaster@[192.0.2.1]",)
    assert await recipients.lookup("a@[192.0.2.2]") == ()


@pytest.mark.parametrize(
    ("arguments", "entry"),
    [
        ({"mailboxes": ["a@ex\ufffdmple.com"]}, "mailbox 'a@ex\ufffdmple.com'"),
        ({"forwards": {"a@example..com": ["b@example.com"]}}, "forwarding entry 'a@example..com'"),
        ({"catch_alls": {"@\u05d0a.com": ["b@example.com"]}}, "catch-all for '@\u05d0a.com'"),
    ],
)
def test_a_domain_that_is_not_valid_idna_is_refused(
    arguments: dict[str, object], entry: str
) -> None:
    with pytest.raises(ValueError, match="not a valid domain name") as raised:
        Recipients(**arguments)  # type: ignore[arg-type]
    assert entry in str(raised.value)


def test_a_config_file_with_invalid_idna_names_the_entry(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    text = path.read_text()
    path.write_text(text.replace('"bob@example.com"]', '"bob@ex\ufffdmple.com"]', 1))
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert raised.value.key == "recipients"
    assert "'bob@ex\ufffdmple.com'" in raised.value.problem
    assert "not a valid domain name" in raised.value.problem


def test_a_config_file_with_an_internationalised_domain_loads(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace('"bob@example.com"]', f'"bob@{U_LABEL}"]', 1))
    settings = load_settings(path)
    assert settings.recipients.targets(f"BOB@{A_LABEL}") == (f"bob@{U_LABEL}",)
    assert A_LABEL in settings.recipients.domains


async def test_local_parts_ignore_case_but_keep_distinct_letters_apart() -> None:
    # Case folding would turn "ß" into "ss": STRASSE@ would reach straße@.
    recipients = Recipients(mailboxes=["straße@example.com", "bøb@example.com"])
    assert await recipients.lookup("STRASSE@example.com") == ()
    assert await recipients.lookup("strasse@example.com") == ()
    assert await recipients.lookup("STRAẞE@example.com") == ("straße@example.com",)
    assert await recipients.lookup("BØB@example.com") == ("bøb@example.com",)
    both = Recipients(mailboxes=["straße@example.com", "strasse@example.com"])
    assert await both.lookup("STRASSE@example.com") == ("strasse@example.com",)
    assert await both.lookup("Straße@example.com") == ("straße@example.com",)


async def test_local_parts_compare_composed_and_decomposed_letters_alike() -> None:
    # RFC 6532 3.1: NFC.  "é" is one code point or "e" and a combining accent.
    composed, decomposed = "jos\u00e9", "jose\u0301"
    recipients = Recipients(mailboxes=[f"{decomposed}@example.com"])
    assert await recipients.lookup(f"{composed}@example.com") == (f"{decomposed}@example.com",)
    assert await recipients.lookup("JOS\u00c9@example.com") == (f"{decomposed}@example.com",)
    # Compatibility forms stay apart: the ligature is not "fi".
    ligature = Recipients(mailboxes=["\ufb01x@example.com"])
    assert await ligature.lookup("fix@example.com") == ()
