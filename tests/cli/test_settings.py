"""The config file: a good one loads; each kind of mistake names its key."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import tomllib
from pathlib import Path

import pytest
import trustme

from smtp_recv import CertByHost, Certificate, ServerConfig
from smtp_recv._maildir import mailbox_directory
from smtp_recv._settings import (
    LIMIT_FIELDS,
    PROTOCOL_FIELDS,
    TIMEOUT_FIELDS,
    CertificateMap,
    ConfigError,
    certificate_names,
    load_settings,
    load_users,
)
from smtp_recv._users import hash_password

from .conftest import CHEAP, write_certificate, write_config

#: Longer than any file name may be (NAME_MAX is 255 on Linux and the BSDs):
#: stat fails with ENAMETOOLONG, for root too, where pathlib's exists() and
#: is_file() raise as they do for a directory we may not search.
TOO_LONG = "x" * 300


def test_good_config_loads(tmp_path: Path, certificate_authority: trustme.CA) -> None:
    settings = load_settings(write_config(tmp_path, certificate_authority))
    config = settings.config
    assert config.hostname == "mx.example.com"
    assert (config.mx.host, config.mx.port, config.mx.enabled) == ("127.0.0.1", 2525, True)
    assert (config.submission.host, config.submission.port) == ("127.0.0.1", 4650)
    assert config.max_message_size == 1048576
    assert config.max_recipients == 200
    assert config.command_timeout == 120.0
    assert config.shutdown_grace == 5.0
    assert config.data_block_timeout == ServerConfig().data_block_timeout  # default kept
    assert settings.maildir_root == tmp_path.resolve() / "maildir"
    assert settings.users.logins == ("alice@example.com",)
    assert settings.recipients.targets("sales@example.com") == (
        "alice@example.com",
        "bob@example.com",
    )
    assert settings.recipients.targets("x@example.net") == ("alice@example.com",)
    assert settings.certificates.get("mx.example.com").certfile == tmp_path / "mx.pem"
    assert settings.certificates.get("www.example.org").certfile == tmp_path / "other.pem"
    assert settings.certificates.get(None).certfile == tmp_path / "mx.pem"
    assert settings.warnings == ()


async def test_loaded_users_check_passwords(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    settings = load_settings(write_config(tmp_path, certificate_authority))
    assert await settings.users.verify(None, "alice@example.com", "alice-secret") == (
        "alice@example.com"
    )
    assert await settings.users.may_send_as("alice@example.com", "", "sales@example.com")


def test_every_server_config_option_has_a_table() -> None:
    options = {field.name for field in dataclasses.fields(ServerConfig)} - {
        "hostname",
        "mx",
        "submission",
        # The built-in server stores mail and sends none: it cannot send the
        # notifications that offering DSN promises.
        "dsn",
    }
    tables = [*LIMIT_FIELDS, *TIMEOUT_FIELDS, *PROTOCOL_FIELDS]
    assert sorted(tables) == sorted(options)


def test_submission_can_be_switched_off_without_users(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    text = path.read_text().replace('users_file = "users.toml"\n', "")
    path.write_text(text.replace("[submission]\n", "[submission]\nenabled = false\n"))
    settings = load_settings(path)
    assert not settings.config.submission.enabled
    assert settings.users.logins == ()


# Each case: (what to replace in the good file, by what, the key the error names,
# words the message contains).
BROKEN = [
    ('hostname = "mx.example.com"', 'hostname = "mx.example.com"\nhostnme = "x"', None, "hostnme"),
    ("max_recipients = 200", 'max_recipients = "many"', "limits.max_recipients", "int"),
    ("max_recipients = 200", "max_recipients = 10", "limits.max_recipients", ">= 100"),
    ("max_recipients = 200", "max_recipents = 200", "limits", "max_recipents"),
    ("max_message_size = 1048576", "max_message_size = true", "limits.max_message_size", "int"),
    ("command_timeout = 120", "command_timeout = 0", "timeouts.command_timeout", "> 0"),
    ("command_timeout = 120", "command_timeout = -1", "timeouts.command_timeout", "> 0"),
    ("command_timeout = 120", "command_timeout = inf", "timeouts.command_timeout", "<= 604800"),
    ("shutdown_grace = 5", "shutdown_grace = nan", "timeouts.shutdown_grace", ">= 0"),
    ("shutdown_grace = 5", "min_data_rate = 0", "timeouts.min_data_rate", "> 0"),
    ("port = 2525", "port = 70000", "mx.port", "65535"),
    ('address = "127.0.0.1"\nport = 2525', "enabled = 1", "mx.enabled", "bool"),
    # Empty is not "every interface": some resolvers bind 0.0.0.0 for it.
    ('address = "127.0.0.1"', 'address = ""', "mx.address", "length >= 1"),
    ("[limits]", "x = " + "[" * 5000 + "]" * 5000 + "\n[limits]", None, "nested too deeply"),
    ('cert = "mx.pem"', 'cert = "/dev/zero"', "tls.certificates[0].cert", "not a regular file"),
    ('key = "mx.key"', 'key = "/dev/zero"', "tls.certificates[0].key", "not a regular file"),
    ('[storage]\nmaildir_root = "maildir"', "", None, "storage"),
    ('maildir_root = "maildir"', "maildir_root = 5", "storage.maildir_root", "str"),
    ('maildir_root = "maildir"', 'maildir_root = ""', "storage.maildir_root", "length >= 1"),
    ('maildir_root = "maildir"', 'maildir_root = "mx.pem"', "storage.maildir_root", "directory"),
    (
        'maildir_root = "maildir"',
        'maildir_root = "mx.pem/maildir"',
        "storage.maildir_root",
        "Not a directory",
    ),
    (
        'maildir_root = "maildir"',
        f'maildir_root = "{TOO_LONG}"',
        "storage.maildir_root",
        "too long",
    ),
    ('cert = "mx.pem"', f'cert = "{TOO_LONG}"', "tls.certificates[0].cert", "too long"),
    ('key = "mx.key"', f'key = "{TOO_LONG}"', "tls.certificates[0].key", "too long"),
    ("port = 4650", "port = 2525", "submission.port", "same port"),
    (
        'port = 2525\n[submission]\naddress = "127.0.0.1"\nport = 4650\n',
        "enabled = false\n[submission]\nenabled = false\n",
        None,
        "nothing to serve",
    ),
    ('hostname = "mx.example.com"', 'hostname = "mx example com"', "hostname", "host name"),
    ("[limits]", "[limits", None, "not valid TOML"),
    ('cert = "mx.pem"', 'cert = "missing.pem"', "tls.certificates[0].cert", "missing.pem"),
    ('cert = "mx.pem"', 'cert = "users.toml"', "tls.certificates[0].cert", "no PEM certificate"),
    ('key = "mx.key"', 'key = "other.key"', "tls.certificates[0].key", "private key"),
    ('key = "mx.key"', 'key = "nope.key"', "tls.certificates[0].key", "private key"),
    ("default = true\n", "", "tls.certificates", "exactly one"),
    ('key = "other.key"', 'key = "other.key"\ndefault = true', "tls.certificates", "exactly one"),
    ('users_file = "users.toml"', 'users_file = "nobody.toml"', "users_file", "does not exist"),
    ('users_file = "users.toml"', 'users_file = "."', "users_file", "not a regular file"),
    ('users_file = "users.toml"', f'users_file = "{TOO_LONG}"', "users_file", "too long"),
    ('users_file = "users.toml"\n', "", "users_file", "required"),
    (
        '"sales@example.com" = ["alice@example.com", "bob@example.com"]',
        '"sales@example.com" = ["alice"]',
        'recipients.forward."sales@example.com"[0]',
        "not an address",
    ),
    (
        '"sales@example.com" = ["alice@example.com", "bob@example.com"]',
        '"sales@example.com" = 5',
        'recipients.forward."sales@example.com"',
        "array",
    ),
    (
        '"sales@example.com" = ["alice@example.com", "bob@example.com"]',
        '"sales" = ["alice@example.com"]',
        "recipients.forward.sales",
        "catch-all",
    ),
    (
        '"sales@example.com" = ["alice@example.com", "bob@example.com"]',
        '"alice@example.com" = ["bob@example.com"]',
        "recipients",
        "already listed",
    ),
    ('"bob@example.com"]', '"bob at example.com"]', "recipients.mailboxes[1]", "not an address"),
    # Addresses the listeners' own parser would refuse: they could never match.
    (
        '"alice@example.com", "bob',
        '"alice@example.com.", "bob',
        "recipients.mailboxes[0]",
        "not an",
    ),
    (
        '"alice@example.com", "bob',
        '"alice@@example.com", "bob',
        "recipients.mailboxes[0]",
        "not an",
    ),
    ('["alice@example.com"', '["alice@-bad-.com"', "recipients.mailboxes[0]", "not an address"),
    ('"@example.net" =', '"@@example.net" =', 'recipients.forward."@@example.net"', "catch-all"),
    ('"@example.net" =', '"*@example.net" =', 'recipients.forward."*@example.net"', "@domain"),
    (
        'maildir_root = "maildir"',
        'maildir_root = "~no-such-user-here/maildir"',
        "storage.maildir_root",
        "cannot expand",
    ),
]


@pytest.mark.parametrize(("old", "new", "key", "words"), BROKEN)
def test_bad_config_names_file_key_and_problem(
    tmp_path: Path,
    certificate_authority: trustme.CA,
    old: str,
    new: str,
    key: str | None,
    words: str,
) -> None:
    path = write_config(tmp_path, certificate_authority)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    error = raised.value
    assert error.source == path.resolve()
    assert error.key == key
    assert words in error.problem
    assert str(error).startswith(f"{path.resolve()}: ")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('maildir_root = "maildir"', 'maildir_root = "loop"', "storage.maildir_root"),
        ('cert = "mx.pem"', 'cert = "loop"', "tls.certificates[0].cert"),
        ('key = "mx.key"', 'key = "loop/mx.key"', "tls.certificates[0].key"),
        ('users_file = "users.toml"', 'users_file = "loop"', "users_file"),
    ],
)
def test_a_symlink_loop_names_its_key(
    tmp_path: Path, certificate_authority: trustme.CA, old: str, new: str, key: str
) -> None:
    path = write_config(tmp_path, certificate_authority)
    (tmp_path / "loop").symlink_to("back")
    (tmp_path / "back").symlink_to("loop")
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert raised.value.key == key
    assert str(tmp_path / "loop") in raised.value.problem


def test_a_config_file_in_a_symlink_loop_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("back")
    (tmp_path / "back").symlink_to("loop")
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "loop")
    assert raised.value.key is None


# Root may search and write any directory, whatever its mode.
needs_permissions = pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads and writes any directory"
)


@needs_permissions
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('cert = "mx.pem"', 'cert = "secret/mx.pem"', "tls.certificates[0].cert"),
        ('key = "mx.key"', 'key = "secret/mx.key"', "tls.certificates[0].key"),
        ('users_file = "users.toml"', 'users_file = "secret/users.toml"', "users_file"),
        ('maildir_root = "maildir"', 'maildir_root = "secret/maildir"', "storage.maildir_root"),
    ],
)
def test_a_path_in_a_directory_we_may_not_search_names_its_key(
    tmp_path: Path, certificate_authority: trustme.CA, old: str, new: str, key: str
) -> None:
    # As certbot's 0700 live/ is to a server running as another user.
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace(old, new, 1))
    secret = tmp_path / "secret"
    secret.mkdir()
    for name in ("mx.pem", "mx.key", "users.toml"):
        (secret / name).write_bytes((tmp_path / name).read_bytes())
    secret.chmod(0)
    try:
        with pytest.raises(ConfigError) as raised:
            load_settings(path)
    finally:
        secret.chmod(0o700)
    assert raised.value.key == key
    assert "Permission denied" in raised.value.problem


@needs_permissions
@pytest.mark.parametrize(
    ("maildir_root", "words"), [("maildir", "cannot write into"), ("maildir/new", "cannot create")]
)
def test_a_maildir_root_the_server_cannot_write_is_refused(
    tmp_path: Path, certificate_authority: trustme.CA, maildir_root: str, words: str
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace('"maildir"', f'"{maildir_root}"'))
    (tmp_path / "maildir").mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigError) as raised:
            load_settings(path)
    finally:
        (tmp_path / "maildir").chmod(0o700)
    assert raised.value.key == "storage.maildir_root"
    assert words in raised.value.problem


def test_a_maildir_root_the_server_can_create_is_accepted(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace('"maildir"', '"not/yet/there"'))
    assert load_settings(path).maildir_root == tmp_path.resolve() / "not" / "yet" / "there"


def test_users_hashed_at_different_costs_are_warned_about(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    users = "".join(
        f'[users."{login}@example.com"]\npassword = "{hash_password("pw", n=n, r=8, p=1)}"\n'
        for login, n in (("alice", 1 << 10), ("bob", 1 << 11))
    )
    settings = load_settings(write_config(tmp_path, certificate_authority, users=users))
    assert any("different scrypt costs" in warning for warning in settings.warnings)
    one = tmp_path / "one"
    one.mkdir()
    settings = load_settings(write_config(one, certificate_authority))
    assert not any("different scrypt costs" in warning for warning in settings.warnings)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("users", "key", "words"),
    [
        (
            '[users."alice@example.com"]\npassword = "plain"\n',
            'users."alice@example.com".password',
            "scrypt",
        ),
        ('[users."alice@example.com"]\n', 'users."alice@example.com"', "password"),
        (
            '[users."alice@example.com"]\npassword = 5\n',
            'users."alice@example.com".password',
            "str",
        ),
        ('[users.alice]\npassword = "x"\n', "users.alice", "address"),
        (
            '[users."a@example.com"]\npassword = "x"\nsender = []\n',
            'users."a@example.com"',
            "sender",
        ),
        ("[people]\n", None, "people"),
    ],
)
def test_bad_users_file_names_the_key(
    tmp_path: Path, users: str, key: str | None, words: str
) -> None:
    path = tmp_path / "users.toml"
    path.write_text(users)
    with pytest.raises(ConfigError) as raised:
        load_users(path)
    assert raised.value.source == path
    assert raised.value.key == key
    assert words in raised.value.problem


def test_bad_sender_in_users_file(tmp_path: Path) -> None:
    from smtp_recv._users import hash_password

    path = tmp_path / "users.toml"
    path.write_text(
        f'[users."a@example.com"]\npassword = "{hash_password("x", n=1024)}"\n'
        'senders = ["a@example.com", "nobody"]\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_users(path)
    assert raised.value.key == 'users."a@example.com".senders[1]'


def test_expired_certificate_is_a_warning(tmp_path: Path) -> None:
    import datetime

    ca = trustme.CA()
    issued = ca.issue_cert(
        "mx.example.com", not_after=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "old.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "old.key"))
    config = tmp_path / "config.toml"
    config.write_text(
        '[submission]\nenabled = false\n[[tls.certificates]]\ncert = "old.pem"\nkey = "old.key"\n'
        '[recipients]\nmailboxes = ["a@example.com"]\n[storage]\nmaildir_root = "m"\n'
    )
    settings = load_settings(config)
    assert any("expired" in warning for warning in settings.warnings)


# -- certificates by SNI name ------------------------------------------------------


def test_certificate_names_come_from_the_san(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    certfile, _ = write_certificate(
        certificate_authority, tmp_path, "c", "MX.Example.com", "*.example.org", "192.0.2.7"
    )
    assert certificate_names(certfile) == ("mx.example.com", "*.example.org")


def test_certificate_map_chooses_by_sni() -> None:
    default = Certificate(Path("default.pem"))
    mx = Certificate(Path("mx.pem"))
    wildcard = Certificate(Path("wildcard.pem"))
    apex = Certificate(Path("apex.pem"))
    certs = CertificateMap(
        default,
        {"mx.example.com": mx, "*.example.org": wildcard, "example.org": apex},
    )
    assert isinstance(certs, CertByHost)
    assert certs.get(None) is default
    assert certs.get("") is default
    assert certs.get("mx.example.com") is mx
    assert certs.get("MX.EXAMPLE.COM.") is mx  # case and the root dot do not matter
    assert certs.get("smtp.example.org") is wildcard
    assert certs.get("example.org") is apex  # the wildcard does not cover the apex
    assert certs.get("a.b.example.org") is default  # nor two labels (RFC 6125 6.4.3)
    assert certs.get("unknown.example.net") is default


def test_the_readme_config_examples_are_valid_toml() -> None:
    """The README's TOML examples parse, and use only keys the loader knows."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = readme.split("```toml\n")[1:]
    assert blocks
    for block in blocks:
        document = tomllib.loads(block.split("```", 1)[0])
        for table, fields in (
            ("limits", LIMIT_FIELDS),
            ("timeouts", TIMEOUT_FIELDS),
            ("protocol", PROTOCOL_FIELDS),
        ):
            assert set(document.get(table, {})) <= set(fields), table


