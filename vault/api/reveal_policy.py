"""Who may receive what in plaintext: the reveal policy, its schema and its decisions.

A policy is a JSON document (``version`` 1)::

    {
      "version": 1,
      "expressions": {
        "age": {"text": "date(dob).age()", "inputs": ["dob"]}
      },
      "rules": [
        {"id": "support", "principals": ["arn:aws:iam::*:role/vault-support*"],
         "reasons": ["support:*"], "fields": ["ssn4"], "expressions": ["age"]},
        {"id": "analytics", "principals": ["arn:aws:iam::*:role/vault-analytics"],
         "expressions": [{"text": "sha256(ssn9)", "inputs": ["ssn9"]}]}
      ]
    }

A rule applies to a caller whose principal ARN matches one of its ``principals``
(``*`` matches any run of characters, nothing else is special) and whose reason matches
one of its ``reasons`` (absent: any reason). An assumed-role session ARN
(``arn:aws:sts::<account>:assumed-role/<role>/<session>``) also matches as its role's ARN
(``arn:aws:iam::<account>:role/<role>``). The caller may receive the union of what its
matching rules allow: the ``fields`` in plaintext, and the ``expressions`` (named ones
from the top-level ``expressions``, or inline ones) identified by their exact text. An
expression's ``inputs`` are the fields the enclave must open to evaluate it; they are
opened for the expression only and never returned in plaintext unless ``fields`` allows
them too. No rule, nothing: a caller without a principal matches no rule. A rule's
``search`` lists the searchable fields (``ssn9``, ``email``) the caller may search with
``POST /vaults/search``; a search answers vault ids, never values. A rule with
``"rotate": true`` lets its callers rotate a vault's key (``POST /vaults/{id}/rotate``),
which reveals nothing but replaces every ciphertext.

The API Gateway request context of an IAM-authorized call carries no principal tags, so
rules match principal ARNs only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vault.api.models import SCHEMA_FIELDS, SEARCHABLE_FIELDS, normalize_field_name

#: Environment variable holding the policy document (the CDK app and the emulator set it).
POLICY_ENV = "REVEAL_POLICY"
POLICY_VERSION = 1
_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>[^:]+):sts::(?P<account>[0-9]{12}):assumed-role/(?P<role>[^/]+)/.+$"
)
_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_PATTERN_MAX = 2048


class RevealPolicyError(ValueError):
    """The policy document is not valid; ``str()`` says where, never quoting a value it refused."""


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in text.split("*")) + "$", re.DOTALL)


def _field_names(names: Sequence[str]) -> list[str]:
    normalized = [normalize_field_name(name) for name in names]
    unknown = sorted({name for name in normalized if name not in SCHEMA_FIELDS})
    if unknown:
        raise ValueError(f"unknown vault fields: {', '.join(unknown)}")
    return list(dict.fromkeys(normalized))


class ExpressionSpec(BaseModel):
    """A CEL expression by its exact text, and the fields it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=4096)
    inputs: list[str] = Field(default_factory=list, max_length=len(SCHEMA_FIELDS))

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, names: list[str]) -> list[str]:
        return _field_names(names)


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_NAME)
    principals: list[str] = Field(min_length=1, max_length=64)
    reasons: list[str] | None = Field(default=None, min_length=1, max_length=64)
    fields: list[str] = Field(default_factory=list, max_length=len(SCHEMA_FIELDS))
    expressions: list[str | ExpressionSpec] = Field(default_factory=list, max_length=64)
    #: Whether the rule's callers may rotate a vault's key (``POST /vaults/{id}/rotate``): it
    #: reveals nothing, but replaces every ciphertext and the key pair.
    rotate: bool = False
    #: Searchable fields the caller may search (``POST /vaults/search``).
    search: list[str] = Field(default_factory=list, max_length=len(SEARCHABLE_FIELDS))

    @field_validator("fields")
    @classmethod
    def _fields(cls, names: list[str]) -> list[str]:
        return _field_names(names)

    @field_validator("search")
    @classmethod
    def _search(cls, names: list[str]) -> list[str]:
        normalized = [normalize_field_name(name) for name in names]
        unknown = sorted({name for name in normalized if name not in SEARCHABLE_FIELDS})
        if unknown:
            raise ValueError(f"not searchable fields: {', '.join(unknown)}")
        return list(dict.fromkeys(normalized))

    @field_validator("principals", "reasons")
    @classmethod
    def _patterns(cls, patterns: list[str] | None) -> list[str] | None:
        for pattern in patterns or ():
            if not pattern or len(pattern) > _PATTERN_MAX:
                raise ValueError(f"patterns must be 1 to {_PATTERN_MAX} characters")
        return patterns


