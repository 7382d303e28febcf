"""The certificate is chosen by SNI, on both listeners; the default otherwise."""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
import types
from pathlib import Path

import pytest
import trio

import smtp_recv
from smtp_recv import _tls as tls

from .conftest import Certs, CertSet, Client, running


def san(client: Client) -> set[str]:
    assert isinstance(client.stream, __import__("trio").SSLStream)
    certificate = client.stream.getpeercert()
    assert certificate is not None
    return {value for kind, value in certificate["subjectAltName"] if kind == "DNS"}


async def connect_tls(
    server_address: tuple[str, int], role: str, cert_set: CertSet, server_name: str | None
) -> Client:
    """A TLS client on either listener (STARTTLS on MX), sending ``server_name`` as SNI."""
    context = cert_set.client_context()
    # Hostname checks are off so that no SNI and unknown names can be tried;
    # the chain is still verified against our CA.
    context.check_hostname = False
    if role == "submission":
        client = await Client.connect(server_address, tls=context, server_hostname=server_name)
        await client.greeting_and_ehlo()
        return client
    client = await Client.connect(server_address)
    await client.greeting_and_ehlo()
    await client.starttls(context, server_name)
    return client


@pytest.mark.parametrize("role", ["mx", "submission"])
async def test_sni_selects_the_certificate_of_each_name(cert_set: CertSet, role: str) -> None:
    async with running(cert_set) as server:
        address = server.mx if role == "mx" else server.submission
        expected = {
            "mail.example.com": {"mail.example.com"},
            "mail.example.net": {"mail.example.net"},
            "MAIL.Example.NET": {"mail.example.net"},
            None: {"mx.example.com", "localhost"},
            "unknown.example.org": {"mx.example.com", "localhost"},
        }
        for name, names in expected.items():
            async with await connect_tls(address, role, cert_set, name) as client:
                assert san(client) == names, name
                assert (await client.command("NOOP")).code == 250


@pytest.mark.parametrize("role", ["mx", "submission"])
async def test_sni_certificate_verifies_for_its_hostname(cert_set: CertSet, role: str) -> None:
    # With hostname checking on, the handshake itself proves the right certificate.
    async with running(cert_set) as server:
        address = server.mx if role == "mx" else server.submission
        context = cert_set.client_context()
        if role == "submission":
            client = await Client.connect(address, tls=context, server_hostname="mail.example.net")
            assert (await client.reply()).code == 220
        else:
            client = await Client.connect(address)
            await client.greeting_and_ehlo()
            await client.starttls(context, "mail.example.net")
        async with client:
            assert (await client.command("EHLO x")).code == 250


class OwnBaseException(BaseException):
    pass


class BrokenCerts:
    def __init__(self, default: smtp_recv.Certificate, error: BaseException) -> None:
        self.default, self.error = default, error

    def get(self, host: str | None) -> smtp_recv.Certificate | None:
        if host is None:
            return self.default
        raise self.error


@pytest.mark.parametrize(
    "error",
    [RuntimeError("certificate store unavailable"), OwnBaseException("a bug of its own")],
    ids=["exception", "base-exception"],
)
async def test_sni_lookup_failure_falls_back_to_default(
    cert_set: CertSet, error: BaseException
) -> None:
    async with (
        running(cert_set, certs=BrokenCerts(cert_set.default, error)) as server,
        await connect_tls(server.submission, "submission", cert_set, "mail.example.com") as client,
    ):
        assert "mx.example.com" in san(client)


def test_certs_without_default_are_refused(cert_set: CertSet) -> None:
    from smtp_recv._tls import TLSContexts

    with pytest.raises(ValueError, match="default"):
        TLSContexts(Certs({"mail.example.com": cert_set.other}))


class RecordingAuth:
    def __init__(self) -> None:
        self.hosts: list[str | None] = []

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        self.hosts.append(host)
        return username


