"""``vault-emulator demo``: the vault end to end, printed for a person to read.

1. create a vault holding sample PII (encrypted field by field under the vault's key);
2. read its presence map (which fields it holds; nothing is decrypted);
3. decrypt inside the enclave with CEL transforms: age from the date of birth, a
   masked SSN, a SHA-256 digest;
4. show the audit trail;
5. relaunch the enclave from an image with changed code: its measurements no longer
   match the key policy, so KMS refuses to release the vault's key and the decrypt
   fails with a clear error code; then restore the measured image.

Starts the emulator when none is running in the state directory, and stops it again
at the end if it started it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.control import control_request
from emulator.daemon.state import EmulatorState
from emulator.tools.client import AuditReader, SigV4Signer, VaultApiError, VaultClient

SAMPLE = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone_number": "+15554443333",
    "address1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
    "dob": "1985-12-10",
    "ssn9": "123456789",
}
EXPRESSIONS = {
    "age": "date(dob).age()",
    "ssn_masked": '"***-**-" + ssn4',
    "email_sha256": "sha256(email)",
}
#: A change to the enclave's code: any byte changes PCR0 and PCR2.
CHANGED_CODE = {
    "vault/enclave/_patched.py": '"""Code that was not measured when the key policy was written."""\n'
    'EXFILTRATE = "everything"\n'
}
Printer = Callable[[str], None]


def _heading(out: Printer, number: int, text: str) -> None:
    out("")
    out(f"── {number}. {text} " + "─" * max(0, 70 - len(text)))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)


def walkthrough(state: EmulatorState, out: Printer = print) -> None:
    """Run the demo against a running emulator (raises on any unexpected answer)."""
    facts = state.facts
    signer = None
    principal = facts.get("sigv4_principal")
    if principal:
        signer = SigV4Signer(principal["access_key_id"], principal["secret_access_key"], facts["region"])
    client = VaultClient(state.api_url, signer=signer)
    layout = state.layout
    try:
        _heading(out, 1, "Create a vault with sample PII")
        out(f"POST {state.api_url}/vaults")
        out(_json(SAMPLE))
        vault_id = client.create(SAMPLE)
        out(f"→ vault id {vault_id} (each field HPKE-encrypted under the vault's own KMS key pair)")

        _heading(out, 2, "Presence map (nothing is decrypted)")
        names = [*SAMPLE, "ssn4", "middle_name"]
        out(f"GET /vaults/{vault_id}?fields={','.join(names)}")
        out(_json(client.get(vault_id, names)))

        _heading(out, 3, "Decrypt inside the enclave, transformed with CEL")
        fields = ["first_name", "dob", "ssn4", "email"]
        out(f"POST /vaults/{vault_id}/decrypt  fields={fields}")
        for name, expression in EXPRESSIONS.items():
            out(f"    {name:<13} = {expression}")
        result = client.decrypt(
            vault_id, fields, reason="demo: customer support call", expressions=EXPRESSIONS
        )
        out(_json({"data": result.data, "errors": result.errors}))

        _heading(out, 4, "Audit trail (every write and every decrypt, with its reason)")
        reader = AuditReader(
            table_name=facts["table_name"],
            endpoint_url=facts["dynamodb_endpoint"],
            region=facts["region"],
            aws_access_key_id=facts["backend_access_key_id"],
            aws_secret_access_key=facts["backend_secret_access_key"],
        )
        for event in reader.events(vault_id):
            when = dt.datetime.fromtimestamp(event.timestamp_us / 1e6, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
            detail = f"  reason={event.reason!r}" if event.reason else ""
            detail += f"  fields={event.fields}" if event.fields else ""
            out(f"    {when}  {event.event:<12}{detail}")

        _heading(out, 5, "Relaunch the enclave with changed code")
        reply = control_request(layout, {"op": "relaunch-enclave", "overrides": CHANGED_CODE})
        if not reply.get("ok"):
            raise RuntimeError(f"relaunching the enclave failed: {reply.get('error')}")
        launched = reply["result"]
        out(f"    key policy expects PCR0 {launched['policy_pcr0'][:24]}...")
        out(f"    new enclave has    PCR0 {launched['pcr0'][:24]}...")
        try:
            client.decrypt(vault_id, ["first_name"], reason="demo: changed enclave code")
        except VaultApiError as exc:
            out(f"→ refused: HTTP {exc.status} {exc.code or ''}")
            out(_json(exc.body))
        else:
            raise RuntimeError("the changed enclave was able to decrypt: attestation is not enforced")
        finally:
            restored = control_request(layout, {"op": "relaunch-enclave", "overrides": {}})
            if not restored.get("ok"):
                raise RuntimeError(f"restoring the measured enclave failed: {restored.get('error')}")
        out("    measured enclave restored")
        client.delete(vault_id)
    finally:
        client.close()


def run_demo(config: EmulatorConfig, out: Printer = print) -> int:
    layout = config.layout
    state = lifecycle.running_state(layout)
    started_here = state is None
    if state is None:
        out(f"starting the vault emulator ({config.backend} backend, {config.enclave_runtime} enclave) ...")
        try:
            state = lifecycle.up(config, echo=out)
        except lifecycle.EmulatorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        out(f"ready in {state.startup_seconds:.2f} s: {state.api_url}")
    elif state.phase != "running":
        print(f"error: the emulator in {config.state_dir} is {state.phase}", file=sys.stderr)
        return 1
    try:
        walkthrough(state, out)
    except Exception as exc:  # noqa: BLE001 - the demo reports any failure and still cleans up
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_here:
            lifecycle.down(layout)
            out("\nemulator stopped")
    out("\ndemo complete")
    return 0
