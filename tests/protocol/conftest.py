"""Fixtures shared by the protocol core's tests."""

from __future__ import annotations

import pytest

from smtp_recv.protocol import _data


@pytest.fixture(params=["c", "python"])
def data_passes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with the DATA reader's C passes and once with the Python ones."""
    if request.param == "python":
        monkeypatch.setattr(_data, "_take", _data.py_take)
        monkeypatch.setattr(_data, "_find_end", _data.py_find_end)
    elif _data._take is _data.py_take:
        pytest.skip("the C extension is not built")
    return str(request.param)
