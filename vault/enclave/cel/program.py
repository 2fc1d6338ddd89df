"""Compiling an expression once, and evaluating the compiled form within a budget."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import celpy
import celpy.celtypes as ct
import lark
from celpy.evaluation import Activation, CELEvalError, Evaluator, Result, celbytes, celstr

from vault.enclave.cel.errors import describe_compile_failure
from vault.enclave.cel.limits import Budget, CelLimits

# cel-python's parser is one Lark instance shared by every Environment, and its facade
# keeps the text being parsed in an attribute; parses are rare (cached), so serialise them.
_PARSE_LOCK = threading.Lock()

# Methods cel-python's member_dot_arg evaluates as macros (their arguments are not evaluated first).
_MACRO_METHODS: Final = frozenset({"map", "filter", "all", "exists", "exists_one", "reduce", "min"})

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
    """A parsed expression, the variable names it may read and its literals' values.

    ``literals`` maps ``id()`` of each ``literal`` node of ``ast`` (kept alive by it) to
    its value, decoded once here instead of at every evaluation; the values are
    immutable CEL scalars, so evaluations in any thread can share them.
    """

    ast: lark.Tree[Any]
    variables: frozenset[str]
    literals: Mapping[int, Result] = field(default_factory=dict)


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
    literals: dict[int, Result] = {}
    stack: list[tuple[lark.Tree[Any], int]] = [(ast, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_ast_depth:
            return CompileFailure(f"expression nested too deeply (more than {limits.max_ast_depth} levels)")
        if node.data in ("ident", "dot_ident"):
            variables.add(str(node.children[0]))
        elif node.data == "literal":
            problem = _literal_problem(node.children[0])
            if problem is not None:
                return CompileFailure(problem)
            value = _literal_value(node.children[0])
            if value is not _UNDECODED:
                literals[id(node)] = cast(Result, value)
        elif node.data == "member_dot_arg":
            problem = _macro_problem(node)
            if problem is not None:
                return CompileFailure(problem)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, lark.Tree))
    return Program(ast, frozenset(variables), literals)


def _literal_problem(token: object) -> str | None:
    """Refuse string literals that are not Unicode text, and bytes literals with ``\\u`` escapes.

    cel-python decodes ``'\\ud800'`` to a lone surrogate, which is not a Unicode scalar
    value (it cannot be encoded as UTF-8); the CEL spec and upstream refuse it when
    parsing, and so does this, for an escaped or a literal surrogate alike.
    """
    if not isinstance(token, lark.Token):
        return None
    if token.type in ("STRING_LIT", "MLSTRING_LIT"):
        try:
            text = celstr(token)
        except ValueError:
            return "invalid string literal: escape out of the Unicode range"
        if any("\ud800" <= character <= "\udfff" for character in text):
            return "invalid string literal: surrogate code point"
    elif token.type == "BYTES_LIT":
        raw = token.value[:2].lower() == "br"
        if not raw and re.search(r"(?<!\\)(?:\\\\)*\\[uU]", token.value):
            return "invalid bytes literal: \\u escape"
    return None


_UNDECODED: Final = object()


def _literal_value(token: object) -> Result | object:
    """The value of a literal token as cel-python makes it, or ``_UNDECODED``.

    Literals whose decoding fails (an int beyond int64, say) stay undecoded, so that
    evaluating them reports the error as before.
    """
    if not isinstance(token, lark.Token):
        return _UNDECODED
    try:
        if token.type in ("STRING_LIT", "MLSTRING_LIT"):
            return celstr(token)
        if token.type == "BYTES_LIT":
            return celbytes(token)
        if token.type == "INT_LIT":
            return ct.IntType(token.value)
        if token.type == "UINT_LIT" and token.value[-1:] in ("u", "U"):
            return ct.UintType(token.value[:-1])
        if token.type == "FLOAT_LIT":
            return ct.DoubleType(token.value)
        if token.type == "BOOL_LIT":
            return ct.BoolType(token.value.lower() == "true")
        if token.type == "NULL_LIT":
            return None
    except ValueError:
        pass
    return _UNDECODED


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


# Operator node → function name, for the binary operators' fast path.
_BINARY_OPERATORS: Final = {
    "relation_lt": "_<_",
    "relation_le": "_<=_",
    "relation_ge": "_>=_",
    "relation_gt": "_>_",
    "relation_eq": "_==_",
    "relation_ne": "_!=_",
    "relation_in": "_in_",
    "addition_add": "_+_",
    "addition_sub": "_-_",
    "multiplication_div": "_/_",
    "multiplication_mul": "_*_",
    "multiplication_mod": "_%_",
}


def _error(message: str, exc: BaseException, **where: Any) -> CELEvalError:
    value = CELEvalError(message, exc.__class__, exc.args, **where)
    value.__cause__ = exc
    return value


class BoundedEvaluator(Evaluator):
    """cel-python's interpreter, charging every tree node and every produced value to a budget.

    The hot rules (literals, names, calls, methods, binary operators) are evaluated here
    with cel-python's semantics and error texts, but without its per-call
    ``typing.cast(List[Result], ...)`` subscripts (each hashes the large ``Result``
    union: about a third of the time of a typical expression) and its debug logging
    calls; macros and everything else go to cel-python's own rules.
    """

    def __init__(
        self,
        ast: lark.Tree[Any],
        activation: Activation,
        budget: Budget,
        literals: Mapping[int, Result] | None = None,
    ) -> None:
        super().__init__(ast=ast, activation=activation)
        self._budget = budget
        self._literals: Mapping[int, Result] = literals or {}

    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        # Macro bodies are evaluated by sub-evaluators; they share the budget.
        return BoundedEvaluator(ast, self.activation, self._budget, self._literals)

    def literal(self, tree: lark.Tree[Any]) -> Result:
        value = self._literals.get(id(tree), _UNDECODED)
        if value is _UNDECODED:
            return cast(Result, super().literal(tree))
        return cast(Result, value)

    def primary(self, tree: lark.Tree[Any]) -> Result:
        if len(tree.children) != 1:
            return cast(Result, super().primary(tree))
        child: Any = tree.children[0]
        kind = child.data
        if kind == "literal":
            return cast(Result, self.visit(child))
        if kind == "paren_expr":
            return cast(Result, self.visit(child.children[0]))
        if kind == "ident":
            name = child.children[0]
            try:
                return self._variable(name.value)
            except KeyError as exc:
                return _error(f"undeclared reference to '{name}'", exc, tree=tree)
        if kind == "ident_arg" and child.children[0].value not in ("has", "dyn"):
            arguments = child.children[1].children if len(child.children) == 2 else []
            values = [self.visit(argument) for argument in arguments]
            return self.function_eval(child.children[0], values)
        return cast(Result, super().primary(tree))

    def _variable(self, name: str) -> Result:
        """``activation.resolve_variable(name)`` for a plain name, without its per-call overhead.

        With no package, cel-python's resolution of a one-part name is the innermost
        name container (macro variables first) that holds it; anything else goes to
        cel-python. ``resolve_variable`` builds a ``typing.Union`` and formats every name
        in scope for a debug record on each call (about 70 µs).
        """
        activation = self.activation
        if not activation.package:
            for container in activation.identifiers.parent_iter():
                referent = dict.get(container, name)
                if referent is not None:
                    return cast(Result, referent.value)
        return cast(Result, activation.resolve_variable(name))

    def function_eval(self, name_token: lark.Token, exprlist: Iterable[Result] | None = None) -> Result:
        try:
            function = self.activation.resolve_function(name_token.value)
        except KeyError as exc:
            return _error(f"undeclared reference to '{name_token}'", exc, token=name_token)
        if isinstance(exprlist, CELEvalError):
            return exprlist
        arguments = list(exprlist or ())
        for argument in arguments:
            if isinstance(argument, CELEvalError):
                return argument
        try:
            return function(*arguments)
        except ValueError as exc:
            return _error("return error for overflow", exc, token=name_token)
        except (TypeError, AttributeError) as exc:
            return _error("no such overload", exc, token=name_token)

    def method_eval(
        self, object: Result, method_ident: lark.Token, exprlist: Iterable[Result] | None = None
    ) -> Result:
        # An error in the receiver is the error to report (``missing.to_uppercase()`` is an
        # undeclared ``missing``), as in upstream; cel-python would look up the method first.
        if isinstance(object, CELEvalError):
            return object
        try:
            function = self.activation.resolve_function(method_ident.value)
        except KeyError as exc:
            return _error(f"undeclared reference to {method_ident.value!r}", exc, token=method_ident)
        if isinstance(exprlist, CELEvalError):
            return exprlist
        try:
            return function(object, *(exprlist or ()))
        except ValueError as exc:
            return _error("return error for overflow", exc, token=method_ident)
        except (TypeError, AttributeError) as exc:
            return _error("no such overload", exc, token=method_ident)

    def member_dot_arg(self, tree: lark.Tree[Any]) -> Result:
        children: list[Any] = tree.children
        if children[1].value in _MACRO_METHODS:
            return cast(Result, super().member_dot_arg(tree))
        member = self.visit(children[0])
        if len(children) == 2:
            return self.method_eval(member, children[1])
        return self.method_eval(member, children[1], self.visit(children[2]))

    def _binary(self, tree: lark.Tree[Any]) -> Result:
        if len(tree.children) != 2:
            return cast(Result, self.visit(tree.children[0]))
        operator_tree: Any
        right_tree: Any
        operator_tree, right_tree = tree.children
        function = self.activation.resolve_function(_BINARY_OPERATORS[operator_tree.data])
        # The operator node's only child is the left operand; visiting it yields [left].
        left = self.visit(operator_tree)[0]
        right = self.visit(right_tree)
        try:
            return cast(Result, function(left, right))
        except TypeError as exc:
            return _error(
                f"found no matching overload for {operator_tree.data!r} "
                f"applied to '({type(left)}, {type(right)})'",
                exc,
                tree=tree,
            )
        except ZeroDivisionError as exc:
            if tree.data != "multiplication":
                raise
            return _error("modulus or divide by zero", exc, tree=tree)
        except (ValueError, OverflowError) as exc:
            if tree.data == "relation":
                raise
            return _error("return error for overflow", exc, tree=tree)

    relation = _binary
    addition = _binary
    multiplication = _binary

    def _visit_tree(self, tree: lark.Tree[Any]) -> Any:
        # Replaces lark's dispatcher rather than wrapping it, so that the check adds no
        # stack frame per tree level. Rule methods are looked up once per class: none of
        # cel-python's carries a lark ``visit_wrapper``, and rules without a method
        # (``relation_lt`` and the like) go to ``__default__``, as lark's __getattr__ does.
        # A precedence level with one child (``expr`` → ``conditionalor`` → ... → ``member``
        # for a plain ``x``) returns its child's value unchanged: go straight to the child.
        while tree.data in _PASS_THROUGH and len(tree.children) == 1:
            child = tree.children[0]
            if not isinstance(child, lark.Tree):
                break
            tree = child
        self._budget.step()
        rule = _RULES.get(tree.data)
        if rule is None:
            rule = getattr(type(self), tree.data, None) or type(self).__default__
            if getattr(rule, "visit_wrapper", None) is not None:
                raise TypeError(f"rule {tree.data} has a visit wrapper")  # pragma: no cover
            _RULES[tree.data] = rule
        result = rule(self, tree)
        self._budget.meter.admit(result)
        return result


# Rules whose one-child form is cel-python's ``return self.visit_children(tree)[0]``.
_PASS_THROUGH: Final = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary", "member"}
)

# Rule name → BoundedEvaluator's unbound method for it (filled on first use; the grammar is fixed).
_RULES: dict[str, Callable[[BoundedEvaluator, lark.Tree[Any]], Any]] = {}


def run(program: Program, activation: Activation, variables: Mapping[str, Result], budget: Budget) -> Result:
    """Evaluate ``program``; raises ``CELEvalError`` for a CEL error, ``LimitExceeded`` past a bound."""
    evaluator = BoundedEvaluator(program.ast, activation, budget, program.literals)
    return evaluator.evaluate(dict(variables))
