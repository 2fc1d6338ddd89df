"""The tree's rules, read from the code with ``ast``: what may import what, and how.

- no import cycle anywhere (imports inside functions count: they hide cycles, not break them);
- product code (``vault``) never imports the emulator, the CDK app, the benchmarks or the tests;
- imports stand at module top; one inside a function says why on its line or the line above;
- no module reaches into another object's ``_private`` names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Folder -> the dotted prefix its modules are imported under.
PACKAGES = {
    "vault": "vault",
    "emulator": "emulator",
    "benchmarks": "benchmarks",
    "cdk/vault_cdk": "vault_cdk",
    "tests": "tests",
}
#: Where imports must stand at module top (tests may import lazily to keep collection light).
TOP_LEVEL_ONLY = ("vault", "emulator", "benchmarks", "vault_cdk")
#: Underscore names that are public API of the standard library or a dependency.
PUBLIC_UNDERSCORE = {
    "_asdict",
    "_replace",
    "_fields",
    "_make",
    "_exit",
    "_getframe",
    "_current_frames",
    "_value_",
    "_name_",
    "_missing_",
    "_generate_next_value_",
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for folder, prefix in PACKAGES.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([prefix, *parts])
            found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, except those under ``if TYPE_CHECKING:`` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if _type_checking_only(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _targets(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        # ``from package import module`` loads the module; ``from module import name`` the module.
        names = [
            f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
            for alias in node.names
        ]
    return [name for name in dict.fromkeys(names) if name in MODULES]


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for node in _imports(module.tree) for target in _targets(module, node)} - {name}
        for name, module in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_scan_sees_the_whole_tree() -> None:
    # A scan that found nothing would pass every rule below.
    assert {"vault.api.handler", "emulator.daemon.supervisor", "vault_cdk.config", "benchmarks.e2e"} <= set(
        MODULES
    )
    assert "vault.common.transport" in _graph()["vault.parent.enclave_client"] or any(
        target.startswith("vault.common") for target in _graph()["vault.parent.enclave_client"]
    )


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


def test_product_code_never_imports_the_emulator_cdk_benchmarks_or_tests() -> None:
    forbidden = ("emulator", "vault_cdk", "benchmarks", "tests")
    offences = []
    for name, module in MODULES.items():
        if not name.startswith("vault."):
            continue
        for node in _imports(module.tree):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            )
            offences.extend(
                f"{module.path.relative_to(ROOT)}:{node.lineno} imports {target}"
                for target in names
                if target.split(".")[0] in forbidden
            )
    assert offences == []


def _function_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


@pytest.mark.parametrize("prefix", TOP_LEVEL_ONLY)
def test_an_import_inside_a_function_says_why(prefix: str) -> None:
    offences = []
    for name, module in MODULES.items():
        if name.split(".")[0] != prefix:
            continue
        lines = module.path.read_text(encoding="utf-8").splitlines()
        for node in _function_imports(module.tree):
            same_line = "#" in lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip().startswith("#") if node.lineno > 1 else False
            if not (same_line or above):
                offences.append(f"{module.path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offences == [], "imports inside functions without a reason:\n" + "\n".join(offences)


def _private_accesses(module: Module) -> Iterator[str]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in PUBLIC_UNDERSCORE:
                continue
            owner = node.value
            # Its own object's privates (self, cls, super()) are the class's business.
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            yield f"{module.path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    where = f"{module.path.relative_to(ROOT)}:{node.lineno}"
                    yield f"{where}: from {node.module} import {alias.name}"


def test_the_private_name_check_sees_an_access() -> None:
    tree = ast.parse("def f(server):\n    server._failures.clear()\n    self._ok = 1\n")
    found = list(_private_accesses(Module("m", ROOT / "m.py", tree)))
    assert found == ["m.py:2: server._failures"]


@pytest.mark.parametrize("prefix", TOP_LEVEL_ONLY)
def test_no_module_touches_another_objects_private_names(prefix: str) -> None:
    offences = [
        line
        for name, module in MODULES.items()
        if name.split(".")[0] == prefix
        for line in _private_accesses(module)
    ]
    assert offences == [], "private names used from outside:\n" + "\n".join(offences)
