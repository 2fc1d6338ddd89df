"""The emulated key-release path in one object: NSM service, KMS front and vsock-proxy.

What an enclave needs outside itself to obtain a vault key -- an NSM that attests to the
image it runs, a vsock-proxy on (CID 3, port 8000), and behind it the KMS attestation
front in front of an AWS backend -- wired over one emulated vsock directory.
:meth:`KeyReleaseStack.enclave_env` is the environment that points an enclave's
``KmsKeyDecryptor.from_env`` at it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.aws.kms.front import DEFAULT_MAX_DOCUMENT_AGE, Identity, KmsFront
from emulator.aws.upstream import Upstream
from emulator.nitro.nsm import NsmService
from emulator.nitro.pki import TestPki
from emulator.nitro.preload import Preload, preload_for
from emulator.nitro.vsock_proxy import VsockProxy
from vault.common.transport import DEFAULT_ENCLAVE_CID, TransportConfig


def enclave_service_env(
    *,
    vsock_dir: Path,
    nsm_socket: Path | str,
    enclave_cid: int = DEFAULT_ENCLAVE_CID,
    devices: bool = False,
) -> dict[str, str]:
    """What the enclave service needs to reach its NSM and, through the vsock-proxy, KMS.

    The emulator's enclave component and :class:`KeyReleaseStack` both launch enclaves
    with exactly this (plus the sandbox's base environment). With ``devices`` the enclave
    keeps its production configuration (``/dev/nsm``, ``AF_VSOCK``): the preload library
    (:func:`device_preload`) leads both to ``nsm_socket`` and ``vsock_dir``.
    """
    if devices:
        location: dict[str, str] = {}
    else:
        transport = TransportConfig(kind="uds", uds_dir=vsock_dir, local_cid=enclave_cid)
        location = {**transport.as_env(), "VAULT_NSM": f"uds:{nsm_socket}"}
    return {
        **location,
        # A free loopback port for the in-enclave bridge; boto3 speaks plain HTTP to it.
        "VAULT_KMS_BRIDGE": "127.0.0.1:0",
        "VAULT_KMS_ENDPOINT": "http://127.0.0.1:{port}",
    }


def device_preload(
    cache_dir: Path, *, vsock_dir: Path, nsm_socket: Path | str, enclave_cid: int = DEFAULT_ENCLAVE_CID
) -> Preload:
    """The preload library and mapping of an enclave in device mode (see :mod:`emulator.nitro.preload`)."""
    return preload_for(cache_dir, vsock_dir=vsock_dir, local_cid=enclave_cid, nsm_socket=Path(nsm_socket))


@dataclass
class KeyReleaseStack:
    pki: TestPki
    nsm: NsmService
    front: KmsFront
    proxy: VsockProxy
    vsock_dir: Path

    @classmethod
    def start(
        cls,
        *,
        backend: Upstream | str,
        runtime_dir: Path,
        pki: TestPki,
        identities: Mapping[str, Identity | str],
        key_policies: Mapping[str, Mapping[str, Any]] | None = None,
        region: str = "us-east-1",
        backend_credentials: tuple[str, str] = ("123456789012", "test"),
        max_document_age: dt.timedelta = DEFAULT_MAX_DOCUMENT_AGE,
    ) -> KeyReleaseStack:
        vsock_dir = Path(runtime_dir) / "vsock"
        front = KmsFront(
            backend=backend,
            trusted_root=pki.root.certificate,
            identities=identities,
            key_policies=key_policies,
            region=region,
            backend_credentials=backend_credentials,
            max_document_age=max_document_age,
        )
        front.start()
        nsm = NsmService(pki, Path(runtime_dir) / "nsm")
        proxy = VsockProxy.over_uds(vsock_dir, ("127.0.0.1", front.port))
        try:
            nsm.start()
            proxy.start()
        except Exception:
            front.stop()
            nsm.stop()
            raise
        return cls(pki=pki, nsm=nsm, front=front, proxy=proxy, vsock_dir=vsock_dir)

    def enclave_env(self, nsm_socket: Path, *, enclave_cid: int = DEFAULT_ENCLAVE_CID) -> dict[str, str]:
        """Environment for an enclave whose NSM socket is ``nsm_socket``."""
        return enclave_service_env(vsock_dir=self.vsock_dir, nsm_socket=nsm_socket, enclave_cid=enclave_cid)

    def stop(self) -> None:
        self.proxy.stop()
        self.nsm.stop()
        self.front.stop()

    def __enter__(self) -> KeyReleaseStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
