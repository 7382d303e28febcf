"""The core is sans-IO: importing it loads no trio, socket, ssl or asyncio.

Checked in a fresh interpreter, since this test run has them all loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import smtp_recv

FORBIDDEN = ("trio", "socket", "_socket", "ssl", "_ssl", "asyncio", "selectors")
PACKAGE_DIR = str(Path(smtp_recv.__file__).parent)

_REPORT = f"""
import sys
loaded = sorted(name for name in {FORBIDDEN!r} if name in sys.modules)
print(",".join(loaded))
"""


def _run(code: str, *flags: str) -> str:
    # Without the coverage start-up hook, which would import modules of its own.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COVERAGE_", "PYTHON"))
    }
    result = subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def test_the_protocol_core_alone_imports_no_io_modules() -> None:
    """The core's own modules, with the stdlib they use (``ipaddress``,
    ``base64``, ``re``, ...), and not the parent package's ``__init__``."""
    code = f"""
import sys, types
parent = types.ModuleType("smtp_recv")
parent.__path__ = [{PACKAGE_DIR!r}]
sys.modules["smtp_recv"] = parent
import smtp_recv.protocol
from smtp_recv.protocol import ServerConnection, SessionConfig
conn = ServerConnection(SessionConfig(hostname="mx.example"))
conn.receive_data(b"EHLO x\\r\\nMAIL FROM:<a@[IPv6:::1]>\\r\\n")
conn.next_event(); conn.next_event(); conn.accept()
{_REPORT}
"""
    # -S: no site-packages start-up hooks (.pth files) either.
    assert _run(code, "-S") == ""


def test_importing_smtp_recv_protocol_loads_no_io_modules() -> None:
    """The package's ``__init__`` imports its public names lazily (PEP 562)."""
    assert _run("import smtp_recv.protocol" + _REPORT) == ""


def test_public_names_still_import_from_the_package() -> None:
    assert _run("import smtp_recv; smtp_recv.serve; print(smtp_recv.ServerConfig.__name__)") == (
        "ServerConfig"
    )
