"""Resource bounds: an expression can neither hang nor exhaust the enclave."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from unit.cel.support import error_of, evaluate_one
from vault.enclave.cel import CelEngine, CelLimits


def _list(count: int) -> str:
    return "[" + ", ".join(["1"] * count) + "]"


def test_nested_macros_stop_at_the_step_limit() -> None:
    engine = CelEngine(limits=CelLimits(max_steps=5_000))
    expression = f"{_list(100)}.map(a, {_list(100)}.map(b, a + b))"
    assert (
        error_of(engine, expression) == "[out] Execution Error: evaluation step limit exceeded (5000 steps)"
    )


def test_default_limits_stop_a_quadratic_macro_quickly() -> None:
    engine = CelEngine()
    expression = f"{_list(1000)}.map(a, {_list(1000)}.map(b, b))"
    started = time.process_time()
    detail = error_of(engine, expression)
    # A million steps wanted: the step bound or the CPU budget stops it. CPU time, not wall
    # time: a loaded machine stretches the wall clock, not the work done.
    assert detail in {
        "[out] Execution Error: evaluation step limit exceeded (100000 steps)",
        "[out] Execution Error: evaluation time limit exceeded",
    }
    assert time.process_time() - started < 5


def test_steps_are_counted_per_expression() -> None:
    engine = CelEngine(limits=CelLimits(max_steps=400))
    expression = f"{_list(10)}.map(a, a * 2)"
    result = engine.evaluate({}, {"first": expression, "second": expression})
    assert result.errors == []
    assert result.values["second"] == [2] * 10


def test_the_deadline_covers_the_whole_call() -> None:
    engine = CelEngine(limits=CelLimits(max_seconds=0.2, max_steps=10**9))
    slow = f"{_list(1000)}.map(a, {_list(1000)}.map(b, b))"
    started = time.process_time()
    result = engine.evaluate({}, {"slow": slow, "later": "1 + 1"})
    # Without the deadline the million steps take tens of CPU seconds; CPU time, since a
    # loaded machine stretches the wall clock.
    assert time.process_time() - started < 3
    assert result.errors == [
        "[slow] Execution Error: evaluation time limit exceeded",
        "[later] Execution Error: evaluation time limit exceeded",
    ]
    # Past the deadline, "later" was not even compiled.
    assert engine.cache_info().misses == 1


def test_exponential_string_growth_stops_at_the_value_size_limit(engine: CelEngine) -> None:
    expression = "f" + ".hex_encode()" * 30
    assert error_of(engine, expression, {"f": "x" * 1000}) == (
        "[out] Execution Error: value size limit exceeded (1000000 units)"
    )


def test_repeated_concatenation_stops_at_the_allocation_limit(engine: CelEngine) -> None:
    expression = " + ".join(["f"] * 9)
    # Each partial sum is a new string: 200k + 300k + ... + 900k characters in all.
    assert error_of(engine, expression, {"f": "x" * 100_000}) == (
        "[out] Execution Error: allocation limit exceeded (4000000 units)"
    )


def test_shared_references_are_counted_in_full(engine: CelEngine) -> None:
    # Ten references to a list of ten references to ...: tiny in memory, huge as JSON.
    expression = "[f, f, f, f, f, f, f, f, f, f]" + ".map(a, [a, a, a, a, a, a, a, a, a, a])" * 4
    assert error_of(engine, expression, {"f": "x" * 100}) == (
        "[out] Execution Error: value size limit exceeded (1000000 units)"
    )


def test_doubling_across_expressions_is_bounded(engine: CelEngine) -> None:
    expressions = {"o0": "[f, f]"} | {f"o{index}": f"[o{index - 1}, o{index - 1}]" for index in range(1, 30)}
    started = time.monotonic()
    result = engine.evaluate({"f": "x" * 1000}, expressions)
    assert time.monotonic() - started < 5
    assert "[o9] Execution Error: value size limit exceeded (1000000 units)" in result.errors
    assert result.values["o8"] is not None
    assert result.values["o9"] is None


def test_value_nesting_is_bounded(engine: CelEngine) -> None:
    expressions = {"o0": "[1]"} | {f"o{index}": f"[o{index - 1}]" for index in range(1, 40)}
    result = engine.evaluate({}, expressions)
    assert result.values["o30"] is not None
    assert result.values["o32"] is None
    assert "[o32] Execution Error: value nesting limit exceeded (32 levels)" in result.errors


def test_total_output_is_bounded() -> None:
    engine = CelEngine(limits=CelLimits(max_output_size=1000))
    result = engine.evaluate({"f": "x" * 600}, {"a": "f", "b": "f", "c": "f.size()"})
    assert result.values["a"] == "x" * 600
    assert result.values["b"] is None
    assert result.values["c"] is None
    assert result.errors == [
        "[b] Execution Error: output size limit exceeded (1000 units)",
        "[c] Execution Error: output size limit exceeded (1000 units)",
    ]


class TestNestingDepth:
    def test_deep_parentheses_are_a_compile_error(self, engine: CelEngine) -> None:
        assert error_of(engine, "(" * 200 + "1" + ")" * 200) == (
            "[out] Compile Error: expression nested too deeply (more than 400 levels)"
        )

    def test_maximal_expression_of_ten_kib_is_refused_promptly(self, engine: CelEngine) -> None:
        started = time.monotonic()
        detail = error_of(engine, "(" * 5000 + "1" + ")" * 5000)
        assert detail.startswith("[out] Compile Error: expression nested too deeply")
        assert time.monotonic() - started < 5

    @pytest.mark.parametrize("expression", ["(" * 40 + "1" + ")" * 40, " + ".join(["1"] * 197)])
    def test_just_past_the_deepest_accepted_is_a_compile_error(
        self, engine: CelEngine, expression: str
    ) -> None:
        assert (
            error_of(engine, expression)
            == "[out] Compile Error: expression nested too deeply (more than 400 levels)"
        )

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [("(" * 39 + "1" + ")" * 39, 1), (" + ".join(["1"] * 196), 196)],
    )
    def test_deepest_accepted_expressions_evaluate_on_any_thread(
        self, engine: CelEngine, expression: str, expected: int
    ) -> None:
        assert evaluate_one(engine, expression) == expected
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(evaluate_one, engine, expression).result() == expected

    def test_recursion_error_is_an_execution_error(self) -> None:
        # With the depth check lifted, Python's own recursion limit is the backstop; the
        # time budgets are lifted too, so a loaded machine cannot stop it first.
        engine = CelEngine(
            limits=CelLimits(max_ast_depth=10**6, max_expression_seconds=60.0, max_seconds=60.0)
        )
        # Single-child levels cost no stack frame of their own, so it takes deeper nesting.
        assert error_of(engine, "(" * 1500 + "1" + ")" * 1500) == (
            "[out] Execution Error: expression nested too deeply"
        )


_NINE = "[1, 2, 3, 4, 5, 6, 7, 8, 9]"


def test_each_expression_has_its_own_time_budget() -> None:
    # 6561 elements, each a digest: far beyond half a second of CPU time.
    heavy = f"{_NINE}.map(a, {_NINE}.map(b, {_NINE}.map(c, {_NINE}.map(d, string(a * b * c * d).sha512()))))"
    engine = CelEngine(limits=CelLimits(max_expression_seconds=0.2, max_seconds=10, max_steps=10**9))
    started = time.monotonic()
    result = engine.evaluate({"f": "v"}, {"heavy": heavy, "later": "f + '!'", "also": "1 + 1"})
    # It fails alone; the expressions after it still run.
    assert result.errors == ["[heavy] Execution Error: evaluation time limit exceeded"]
    assert result.values["later"] == "v!"
    assert result.values["also"] == 2
    assert time.monotonic() - started < 5


def test_a_729_element_nested_map_fits_the_default_budget(engine: CelEngine) -> None:
    nested = f"{_NINE}.map(a, {_NINE}.map(b, {_NINE}.map(c, a * b * c)))"
    result = engine.evaluate({}, {"cube": nested, "later": "1 + 1"})
    assert result.errors == []
    assert result.values["cube"][8][8] == [81 * c for c in range(1, 10)]
    assert result.values["later"] == 2


def test_heavy_expressions_together_stop_at_the_request_bound() -> None:
    heavy = f"{_NINE}.map(a, {_NINE}.map(b, {_NINE}.map(c, {_NINE}.map(d, string(a * b * c * d).sha512()))))"
    engine = CelEngine(limits=CelLimits(max_expression_seconds=0.2, max_seconds=0.5, max_steps=10**9))
    started = time.monotonic()
    result = engine.evaluate({}, {f"h{index}": heavy for index in range(8)})
    elapsed = time.monotonic() - started
    assert result.errors == [
        f"[h{index}] Execution Error: evaluation time limit exceeded" for index in range(8)
    ]
    # Eight expressions of 0.2 s CPU each would take 1.6 s; the call stops near its 0.5 s.
    assert elapsed < 1.5
