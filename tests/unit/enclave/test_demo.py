"""The demo: the specification's vector and CEL transforms through the real handler."""

from __future__ import annotations

import base64
import hashlib

from tests.support import spec_demo as demo


def test_demo_constants_are_the_specification_vector(upstream):
    assert demo.VAULT_ID == upstream["vault_id"]
    assert demo.PRIVATE_KEY_PKCS8_B64 == upstream["private_key_pkcs8_b64"]
    assert demo.PUBLIC_KEY_SPKI_B64 == upstream["public_key_spki_b64"]
    assert demo.FIRST_NAME_HEX == upstream["hex_field"]["value"]
    assert base64.b64decode(demo.PUBLIC_KEY_SPKI_B64)


def test_demo_decrypts_bob_and_transforms():
    result = demo.run()
    assert result.vector.to_wire() == {"fields": {"first_name": "Bob"}, "errors": []}
    fields = result.combined.fields or {}
    assert result.combined.errors == []
    assert fields["first_name"] == "Bob"
    assert fields["dob"] == "1986-01-01" and fields["ssn9"] == "123456789"
    assert isinstance(fields["age"], int) and fields["age"] >= 39
    assert fields["ssn_masked"] == "***-**-6789"
    assert fields["ssn_sha256"] == hashlib.sha256(b"123456789").hexdigest()


def test_demo_main_prints_the_table(capsys):
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "first_name = 'Bob': ok" in out
    assert "***-**-6789" in out and "errors: none" in out
