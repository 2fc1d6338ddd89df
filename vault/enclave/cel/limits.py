"""Resource bounds for CEL evaluation.

cel-python is a tree-walking interpreter with no limits of its own, and an expression
is request input: without bounds, a 10 KiB expression can loop for hours (nested
macros over long lists) or grow a value exponentially (``s.hex_encode()`` repeated,
lists of lists of the same list). Every bound below turns into an error entry for the
one expression that hits it (a ``Compile Error`` for the nesting of the expression
text, an ``Execution Error`` otherwise); the request and the other expressions carry on.

Sizes are counted in *units*: one per character of a string, one per byte of a bytes
value and :data:`ENTRY_UNITS` per entry of a list or map (an entry costs a pointer and
an object, and about a microsecond to convert), with nested values counted in full
each time they are referenced (so ``[x, x]`` costs twice ``x``). That is what
converting the value to JSON, comparing it or turning it into a string costs.

Time has two bounds: each expression's evaluation has its own
(``max_expression_seconds`` of CPU time), so one heavy expression fails alone, and the whole
``evaluate`` call has one (``max_seconds``, below the parent's read timeout), so many
heavy expressions cannot hold the enclave either. Compiling is bounded by the
expression size (10 KiB parse in at most about 0.6 s) and by the call's deadline: once
an ``evaluate`` call is past it, later expressions are neither compiled nor run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import celpy.celtypes as ct

# Upstream's per-expression limit, in UTF-8 bytes (spec 4.2 / 6.1).
MAX_EXPRESSION_LENGTH = 10240

# Units one list or map entry counts for.
ENTRY_UNITS = 16


@dataclass(frozen=True)
class CelLimits:
    """Bounds on compiling and evaluating expressions; the defaults suit the enclave.

    ``max_ast_depth`` keeps the recursive evaluator inside Python's recursion limit
    (cel-python raises it to 2500 frames; each tree level takes at most four): 400 levels
    allow 39 nested parentheses or a chain of 196 ``+`` terms.
    """

    # Parse-tree levels an expression may have; deeper ones are a Compile Error.
    max_ast_depth: int = 400
    # Tree nodes one expression may evaluate (a few µs each), macro bodies included; a precedence
    # level with a single child (``expr`` around a plain ``x``) is not a step.
    max_steps: int = 100_000
    # CPU seconds (of the evaluating thread) for evaluating one expression, compiling not included.
    max_expression_seconds: float = 0.5
    # Wall-clock seconds for one evaluate() call, all expressions (compiling included) together.
    max_seconds: float = 2.0
    # Size of any single value an expression produces, in units.
    max_value_size: int = 1_000_000
    # Nesting of lists and maps inside one value.
    max_value_depth: int = 32
    # Units of new values one expression may create in total, intermediate ones included.
    max_allocated: int = 4_000_000
    # Units of JSON all outputs of one evaluate() call may add up to (a reply frame is 10 MiB).
    max_output_size: int = 4_000_000


class LimitExceeded(Exception):
    """An expression hit a bound; the message names the bound, never a value.

    Deliberately not a ``ValueError``/``TypeError``/``KeyError``: cel-python turns those
    into CEL error values that ``||`` and ``&&`` may swallow, and a bound must stop the
    whole expression.
    """


class ValueMeter:
    """Measures every value an expression produces, remembering each by identity.

    Remembering keeps the cost of measuring ``[x, x, x]`` proportional to its length
    rather than to its expanded size, and keeps the measured objects alive so that
    their ids stay unique for the life of the meter (one expression).
    """

    def __init__(self, limits: CelLimits) -> None:
        self._limits = limits
        self._known: dict[int, tuple[object, int, int]] = {}
        self._allocated = 0

    def admit(self, value: object) -> None:
        """Measure ``value``; raise :class:`LimitExceeded` past a bound."""
        self._measure(value, 0)

    def _measure(self, value: object, depth: int) -> tuple[int, int]:
        """``(size, nesting)`` of ``value``; ``depth`` is how deep inside the admitted value it sits."""
        if isinstance(value, (str, bytes)):
            own = len(value)
        elif isinstance(value, (ct.ListType, ct.MapType)):
            own = len(value) * ENTRY_UNITS
        else:
            # Scalars, errors, types, name spaces, and the interpreter's own lists of
            # child results (whose items were measured as they were produced).
            return 1, 0
        known = self._known.get(id(value))
        if known is not None:
            return known[1], known[2]
        if depth >= self._limits.max_value_depth:
            raise LimitExceeded(f"value nesting limit exceeded ({self._limits.max_value_depth} levels)")
        size, nesting = own, 0
        children: Iterable[object] = ()
        if isinstance(value, ct.ListType):
            children = value
        elif isinstance(value, ct.MapType):
            children = [*value.keys(), *value.values()]
        for child in children:
            child_size, child_nesting = self._measure(child, depth + 1)
            size += child_size
            nesting = max(nesting, child_nesting + 1)
        if nesting > self._limits.max_value_depth:
            raise LimitExceeded(f"value nesting limit exceeded ({self._limits.max_value_depth} levels)")
        if size > self._limits.max_value_size:
            raise LimitExceeded(f"value size limit exceeded ({self._limits.max_value_size} units)")
        self._allocated += own
        if self._allocated > self._limits.max_allocated:
            raise LimitExceeded(f"allocation limit exceeded ({self._limits.max_allocated} units)")
        self._known[id(value)] = (value, size, nesting)
        return size, nesting


class Budget:
    """What one expression may still spend: evaluation steps, time and new values.

    Two clocks: ``deadline`` is the call's wall-clock bound (``time.monotonic``), and the
    expression's own bound is CPU time of the evaluating thread (``time.thread_time``),
    so that a busy host, which slows every thread alike, does not fail a light
    expression, while a heavy one still fails alone.
    """

    def __init__(self, limits: CelLimits, deadline: float) -> None:
        self._steps_left = limits.max_steps
        self._max_steps = limits.max_steps
        self._deadline = deadline
        self._cpu_deadline = time.thread_time() + limits.max_expression_seconds
        self.meter = ValueMeter(limits)

    def step(self) -> None:
        """Account for one tree node about to be evaluated."""
        self._steps_left -= 1
        if self._steps_left < 0:
            raise LimitExceeded(f"evaluation step limit exceeded ({self._max_steps} steps)")
        if time.monotonic() > self._deadline or (
            # Reading the thread's CPU clock costs more; every 16th step is precise enough.
            not self._steps_left & 15 and time.thread_time() > self._cpu_deadline
        ):
            raise LimitExceeded("evaluation time limit exceeded")
