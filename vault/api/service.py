"""What each route does (spec 1.4, 1.7, 1.9 with decisions D1, D2, D5, D6, D7, D10, D14).

The service holds its collaborators explicitly (store, key pair generator, parent
client, clock) so the same code runs in Lambda, in the emulator and under test. Every
method reads what it needs, then writes everything in one transaction. It sees typed
records (:class:`~vault.api.store.VaultRecord`, :class:`~vault.api.audit.AuditRecord`);
how they are laid out in DynamoDB is the store's business.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from vault.api import rotation
from vault.api.audit import (
    PARTIAL_SUCCESS,
    PENDING,
    REMOVE_FIELDS_REASON,
    SUCCESS,
    UNKNOWN,
    AuditEventType,
    AuditRecord,
    Caller,
    InvalidTokenError,
    decode_token,
    encode_token,
)
from vault.api.batch import BatchEntry, batch_result
from vault.api.blind_index import BlindIndex
from vault.api.crypto import SSN4, SSN9, seal_fields
from vault.api.errors import (
    ApiError,
    ErrorCode,
    internal_error,
    reveal_not_allowed,
    search_not_allowed,
    validation_error,
    vault_not_found,
)
from vault.api.ids import new_vault_id
from vault.api.kms import KeyGenerationError, KeyPairGenerator, SigningError, VaultKeyPair
from vault.api.models import (
    SCHEMA_FIELDS,
    SEARCHABLE_FIELDS,
    AuditPage,
    DecryptBatchBody,
    DecryptBatchResult,
    DecryptBody,
    DecryptResult,
    DeleteBody,
    RotateBody,
    SearchBody,
    SearchResult,
    VaultFields,
    VaultRotated,
    normalize_field_name,
)
from vault.api.observability import Metric, count, logger
from vault.api.parent import OutcomeUnknown, ParentClient, reply_failure
from vault.api.reveal_policy import RevealPlan, RevealPolicy, RevealRefused
from vault.api.store import NewVault, RotatedVault, VaultPart, VaultRecord, VaultStore, WriteTransaction
from vault.common.authorization import DECRYPT_OPERATION, DEFAULT_LIFETIME_SECONDS, Grant, Signer, sign
from vault.common.blind_index import HMAC_FUNCTION, SEARCH_TARGET
from vault.common.messages import DecryptRequest, EnclaveReply
from vault.common.rotation import NEW_PUBLIC_KEY, ROTATE_OPERATION, RotationError, api_secret, new_reply_key
from vault.common.suites import DEFAULT_SUITE, Suite, SuiteError, suite_from_id
from vault.infra.table import index_attribute

#: Encoding version written by this API: DynamoDB Binary ``enc || ct`` (decision D5).
BINARY_ENCODING_VERSION = 2
#: What a decrypt reads besides the fields: the suite, the encrypted key and the encoding.
_DECRYPT_PARTS = frozenset({VaultPart.SUITE, VaultPart.PRIVATE_KEY, VaultPart.ENCODING})
#: A rotation reads everything it replaces, to write only if all of it is unchanged.
_ROTATE_PARTS = frozenset(VaultPart)


def now_micros() -> int:
    return time.time_ns() // 1000


def field_missing(name: str) -> str:
    return f"[{name}] field not present in vault"


def new_request_id() -> str:
    """A decrypt's own id: unique per attempt (API Gateway's id repeats in replayed test events)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class _PreparedDecrypt:
    """What a decrypt sends the parent (``None``: nothing to send) and what it already knows."""

    request: DecryptRequest | None
    data: dict[str, Any]
    errors: list[str]


@dataclass(frozen=True)
class _RotationInputs:
    """What a rotation knows before it asks the parent: the vault's current key, the new one."""

    current: Suite
    public_key: ec.EllipticCurvePublicKey
    encrypted_private_key: bytes
    suite: Suite
    key_pair: VaultKeyPair


