"""The enclave's CEL engine, on cel-python (``celpy``).

Public contract::

    engine = CelEngine(cache_size=1024)
    engine.validate(expressions)                 # raises ExpressionTooLong (a ValueError)
    result = engine.evaluate(fields, expressions)
    result.values  # the fields plus every expression output, JSON-ready
    result.errors  # "[age] Execution Error: ...", "[x] Compile Error: ..."

Functions: spec 6.2 (``is_empty``, ``to_lowercase``, ``to_uppercase``, ``sha256``,
``sha384``, ``sha512`` — plain digests, decision D4 —, ``hex_encode``, ``hex_decode``,
``base64_encode``, ``base64_decode``, ``date``, ``today_utc``, ``age``), cel-python's
standard functions and macros, plus ``max``/``min``, ``substring``, time-zone-stable
timestamp accessors (see :mod:`vault.enclave.cel.functions`) and the masking functions
``mask``, ``email_domain``, ``year``, ``bucket`` (:mod:`vault.enclave.cel.masking`).

Logging: no cel-python or lark record ever reaches a handler, at any level (see
:mod:`vault.enclave.cel.library_logs`); error texts are rebuilt without operands (see
:mod:`vault.enclave.cel.errors`). Resource bounds: :class:`CelLimits`.
"""

from vault.enclave.cel.cache import CacheInfo
from vault.enclave.cel.engine import CelEngine, CelResult
from vault.enclave.cel.errors import ExpressionTooLong
from vault.enclave.cel.limits import MAX_EXPRESSION_LENGTH, CelLimits

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "CacheInfo",
    "CelEngine",
    "CelLimits",
    "CelResult",
    "ExpressionTooLong",
]
