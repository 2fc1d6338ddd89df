"""Each tier's artifact, built into an empty directory, runs its entry point with nothing else.

The processes start as the emulator starts them: an isolated interpreter (``-I -S``)
whose ``sys.path`` is the artifact's file set, its dependency set and the standard
library. Nothing on it points into the repository, so a module the tier definition
forgot fails here, naming the tier and the module, as it would in AWS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.aws.gateway.event import EventContext, HttpRequest, build_event, interpret_result
from emulator.aws.gateway.runtime import LambdaRuntime, RuntimeInitError
from emulator.aws.gateway.server import GatewayConfig, LambdaContext
from emulator.host import bootstrap
from emulator.host.artifacts import (
    TierArtifact,
    assemble,
    missing_module,
    resolve,
    tier_requirements,
)
from tests.support.authorization import LocalSigner, authorize
from tests.support.enclave_keys import LocalKeyDecryptor
from vault.common.framing import read_frame, write_frame
from vault.common.messages import EnclaveErrorCode, EnclaveReply
from vault.common.transport import PARENT_CID, TransportConfig, UnixSocketTransport
from vault.infra.artifacts import API, ENCLAVE, PARENT, TIERS, Tier, source_files

REPO_ROOT = Path(__file__).resolve().parents[3]
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
START_TIMEOUT = 60.0
ENCLAVE_CID = 16
ENCLAVE_PORT = 5050


def build(tier: Tier, tmp_path: Path, cache_root: Path) -> TierArtifact:
    destination = tmp_path / f"{tier.name}-artifact"
    assert not destination.exists()
    return assemble(tier, destination, cache_root=cache_root)


def without(tier: Tier, source: str) -> Tier:
    assert source in tier.sources
    return dataclasses.replace(tier, sources=tuple(s for s in tier.sources if s != source))


def inside_repository(path: str) -> bool:
    return Path(path).resolve().is_relative_to(REPO_ROOT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def start(
    artifact: TierArtifact, processes: list[subprocess.Popen[bytes]], *arguments: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    command = artifact.command(*arguments)
    assert not any(inside_repository(part) for part in command[1:] if part.startswith("/"))
    process = subprocess.Popen(
        command, env=env, cwd=artifact.directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    processes.append(process)
    return process


def output_of(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.terminate()
    out, _ = process.communicate(timeout=10)
    return out.decode(errors="replace")


# -- what an artifact holds and imports ------------------------------------------------


@pytest.mark.parametrize("tier", TIERS, ids=lambda t: t.name)
def test_an_artifact_holds_its_file_set_and_imports_nothing_from_the_repository(
    tier: Tier, tmp_path: Path, cache_root: Path
) -> None:
    artifact = build(tier, tmp_path, cache_root)
    shipped = {p.relative_to(artifact.task).as_posix() for p in artifact.task.rglob("*") if p.is_file()}
    assert shipped == {relative for relative, _ in source_files(REPO_ROOT, tier.sources)}
    probe = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = {[str(p) for p in artifact.sys_path]!r}\n"
        f"importlib.import_module({tier.entry_point.module!r})\n"
        "files = [getattr(m, '__file__', None) for m in list(sys.modules.values())]\n"
        "print(json.dumps({'path': sys.path, 'files': [f for f in files if f]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        env=BASE_ENV,
        cwd=tmp_path,
        capture_output=True,
        timeout=START_TIMEOUT,
        check=True,
    )
    seen = json.loads(result.stdout)
    assert [entry for entry in seen["path"] if inside_repository(entry)] == []
    assert [file for file in seen["files"] if inside_repository(file)] == []
    vault_files = [f for f in seen["files"] if "/vault/" in f and Path(f).is_relative_to(artifact.task)]
    assert vault_files, "the entry point ran no code of the artifact"


def test_each_dependency_set_is_its_extra_and_what_that_requires() -> None:
    names = {
        tier.name: {
            dist.metadata["Name"].lower().replace("_", "-") for dist in resolve(tier, tier_requirements(tier))
        }
        for tier in TIERS
    }
    # Requirements of requirements, extras included (Powertools' tracer extra needs the X-Ray SDK).
    assert {
        "boto3",
        "botocore",
        "aws-lambda-powertools",
        "aws-xray-sdk",
        "pydantic",
        "pydantic-core",
    } <= names["api"]
    assert {"starlette", "uvicorn", "httpx", "httpcore", "anyio", "cryptography"} <= names["parent"]
    assert {"cel-python", "cbor2", "boto3", "cryptography"} <= names["enclave"]
    # Nothing of another tier's extra, nor of the emulator's or the tests'.
    assert not {"starlette", "uvicorn", "moto", "pytest"} & names["api"]
    assert not {"boto3", "aws-lambda-powertools", "moto", "pytest"} & names["parent"]
    assert "nitro-vault" not in names["api"] | names["parent"] | names["enclave"]


def test_a_dependency_set_is_copied_once(tmp_path: Path, cache_root: Path) -> None:
    first = build(PARENT, tmp_path / "one", cache_root)
    began = time.perf_counter()
    second = build(PARENT, tmp_path / "two", cache_root)
    assert second.dependencies == first.dependencies
    assert time.perf_counter() - began < 5


# -- each entry point answers ----------------------------------------------------------


def proxy_event(method: str, path: str, body: bytes = b"", content_type: str | None = None) -> dict:
    headers = [("Host", "localhost")]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    request = HttpRequest(
        method=method, raw_path=f"/v1{path}", raw_query="", headers=headers, body=body, source_ip="127.0.0.1"
    )
    context = EventContext(
        stage="v1",
        account_id="123456789012",
        api_id="vaultemu01",
        domain_name="localhost",
        binary_media_types=(),
        identity={},
    )
    return build_event(request, path, context, "req-1")


def lambda_environment() -> dict[str, str]:
    # Endpoints nobody listens on: the routes exercised here never reach them.
    unused = "http://127.0.0.1:9"
    return {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TABLE_NAME": "vault",
        "KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        "VAULT_URL": unused,
        "DYNAMODB_ENDPOINT_URL": unused,
        "KMS_ENDPOINT_URL": unused,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def test_the_api_artifact_answers_a_proxy_event(tmp_path: Path, cache_root: Path) -> None:
    artifact = build(API, tmp_path, cache_root)
    runtime = LambdaRuntime(artifact.command(), BASE_ENV)
    runtime.start()
    try:
        runtime.configure(lambda_environment())
        pid = runtime.pid
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert [b"-I", b"-S"] == cmdline[1:3]
        assert not any(inside_repository(part.decode()) for part in cmdline[3:] if part.startswith(b"/"))
        config = GatewayConfig()
        context = LambdaContext(config, "req-1", time.monotonic() + 10)
        swagger = interpret_result(runtime(proxy_event("GET", "/swagger"), context))
        assert swagger.status == 200
        assert b"swagger" in swagger.body.lower()
        refused = interpret_result(
            runtime(proxy_event("POST", "/vaults/v1/records", b"x=1", "text/plain"), context)
        )
        assert refused.status == 415
        assert json.loads(refused.body)["code"] == "UnsupportedMediaType"
        assert runtime.last_usage is not None and runtime.last_usage.max_memory_mb > 0
    finally:
        runtime.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes] | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            sock.settimeout(5)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_parent_artifact_answers_its_health_route(
    tmp_path: Path, cache_root: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    artifact = build(PARENT, tmp_path, cache_root)
    vsock = tmp_path / "vsock"
    vsock.mkdir()
    port = free_port()
    env = {**BASE_ENV, **TransportConfig(kind="uds", uds_dir=vsock, local_cid=PARENT_CID).as_env()}
    process = start(
        artifact,
        processes,
        *("--host", "127.0.0.1", "--port", str(port), "--role", "vault-parent"),
        *("--imds-endpoint", "http://127.0.0.1:9", "--enclaves", str(ENCLAVE_CID), "--skip-refresh-enclaves"),
        env=env,
    )
    deadline = time.monotonic() + START_TIMEOUT
    answer = None
    while answer is None and time.monotonic() < deadline and process.poll() is None:
        answer = http_get(port, "/health")
        if answer is None:
            time.sleep(0.1)
    assert answer is not None, output_of(process)
    assert answer[0] == 200
    assert json.loads(answer[1]) == {"status": "ok"}


def test_the_enclave_artifact_answers_a_framed_request(
    tmp_path: Path, cache_root: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    artifact = build(ENCLAVE, tmp_path, cache_root)
    vsock = tmp_path / "vsock"
    vsock.mkdir()
    env = {
        **BASE_ENV,
        **TransportConfig(kind="uds", uds_dir=vsock, local_cid=ENCLAVE_CID).as_env(),
        "VAULT_ENCLAVE_PORT": str(ENCLAVE_PORT),
        # No NSM and no KMS behind the bridge: the enclave still answers, with the decrypt's error.
        "VAULT_NSM": f"uds:{tmp_path / 'no-nsm.sock'}",
        "VAULT_KMS_BRIDGE": "127.0.0.1:0",
        "VAULT_KMS_TIMEOUT": "1",
        "VAULT_KMS_MAX_ATTEMPTS": "1",
    }
    process = start(artifact, processes, env=env)
    key = LocalKeyDecryptor().create_vault_key("v_artifact")
    transport = UnixSocketTransport(vsock, local_cid=PARENT_CID)
    deadline = time.monotonic() + START_TIMEOUT
    reply = None
    while reply is None and time.monotonic() < deadline and process.poll() is None:
        try:
            sock = transport.connect(ENCLAVE_CID, ENCLAVE_PORT, timeout=5)
        except OSError:
            time.sleep(0.1)
            continue
        # Authorized (decision D16), so that the enclave goes on to its key path.
        authorization = authorize(
            LocalSigner(), vault_id="v_artifact", fields=["a"], issued_at=int(time.time())
        )
        request = key.request({"a": key.seal_field("a", "b")}, authorization=authorization.to_wire())
        with sock:
            write_frame(sock, json.dumps(request.to_wire()).encode())
            reply = json.loads(read_frame(sock, deadline=time.monotonic() + 30))
    assert reply is not None, output_of(process)
    # The enclave parsed the request and tried its key path: without an NSM it is refused with a code.
    answer = EnclaveReply.model_validate(reply)
    assert answer.is_global_failure, answer
    assert answer.code in {EnclaveErrorCode.ATTESTATION_FAILED, EnclaveErrorCode.KEY_DECRYPT_FAILED}, answer


# -- a tier definition missing a module ------------------------------------------------


def test_an_api_definition_missing_a_module_fails_naming_tier_and_module(
    tmp_path: Path, cache_root: Path
) -> None:
    artifact = build(without(API, "vault/infra"), tmp_path, cache_root)
    runtime = LambdaRuntime(artifact.command(), BASE_ENV)
    with pytest.raises(RuntimeInitError, match=r"the api tier's artifact lacks module 'vault\.infra'"):
        runtime.start()
    runtime.stop()


@pytest.mark.parametrize(
    ("tier", "source", "module"),
    [
        (PARENT, "vault/common", "vault.common"),
        # Imported lazily by the entry point: the failure the production EIF once had.
        (ENCLAVE, "vault/infra/key_policy.py", "vault.infra.key_policy"),
    ],
    ids=["parent", "enclave"],
)
def test_a_definition_missing_a_module_fails_naming_tier_and_module(
    tier: Tier,
    source: str,
    module: str,
    tmp_path: Path,
    cache_root: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    artifact = build(without(tier, source), tmp_path, cache_root)
    vsock = tmp_path / "vsock"
    vsock.mkdir()
    env = {
        **BASE_ENV,
        **TransportConfig(kind="uds", uds_dir=vsock, local_cid=ENCLAVE_CID).as_env(),
        "VAULT_NSM": f"uds:{tmp_path / 'no-nsm.sock'}",
    }
    arguments = ("--host", "127.0.0.1", "--port", str(free_port())) if tier is PARENT else ()
    process = start(artifact, processes, *arguments, env=env)
    assert process.wait(timeout=START_TIMEOUT) == bootstrap.EXIT_MISSING_MODULE
    output = output_of(process)
    assert missing_module(output) is not None
    assert f"the {tier.name} tier's artifact lacks module {module!r}" in missing_module(output)


def test_the_gateway_fails_to_start_naming_tier_and_module(tmp_path: Path, cache_root: Path) -> None:
    artifact = build(without(API, "vault/infra"), tmp_path, cache_root)
    ready = tmp_path / "gateway.ready"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.aws.gateway.server",
            *("--artifact", str(artifact.directory), "--dependencies", str(artifact.dependencies)),
            *("--ready-file", str(ready)),
        ],
        env={**BASE_ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode == 1
    assert "the api tier's artifact lacks module 'vault.infra'" in json.loads(ready.read_text())["error"]
