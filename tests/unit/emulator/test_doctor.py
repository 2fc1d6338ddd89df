"""``vault-emulator doctor``: real checks where this machine gives a fixed answer, test doubles elsewhere."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from emulator.aws.backends.interpreters import InterpreterNotFound
from emulator.aws.backends.jdk import JdkNotFound
from emulator.nitro.sandbox import NamespaceSandbox
from emulator.tools.cli import main
from emulator.tools.doctor import (
    MIN_FREE_STATE_BYTES,
    CheckResult,
    DoctorConfig,
    Probes,
    RunResult,
    check_auth_token,
    check_base_image,
    check_c_compiler,
    check_disk,
    check_docker,
    check_docker_for_localstack,
    check_java,
    check_localstack_python,
    check_namespaces,
    check_port,
    exit_code,
    format_result,
    report,
    run_checks,
)

# -- test doubles for the probes --------------------------------------------------------------


def stub_unshare_refused(argv: Sequence[str], timeout: float) -> RunResult:
    return RunResult(1, "unshare: unshare failed: Operation not permitted")


def stub_unshare_works(argv: Sequence[str], timeout: float) -> RunResult:
    return RunResult(0, "")


def stub_euid_user() -> int:
    return 1000


def stub_euid_root() -> int:
    return 0


def stub_which_everything(command: str) -> str | None:
    return f"/usr/bin/{command}"


def stub_which_nothing(command: str) -> str | None:
    return None


def stub_no_engine(cache_dir: Path) -> str | None:
    return None


def stub_engine(cache_dir: Path) -> str | None:
    return "unix:///run/stub-docker.sock"


def stub_image_present(docker_host: str, name: str) -> bool:
    return True


def stub_image_absent(docker_host: str, name: str) -> bool:
    return False


def stub_userns_disabled(path: Path) -> str | None:
    return "0"


def stub_no_python(minimum: tuple[int, int], explicit: Path | None) -> tuple[Path, tuple[int, int, int]]:
    raise InterpreterNotFound("no Python >= 3.13 found on PATH or under pyenv; install one")


def stub_no_jdk() -> tuple[Path, int]:
    raise JdkNotFound("no JDK >= 17 found (JAVA_HOME unset, no java on PATH)")


def stub_python(minimum: tuple[int, int], explicit: Path | None) -> tuple[Path, tuple[int, int, int]]:
    return Path("/opt/stub/python3.13"), (3, 13, 0)


def stub_jdk() -> tuple[Path, int]:
    return Path("/opt/stub-jdk/bin/java"), 17


def stub_little_disk(path: Path) -> int:
    return 10 << 20


def stub_port_taken(port: int) -> bool:
    return False


#: A machine that has everything the default configuration needs, but no Docker engine.
HEALTHY = Probes(
    euid=stub_euid_root,
    which=stub_which_everything,
    run=stub_unshare_works,
    docker_engine=stub_no_engine,
    image_present=stub_image_absent,
    free_bytes=lambda path: 100 << 30,
    port_free=lambda port: True,
    engine_answers=lambda host: False,
    module_present=lambda name: True,
    find_python=stub_python,
    find_java=stub_jdk,
    # Any executable stands for the C compiler: the check only looks for one.
    environ={"CC": sys.executable},
)


# -- real checks on this machine ------------------------------------------------------------------


def test_the_namespace_check_agrees_with_running_unshare_itself() -> None:
    result = check_namespaces(DoctorConfig(), Probes())
    unshare = shutil.which("unshare")
    if unshare is None:
        assert not result.ok and "util-linux" in result.fix
        return
    ran = subprocess.run(
        [unshare, *NamespaceSandbox.NAMESPACES, "--", "true"], capture_output=True, timeout=10
    )
    assert result.ok == (ran.returncode == 0), result


def test_a_port_in_use_is_missing_and_a_free_one_is_ok() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        busy = check_port(DoctorConfig(port=taken), Probes())
    assert not busy.ok
    assert f"port {taken} on 127.0.0.1 is in use" in busy.detail
    assert "--port 0" in busy.fix
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as finder:
        finder.bind(("127.0.0.1", 0))
        free_port = finder.getsockname()[1]
    assert check_port(DoctorConfig(port=free_port), Probes()).ok
    assert check_port(DoctorConfig(port=0), Probes()).ok


def test_disk_is_measured_on_the_filesystem_a_missing_state_dir_will_live_on(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet"
    result = check_disk("state dir", missing, 1, ("all",), Probes())
    assert result.ok and str(missing) in result.detail
    assert not check_disk("state dir", missing, 1 << 60, ("all",), Probes()).ok


def test_an_explicit_interpreter_that_does_not_exist_is_missing(tmp_path: Path) -> None:
    config = DoctorConfig(localstack_python=tmp_path / "python3.13")
    result = check_localstack_python(config, Probes())
    assert not result.ok
    assert "is not a working Python >= 3.13" in result.detail
    assert "--localstack-python" in result.fix


def test_the_running_interpreter_is_found_for_its_own_version() -> None:
    config = DoctorConfig(localstack_python=Path(sys.executable))
    probes = replace(
        Probes(), find_python=lambda minimum, explicit: (explicit or Path(), sys.version_info[:3])
    )
    assert check_localstack_python(config, probes).ok


def test_every_check_runs_and_the_cli_exit_code_is_the_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = DoctorConfig(state_dir=tmp_path, port=0)
    results = run_checks(config)
    names = [result.name for result in results]
    assert len(names) == len(set(names)) >= 10
    code = main(["doctor", "--state-dir", str(tmp_path), "--port", "0"])
    out = capsys.readouterr().out.splitlines()
    assert code == exit_code(results)
    assert out[0] == "checking for the moto backend and the namespace enclave runtime"
    check_lines = out[1 : 1 + len(results)]
    for result, line in zip(results, check_lines, strict=True):
        assert line.split()[0] in ("OK", "MISSING", "MISSING*")
        assert result.name in line
    assert out[-1] == ("ready" if code == 0 else out[-1])
    assert out[-1].startswith("ready" if code == 0 else "not ready")


# -- negative cases through test doubles ------------------------------------------------------


def test_an_unprivileged_user_is_told_to_run_as_root_or_use_containers() -> None:
    probes = replace(HEALTHY, euid=stub_euid_user, run=stub_unshare_refused, read_text=stub_userns_disabled)
    result = check_namespaces(DoctorConfig(), probes)
    assert not result.ok
    assert result.detail == "uid 1000: unshare failed: unshare: unshare failed: Operation not permitted"
    assert "run as root" in result.fix and "--enclave-runtime container" in result.fix
    assert "unprivileged user namespaces: disabled" in result.fix


def test_root_without_the_capability_is_pointed_to_containers() -> None:
    result = check_namespaces(DoctorConfig(), replace(HEALTHY, run=stub_unshare_refused))
    assert not result.ok and "CAP_SYS_ADMIN" in result.fix


def test_a_missing_unshare_names_its_package() -> None:
    result = check_namespaces(DoctorConfig(), replace(HEALTHY, which=stub_which_nothing))
    assert not result.ok and "util-linux" in result.fix


@pytest.mark.parametrize(
    ("engine", "which", "euid", "ok", "fragment"),
    [
        (
            stub_engine,
            stub_which_nothing,
            stub_euid_user,
            True,
            "an engine answers at unix:///run/stub-docker.sock",
        ),
        (stub_no_engine, stub_which_everything, stub_euid_root, True, "`up` starts /usr/bin/dockerd"),
        (stub_no_engine, stub_which_everything, stub_euid_user, False, "needs root"),
        (stub_no_engine, stub_which_nothing, stub_euid_root, False, "no dockerd installed"),
    ],
)
def test_docker_engine_cases(
    engine: Callable[[Path], str | None],
    which: Callable[[str], str | None],
    euid: Callable[[], int],
    ok: bool,
    fragment: str,
) -> None:
    probes = replace(HEALTHY, docker_engine=engine, which=which, euid=euid)
    result = check_docker(DoctorConfig(), probes)
    assert result.ok == ok and fragment in result.detail, result
    if not ok:
        assert "DOCKER_HOST" in result.fix


def test_the_localstack_container_needs_a_running_engine_at_docker_host() -> None:
    probes = replace(HEALTHY, environ={"DOCKER_HOST": "unix:///run/stub.sock"})
    result = check_docker_for_localstack(DoctorConfig(), probes)
    assert not result.ok and result.detail == "no engine answers at unix:///run/stub.sock"
    answering = replace(probes, engine_answers=lambda host: host == "unix:///run/stub.sock")
    assert check_docker_for_localstack(DoctorConfig(), answering).ok


def test_the_base_image_is_ok_when_built_or_buildable() -> None:
    built = replace(HEALTHY, docker_engine=stub_engine, image_present=stub_image_present)
    assert check_base_image(DoctorConfig(), built).ok
    assert check_base_image(DoctorConfig(), HEALTHY).ok  # root with debootstrap: the first up builds it
    unbuildable = replace(HEALTHY, which=stub_which_nothing)
    result = check_base_image(DoctorConfig(), unbuildable)
    assert not result.ok and "ensure base-image" in result.fix


def test_missing_localstack_prerequisites_say_what_to_install() -> None:
    python = check_localstack_python(DoctorConfig(), replace(HEALTHY, find_python=stub_no_python))
    assert not python.ok and "pyenv install 3.13" in python.fix
    java = check_java(DoctorConfig(), replace(HEALTHY, find_java=stub_no_jdk))
    assert not java.ok and "openjdk-17-jdk-headless" in java.fix
    token = check_auth_token(DoctorConfig(), HEALTHY)
    assert not token.ok and "LOCALSTACK_AUTH_TOKEN" in token.fix
    assert check_auth_token(DoctorConfig(), replace(HEALTHY, environ={"LOCALSTACK_AUTH_TOKEN": "t"})).ok


def test_only_what_the_configuration_needs_decides_the_exit_code() -> None:
    # No Docker engine and no LocalStack token: the default (moto, namespace) does not need them.
    default = run_checks(DoctorConfig(), replace(HEALTHY, euid=stub_euid_user))
    assert exit_code(default) == 0
    docker = next(result for result in default if result.name == "docker engine")
    assert not docker.ok and not docker.needed
    assert format_result(docker).startswith("MISSING* ")
    container = run_checks(
        DoctorConfig(enclave_runtime="container"), replace(HEALTHY, which=stub_which_nothing)
    )
    assert exit_code(container) == 1
    assert next(result for result in container if result.name == "docker engine").needed
    in_container = run_checks(DoctorConfig(backend="localstack-container"), HEALTHY)
    assert exit_code(in_container) == 1
    assert {r.name for r in in_container if r.needed and not r.ok} == {
        "docker for localstack",
        "localstack auth token",
    }


def test_device_mode_needs_a_c_compiler_and_the_unix_socket_mode_does_not(tmp_path: Path) -> None:
    # An empty PATH and no $CC: no compiler anywhere.
    bare = replace(HEALTHY, environ={"PATH": str(tmp_path)})
    default = run_checks(DoctorConfig(), bare)
    compiler = next(result for result in default if result.name == "c compiler for devices")
    assert not compiler.ok and compiler.needed and exit_code(default) == 1
    assert "preload.no_compiler" in compiler.detail and "--enclave-uds" in compiler.fix
    for config in (DoctorConfig(enclave_devices=False), DoctorConfig(enclave_runtime="container")):
        results = run_checks(config, bare)
        assert not next(r for r in results if r.name == "c compiler for devices").needed
    assert exit_code(run_checks(DoctorConfig(enclave_devices=False), bare)) == 0
    found = check_c_compiler(DoctorConfig(), HEALTHY)
    assert found.ok and sys.executable in found.detail


def test_the_default_configuration_fails_on_a_busy_port_or_a_full_disk() -> None:
    assert exit_code(run_checks(DoctorConfig(), replace(HEALTHY, port_free=stub_port_taken))) == 1
    full = run_checks(DoctorConfig(), replace(HEALTHY, free_bytes=stub_little_disk))
    assert exit_code(full) == 1
    state = next(result for result in full if result.name == "free disk (state dir)")
    assert not state.ok and f"{MIN_FREE_STATE_BYTES / (1 << 30):.1f} GiB" in state.detail


def test_a_report_has_one_line_per_check_and_a_verdict() -> None:
    config = DoctorConfig(enclave_runtime="container")
    results = [
        CheckResult("a", ("all",), True, "found"),
        CheckResult("b", ("container",), False, "absent", "install b", needed=True),
        CheckResult("c", ("localstack",), False, "absent", "install c", needed=False),
    ]
    lines = report(config, results).splitlines()
    assert lines[1].split()[:3] == ["OK", "a", "found"]
    assert lines[2].startswith("MISSING ") and lines[2].endswith("absent; to fix: install b")
    assert lines[3].startswith("MISSING* ") and lines[3].endswith("to fix: install c")
    assert lines[-1].startswith("not ready")