@dataclass
class VaultService:
    store: VaultStore
    key_pairs: KeyPairGenerator
    parent: ParentClient
    region: str
    audit_retention_days: int | None = None
    clock: Callable[[], int] = now_micros
    request_ids: Callable[[], str] = new_request_id
    #: Signs each decrypt's authorization (decision D16); ``None``: decrypts go unsigned.
    authorizer: Signer | None = None
    authorization_lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    #: Who may receive which fields and expressions; ``None``: every caller may ask for anything.
    reveal_policy: RevealPolicy | None = None
    #: Blind-index tokens and search (``SEARCH_INDEX``); ``None``: nothing is indexed.
    blind_index: BlindIndex | None = None

    # -- writes ---------------------------------------------------------------------

    def create(self, body: VaultFields) -> str:
        vault_id = new_vault_id()
        try:
            key_pair = self.key_pairs.generate(vault_id)
        except KeyGenerationError as exc:
            logger.error("Key pair generation failed", extra={"error_code": str(exc)})
            raise ApiError(502, ErrorCode.KEY_GENERATION_FAILED, "Unable to create the vault's key") from exc
        # Tokens first: a vault is never written without the tokens of its searchable fields.
        tokens, index_request_id = self._index_tokens(vault_id, body.provided())
        now = self.clock()
        sealed = seal_fields(DEFAULT_SUITE, key_pair.public_key, vault_id, body.provided())
        vault = NewVault(
            vault_id=vault_id,
            suite_id=DEFAULT_SUITE.suite_id,
            public_key=key_pair.public_key,
            encrypted_private_key=key_pair.encrypted_private_key,
            encoding_version=BINARY_ENCODING_VERSION,
            created_micros=now,
            fields=sealed,
            index_tokens=tokens,
        )
        txn = self.store.transaction()
        txn.put_vault(vault)
        self._audit(
            txn,
            AuditRecord(
                AuditEventType.CREATE, vault_id, now, fields=list(sealed), request_id=index_request_id
            ),
        )
        self.store.commit(txn)
        count(Metric.VAULT_CREATE)
        logger.info("Vault created", extra={"vault_id": vault_id, "field_names": list(sealed)})
        return vault_id

    def update(self, vault_id: str, body: VaultFields) -> None:
        record = self._require(vault_id, parts={VaultPart.PUBLIC_KEY, VaultPart.SUITE})
        values = body.provided()
        if not values:
            return
        if record.public_key is None:
            logger.error("Vault has no public key", extra={"vault_id": vault_id})
            raise internal_error(ErrorCode.VAULT_CORRUPT)
        sealed = seal_fields(self._suite(record), record.public_key, vault_id, values)
        tokens, index_request_id = self._index_tokens(vault_id, values)
        now = self.clock()
        txn = self.store.transaction()
        # Sealed to the key read above: a rotation committed since makes this a 409, not a lost field.
        txn.update_vault(
            vault_id, modified_micros=now, fields=sealed, sealed_for=record.public_key, index_tokens=tokens
        )
        self._audit(
            txn,
            AuditRecord(
                AuditEventType.UPDATE, vault_id, now, fields=list(sealed), request_id=index_request_id
            ),
        )
        self.store.commit(txn)
        count(Metric.VAULT_UPDATE)
        logger.info("Vault updated", extra={"vault_id": vault_id, "field_names": list(sealed)})

    def delete(self, vault_id: str, body: DeleteBody) -> None:
        now = self.clock()
        txn = self.store.transaction()
        if body.delete_all:
            txn.delete_vault(vault_id)
            self._audit(txn, AuditRecord(AuditEventType.DELETE, vault_id, now))
        elif body.fields:
            names = list(body.fields)
            # ssn4 is derived from ssn9 (spec 1.4); keeping it would keep part of the SSN.
            if SSN9 in names and SSN4 not in names:
                names.append(SSN4)
            # A removed field's token goes with it: search must not find a value no longer held.
            tokens = [index_attribute(name) for name in names if name in SEARCHABLE_FIELDS]
            txn.update_vault(
                vault_id, modified_micros=now, remove=names + (tokens if self.blind_index else [])
            )
            self._audit(
                txn,
                AuditRecord(AuditEventType.UPDATE, vault_id, now, fields=names, reason=REMOVE_FIELDS_REASON),
            )
        else:
            # DeleteBody refuses a body that names nothing; one built around it gets the same 422.
            raise validation_error(details={"errors": [{"loc": ["body"], "type": "nothing_to_delete"}]})
        self.store.commit(txn)
        count(Metric.VAULT_DELETE)
        logger.info(
            "Vault deleted" if body.delete_all else "Vault fields removed", extra={"vault_id": vault_id}
        )

    def forget(self, vault_id: str, caller: Caller | None = None) -> None:
        """Delete the whole vault item: every field and the encrypted private key stored with them.

        One conditional write with the ``ForgetVault`` record (the caller, no names or
        values), so a missing vault is 404 and writes nothing, and a second forget is 404.
        The vault's earlier audit records stay: they hold names and principals, no values.
        """
        caller = caller or Caller()
        txn = self.store.transaction()
        txn.delete_vault(vault_id)
        self._audit(
            txn,
            AuditRecord(
                AuditEventType.FORGET,
                vault_id,
                self.clock(),
                principal=caller.principal,
                gateway_request_id=caller.gateway_request_id,
            ),
        )
        self.store.commit(txn)
        count(Metric.VAULT_DELETE)
        logger.info("Vault forgotten", extra={"vault_id": vault_id})

    # -- reads ----------------------------------------------------------------------

    def presence(self, vault_id: str, fields_query: str | None) -> dict[str, bool]:
        """``{field: stored?}`` for the schema fields named in ``fields_query`` (others are ignored)."""
        requested = [normalize_field_name(name) for name in (fields_query or "").split(",")]
        names = list(dict.fromkeys(name for name in requested if name in SCHEMA_FIELDS))
        record = self._require(vault_id, names)
        return {name: name in record.fields for name in names}

    def audit(self, vault_id: str, limit: int, next_token: str | None) -> AuditPage:
        after = None
        if next_token is not None:
            try:
                after = decode_token(next_token)
            except InvalidTokenError as exc:
                raise ApiError(422, ErrorCode.INVALID_NEXT_TOKEN, "next_token is not valid") from exc
        entries, last = self.store.query_audit(vault_id, limit, after)
        # The log outlives its vault (a deleted vault's history stays readable); an id
        # with neither a vault nor any history is unknown.
        if not entries and after is None:
            self._require(vault_id)
        return AuditPage(
            events=[entry.to_event() for entry in entries],
            next_token=encode_token(last) if last is not None else None,
        )

    def decrypt(self, vault_id: str, body: DecryptBody, caller: Caller | None = None) -> DecryptResult:
        """Decrypt ``body.fields`` of the vault for ``caller``.

        Every attempt past the existence check is audited, failures included (D2). One
        that asks the parent is audited first (D16): the ``Pending`` record is committed
        before the request leaves, so a failed audit write means no request at all, and
        it is completed with the outcome afterwards.
        """
        names = list(body.fields)
        caller = caller or Caller()
        plan, refused = self._plan(caller, body)
        record = self._require(vault_id, plan.opened, parts=_DECRYPT_PARTS)
        request_id = self.request_ids()
        audit = AuditRecord(
            AuditEventType.DECRYPT,
            vault_id,
            self.clock(),
            fields=names,
            reason=body.reason,
            outcome=PENDING,
            principal=caller.principal,
            expressions=list(body.expressions),
            request_id=request_id,
            gateway_request_id=caller.gateway_request_id,
        )
        try:
            if refused is not None:
                # Refused before anything is signed or sent; the refusal is audited like any failure.
                raise reveal_not_allowed(refused.fields, refused.expressions)
            prepared = self._prepare_decrypt(record, plan.opened, body.expressions)
        except ApiError as exc:
            self._write_audit(replace(audit, outcome=exc.code.value))
            raise
        if prepared.request is None:
            result = DecryptResult(data=prepared.data, errors=prepared.errors)
            self._write_audit(replace(audit, outcome=PARTIAL_SUCCESS if result.errors else SUCCESS))
        else:
            self._write_audit(audit)
            result = self._ask_parent(audit, prepared.request, prepared)
        if plan.inputs_only:
            # Opened for the expressions only: their plaintext never leaves the API.
            hidden = frozenset(plan.inputs_only)
            result = DecryptResult(
                data={key: value for key, value in result.data.items() if key not in hidden},
                errors=result.errors,
            )
        count(Metric.VAULT_DECRYPT)
        logger.info(
            "Vault decrypted",
            extra={"vault_id": vault_id, "field_names": names, "error_count": len(result.errors)},
        )
        return result

    # -- batch decrypt --------------------------------------------------------------

    def decrypt_batch(self, body: DecryptBatchBody, caller: Caller | None = None) -> DecryptBatchResult:
        """Decrypt several vaults for ``caller``: one read, one audit write, one parent call.

        Each vault is decided as :meth:`decrypt` decides it alone (same reveal policy, same
        existence check, same audit record with its own request id, same authorization),
        and ends as that vault's data or that vault's error. Every ``Pending`` record is
        committed, in one transaction, before the parent is asked; a failure of the whole
        exchange fails the request, and completes every pending record with it.
        """
        caller = caller or Caller()
        entries = []
        for vault in body.vaults:
            decrypt_body = vault.decrypt_body(body.reason)
            plan, refused = self._plan(caller, decrypt_body)
            entries.append(BatchEntry(vault.id, decrypt_body, plan, refused))
        wanted = [(entry.vault_id, entry.plan.opened) for entry in entries]
        records = self.store.get_vaults(wanted, _DECRYPT_PARTS)
        txn = self.store.transaction()
        for entry in entries:
            self._start_batch_entry(txn, entry, records.get(entry.vault_id), caller)
        # Pending records and the final records of entries that need no parent, together.
        self.store.commit(txn)
        waiting = [entry for entry in entries if entry.waiting]
        if waiting:
            self._ask_parent_batch(waiting)
        for entry in entries:
            if entry.error is None:
                count(Metric.VAULT_DECRYPT)
        logger.info(
            "Vaults decrypted in a batch",
            extra={
                "vault_ids": [entry.vault_id for entry in entries],
                "failed": sum(1 for entry in entries if entry.error is not None),
                "sent": len(waiting),
            },
        )
        return batch_result(entries)

    def _start_batch_entry(
        self, txn: WriteTransaction, entry: BatchEntry, record: VaultRecord | None, caller: Caller
    ) -> None:
        """Audit ``entry`` (pending, or final when it ends here) and prepare its parent request."""
        if record is None:
            # As the single decrypt: an unknown vault is refused before anything is audited.
            entry.fail(vault_not_found())
            return
        audit = AuditRecord(
            AuditEventType.DECRYPT,
            entry.vault_id,
            self.clock(),
            fields=list(entry.body.fields),
            reason=entry.body.reason,
            outcome=PENDING,
            principal=caller.principal,
            expressions=list(entry.body.expressions),
            request_id=self.request_ids(),
            gateway_request_id=caller.gateway_request_id,
        )
        entry.audit = audit
        try:
            if entry.refused is not None:
                raise reveal_not_allowed(entry.refused.fields, entry.refused.expressions)
            prepared = self._prepare_decrypt(record, entry.plan.opened, entry.body.expressions)
        except ApiError as exc:
            entry.fail(exc)
            self._audit(txn, entry.completed())
            return
        entry.data, entry.errors = prepared.data, prepared.errors
        if prepared.request is None:
            entry.finish_locally()
            self._audit(txn, entry.completed())
            return
        entry.request = prepared.request
        self._audit(txn, audit)

    def _ask_parent_batch(self, waiting: Sequence[BatchEntry]) -> None:
        """One parent call for every waiting entry; then every pending record is completed."""
        try:
            # Signed only now, after the pending records are committed, each under its own
            # request id: an authorization covers its own vault's request and nothing else.
            signed = [self._authorize(entry.pending(), entry.sent()) for entry in waiting]
            replies = self.parent.decrypt_batch(signed)
        except OutcomeUnknown as exc:
            self._complete_audits(
                [replace(entry.pending(), outcome=UNKNOWN, error_code=exc.code.value) for entry in waiting]
            )
            raise
        except ApiError as exc:
            self._complete_audits([replace(entry.pending(), outcome=exc.code.value) for entry in waiting])
            raise
        for entry, reply in zip(waiting, replies, strict=True):
            failure = reply_failure(reply)
            if failure is None:
                entry.answer(reply)
            else:
                entry.fail(failure)
        self._complete_audits([entry.completed() for entry in waiting])

    def _complete_audits(self, records: Sequence[AuditRecord]) -> None:
        """Every outcome in one transaction; like :meth:`_complete_audit`, a failure is logged."""
        txn = self.store.transaction()
        for record in records:
            txn.complete_audit(record, pending=PENDING)
        try:
            self.store.commit(txn)
        except ApiError as exc:
            logger.error(
                "Audit outcomes not recorded",
                extra={
                    "vault_ids": [record.vault_id for record in records],
                    "request_ids": [record.request_id for record in records],
                    "code": exc.code.value,
                },
            )

    # -- search (blind-index tokens) ------------------------------------------------

    def search(self, body: SearchBody, caller: Caller | None = None) -> SearchResult:
        """Ids of the vaults whose ``body.field`` holds ``body.value``, found by its blind-index token.

        Audited like a decrypt: a ``SearchVaults`` record (caller, field name, reason,
        request id; never the value) is committed ``Pending`` before the enclave is asked
        for the token, and completed with the outcome afterwards.
        """
        index = self._search_index()
        caller = caller or Caller()
        audit = AuditRecord(
            AuditEventType.SEARCH,
            SEARCH_TARGET,
            self.clock(),
            fields=[body.field],
            reason=body.reason,
            outcome=PENDING,
            principal=caller.principal,
            request_id=self.request_ids(),
            gateway_request_id=caller.gateway_request_id,
        )
        policy = self.reveal_policy
        if policy is not None and not policy.may_search(caller.principal, body.reason, body.field):
            self._write_audit(replace(audit, outcome=ErrorCode.SEARCH_NOT_ALLOWED.value))
            raise search_not_allowed(body.field)
        try:
            request = index.request(SEARCH_TARGET, {body.field: body.value}, self.region)
        except ApiError as exc:
            self._write_audit(replace(audit, outcome=exc.code.value))
            raise
        self._write_audit(audit)
        reply = self._ask_audited(audit, request)
        try:
            token = index.tokens(reply, [body.field])[body.field]
            hits = index.query(body.field, token)
        except ApiError as exc:
            self._complete_audit(replace(audit, outcome=exc.code.value))
            raise
        self._complete_audit(replace(audit, outcome=SUCCESS))
        logger.info(
            "Vaults searched",
            extra={
                "field_names": [body.field],
                "result_count": len(hits.vault_ids),
                "truncated": hits.truncated,
            },
        )
        return SearchResult(ids=hits.vault_ids, truncated=hits.truncated)

    def _index_parameters(self, expressions: Mapping[str, str]) -> dict[str, str] | None:
        """The index key for a decrypt whose expressions call ``hmac_sha256`` (signed with it)."""
        if self.blind_index is None or not any(HMAC_FUNCTION in text for text in expressions.values()):
            return None
        return self.blind_index.decrypt_parameters()

    def _search_index(self) -> BlindIndex:
        if self.blind_index is None:
            raise ApiError(404, ErrorCode.SEARCH_NOT_ENABLED, "Search is not enabled in this deployment")
        return self.blind_index

    def _index_tokens(self, vault_id: str, values: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
        """The tokens of the searchable ones of ``values`` for a write of ``vault_id``, and the
        request id they were asked under (the write's audit record carries it)."""
        if self.blind_index is None:
            return {}, None
        searchable = {name: value for name, value in values.items() if name in SEARCHABLE_FIELDS}
        if not searchable:
            return {}, None
        request = self.blind_index.request(vault_id, searchable, self.region)
        request_id = self.request_ids()
        # The record only lends its request id to the authorization; the write's own record follows.
        signing = AuditRecord(AuditEventType.UPDATE, vault_id, self.clock(), request_id=request_id)
        reply = self.parent.decrypt(self._authorize(signing, request))
        return self.blind_index.tokens(reply, list(searchable)), request_id

    # -- key rotation ---------------------------------------------------------------

    def rotate(self, vault_id: str, body: RotateBody, caller: Caller | None = None) -> VaultRotated:
        """Re-seal every field of the vault under a new key pair, or change nothing.

        Audited as a decrypt is (D16): the ``Pending`` record (caller, reason, field names)
        is committed before the parent is asked. The enclave answers ciphertexts under the
        new public key and a proof over them (:mod:`vault.common.rotation`); they, the new
        key pair, suite and encoding and the record's completion are written in one
        transaction that holds only if the vault is still as it was read, so a concurrent
        write makes the rotation 409 and nothing changes.
        """
        caller = caller or Caller()
        record = self._require(vault_id, SCHEMA_FIELDS, parts=_ROTATE_PARTS)
        audit = AuditRecord(
            AuditEventType.ROTATE,
            vault_id,
            self.clock(),
            fields=list(record.fields),
            reason=body.reason,
            outcome=PENDING,
            principal=caller.principal,
            request_id=self.request_ids(),
            gateway_request_id=caller.gateway_request_id,
        )
        try:
            if self.reveal_policy is not None and not self.reveal_policy.may_rotate(
                caller.principal, body.reason
            ):
                raise ApiError(
                    403,
                    ErrorCode.ROTATION_NOT_ALLOWED,
                    "The reveal policy does not allow this caller to rotate",
                )
            inputs = self._rotation_inputs(record, body)
        except ApiError as exc:
            self._write_audit(replace(audit, outcome=exc.code.value))
            raise
        if record.fields:
            self._write_audit(audit)
            sealed = self._reseal(audit, record, inputs)
        else:
            sealed = {}
        rotated = RotatedVault(
            read=record,
            absent=[name for name in SCHEMA_FIELDS if name not in record.fields],
            suite_id=inputs.suite.suite_id,
            public_key=inputs.key_pair.public_key,
            encrypted_private_key=inputs.key_pair.encrypted_private_key,
            encoding_version=BINARY_ENCODING_VERSION,
            # Strictly later than the time read, whatever the clock says.
            modified_micros=max(self.clock(), (record.modified_micros or 0) + 1),
            fields=sealed,
        )
        txn = self.store.transaction()
        txn.rotate_vault(rotated)
        if record.fields:
            txn.complete_audit(replace(audit, outcome=SUCCESS), pending=PENDING)
        else:
            # Nothing to re-seal: no parent call, so the record is written with the change.
            self._audit(txn, replace(audit, outcome=SUCCESS))
        try:
            self.store.commit(txn)
        except ApiError as exc:
            failed = replace(audit, outcome=exc.code.value)
            if record.fields:
                self._complete_audit(failed)
            else:
                self._write_audit(failed)
            raise
        count(Metric.VAULT_ROTATE)
        logger.info(
            "Vault key rotated",
            extra={"vault_id": vault_id, "field_names": list(record.fields), "suite": inputs.suite.name},
        )
        return VaultRotated(id=vault_id, suite=inputs.suite.name)

    def _rotation_inputs(self, record: VaultRecord, body: RotateBody) -> _RotationInputs:
        """The vault's current suite and key, the target suite and a new key pair; or the refusal."""
        if record.public_key is None or record.encrypted_private_key is None or record.suite_id is None:
            logger.error("Vault has no key or suite", extra={"vault_id": record.vault_id})
            raise internal_error(ErrorCode.VAULT_CORRUPT)
        current = self._suite(record)
        try:
            public_key = rotation.vault_public_key(current, record.public_key)
            suite = rotation.target_suite(body.suite, current)
        except ValueError as exc:
            logger.error("Vault key does not load", extra={"vault_id": record.vault_id})
            raise internal_error(ErrorCode.VAULT_CORRUPT) from exc
        try:
            key_pair = self.key_pairs.generate(record.vault_id)
        except KeyGenerationError as exc:
            logger.error("Key pair generation failed", extra={"error_code": str(exc)})
            raise ApiError(
                502, ErrorCode.KEY_GENERATION_FAILED, "Unable to create the vault's new key"
            ) from exc
        return _RotationInputs(current, public_key, record.encrypted_private_key, suite, key_pair)

    def _reseal(self, audit: AuditRecord, record: VaultRecord, inputs: _RotationInputs) -> dict[str, bytes]:
        """The enclave's re-sealed fields, checked against its proof; the audit is completed on failure."""
        reply_key, reply_key_wire = new_reply_key(inputs.current)
        parameters = rotation.parameters(inputs.key_pair.public_key, inputs.suite, reply_key_wire)
        version = record.encoding_version
        request = DecryptRequest(
            vault_id=record.vault_id,
            region=self.region,
            fields={
                # A legacy hex value travels as stored; the enclave decides per value (D5).
                name: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
                for name, value in record.fields.items()
            },
            suite_id=base64.b64encode(inputs.current.suite_id).decode("ascii"),
            encrypted_private_key=base64.b64encode(inputs.encrypted_private_key).decode("ascii"),
            encoding=str(version) if version is not None else None,
            operation=ROTATE_OPERATION,
            parameters=parameters,
        )
        reply = self._ask_audited(audit, request)
        try:
            return rotation.check_reply(
                reply.fields,
                sent=list(record.fields),
                suite=inputs.suite,
                secret=api_secret(reply_key, inputs.public_key),
                vault_id=record.vault_id,
                new_public_key=parameters[NEW_PUBLIC_KEY],
            )
        except RotationError as exc:
            # The message names the check, never a value.
            logger.error("Rotation answer refused", extra={"vault_id": record.vault_id, "error": str(exc)})
            error = ApiError(
                502,
                ErrorCode.ROTATION_PROOF_INVALID,
                "The rotation's answer could not be verified; nothing was changed",
            )
            self._complete_audit(replace(audit, outcome=error.code.value))
            raise error from exc

    # -- helpers --------------------------------------------------------------------

    def _plan(self, caller: Caller, body: DecryptBody) -> tuple[RevealPlan, RevealRefused | None]:
        """What to open for ``body``, and the policy's refusal if it allows less than asked."""
        asked = RevealPlan(plaintext=tuple(body.fields), inputs_only=())
        if self.reveal_policy is None:
            return asked, None
        try:
            plan = self.reveal_policy.plan(caller.principal, body.reason, body.fields, body.expressions)
        except RevealRefused as refused:
            return asked, refused
        return plan, None

    def _authorize(self, audit: AuditRecord, request: DecryptRequest) -> DecryptRequest:
        """``request`` with the API's signed authorization of exactly it, under the audit's request id."""
        if self.authorizer is None:
            return request
        grant = Grant.for_request(
            vault_id=request.vault_id,
            fields=request.fields,
            expressions=request.expressions or {},
            request_id=audit.request_id or "",
            issued_at=self.clock() // 1_000_000,
            lifetime_seconds=self.authorization_lifetime_seconds,
            operation=request.operation or DECRYPT_OPERATION,
            parameters=request.parameters,
        )
        try:
            signed = sign(grant, self.authorizer)
        except SigningError as exc:
            logger.error("Authorization signing failed", extra={"error_code": str(exc)})
            raise ApiError(
                502, ErrorCode.AUTHORIZATION_FAILED, "Unable to authorize the decrypt request"
            ) from exc
        return request.model_copy(update={"authorization": signed.to_wire()})

    def _ask_audited(self, audit: AuditRecord, request: DecryptRequest) -> EnclaveReply:
        """Sign ``request`` under ``audit`` (already committed as pending) and send it.

        Signed only now, after the pending record is committed: no authorization exists for
        a request that has no record. A failure completes the record (``Unknown`` when the
        request went out and no answer came) and is raised.
        """
        try:
            return self.parent.decrypt(self._authorize(audit, request))
        except OutcomeUnknown as exc:
            self._complete_audit(replace(audit, outcome=UNKNOWN, error_code=exc.code.value))
            raise
        except ApiError as exc:
            self._complete_audit(replace(audit, outcome=exc.code.value))
            raise

    def _ask_parent(
        self, audit: AuditRecord, request: DecryptRequest, prepared: _PreparedDecrypt
    ) -> DecryptResult:
        reply = self._ask_audited(audit, request)
        data = {**prepared.data, **(reply.fields or {})}
        result = DecryptResult(data=data, errors=[*prepared.errors, *reply.errors])
        self._complete_audit(replace(audit, outcome=PARTIAL_SUCCESS if result.errors else SUCCESS))
        return result

    def _prepare_decrypt(
        self, record: VaultRecord, names: Sequence[str], expressions: dict[str, str]
    ) -> _PreparedDecrypt:
        vault_id = record.vault_id
        if record.suite_id is None or record.encrypted_private_key is None:
            logger.error("Vault has no key or suite", extra={"vault_id": vault_id})
            raise internal_error(ErrorCode.VAULT_CORRUPT)
        wire: dict[str, str] = {}
        errors: list[str] = []
        for name in names:
            value = record.fields.get(name)
            if value is None:
                # D1: reported, not sent (the parent refuses null values).
                errors.append(field_missing(name))
            elif isinstance(value, bytes):
                wire[name] = base64.b64encode(value).decode("ascii")
            else:
                # A legacy hex value: the enclave decides per field from the value's shape (D5).
                wire[name] = value
        data: dict[str, Any] = dict.fromkeys(names)
        if not wire and not expressions:
            return _PreparedDecrypt(request=None, data=data, errors=errors)
        version = record.encoding_version
        request = DecryptRequest(
            vault_id=vault_id,
            region=self.region,
            fields=wire,
            suite_id=base64.b64encode(record.suite_id).decode("ascii"),
            encrypted_private_key=base64.b64encode(record.encrypted_private_key).decode("ascii"),
            expressions=expressions or None,
            encoding=str(version) if version is not None else None,
            parameters=self._index_parameters(expressions),
        )
        return _PreparedDecrypt(request=request, data=data, errors=errors)

    def _write_audit(self, record: AuditRecord) -> None:
        txn = self.store.transaction()
        self._audit(txn, record)
        self.store.commit(txn)

    def _complete_audit(self, record: AuditRecord) -> None:
        """Record the outcome on the ``Pending`` record; a failure here never hides the outcome.

        The pending record already names the caller and the fields, which is what must
        exist before a reveal, so a lost completion is logged rather than raised: raising
        would turn an answered decrypt into an error the client retries (a second reveal).
        """
        txn = self.store.transaction()
        txn.complete_audit(record, pending=PENDING)
        try:
            self.store.commit(txn)
        except ApiError as exc:
            logger.error(
                "Audit outcome not recorded",
                extra={"vault_id": record.vault_id, "request_id": record.request_id, "code": exc.code.value},
            )

    def _audit(self, txn: WriteTransaction, record: AuditRecord) -> None:
        txn.put_audit(record, self.audit_retention_days)

    def _require(
        self, vault_id: str, fields: Sequence[str] = (), parts: Collection[VaultPart] = ()
    ) -> VaultRecord:
        record = self.store.get_vault(vault_id, fields, parts)
        if record is None:
            raise vault_not_found()
        return record

    def _suite(self, record: VaultRecord) -> Suite:
        # Seal with the vault's own suite: the enclave opens every field with it.
        if record.suite_id is None:
            return DEFAULT_SUITE
        try:
            return suite_from_id(record.suite_id)
        except SuiteError as exc:
            logger.error("Vault has an unknown suite", extra={"vault_id": record.vault_id})
            raise internal_error(ErrorCode.VAULT_CORRUPT) from exc