class PolicySpec(BaseModel):
    """The document's shape; :meth:`RevealPolicy.from_json` builds the matcher from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    expressions: dict[str, ExpressionSpec] = Field(default_factory=dict, max_length=256)
    rules: list[RuleSpec] = Field(min_length=1, max_length=256)

    @field_validator("version")
    @classmethod
    def _version(cls, version: int) -> int:
        if version != POLICY_VERSION:
            raise ValueError(f"version must be {POLICY_VERSION}")
        return version

    @field_validator("expressions")
    @classmethod
    def _names(cls, named: dict[str, ExpressionSpec]) -> dict[str, ExpressionSpec]:
        for name in named:
            if not re.match(_NAME, name):
                raise ValueError("expression names are letters, digits, '_' and '-' (1 to 64)")
        return named

    @model_validator(mode="after")
    def _references(self) -> PolicySpec:
        ids = [rule.id for rule in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        for rule in self.rules:
            for ref in rule.expressions:
                if isinstance(ref, str) and ref not in self.expressions:
                    raise ValueError(f"rule {rule.id} names an undefined expression {ref}")
        return self


def policy_schema() -> dict[str, object]:
    """The policy's JSON schema (what the loader validates against)."""
    return PolicySpec.model_json_schema()


@dataclass(frozen=True)
class Allowance:
    """What one caller may receive for one reason: plaintext fields, and expressions by text → inputs."""

    fields: frozenset[str]
    expressions: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class RevealPlan:
    """An allowed request: the fields to open (plaintext and expression inputs), what to return."""

    #: Fields the caller receives in plaintext.
    plaintext: tuple[str, ...]
    #: Fields opened only as expression inputs (removed from the answer).
    inputs_only: tuple[str, ...]

    @property
    def opened(self) -> tuple[str, ...]:
        return (*self.plaintext, *self.inputs_only)


class RevealRefused(Exception):
    """The policy does not allow these field names and expression output names."""

    def __init__(self, fields: Sequence[str], expressions: Sequence[str]) -> None:
        super().__init__("reveal not allowed")
        self.fields = list(fields)
        self.expressions = list(expressions)


@dataclass(frozen=True)
class _Rule:
    id: str
    principals: tuple[re.Pattern[str], ...]
    reasons: tuple[re.Pattern[str], ...] | None
    fields: frozenset[str]
    expressions: Mapping[str, frozenset[str]]
    search: frozenset[str] = frozenset()
    rotate: bool = False

    def applies(self, identities: Sequence[str], reason: str) -> bool:
        if not any(p.match(identity) for p in self.principals for identity in identities):
            return False
        return self.reasons is None or any(p.match(reason) for p in self.reasons)


def identities_of(principal: str) -> tuple[str, ...]:
    """``principal`` and, for an assumed-role session, its role's ARN."""
    match = _ASSUMED_ROLE.match(principal)
    if match is None:
        return (principal,)
    role = f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"
    return (principal, role)


