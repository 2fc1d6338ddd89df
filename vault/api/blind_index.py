"""The API's side of search: the deployment's index key, index requests, and the token indexes.

The index key pair is made like a vault's (KMS ``GenerateDataKeyPairWithoutPlaintext``
under the vault key, bound to :data:`~vault.common.blind_index.INDEX_KEY_ID` and the
authorizer's digest) the first time a request needs it, and stored as one configuration
item with a random deployment id. The put is conditional, so Lambdas that race to make
it agree on the one that was written first. The API holds only the public key and the
KMS ciphertext of the private key: it seals the values to index to the public key
(HPKE, ``info`` = the reserved id, ``aad`` = the field name) and cannot compute a token.

:class:`BlindIndex` builds the index request the service signs and sends, checks the
enclave's answer, and queries the token indexes. Log lines name fields and codes, never
values or tokens.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vault.api.clients import aws_error_code
from vault.api.errors import ApiError, ErrorCode, transaction_cancelled
from vault.api.kms import KeyGenerationError, KeyPairGenerator
from vault.api.observability import logger
from vault.api.parent import parent_error
from vault.api.store import storage_error
from vault.common import hpke
from vault.common.blind_index import (
    INDEX_KEY_ID,
    INDEX_OPERATION,
    PARAM_DEPLOYMENT,
    PARAM_INDEX_DEPLOYMENT,
    PARAM_INDEX_KEY,
    PARAM_SEALED,
    PARAM_TARGET,
    SEARCHABLE_FIELDS,
    TOKEN_PATTERN,
    sealed_digest,
)
from vault.common.messages import DecryptRequest, EnclaveReply
from vault.common.suites import DEFAULT_SUITE, suite_from_id
from vault.infra.table import PARTITION_KEY, config_key, index_attribute, index_name, vault_id_of

#: Most vault ids one search answers; more matches set ``truncated``.
MAX_SEARCH_RESULTS = 100
#: The encoding index inputs travel in (binary ``enc || ct``, base64).
_BINARY_ENCODING = "2"
_DEPLOYMENT_ID_BYTES = 16

_PUBLIC_KEY = "_pk"
_PRIVATE_KEY = "_sk"
_SUITE = "_hs"
_DEPLOYMENT = "_d"


@dataclass(frozen=True)
class IndexKey:
    """The deployment's index key as stored: never the private key in the clear."""

    deployment_id: str
    suite_id: bytes
    public_key: bytes = field(repr=False)
    encrypted_private_key: bytes = field(repr=False)


@dataclass(frozen=True)
class SearchHits:
    vault_ids: list[str]
    truncated: bool


def _new_deployment_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(_DEPLOYMENT_ID_BYTES)).decode("ascii").rstrip("=")


