"""Stateful property: the API behaves like a dictionary of vaults, and never logs a field value.

A Hypothesis ``RuleBasedStateMachine`` creates, updates, removes fields from, deletes,
forgets, reads, decrypts, rotates, searches and audits vaults through the real handler (moto for
DynamoDB and KMS, the project's enclave request handler behind a parent double), and keeps a model: the
stored values per vault and the audit trail. After every step the vault the step
touched is read back with GET and decrypted in full, and both must agree with the model.
Across the whole run, no stored value may appear in any log record or printed output.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from unit.api.harness import ApiHarness, api_harness

from property.api.strategies import field_name_spellings, vault_fields
from vault.api.models import SCHEMA_FIELDS

SSN9, SSN4 = "ssn9", "ssn4"
NOT_FOUND = {"statusCode": 404, "code": "VaultNotFound", "message": "Vault not found"}
AuditEntry = tuple[str, str | None, list[str], str]


def sealed_names(values: Iterable[str]) -> list[str]:
    """Field names a create or update writes: the given ones, plus ssn4 derived from ssn9."""
    given = set(values)
    return [name for name in SCHEMA_FIELDS if name in given or (name == SSN4 and SSN9 in given)]


@dataclass
class Observed:
    """Every value stored during the run (to look for in the logs afterwards)."""

    values: set[str] = field(default_factory=set)


class VaultMachine(RuleBasedStateMachine):
    api: ApiHarness
    observed: Observed

    vaults = Bundle("vaults")

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, dict[str, str]] = {}
        self.deleted: set[str] = set()
        self.audit_log: dict[str, list[AuditEntry]] = {}
        self.touched: str | None = None

    # -- helpers ---------------------------------------------------------------------

    def _remember(self, vault_id: str, values: dict[str, str]) -> None:
        self.observed.values.update(values.values())
        stored = self.stored[vault_id]
        stored.update(values)
        if SSN9 in values and SSN4 not in values:
            stored[SSN4] = values[SSN9][-4:]

    def _log(self, vault_id: str, entry: AuditEntry) -> None:
        self.audit_log.setdefault(vault_id, []).append(entry)

    def _expect_missing(self, response_status: int, body: object) -> None:
        assert (response_status, body) == (404, NOT_FOUND)

    def _decrypt(self, vault_id: str, names: list[str], reason: str) -> None:
        response = self.api.call(
            "POST", f"/vaults/{vault_id}/decrypt", body={"fields": names, "reason": reason}
        )
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert response.status == 200, response.text
        wanted = list(dict.fromkeys(name.strip().lower() for name in names))
        stored = self.stored[vault_id]
        missing = [name for name in wanted if name not in stored]
        assert response.json == {
            "data": {name: stored.get(name) for name in wanted},
            "errors": [f"[{name}] field not present in vault" for name in missing],
        }
        self._log(vault_id, ("DecryptVault", reason, wanted, "PartialSuccess" if missing else "Success"))

    # -- rules -----------------------------------------------------------------------

    @rule(target=vaults, fields=vault_fields())
    def create(self, fields: tuple[dict[str, str], dict[str, str]]) -> str:
        body, values = fields
        response = self.api.call("POST", "/vaults", body=body)
        assert response.status == 200, response.text
        vault_id: str = response.json["id"]
        assert vault_id not in self.stored
        self.stored[vault_id] = {}
        self._remember(vault_id, values)
        self._log(vault_id, ("CreateVault", None, sealed_names(values), "Success"))
        self.touched = vault_id
        return vault_id

    @rule(vault_id=vaults, fields=vault_fields())
    def update(self, vault_id: str, fields: tuple[dict[str, str], dict[str, str]]) -> None:
        body, values = fields
        response = self.api.call("PATCH", f"/vaults/{vault_id}", body=body)
        self.touched = vault_id
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert (response.status, response.json) == (200, {})
        self._remember(vault_id, values)
        if values:
            self._log(vault_id, ("UpdateVault", None, sealed_names(values), "Success"))

    @rule(
        vault_id=vaults,
        names=st.lists(st.sampled_from(SCHEMA_FIELDS), min_size=1, max_size=4),
        data=st.data(),
    )
    def delete_fields(self, vault_id: str, names: list[str], data: st.DataObject) -> None:
        spelled = [data.draw(field_name_spellings(name)) for name in names]
        response = self.api.call("DELETE", f"/vaults/{vault_id}", body={"fields": spelled})
        self.touched = vault_id
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert (response.status, response.json) == (200, {})
        removed = list(dict.fromkeys(names))
        if SSN9 in removed and SSN4 not in removed:
            removed.append(SSN4)
        for name in removed:
            self.stored[vault_id].pop(name, None)
        self._log(vault_id, ("UpdateVault", "RemoveFields", removed, "Success"))

    @rule(vault_id=vaults)
    def delete_all(self, vault_id: str) -> None:
        response = self.api.call("DELETE", f"/vaults/{vault_id}", body={"delete_all": True})
        self.touched = vault_id
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert (response.status, response.json) == (200, {})
        self.deleted.add(vault_id)
        del self.stored[vault_id]
        self._log(vault_id, ("DeleteVault", None, [], "Success"))

    @rule(vault_id=vaults)
    def forget(self, vault_id: str) -> None:
        response = self.api.call("DELETE", f"/vaults/{vault_id}", query={"forget": "true"})
        self.touched = vault_id
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert (response.status, response.json) == (200, {})
        # The whole item, the encrypted private key with the fields.
        assert self.api.vault_item(vault_id) is None
        self.deleted.add(vault_id)
        del self.stored[vault_id]
        self._log(vault_id, ("ForgetVault", None, [], "Success"))

    @rule(vault_id=vaults, names=st.lists(st.sampled_from(SCHEMA_FIELDS), max_size=5), data=st.data())
    def get(self, vault_id: str, names: list[str], data: st.DataObject) -> None:
        query = ",".join(data.draw(field_name_spellings(name)) for name in names)
        response = self.api.call("GET", f"/vaults/{vault_id}", query={"fields": query} if query else None)
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert response.status == 200, response.text
        stored = self.stored[vault_id]
        assert response.json == {name: name in stored for name in dict.fromkeys(names)}

    @rule(
        vault_id=vaults,
        names=st.lists(st.sampled_from(SCHEMA_FIELDS), max_size=6),
        reason=st.text(max_size=20),
        data=st.data(),
    )
    def decrypt(self, vault_id: str, names: list[str], reason: str, data: st.DataObject) -> None:
        self._decrypt(vault_id, [data.draw(field_name_spellings(name)) for name in names], reason)

    @rule(vault_id=vaults, reason=st.text(max_size=20))
    def rotate(self, vault_id: str, reason: str) -> None:
        """A new key pair and new ciphertexts; the values stay (the read-back decrypts them all)."""
        before = self.api.vault_item(vault_id)
        response = self.api.call("POST", f"/vaults/{vault_id}/rotate", body={"reason": reason})
        self.touched = vault_id
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
            return
        assert (response.status, response.json) == (200, {"id": vault_id, "suite": "P384_SHA384_AES256GCM"})
        after = self.api.vault_item(vault_id)
        assert before is not None and after is not None
        names = [name for name in SCHEMA_FIELDS if name in self.stored[vault_id]]
        for attribute in ("_pk", "_sk", *names):
            assert after[attribute] != before[attribute], attribute
        self._log(vault_id, ("RotateVault", reason, names, "Success"))

    @rule(
        vault_ids=st.lists(vaults, min_size=1, max_size=4, unique=True),
        names=st.lists(st.sampled_from(SCHEMA_FIELDS), max_size=4),
        reason=st.text(max_size=20),
        unknown=st.booleans(),
    )
    def decrypt_batch(self, vault_ids: list[str], names: list[str], reason: str, unknown: bool) -> None:
        """Several vaults at once: each answers as its single decrypt would, each audited on its own."""
        asked = [*vault_ids, *(["v_neverCreated0"] if unknown else [])]
        response = self.api.call(
            "POST",
            "/vaults/decrypt",
            body={"reason": reason, "vaults": [{"id": vault_id, "fields": names} for vault_id in asked]},
        )
        assert response.status == 200, response.text
        results = response.json["results"]
        assert [result["id"] for result in results] == asked
        wanted = list(dict.fromkeys(names))
        for vault_id, result in zip(asked, results, strict=True):
            if vault_id not in self.stored:
                assert (result["error"]["status"], result["error"]["code"]) == (404, "VaultNotFound")
                continue
            stored = self.stored[vault_id]
            missing = [name for name in wanted if name not in stored]
            assert result == {
                "id": vault_id,
                "data": {name: stored.get(name) for name in wanted},
                "errors": [f"[{name}] field not present in vault" for name in missing],
            }
            self._log(vault_id, ("DecryptVault", reason, wanted, "PartialSuccess" if missing else "Success"))
            self.touched = vault_id

    @rule(vault_id=vaults, limit=st.integers(1, 4))
    def audit(self, vault_id: str, limit: int) -> None:
        events: list[AuditEntry] = []
        token: str | None = None
        while True:
            query = {"limit": str(limit), **({"next_token": token} if token else {})}
            response = self.api.call("GET", f"/vaults/{vault_id}/audit", query=query)
            assert response.status == 200, response.text
            page = response.json
            assert len(page["events"]) <= limit
            events.extend((e["event"], e["reason"], e["fields"], e["outcome"]) for e in page["events"])
            token = page["next_token"]
            if token is None:
                break
        assert events == list(reversed(self.audit_log[vault_id]))

    @rule(field=st.sampled_from(("ssn9", "email")), data=st.data())
    def search(self, field: str, data: st.DataObject) -> None:
        """``POST /vaults/search`` finds exactly the live vaults holding the value (e-mail: any case)."""

        def normalized(value: str) -> str:
            return value.strip().lower() if field == "email" else value.strip()

        held = sorted(
            {
                values[field]
                for vault_id, values in self.stored.items()
                if vault_id not in self.deleted and field in values and values[field].strip()
            }
        )
        fresh = "000000000" if field == "ssn9" else "nobody@search.example"
        value = data.draw(st.sampled_from([*held, fresh]), label="value")
        response = self.api.call(
            "POST", "/vaults/search", body={"field": field, "value": value, "reason": "model search"}
        )
        assert response.status == 200, response.text
        expected = sorted(
            vault_id
            for vault_id, values in self.stored.items()
            if vault_id not in self.deleted
            and field in values
            and normalized(values[field]) == normalized(value)
        )
        assert response.json == {"ids": expected, "truncated": False}

    # -- after every step ------------------------------------------------------------

    @invariant()
    def touched_vault_agrees_with_the_model(self) -> None:
        if self.touched is None:
            return
        vault_id, self.touched = self.touched, None
        response = self.api.call("GET", f"/vaults/{vault_id}", query={"fields": ",".join(SCHEMA_FIELDS)})
        if vault_id in self.deleted:
            self._expect_missing(response.status, response.json)
        else:
            assert response.json == {name: name in self.stored[vault_id] for name in SCHEMA_FIELDS}
        self._decrypt(vault_id, list(SCHEMA_FIELDS), "model check")


def _log_vocabulary() -> str:
    """Text the logs are made of (the API's and Powertools' own words and keys).

    A generated value that is already one of those words (``reason``, ``message``)
    shows up in every log line without having leaked, so it proves nothing either way.
    """
    import aws_lambda_powertools

    import vault.api

    roots = [Path(vault.api.__file__).parent, Path(aws_lambda_powertools.__file__).parent]
    return "\n".join(p.read_text(encoding="utf-8") for root in roots for p in root.rglob("*.py"))


def _leaks(values: set[str], text: str) -> list[str]:
    found = []
    vocabulary = _log_vocabulary()
    for value in values:
        if len(value) < 6 or value in vocabulary:
            continue
        # Digit runs are compared whole: a 9-digit SSN may occur inside a timestamp.
        pattern = rf"(?<![0-9]){re.escape(value)}(?![0-9])" if value[-1].isdigit() else re.escape(value)
        if re.search(pattern, text):
            found.append(value)
    return found


@pytest.fixture
def search_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    """The harness with signed requests and the blind index: the search rule needs both."""
    with api_harness(monkeypatch, authorizer=True, search_index=True) as harness:
        yield harness


def test_api_behaves_like_its_model(
    search_api: ApiHarness, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    api = search_api
    observed = Observed()

    class Machine(VaultMachine):
        pass

    Machine.api = api
    Machine.observed = observed
    caplog.set_level(logging.DEBUG)
    profile = settings.default
    run_state_machine_as_test(
        Machine,
        settings=settings(
            profile,
            # One example is a dozen requests plus a full read-back after each: a fifth of
            # the profile's examples keeps the default run short and scales with the profile.
            max_examples=max(5, profile.max_examples // 5),
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    captured = capsys.readouterr()
    logged = "\n".join(json.dumps(vars(record), default=str, ensure_ascii=False) for record in caplog.records)
    assert caplog.records, "the run logged nothing; the check would be vacuous"
    assert observed.values
    assert _leaks(observed.values, logged + captured.out + captured.err) == []
