"""Enclave configuration from the environment, and the process entry point."""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

import vault.enclave.kms_decryptor as kms_module
from tests.support.authorization import LocalSigner, authorize
from tests.support.enclave_keys import LocalKeyDecryptor
from vault.common.authorization import authorizer_digest
from vault.common.framing import read_frame, write_frame
from vault.common.logs import VaultLogHandler
from vault.common.transport import TransportConfig, UnixSocketTransport
from vault.enclave.__main__ import main
from vault.enclave.config import ConfigError, EnclaveConfig
from vault.enclave.server import ServerConfig


def test_defaults():
    config = EnclaveConfig.from_env({})
    assert config.transport == TransportConfig()
    assert config.server == ServerConfig()
    assert (config.server.port, config.server.max_connections) == (5050, 32)
    assert config.log_level == "INFO"


def test_everything_from_env():
    env = {
        "VAULT_VSOCK_TRANSPORT": "uds",
        "VAULT_VSOCK_UDS_DIR": "vsock-dir",
        "VAULT_VSOCK_LOCAL_CID": "16",
        "VAULT_ENCLAVE_PORT": "6000",
        "VAULT_ENCLAVE_MAX_CONNECTIONS": "4",
        "VAULT_ENCLAVE_READ_TIMEOUT": "2.5",
        "VAULT_ENCLAVE_WRITE_TIMEOUT": "3",
        "VAULT_ENCLAVE_LOG_LEVEL": "debug",
    }
    config = EnclaveConfig.from_env(env)
    assert config.transport == TransportConfig(kind="uds", uds_dir=Path("vsock-dir"), local_cid=16)
    assert (config.server.port, config.server.max_connections) == (6000, 4)
    assert (config.server.read_timeout, config.server.write_timeout) == (2.5, 3.0)
    assert config.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAULT_ENCLAVE_PORT", "0"),
        ("VAULT_ENCLAVE_PORT", "99999999999"),
        ("VAULT_ENCLAVE_PORT", "http"),
        ("VAULT_ENCLAVE_MAX_CONNECTIONS", "0"),
        ("VAULT_ENCLAVE_READ_TIMEOUT", "-1"),
        ("VAULT_ENCLAVE_WRITE_TIMEOUT", "soon"),
        ("VAULT_ENCLAVE_LOG_LEVEL", "LOUD"),
        ("VAULT_VSOCK_TRANSPORT", "tcp"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        EnclaveConfig.from_env({name: value})


@pytest.fixture
def vault_log_handlers():
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, VaultLogHandler):
            root.removeHandler(handler)


class _ContextDecryptor(LocalKeyDecryptor):
    closed = False
    warmed_up = False

    def warm_up(self):
        self.warmed_up = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


def test_main_serves_until_sigterm(monkeypatch, vault_log_handlers):
    """The production entry point: an authorized request is answered, an unauthorized one refused (D16)."""
    decryptor = _ContextDecryptor()
    api = LocalSigner()
    key = decryptor.create_vault_key("v_main", authorizer=authorizer_digest(api.public_key))
    monkeypatch.setattr(
        kms_module.KmsKeyDecryptor, "from_env", classmethod(lambda cls, environ=None: decryptor)
    )
    with tempfile.TemporaryDirectory(prefix="vsock-") as directory:
        for name, value in {
            "VAULT_VSOCK_TRANSPORT": "uds",
            "VAULT_VSOCK_UDS_DIR": directory,
            "VAULT_VSOCK_LOCAL_CID": "16",
            "VAULT_ENCLAVE_PORT": "5050",
        }.items():
            monkeypatch.setenv(name, value)
        transport = UnixSocketTransport(Path(directory), local_cid=3)
        replies: list[dict] = []

        def client() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    sock = transport.connect(16, 5050, timeout=5)
                except OSError:
                    time.sleep(0.05)
                    continue
                fields = {"a": key.seal_field("a", "b")}
                authorization = authorize(api, vault_id="v_main", fields=["a"], issued_at=int(time.time()))
                with sock:
                    payload = key.request(fields, authorization=authorization.to_wire()).to_wire()
                    write_frame(sock, json.dumps(payload).encode())
                    replies.append(json.loads(read_frame(sock)))
                with transport.connect(16, 5050, timeout=5) as unauthorized:
                    write_frame(unauthorized, json.dumps(key.request(fields).to_wire()).encode())
                    replies.append(json.loads(read_frame(unauthorized)))
                break
            signal.raise_signal(signal.SIGTERM)

        previous = signal.getsignal(signal.SIGTERM)
        thread = threading.Thread(target=client)
        thread.start()
        try:
            assert main([]) == 0
        finally:
            thread.join(10)
        assert signal.getsignal(signal.SIGTERM) == previous
    assert replies[0] == {"fields": {"a": "b"}, "errors": []}
    assert replies[1]["code"] == "Unauthorized" and "fields" not in replies[1]
    assert decryptor.warmed_up
    assert decryptor.closed


def test_main_refuses_bad_configuration(monkeypatch, vault_log_handlers):
    monkeypatch.setenv("VAULT_ENCLAVE_PORT", "not-a-port")
    assert main([]) == 2


def test_main_reports_key_decryptor_setup_failure(monkeypatch, vault_log_handlers):
    def fail(cls, environ=None):
        raise FileNotFoundError("no NSM device")

    monkeypatch.setattr(kms_module.KmsKeyDecryptor, "from_env", classmethod(fail))
    assert main([]) == 1
