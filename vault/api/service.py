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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
from vault.api.crypto import SSN4, SSN9, seal_fields
from vault.api.errors import (
    ApiError,
    ErrorCode,
    internal_error,
    reveal_not_allowed,
    validation_error,
    vault_not_found,
)
from vault.api.ids import new_vault_id
from vault.api.kms import KeyGenerationError, KeyPairGenerator, SigningError
from vault.api.models import (
    SCHEMA_FIELDS,
    AuditPage,
    DecryptBody,
    DecryptResult,
    DeleteBody,
    VaultFields,
    normalize_field_name,
)
from vault.api.observability import Metric, count, logger
from vault.api.parent import OutcomeUnknown, ParentClient
from vault.api.reveal_policy import RevealPlan, RevealPolicy, RevealRefused
from vault.api.store import NewVault, VaultPart, VaultRecord, VaultStore, WriteTransaction
from vault.common.authorization import DECRYPT_OPERATION, DEFAULT_LIFETIME_SECONDS, Grant, Signer, sign
from vault.common.messages import DecryptRequest
from vault.common.suites import DEFAULT_SUITE, Suite, SuiteError, suite_from_id

#: Encoding version written by this API: DynamoDB Binary ``enc || ct`` (decision D5).
BINARY_ENCODING_VERSION = 2
#: What a decrypt reads besides the fields: the suite, the encrypted key and the encoding.
_DECRYPT_PARTS = frozenset({VaultPart.SUITE, VaultPart.PRIVATE_KEY, VaultPart.ENCODING})


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

    # -- writes ---------------------------------------------------------------------

    def create(self, body: VaultFields) -> str:
        vault_id = new_vault_id()
        try:
            key_pair = self.key_pairs.generate(vault_id)
        except KeyGenerationError as exc:
            logger.error("Key pair generation failed", extra={"error_code": str(exc)})
            raise ApiError(502, ErrorCode.KEY_GENERATION_FAILED, "Unable to create the vault's key") from exc
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
        )
        txn = self.store.transaction()
        txn.put_vault(vault)
        self._audit(txn, AuditRecord(AuditEventType.CREATE, vault_id, now, fields=list(sealed)))
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
        now = self.clock()
        txn = self.store.transaction()
        txn.update_vault(vault_id, modified_micros=now, fields=sealed)
        self._audit(txn, AuditRecord(AuditEventType.UPDATE, vault_id, now, fields=list(sealed)))
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
            txn.update_vault(vault_id, modified_micros=now, remove=names)
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

    def _ask_parent(
        self, audit: AuditRecord, request: DecryptRequest, prepared: _PreparedDecrypt
    ) -> DecryptResult:
        try:
            # Signed only now, after the pending record is committed: no authorization
            # exists for a decrypt that has no record.
            reply = self.parent.decrypt(self._authorize(audit, request))
        except OutcomeUnknown as exc:
            self._complete_audit(replace(audit, outcome=UNKNOWN, error_code=exc.code.value))
            raise
        except ApiError as exc:
            self._complete_audit(replace(audit, outcome=exc.code.value))
            raise
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
