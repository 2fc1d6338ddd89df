"""The NSM answers only the enclave process it launched.

A process on the host that opens the running enclave's NSM socket (it is a file in the
emulator's runtime directory) gets the NSM's ``InvalidOperation`` instead of an attestation
document with the enclave's PCRs and its own public key, and the NSM logs the caller's
pid. The enclave itself keeps getting documents: decryption still works afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from e2e.security.targets import VaultTarget
from emulator.faults.catalogue import FaultController

#: A host process asking the NSM socket in argv[1] for a document with its own public key.
HOST_CALLER = """
import json, sys
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from vault.enclave.nsm import NsmError, SocketNsm

key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
try:
    document = SocketNsm(sys.argv[1], timeout=30).attestation(public_key=spki)
    print(json.dumps({"document": len(document)}))
except NsmError as exc:
    print(json.dumps({"code": exc.code}))
"""
LOG_WAIT = 10.0


def test_a_host_process_gets_invalid_operation_from_the_enclaves_nsm(vault_target: VaultTarget) -> None:
    layout = vault_target.layout("the emulator's NSM socket")
    facts = FaultController(layout).status().facts
    socket_path = Path(str(facts["nsm_socket"]))
    assert socket_path.exists()

    caller = subprocess.Popen(
        [sys.executable, "-c", HOST_CALLER, str(socket_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        output, _ = caller.communicate(timeout=60)
    finally:
        caller.kill()
        caller.wait()
    assert json.loads(output) == {"code": "InvalidOperation"}

    log = layout.log_file("supervisor")
    deadline = time.monotonic() + LOG_WAIT
    while f"nsm refused pid {caller.pid} " not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no log line names pid {caller.pid}"
        time.sleep(0.1)

    with vault_target.client() as client:
        vault_id = client.create({"first_name": "Peercheck Firstname"})
        assert client.decrypt(vault_id, ["first_name"], reason="after a host caller").data == {
            "first_name": "Peercheck Firstname"
        }
