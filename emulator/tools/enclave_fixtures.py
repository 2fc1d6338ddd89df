"""The Python API behind the plugin's generic fixtures (``nsm``, ``attested_kms``, ``nitro_enclave``).

Each works without pytest too:

* :class:`EmulatedNsm`: the emulator's NSM (:class:`~emulator.nitro.nsm.NsmService`) with a
  test PKI, in this process. :meth:`EmulatedNsm.attest` signs an attestation document for
  given measurements; :meth:`EmulatedNsm.socket_for` gives a program the NSM socket of an
  enclave with those measurements (``VAULT_NSM=uds:<path>``).
* :class:`AttestedKms`: the KMS attestation front over a moto server, trusting that PKI's
  root: :meth:`AttestedKms.create_key` makes a key whose policy names the given PCRs,
  :attr:`AttestedKms.client` is a boto3 KMS client as the instance role, and
  :meth:`AttestedKms.recipient` makes the ``Recipient`` parameter from an NSM document.
* :func:`start_nitro_enclave`: ``vault-emulator up --enclave SPEC`` in a state directory;
  :class:`RunningEnclave` has the enclave's CID, ports, PCRs and a ``connect``.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from moto.server import ThreadedMotoServer

from emulator.aws.kms.front import DEFAULT_MAX_DOCUMENT_AGE, Identity, KmsFront
from emulator.daemon import lifecycle
from emulator.daemon.components.provision import policy_values
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.enclave_spec import DEFAULT_KEY_POLICY, EnclaveSpec, KeyPolicySpec
from emulator.daemon.state import EmulatorState
from emulator.nitro.attestation import AttestationDocument, verify_document
from emulator.nitro.nsm import AnyProcess, NsmService
from emulator.nitro.pki import TestPki
from vault.common.transport import PARENT_CID, UnixSocketTransport
from vault.enclave.cms import open_enveloped_data
from vault.infra.key_policy import EnclaveMeasurements, pcr3_for_role_arn

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
INSTANCE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/nitro-enclave-instance-role"
#: The instance role's test access key at the KMS front (its secret: :data:`INSTANCE_SECRET`).
INSTANCE_ACCESS_KEY = "ASIANITROENCLAVE0001"
INSTANCE_SECRET = "nitro-enclave-instance-secret"  # noqa: S105 - a test principal of the emulated KMS, not a credential
#: Measurements of no particular image: what the fixtures attest unless told otherwise.
EXAMPLE_MEASUREMENTS = EnclaveMeasurements(pcr0="a0" * 48, pcr1="b1" * 48, pcr2="c2" * 48)
RECIPIENT_ALGORITHM = "RSAES_OAEP_SHA_256"


def short_directory(prefix: str) -> Path:
    """A new directory under the system temporary directory (socket paths must fit sun_path)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


class EmulatedNsm:
    """The emulated NSM in this process; attests to whatever measurements it is given."""

    def __init__(self, pki: TestPki, socket_dir: Path, *, instance_role_arn: str = INSTANCE_ROLE_ARN) -> None:
        self.pki = pki
        self.instance_role_arn = instance_role_arn
        self.service = NsmService(pki, socket_dir)
        self._enclaves: dict[tuple[EnclaveMeasurements, str, bool], str] = {}

    @property
    def trusted_root(self) -> Any:
        """The test PKI's root certificate: what a verifier (the KMS front) trusts."""
        return self.pki.root.certificate

    @property
    def pcr3(self) -> str:
        """PCR3 of an enclave on an instance with the configured role."""
        return pcr3_for_role_arn(self.instance_role_arn)

    def start(self) -> None:
        self.service.start()

    def stop(self) -> None:
        self.service.stop()

    def _enclave(self, measurements: EnclaveMeasurements, pcr3: str | None, debug_mode: bool) -> str:
        pcr3 = pcr3 or self.pcr3
        key = (measurements, pcr3, debug_mode)
        enclave_id = self._enclaves.get(key)
        if enclave_id is None:
            enclave_id = f"fixture-{len(self._enclaves)}"
            # Any local process may call it: the fixture's callers are the test and its children.
            self.service.register_enclave(
                enclave_id, measurements, pcr3=pcr3, debug_mode=debug_mode, peer=AnyProcess()
            )
            self._enclaves[key] = enclave_id
        return enclave_id

    def attest(
        self,
        measurements: EnclaveMeasurements = EXAMPLE_MEASUREMENTS,
        *,
        public_key: bytes | None = None,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        pcr3: str | None = None,
        debug_mode: bool = False,
    ) -> bytes:
        """A signed attestation document (COSE_Sign1) of an enclave with ``measurements``."""
        enclave_id = self._enclave(measurements, pcr3, debug_mode)
        return self.service.attestation(enclave_id, public_key=public_key, user_data=user_data, nonce=nonce)

    def socket_for(
        self, measurements: EnclaveMeasurements = EXAMPLE_MEASUREMENTS, *, pcr3: str | None = None
    ) -> Path:
        """The NSM socket of an enclave with ``measurements`` (for ``VAULT_NSM=uds:<path>``)."""
        enclave_id = self._enclave(measurements, pcr3, False)
        return self.service.socket_dir / f"nsm-{enclave_id}.sock"

    def verify(self, document: bytes) -> AttestationDocument:
        """``document`` checked as KMS checks it: chain to the root, signature, freshness."""
        return verify_document(
            document, self.trusted_root, now=dt.datetime.now(dt.UTC), max_age=DEFAULT_MAX_DOCUMENT_AGE
        )