@pytest.mark.parametrize(
    ("table", "name", "value", "refused"),
    [
        ("timeouts", "hook_timeout", "0", True),
        ("timeouts", "min_data_rate", "0", True),
        ("timeouts", "greeting_delay", "-1", True),
        ("timeouts", "reverse_dns_timeout", "0", False),
        ("limits", "auth_failure_window", "0", False),
        ("limits", "spool_threshold", "0", False),
        ("limits", "max_connections", "0", True),
    ],
)
def test_the_file_takes_what_server_config_takes(
    tmp_path: Path,
    certificate_authority: trustme.CA,
    table: str,
    name: str,
    value: str,
    refused: bool,
) -> None:
    # One set of bounds: what ServerConfig refuses, the file refuses by its key.
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace(f"[{table}]\n", f"[{table}]\n{name} = {value}\n", 1))
    if refused:
        with pytest.raises(ConfigError) as raised:
            load_settings(path)
        assert raised.value.key == f"{table}.{name}"
    else:
        assert getattr(load_settings(path).config, name) == 0


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_config_file_that_is_not_a_regular_file_is_a_config_error(
    tmp_path: Path, kind: str
) -> None:
    """A FIFO would block the read, /dev/zero fill memory: refused before reading."""
    if kind == "fifo":
        path = tmp_path / "config.toml"
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert raised.value.key is None
    assert raised.value.problem in ("not a regular file", "cannot read: Is a directory")


