"""Stateful property of the running stack: the vault behaves like its model, through HTTP.

A Hypothesis ``RuleBasedStateMachine`` drives the API of a running emulator (moto or
LocalStack backend, the real parent and the sandboxed enclave) or of an external API:
create, update, remove fields, delete, forget, key rotations, presence reads, decrypts with generated CEL
expressions, searches by blind-index token, audit reads. The model is a dictionary of
stored plaintexts per vault plus the audit trail each vault should have. After every step,
the vault the step touched is read back (presence map, a full decrypt and its audit trail)
and must agree with the model:

* decrypt returns exactly the last written values, ``ssn4`` derived from ``ssn9`` unless
  written itself; a field the vault lacks is ``null`` with ``[name] field not present in
  vault`` (decision D1); removed fields never come back until written again; a deleted
  vault answers 404 to everything but its audit trail;
* CEL outputs and errors equal those of the same expressions evaluated in-process by
  :class:`vault.enclave.cel.CelEngine` on the model's plaintext (the oracle);
* the audit route lists one record per write and per decrypt, in order, with the event
  name, field names, reason and outcome the model expects (GET is not audited).
* a search answers every live vault of the run holding the value and none that does not
  (vaults of other tests sharing the stack may be in the answer too).

Bounded: ``max_examples`` is a seventh of the Hypothesis profile's (14 under ``ci``,
at least 5) and ``stateful_step_count`` is 12; ``VAULT_STACK_EXAMPLES`` overrides the
number of examples.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import pytest
import requests
from e2e.security.targets import VaultTarget
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from emulator.tools.client import VaultClient
from property.api.strategies import FIELD_VALUES, field_name_spellings, padded
from property.stack.cel_grammar import expression_maps
from vault.api.models import SCHEMA_FIELDS
from vault.enclave.cel import CelEngine

pytestmark = pytest.mark.e2e

SSN9, SSN4 = "ssn9", "ssn4"
NOT_FOUND = {"statusCode": 404, "code": "VaultNotFound", "message": "Vault not found"}
STEPS = 12
EXAMPLES_ENV = "VAULT_STACK_EXAMPLES"
#: (event, reason, fields, outcome), as the audit route reports a record.
AuditRecord = tuple[str, str | None, list[str], str | None]
#: Dates of birth are mostly real calendar dates, so ``date(dob).age()`` has a value.
_DOB = st.one_of(
    st.dates(dt.date(1900, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat),
    FIELD_VALUES["dob"],
)
VALUES: dict[str, st.SearchStrategy[str]] = {**FIELD_VALUES, "dob": _DOB}


@st.composite
def vault_bodies(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str]]:
    """``(request body, stored values)``; the body's strings carry whitespace padding."""
    names = draw(st.lists(st.sampled_from(SCHEMA_FIELDS), unique=True, max_size=6))
    stored = {name: draw(VALUES[name]) for name in names}
    return {name: draw(padded(value)) for name, value in stored.items()}, stored


def sealed_names(values: Iterable[str]) -> list[str]:
    """Field names a create or update writes, in schema order: the given ones, ssn4 with ssn9."""
    given = set(values)
    return [name for name in SCHEMA_FIELDS if name in given or (name == SSN4 and SSN9 in given)]


def missing(name: str) -> str:
    return f"[{name}] field not present in vault"


def normalized(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(name.strip().lower() for name in names))


def json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value))


