"""Session-wide pieces for the key-release properties (Hypothesis needs non-function fixtures)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.server import ThreadedMotoServer

from emulator.key_release import KeyReleaseStack
from emulator.pki import TestPki

ACCOUNT = "123456789012"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-instance"
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-api"
INSTANCE_KEY = "ASIAPROPINSTANCE0001"
API_KEY = "ASIAPROPAPIROLE00001"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    # One recipient key for every example: generating RSA-2048 costs ~40 ms, and which key
    # the document carries plays no part in the properties checked here.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stack() -> Iterator[KeyReleaseStack]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    directory = Path(tempfile.mkdtemp(prefix="krp-"))  # not tmp_path: sockets need short paths
    try:
        with KeyReleaseStack.start(
            backend_url=f"http://{host}:{port}",
            runtime_dir=directory,
            pki=TestPki.create(),
            identities={INSTANCE_KEY: INSTANCE_ROLE, API_KEY: API_ROLE},
        ) as started:
            yield started
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