@needs_permissions
def test_a_maildir_this_user_cannot_write_into_is_a_warning(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """As a first run as root leaves it: every message for it would get 451."""
    path = write_config(tmp_path, certificate_authority)
    alice = mailbox_directory(tmp_path / "maildir", "alice@example.com")
    (alice / "new").mkdir(parents=True)
    alice.chmod(0o500)
    try:
        settings = load_settings(path)
    finally:
        alice.chmod(0o700)
    [warning] = [w for w in settings.warnings if "cannot write into" in w]
    assert str(alice) in warning
    assert "451" in warning


def test_a_config_linked_from_elsewhere_finds_its_files_beside_itself(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """``/etc/smtp-recv/config.toml -> /opt/app/current/config.toml``, relative paths inside."""
    release = tmp_path / "releases" / "v2"
    release.mkdir(parents=True)
    write_config(release, certificate_authority)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").symlink_to(release / "config.toml")
    settings = load_settings(etc / "config.toml")
    assert settings.users_file == release / "users.toml"
    assert settings.maildir_root == release / "maildir"
    # The file named, for a reload to read again, keeps its symlink.
    assert settings.source == etc / "config.toml"


def test_a_catch_all_may_be_at_an_address_literal(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace('"@example.net" =', '"@[192.0.2.1]" =', 1))
    assert "[192.0.2.1]" in load_settings(path).recipients.domains


@pytest.mark.parametrize("written", ["mx.example.com.", "mx.example.com"])
def test_a_host_name_may_end_in_the_roots_dot(
    tmp_path: Path, certificate_authority: trustme.CA, written: str
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace('"mx.example.com"', f'"{written}"', 1))
    assert load_settings(path).config.hostname == "mx.example.com"


def test_a_system_name_that_is_no_host_name_is_named_with_a_fix(
    tmp_path: Path, certificate_authority: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, certificate_authority)
    path.write_text(path.read_text().replace('hostname = "mx.example.com"\n', "", 1))
    monkeypatch.setattr(socket, "getfqdn", lambda: "my box")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert raised.value.key == "hostname"
    assert "set hostname in the file" in raised.value.problem


def test_a_kubernetes_volume_swap_is_seen_through_its_data_link(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """Each key is a link through ``..data``, which the kubelet points at a new
    directory (and deletes the old): paths must go through ``..data``."""
    first = tmp_path / "..2024_01"
    first.mkdir()
    write_config(first, certificate_authority)
    (tmp_path / "..data").symlink_to(first.name)
    for name in ("config.toml", "users.toml", "mx.pem", "mx.key", "other.pem", "other.key"):
        (tmp_path / name).symlink_to(Path("..data") / name)
    settings = load_settings(tmp_path / "config.toml")
    certfile = settings.loaded_certificates[0].certificate.certfile
    assert certfile == tmp_path / "..data" / "mx.pem"
    # The kubelet's update: a new directory, ..data swapped, the old one gone.
    second = tmp_path / "..2024_02"
    second.mkdir()
    write_config(second, certificate_authority)
    swap = tmp_path / "..data_tmp"
    swap.symlink_to(second.name)
    os.replace(swap, tmp_path / "..data")
    shutil.rmtree(first)
    assert certfile.read_bytes() == (second / "mx.pem").read_bytes()


def test_a_release_directory_swap_changes_no_path(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """``/etc/...toml -> current/config.toml``, ``current -> releases/v1``, and
    ``maildir_root = "../../shared/maildir"``: a deploy of an identical v2 is no change."""
    for release in ("v1", "v2"):
        directory = tmp_path / "releases" / release
        directory.mkdir(parents=True)
        config = write_config(directory, certificate_authority)
        config.write_text(config.read_text().replace('"maildir"', '"../../shared/maildir"'))
    (tmp_path / "shared" / "maildir").mkdir(parents=True)
    (tmp_path / "current").symlink_to(Path("releases") / "v1")
    (tmp_path / "etc.toml").symlink_to(tmp_path / "current" / "config.toml")
    before = load_settings(tmp_path / "etc.toml").maildir_root
    swap = tmp_path / "current_tmp"
    swap.symlink_to(Path("releases") / "v2")
    os.replace(swap, tmp_path / "current")
    shutil.rmtree(tmp_path / "releases" / "v1")
    after = load_settings(tmp_path / "etc.toml").maildir_root
    assert after == before
    assert after.resolve() == (tmp_path / "shared" / "maildir").resolve()
    assert not (tmp_path / "releases" / "v1").exists()


def test_the_maildir_root_is_where_the_links_led_at_load(
    tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    """It takes a restart: a deploy that swaps ``current`` moves no mail under a
    running server, and the next load (a reload) sees the move as a change."""
    for release in ("v1", "v2"):
        (tmp_path / "releases" / release).mkdir(parents=True)
        write_config(tmp_path / "releases" / release, certificate_authority)
    (tmp_path / "current").symlink_to(Path("releases") / "v1")
    (tmp_path / "etc.toml").symlink_to(tmp_path / "current" / "config.toml")
    before = load_settings(tmp_path / "etc.toml").maildir_root
    assert before == (tmp_path / "releases" / "v1" / "maildir").resolve()
    swap = tmp_path / "current_tmp"
    swap.symlink_to(Path("releases") / "v2")
    os.replace(swap, tmp_path / "current")
    assert load_settings(tmp_path / "etc.toml").maildir_root != before


@pytest.mark.parametrize("login", ['"al ice"@example.com', "a..b@example.jp", "alice@example.com"])
def test_any_address_or_address_like_name_is_a_login(tmp_path: Path, login: str) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[users.{json.dumps(login)}]\npassword = "{hash_password("pw", **CHEAP)}"\n')
    assert list(load_users(users).logins) == [login]