class StackMachine(RuleBasedStateMachine):
    client: ClassVar[VaultClient]
    oracle: ClassVar[CelEngine]
    created: ClassVar[list[str]]

    vaults = Bundle("vaults")

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, dict[str, str]] = {}
        self.removed: dict[str, set[str]] = {}
        self.deleted: set[str] = set()
        self.audit_log: dict[str, list[AuditRecord]] = {}
        self.touched: str | None = None

    # -- model helpers ----------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.client.request(method, path, **kwargs)

    def _remember(self, vault_id: str, values: dict[str, str]) -> None:
        stored = self.stored[vault_id]
        stored.update(values)
        if SSN9 in values and SSN4 not in values:
            stored[SSN4] = values[SSN9][-4:]
        self.removed[vault_id] -= set(sealed_names(values))

    def _expect_missing(self, vault_id: str, method: str, path: str, body: Any = None) -> bool:
        """For a deleted vault: the call must answer 404 (and is not audited). True if deleted."""
        if vault_id not in self.deleted:
            return False
        response = self._send(method, path, json_body=body)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), (method, path)
        return True

    def _decrypt(self, vault_id: str, names: list[str], reason: str, expressions: dict[str, str]) -> None:
        path = f"/vaults/{vault_id}/decrypt"
        payload: dict[str, Any] = {"fields": names, "reason": reason}
        if expressions:
            payload["expressions"] = expressions
        if self._expect_missing(vault_id, "POST", path, payload):
            return
        response = self._send("POST", path, json_body=payload)
        assert response.status_code == 200, response.text
        wanted = normalized(names)
        stored = self.stored[vault_id]
        present = {name: stored[name] for name in wanted if name in stored}
        data: dict[str, Any] = dict.fromkeys(wanted)
        errors = [missing(name) for name in wanted if name not in stored]
        if present or expressions:
            oracle = self.oracle.evaluate(present, expressions)
            data.update(oracle.values)
            errors += oracle.errors
        assert response.json() == {"data": json_ready(data), "errors": errors}, (payload, present)
        for name in self.removed[vault_id] & set(wanted):
            if name not in expressions:
                assert response.json()["data"][name] is None and missing(name) in errors
        outcome = "PartialSuccess" if errors else "Success"
        self.audit_log[vault_id].append(("DecryptVault", reason, wanted, outcome))

    # -- rules ------------------------------------------------------------------------

    @rule(target=vaults, fields=vault_bodies())
    def create(self, fields: tuple[dict[str, str], dict[str, str]]) -> str:
        body, values = fields
        response = self._send("POST", "/vaults", json_body=body)
        assert response.status_code == 200, response.text
        vault_id: str = response.json()["id"]
        assert vault_id not in self.stored and vault_id not in self.deleted
        self.created.append(vault_id)
        self.stored[vault_id] = {}
        self.removed[vault_id] = set()
        self.audit_log[vault_id] = [("CreateVault", None, sealed_names(values), "Success")]
        self._remember(vault_id, values)
        self.touched = vault_id
        return vault_id

    @rule(vault_id=vaults, fields=vault_bodies())
    def update(self, vault_id: str, fields: tuple[dict[str, str], dict[str, str]]) -> None:
        body, values = fields
        self.touched = vault_id
        path = f"/vaults/{vault_id}"
        if self._expect_missing(vault_id, "PATCH", path, body):
            return
        response = self._send("PATCH", path, json_body=body)
        assert (response.status_code, response.json()) == (200, {}), response.text
        self._remember(vault_id, values)
        if values:
            self.audit_log[vault_id].append(("UpdateVault", None, sealed_names(values), "Success"))

    @rule(
        vault_id=vaults,
        names=st.lists(st.sampled_from(SCHEMA_FIELDS), min_size=1, max_size=4),
        data=st.data(),
    )
    def delete_fields(self, vault_id: str, names: list[str], data: st.DataObject) -> None:
        spelled = [data.draw(field_name_spellings(name)) for name in names]
        self.touched = vault_id
        path = f"/vaults/{vault_id}"
        if self._expect_missing(vault_id, "DELETE", path, {"fields": spelled}):
            return
        response = self._send("DELETE", path, json_body={"fields": spelled})
        assert (response.status_code, response.json()) == (200, {}), response.text
        removed = normalized(names)
        if SSN9 in removed and SSN4 not in removed:
            removed.append(SSN4)
        for name in removed:
            self.stored[vault_id].pop(name, None)
        self.removed[vault_id] |= set(removed)
        self.audit_log[vault_id].append(("UpdateVault", "RemoveFields", removed, "Success"))

    @rule(vault_id=vaults)
    def delete_all(self, vault_id: str) -> None:
        self.touched = vault_id
        path = f"/vaults/{vault_id}"
        if self._expect_missing(vault_id, "DELETE", path, {"delete_all": True}):
            return
        response = self._send("DELETE", path, json_body={"delete_all": True})
        assert (response.status_code, response.json()) == (200, {}), response.text
        self.deleted.add(vault_id)
        del self.stored[vault_id]
        self.audit_log[vault_id].append(("DeleteVault", None, [], "Success"))

    @rule(vault_id=vaults)
    def forget(self, vault_id: str) -> None:
        self.touched = vault_id
        path = f"/vaults/{vault_id}"
        forget = {"forget": "true"}
        if vault_id in self.deleted:
            response = self._send("DELETE", path, params=forget)
            assert (response.status_code, response.json()) == (404, NOT_FOUND), response.text
            return
        response = self._send("DELETE", path, params=forget)
        assert (response.status_code, response.json()) == (200, {}), response.text
        self.deleted.add(vault_id)
        del self.stored[vault_id]
        self.audit_log[vault_id].append(("ForgetVault", None, [], "Success"))

    @rule(
        vault_id=vaults,
        names=st.lists(st.sampled_from([*SCHEMA_FIELDS, "_sk", "pk", "_pk"]), max_size=5),
        data=st.data(),
    )
    def get(self, vault_id: str, names: list[str], data: st.DataObject) -> None:
        query = ",".join(data.draw(field_name_spellings(name)) for name in names)
        response = self._send("GET", f"/vaults/{vault_id}", params={"fields": query} if query else None)
        if vault_id in self.deleted:
            assert (response.status_code, response.json()) == (404, NOT_FOUND)
            return
        assert response.status_code == 200, response.text
        stored = self.stored[vault_id]
        expected = {name: name in stored for name in normalized(names) if name in SCHEMA_FIELDS}
        assert response.json() == expected

    @rule(
        vault_id=vaults,
        names=st.lists(st.sampled_from(SCHEMA_FIELDS), max_size=6),
        reason=st.text(max_size=20),
        data=st.data(),
    )
    def decrypt(self, vault_id: str, names: list[str], reason: str, data: st.DataObject) -> None:
        spelled = [data.draw(field_name_spellings(name)) for name in names]
        self.touched = vault_id
        self._decrypt(vault_id, spelled, reason, {})

    @rule(vault_id=vaults, reason=st.text(max_size=20))
    def rotate(self, vault_id: str, reason: str) -> None:
        """A new key for the vault: every value stays (the read-back decrypts them all)."""
        self.touched = vault_id
        path = f"/vaults/{vault_id}/rotate"
        if self._expect_missing(vault_id, "POST", path, {"reason": reason}):
            return
        response = self._send("POST", path, json_body={"reason": reason})
        assert response.status_code == 200, response.text
        assert response.json()["id"] == vault_id
        names = [name for name in SCHEMA_FIELDS if name in self.stored[vault_id]]
        self.audit_log[vault_id].append(("RotateVault", reason, names, "Success"))

    @rule(vault_id=vaults, reason=st.text(max_size=20), data=st.data())
    def transform(self, vault_id: str, reason: str, data: st.DataObject) -> None:
        """Decrypt with CEL expressions, mostly over fields the vault holds."""
        stored = self.stored.get(vault_id, {})
        held = sorted(stored) or list(SCHEMA_FIELDS)
        names = data.draw(
            st.lists(st.sampled_from(held), min_size=1, max_size=4, unique=True), label="fields"
        )
        if data.draw(st.booleans(), label="also a field it lacks"):
            names.append(data.draw(st.sampled_from(SCHEMA_FIELDS), label="other field"))
        variables = [name for name in names if name in stored] or names
        expressions = data.draw(expression_maps(variables, SCHEMA_FIELDS, min_size=1), label="expressions")
        self.touched = vault_id
        self._decrypt(vault_id, names, reason, expressions)

    @rule(field=st.sampled_from(("ssn9", "email")), data=st.data())
    def search(self, field: str, data: st.DataObject) -> None:
        """``POST /vaults/search``: of the vaults this run knows, exactly the live ones holding the value.

        The stack is shared with other tests, whose vaults may hold the same value: ids this
        run did not create are allowed in the answer, those it did are checked both ways.
        """

        def same(value: str, other: str) -> bool:
            if field == "email":
                return value.strip().lower() == other.strip().lower()
            return value.strip() == other.strip()

        held = sorted(
            {
                values[field]
                for vault_id, values in self.stored.items()
                if vault_id not in self.deleted and field in values and values[field].strip()
            }
        )
        fresh = "000000000" if field == "ssn9" else "nobody@search.example"
        value = data.draw(st.sampled_from([*held, fresh]), label="value")
        expected = {
            vault_id
            for vault_id, values in self.stored.items()
            if vault_id not in self.deleted and field in values and same(values[field], value)
        }
        known = set(self.stored)
        deadline = time.monotonic() + 10
        while True:
            body = {"field": field, "value": value, "reason": "model search"}
            response = self._send("POST", "/vaults/search", json_body=body)
            assert response.status_code == 200, response.text
            found = set(response.json()["ids"]) & known
            # The token index is eventually consistent: give it a moment to catch up.
            if found == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found == expected

    @rule(
        vault_ids=st.lists(vaults, min_size=1, max_size=4, unique=True),
        names=st.lists(st.sampled_from(SCHEMA_FIELDS), max_size=4),
        reason=st.text(max_size=20),
        data=st.data(),
    )
    def decrypt_batch(self, vault_ids: list[str], names: list[str], reason: str, data: st.DataObject) -> None:
        """``POST /vaults/decrypt``: each vault answers as its own decrypt would, audited on its own."""
        spelled = [data.draw(field_name_spellings(name)) for name in names]
        payload = {
            "reason": reason,
            "vaults": [{"id": vault_id, "fields": spelled} for vault_id in vault_ids],
        }
        response = self._send("POST", "/vaults/decrypt", json_body=payload)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [result["id"] for result in results] == vault_ids
        wanted = normalized(spelled)
        for vault_id, result in zip(vault_ids, results, strict=True):
            if vault_id in self.deleted:
                assert (result["error"]["status"], result["error"]["code"]) == (404, "VaultNotFound")
                continue
            stored = self.stored[vault_id]
            errors = [missing(name) for name in wanted if name not in stored]
            assert result == {
                "id": vault_id,
                "data": {name: stored.get(name) for name in wanted},
                "errors": errors,
            }
            self.audit_log[vault_id].append(
                ("DecryptVault", reason, wanted, "PartialSuccess" if errors else "Success")
            )
            self.touched = vault_id

    @rule(vault_id=vaults, page_size=st.integers(1, 5))
    def audit(self, vault_id: str, page_size: int) -> None:
        self._check_audit(vault_id, page_size)

    def _check_audit(self, vault_id: str, page_size: int = 100) -> None:
        trail = self.client.audit_trail(vault_id, page_size=page_size)
        assert [(e.event, e.reason, e.fields, e.outcome) for e in trail] == self.audit_log[vault_id]
        stamps = [e.timestamp for e in trail]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    # -- after every step -------------------------------------------------------------

    @invariant()
    def touched_vault_agrees_with_the_model(self) -> None:
        if self.touched is None:
            return
        vault_id, self.touched = self.touched, None
        response = self._send("GET", f"/vaults/{vault_id}", params={"fields": ",".join(SCHEMA_FIELDS)})
        if vault_id in self.deleted:
            assert (response.status_code, response.json()) == (404, NOT_FOUND)
        else:
            assert response.json() == {name: name in self.stored[vault_id] for name in SCHEMA_FIELDS}
        self._decrypt(vault_id, list(SCHEMA_FIELDS), "model check", {})
        self._check_audit(vault_id)


def examples(profile: settings | None) -> int:
    override = os.environ.get(EXAMPLES_ENV)
    base = profile.max_examples if profile is not None else 100
    return int(override) if override else max(5, base // 7)


def test_the_stack_behaves_like_its_model(vault_target: VaultTarget) -> None:
    class Machine(StackMachine):
        pass

    created: list[str] = []
    with vault_target.client() as client:
        Machine.client = client
        Machine.oracle = CelEngine()
        Machine.created = created
        profile = settings.default
        try:
            run_state_machine_as_test(
                Machine,
                settings=settings(
                    profile,
                    max_examples=examples(profile),
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=[
                        HealthCheck.function_scoped_fixture,
                        HealthCheck.too_slow,
                        HealthCheck.filter_too_much,
                    ],
                ),
            )
        finally:
            # Leave no test vaults behind (on a deployed stack, too).
            for vault_id in created:
                client.request("DELETE", f"/vaults/{vault_id}", json_body={"delete_all": True})
