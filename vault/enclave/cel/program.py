"""Compiling an expression once, and evaluating the compiled form within a budget."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import lark
from celpy.evaluation import Activation, CELEvalError, Evaluator, Result

from vault.enclave.cel.errors import describe_compile_failure
from vault.enclave.cel.limits import Budget, CelLimits

# cel-python's parser is one Lark instance shared by every Environment, and its facade
# keeps the text being parsed in an attribute; parses are rare (cached), so serialise them.
_PARSE_LOCK = threading.Lock()

# Macros cel-python evaluates itself, with the number of arguments it unpacks and how
# many of the leading ones are variable names. Checking here makes misuse a Compile
# Error, as in other CEL implementations, instead of a crash inside the interpreter.
_MACROS: Mapping[str, tuple[int, int]] = {
    "map": (2, 1),
    "filter": (2, 1),
    "all": (2, 1),
    "exists": (2, 1),
    "exists_one": (2, 1),
    "reduce": (4, 2),
}


@dataclass(frozen=True)
class Program:
    """A parsed expression and the variable names it may read."""

    ast: lark.Tree[Any]
    variables: frozenset[str]


@dataclass(frozen=True)
class CompileFailure:
    """Why an expression does not compile, without quoting it."""

    detail: str


Compiled = Program | CompileFailure


def compile_expression(environment: celpy.Environment, text: str, limits: CelLimits) -> Compiled:
    try:
        with _PARSE_LOCK:
            ast = environment.compile(text)
    except Exception as exc:  # noqa: BLE001 - any parser failure is this expression's Compile Error
        return CompileFailure(describe_compile_failure(exc))
    return _inspect(ast, limits)


def _inspect(ast: lark.Tree[Any], limits: CelLimits) -> Compiled:
    """Check depth and macro shapes, and collect referenced variables, without recursion."""
    variables: set[str] = set()
    stack: list[tuple[lark.Tree[Any], int]] = [(ast, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_ast_depth:
            return CompileFailure(f"expression nested too deeply (more than {limits.max_ast_depth} levels)")
        if node.data in ("ident", "dot_ident"):
            variables.add(str(node.children[0]))
        elif node.data == "member_dot_arg":
            problem = _macro_problem(node)
            if problem is not None:
                return CompileFailure(problem)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, lark.Tree))
    return Program(ast, frozenset(variables))


def _macro_problem(node: lark.Tree[Any]) -> str | None:
    name = str(node.children[1])
    shape = _MACROS.get(name)
    if shape is None:
        return None
    arity, names = shape
    arguments = node.children[2].children if len(node.children) > 2 else []
    if len(arguments) != arity:
        return f"macro '{name}' takes {arity} arguments"
    if not all(_is_identifier(argument) for argument in arguments[:names]):
        return f"macro '{name}' needs a variable name as its first argument"
    return None


def _is_identifier(tree: lark.Tree[Any]) -> bool:
    """True if ``tree`` is a bare identifier: a chain of single-child nodes ending in ``ident``."""
    node: object = tree
    while isinstance(node, lark.Tree):
        if node.data == "ident":
            return True
        if len(node.children) != 1:
            return False
        node = node.children[0]
    return False


class BoundedEvaluator(Evaluator):
    """cel-python's interpreter, charging every tree node and every produced value to a budget."""

    def __init__(self, ast: lark.Tree[Any], activation: Activation, budget: Budget) -> None:
        super().__init__(ast=ast, activation=activation)
        self._budget = budget

    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        # Macro bodies are evaluated by sub-evaluators; they share the budget.
        return BoundedEvaluator(ast, self.activation, self._budget)

    def method_eval(
        self, object: Result, method_ident: lark.Token, exprlist: Iterable[Result] | None = None
    ) -> Result:
        # An error in the receiver is the error to report (``missing.to_uppercase()`` is an
        # undeclared ``missing``), as in upstream; cel-python would look up the method first.
        if isinstance(object, CELEvalError):
            return object
        return super().method_eval(object, method_ident, exprlist)

    def _visit_tree(self, tree: lark.Tree[Any]) -> Any:
        # Replaces lark's dispatcher (same body) rather than wrapping it, so that the
        # check adds no stack frame per tree level.
        self._budget.step()
        method = getattr(self, tree.data)
        wrapper = getattr(method, "visit_wrapper", None)
        if wrapper is not None:
            result = method.visit_wrapper(method, tree.data, tree.children, tree.meta)
        else:
            result = method(tree)
        self._budget.meter.admit(result)
        return result


def run(program: Program, activation: Activation, variables: Mapping[str, Result], budget: Budget) -> Result:
    """Evaluate ``program``; raises ``CELEvalError`` for a CEL error, ``LimitExceeded`` past a bound."""
    evaluator = BoundedEvaluator(program.ast, activation, budget)
    return evaluator.evaluate(dict(variables))
