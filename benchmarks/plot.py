"""Plot the ratios from a ``compare.py --json`` file as a PNG bar chart.

    python benchmarks/plot.py results.json benchmarks/ratios.png

Two panels: smtp_recv's messages/s over aiosmtpd's and over node's
smtp-server (above 1: smtp_recv is faster), and server CPU per message in
the same way (below 1: smtp_recv uses less).  A dashed line marks parity.
Needs matplotlib (``nox -s bench`` installs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def ratios(summary: dict[str, Any], key: str, other: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for letter, per in summary.items():
        ours, theirs = per.get("smtp_recv"), per.get(other)
        if letter in ("H", "W") or not ours or not theirs:
            continue
        if ours.get(key) and theirs.get(key):
            found[letter] = ours[key] / theirs[key]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    summary = results["summary"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        ("messages_per_s", "messages/s, smtp_recv / other (higher is better)"),
        (
            "server_cpu_per_1000_messages",
            "server CPU per message, smtp_recv / other (lower is better)",
        ),
    )
    for axis, (key, title) in zip(axes, panels, strict=True):
        letters = sorted(
            {letter for other in ("aiosmtpd", "node") for letter in ratios(summary, key, other)}
        )
        width = 0.38
        for offset, other in ((-width / 2, "aiosmtpd"), (width / 2, "node")):
            values = ratios(summary, key, other)
            xs = [i + offset for i, letter in enumerate(letters) if letter in values]
            ys = [values[letter] for letter in letters if letter in values]
            if ys:
                axis.bar(xs, ys, width, label=f"vs {other}")
        axis.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        axis.set_xticks(range(len(letters)), letters)
        axis.set_yscale("log")
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=8)
    figure.suptitle(f"smtp_recv benchmark ratios (median of {results['runs']} runs)", fontsize=10)
    figure.tight_layout()
    figure.savefig(argv[1], dpi=110)
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