async def test_auth_verify_receives_the_sni_host(cert_set: CertSet) -> None:
    auth = RecordingAuth()
    async with running(cert_set, auth=auth) as server:
        for name in ("mail.example.com", None):
            async with await connect_tls(server.submission, "submission", cert_set, name) as client:
                assert (await client.login()).code == 235
    assert auth.hosts == ["mail.example.com", None]


def test_hardened_context_refuses_old_tls(cert_set: CertSet) -> None:
    from smtp_recv._tls import TLSContexts

    context = TLSContexts(cert_set.certs()).current()
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION


@pytest.mark.parametrize("server_name", [None, "mail.example.com"], ids=["default", "by-SNI"])
async def test_a_certificate_renewed_in_place_is_served_without_a_restart(
    cert_set: CertSet, tmp_path: Path, server_name: str | None
) -> None:
    # certbot and the like rewrite the same files: new handshakes must get
    # the new certificate, or it expires while the server runs on.
    live = {None: tmp_path / "default.pem", "mail.example.com": tmp_path / "mail.pem"}
    names = {None: ("mx.example.com", "localhost"), "mail.example.com": ("mail.example.com",)}

    def issue(extra: str) -> None:
        for key, path in live.items():
            cert_set.ca.issue_cert(*names[key], extra).private_key_and_cert_chain_pem.write_to_path(
                str(path)
            )

    issue("before.example.com")
    certs = Certs({key: smtp_recv.Certificate(path) for key, path in live.items()})
    async with running(cert_set, certs=certs) as server:
        async with await connect_tls(server.submission, "submission", cert_set, server_name) as c:
            assert "before.example.com" in san(c)
        issue("after.example.com")
        await trio.sleep(tls.RECHECK_INTERVAL + 0.1)
        async with await connect_tls(server.submission, "submission", cert_set, server_name) as c:
            assert "after.example.com" in san(c)
            assert (await c.command("NOOP")).code == 250


async def test_renewed_files_that_do_not_load_leave_the_last_certificate_serving(
    cert_set: CertSet, tmp_path: Path
) -> None:
    # Caught half way through the renewal: the last good certificate serves.
    live = tmp_path / "default.pem"
    cert_set.ca.issue_cert(
        "mx.example.com", "localhost"
    ).private_key_and_cert_chain_pem.write_to_path(str(live))
    certs = Certs({None: smtp_recv.Certificate(live)})
    async with running(cert_set, certs=certs) as server:
        live.write_bytes(live.read_bytes()[:100])
        await trio.sleep(tls.RECHECK_INTERVAL + 0.1)
        async with await connect_tls(server.submission, "submission", cert_set, None) as c:
            assert "mx.example.com" in san(c)
            assert (await c.command("NOOP")).code == 250


async def test_a_new_default_certificate_that_does_not_load_leaves_the_last_serving(
    cert_set: CertSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The hook names another default (a reload of the config file, say)
    # whose files are broken: handshakes go on with the last good one, the
    # operator is told once, and the new one serves once its files load.
    first, second = tmp_path / "first.pem", tmp_path / "second.pem"
    cert_set.ca.issue_cert(
        "mx.example.com", "localhost"
    ).private_key_and_cert_chain_pem.write_to_path(str(first))
    second.write_bytes(first.read_bytes()[:100])
    by_host = {None: smtp_recv.Certificate(first)}
    async with running(cert_set, certs=Certs(by_host)) as server:
        by_host[None] = smtp_recv.Certificate(second)
        for _ in range(3):
            await trio.sleep(tls.RECHECK_INTERVAL + 0.1)
            async with await connect_tls(server.submission, "submission", cert_set, None) as c:
                assert "mx.example.com" in san(c)
                assert (await c.command("NOOP")).code == 250
        assert caplog.text.count("does not load") == 1
        second.chmod(0o640)  # the usual fix for a key we may not read: tried again
        await trio.sleep(tls.RECHECK_INTERVAL + 0.1)
        async with await connect_tls(server.submission, "submission", cert_set, None) as c:
            assert "mx.example.com" in san(c)
        assert caplog.text.count("does not load") == 2
        cert_set.ca.issue_cert(
            "mx.example.com", "second.example.com"
        ).private_key_and_cert_chain_pem.write_to_path(str(second))
        await trio.sleep(tls.RECHECK_INTERVAL + 0.1)
        async with await connect_tls(server.submission, "submission", cert_set, None) as c:
            assert "second.example.com" in san(c)


def client_hello(server_name: bytes) -> bytes:
    """A ClientHello whose SNI is ``server_name``, bytes Python's ``ssl`` will not send.

    Made with an ASCII name of the same length, then rewritten in place: the
    server fails the handshake before anything could notice.
    """
    stand_in = b"x" * (len(server_name) - len(b".example")) + b".example"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    handshake = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=stand_in.decode())
    with pytest.raises(ssl.SSLWantReadError):
        handshake.do_handshake()
    hello = outgoing.read()
    assert hello.count(stand_in) == 1
    return hello.replace(stand_in, server_name)


