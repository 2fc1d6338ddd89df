"""The enclave's key release, stage by stage, against the emulated KMS path.

Everything runs in this process on loopback: moto's ``ThreadedMotoServer``, the KMS
attestation front, the NSM service with a test PKI, and the real vsock-proxy on Unix
sockets (:class:`emulator.daemon.key_release.KeyReleaseStack`); the enclave side is the
product's :class:`~vault.enclave.kms_decryptor.KmsKeyDecryptor` with its in-enclave
bridge. Stages:

* RSA-2048 key generation (the ephemeral recipient key), CPU time;
* attestation document from the emulated NSM (frame over a Unix socket, COSE_Sign1
  with ECDSA P-384), beside a bare ECDSA P-384 signature;
* KMS front round trip: ``Decrypt`` with a Recipient through bridge, vsock-proxy,
  front (SigV4 check, document verification, key policy) and moto, beside a plain
  ``Decrypt`` sent straight to moto (the floor of any KMS call here);
* CMS unwrap of ``CiphertextForRecipient`` beside the bare RSA-OAEP + AES-CBC
  primitives;
* the whole release with the recipient key reused (the decision documented in
  :mod:`vault.enclave.recipient_keys`: at most 60 s and 100 uses) and with a fresh key
  per request (``key_max_uses=1``).

Round trips are wall time (median and tails); ``cpu/op`` is this process's CPU time per
operation, which here includes the front, proxy, NSM and moto threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from moto.server import ThreadedMotoServer

from benchmarks import (
    LoadMonitor,
    Options,
    describe_load,
    distribution,
    figure,
    format_value,
    samples,
    table,
    write_results,
)
from emulator.aws.kms.front import Identity
from emulator.daemon.key_release import KeyReleaseStack
from emulator.nitro.pki import TestPki
from vault.common.messages import Credential
from vault.common.transport import TransportConfig, UnixSocketTransport
from vault.enclave.cms import open_enveloped_data
from vault.enclave.kms_bridge import KmsBridge
from vault.enclave.kms_decryptor import KEY_ENCRYPTION_ALGORITHM, KmsDecryptorConfig, KmsKeyDecryptor
from vault.enclave.nsm import SocketNsm
from vault.enclave.recipient_keys import DEFAULT_MAX_AGE, DEFAULT_MAX_USES, generate_key
from vault.infra.key_policy import EnclaveMeasurements, KeyPolicyParams, build_key_policy, pcr3_for_role_arn

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_kms.type_defs import DecryptResponseTypeDef, RecipientInfoTypeDef

ACCOUNT = "123456789012"
REGION = "us-east-1"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/nitro-vault-instance"
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/nitro-vault-api"
INSTANCE_KEY = "ASIABENCHINSTANCE001"
INSTANCE_SECRET = "bench-instance-secret"
API_KEY = "ASIABENCHAPIROLE0001"
API_SECRET = "bench-api-secret"
ENCLAVE_CID = 16
VAULT_ID = "v_benchmarkkeyrelease000000"
CREDENTIAL = Credential.model_validate(
    {"AccessKeyId": INSTANCE_KEY, "SecretAccessKey": INSTANCE_SECRET, "Token": "bench-token"}
)
EMULATOR_KMS = KmsDecryptorConfig(endpoint="http://127.0.0.1:{port}", bridge_port=0)
GROUP = "key release"


@dataclass
class _Path:
    """The running emulated path and what a release needs."""

    moto_url: str
    key_arn: str
    blob: bytes
    nsm_socket: Path
    vsock_dir: Path


def _client(url: str, key: str, secret: str) -> KMSClient:
    return boto3.session.Session().client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )


@contextmanager
def _emulated_path() -> Iterator[_Path]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    measurements = EnclaveMeasurements(pcr0="a0" * 48, pcr1="b1" * 48, pcr2="c2" * 48, pcr8="d8" * 48)
    pcr3 = pcr3_for_role_arn(INSTANCE_ROLE)
    # Unix socket paths must fit in sun_path: a short directory under /tmp.
    runtime = Path(tempfile.mkdtemp(prefix="kr-bench-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        key_arn = str(_client(moto_url, "admin", "admin").create_key()["KeyMetadata"]["Arn"])
        policy = build_key_policy(
            KeyPolicyParams(
                account_id=ACCOUNT,
                instance_role_arn=INSTANCE_ROLE,
                api_role_arn=API_ROLE,
                measurements=measurements,
                pcr3=pcr3,
            )
        )
        stack = KeyReleaseStack.start(
            backend=moto_url,
            runtime_dir=runtime,
            pki=TestPki.create("bench"),
            identities={
                INSTANCE_KEY: Identity(INSTANCE_ROLE, INSTANCE_SECRET),
                API_KEY: Identity(API_ROLE, API_SECRET),
            },
            key_policies={key_arn: policy},
        )
        with stack:
            nsm_socket = stack.nsm.register_enclave("bench", measurements, pcr3)
            pair = _client(
                stack.front.endpoint_url, API_KEY, API_SECRET
            ).generate_data_key_pair_without_plaintext(
                KeyId=key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": VAULT_ID}
            )
            yield _Path(
                moto_url=moto_url,
                key_arn=key_arn,
                blob=bytes(pair["PrivateKeyCiphertextBlob"]),
                nsm_socket=nsm_socket,
                vsock_dir=stack.vsock_dir,
            )
    finally:
        moto.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def _timed(count: int, operation: Callable[[], object]) -> dict[str, Any]:
    """Wall-time distribution (ms) of ``count`` calls and this process's CPU ms per call."""
    cpu = time.process_time()
    timings = samples(count, operation)
    cpu_per_op = (time.process_time() - cpu) / count
    return {**distribution(timings, 1e3), "cpu_ms_per_op": cpu_per_op * 1e3}


