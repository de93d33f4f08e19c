"""Developer tasks: ``nox -s tests``, ``nox -s docs``, ``nox -s lint``, ``nox -s bench``.

Virtual environments are reused between runs; arguments after ``--`` pass through to
pytest (``tests``, ``browser``), sphinx-build (``docs``) or the benchmark script (``bench``).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

nox.needs_version = ">=2025.2.9"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests", "docs"]

# pyproject.toml asks for any torch >= 2.5 (nox -s tests-oldest-torch checks that floor; 2.4 fails
# the suite). The other sessions pin one release so that every run tests the same thing; 2.13.0 also has a CPU-only wheel, which keeps CI set-up short. Override with e.g.
# ATTNLENS_TORCH="torch==2.14.1" nox -s tests.
TORCH = os.environ.get("ATTNLENS_TORCH", "torch==2.13.0")


def _oldest_torch() -> str:
    """``torch==X`` for the lower bound ``torch>=X`` that pyproject.toml declares."""
    for requirement in PYPROJECT["project"]["dependencies"]:
        name, _, version = requirement.replace(" ", "").partition(">=")
        if name == "torch":
            return f"torch=={version}"
    msg = "pyproject.toml: no 'torch>=X' requirement"
    raise RuntimeError(msg)


OLDEST_TORCH = _oldest_torch()


def _install(session: nox.Session, *groups: str, project: bool = True, torch: str = TORCH) -> None:
    session.install("--upgrade", "pip")
    if project:
        session.install(torch)
        session.install("-e", ".")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (no GPU needed; GPU tests skip without one)."""
    _install(session, "test")
    session.run("pytest", "--ignore=tests/browser", *session.posargs)


@nox.session(name="tests-oldest-torch")
def tests_oldest_torch(session: nox.Session) -> None:
    """Run the test suite against the oldest torch that pyproject.toml accepts (``torch>=X``).

    The site's assertions run with the pinned torch of ``nox -s docs``; this session checks that
    the library's promises hold down to the declared floor. On Linux, PyPI's wheels of old torch
    releases are CUDA builds (about 2.7 GB with their nvidia-* dependencies); they run on the CPU.
    """
    _install(session, "test", torch=OLDEST_TORCH)
    session.run("python", "-c", "import torch; print('torch', torch.__version__)")
    session.run("pytest", "--ignore=tests/browser", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the English and Japanese site with -W and print where to open it."""
    _install(session, "docs")
    session.run("python", "docs/build.py", "html", *session.posargs)


@nox.session
def i18n(session: nox.Session) -> None:
    """Extract messages and update the Japanese catalogs (docs/locales/ja/LC_MESSAGES)."""
    _install(session, "docs")
    session.run("python", "docs/build.py", "gettext", *session.posargs)


@nox.session
def browser(session: nox.Session) -> None:
    """Open the built site in headless Chromium (needs ``nox -s docs`` first and /usr/bin/chromium)."""
    _install(session, "browser", project=False)
    # --confcutdir: tests/conftest.py (torch, hypothesis) is not needed and not installed here
    session.run("pytest", "--confcutdir=tests/browser", "tests/browser", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) on everything, mypy on src/."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Print speed and memory ratios measured side by side in one run (CPU, and CUDA if present)."""
    _install(session)
    session.run("python", "benchmarks/run.py", *session.posargs)
