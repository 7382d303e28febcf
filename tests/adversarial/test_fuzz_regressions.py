"""Findings of the coverage-guided fuzzer (``fuzz/``), as regression tests.

Each finding is fed to the sans-IO core with the fuzzer's own driver
(``fuzz/fuzz_core.py``, importable without atheris), minimised by hand to
the bytes that matter.  The raw fuzzer inputs are in ``fuzz/findings/``;
when atheris is installed they and the seed corpus are replayed too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from smtp_recv.protocol import SessionConfig

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"


def _fuzz_core() -> ModuleType:
    name = "fuzz_core"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUZZ / "fuzz_core.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fuzz_core = _fuzz_core()
STRICT = SessionConfig(hostname="mx.our.example")
SMALL = SessionConfig(hostname="mx.our.example", max_message_size=64)
ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@victim.example>\r\nRCPT TO:<b@our.example>\r\nDATA\r\n"

# F1: which refusal a DATA message got (550 5.5.2 bare CR/LF, 550 5.6.0 NUL,
# 552 5.3.4 too big) depended on where the reads split it: the reader kept
# only the first reason it saw, and within one piece checked bare line
# endings before NUL (and stopped counting the size once refused).  Fixed in
# DataReader._check_and_unstuff, which now looks for every fault in every
# piece; these cases keep it fixed.
F1_CASES = {
    # NUL in an earlier read, bare LF in a later one.
    "nul-then-bare-lf": (STRICT, ENVELOPE + b"a\x00\r\nb\nc\r\n.\r\n", len(ENVELOPE) + 4),
    # Oversized in an earlier read, bare LF in a later one.
    "oversized-then-bare-lf": (
        SMALL,
        ENVELOPE + b"x" * 100 + b"\r\nb\nc\r\n.\r\n",
        len(ENVELOPE) + 102,
    ),
    # Oversized in an earlier read, NUL in a later one.
    "oversized-then-nul": (
        SMALL,
        ENVELOPE + b"x" * 100 + b"\r\n\x00\r\n.\r\n",
        len(ENVELOPE) + 102,
    ),
}


@pytest.mark.parametrize(("config", "stream", "split"), F1_CASES.values(), ids=F1_CASES.keys())
def test_f1_data_refusal_does_not_depend_on_reads(
    config: SessionConfig, stream: bytes, split: int
) -> None:
    case = fuzz_core.Case(config=config, decisions=0xFFFF, splits=(split,), eof=True, stream=stream)
    whole = fuzz_core.feed(case, [stream])
    pieces = fuzz_core.feed(case, [stream[:split], stream[split:]])
    bytewise = fuzz_core.feed(case, [stream[i : i + 1] for i in range(len(stream))])
    assert whole.output == pieces.output == bytewise.output


@pytest.mark.parametrize(("config", "stream", "split"), F1_CASES.values(), ids=F1_CASES.keys())
def test_f1_message_refused_however_split(config: SessionConfig, stream: bytes, split: int) -> None:
    """However it is split, the message is refused and nothing is delivered."""
    case = fuzz_core.Case(config=config, decisions=0xFFFF, splits=(split,), eof=True, stream=stream)
    for pieces in ([stream], [stream[:split], stream[split:]]):
        outcome = fuzz_core.feed(case, pieces)
        assert not any(type(event).__name__ == "MessageComplete" for event in outcome.events)
        assert outcome.output.count(b"\r\n5") >= 1


def _inputs(directory: Path, pattern: str = "*") -> list[Path]:
    return sorted(path for path in directory.glob(pattern) if path.is_file())


@pytest.mark.parametrize("path", _inputs(FUZZ / "corpus", "seed_*"), ids=lambda path: path.name)
def test_seed_corpus_replays(path: Path) -> None:
    """Every seed passes every invariant of the fuzz target."""
    pytest.importorskip("atheris")
    fuzz_core.check(fuzz_core.decode(path.read_bytes()))


def test_whole_corpus_replays() -> None:
    """The seeds and the merged corpus the fuzzer grew (half a second)."""
    pytest.importorskip("atheris")
    paths = _inputs(FUZZ / "corpus")
    assert len(paths) > 68
    for path in paths:
        fuzz_core.check(fuzz_core.decode(path.read_bytes()))


@pytest.mark.parametrize("path", _inputs(FUZZ / "findings"), ids=lambda path: path.name)
def test_findings_replay(path: Path) -> None:
    """The fuzzer's findings, in its own input format, pass every invariant."""
    pytest.importorskip("atheris")
    assert not fuzz_core.MASK_KNOWN
    fuzz_core.check(fuzz_core.decode(path.read_bytes()))
