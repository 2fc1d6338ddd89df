"""Developer and CI entry points. ``nox`` with no arguments runs what CI runs."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the tree, mypy (strict) over the product code."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and property tests (no network, no external services)."""
    session.install("-e", ".[test]")
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    session.run("pytest", "tests/unit", "tests/property", *session.posargs, env=env)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: decrypt the specification's vector and transform it with CEL."""
    session.install("-e", ".[enclave]")
    session.run("python", "-m", "vault.enclave.demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; prints a table and writes bench-results/."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
