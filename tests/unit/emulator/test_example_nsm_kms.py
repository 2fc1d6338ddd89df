"""examples/nsm-kms-python: an unmodified third-party NSM client gets a KMS data key in the emulator.

The example's enclave (``app/main.py``, which uses the PyPI package ``aws-nsm-interface``
on ``/dev/nsm`` and ``AF_VSOCK`` as on Nitro hardware) runs from its own spec under
``vault-emulator up --enclave`` in device mode; its parent program (``parent.py``) runs
here with the preload library as CID 3 and the emulated IMDS as its credential source.
What the enclave reports is checked against the backend itself: the backend's own
``Decrypt`` of the ``CiphertextBlob`` (as the account, behind the KMS front) must hash to
the digest the enclave printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.aws.backends import default_cache_dir
from emulator.daemon.enclave_spec import DEFAULT_KEY_POLICY
from emulator.nitro.pki import TestPki
from emulator.nitro.preload import preload_for
from emulator.tools.enclave_fixtures import (
    RunningEnclave,
    emulated_nsm,
    public_key_der,
    recipient_key,
    short_directory,
    start_nitro_enclave,
)
from vault.common.transport import PARENT_CID
from vault.infra.key_policy import EnclaveMeasurements

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "nsm-kms-python"
SPEC = EXAMPLE / "enclave.toml"
PARENT = EXAMPLE / "parent.py"
REGION = "us-east-1"
CHILD_TIMEOUT = 120
#: A PCR0 of no image: the key policy of the negative test names it.
OTHER_PCR0 = "ab" * 48

pytest.importorskip("aws_nsm_interface", reason="the example's dependency (the examples extra)")
pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0 or shutil.which("cc") is None,
    reason="device mode in the namespace sandbox needs unshare, root and a C compiler",
)


@pytest.fixture(scope="module")
def nitro_enclave_spec() -> Path:
    return SPEC


def run_parent(enclave: RunningEnclave, *args: str) -> tuple[int, dict[str, Any]]:
    """``parent.py`` as on the parent instance: AF_VSOCK as CID 3, credentials from IMDS."""
    preload = preload_for(default_cache_dir() / "preload", vsock_dir=enclave.vsock_dir, local_cid=PARENT_CID)
    home = short_directory("parent-home-")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        # Nothing of this machine's AWS configuration: only IMDS can answer.
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": str(enclave.state.facts["imds_endpoint"]),
        "AWS_DEFAULT_REGION": REGION,
        "PYTHONDONTWRITEBYTECODE": "1",
        **preload.env(),
    }
    try:
        result = subprocess.run(
            [sys.executable, str(PARENT), "--cid", str(enclave.cid), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert result.stdout.strip(), f"parent.py printed nothing: {result.stderr}"
    return result.returncode, json.loads(result.stdout)


def enclave_log(enclave: RunningEnclave) -> str:
    row = enclave.state.component("enclave")
    assert row is not None and row.log
    return Path(row.log).read_text(errors="replace")


def backend_client(enclave: RunningEnclave) -> Any:
    """The backend's KMS as the account, behind the front: what only the test may do."""
    facts = enclave.state.facts
    return boto3.session.Session().client(
        "kms",
        endpoint_url=str(facts["backend_endpoint"]),
        region_name=REGION,
        aws_access_key_id=str(facts["backend_access_key_id"]),
        aws_secret_access_key=str(facts["backend_secret_access_key"]),
    )


def instance_role_client(enclave: RunningEnclave) -> Any:
    """The KMS front as the parent sees it: with the instance role's credentials from IMDS."""
    session = boto3.session.Session()
    fetcher = boto3.session.botocore.utils.InstanceMetadataFetcher(
        timeout=5,
        num_attempts=2,
        base_url=str(enclave.state.facts["imds_endpoint"]),
    )
    credentials = fetcher.retrieve_iam_role_credentials()
    return session.client(
        "kms",
        endpoint_url=enclave.kms_endpoint,
        region_name=REGION,
        aws_access_key_id=credentials["access_key"],
        aws_secret_access_key=credentials["secret_key"],
        aws_session_token=credentials["token"],
    )


#: aws-nsm-interface on the parent: an attestation document for the key in argv[1] (hex).
PARENT_ATTESTATION = """
import json, sys
import aws_nsm_interface
device = aws_nsm_interface.open_nsm_device()
try:
    document = aws_nsm_interface.get_attestation_doc(device, public_key=bytes.fromhex(sys.argv[1]))
    print(json.dumps({"document": len(document["document"])}))
except aws_nsm_interface.IoctlError as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def parent_attestation(enclave: RunningEnclave, public_key: bytes) -> dict[str, Any]:
    """A host process that points its /dev/nsm at the running enclave's NSM socket."""
    preload = preload_for(
        default_cache_dir() / "preload",
        vsock_dir=enclave.vsock_dir,
        local_cid=PARENT_CID,
        nsm_socket=Path(str(enclave.state.facts["nsm_socket"])),
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **preload.env()}
    result = subprocess.run(
        [sys.executable, "-c", PARENT_ATTESTATION, public_key.hex()],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=True,
    )
    reply: dict[str, Any] = json.loads(result.stdout)
    return reply


