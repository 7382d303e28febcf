"""Password hashes and the users file's Auth and SenderPolicy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smtp_recv import Auth, SenderIsLogin, SenderPolicy
from smtp_recv._users import (
    PasswordHashError,
    User,
    Users,
    check_password_hash,
    hash_password,
    verify_password,
)

from .conftest import CHEAP


def test_hash_round_trip_and_format() -> None:
    encoded = hash_password("correct horse", **CHEAP)
    assert encoded.startswith("scrypt$n=1024,r=8,p=1$")
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsf", encoded)
    assert not verify_password("", encoded)


def test_default_parameters_are_the_interactive_login_ones() -> None:
    assert hash_password("x").startswith("scrypt$n=16384,r=8,p=1$")


def test_each_hash_has_its_own_salt() -> None:
    assert hash_password("same", **CHEAP) != hash_password("same", **CHEAP)


@pytest.mark.parametrize("cost", [(2, 1, 1), (1 << 10, 1, 16), (1 << 17, 8, 1)])
def test_every_accepted_cost_can_be_checked(cost: tuple[int, int, int]) -> None:
    # OpenSSL needs more than 128 * r * n bytes: the smallest and the
    # largest costs the users file accepts must both get through it.
    n, r, p = cost
    encoded = hash_password("pw", n=n, r=r, p=p)
    check_password_hash(encoded)
    assert verify_password("pw", encoded)
    assert not verify_password("px", encoded)


def test_unknown_logins_cost_what_most_users_cost() -> None:
    # Timing must not tell unknown logins from users with a wrong password:
    # the stand-in hash checked for unknown logins has the common cost.
    users = Users(
        {
            "a@example.com": User(hash_password("a", **CHEAP)),
            "b@example.com": User(hash_password("b", **CHEAP)),
            "c@example.com": User(hash_password("c", n=1 << 11, r=8, p=1)),
        }
    )
    assert users.common_cost == (1 << 10, 8, 1)
    assert users.costs == {(1 << 10, 8, 1), (1 << 11, 8, 1)}
    assert users._dummy_hash.startswith("scrypt$n=1024,r=8,p=1$")
    assert Users({}).common_cost == (16384, 8, 1)


def test_non_ascii_password() -> None:
    assert verify_password("pässwörd ✓", hash_password("pässwörd ✓", **CHEAP))


def test_a_password_matches_in_every_unicode_spelling() -> None:
    # RFC 4616 and RFC 4013 (SASLprep): compared after NFKC normalisation.
    composed, decomposed = "caf\u00e9 cr\u00e8me", "cafe\u0301 cre\u0300me"
    assert verify_password(decomposed, hash_password(composed, **CHEAP))
    assert verify_password(composed, hash_password(decomposed, **CHEAP))
    assert not verify_password("cafe creme", hash_password(composed, **CHEAP))


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "scrypt$n=1024,r=8,p=1$c2FsdA$",
        "scrypt$n=1000,r=8,p=1$c2FsdA$aGFzaA",  # n not a power of two
        "scrypt$n=1024,r=0,p=1$c2FsdA$aGFzaA",
        "scrypt$n=1048576,r=8,p=1$c2FsdA$aGFzaA",  # 1 GiB per check
        "scrypt$n=1" + "0" * 5000 + ",r=8,p=1$c2FsdA$aGFzaA",  # past int()'s digit limit
        "scrypt$n=1024,r=8,p=1$c2Fs*A$aGFzaA",
        "bcrypt$n=1024,r=8,p=1$c2FsdA$aGFzaA",
    ],
)
def test_malformed_hashes_are_refused(encoded: str) -> None:
    with pytest.raises(PasswordHashError):
        check_password_hash(encoded)
    with pytest.raises(PasswordHashError):
        verify_password("x", encoded)


@pytest.fixture
def users() -> Users:
    return Users(
        {
            "alice@example.com": User(
                hash_password("alice-secret", **CHEAP), ("sales@example.com",)
            ),
            "bob@example.com": User(hash_password("bob-secret", **CHEAP)),
        }
    )


def test_users_fit_the_hook_protocols(users: Users) -> None:
    assert isinstance(users, Auth)
    assert isinstance(users, SenderPolicy)


async def test_good_login_returns_the_user_id(users: Users) -> None:
    assert await users.verify(None, "alice@example.com", "alice-secret") == "alice@example.com"
    # Logins are case-insensitive; the id is the spelling of the users file.
    assert await users.verify("mx.example.com", "Alice@EXAMPLE.com", "alice-secret") == (
        "alice@example.com"
    )


async def test_wrong_password_and_unknown_user_both_fail(users: Users) -> None:
    assert await users.verify(None, "alice@example.com", "bob-secret") is None
    assert await users.verify(None, "alice@example.com", "") is None
    assert await users.verify(None, "mallory@example.com", "alice-secret") is None
    assert await users.verify(None, "", "") is None


@pytest.mark.parametrize(
    "other",
    ["A@example.com", "a@EXAMPLE.com", "a@xn--exmple-cua.com"],
    ids=["case", "domain", "idn"],
)
def test_logins_that_are_one_mailbox_are_refused(other: str) -> None:
    encoded = hash_password("x", **CHEAP)
    first = "a@ex\u00e4mple.com" if other.endswith("xn--exmple-cua.com") else "a@example.com"
    with pytest.raises(ValueError, match="are one mailbox"):
        Users({first: User(encoded), other: User(encoded)})


async def test_logins_and_senders_compare_as_the_recipient_map_does() -> None:
    # A domain in its Unicode or its xn-- form is one domain; distinct
    # letters (ß and ss) stay distinct mailboxes.
    encoded = hash_password("pw", **CHEAP)
    users = Users({"bob@ex\u00e4mple.com": User(encoded), "stra\u00dfe@example.com": User(encoded)})
    assert await users.verify(None, "BOB@xn--exmple-cua.com", "pw") == "bob@ex\u00e4mple.com"
    assert await users.verify(None, "strasse@example.com", "pw") is None
    assert await users.verify(None, "bob@exa..mple.com", "pw") is None  # no valid domain
    assert await users.may_send_as("bob@ex\u00e4mple.com", "bob", "bob@xn--exmple-cua.com")
    assert not await users.may_send_as(
        "stra\u00dfe@example.com", "stra\u00dfe@example.com", "strasse@example.com"
    )
    policy = SenderIsLogin()
    assert await policy.may_send_as("u", "Bob@xn--exmple-cua.com", "bob@ex\u00e4mple.com")
    assert not await policy.may_send_as("u", "strasse@example.com", "stra\u00dfe@example.com")
    assert not await policy.may_send_as("u", "bob@exa..mple.com", "bob@exa..mple.com")


async def test_a_login_matches_composed_or_decomposed() -> None:
    # A login typed on another system may come decomposed (RFC 6532 3.1).
    users = Users({"jos\u00e9@example.com": User(hash_password("pw", **CHEAP))})
    assert await users.verify(None, "jose\u0301@example.com", "pw") == "jos\u00e9@example.com"
    assert await users.may_send_as("jos\u00e9@example.com", "x", "JOSE\u0301@example.com")


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("alice@example.com", True),
        ("alice@EXAMPLE.COM", True),  # domains are case-insensitive
        ("sales@example.com", True),
        ("sales@Example.Com", True),
        ("Alice@example.com", True),  # one mailbox, as the recipient map has it
        ("bob@example.com", False),
        ("alice@example.org", False),
        ("", False),  # users do not send bounces
    ],
)
async def test_may_send_as_own_and_listed_senders(users: Users, sender: str, allowed: bool) -> None:
    assert await users.may_send_as("alice@example.com", "alice@example.com", sender) is allowed


async def test_unknown_user_id_may_send_as_nobody(users: Users) -> None:
    assert not await users.may_send_as("mallory@example.com", "x", "mallory@example.com")


def run_passwd(text: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    # A new session has no controlling terminal, so getpass reads stdin,
    # which is the honest way to type at its prompt from a test.
    return subprocess.run(
        [sys.executable, "-m", "smtp_recv", "passwd", *arguments],
        input=text,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=30,
        check=False,
    )


def test_passwd_prints_a_hash_that_verifies() -> None:
    result = run_passwd("s3cret pass\ns3cret pass\n")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith('password = "scrypt$')
    encoded = line.removeprefix('password = "').removesuffix('"')
    assert verify_password("s3cret pass", encoded)
    assert "s3cret" not in result.stdout + result.stderr


def test_passwd_with_login_prints_the_users_table() -> None:
    result = run_passwd("pw\npw\n", "alice@example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == '[users."alice@example.com"]'


@pytest.mark.parametrize("typed", ["one\ntwo\n", "\n\n", ""])
def test_passwd_refuses_mismatch_empty_and_no_input(typed: str) -> None:
    result = run_passwd(typed)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "smtp-recv: error:" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_login_whose_case_the_file_changed_may_still_send() -> None:
    # The user id handed out at AUTH is the login as the file wrote it then;
    # a reload may since write it in other case: still the same user.
    encoded = hash_password("pw", **CHEAP)
    users = Users({"alice@example.com": User(encoded, senders=("sales@example.com",))})
    assert await users.may_send_as("Alice@Example.com", "x", "alice@example.com")
    assert await users.may_send_as("Alice@Example.com", "x", "sales@example.com")
    assert not await users.may_send_as("bob@example.com", "x", "bob@example.com")
    assert not await users.may_send_as("bob@ex..ample.com", "x", "bob@ex..ample.com")


@pytest.mark.parametrize("login", ["alice", "alice@", "@example.com", "al ice@example.com"])
def test_passwd_refuses_a_login_that_is_no_address(login: str) -> None:
    """Its block would fail ``check`` ("a login must be an address"): say so first."""
    result = run_passwd("pw\npw\n", login)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "must be an address" in result.stderr
