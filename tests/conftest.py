"""Hypothesis profiles for the whole suite.

``default`` is hypothesis's own default without a deadline (the protocol
core is fast, but a loaded CI runner is not); ``ci`` is loaded when ``CI`` is
set; ``fuzz`` is what ``nox -s fuzz`` selects with ``--hypothesis-profile=fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, max_examples=100, derandomize=False, print_blob=True)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")
