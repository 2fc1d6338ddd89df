"""Request and response models of the REST API (spec 1.3, 1.7, 1.9) and their OpenAPI examples.

Validation rules are upstream's: strings are stripped before they are checked, unknown
keys are refused, every vault field is optional but an explicit ``null`` is refused.
Two limits are added so that a valid request can always be stored and decrypted:
``postal_code`` is capped at 1024 characters like the other free-text fields (an
unbounded value could exceed DynamoDB's item size), and decrypt requests are held to the
parent's and enclave's limits (spec 3.3, 4.2), which would otherwise refuse them later.

Model ``repr``s list field names only: Powertools logs route arguments at DEBUG level,
and field values are PII (decision D9).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from vault.api.ids import VAULT_ID_PATTERN
from vault.api.rotation import ROTATION_SUITE_NAMES
from vault.common.blind_index import SEARCHABLE_FIELDS as BLIND_INDEX_FIELDS
from vault.common.messages import MAX_BATCH, MAX_EXPRESSION_LENGTH

#: The vault's fields in schema order. Order matters: ``ssn4`` derived from ``ssn9`` is
#: overwritten by a client-supplied ``ssn4`` in the same request (spec 1.4).
SCHEMA_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "phone_number",
    "ssn9",
    "ssn4",
    "dob",
    "address1",
    "address2",
    "address3",
    "city",
    "state",
    "postal_code",
    "country",
)
_SCHEMA_FIELD_SET = frozenset(SCHEMA_FIELDS)
MAX_TEXT_LENGTH = 1024
#: The parent refuses more fields or expressions than this (spec 3.3).
MAX_REQUEST_ITEMS = 100
MAX_REASON_LENGTH = 1024
MAX_FIELDS_QUERY_LENGTH = 1024

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
PhoneNumber = Annotated[str, StringConstraints(pattern=r"^\+[1-9]\d{1,14}$")]
Ssn9 = Annotated[str, StringConstraints(pattern=r"^\d{9}$", min_length=9, max_length=9)]
Ssn4 = Annotated[str, StringConstraints(pattern=r"^\d{4}$", min_length=4, max_length=4)]
DateOfBirth = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$", min_length=10, max_length=10)]
PostalCode = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9\- ]*)$", max_length=MAX_TEXT_LENGTH)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$", min_length=2, max_length=2)]


def normalize_field_name(name: str) -> str:
    """Field names are matched like writes store them: stripped and lower-cased (decision D7)."""
    return name.strip().lower()


def _schema_field(name: str) -> str:
    normalized = normalize_field_name(name)
    if normalized not in _SCHEMA_FIELD_SET:
        raise PydanticCustomError("vault_field", "must be one of the vault's field names")
    return normalized


def _expression_size(expression: str) -> str:
    # The enclave's limit is in bytes (spec 4.2); refusing here gives a 422 instead of a
    # failure after the vault key was already decrypted (decision D3).
    if len(expression.encode("utf-8")) > MAX_EXPRESSION_LENGTH:
        raise PydanticCustomError("expression_too_long", "expression exceeds 10240 bytes")
    return expression


#: Inputs are normalised (stripped, lower-cased); the document lists the canonical names.
FieldName = Annotated[
    str,
    AfterValidator(_schema_field),
    WithJsonSchema({"type": "string", "enum": list(SCHEMA_FIELDS)}),
]
Expression = Annotated[str, AfterValidator(_expression_size)]
OutputName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH)]


def _unique(names: list[str]) -> list[str]:
    # Duplicates would make DynamoDB refuse the projection; the first spelling wins.
    return list(dict.fromkeys(names))


def _schema_without_null(schema: dict[str, Any]) -> None:
    """Document optional fields as plain strings: omitting a field is allowed, ``null`` is not."""
    for prop in schema.get("properties", {}).values():
        variants = prop.get("anyOf")
        if variants and {"type": "null"} in variants:
            rest = [variant for variant in variants if variant != {"type": "null"}]
            if len(rest) == 1:
                del prop["anyOf"]
                prop.update(rest[0])
                prop.pop("default", None)


def _schema_names_something(schema: dict[str, Any]) -> None:
    """Document the rule of :class:`DeleteBody`: ``delete_all: true`` or at least one field."""
    schema["anyOf"] = [
        {"required": ["delete_all"], "properties": {"delete_all": {"const": True}}},
        {"required": ["fields"], "properties": {"fields": {"type": "array", "minItems": 1}}},
    ]


class VaultFields(BaseModel):
    """Vault fields. Every field is optional; send only the fields to store (null is refused)."""

    model_config = ConfigDict(
        str_strip_whitespace=True,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        json_schema_extra=_schema_without_null,
    )

    email: Text | None = Field(default=None, description="Primary email address")
    first_name: Text | None = Field(default=None, description="First name")
    middle_name: Text | None = Field(default=None, description="Middle name")
    last_name: Text | None = Field(default=None, description="Last name")
    phone_number: PhoneNumber | None = Field(default=None, description="Primary phone number (E.164)")
    ssn9: Ssn9 | None = Field(default=None, description="9-digit string")
    ssn4: Ssn4 | None = Field(default=None, description="Last four of the SSN")
    dob: DateOfBirth | None = Field(default=None, description="Date of birth (YYYY-MM-DD)")
    address1: Text | None = Field(default=None, description="First address line")
    address2: Text | None = Field(default=None, description="Second address line")
    address3: Text | None = Field(default=None, description="Third address line")
    city: Text | None = Field(default=None, description="City")
    state: Text | None = Field(default=None, description="State or region")
    postal_code: PostalCode | None = Field(default=None, description="Postal code")
    country: Country | None = Field(default=None, description="Two-letter country code")

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        # Defaults are not validated, so this only sees values the client sent.
        if value is None:
            raise PydanticCustomError("null_not_allowed", "null is not allowed; omit the field instead")
        return value

    def provided(self) -> dict[str, str]:
        """The fields the client sent, in schema order."""
        values = {name: getattr(self, name) for name in SCHEMA_FIELDS}
        return {name: value for name, value in values.items() if value is not None}

    def __repr__(self) -> str:
        return f"VaultFields(fields={list(self.provided())!r})"

    __str__ = __repr__


class DeleteBody(BaseModel):
    """Remove the whole vault (``delete_all: true``) or some of its fields (a non-empty ``fields``).

    A body that names nothing to delete is refused.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra=_schema_names_something
    )

    delete_all: StrictBool | None = Field(default=None, description="Delete the vault and all its fields")
    fields: list[FieldName] | None = Field(
        default=None,
        max_length=MAX_REQUEST_ITEMS,
        description="Vault field names to remove (removing ssn9 also removes ssn4)",
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, names: list[str] | None) -> list[str] | None:
        return None if names is None else _unique(names)

    @model_validator(mode="after")
    def _names_something(self) -> DeleteBody:
        # Upstream answered 200 to ``{}`` or ``{"fields": []}``, deleted nothing and wrote no
        # audit record: a client that meant to delete would read it as done.
        if not self.delete_all and not self.fields:
            raise PydanticCustomError(
                "nothing_to_delete", "set delete_all to true or name at least one field"
            )
        return self


