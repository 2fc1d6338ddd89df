"""A workload with distinctive canary values, and what the API answered to it.

Every field value is random and unique to the run, so finding one anywhere (a log line, a
table attribute, an error message) can only mean it leaked there. The workload writes,
updates, reads, decrypts (with CEL transforms, some of which fail on the canaries), rotates the key,
removes fields, reads the audit trail and sends invalid requests that carry canaries.
Every response is recorded.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from emulator.tools.client import VaultClient

#: Values shorter than this (country, ssn4) are too short to search for without false hits.
MIN_SEARCHABLE = 8
#: Response keys that would mean stored internals (keys, ciphertexts, table keys) came back.
INTERNAL_KEYS = frozenset(
    {"_sk", "_pk", "_hs", "_ct", "_mt", "_v", "_id", "pk", "sk", "encrypted_private_key", "suite_id"}
)
#: Expressions that fail on a name-like value; their errors must not quote it.
FAILING_EXPRESSIONS = {
    "as_int": "int(first_name)",
    "as_date": "date(last_name)",
    "hex": "hex_decode(city)",
    "b64": "base64_decode(address1)",
    "plus_one": "first_name + 1",
    "age_of_name": "date(first_name).age()",
}
TRANSFORMS = {
    "upper": "first_name.to_uppercase()",
    "digest": "sha256(email)",
    "b64_email": "base64_encode(email)",
    "masked": '"***-**-" + ssn4',
    "age": "date(dob).age()",
    "joined": "first_name + ' ' + last_name",
}


class RecordingSession(requests.Session):
    """A ``requests`` session that keeps every response it received."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[requests.Response] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        self.responses.append(response)
        return response


