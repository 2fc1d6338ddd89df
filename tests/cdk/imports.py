"""A tier's import closure, read with ``ast`` from its entry module (nothing is imported).

Every ``import`` and ``from ... import`` counts, at module top or inside a function (a
deferred import still runs in production), except under ``if TYPE_CHECKING:``. Importing
``a.b.c`` also imports the packages ``a`` and ``a.b``. ``from pkg import name`` counts
``pkg.name`` when it is a module. Only modules of the given first-party packages are
followed; a first-party import that resolves to no file is reported as missing.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vault.infra.artifacts import Tier

BYTECODE_DIRS = frozenset({"__pycache__"})


@dataclass(frozen=True)
class Closure:
    #: Module name → its file, relative to the source root.
    modules: dict[str, str]
    #: First-party modules imported somewhere in the closure that have no file.
    unresolved: frozenset[str]


def module_file(root: Path, name: str) -> str | None:
    base = Path(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if (root / candidate).is_file():
            return candidate.as_posix()
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def _imported(module: str, is_package: bool, tree: ast.AST) -> Iterable[tuple[str, bool]]:
    """(name, must_exist) for each import: a ``from m import x`` name may be an attribute."""
    package = module if is_package else module.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            yield base, True
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}", False


def import_closure(root: Path, entry_module: str, first_party: frozenset[str]) -> Closure:
    modules: dict[str, str] = {}
    unresolved: set[str] = set()
    pending = [(entry_module, True)]
    while pending:
        name, must_exist = pending.pop()
        if name in modules or name.split(".")[0] not in first_party:
            continue
        file = module_file(root, name)
        if file is None:
            if must_exist:
                unresolved.add(name)
            continue
        modules[name] = file
        parts = name.split(".")
        pending.extend((".".join(parts[:index]), True) for index in range(1, len(parts)))
        tree = ast.parse((root / file).read_text(encoding="utf-8"), filename=file)
        pending.extend(_imported(name, file.endswith("__init__.py"), tree))
    return Closure(modules, frozenset(unresolved))


def shipped_files(root: Path, sources: Iterable[str]) -> set[str]:
    """The files a source list expands to (bytecode caches aside), as the packagers copy them."""
    files: set[str] = set()
    for entry in sources:
        path = root / entry
        if path.is_file():
            files.add(entry)
        elif path.is_dir():
            files.update(
                file.relative_to(root).as_posix()
                for file in path.rglob("*")
                if file.is_file()
                and not BYTECODE_DIRS.intersection(file.relative_to(root).parts)
                and file.suffix not in (".pyc", ".pyo")
            )
    return files


def first_party(tier: Tier) -> frozenset[str]:
    return frozenset(Path(source).parts[0] for source in tier.sources)


def missing_modules(root: Path, tier: Tier) -> dict[str, str]:
    """Modules the tier's entry point imports that its file set lacks: module → file."""
    closure = import_closure(root, tier.entry_point.module, first_party(tier))
    shipped = shipped_files(root, tier.sources)
    missing = {name: file for name, file in closure.modules.items() if file not in shipped}
    missing.update({name: "(no such module)" for name in closure.unresolved})
    return dict(sorted(missing.items()))


def check_tier(root: Path, tier: Tier) -> None:
    """Fail, naming the tier and each module, when the tier's file set misses one it imports."""
    missing = missing_modules(root, tier)
    assert not missing, f"the {tier.name} tier ships without modules it imports: {missing}"


def third_party_imports(root: Path, tier: Tier) -> set[str]:
    """Top-level names of what the tier's closure imports from outside itself and the stdlib."""
    ours = first_party(tier)
    closure = import_closure(root, tier.entry_point.module, ours)
    names: set[str] = set()
    for file in closure.modules.values():
        tree = ast.parse((root / file).read_text(encoding="utf-8"), filename=file)
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in ours}