class BlindIndex:
    """The index key (made on first need), index requests and token queries; one per container."""

    def __init__(self, client: Any, table_name: str, key_pairs: KeyPairGenerator) -> None:
        self._client = client
        self._table = table_name
        self._key_pairs = key_pairs
        self._key: IndexKey | None = None
        self._lock = threading.Lock()

    # -- the key ----------------------------------------------------------------------

    def key(self) -> IndexKey:
        with self._lock:
            if self._key is None:
                self._key = self._read_key() or self._create_key()
            return self._key

    def _read_key(self) -> IndexKey | None:
        try:
            reply = self._client.get_item(
                TableName=self._table, Key=config_key(INDEX_KEY_ID), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            logger.error("GetItem of the index key failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        item = reply.get("Item")
        if item is None:
            return None
        try:
            return IndexKey(
                deployment_id=item[_DEPLOYMENT]["S"],
                suite_id=bytes(item[_SUITE]["B"]),
                public_key=bytes(item[_PUBLIC_KEY]["B"]),
                encrypted_private_key=bytes(item[_PRIVATE_KEY]["B"]),
            )
        except KeyError as exc:
            logger.error("The index key item is incomplete")
            raise ApiError(500, ErrorCode.VAULT_CORRUPT, "Internal server error") from exc

    def _create_key(self) -> IndexKey:
        try:
            pair = self._key_pairs.generate(INDEX_KEY_ID)
        except KeyGenerationError as exc:
            logger.error("Index key generation failed", extra={"error_code": str(exc)})
            raise ApiError(502, ErrorCode.KEY_GENERATION_FAILED, "Unable to create the index key") from exc
        key = IndexKey(
            deployment_id=_new_deployment_id(),
            suite_id=DEFAULT_SUITE.suite_id,
            public_key=pair.public_key,
            encrypted_private_key=pair.encrypted_private_key,
        )
        item = {
            **config_key(INDEX_KEY_ID),
            _DEPLOYMENT: {"S": key.deployment_id},
            _SUITE: {"B": key.suite_id},
            _PUBLIC_KEY: {"B": key.public_key},
            _PRIVATE_KEY: {"B": key.encrypted_private_key},
        }
        put = {
            "TableName": self._table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
        }
        try:
            # A transaction of one: the API's role may write items only inside transactions.
            self._client.transact_write_items(TransactItems=[{"Put": put}])
        except ClientError as exc:
            if aws_error_code(exc) != "TransactionCanceledException":
                logger.error("Writing the index key failed", extra={"error_code": aws_error_code(exc)})
                raise storage_error() from exc
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
            if reasons != ["ConditionalCheckFailed"]:
                # Cancelled for another reason (a conflicting write): the client retries, as for a vault.
                logger.warning("Index key write cancelled", extra={"cancellation_reasons": reasons})
                raise transaction_cancelled() from exc
            # Another container wrote its key first: every token must come from that one.
            existing = self._read_key()
            if existing is None:
                raise storage_error() from exc
            return existing
        except BotoCoreError as exc:
            logger.error("Writing the index key failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        logger.info("Index key created")
        return key

    # -- requests ---------------------------------------------------------------------

    def request(self, target: str, values: Mapping[str, str], region: str) -> DecryptRequest:
        """The index request for ``values`` (searchable fields only), unsigned."""
        key = self.key()
        suite = suite_from_id(key.suite_id)
        public_key = hpke.load_public_key(suite, key.public_key)
        info = INDEX_KEY_ID.encode("ascii")
        sealed: dict[str, str] = {}
        for name, value in values.items():
            enc, ct = hpke.seal(suite, public_key, info, name.encode("ascii"), value.encode("utf-8"))
            sealed[name] = base64.b64encode(enc + ct).decode("ascii")
        return DecryptRequest(
            vault_id=INDEX_KEY_ID,
            region=region,
            fields=sealed,
            suite_id=base64.b64encode(key.suite_id).decode("ascii"),
            encrypted_private_key=base64.b64encode(key.encrypted_private_key).decode("ascii"),
            encoding=_BINARY_ENCODING,
            operation=INDEX_OPERATION,
            parameters={
                PARAM_DEPLOYMENT: key.deployment_id,
                PARAM_TARGET: target,
                PARAM_SEALED: sealed_digest(sealed),
            },
        )

    def decrypt_parameters(self) -> dict[str, str]:
        """What a decrypt that calls ``hmac_sha256`` carries: the index key's ciphertext, the deployment."""
        key = self.key()
        return {
            PARAM_INDEX_KEY: base64.b64encode(key.encrypted_private_key).decode("ascii"),
            PARAM_INDEX_DEPLOYMENT: key.deployment_id,
        }

    @staticmethod
    def tokens(reply: EnclaveReply, names: Sequence[str]) -> dict[str, str]:
        """The token of each of ``names`` in the enclave's answer; anything else is a parent error."""
        fields = reply.fields or {}
        if set(fields) != set(names) or reply.errors:
            logger.error(
                "Index reply does not answer the fields asked", extra={"field_names": sorted(fields)}
            )
            raise parent_error()
        tokens: dict[str, str] = {}
        for name in names:
            value = fields[name]
            if not isinstance(value, str) or not TOKEN_PATTERN.fullmatch(value):
                logger.error("Index reply holds a malformed token", extra={"field_names": [name]})
                raise parent_error()
            tokens[name] = value
        return tokens

    # -- queries ----------------------------------------------------------------------

    def query(self, field_name: str, token: str, limit: int = MAX_SEARCH_RESULTS) -> SearchHits:
        """The ids of the vaults whose ``field_name`` token is ``token`` (at most ``limit``)."""
        if field_name not in SEARCHABLE_FIELDS:
            raise ValueError("not a searchable field")
        attribute = index_attribute(field_name)
        try:
            reply = self._client.query(
                TableName=self._table,
                IndexName=index_name(field_name),
                KeyConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": attribute},
                ExpressionAttributeValues={":t": {"S": token}},
                # One more than answered: whether there were more is then known.
                Limit=limit + 1,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.error("Query of a token index failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        ids = [vault_id_of(item[PARTITION_KEY]["S"]) for item in reply.get("Items", [])]
        found = sorted({vault_id for vault_id in ids if vault_id is not None})
        # Keys-only items of limit + 1 matches are far below Query's 1 MB page.
        return SearchHits(vault_ids=found[:limit], truncated=len(found) > limit)