@dataclass(frozen=True)
class RevealPolicy:
    rules: tuple[_Rule, ...]

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> RevealPolicy:
        rules = []
        for rule in spec.rules:
            expressions: dict[str, frozenset[str]] = {}
            for ref in rule.expressions:
                expression = spec.expressions[ref] if isinstance(ref, str) else ref
                expressions[expression.text] = expressions.get(expression.text, frozenset()) | frozenset(
                    expression.inputs
                )
            rules.append(
                _Rule(
                    id=rule.id,
                    principals=tuple(_pattern(p) for p in rule.principals),
                    reasons=tuple(_pattern(p) for p in rule.reasons) if rule.reasons is not None else None,
                    fields=frozenset(rule.fields),
                    expressions=expressions,
                    search=frozenset(rule.search),
                    rotate=rule.rotate,
                )
            )
        return cls(tuple(rules))

    @classmethod
    def from_json(cls, text: str) -> RevealPolicy:
        """Parse and validate a policy document; :class:`RevealPolicyError` says what is wrong."""
        return cls.from_spec(parse_spec(text))

    def allowance(self, principal: str | None, reason: str) -> Allowance:
        if not principal:
            return Allowance(frozenset(), {})
        identities = identities_of(principal)
        fields: set[str] = set()
        expressions: dict[str, frozenset[str]] = {}
        for rule in self.rules:
            if rule.applies(identities, reason):
                fields |= rule.fields
                for text, inputs in rule.expressions.items():
                    expressions[text] = expressions.get(text, frozenset()) | inputs
        return Allowance(frozenset(fields), expressions)

    def may_search(self, principal: str | None, reason: str, field: str) -> bool:
        """Whether a rule that applies to this caller and reason lists ``field`` under ``search``."""
        if not principal:
            return False
        identities = identities_of(principal)
        return any(field in rule.search and rule.applies(identities, reason) for rule in self.rules)

    def may_rotate(self, principal: str | None, reason: str) -> bool:
        """Whether a rule with ``rotate: true`` applies to this caller and reason (no principal: no)."""
        if not principal:
            return False
        identities = identities_of(principal)
        return any(rule.rotate and rule.applies(identities, reason) for rule in self.rules)

    def plan(
        self, principal: str | None, reason: str, fields: Sequence[str], expressions: Mapping[str, str]
    ) -> RevealPlan:
        """What to open for this request, or :class:`RevealRefused` naming what is not allowed."""
        allowance = self.allowance(principal, reason)
        refused_fields = [name for name in fields if name not in allowance.fields]
        refused_outputs = [name for name, text in expressions.items() if text not in allowance.expressions]
        if refused_fields or refused_outputs:
            raise RevealRefused(refused_fields, refused_outputs)
        inputs: dict[str, None] = {}
        for text in expressions.values():
            inputs.update(dict.fromkeys(sorted(allowance.expressions[text])))
        plaintext = tuple(fields)
        inputs_only = tuple(name for name in inputs if name not in plaintext)
        # An output named like an input-only field would share its key in the enclave's
        # answer: which of the two came back could not be told apart.
        colliding = [name for name in expressions if name in inputs_only]
        if colliding:
            raise RevealRefused([], colliding)
        return RevealPlan(plaintext=plaintext, inputs_only=inputs_only)


def parse_spec(text: str) -> PolicySpec:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise RevealPolicyError(f"reveal policy is not JSON: {exc.__class__.__name__}") from None
    try:
        return PolicySpec.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise RevealPolicyError(f"reveal policy is not valid: {problems}") from None


def deployable(text: str) -> str:
    """The validated policy as compact JSON: what the CDK app and the emulator put in ``REVEAL_POLICY``."""
    spec = parse_spec(text)
    return json.dumps(spec.model_dump(mode="json", exclude_defaults=True), separators=(",", ":"))


def load_policy(environ: Mapping[str, str]) -> RevealPolicy | None:
    """The policy in ``REVEAL_POLICY``, or ``None`` when it is unset or blank."""
    text = environ.get(POLICY_ENV, "").strip()
    if not text:
        return None
    return RevealPolicy.from_json(text)
