"""Pytest fixtures for a real smtp_recv server; opt in from a conftest.py::

    pytest_plugins = ["smtp_recv.pytest_plugin"]

``smtp_server`` is for trio tests (pytest-trio); ``smtp_server_thread`` runs
the server in a thread for any other test suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .testing import MemoryMailer, TestServer, ThreadedTestServer, serve_for_tests


@pytest.fixture
async def smtp_server() -> AsyncIterator[TestServer[MemoryMailer]]:
    """A running server (trio tests): ``smtp_server.mx``, ``.mailer``, ..."""
    async with serve_for_tests() as server:
        yield server


@pytest.fixture
def smtp_server_thread() -> Iterator[TestServer[MemoryMailer]]:
    """A running server in a background thread, for tests that are not trio."""
    with ThreadedTestServer() as server:
        yield server
