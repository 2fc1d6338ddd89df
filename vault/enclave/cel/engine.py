"""The enclave's CEL step: run a request's expressions over its decrypted fields."""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
import celpy.celtypes as ct
from celpy.evaluation import Activation, Result

from vault.enclave.cel.cache import BuildOnceCache, CacheInfo
from vault.enclave.cel.convert import JsonConverter, Unconvertible
from vault.enclave.cel.errors import (
    COMPILE_ERROR,
    EXECUTION_ERROR,
    ExpressionTooLong,
    describe_compile_failure,
    describe_runtime_failure,
)
from vault.enclave.cel.functions import Clock, vault_functions
from vault.enclave.cel.library_logs import isolate_library_loggers
from vault.enclave.cel.limits import MAX_EXPRESSION_LENGTH, Budget, CelLimits
from vault.enclave.cel.program import Compiled, CompileFailure, compile_expression, run


@dataclass
class CelResult:
    """``values``: the fields plus every output, JSON-ready; ``errors``: one entry per failed expression."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _cel_value(value: str | None) -> Result:
    return None if value is None else ct.StringType(value)


class CelEngine:
    """Compiles (once per distinct text, LRU-cached) and evaluates CEL expressions.

    Semantics (spec 6.1 with decision D3): expressions run in the mapping's order; each
    sees every field (a CEL string, or null for a field that failed to decrypt) and the
    outputs of the expressions before it as variables; each output is written under its
    name, replacing a field of that name. A failing expression gives ``None`` and an
    ``errors`` entry ``[name] Compile Error: ...`` or ``[name] Execution Error: ...``
    whose text never contains a field value; the others are unaffected. Names that are
    not CEL identifiers cannot be referenced but still produce outputs.

    Safe to share between threads. ``clock`` (returning an aware ``datetime``) is the
    "now" of ``age`` and ``today_utc``, the system clock by default; ``limits`` bounds
    every expression (see :class:`CelLimits`). ``cache_size`` 0 disables the cache.
    """

    def __init__(
        self,
        cache_size: int = 1024,
        *,
        limits: CelLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        isolate_library_loggers()
        self._limits = limits or CelLimits()
        # cel-python sets the recursion limit to 2500 on every Environment; keep a higher
        # limit someone else chose, and never go below what CelLimits.max_ast_depth assumes.
        recursion_limit = sys.getrecursionlimit()
        self._environment = celpy.Environment()
        sys.setrecursionlimit(max(recursion_limit, sys.getrecursionlimit()))
        # One read-only activation (types and functions) for every evaluation:
        # cel-python clones it before binding variables, so sharing it is thread-safe
        # and saves rebuilding the well-known type table per expression.
        self._activation = Activation(
            annotations=self._environment.annotations,
            functions=vault_functions(clock or _utc_now),
            package=self._environment.package,
        )
        self._programs: BuildOnceCache[Compiled] = BuildOnceCache(cache_size, self._compile)

    def _compile(self, text: str) -> Compiled:
        return compile_expression(self._environment, text, self._limits)

    def cache_info(self) -> CacheInfo:
        """Hits, misses (= compilations), capacity and current size of the program cache."""
        return self._programs.info()

    def validate(self, expressions: Mapping[str, str]) -> None:
        """Raise :class:`ExpressionTooLong` for the first expression over the size limit."""
        for name, text in expressions.items():
            # surrogatepass: JSON can deliver lone surrogates; count them as 3 bytes, as CESU-8 would.
            length = len(text.encode("utf-8", "surrogatepass"))
            if length > MAX_EXPRESSION_LENGTH:
                raise ExpressionTooLong(name, length)

    def evaluate(self, fields: Mapping[str, str | None], expressions: Mapping[str, str]) -> CelResult:
        """Run ``expressions`` over ``fields``; only :class:`ExpressionTooLong` is raised."""
        self.validate(expressions)
        result = CelResult(values=dict(fields))
        scope: dict[str, Result] = {name: _cel_value(value) for name, value in fields.items()}
        deadline = time.monotonic() + self._limits.max_seconds
        converter = JsonConverter(self._limits)
        for name, text in expressions.items():
            value, output, error = self._run_one(text, scope, deadline, converter)
            scope[name] = value
            result.values[name] = output
            if error is not None:
                result.errors.append(f"[{name}] {error}")
        return result

    def _run_one(
        self, text: str, scope: Mapping[str, Result], deadline: float, converter: JsonConverter
    ) -> tuple[Result, Any, str | None]:
        """``(CEL value for later expressions, JSON output, error entry or None)``."""
        if time.monotonic() > deadline:
            # Not even compiled: a parse alone can take a large part of a second.
            return None, None, f"{EXECUTION_ERROR}: evaluation time limit exceeded"
        try:
            program = self._programs.get(text)
        except Exception as exc:  # noqa: BLE001 - a compiler crash is this expression's Compile Error
            return None, None, f"{COMPILE_ERROR}: {describe_compile_failure(exc)}"
        if isinstance(program, CompileFailure):
            return None, None, f"{COMPILE_ERROR}: {program.detail}"
        variables = {name: scope[name] for name in program.variables if name in scope}
        try:
            # The budget holds the expression's own time and what is left of the call's.
            value = run(program, self._activation, variables, Budget(self._limits, deadline))
            return value, converter.convert(value), None
        except Unconvertible as exc:
            return None, None, f"{EXECUTION_ERROR}: {exc}"
        except Exception as exc:  # noqa: BLE001 - every failure is this expression's error, never the request's
            return None, None, f"{EXECUTION_ERROR}: {describe_runtime_failure(exc)}"
