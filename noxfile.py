"""Development sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``sanitize``, ``fuzz``,
``bench``."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, with branch coverage of the package and of the core."""
    session.install("-e", ".[test]")
    # The C passes of the DATA reader are optional for users (an install
    # without a C compiler runs the Python ones), not for CI: there the tests
    # that compare them with the Python ones must not skip.
    if os.environ.get("CI"):
        session.run("python", "-c", "import smtp_recv.protocol._speedups")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report", "--skip-covered")
    session.log("The sans-IO protocol core must keep at least 95% branch coverage:")
    session.run("coverage", "report", "--include=smtp_recv/protocol/*", "--fail-under=95")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    # Pinned: a newer ruff may format differently, and CI must not turn red by itself.
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (trio ships its own type hints)."""
    session.install("-e", ".[typecheck]", "mypy==2.4.1")
    # And code that uses the package as its users do: a loop over the core's
    # events that must be exhaustive, and the test servers' types.
    session.run(
        "mypy",
        "smtp_recv",
        "tests/protocol/test_exhaustive_events.py",
        "tests/server/test_typing_of_test_servers.py",
    )


@nox.session
def sanitize(session: nox.Session) -> None:
    """The C extension under AddressSanitizer and UBSan, checked against the Python passes.

    Installs the package (not editable, so the instrumented build in
    site-packages is the one imported) with the sanitizers compiled in, then
    runs the tests that compare the C passes with the Python ones and the
    DATA reader and smuggling tests on them.  Any out-of-bounds read or
    undefined behaviour aborts the run.
    """
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    session.install(
        "--no-cache-dir",
        "--force-reinstall",
        ".",
        env={"CFLAGS": f"-O1 -g {flags}", "LDFLAGS": flags},
    )
    session.install("pytest>=8", "pytest-trio>=0.8", "hypothesis>=6.100", "trustme>=1.1")
    libasan = session.run("gcc", "-print-file-name=libasan.so", silent=True, external=True)
    assert isinstance(libasan, str)
    env = {"LD_PRELOAD": libasan.strip(), "ASAN_OPTIONS": "detect_leaks=0"}
    # -P: not the checkout's package (which may hold an uninstrumented build).
    session.run(
        "python",
        "-P",
        "-c",
        "import smtp_recv.protocol._speedups as m; assert 'site-packages' in m.__file__",
        env=env,
    )
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "tests/protocol/test_speedups.py",
        "tests/protocol/test_data_reader.py",
        "tests/protocol/test_smuggling.py",
        *session.posargs,
        env=env,
    )


@nox.session
def fuzz(session: nox.Session) -> None:
    """The hypothesis properties with a large example budget."""
    session.install("-e", ".[test]")
    session.run(
        "pytest", "tests/protocol", "-k", "property", "--hypothesis-profile=fuzz", *session.posargs
    )


@nox.session
def fuzz_core(session: nox.Session) -> None:
    """Coverage-guided fuzzing of the core with atheris: ``nox -s fuzz_core -- MINUTES``."""
    session.install("-e", ".[fuzz]")
    minutes = session.posargs[0] if session.posargs else "5"
    session.run("sh", "fuzz/run.sh", minutes, env={"PYTHON": "python"}, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Core throughput, then the server comparison with aiosmtpd (and node when present).

    ``nox -s bench -- --quick`` passes options to compare.py.  The results go
    to ``bench-results.json`` and their ratios to ``bench-ratios.png``.
    """
    # pyOpenSSL: the load generator's TLS client (see fast_tls_client in loadgen.py).
    session.install(
        "-e", ".", "aiosmtpd==1.4.6", "trustme>=1.1", "matplotlib>=3.8", "pyOpenSSL>=25"
    )
    session.run("python", "benchmarks/core_throughput.py")
    results = "bench-results.json"
    session.run("python", "benchmarks/compare.py", "--json", results, *session.posargs)
    session.run("python", "benchmarks/plot.py", results, "bench-ratios.png")