@pytest.mark.parametrize("server_name", [b"caf\xc3\xa9.example", b"a\xff\r\nb.example"])
async def test_a_server_name_that_is_not_ascii_is_logged_not_printed(
    cert_set: CertSet,
    server_name: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Python's ssl fails such a handshake before our SNI callback runs, and
    reports it as an unraisable error: a traceback on stderr, past logging,
    as often as any client likes.  It is a line in our log instead."""
    caplog.set_level(logging.INFO, logger="smtp_recv.tls")
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    async with running(cert_set) as server:
        for _ in range(2):
            stream = await trio.open_tcp_stream(*server.submission)
            async with stream:
                await stream.send_all(client_hello(server_name))
                with trio.fail_after(5):
                    answer = await stream.receive_some(1024)
            assert answer[:1] in (b"", b"\x15")  # an alert record, or the end
        async with await connect_tls(server.submission, "submission", cert_set, None) as client:
            assert (await client.command("NOOP")).code == 250
        # Other unraisable errors still reach the hook that was there before.
        sys.unraisablehook(types.SimpleNamespace(object=None, exc_value=ValueError("other")))  # type: ignore[arg-type]
    assert len(unraisable) == 1
    assert sys.unraisablehook == unraisable.append
    assert caplog.text.count("a server name that is not ASCII") == 2
    assert "\r" not in caplog.text


def test_the_unraisable_hooks_never_call_each_other_in_a_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library that puts its hook over ours while a server runs, calling
    ours from it, and a later server: each other error reaches each hook once."""
    seen: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append("original"))
    other_error = types.SimpleNamespace(object=None, exc_value=ValueError("other"))

    with tls.sni_errors_logged():  # a first serve
        ours = sys.unraisablehook

        def theirs(unraisable: object) -> None:
            seen.append("theirs")
            ours(unraisable)

        sys.unraisablehook = theirs
    assert sys.unraisablehook is theirs  # theirs stays: ours cannot be taken out
    with tls.sni_errors_logged():  # a second serve
        sys.unraisablehook(other_error)  # type: ignore[arg-type]
    assert seen == ["theirs", "original"]
    assert sys.unraisablehook is theirs


def test_overlapping_serves_leave_no_chain_of_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling restart: each new server starts before the old one stops."""

    def original(unraisable: object) -> None:
        pass

    monkeypatch.setattr(sys, "unraisablehook", original)
    with contextlib.ExitStack() as outer:
        running_now = contextlib.ExitStack()
        for _ in range(50):
            new = contextlib.ExitStack()
            new.enter_context(tls.sni_errors_logged())
            running_now.close()  # the old one stops
            running_now = new
            depth, hook = 0, sys.unraisablehook
            while hook is not original:
                depth, hook = depth + 1, hook._replaced  # type: ignore[attr-defined]
            assert depth == 1
        outer.push(running_now)
    assert sys.unraisablehook is original