def _cpu(count: int, operation: Callable[[], object]) -> dict[str, Any]:
    """CPU-time distribution (ms) of ``count`` calls on this thread."""
    return distribution(samples(count, operation, time.thread_time), 1e3)


def _raw_unwrap(private_key: rsa.RSAPrivateKey) -> Callable[[], bytes]:
    """The primitives inside a CMS unwrap: RSA-OAEP-SHA-256 of a 32-byte key, AES-256-CBC of ~200 bytes."""
    oaep = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    content_key, iv = os.urandom(32), os.urandom(16)
    wrapped = private_key.public_key().encrypt(content_key, oaep)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    body = encryptor.update(padder.update(os.urandom(185)) + padder.finalize()) + encryptor.finalize()

    def unwrap() -> bytes:
        key = private_key.decrypt(wrapped, oaep)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(decryptor.update(body) + decryptor.finalize()) + unpadder.finalize()

    return unwrap


def measure(options: Options) -> dict[str, Any]:
    rounds = options.scaled(200, 8)
    keygens = options.scaled(30, 3)
    fresh_rounds = options.scaled(30, 3)
    results: dict[str, Any] = {"rounds": rounds}
    with _emulated_path() as path:
        results["rsa_keygen"] = _cpu(keygens, generate_key)

        nsm = SocketNsm(path.nsm_socket)
        recipient = generate_key()
        spki = recipient.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        document = nsm.attestation(public_key=spki)
        results["attestation"] = _timed(rounds, lambda: nsm.attestation(public_key=spki))
        signer = ec.generate_private_key(ec.SECP384R1())
        payload = os.urandom(len(document))
        results["raw_ecdsa_p384_sign"] = _cpu(rounds, lambda: signer.sign(payload, ec.ECDSA(hashes.SHA384())))

        moto = _client(path.moto_url, INSTANCE_KEY, INSTANCE_SECRET)
        context = {"vault_id": VAULT_ID}
        moto.decrypt(CiphertextBlob=path.blob, EncryptionContext=context)
        results["moto_decrypt_direct"] = _timed(
            rounds, lambda: moto.decrypt(CiphertextBlob=path.blob, EncryptionContext=context)
        )

        transport = UnixSocketTransport(path.vsock_dir, ENCLAVE_CID)
        with KmsBridge(transport, port=0) as bridge:
            front: KMSClient = boto3.session.Session().client(
                "kms",
                endpoint_url=f"http://127.0.0.1:{bridge.port}",
                region_name=REGION,
                aws_access_key_id=INSTANCE_KEY,
                aws_secret_access_key=INSTANCE_SECRET,
                aws_session_token="bench-token",
                config=Config(retries={"total_max_attempts": 1}),
            )
            recipient_arg: RecipientInfoTypeDef = {
                "AttestationDocument": document,
                "KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM,
            }

            def front_round_trip() -> DecryptResponseTypeDef:
                return front.decrypt(
                    CiphertextBlob=path.blob, EncryptionContext=context, Recipient=recipient_arg
                )

            sealed = bytes(front_round_trip()["CiphertextForRecipient"])
            results["front_round_trip"] = _timed(rounds, front_round_trip)
            front.close()

        results["cms_unwrap"] = _cpu(rounds, lambda: open_enveloped_data(sealed, recipient))
        results["raw_rsa_oaep_aes_cbc"] = _cpu(rounds, _raw_unwrap(recipient))

        def release(decryptor: KmsKeyDecryptor) -> Callable[[], bytes]:
            return lambda: decryptor.decrypt_private_key(
                ciphertext=path.blob, vault_id=VAULT_ID, region=REGION, credential=CREDENTIAL
            )

        env = {
            "VAULT_VSOCK_TRANSPORT": "uds",
            "VAULT_VSOCK_UDS_DIR": str(path.vsock_dir),
            "VAULT_VSOCK_LOCAL_CID": str(ENCLAVE_CID),
        }
        for label, config, count in (
            ("release_reused_key", EMULATOR_KMS, rounds),
            (
                "release_fresh_key",
                KmsDecryptorConfig(endpoint=EMULATOR_KMS.endpoint, bridge_port=0, key_max_uses=1),
                fresh_rounds,
            ),
        ):
            with KmsKeyDecryptor(nsm, TransportConfig.from_env(env).create(), config) as decryptor:
                release(decryptor)()  # first use: bridge, client, the first key
                results[label] = _timed(count, release(decryptor))
        results["reuse_bounds"] = {"max_age_s": DEFAULT_MAX_AGE, "max_uses": DEFAULT_MAX_USES}
    return results