def test_the_enclave_gets_a_data_key_that_only_it_reads(nitro_enclave: RunningEnclave) -> None:
    status, reply = run_parent(nitro_enclave)
    assert status == 0, reply
    assert reply["decrypt_matches"] is True
    # aws-nsm-interface's DescribePCR reads the image's PCR0, which the key policy names.
    assert reply["pcr0"] == nitro_enclave.pcrs[0]
    assert reply["key_id"] == nitro_enclave.key_arn
    # The digest is the data key's: the backend decrypts the blob to bytes that hash to it.
    blob = base64.b64decode(str(reply["ciphertext_blob"]))
    data_key = backend_client(nitro_enclave).decrypt(CiphertextBlob=blob)["Plaintext"]
    assert len(data_key) == 32
    assert reply["data_key_sha256"] == hashlib.sha256(data_key).hexdigest()
    # The key itself reaches neither the parent nor the enclave's log.
    log = enclave_log(nitro_enclave)
    assert f"data key sha256 {reply['data_key_sha256']}; Decrypt gives the same key: True" in log
    for encoding in (data_key.hex(), base64.b64encode(data_key).decode()):
        assert encoding not in json.dumps(reply) and encoding not in log
    # A second request is another data key.
    status, second = run_parent(nitro_enclave)
    assert status == 0 and second["data_key_sha256"] != reply["data_key_sha256"]


def test_the_parent_holding_the_instance_role_gets_no_key(nitro_enclave: RunningEnclave) -> None:
    status, reply = run_parent(nitro_enclave)
    assert status == 0, reply
    blob = base64.b64decode(str(reply["ciphertext_blob"]))
    kms = instance_role_client(nitro_enclave)
    # The parent has the very credentials the enclave used; without an attestation KMS says no.
    for call in (
        lambda: kms.generate_data_key(KeyId=nitro_enclave.key_arn, KeySpec="AES_256"),
        lambda: kms.decrypt(CiphertextBlob=blob, KeyId=nitro_enclave.key_arn),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    # A document with the enclave's exact PCRs, signed by another NSM's root: refused too.
    pcrs = nitro_enclave.pcrs
    measurements = EnclaveMeasurements(pcr0=pcrs[0], pcr1=pcrs[1], pcr2=pcrs[2])
    private_key = recipient_key()

    def recipient(pki: TestPki) -> dict[str, Any]:
        with emulated_nsm(pki) as nsm:
            document = nsm.attest(measurements, pcr3=pcrs[3], public_key=public_key_der(private_key))
        return {"AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}

    with pytest.raises(ClientError) as refused:
        kms.decrypt(CiphertextBlob=blob, KeyId=nitro_enclave.key_arn, Recipient=recipient(TestPki.create()))
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    # The parent's own /dev/nsm, led to the enclave's NSM socket, answers it no document either.
    assert parent_attestation(nitro_enclave, public_key_der(private_key)) == {"refused": "InvalidOperation"}
    # The same document from the emulator's own root (the control) is accepted: the root was the fault.
    own_root = TestPki.load_or_create(nitro_enclave.state.layout.pki, region=REGION)
    answer = kms.decrypt(CiphertextBlob=blob, KeyId=nitro_enclave.key_arn, Recipient=recipient(own_root))
    assert "Plaintext" not in answer and answer["CiphertextForRecipient"]


@pytest.fixture(scope="module")
def mismatched_enclave() -> Iterator[RunningEnclave]:
    """The same image under a key policy that names another PCR0."""
    directory = short_directory("nsm-kms-other-")
    try:
        template = DEFAULT_KEY_POLICY.template.replace("${PCR0}", OTHER_PCR0)
        assert OTHER_PCR0 in template
        (directory / "key-policy.json").write_text(template)
        spec = SPEC.read_text().replace('directory = "app"', f'directory = "{EXAMPLE / "app"}"')
        spec += '\n[key_policy]\ntemplate = "key-policy.json"\n'
        (directory / "enclave.toml").write_text(spec)
        with start_nitro_enclave(directory / "enclave.toml", directory / "state") as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_key_policy_for_another_pcr0_gives_no_data_key(mismatched_enclave: RunningEnclave) -> None:
    status, reply = run_parent(mismatched_enclave)
    assert status == 1
    assert reply["error"] == {"code": "AccessDeniedException", "operation": "GenerateDataKey"}
    assert "data_key_sha256" not in reply and "ciphertext_blob" not in reply
    # The enclave is the same measured image; only the policy's PCR0 differs.
    assert reply["pcr0"] == mismatched_enclave.pcrs[0] != OTHER_PCR0
    log = enclave_log(mismatched_enclave)
    assert "GenerateDataKey: refused by KMS: AccessDeniedException" in log
    assert "data key sha256" not in log


def test_a_malformed_request_is_answered_and_the_enclave_keeps_serving(nitro_enclave: RunningEnclave) -> None:
    for line in (b"not json\n", b'{"key_id": "alias/nsm-kms-python"}\n', b'{"credentials": []}\n'):
        with nitro_enclave.connect(timeout=CHILD_TIMEOUT) as connection:
            connection.sendall(line)
            assert json.loads(connection.makefile("rb").readline()) == {"error": {"code": "BadRequest"}}
    status, reply = run_parent(nitro_enclave)
    assert status == 0 and reply["decrypt_matches"] is True