@contextmanager
def emulated_nsm(pki: TestPki | None = None) -> Iterator[EmulatedNsm]:
    directory = short_directory("nsm-")
    nsm = EmulatedNsm(pki or TestPki.create(), directory)
    nsm.start()
    try:
        yield nsm
    finally:
        nsm.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Recipient:
    """An RSA key pair and the document that carries its public key: KMS's ``Recipient``."""

    private_key: rsa.RSAPrivateKey
    document: bytes

    @property
    def parameter(self) -> dict[str, Any]:
        """The ``Recipient`` argument of boto3's ``decrypt``, ``generate_data_key``, ..."""
        return {"AttestationDocument": self.document, "KeyEncryptionAlgorithm": RECIPIENT_ALGORITHM}

    def open(self, ciphertext_for_recipient: bytes) -> bytes:
        """The plaintext in a response's ``CiphertextForRecipient`` (CMS EnvelopedData)."""
        return open_enveloped_data(ciphertext_for_recipient, self.private_key)


def recipient_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_key_der(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@dataclass
class AttestedKms:
    """The KMS attestation front over moto; keys whose policies name measured PCRs."""

    front: KmsFront
    nsm: EmulatedNsm
    moto_url: str
    _session: Any = field(default_factory=boto3.session.Session, repr=False)

    def _client(self, url: str, access_key: str, secret: str) -> Any:
        return self._session.client(
            "kms",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
        )

    @property
    def client(self) -> Any:
        """A boto3 KMS client, signed as the instance role, talking to the front."""
        return self._client(self.front.endpoint_url, INSTANCE_ACCESS_KEY, INSTANCE_SECRET)

    def policy(
        self, measurements: EnclaveMeasurements, template: KeyPolicySpec = DEFAULT_KEY_POLICY
    ) -> dict[str, Any]:
        """``template`` (by default: the instance role, only with PCR0-3 attested) for ``measurements``."""
        return template.render(
            policy_values(
                measurements,
                pcr3=self.nsm.pcr3,
                account_id=ACCOUNT_ID,
                region=REGION,
                instance_role_arn=self.nsm.instance_role_arn,
            )
        )

    def create_key(
        self,
        measurements: EnclaveMeasurements = EXAMPLE_MEASUREMENTS,
        *,
        policy: Mapping[str, Any] | None = None,
        **create_key_arguments: Any,
    ) -> str:
        """A new key in moto, fronted with ``policy`` (by default :meth:`policy` of ``measurements``)."""
        admin = self._client(self.moto_url, ACCOUNT_ID, "test")
        arn = str(admin.create_key(**create_key_arguments)["KeyMetadata"]["Arn"])
        self.front.set_key_policy(arn, policy if policy is not None else self.policy(measurements))
        return arn

    def recipient(self, measurements: EnclaveMeasurements = EXAMPLE_MEASUREMENTS, **attest: Any) -> Recipient:
        """A fresh RSA key and an NSM document for ``measurements`` carrying its public key."""
        private_key = recipient_key()
        return Recipient(
            private_key, self.nsm.attest(measurements, public_key=public_key_der(private_key), **attest)
        )

    @staticmethod
    def recipient_for(document: bytes, private_key: rsa.RSAPrivateKey) -> Recipient:
        """The ``Recipient`` of an NSM document already made (its public key: ``private_key``'s)."""
        return Recipient(private_key, document)


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on loopback; its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def attested_kms(nsm: EmulatedNsm, moto_url: str) -> Iterator[AttestedKms]:
    front = KmsFront(
        backend=moto_url,
        trusted_root=nsm.trusted_root,
        identities={INSTANCE_ACCESS_KEY: Identity(nsm.instance_role_arn, INSTANCE_SECRET)},
        region=REGION,
        backend_credentials=(ACCOUNT_ID, "test"),
    )
    front.start()
    try:
        yield AttestedKms(front, nsm, moto_url)
    finally:
        front.stop()


@dataclass(frozen=True)
class RunningEnclave:
    """An enclave the emulator runs from a spec."""

    spec: EnclaveSpec
    cid: int
    #: PCR0, 1, 2 and 3 as the NSM attests them (lowercase hex).
    pcrs: Mapping[int, str]
    #: The emulated vsock: one Unix socket per (CID, port).
    vsock_dir: Path
    #: The spec's KMS key (its policy names ``pcrs``) and the KMS front's endpoint.
    key_arn: str
    kms_endpoint: str
    state: EmulatorState

    @property
    def ports(self) -> tuple[int, ...]:
        return self.spec.ports

    def address(self, port: int | None = None) -> tuple[int, int]:
        """(CID, port) of the enclave; the spec's first port unless told."""
        return self.cid, self.ports[0] if port is None else port

    def connect(self, port: int | None = None, timeout: float = 5.0) -> socket.socket:
        """A stream connected to the enclave over the emulated vsock, from the parent (CID 3)."""
        cid, port = self.address(port)
        return UnixSocketTransport(self.vsock_dir, PARENT_CID).connect(cid, port, timeout)


@contextmanager
def start_nitro_enclave(spec_path: Path, state_dir: Path, **config: Any) -> Iterator[RunningEnclave]:
    """``vault-emulator up --enclave spec_path`` in ``state_dir`` (``config``: further options)."""
    emulator_config = EmulatorConfig(state_dir=state_dir, enclave_spec=spec_path, port=0, **config)
    state = lifecycle.up(emulator_config)
    try:
        facts = state.facts
        yield RunningEnclave(
            spec=emulator_config.spec,
            cid=emulator_config.enclave_cid,
            pcrs={index: str(facts[f"pcr{index}"]) for index in (0, 1, 2, 3)},
            vsock_dir=emulator_config.layout.vsock_dir,
            key_arn=str(facts.get("key_arn", "")),
            kms_endpoint=str(facts.get("kms_endpoint", "")),
            state=state,
        )
    finally:
        lifecycle.down(emulator_config.layout)