def _token(rng: random.Random, size: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def canary_fields(rng: random.Random) -> dict[str, str]:
    """One value per schema field, each distinctive (letters and digits nobody else writes)."""
    tag = _token(rng, 10)
    digits = "".join(rng.choice(string.digits) for _ in range(9))
    return {
        "email": f"cnry.{tag.lower()}@example.org",
        "first_name": f"Cnryfirst{tag}",
        "middle_name": f"Cnrymiddle{tag}",
        "last_name": f"Cnrylast{tag}",
        "phone_number": "+1" + "".join(rng.choice(string.digits) for _ in range(12)),
        "ssn9": digits,
        "dob": f"18{rng.randint(10, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address1": f"{rng.randint(100, 999)} Cnrystreet{tag}",
        "address2": f"Cnryflat{tag}",
        "address3": f"Cnrybuilding{tag}",
        "city": f"Cnrycity{tag}",
        "state": f"Cnrystate{tag}",
        "postal_code": f"CN {tag}",
        "country": "".join(rng.choice(string.ascii_uppercase) for _ in range(2)),
    }


@dataclass
class Workload:
    vault_ids: list[str] = field(default_factory=list)
    #: Every plaintext written, plus every decrypted value and expression output seen.
    secrets: set[str] = field(default_factory=set)
    responses: list[requests.Response] = field(default_factory=list)

    def searchable(self) -> list[str]:
        return sorted(value for value in self.secrets if len(value) >= MIN_SEARCHABLE)


def encodings_of_text(value: str) -> list[str]:
    """The value and the forms a careless log line would print it in."""
    raw = value.encode("utf-8")
    return [value, value.upper(), value.lower(), base64.b64encode(raw).decode("ascii"), raw.hex()]


def encodings_of_blob(blob: bytes) -> list[str]:
    """A binary value as text in every common encoding, whole and as an aligned prefix."""
    prefix = blob[:30]
    forms = []
    for part in (blob, prefix):
        std = base64.b64encode(part).decode("ascii")
        forms += [
            std,
            std.rstrip("="),
            base64.urlsafe_b64encode(part).decode("ascii").rstrip("="),
            part.hex(),
        ]
    forms.append(prefix.hex().upper())
    return forms


def find_texts(needles: Iterable[str], haystack: str) -> list[str]:
    """The needles found in the haystack; digit strings only as whole digit runs."""
    found = []
    for needle in needles:
        if needle.isdigit():
            if re.search(rf"(?<![0-9]){re.escape(needle)}(?![0-9])", haystack):
                found.append(needle)
        elif needle in haystack:
            found.append(needle)
    return found


def json_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from json_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_keys(item)


def run_workload(client: VaultClient, rng: random.Random | None = None) -> Workload:
    """Drive every route with canary values; assert the answers as it goes."""
    rng = rng or random.Random(secrets.randbits(64))
    work = Workload()
    first = canary_fields(rng)
    second = canary_fields(rng)
    work.secrets.update(first.values(), second.values())

    vault_id = client.create({name: value for name, value in first.items() if name != "middle_name"})
    other_id = client.create({"first_name": second["first_name"], "ssn9": second["ssn9"]})
    work.vault_ids += [vault_id, other_id]
    updated = {"middle_name": second["middle_name"], "city": second["city"], "ssn9": second["ssn9"]}
    client.update(vault_id, updated)
    current = {**first, **updated, "ssn4": second["ssn9"][-4:]}

    presence = client.get(vault_id, ["first_name", "middle_name", "_sk", "pk", "ssn4"])
    assert presence == {"first_name": True, "middle_name": True, "ssn4": True}

    names = [name for name in current if name != "country"]
    plain = client.decrypt(vault_id, names, reason="security workload: read back")
    assert plain.errors == []
    assert plain.data == {name: current[name] for name in names}

    transformed = client.decrypt(
        vault_id,
        ["first_name", "last_name", "email", "ssn4", "dob", "city", "address1"],
        reason="security workload: transforms",
        expressions={**TRANSFORMS, **FAILING_EXPRESSIONS},
    )
    for name in FAILING_EXPRESSIONS:
        assert transformed.data[name] is None, name
        assert any(error.startswith(f"[{name}] ") for error in transformed.errors), name
    assert transformed.data["upper"] == current["first_name"].upper()
    work.secrets.update(str(value) for value in transformed.data.values() if isinstance(value, str))
    # Error texts describe the rule that failed, never the value it failed on.
    assert (
        find_texts([v for v in current.values() if len(v) >= MIN_SEARCHABLE], "\n".join(transformed.errors))
        == []
    )

    # A key rotation: the enclave opens and re-seals every field, and answers ciphertexts only.
    assert client.rotate(vault_id, reason="security workload: rotation")
    rotated = client.decrypt(vault_id, names, reason="security workload: after rotation")
    assert rotated.data == plain.data

    client.delete_fields(vault_id, ["address2", "ssn9"])
    gone = client.decrypt(
        vault_id, ["address2", "ssn9", "ssn4", "first_name"], reason="security workload: removed"
    )
    assert gone.data == {"address2": None, "ssn9": None, "ssn4": None, "first_name": current["first_name"]}
    assert client.audit_trail(vault_id)[0].event == "CreateVault"

    # Refused inputs that carry canaries: the refusal names the field and rule only.
    bad_bodies: list[tuple[str, str, Any]] = [
        (
            "POST",
            "/vaults",
            {"phone_number": "call " + second["phone_number"], "first_name": second["first_name"]},
        ),
        ("POST", "/vaults", {"ssn9": second["ssn9"] + "0", "last_name": second["last_name"]}),
        ("PATCH", f"/vaults/{vault_id}", {"dob": second["address1"], "city": second["city"]}),
        ("PATCH", f"/vaults/{vault_id}", {"first_name": second["state"] * 80}),
        ("POST", "/vaults", {"first_name": second["address3"], "surname": second["postal_code"]}),
        ("POST", "/vaults", {"country": second["email"]}),
    ]
    for method, path, body in bad_bodies:
        response = client.request(method, path, json_body=body)
        assert response.status_code == 422, (method, path, response.status_code, response.text)
        assert find_texts(work.searchable(), response.text) == []
    malformed = '{"first_name": "' + second["address2"] + '", '
    response = client.session.request(
        "POST",
        client.base_url + "/vaults",
        data=malformed.encode(),
        headers=_signed_headers(client, "POST", client.base_url + "/vaults", malformed.encode()),
        timeout=client.timeout,
    )
    assert response.status_code == 422, response.text
    assert find_texts(work.searchable(), response.text) == []

    client.delete(other_id)
    if isinstance(client.session, RecordingSession):
        work.responses = list(client.session.responses)
    return work


def _signed_headers(client: VaultClient, method: str, url: str, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    return client.signer.sign(method, url, body, headers) if client.signer is not None else headers


def response_json(response: requests.Response) -> Any:
    try:
        return json.loads(response.text)
    except ValueError:
        return None
