"""Fixtures of the adversarial suite (the harness itself is in ``harness.py``)."""

from __future__ import annotations

import pytest

from .harness import Client


@pytest.fixture(autouse=True)
def _patience_on_virtual_time(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On ``autojump_clock`` a reply may take virtual hours (timeouts under test)."""
    if "autojump_clock" in request.fixturenames:
        monkeypatch.setattr(Client, "patience", 3600.0)
