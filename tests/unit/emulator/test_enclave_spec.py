"""Enclave specs: what is refused (with the key named), the vault's spec, and a non-vault enclave.

The last test starts the emulator (``vault-emulator up --enclave SPEC``) with a tiny Python
enclave written here, which listens on a vsock port through the emulated Unix-socket
transport and answers ``pong``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.daemon.components import build_components
from emulator.daemon.components.base import Context
from emulator.daemon.components.image import assemble_spec_image
from emulator.daemon.config import DEFAULT_INSTANCE_ROLE, EmulatorConfig
from emulator.daemon.enclave_spec import (
    DEFAULT_KEY_POLICY,
    SPEC_ERROR_CODE,
    EnclaveSpecError,
    load_spec,
    parse_spec,
    vault_spec,
)
from emulator.daemon.state import read_state
from emulator.nitro.image import ENTRYPOINT, IMAGE_SOURCES, assemble_image
from emulator.nitro.measure import measure_image
from emulator.nitro.sandbox import SandboxSpec
from emulator.tools import cli
from emulator.tools.enclave_fixtures import start_nitro_enclave
from vault.common.transport import DEFAULT_ENCLAVE_CID, ENCLAVE_PORT, KMS_PROXY_PORT
from vault.infra.artifacts import ENCLAVE, source_files
from vault.infra.key_policy import pcr3_for_role_arn

REGION = "us-east-1"
PONG_PORT = 5005
PONG_PROGRAM = '''
"""Answers "pong" (or $GREETING) to "ping" on vsock port 5005 of its CID, as on Nitro hardware."""
import os
import socket

listener = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
listener.bind((socket.VMADDR_CID_ANY, 5005))
listener.listen(8)
while True:
    connection, _ = listener.accept()
    with connection:
        if connection.recv(64).strip() == b"ping":
            connection.sendall(os.environ.get("GREETING", "pong").encode())
'''


def write_pong(directory: Path, **overrides: str) -> Path:
    """A pong enclave's image directory and spec under ``directory``; the spec's path."""
    app = directory / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "pong.py").write_text(PONG_PROGRAM)
    body = {
        "head": 'name = "pong"\nentrypoint = ["python3", "-m", "pong"]\nports = [5005]\n',
        "image": '[image]\ndirectory = "app"\n',
        "proxy": f'[vsock_proxy]\nallowlist = [{{ address = "kms.{REGION}.amazonaws.com", port = 443 }}]\n',
        "env": '[env]\nGREETING = "pong"\n',
        "policy": "",
    }
    body.update(overrides)
    spec = directory / "pong.toml"
    spec.write_text("\n".join(part for part in body.values() if part))
    return spec


def allowlist(*entries: tuple[str, int]) -> str:
    """A ``[vsock_proxy]`` table with these allow-list entries."""
    inline = ", ".join(f'{{ address = "{address}", port = {port} }}' for address, port in entries)
    return f"[vsock_proxy]\nallowlist = [{inline}]\n"


def refusal(spec: Path) -> EnclaveSpecError:
    with pytest.raises(EnclaveSpecError) as refused:
        load_spec(spec, region=REGION)
    assert refused.value.code == SPEC_ERROR_CODE
    assert str(refused.value).startswith(f"[{SPEC_ERROR_CODE}] {refused.value.key}: ")
    return refused.value


def test_a_valid_spec_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    spec = load_spec(write_pong(tmp_path), region=REGION)
    assert spec.name == "pong" and spec.entrypoint == ("python3", "-m", "pong")
    assert spec.ports == (PONG_PORT,) and spec.proxy_port == KMS_PROXY_PORT
    assert spec.image.kind == "directory" and spec.image.root == (tmp_path / "app").resolve()
    assert [(e.address, e.port) for e in spec.allowlist] == [(f"kms.{REGION}.amazonaws.com", 443)]
    assert spec.env == {"GREETING": "pong"} and not spec.vault_api
    assert spec.program == "pong"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"head": 'name = "pong"\nentrypoint = ["python3"]\nports = [5005]\ncolour = "red"\n'}, "colour"),
        ({"image": '[image]\ndirectory = "app"\nlayers = 3\n'}, "image.layers"),
        ({"head": 'name = "pong"\nports = [5005]\n'}, "entrypoint"),
        ({"head": 'name = "pong"\nentrypoint = []\nports = [5005]\n'}, "entrypoint"),
        ({"head": 'name = "pong"\nentrypoint = ["x"]\nports = [0]\n'}, "ports[0]"),
        ({"head": 'name = "pong"\nentrypoint = ["x"]\n'}, "ports"),
        ({"image": ""}, "image"),
        ({"image": "[image]\n"}, "image.directory"),
        ({"image": '[image]\ndirectory = "missing"\n'}, "image.directory"),
        ({"image": '[image]\ndirectory = "app"\ndockerfile = "Dockerfile"\n'}, "image.dockerfile"),
        (
            {
                "proxy": allowlist(("s3.us-east-1.amazonaws.com", 443)),
            },
            "vsock_proxy.allowlist[0].address",
        ),
        (
            {
                "proxy": allowlist(("kms.eu-west-1.amazonaws.com", 443)),
            },
            "vsock_proxy.allowlist[0].address",
        ),
        (
            {
                "proxy": "[vsock_proxy]\nallowlist = ["
                f'{{ address = "kms.{REGION}.amazonaws.com", port = 443 }}, '
                f'{{ address = "kms.{REGION}.amazonaws.com", port = 8443 }}]\n'
            },
            "vsock_proxy.allowlist[1].port",
        ),
        ({"proxy": '[vsock_proxy]\nallowlist = [{ address = "x" }]\n'}, "vsock_proxy.allowlist[0].port"),
        ({"proxy": "[vsock_proxy]\nlisten = 8000\n"}, "vsock_proxy.listen"),
        ({"env": "[env]\nCOUNT = 3\n"}, "env.COUNT"),
        ({"policy": '[key_policy]\ndocument = { Statement = "${PCR9}" }\n'}, "key_policy.document"),
        ({"policy": '[key_policy]\ntemplate = "missing.json"\n'}, "key_policy.template"),
        ({"policy": "[key_policy]\nrules = 1\n"}, "key_policy.rules"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_key(tmp_path: Path, overrides: dict[str, str], key: str) -> None:
    assert refusal(write_pong(tmp_path, **overrides)).key == key


def test_a_template_that_is_no_json_policy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text('{"Statement": [${PCR0}]')
    spec = write_pong(tmp_path, policy='[key_policy]\ntemplate = "policy.json"\n')
    assert refusal(spec).key == "key_policy.template"


def test_a_key_policy_template_is_filled_with_the_measured_pcrs(tmp_path: Path) -> None:
    template = {
        "Statement": [{"Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": "${PCR0}"}}}]
    }
    (tmp_path / "policy.json").write_text(json.dumps(template))
    spec = load_spec(write_pong(tmp_path, policy='[key_policy]\ntemplate = "policy.json"\n'), region=REGION)
    values = {"PCR0": "ab" * 48, "PCR1": "", "PCR2": "", "PCR3": "", "PCR8": "", "ACCOUNT_ID": "1"}
    rendered = spec.key_policy.render({**values, "REGION": REGION, "INSTANCE_ROLE_ARN": "arn"})
    assert rendered["Statement"][0]["Condition"]["StringEqualsIgnoreCase"] == {
        "kms:RecipientAttestation:PCR0": "ab" * 48
    }


def test_a_dockerfile_image_needs_the_container_runtime(tmp_path: Path) -> None:
    spec = write_pong(tmp_path, image='[image]\ndockerfile = "app/Dockerfile"\ncontext = "app"\n')
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    assert load_spec(spec, region=REGION).image.kind == "dockerfile"
    with pytest.raises(EnclaveSpecError) as refused:
        EmulatorConfig(state_dir=tmp_path / "state", enclave_spec=spec)
    assert refused.value.key == "image.dockerfile"


def test_up_refuses_a_bad_spec_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_pong(tmp_path, head='name = "pong"\nports = [5005]\n')
    state_dir = tmp_path / "state"
    assert cli.main(["up", "--state-dir", str(state_dir), "--port", "0", "--enclave", str(spec)]) == 2
    assert f"[{SPEC_ERROR_CODE}] entrypoint: is required" in capsys.readouterr().err
    assert not state_dir.exists()


def test_the_spec_names_the_instance_role_unless_the_config_does(tmp_path: Path) -> None:
    spec = write_pong(
        tmp_path, head='name = "pong"\nentrypoint = ["x"]\nports = [1]\ninstance_role = "pong-role"\n'
    )
    config = EmulatorConfig(state_dir=tmp_path / "state", enclave_spec=spec)
    assert config.instance_role_name == "pong-role"
    assert EmulatorConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert EmulatorConfig(state_dir=tmp_path / "s").instance_role_name == DEFAULT_INSTANCE_ROLE


# -- the vault's spec ---------------------------------------------------------------------


def test_the_vault_spec_is_the_default_and_names_the_enclave_tier() -> None:
    spec = EmulatorConfig().spec
    assert spec == vault_spec(REGION) and spec.vault_api
    assert spec.image.kind == "sources" and spec.image.sources == ENCLAVE.sources == IMAGE_SOURCES
    assert ENCLAVE.image is not None
    assert spec.entrypoint == ENTRYPOINT == ENCLAVE.image.command
    assert tuple(SandboxSpec("e", Path(), Path(), {}, Path()).command) == spec.entrypoint
    assert spec.ports == (ENCLAVE_PORT,) and spec.proxy_port == KMS_PROXY_PORT
    assert spec.key_policy.kind == "vault" and spec.program == "vault.enclave"


def test_the_vault_spec_assembles_the_same_image(tmp_path: Path) -> None:
    today = assemble_image(tmp_path / "default")
    via_spec = assemble_spec_image(vault_spec(), tmp_path / "spec")
    assert via_spec.manifest == today.manifest and via_spec.manifest["name"] == "enclave-vault"
    assert sorted(via_spec.manifest["files"]) == sorted(  # type: ignore[call-overload]
        path for path, _ in source_files(vault_spec().image.root, ENCLAVE.sources)
    )
    assert measure_image(via_spec.directory) == measure_image(today.directory)


def test_the_vault_spec_runs_todays_components_on_todays_ports(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path / "state")
    parts = build_components(Context(config, config.layout))
    assert [c.name for c in parts.components] == [
        "backend", "image", "pki", "imds", "dynamodb-proxy", "provision", "kms-front",
        "vsock-proxy", "nsm", "enclave", "parent", "gateway",
    ]  # fmt: skip
    assert parts.vsock_proxy.port == KMS_PROXY_PORT
    assert parts.enclave.cid == DEFAULT_ENCLAVE_CID
    assert parts.enclave.spec.ports == (ENCLAVE_PORT,)
    assert parts.image.spec.name == "vault"


def test_another_spec_runs_only_its_enclave_and_what_it_needs(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path / "state", enclave_spec=write_pong(tmp_path))
    parts = build_components(Context(config, config.layout))
    assert [c.name for c in parts.components] == [
        "backend", "image", "pki", "imds", "provision", "kms-front", "vsock-proxy", "nsm", "enclave",
    ]  # fmt: skip


# -- a non-vault enclave, started from its spec -----------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths must fit in sun_path (108 bytes); pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="spec-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_with_a_spec_runs_a_pong_enclave_reached_over_the_emulated_vsock(short_dir: Path) -> None:
    spec_path = write_pong(short_dir / "pong", env='[env]\nGREETING = "pong from the spec"\n')
    with start_nitro_enclave(spec_path, short_dir / "state") as enclave:
        assert enclave.address() == (DEFAULT_ENCLAVE_CID, PONG_PORT)
        with enclave.connect() as connection:
            connection.sendall(b"ping")
            assert connection.recv(64) == b"pong from the spec"
        # The NSM attests the measured image: its PCR0 is the image's, PCR3 the role's.
        image = measure_image(Path(enclave.state.facts["image_dir"]))
        assert enclave.pcrs[0] == image.pcr0 and enclave.pcrs[2] == image.pcr2
        assert enclave.pcrs[3] == pcr3_for_role_arn(EmulatorConfig().instance_role_arn)
        assert enclave.key_arn.startswith("arn:aws:kms:")
        state = read_state(EmulatorConfig(state_dir=short_dir / "state").layout.state_file)
        assert state is not None and state.phase == "running"
        names = {component.name for component in state.components}
        assert "gateway" not in names and "parent" not in names and "enclave" in names
        enclave_row = next(c for c in state.components if c.name == "enclave")
        assert enclave_row.address == f"vsock://{DEFAULT_ENCLAVE_CID}:{PONG_PORT}"


def test_parse_spec_resolves_against_the_base_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    data = {"name": "x", "entrypoint": ["/bin/true"], "ports": [7], "image": {"directory": "app"}}
    spec = parse_spec(data, base=tmp_path, region=REGION)
    assert spec.image.root == (tmp_path / "app").resolve() and spec.program == "true"
    assert spec.key_policy == DEFAULT_KEY_POLICY