def _figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    moto_floor = r["moto_decrypt_direct"]["p50"]
    return [
        figure(GROUP, "RSA-2048 key generation (p50)", r["rsa_keygen"]["p50"], "ms", clock="cpu"),
        figure(GROUP, "RSA-2048 key generation (p90)", r["rsa_keygen"]["p90"], "ms", clock="cpu"),
        figure(
            GROUP,
            "attestation document, emulated NSM (cpu/op)",
            r["attestation"]["cpu_ms_per_op"],
            "ms",
            clock="cpu",
            baseline="ECDSA P-384 sign",
            baseline_value=r["raw_ecdsa_p384_sign"]["p50"],
        ),
        figure(
            GROUP, "attestation document, emulated NSM (p50)", r["attestation"]["p50"], "ms", clock="wall"
        ),
        figure(
            GROUP,
            "KMS front round trip, Decrypt+Recipient (p50)",
            r["front_round_trip"]["p50"],
            "ms",
            clock="wall",
            baseline="moto Decrypt direct",
            baseline_value=moto_floor,
        ),
        figure(GROUP, "moto Decrypt direct (p50)", moto_floor, "ms", clock="wall"),
        figure(
            GROUP,
            "CMS unwrap (p50)",
            r["cms_unwrap"]["p50"],
            "ms",
            clock="cpu",
            baseline="RSA-OAEP + AES-CBC",
            baseline_value=r["raw_rsa_oaep_aes_cbc"]["p50"],
        ),
        figure(
            GROUP,
            "release, reused key (p50)",
            r["release_reused_key"]["p50"],
            "ms",
            clock="wall",
            baseline="moto Decrypt direct",
            baseline_value=moto_floor,
        ),
        figure(GROUP, "release, reused key (p99)", r["release_reused_key"]["p99"], "ms", clock="wall"),
        figure(
            GROUP,
            "release, fresh key per request (p50)",
            r["release_fresh_key"]["p50"],
            "ms",
            clock="wall",
            baseline="moto Decrypt direct",
            baseline_value=moto_floor,
        ),
        figure(
            GROUP, "release, fresh key per request (p90)", r["release_fresh_key"]["p90"], "ms", clock="wall"
        ),
    ]


def run(options: Options) -> int:
    with LoadMonitor() as load:
        results = measure(options)
    rows = []
    labels = {
        "rsa_keygen": ("RSA-2048 key generation", "cpu"),
        "attestation": ("attestation document (NSM socket)", "wall"),
        "raw_ecdsa_p384_sign": ("  raw: ECDSA P-384 sign", "cpu"),
        "front_round_trip": ("KMS front round trip (bridge, proxy, front, moto)", "wall"),
        "moto_decrypt_direct": ("  floor: moto Decrypt direct", "wall"),
        "cms_unwrap": ("CMS unwrap", "cpu"),
        "raw_rsa_oaep_aes_cbc": ("  raw: RSA-OAEP + AES-CBC", "cpu"),
        "release_reused_key": ("whole release, reused key", "wall"),
        "release_fresh_key": ("whole release, fresh key per request", "wall"),
    }
    for key, (label, clock) in labels.items():
        entry = results[key]
        rows.append(
            [
                label,
                clock,
                str(entry["n"]),
                format_value(entry["p50"]),
                format_value(entry["p90"]),
                format_value(entry["p99"]),
                format_value(entry["cpu_ms_per_op"]) if "cpu_ms_per_op" in entry else "",
            ]
        )
    print(table(["stage (ms)", "clock", "n", "p50", "p90", "p99", "cpu/op"], rows))
    reuse = results["release_reused_key"]["p50"]
    fresh = results["release_fresh_key"]["p50"]
    print(
        f"\nreuse of the recipient key (<= {DEFAULT_MAX_USES} uses, <= {DEFAULT_MAX_AGE:.0f} s): "
        f"p50 {reuse:.1f} ms against {fresh:.1f} ms with a fresh key per request "
        f"({fresh / reuse:.1f}x); keygen p50 {results['rsa_keygen']['p50']:.0f} ms CPU"
    )
    load_result = load.result()
    print(describe_load(load_result))
    path = write_results(
        options, "key_release", {**results, "load": load_result, "figures": _figures(results)}
    )
    print(f"results: {path}")
    return 0