class DecryptBody(BaseModel):
    """Fields to decrypt (vault field names, case-insensitive), why, and optional CEL expressions."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    fields: list[FieldName] = Field(max_length=MAX_REQUEST_ITEMS, description="Vault field names to decrypt")
    reason: str = Field(
        max_length=MAX_REASON_LENGTH, description="Why the data is needed (kept in the audit log)"
    )
    expressions: dict[OutputName, Expression] = Field(
        default_factory=dict,
        max_length=MAX_REQUEST_ITEMS,
        description="CEL expressions evaluated in order on the decrypted fields; the key names the output",
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, names: list[str]) -> list[str]:
        return _unique(names)

    def __repr__(self) -> str:
        return f"DecryptBody(fields={self.fields!r}, expressions={list(self.expressions)!r})"

    __str__ = __repr__


class VaultCreated(BaseModel):
    id: str = Field(description="The new vault's id", examples=["v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"])


class DecryptResult(BaseModel):
    data: dict[str, Any] = Field(
        description="Decrypted fields and expression outputs; null where unavailable"
    )
    errors: list[str] = Field(description="One entry per field or expression that has no value")

    def __repr__(self) -> str:
        return f"DecryptResult(fields={sorted(self.data)!r}, errors={len(self.errors)})"

    __str__ = __repr__


def _rotation_suite(name: str) -> str:
    if name not in ROTATION_SUITE_NAMES:
        raise PydanticCustomError("rotation_suite", "must be one of the suites a vault can be rotated to")
    return name


RotationSuite = Annotated[
    str,
    AfterValidator(_rotation_suite),
    WithJsonSchema({"type": "string", "enum": list(ROTATION_SUITE_NAMES)}),
]


class RotateBody(BaseModel):
    """Why the vault's key is rotated and, optionally, the HPKE suite of the new key."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra=_schema_without_null
    )

    reason: str = Field(
        max_length=MAX_REASON_LENGTH, description="Why the key is rotated (kept in the audit log)"
    )
    suite: RotationSuite | None = Field(
        default=None,
        description=(
            "Suite of the new key; omitted: the vault's own (or the default if the vault's cannot be kept)"
        ),
    )

    @field_validator("suite", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        # Omitting the suite is allowed, an explicit null is not (as for vault fields).
        if value is None:
            raise PydanticCustomError("null_not_allowed", "must be a suite name; omit it for the default")
        return value


class VaultRotated(BaseModel):
    id: str = Field(description="The vault's id")
    suite: str = Field(description="The suite every field is now sealed with")


class AuditEvent(BaseModel):
    event: str = Field(
        description="CreateVault, UpdateVault, DeleteVault, ForgetVault, DecryptVault or RotateVault"
    )
    timestamp: str = Field(description="When it happened (RFC 3339, UTC, microseconds)")
    reason: str | None = Field(description="The decrypt reason, or RemoveFields for a field removal")
    fields: list[str] = Field(description="Field names involved (never their values)")
    outcome: str | None = Field(
        description=(
            "Success, PartialSuccess, the error code, Pending (the decrypt was asked and its outcome not "
            "yet recorded) or Unknown (the request went out and no answer came back); null for old records"
        )
    )
    principal: str | None = Field(
        default=None, description="The caller's principal ARN (decrypts, rotations and forgets)"
    )
    expressions: list[str] = Field(
        default_factory=list, description="Output names of the expressions asked for (decrypts)"
    )
    request_id: str | None = Field(default=None, description="The decrypt's or rotation's request id")
    error_code: str | None = Field(default=None, description="With outcome Unknown: the error the API saw")


class AuditPage(BaseModel):
    events: list[AuditEvent] = Field(description="Newest first")
    next_token: str | None = Field(description="Pass as next_token for the next page; null on the last page")


class ErrorBody(BaseModel):
    """Every error response. Match on ``code``; ``statusCode`` and ``message`` are upstream's keys."""

    statusCode: int = Field(description="The HTTP status, repeated")
    code: str = Field(description="Stable error code")
    message: str = Field(description="Human-readable explanation")
    errors: list[Any] | None = Field(
        default=None,
        description=(
            "422: the refused inputs as `loc` (where), `type` (the stable rule) and `msg` (a readable "
            "explanation, never the value sent); EnclaveDecryptFailed: the enclave's errors"
        ),
    )
    enclaveCode: str | None = Field(default=None, description="EnclaveDecryptFailed: the enclave's own code")


EXAMPLE_CREATE = {
    "email": "test@example.com",
    "phone_number": "+15554443333",
    "first_name": "Test",
    "last_name": "User",
    "address1": "123 Main St",
    "city": "Anytown",
    "state": "CA",
    "postal_code": "12345",
    "country": "US",
    "ssn9": "123456789",
    "dob": "2000-07-04",
}
EXAMPLE_UPDATE = {"first_name": "Updated First Name", "last_name": "Updated Last Name"}
EXAMPLE_DELETE = {"delete_all": False, "fields": ["first_name"]}
EXAMPLE_ROTATE = {"reason": "scheduled key rotation"}
EXAMPLE_DECRYPT = {
    "fields": [
        "first_name",
        "last_name",
        "email",
        "phone_number",
        "address1",
        "city",
        "state",
        "postal_code",
        "country",
        "dob",
        "ssn9",
        "ssn4",
    ],
    "reason": "TESTING - API test through Swagger UI",
    "expressions": {
        "age": "date(dob).age()",
        "ssn9_sha256": "sha256(ssn9)",
        "ssn9_base64": "base64_encode(ssn9)",
    },
}


# -- batch decrypt -----------------------------------------------------------------------

#: Upper bound on the expression names and texts of a whole batch: the parent takes 1 MiB
#: bodies, which must also hold every vault's ciphertexts and authorization.
MAX_BATCH_EXPRESSION_BYTES = 256 * 1024
VaultIdText = Annotated[str, StringConstraints(pattern=VAULT_ID_PATTERN)]


class BatchVault(BaseModel):
    """One vault of a batch: its id, and the fields and expressions as ``DecryptBody`` takes them."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: VaultIdText = Field(description="The vault's id", examples=["v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"])
    # The same annotated types as DecryptBody: the same names, limits and refusals.
    fields: list[FieldName] = Field(max_length=MAX_REQUEST_ITEMS, description="Vault field names to decrypt")
    expressions: dict[OutputName, Expression] = Field(
        default_factory=dict,
        max_length=MAX_REQUEST_ITEMS,
        description="CEL expressions evaluated in order on this vault's decrypted fields",
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, names: list[str]) -> list[str]:
        return _unique(names)

    def decrypt_body(self, reason: str) -> DecryptBody:
        """This entry as the single decrypt's body (validated again, by the same rules)."""
        return DecryptBody(fields=self.fields, reason=reason, expressions=self.expressions)

    def __repr__(self) -> str:
        return f"BatchVault(id={self.id!r}, fields={self.fields!r}, expressions={list(self.expressions)!r})"

    __str__ = __repr__


class DecryptBatchBody(BaseModel):
    """Several vaults to decrypt for one reason; each vault at most once, at most 50 of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    reason: str = Field(
        max_length=MAX_REASON_LENGTH, description="Why the data is needed (kept in each vault's audit log)"
    )
    vaults: list[BatchVault] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} vaults, each at most once"
    )

    @model_validator(mode="after")
    def _distinct_and_bounded(self) -> DecryptBatchBody:
        ids = [vault.id for vault in self.vaults]
        if len(set(ids)) != len(ids):
            # Two entries for one vault would be two audit records for one request id's worth of
            # work, and the parent could not tell their replies apart by vault.
            raise PydanticCustomError("duplicate_vault", "each vault may appear at most once in a batch")
        # Names count too: they are in the parent's body, and in every vault's audit record,
        # all of which one transaction writes (DynamoDB takes at most 4 MB in one).
        size = sum(
            len(name.encode("utf-8")) + len(text.encode("utf-8"))
            for vault in self.vaults
            for name, text in vault.expressions.items()
        )
        if size > MAX_BATCH_EXPRESSION_BYTES:
            raise PydanticCustomError(
                "batch_too_large",
                f"the expressions of a batch (names and texts) exceed {MAX_BATCH_EXPRESSION_BYTES} bytes",
            )
        return self

    def __repr__(self) -> str:
        return f"DecryptBatchBody(vaults={[vault.id for vault in self.vaults]!r})"

    __str__ = __repr__


class BatchEntryError(BaseModel):
    """Why one vault of a batch has no answer: what the single decrypt would have answered."""

    status: int = Field(description="The HTTP status the single decrypt answers with this error")
    code: str = Field(
        description="Stable error code (VaultNotFound, RevealNotAllowed, EnclaveDecryptFailed, ...)"
    )
    message: str = Field(description="Human-readable explanation")
    enclaveCode: str | None = Field(default=None, description="EnclaveDecryptFailed: the enclave's own code")
    errors: list[str] | None = Field(default=None, description="EnclaveDecryptFailed: the enclave's errors")
    fields: list[str] | None = Field(default=None, description="RevealNotAllowed: the refused field names")
    expressions: list[str] | None = Field(
        default=None, description="RevealNotAllowed: the refused expression output names"
    )


class BatchDecrypted(BaseModel):
    id: str = Field(description="The vault's id")
    data: dict[str, Any] = Field(
        description="Decrypted fields and expression outputs; null where unavailable"
    )
    errors: list[str] = Field(description="One entry per field or expression that has no value")

    def __repr__(self) -> str:
        return f"BatchDecrypted(id={self.id!r}, fields={sorted(self.data)!r}, errors={len(self.errors)})"

    __str__ = __repr__


class BatchFailed(BaseModel):
    id: str = Field(description="The vault's id")
    error: BatchEntryError = Field(description="Why this vault has no answer")


class DecryptBatchResult(BaseModel):
    results: list[BatchDecrypted | BatchFailed] = Field(
        description="One entry per vault, in request order: its data and errors, or its error"
    )

    def __repr__(self) -> str:
        return f"DecryptBatchResult(results={self.results!r})"

    __str__ = __repr__


EXAMPLE_DECRYPT_BATCH = {
    "reason": "TESTING - batch decrypt through Swagger UI",
    "vaults": [
        {"id": "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL", "fields": ["first_name", "last_name"]},
        {"id": "v_2hRK9xQ1b3bV8c5xT0nXQ8mJk2L", "fields": ["dob"], "expressions": {"age": "date(dob).age()"}},
    ],
}


# -- search (blind-index tokens) ---------------------------------------------------------

#: Fields ``POST /vaults/search`` takes: each has a token index (``vault.infra.table``).
SEARCHABLE_FIELDS: tuple[str, ...] = BLIND_INDEX_FIELDS


def _searchable_field(name: str) -> str:
    normalized = normalize_field_name(name)
    if normalized not in SEARCHABLE_FIELDS:
        raise PydanticCustomError("search_field", "must be one of the searchable fields")
    return normalized


SearchField = Annotated[
    str,
    AfterValidator(_searchable_field),
    WithJsonSchema({"type": "string", "enum": list(SEARCHABLE_FIELDS)}),
]


def _schema_value_per_field(schema: dict[str, Any]) -> None:
    """Document that ``value`` follows the rule of the field searched (as its writes do)."""
    properties = VaultFields.model_json_schema()["properties"]
    schema["oneOf"] = [
        {
            "properties": {
                "field": {"const": name},
                "value": {
                    key: properties[name][key]
                    for key in ("type", "pattern", "minLength", "maxLength")
                    if key in properties[name]
                },
            }
        }
        for name in SEARCHABLE_FIELDS
    ]


class SearchBody(BaseModel):
    """Which vaults hold ``value`` in ``field`` (a searchable field), and why the caller asks."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra=_schema_value_per_field
    )

    field: SearchField = Field(description="The searchable field: ssn9 or email")
    value: str = Field(
        min_length=1,
        max_length=MAX_TEXT_LENGTH,
        description="The value to find, validated and normalised as the field's writes are",
    )
    reason: str = Field(
        max_length=MAX_REASON_LENGTH, description="Why the search is needed (kept in the audit log)"
    )

    @field_validator("value")
    @classmethod
    def _field_value(cls, value: str, info: ValidationInfo) -> str:
        name = info.data.get("field")
        if name is None:
            # The field was refused already; its error says so.
            return value
        try:
            parsed = VaultFields.model_validate({name: value})
        except ValidationError:
            raise PydanticCustomError("search_value", "is not a valid value of the field searched") from None
        normalized: str = getattr(parsed, name)
        return normalized

    def __repr__(self) -> str:
        return f"SearchBody(field={self.field!r})"

    __str__ = __repr__


class SearchResult(BaseModel):
    ids: list[str] = Field(description="Ids of the vaults whose field holds the value, sorted")
    truncated: bool = Field(
        description="More vaults match than one answer holds (100); narrow the search or ask an operator"
    )


EXAMPLE_SEARCH = {"field": "ssn9", "value": "123456789", "reason": "TESTING - duplicate check"}
