"""``python -m tests.support.spec_demo``: the upstream vault's test vector through the real handler.

1. Decrypts the upstream specification's legacy hex vector (section 2.5: vault
   ``v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL``, field ``first_name``, plaintext ``Bob``) with the
   specification's PKCS#8 key, through :class:`~vault.enclave.handler.RequestHandler`.
   The key reaches the handler as KMS would deliver it, via the
   :class:`~tests.support.enclave_keys.LocalKeyDecryptor` test double.
2. Seals two more fields (``dob``, ``ssn9``) to the same key with the project's HPKE, in
   the binary encoding the API writes today, and decrypts all three in one request with
   CEL transforms, so a legacy and a current field share a vault (decision D5).

The values are the specification's published test data and invented demo data. The demo
runs from a checkout, not from the enclave image: it needs the test double.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass

from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common.messages import EnclaveReply
from vault.common.suites import P384_SHA384_AES256GCM
from vault.enclave.encoding import ENCODING_HEX
from vault.enclave.handler import RequestHandler

VAULT_ID = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
PRIVATE_KEY_PKCS8_B64 = (
    "MIG/AgEAMBAGByqGSM49AgEGBSuBBAAiBIGnMIGkAgEBBDCt+Ad+qIiVIK4e/tj6u+boZ63IAgT2ZttR14ZGjL3XLjNC//WNJcFy"
    "NSOGDt2kNE+gBwYFK4EEACKhZANiAASMfDcAvCD3J8in7EzaM6hNvkQD+S6C0H2hI7biRlkHMXcIjZ/7LVNQ2+VMlFAWV8ESbahT"
    "0wKiYLNreDvPIDFJOZyzfURR/HTRtf5Vd+aEjXl9EI7XxRu6OILEfQC9afg="
)
PUBLIC_KEY_SPKI_B64 = (
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEjHw3ALwg9yfIp+xM2jOoTb5EA/kugtB9oSO24kZZBzF3CI2f+y1TUNvlTJRQFlfBEm2o"
    "U9MComCza3g7zyAxSTmcs31EUfx00bX+VXfmhI15fRCO18UbujiCxH0AvWn4"
)
FIRST_NAME_HEX = (
    "04cebfe3667db3305777774f14a7ed4f26ce90b2d68935a30f9b086dc915e6ede23e6dfdde7aaf34dc34cd964c76f94bc91ba99e"
    "db3707281862c990c54782eace8c687770d72d4c714d4edd239e010facfb7c3d5c168b14d9040194059529f5e6"
    "#80c10441ae55442775bc5d1b0b8465eaaaa33b"
)
EXPECTED_FIRST_NAME = "Bob"
DEMO_FIELDS = {"dob": "1986-01-01", "ssn9": "123456789"}
EXPRESSIONS = {
    "age": "date(dob).age()",
    "ssn_masked": "'***-**-' + ssn9.substring(5)",
    "ssn_sha256": "sha256(ssn9)",
}


@dataclass(frozen=True)
class DemoRun:
    vector: EnclaveReply  # the hex vector alone
    combined: EnclaveReply  # vector + sealed fields + expressions
    sources: dict[str, str]  # output name -> where its value came from


def _vault_key(decryptor: LocalKeyDecryptor) -> VaultKey:
    blob = decryptor.encrypt_private_key(base64.b64decode(PRIVATE_KEY_PKCS8_B64), VAULT_ID)
    return VaultKey(VAULT_ID, P384_SHA384_AES256GCM, base64.b64decode(PUBLIC_KEY_SPKI_B64), blob)


def run() -> DemoRun:
    decryptor = LocalKeyDecryptor()
    key = _vault_key(decryptor)
    handler = RequestHandler(decryptor)

    vector = handler.handle_request(key.request({"first_name": FIRST_NAME_HEX}, encoding=ENCODING_HEX))

    fields = {"first_name": FIRST_NAME_HEX}
    fields.update({name: key.seal_field(name, value) for name, value in DEMO_FIELDS.items()})
    combined = handler.handle_request(key.request(fields, expressions=EXPRESSIONS))

    sources = {"first_name": "spec 2.5 vector (legacy hex)"}
    sources.update({name: "sealed here (binary)" for name in DEMO_FIELDS})
    sources.update(EXPRESSIONS)
    return DemoRun(vector, combined, sources)


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render(result: DemoRun) -> str:
    out = [f"vault {VAULT_ID}, suite {P384_SHA384_AES256GCM}", ""]
    got = (result.vector.fields or {}).get("first_name")
    verdict = "ok" if got == EXPECTED_FIRST_NAME else f"MISMATCH (expected {EXPECTED_FIRST_NAME!r})"
    out.append(f"spec 2.5 hex vector -> first_name = {got!r}: {verdict}")
    out.append("")
    reply = result.combined
    if reply.is_global_failure:
        out.append(f"combined request refused ({reply.code}): {'; '.join(reply.errors)}")
        return "\n".join(out)
    rows = [("output", "from", "value")]
    for name, value in (reply.fields or {}).items():
        rows.append((name, result.sources.get(name, ""), "null" if value is None else str(value)))
    out.append(_table(rows))
    out.append("")
    out.append("errors: " + ("; ".join(reply.errors) if reply.errors else "none"))
    return "\n".join(out)


def main() -> int:
    result = run()
    print(render(result))
    ok = (result.vector.fields or {}).get("first_name") == EXPECTED_FIRST_NAME
    return 0 if ok and not result.combined.is_global_failure else 1


if __name__ == "__main__":
    sys.exit(main())
