"""Evaluate a KMS key policy for one request, as KMS does, and fail closed on anything else.

Decision rule (IAM policy evaluation for a key policy): an applicable ``Deny``
statement refuses; otherwise an applicable ``Allow`` grants; otherwise the request is
implicitly denied. A statement applies when its principal, action (``Action`` or
``NotAction``), resource and every condition match.

Conditions: operators are ANDed, keys within an operator are ANDed, the values listed
for one key are ORed -- except for negated operators, where "not equal to any of
them" is meant. A key absent from the request makes a condition false, but negated
operators, ``...IfExists`` and ``ForAllValues:`` are true then; ``Null`` tests presence.
Key names are case-insensitive, values are compared as the operator says.

Supported: ``String[Not]Equals[IgnoreCase]``, ``String[Not]Like``, ``Bool``,
``Arn[Not]Equals``, ``Arn[Not]Like``, ``Null``, each with ``IfExists`` (not ``Null``)
and the ``ForAnyValue:``/``ForAllValues:`` qualifiers. Anything else -- an unknown
operator, a policy variable, ``NotPrincipal``, a multi-valued request key under an
unqualified operator, a malformed statement -- raises :class:`PolicyError`, and
:func:`evaluate` turns that into a denial: an emulator that guessed would let tests
pass that AWS would fail.

Principals: ``"*"``; an ARN; an account id or ``arn:...:iam::<account>:root``. The
last form delegates to the account's IAM policies (it never grants by itself), which
the emulator models as the request's ``iam_allowed_actions``. An assumed-role session
ARN matches its role's ARN.

Global keys KMS always has for an IAM caller are filled in from ``principal_arn`` when
the request leaves them out: ``aws:PrincipalArn`` (for a role session, the role's ARN,
as AWS sets it -- also when the caller passes the session's ARN) and
``aws:PrincipalAccount``. Every other key is only what the request carries, e.g.
``kms:RecipientAttestation:*`` only for a Recipient with a valid document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/.+$"
)
_ACCOUNT_ID = re.compile(r"^\d{12}$")


class PolicyError(ValueError):
    """The policy uses something this evaluator does not implement (or is malformed)."""


@dataclass(frozen=True)
class RequestContext:
    """What KMS knows about one request. ``keys`` maps condition keys to their values."""

    principal_arn: str
    action: str
    resource: str
    keys: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: Actions the principal's own IAM policies allow (for account-root principals).
    iam_allowed_actions: Sequence[str] = ()

    def values(self, key: str) -> tuple[str, ...]:
        return _lowered(self.keys).get(key.lower(), ())


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _lowered(keys: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    return {name.lower(): tuple(values) for name, values in keys.items()}


@lru_cache(maxsize=1024)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run, ``?`` one character; everything else literal."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(value: str, pattern: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def _arn_like(value: str, pattern: str) -> bool:
    value_parts = value.split(":", 5)
    pattern_parts = pattern.split(":", 5)
    if len(value_parts) != 6 or len(pattern_parts) != 6:
        return False
    return all(_like(v, p) for v, p in zip(value_parts, pattern_parts, strict=True))


def _bool(value: str, policy: str) -> bool:
    if policy.lower() not in ("true", "false"):
        raise PolicyError(f"Bool needs 'true' or 'false', not {policy!r}")
    return value.lower() == policy.lower()


# Positive matchers; the "Not" operators negate them (see _match).
_MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda v, p: v == p,
    "StringEqualsIgnoreCase": lambda v, p: v.casefold() == p.casefold(),
    "StringLike": _like,
    "Bool": _bool,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


@dataclass(frozen=True)
class _Operator:
    base: str
    negated: bool
    if_exists: bool
    qualifier: str | None


def _operator(name: str) -> _Operator:
    qualifier = None
    if ":" in name:
        qualifier, name = name.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise PolicyError(f"unknown set operator {qualifier!r}")
    if_exists = name.endswith("IfExists")
    if if_exists:
        name = name[: -len("IfExists")]
    if name == "Null":
        if if_exists or qualifier:
            raise PolicyError("Null takes neither IfExists nor a set operator")
        return _Operator("Null", False, False, None)
    if name in _MATCHERS:
        return _Operator(name, False, if_exists, qualifier)
    if name in _NEGATED:
        return _Operator(_NEGATED[name], True, if_exists, qualifier)
    raise PolicyError(f"unsupported condition operator {name!r}")


def _policy_values(raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    values: list[str] = []
    for item in items:
        if isinstance(item, bool):
            values.append("true" if item else "false")
        elif isinstance(item, str | int):
            text = str(item)
            if "${" in text:
                raise PolicyError("policy variables are not supported")
            values.append(text)
        else:
            raise PolicyError(f"unsupported condition value {item!r}")
    if not values:
        raise PolicyError("a condition key needs at least one value")
    return values


def _match(op: _Operator, value: str, policy_values: list[str]) -> bool:
    matcher = _MATCHERS[op.base]
    hit = any(matcher(value, policy) for policy in policy_values)
    return not hit if op.negated else hit


def _condition(op: _Operator, request_values: tuple[str, ...], policy_values: list[str]) -> bool:
    if op.base == "Null":
        expected_absent = {_bool_text(v) for v in policy_values}
        return (not request_values) in expected_absent
    if not request_values:
        if op.qualifier == "ForAllValues":
            return True
        if op.qualifier == "ForAnyValue":
            return False
        return op.if_exists or op.negated
    if op.qualifier == "ForAnyValue":
        return any(_match(op, value, policy_values) for value in request_values)
    if op.qualifier == "ForAllValues":
        return all(_match(op, value, policy_values) for value in request_values)
    if len(request_values) > 1:
        raise PolicyError("a multi-valued key needs ForAnyValue: or ForAllValues:")
    return _match(op, request_values[0], policy_values)


def _bool_text(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise PolicyError(f"Null needs 'true' or 'false', not {value!r}")
    return value.lower() == "true"


def conditions_hold(block: Any, request: RequestContext) -> bool:
    if block is None:
        return True
    if not isinstance(block, Mapping):
        raise PolicyError("Condition must be an object")
    keys = _lowered(request.keys)
    result = True
    # Every operator is parsed (and may raise) even after one failed: fail closed on the whole block.
    for name, entries in block.items():
        op = _operator(str(name))
        if not isinstance(entries, Mapping) or not entries:
            raise PolicyError(f"{name} must map condition keys to values")
        for key, raw in entries.items():
            if not _condition(op, keys.get(str(key).lower(), ()), _policy_values(raw)):
                result = False
    return result


def failed_conditions(block: Any, request: RequestContext) -> list[str]:
    """The ``<operator> <key>`` pairs of ``block`` that do not hold for ``request`` (never values)."""
    if block is None:
        return []
    if not isinstance(block, Mapping):
        raise PolicyError("Condition must be an object")
    keys = _lowered(request.keys)
    failed: list[str] = []
    for name, entries in block.items():
        op = _operator(str(name))
        if not isinstance(entries, Mapping) or not entries:
            raise PolicyError(f"{name} must map condition keys to values")
        for key, raw in entries.items():
            if not _condition(op, keys.get(str(key).lower(), ()), _policy_values(raw)):
                failed.append(f"{name} {key}")
    return failed


def _strings(raw: Any, what: str) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(item, str) for item in items):
        raise PolicyError(f"{what} must be a string or a list of strings")
    return list(items)


def _role_of(principal_arn: str) -> str:
    match = _ASSUMED_ROLE.match(principal_arn)
    if match is None:
        return principal_arn
    return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"


def _caller_role(request: RequestContext) -> str:
    """The caller as a principal: a session's role, with the path ``aws:PrincipalArn`` carries.

    A session ARN names its role without the role's path; KMS matches the role itself, so
    ``arn:...:role/vault/x`` in a policy matches a session of ``x``, whose
    ``aws:PrincipalArn`` is that full role ARN.
    """
    role = _role_of(request.principal_arn)
    if role == request.principal_arn:
        return role
    for claimed in request.values("aws:PrincipalArn"):
        same_role = claimed.rsplit("/", 1)[-1] == role.rsplit("/", 1)[-1]
        if ":role/" in claimed and _account_of(claimed) == _account_of(role) and same_role:
            return claimed
    return role


def _account_of(principal_arn: str) -> str:
    parts = principal_arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def _principal(statement: Mapping[str, Any], request: RequestContext) -> tuple[bool, bool]:
    """``(applies, only_through_account_delegation)``."""
    if "NotPrincipal" in statement:
        raise PolicyError("NotPrincipal is not supported")
    principal = statement.get("Principal")
    if principal == "*":
        return True, False
    if not isinstance(principal, Mapping):
        raise PolicyError("Principal must be '*' or an object")
    caller = _caller_role(request)
    account = _account_of(caller)
    delegated = False
    for kind, raw in principal.items():
        if kind != "AWS":
            continue  # service and federated principals are never our callers
        for entry in _strings(raw, "Principal.AWS"):
            if entry == "*" or entry == caller:
                return True, False
            if entry == account or (
                entry.endswith(":root") and _account_of(entry) == account and entry.startswith("arn:")
            ):
                delegated = True
            elif _ACCOUNT_ID.match(entry) is None and not entry.startswith("arn:"):
                raise PolicyError(f"unsupported principal {entry!r}")
    return delegated, delegated


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    has_action, has_not = "Action" in statement, "NotAction" in statement
    if has_action == has_not:
        raise PolicyError("a statement needs exactly one of Action and NotAction")
    patterns = _strings(statement["Action" if has_action else "NotAction"], "Action")
    hit = any(_like(action, pattern, ignore_case=True) for pattern in patterns)
    return hit if has_action else not hit


def _resource_matches(statement: Mapping[str, Any], resource: str) -> bool:
    has_resource, has_not = "Resource" in statement, "NotResource" in statement
    if has_resource == has_not:
        raise PolicyError("a statement needs exactly one of Resource and NotResource")
    patterns = _strings(statement["Resource" if has_resource else "NotResource"], "Resource")
    hit = any(_like(resource, pattern) for pattern in patterns)
    return hit if has_resource else not hit


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = policy.get("Statement")
    items: list[Any] = raw if isinstance(raw, list) else [raw]
    statements = [item for item in items if isinstance(item, Mapping)]
    if not statements or len(statements) != len(items):
        raise PolicyError("Statement must be an object or a list of objects")
    return statements


def _with_principal_keys(request: RequestContext) -> RequestContext:
    """``request`` with ``aws:PrincipalArn`` (a role, not a session) and ``aws:PrincipalAccount``."""
    keys = {name: tuple(values) for name, values in request.keys.items()}
    given = {name.lower(): name for name in keys}
    arn_key = given.get("aws:principalarn")
    if arn_key is not None:
        keys[arn_key] = tuple(_role_of(value) for value in keys[arn_key])
    elif request.principal_arn.startswith("arn:"):
        keys["aws:PrincipalArn"] = (_role_of(request.principal_arn),)
    account = _account_of(request.principal_arn)
    if "aws:principalaccount" not in given and _ACCOUNT_ID.match(account):
        keys["aws:PrincipalAccount"] = (account,)
    return RequestContext(
        principal_arn=request.principal_arn,
        action=request.action,
        resource=request.resource,
        keys=keys,
        iam_allowed_actions=request.iam_allowed_actions,
    )


def _decide(policy: Mapping[str, Any], request: RequestContext) -> Decision:
    request = _with_principal_keys(request)
    allowed_by: str | None = None
    for index, statement in enumerate(_statements(policy)):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny")
        name = str(statement.get("Sid", f"#{index}"))
        # Every part of every statement is evaluated, so that anything unsupported anywhere
        # in the policy denies, not only in the statements this request happens to reach.
        principal, delegated = _principal(statement, request)
        action = _action_matches(statement, request.action)
        resource = _resource_matches(statement, request.resource)
        conditions = conditions_hold(statement.get("Condition"), request)
        if not (principal and action and resource and conditions):
            continue
        if effect == "Deny":
            return Decision(False, f"explicitly denied by statement {name}")
        if delegated and not any(
            _like(request.action, p, ignore_case=True) for p in request.iam_allowed_actions
        ):
            continue
        allowed_by = allowed_by or name
    if allowed_by is not None:
        return Decision(True, f"allowed by statement {allowed_by}")
    return Decision(False, "no statement allows the action")


def validate(policy: Mapping[str, Any]) -> None:
    """Raise :class:`PolicyError` if any statement of ``policy`` uses what :func:`evaluate` cannot.

    For refusing such a policy when it is installed rather than denying every request later.
    """
    if not isinstance(policy, Mapping):
        raise PolicyError("the key policy is not an object")
    probe = RequestContext(
        principal_arn="arn:aws:iam::000000000000:root", action="kms:DescribeKey", resource="*"
    )
    for statement in _statements(policy):
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny")
        # Each check parses its whole element, whether or not the probe matches it.
        _principal(statement, probe)
        _action_matches(statement, probe.action)
        _resource_matches(statement, probe.resource)
        conditions_hold(statement.get("Condition"), probe)


def explain(policy: Mapping[str, Any], request: RequestContext) -> tuple[str, ...]:
    """Why no ``Allow`` statement applies: per statement that names the caller, action and
    resource, the conditions that did not hold (``"AllowDecrypt: StringEquals kms:...:PCR2"``).

    Condition keys and operators only, never their values. Empty when the policy cannot be
    evaluated or no statement comes that close.
    """
    if not isinstance(policy, Mapping):
        return ()
    try:
        request = _with_principal_keys(request)
        reasons: list[str] = []
        for index, statement in enumerate(_statements(policy)):
            if statement.get("Effect") != "Allow":
                continue
            principal, _ = _principal(statement, request)
            if not (
                principal
                and _action_matches(statement, request.action)
                and _resource_matches(statement, request.resource)
            ):
                continue
            failed = failed_conditions(statement.get("Condition"), request)
            if failed:
                name = str(statement.get("Sid", f"#{index}"))
                reasons.append(f"{name}: {', '.join(failed)}")
        return tuple(reasons)
    except PolicyError:
        return ()


def evaluate(policy: Mapping[str, Any], request: RequestContext) -> Decision:
    """Decide ``request`` against ``policy``; unsupported constructs deny."""
    if not isinstance(policy, Mapping):
        return Decision(False, "the key policy is not an object")
    try:
        return _decide(policy, request)
    except PolicyError as exc:
        return Decision(False, f"the key policy cannot be evaluated: {exc}")
