"""The ``/vaults`` routes (spec 1.1) and their OpenAPI documentation.

Routes only translate HTTP into service calls; request validation happens before they
run (Powertools with pydantic), errors are raised as :class:`ApiError` and rendered by
the app. A known path asked with another method answers 405 with an ``Allow`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from vault.api.audit import Caller
from vault.api.blind_index import MAX_SEARCH_RESULTS
from vault.api.body import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS
from vault.api.dependencies import get_service
from vault.api.errors import ApiError, ErrorCode
from vault.api.ids import VAULT_ID_PATTERN
from vault.api.models import (
    EXAMPLE_CREATE,
    EXAMPLE_DECRYPT,
    EXAMPLE_DECRYPT_BATCH,
    EXAMPLE_DELETE,
    EXAMPLE_ROTATE,
    EXAMPLE_SEARCH,
    EXAMPLE_UPDATE,
    MAX_BATCH_EXPRESSION_BYTES,
    MAX_FIELDS_QUERY_LENGTH,
    SCHEMA_FIELDS,
    SEARCHABLE_FIELDS,
    AuditPage,
    DecryptBatchBody,
    DecryptBatchResult,
    DecryptBody,
    DecryptResult,
    DeleteBody,
    ErrorBody,
    RotateBody,
    SearchBody,
    SearchResult,
    VaultCreated,
    VaultFields,
    VaultRotated,
)
from vault.api.observability import tracer
from vault.api.service import VaultService
from vault.common.messages import MAX_BATCH

PREFIX = "/vaults"
DEFAULT_AUDIT_LIMIT = 25
MAX_AUDIT_LIMIT = 100

router = Router()  # type: ignore[no-untyped-call]

Service = Annotated[VaultService, Depends(get_service)]
VaultId = Annotated[
    str, Path(title="Vault ID", pattern=VAULT_ID_PATTERN, examples=["v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"])
]

_ERROR_DESCRIPTIONS = {
    403: (
        "The reveal policy does not allow this caller the request "
        "(RevealNotAllowed, RotationNotAllowed, SearchNotAllowed)"
    ),
    404: "Vault not found",
    409: "Transaction cancelled by a concurrent change; retry",
    422: (
        "Invalid request data: a body or parameter the schema refuses, or a JSON body nested deeper "
        f"than {MAX_JSON_DEPTH} levels or holding an integer of more than {MAX_JSON_INT_DIGITS} digits; "
        "each entry of `errors` has `loc`, `type` (stable) and `msg` (readable, never the value sent)"
    ),
    500: "Internal error",
    502: (
        "The enclave or the decryption service failed, or the API could not sign the decrypt's "
        "authorization (AuthorizationFailed)"
    ),
    503: "No enclave available",
    504: (
        "Did not answer in time: the decryption service (ParentTimeout), the enclave after taking the "
        "request (EnclaveTimeout) or KMS, asked by the enclave (KmsTimeout); retry later"
    ),
}


def _responses(success: str, *errors: int) -> dict[int, OpenAPIResponse]:
    """The 200 response (its schema comes from the route's return type) and the error responses."""
    documented: dict[int, OpenAPIResponse] = {200: {"description": success}}
    for status in errors:
        documented[status] = {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return documented


def _annotate(vault_id: str) -> None:
    tracer.put_annotation(key="vault_id", value=vault_id)


def _caller() -> Caller:
    """Who is asking, from the request context API Gateway fills in after IAM authorization.

    ``userArn`` is the caller's principal ARN (an assumed role's session ARN); ``caller``
    (``AROA…:session``) stands in where a gateway gives no ARN. A request without IAM
    authorization has neither, and is audited without a principal.
    """
    event = router.current_event
    # The app is an APIGatewayRestResolver, whose events are REST (v1) proxy events.
    if not isinstance(event, APIGatewayProxyEvent):
        return Caller()
    context = event.request_context
    identity = context.identity
    return Caller(principal=identity.user_arn or identity.caller, gateway_request_id=context.request_id)


@router.post("/", summary="Create a vault", responses=_responses("The new vault's id", 409, 422, 500, 502))
def create_vault(
    body: Annotated[VaultFields, Body(openapi_examples={"create": {"value": EXAMPLE_CREATE}})],
    service: Service,
) -> VaultCreated:
    return VaultCreated(id=service.create(body))


#: Every field named: the whole presence map.
ALL_FIELDS_QUERY = ",".join(SCHEMA_FIELDS)


@router.get(
    "/<vault_id>",
    summary="Get a vault",
    description=(
        "Which of the fields named in `fields` the vault holds, as `{field: true|false}` in request order; "
        "never a value. Names are matched stripped and lower-cased; names that are not vault fields are "
        "left out. Without `fields` (or with none that is a vault field) the answer is `{}`: an existence "
        "check (404 if the vault does not exist), as upstream answers it. For the whole presence map, "
        f"name every field: `?fields={ALL_FIELDS_QUERY}`."
    ),
    responses=_responses(
        "Which of the requested fields the vault holds; `{}` without `fields`", 404, 422, 500
    ),
)
def get_vault(
    vault_id: VaultId,
    service: Service,
    fields: Annotated[
        str | None,
        Query(
            title="Fields to get",
            description=(
                "Comma-separated field names; the answer says which of them the vault holds. "
                "Omitted: the answer is `{}` (the vault exists)"
            ),
            max_length=MAX_FIELDS_QUERY_LENGTH,
            examples=["first_name,last_name,dob"],
        ),
    ] = None,
) -> dict[str, bool]:
    _annotate(vault_id)
    return service.presence(vault_id, fields)


@router.patch("/<vault_id>", summary="Update a vault", responses=_responses("Updated", 404, 409, 422, 500))
def update_vault(
    vault_id: VaultId,
    body: Annotated[VaultFields, Body(openapi_examples={"update": {"value": EXAMPLE_UPDATE}})],
    service: Service,
) -> dict[str, Any]:
    _annotate(vault_id)
    service.update(vault_id, body)
    return {}


@router.delete(
    "/<vault_id>",
    summary="Delete a vault",
    description=(
        "Send `delete_all: true` to delete the vault, or a non-empty `fields` to remove those fields "
        "(removing ssn9 also removes ssn4). A body that names nothing to delete is refused with 422.\n\n"
        "With `?forget=true` the vault is forgotten: the whole vault item, every field and the vault's "
        "encrypted private key, is deleted in one conditional write with a `ForgetVault` audit record "
        "(the caller's principal, no values); the vault's earlier audit records are kept. Forgetting "
        "takes no body (send none); a second forget answers 404. Copies in table backups remain "
        "recoverable for their retention (see the README)."
    ),
    responses=_responses("Deleted", 404, 409, 422, 500),
)
def delete_vault(
    vault_id: VaultId,
    service: Service,
    body: Annotated[
        DeleteBody | None,
        Body(
            description="What to delete; required without `forget=true`, refused with it",
            openapi_examples={"delete": {"value": EXAMPLE_DELETE}},
        ),
    ] = None,
    forget: Annotated[
        Literal["true", "false"],
        Query(
            title="Forget the vault",
            description="`true`: delete the vault item with its encrypted private key (no body)",
        ),
    ] = "false",
) -> dict[str, Any]:
    _annotate(vault_id)
    if forget == "true":
        if body is not None:
            raise _body_refused("forget_with_body")
        service.forget(vault_id, _caller())
        return {}
    if body is None:
        raise _body_refused("missing")
    service.delete(vault_id, body)
    return {}


def _body_refused(rule: str) -> RequestValidationError:
    """A 422 rendered like every schema refusal (location ``body``, a stable ``type``)."""
    return RequestValidationError([{"type": rule, "loc": ("body",), "input": {}, "ctx": {}}])


@router.post(
    "/<vault_id>/decrypt",
    summary="Decrypt data from a vault",
    responses=_responses("Decrypted fields and per-field errors", 404, 409, 422, 500, 502, 503, 504),
)
def decrypt_vault(
    vault_id: VaultId,
    body: Annotated[DecryptBody, Body(openapi_examples={"decrypt": {"value": EXAMPLE_DECRYPT}})],
    service: Service,
) -> DecryptResult:
    _annotate(vault_id)
    return service.decrypt(vault_id, body, _caller())


@router.post(
    "/<vault_id>/rotate",
    summary="Rotate a vault's key",
    description=(
        "Makes a new key pair for the vault (optionally under another `suite`), has the enclave open "
        "every field under the old key and seal it under the new public key, and replaces every "
        "ciphertext, the public key, the encrypted private key, the suite and the encoding in one "
        "conditional write. No plaintext leaves the enclave and nothing is revealed to the caller. "
        "A `RotateVault` audit record (the caller, `reason`, the field names) is written before the "
        "enclave is asked. A write to the vault while it rotates makes the rotation 409 with nothing "
        "changed; retry. A field that does not open fails the whole rotation (502 "
        "EnclaveDecryptFailed, enclaveCode InvalidCiphertext); an answer whose proof does not verify "
        "is 502 RotationProofInvalid. With a reveal policy, only callers of a rule with "
        "`rotate: true` may rotate (403 RotationNotAllowed)."
    ),
    responses=_responses("The vault's id and its new suite", 403, 404, 409, 422, 500, 502, 503, 504),
)
def rotate_vault(
    vault_id: VaultId,
    body: Annotated[RotateBody, Body(openapi_examples={"rotate": {"value": EXAMPLE_ROTATE}})],
    service: Service,
) -> VaultRotated:
    _annotate(vault_id)
    return service.rotate(vault_id, body, _caller())


@router.get(
    "/<vault_id>/audit",
    summary="Read a vault's audit log",
    responses=_responses("Audit events, newest first", 404, 422, 500),
)
def vault_audit(
    vault_id: VaultId,
    service: Service,
    limit: Annotated[
        int, Query(title="Page size", ge=1, le=MAX_AUDIT_LIMIT, description="Events per page")
    ] = DEFAULT_AUDIT_LIMIT,
    next_token: Annotated[
        str | None, Query(title="Next page", max_length=64, description="next_token of the previous page")
    ] = None,
) -> AuditPage:
    _annotate(vault_id)
    return service.audit(vault_id, limit, next_token)


@router.post(
    "/decrypt",
    summary="Decrypt data from several vaults",
    description=(
        f"Up to {MAX_BATCH} vaults, each at most once, for one `reason`; each vault names its `fields` "
        "and `expressions` as the single decrypt takes them (at most "
        f"{MAX_BATCH_EXPRESSION_BYTES} bytes of expression names and texts in all). "
        "Each vault is decided as the single decrypt decides it: the reveal policy, its own audit "
        "record (written before the decryption service is asked) and its own authorization. "
        "`results` has one entry per vault in request order: `{id, data, errors}`, or `{id, error}` "
        "with the status and code the single decrypt would have answered (VaultNotFound, "
        "RevealNotAllowed, EnclaveDecryptFailed, ...). A failure of the decryption service as a whole "
        "(unreachable, no enclave, timeout) fails the request as it fails the single decrypt."
    ),
    responses=_responses("One result per vault, in request order", 409, 422, 500, 502, 503, 504),
)
def decrypt_vaults(
    body: Annotated[DecryptBatchBody, Body(openapi_examples={"batch": {"value": EXAMPLE_DECRYPT_BATCH}})],
    service: Service,
) -> DecryptBatchResult:
    return service.decrypt_batch(body, _caller())


@router.post(
    "/search",
    summary="Find the vaults holding a value",
    description=(
        f"The ids of the vaults whose searchable `field` ({', '.join(SEARCHABLE_FIELDS)}) holds `value` "
        "(validated as the field's writes are; e-mail addresses match case-insensitively), sorted, at "
        f"most {MAX_SEARCH_RESULTS} (`truncated` says there were more). Vaults are found by a keyed "
        "token the enclave computes from the value; no value is returned or stored in the clear. A "
        "`SearchVaults` audit record (the caller, `reason`, the field name, never the value) is written "
        "before the enclave is asked, in the log of the reserved id `search`. A vault written in the "
        "last moment may not be found yet (the token index is eventually consistent). With a reveal "
        "policy, only callers of a rule whose `search` lists the field may search it (403 "
        "SearchNotAllowed). 404 SearchNotEnabled: the deployment does not index fields."
    ),
    responses=_responses("The matching vault ids", 403, 404, 409, 422, 500, 502, 503, 504),
)
def search_vaults(
    body: Annotated[SearchBody, Body(openapi_examples={"search": {"value": EXAMPLE_SEARCH}})],
    service: Service,
) -> SearchResult:
    return service.search(body, _caller())


#: Methods each path answers; every other method gets 405.
ALLOWED_METHODS: dict[str, tuple[str, ...]] = {
    "/": ("POST",),
    "/<vault_id>": ("GET", "PATCH", "DELETE"),
    "/<vault_id>/decrypt": ("POST",),
    "/<vault_id>/rotate": ("POST",),
    "/decrypt": ("POST",),
    "/search": ("POST",),
    "/<vault_id>/audit": ("GET",),
}
_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _method_not_allowed(allowed: tuple[str, ...]) -> Callable[[], Response[dict[str, Any]]]:
    error = ApiError(
        405, ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed", headers={"Allow": ", ".join(allowed)}
    )

    def handler() -> Response[dict[str, Any]]:
        return error.response()

    return handler


for _rule, _allowed in ALLOWED_METHODS.items():
    router.route(
        _rule, [method for method in _ALL_METHODS if method not in _allowed], include_in_schema=False
    )(_method_not_allowed(_allowed))
