"""examples/embed_in_trio_app.py works, in process and as a program."""

from __future__ import annotations

import functools
import importlib.util
import re
import smtplib
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

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


# -- the README's loop around the sans-IO core -------------------------------------
README = Path(__file__).parents[2] / "README.md"


def readme_block(containing: str) -> str:
    """The README's Python block that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [block for block in blocks if containing in block]
    return block


def test_the_readme_loop_delivers_from_smtplib_and_answers_garbage_before_closing() -> None:
    namespace: dict[str, Any] = {}
    exec(readme_block("def serve_one"), namespace)  # noqa: S102 - our own README
    serve_one = namespace["serve_one"]
    delivered: list[tuple[str, tuple[str, ...], bytes]] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve_two() -> None:
            for _ in range(2):
                sock, _ = listener.accept()
                serve_one(sock, lambda *message: delivered.append(message))

        server = threading.Thread(target=serve_two, daemon=True)
        server.start()
        address = listener.getsockname()
        with smtplib.SMTP(*address, timeout=10) as smtp:
            smtp.sendmail("a@b.example", ["c@d.example"], b"Subject: hi\r\n\r\n.dot\r\nbye\r\n")
        with socket.create_connection(address, timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: mx.example.com\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        server.join(10)
        assert not server.is_alive()
    assert delivered == [("a@b.example", ("c@d.example",), b"Subject: hi\r\n\r\n.dot\r\nbye\r\n")]
    # The greeting, then the refusal the ProtocolError queued, then the close.
    assert answer.startswith(b"220 ")
    assert b"\r\n554 5.5.0 " in answer
