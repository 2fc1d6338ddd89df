"""vsock transports: the Unix-socket emulation and configuration from the environment."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest

from vault.common.framing import read_frame, write_frame
from vault.common.transport import (
    ENCLAVE_PORT,
    KMS_PROXY_PORT,
    PARENT_CID,
    VMADDR_CID_ANY,
    AfVsockTransport,
    TransportConfig,
    TransportError,
    UnixSocketTransport,
)


@pytest.fixture
def uds_dir():
    # Unix socket paths are limited to 107 bytes: keep the directory short.
    with tempfile.TemporaryDirectory(prefix="vsock-") as path:
        yield Path(path)


def test_constants():
    assert (ENCLAVE_PORT, KMS_PROXY_PORT, PARENT_CID, VMADDR_CID_ANY) == (5050, 8000, 3, 0xFFFFFFFF)


def test_uds_round_trip(uds_dir):
    enclave = UnixSocketTransport(uds_dir, local_cid=16)
    parent = UnixSocketTransport(uds_dir, local_cid=PARENT_CID)
    listener = enclave.listen(ENCLAVE_PORT)
    listener.settimeout(5)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            write_frame(conn, read_frame(conn)[::-1])

    server = threading.Thread(target=serve)
    server.start()
    try:
        with parent.connect(16, ENCLAVE_PORT, timeout=5) as sock:
            write_frame(sock, b"hello")
            assert read_frame(sock) == b"olleh"
    finally:
        server.join(5)
        listener.close()
    assert not server.is_alive()


def test_uds_path_per_cid_and_port(uds_dir):
    transport = UnixSocketTransport(uds_dir, local_cid=16)
    assert transport.path_for(VMADDR_CID_ANY, 5050) == uds_dir / "vsock-16-5050.sock"
    assert transport.path_for(3, 8000) == uds_dir / "vsock-3-8000.sock"
    assert transport.describe(VMADDR_CID_ANY, 5050).startswith("vsock://16:5050")


def test_uds_listen_replaces_stale_socket_file(uds_dir):
    transport = UnixSocketTransport(uds_dir, local_cid=16)
    transport.listen(7000).close()
    assert transport.path_for(16, 7000).exists()
    listener = transport.listen(7000)
    listener.close()


def test_uds_connect_to_nobody_fails_cleanly(uds_dir):
    transport = UnixSocketTransport(uds_dir, local_cid=3)
    with pytest.raises(TransportError, match="cannot connect to vsock://16:5050"):
        transport.connect(16, 5050, timeout=1)


def test_af_vsock_describe_only():
    # Never connect: this machine has no vsock loopback and CIDs 1-3 reach the hypervisor.
    assert AfVsockTransport().describe(16, 5050) == "vsock://16:5050"


def test_config_defaults_to_vsock():
    config = TransportConfig.from_env({})
    assert config == TransportConfig(kind="vsock", uds_dir=None, local_cid=PARENT_CID)
    assert isinstance(config.create(), AfVsockTransport)


def test_config_uds_from_env(uds_dir):
    env = {
        "VAULT_VSOCK_TRANSPORT": " UDS ",
        "VAULT_VSOCK_UDS_DIR": str(uds_dir),
        "VAULT_VSOCK_LOCAL_CID": "16",
    }
    config = TransportConfig.from_env(env)
    assert (config.kind, config.uds_dir, config.local_cid) == ("uds", uds_dir, 16)
    transport = config.create()
    assert isinstance(transport, UnixSocketTransport)
    assert transport.path_for(VMADDR_CID_ANY, 1) == uds_dir / "vsock-16-1.sock"
    assert TransportConfig.from_env(config.as_env()) == config


def test_config_rejects_unknown_kind():
    with pytest.raises(ValueError, match="VAULT_VSOCK_TRANSPORT"):
        TransportConfig.from_env({"VAULT_VSOCK_TRANSPORT": "tcp"})


def test_uds_config_needs_a_directory():
    with pytest.raises(ValueError, match="VAULT_VSOCK_UDS_DIR"):
        TransportConfig.from_env({"VAULT_VSOCK_TRANSPORT": "uds"}).create()
