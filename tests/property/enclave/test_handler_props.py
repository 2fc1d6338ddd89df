"""Request handling: arbitrary fields decrypt, arbitrary garbage gets a clean error reply."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.support.enclave_keys import LocalKeyDecryptor
from vault.common.messages import EnclaveReply
from vault.common.suites import VAULT_SUITES
from vault.enclave.handler import RequestHandler

from .strategies import field_names, field_values, malformed_payloads

DECRYPTOR = LocalKeyDecryptor()
KEYS = {suite: DECRYPTOR.create_vault_key(f"v_props_{suite.kem:x}", suite) for suite in VAULT_SUITES}
HANDLER = RequestHandler(DECRYPTOR)
VALID = KEYS[VAULT_SUITES[1]].request({"a": KEYS[VAULT_SUITES[1]].seal_field("a", "x")}).to_wire()


def assert_well_formed(reply: EnclaveReply) -> dict:
    wire = json.loads(json.dumps(reply.to_wire()))
    assert isinstance(wire["errors"], list) and all(isinstance(e, str) for e in wire["errors"])
    if "fields" not in wire:
        assert len(wire["errors"]) == 1 and wire["errors"][0]
        assert isinstance(wire["code"], str)
    return wire


@given(
    suite=st.sampled_from(VAULT_SUITES),
    values=st.dictionaries(field_names, field_values, max_size=4),
    legacy=st.booleans(),
)
def test_sealed_fields_decrypt_through_the_handler(suite, values, legacy):
    key = KEYS[suite]
    fields = {name: key.seal_field(name, value, legacy_hex=legacy) for name, value in values.items()}
    reply = HANDLER.handle(json.dumps(key.request(fields).to_wire()).encode())
    assert reply.to_wire() == {"fields": values, "errors": []}


@given(payload=malformed_payloads(VALID))
def test_malformed_requests_get_a_well_formed_reply(payload):
    reply = HANDLER.handle(payload)
    wire = assert_well_formed(reply)
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    if not (isinstance(document, dict) and {"credential", "request"} <= document.keys()):
        assert "fields" not in wire
