"""examples/embed_in_trio_app.py works, in process and as a program."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import trio

from .conftest import CertSet, Client

EXAMPLE = Path(__file__).parents[2] / "examples" / "embed_in_trio_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("embed_in_trio_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


async def test_example_app_delivers_to_alias_targets_and_authenticates(
    cert_set: CertSet,
) -> None:
    example = load_example()
    certs = example.CertByName(cert_set.default, **{"mail.example.com": cert_set.other})
    async with trio.open_nursery() as nursery:
        app = await nursery.start(
            functools.partial(
                example.run_app,
                certs,
                config=example.local_config(0, 0),
                users=example.USERS,
                aliases=example.ALIASES,
                domains=example.DOMAINS,
                quiet=True,
            )
        )
        async with await Client.connect(app.listening.mx[0]) as client:
            await client.greeting_and_ehlo()
            await client.starttls(cert_set.client_context(), "mail.example.com")
            await client.command("EHLO client.example.org")
            assert (await client.command("MAIL FROM:<a@example.org>")).code == 250
            assert (await client.command("RCPT TO:<nobody@elsewhere.org>")).code == 550
            assert (await client.command("RSET")).code == 250
            answer = await client.send_message("a@example.org", ["Sales@example.com"])
            assert answer.code == 250
        async with await Client.connect(
            app.listening.submission[0],
            tls=cert_set.client_context(),
            server_hostname="mx.example.com",
        ) as client:
            await client.greeting_and_ehlo()
            assert (await client.login("alice@example.com", "wrong")).code == 535
            assert (
                await client.login("alice@example.com", "correct horse battery staple")
            ).code == 235
            answer = await client.send_message("alice@example.com", ["friend@elsewhere.org"])
            assert answer.code == 250
        nursery.cancel_scope.cancel()
    inbound, submitted = app.mailer.messages
    # Kept whole: the content outlives the Mailer call.
    assert inbound.data.endswith(b"\r\n")
    assert submitted.content.in_memory
    assert inbound.recipients[0].targets == ("alice@example.com", "bob@example.com")
    assert inbound.tls.server_name == "mail.example.com"
    assert submitted.user_id == "alice@example.com"


def test_example_selftest_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--selftest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "selftest delivered" in result.stdout
    assert "['alice@example.com', 'bob@example.com']" in result.stdout
