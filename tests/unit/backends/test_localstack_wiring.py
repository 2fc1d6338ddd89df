"""How the localstack backend wires the JDK and DynamoDB Local into LocalStack's filesystem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulator.aws.backends import interpreters
from emulator.aws.backends.dynamodb_local import LAUNCHER_CLASS, DynamoDBLocal
from emulator.aws.backends.interpreters import InterpreterNotFound, candidates, find_interpreter
from emulator.aws.backends.jdk import Jdk, JdkNotFound, find_jdk
from emulator.aws.backends.localstack_layout import LocalStackFilesystem, java_wrapper_script


def _echo_java(tmp_path: Path) -> Path:
    """A stand-in for the real ``java`` that prints its arguments, one per line."""
    fake = tmp_path / "real-java"
    fake.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%s\\n" "$arg"; done\n')
    fake.chmod(0o755)
    return fake


def _run_wrapper(tmp_path: Path, *arguments: str) -> list[str]:
    wrapper = tmp_path / "java"
    wrapper.write_text(java_wrapper_script(_echo_java(tmp_path), Path("/cache/launcher dir/launcher.jar")))
    wrapper.chmod(0o755)
    result = subprocess.run([str(wrapper), *arguments], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_wrapper_starts_dynamodb_local_through_the_launcher(tmp_path: Path) -> None:
    arguments = _run_wrapper(
        tmp_path,
        "-Xmx256m",
        "-javaagent:/libs/ddb-local-loader-0.1.jar",
        "-Djava.library.path=/libs/DynamoDBLocal_lib",
        "-jar",
        "/libs/DynamoDBLocal.jar",
        "-port",
        "4567",
        "-inMemory",
    )
    assert arguments == [
        "-Xmx256m",
        "-javaagent:/libs/ddb-local-loader-0.1.jar",
        "-Djava.library.path=/libs/DynamoDBLocal_lib",
        "-cp",
        "/libs/DynamoDBLocal.jar:/cache/launcher dir/launcher.jar",
        LAUNCHER_CLASS,
        "-port",
        "4567",
        "-inMemory",
    ]


def test_wrapper_passes_other_command_lines_through(tmp_path: Path) -> None:
    arguments = ["-jar", "/other/tool.jar", "an argument with spaces", "", "-jar"]
    assert _run_wrapper(tmp_path, *arguments) == arguments


def _fake_jdk(tmp_path: Path) -> Jdk:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "lib").mkdir()
    (home / "release").write_text('JAVA_VERSION="17.0.15"\n')
    for tool in ("java", "javac"):
        (home / "bin" / tool).write_text("#!/bin/sh\n")
        (home / "bin" / tool).chmod(0o755)
    return Jdk(home=home, major=17)


def test_filesystem_links_point_into_the_cache(tmp_path: Path) -> None:
    jdk = _fake_jdk(tmp_path)
    cache = tmp_path / "cache"
    (cache / "DynamoDBLocal_lib").mkdir(parents=True)
    (cache / "DynamoDBLocal.jar").write_bytes(b"jar")
    (cache / "launcher.jar").write_bytes(b"launcher")
    (cache / "static-libs").mkdir()
    dynamodb = DynamoDBLocal(
        jar=cache / "DynamoDBLocal.jar", launcher_jar=cache / "launcher.jar", install_seconds=0
    )
    filesystem = LocalStackFilesystem(tmp_path / "state" / "localstack")

    for _ in range(2):  # preparing again (a restart) replaces the links
        filesystem.prepare(jdk, dynamodb, cache / "static-libs")

    libs = filesystem.root / "var" / "lib" / "localstack" / "lib"
    ddb = libs / "dynamodb-local" / "2"
    assert (ddb / "DynamoDBLocal.jar").resolve() == dynamodb.jar
    assert (ddb / "DynamoDBLocal_lib").resolve() == dynamodb.library_dir
    assert (ddb / "ddb-local-loader-0.1.jar").resolve() == dynamodb.launcher_jar
    java_home = libs / "java" / "21"
    assert (java_home / "lib").resolve() == jdk.home / "lib"
    assert str(jdk.java) in (java_home / "bin" / "java").read_text()
    assert (filesystem.root / "usr" / "lib" / "localstack").resolve() == cache / "static-libs"


def test_find_jdk_accepts_a_jdk_and_refuses_a_jre(tmp_path: Path) -> None:
    jdk = _fake_jdk(tmp_path)
    assert find_jdk(jdk.home) == jdk
    (jdk.home / "bin" / "javac").unlink()
    with pytest.raises(JdkNotFound, match="without javac"):
        find_jdk(jdk.home)


def test_find_interpreter_checks_the_version() -> None:
    current = (sys.version_info.major, sys.version_info.minor)
    path, version = find_interpreter(current, Path(sys.executable))
    assert path == Path(sys.executable)
    assert version[:2] == current
    with pytest.raises(InterpreterNotFound, match=r"is not a working Python >= 3\.99: it is Python 3\."):
        find_interpreter((sys.version_info.major, 99), Path(sys.executable))


def test_interpreters_installed_by_uv_are_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uv_python = tmp_path / "cpython-3.13.1-linux-x86_64-gnu" / "bin" / "python3"
    uv_python.parent.mkdir(parents=True)
    uv_python.write_text("", encoding="utf-8")
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path))
    assert uv_python in candidates((3, 13))


def test_none_found_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interpreters, "candidates", lambda minimum: [])
    with pytest.raises(InterpreterNotFound) as caught:
        find_interpreter((3, 13))
    message = str(caught.value)
    for hint in ("uv python install 3.13", "pyenv install 3.13", "deadsnakes", "--localstack-python"):
        assert hint in message
