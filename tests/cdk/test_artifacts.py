"""Each tier's definition (vault.infra.artifacts) covers what its entry point imports, modules
and libraries, the builds use it, and no other module lists tier sources."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from vault_cdk import build
from vault_cdk.config import CDK_DIR, REPO_ROOT
from vault_cdk.packaging import RUNTIME, ProductCodeBundling

from vault.infra.artifacts import API, ENCLAVE, PARENT, TIERS, Tier, tier

from .imports import check_tier, import_closure, missing_modules, shipped_files, third_party_imports

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("definition", TIERS, ids=lambda t: t.name)
def test_tier_ships_every_module_its_entry_point_imports(definition: Tier) -> None:
    check_tier(REPO_ROOT, definition)


def test_enclave_image_holds_exactly_the_modules_the_enclave_imports() -> None:
    closure = import_closure(REPO_ROOT, ENCLAVE.entry_point.module, frozenset({"vault"}))
    assert not closure.unresolved
    shipped = shipped_files(REPO_ROOT, ENCLAVE.sources)
    # The measured image holds no module the enclave never runs (test doubles, demo, the API).
    assert shipped == set(closure.modules.values())
    # The key policy's constants are imported by the KMS decryptor: without them the EIF cannot start.
    assert "vault/infra/key_policy.py" in shipped
    assert not any(path.startswith(("vault/api/", "vault/parent/")) for path in shipped)


def test_a_definition_missing_a_module_fails_the_check() -> None:
    without_key_policy = dataclasses.replace(
        ENCLAVE, sources=tuple(s for s in ENCLAVE.sources if s != "vault/infra/key_policy.py")
    )
    assert missing_modules(REPO_ROOT, without_key_policy) == {
        "vault.infra.key_policy": "vault/infra/key_policy.py"
    }
    with pytest.raises(AssertionError, match=r"enclave tier .*vault\.infra\.key_policy"):
        check_tier(REPO_ROOT, without_key_policy)
    # The same for a package left out of the API's set.
    without_infra = dataclasses.replace(API, sources=tuple(s for s in API.sources if s != "vault/infra"))
    with pytest.raises(AssertionError, match=r"api tier .*vault\.infra\.table"):
        check_tier(REPO_ROOT, without_infra)


def test_the_closure_follows_relative_deferred_and_package_imports(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/main.py": (
            "from typing import TYPE_CHECKING\n"
            "from . import helper\n"
            "from .pkg import thing\n"
            "if TYPE_CHECKING:\n"
            "    from app import typing_only\n"
            "def run():\n"
            "    import app.deferred\n"
        ),
        "app/helper.py": "from app.pkg.inner import VALUE\n",
        "app/pkg/__init__.py": "thing = 1\n",
        "app/pkg/inner.py": "VALUE = 1\n",
        "app/deferred.py": "",
        "app/typing_only.py": "",
        "app/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    synthetic = Tier(
        name="api",
        sources=("app/__init__.py", "app/main.py", "app/helper.py", "app/pkg"),
        extra="api",
        entry_point=dataclasses.replace(API.entry_point, module="app.main"),
        python_version="3.13",
    )
    closure = import_closure(tmp_path, "app.main", frozenset({"app"}))
    assert sorted(closure.modules) == [
        "app",
        "app.deferred",
        "app.helper",
        "app.main",
        "app.pkg",
        "app.pkg.inner",
    ]
    assert missing_modules(tmp_path, synthetic) == {"app.deferred": "app/deferred.py"}
    (tmp_path / "app/helper.py").write_text("import app.gone\n", encoding="utf-8")
    assert missing_modules(tmp_path, synthetic)["app.gone"] == "(no such module)"


def test_each_tier_names_a_dependency_group_and_its_entry_point_exists() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for definition in TIERS:
        assert definition.extra in extras, definition.name
        assert (REPO_ROOT / definition.entry_point.file).is_file(), definition.name
        source = (REPO_ROOT / definition.entry_point.file).read_text(encoding="utf-8")
        assert re.search(rf"^def {definition.entry_point.function}\(", source, re.MULTILINE), definition.name
    assert tier("parent") is PARENT
    with pytest.raises(KeyError, match="no tier"):
        tier("nope")


#: Import name → the distributions that provide it, directly or as a dependency they declare.
PROVIDERS = {
    "anyio": {"anyio", "httpx", "starlette"},
    "aws_lambda_powertools": {"aws-lambda-powertools"},
    "boto3": {"boto3"},
    "botocore": {"boto3", "botocore"},
    "cbor2": {"cbor2"},
    "celpy": {"cel-python"},
    "cryptography": {"cryptography"},
    "httpx": {"httpx"},
    "lark": {"cel-python", "lark"},
    "pydantic": {"pydantic"},
    "pydantic_core": {"pydantic"},
    "re2": {"google-re2"},
    "requests": {"requests"},
    "starlette": {"starlette"},
    "urllib3": {"urllib3", "requests", "botocore", "boto3"},
    "uvicorn": {"uvicorn"},
}


def _distribution(requirement: str) -> str:
    match = re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def check_dependencies(definition: Tier) -> None:
    declared = {_distribution(requirement) for requirement in build.requirements(definition.extra)}
    for name in sorted(third_party_imports(REPO_ROOT, definition)):
        assert name in PROVIDERS, f"{definition.name} imports {name}: name the distribution providing it here"
        assert PROVIDERS[name] & declared, (
            f"the {definition.name} tier imports {name}, which none of its requirements "
            f"provides: {sorted(declared)}"
        )


@pytest.mark.parametrize("definition", TIERS, ids=lambda t: t.name)
def test_tier_dependency_set_provides_every_library_it_imports(definition: Tier) -> None:
    check_dependencies(definition)


def test_a_dependency_set_missing_a_library_fails_the_check() -> None:
    with pytest.raises(AssertionError, match=r"parent tier imports anyio"):
        check_dependencies(dataclasses.replace(PARENT, extra="enclave"))


def test_the_parent_command_is_the_parent_entry_point() -> None:
    assert PYPROJECT["project"]["scripts"]["vault-parent"] == PARENT.entry_point.console_script


def test_enclave_dockerfile_matches_the_definition() -> None:
    image = ENCLAVE.image
    assert image is not None
    dockerfile = (REPO_ROOT / image.dockerfile).read_text(encoding="utf-8")
    assert f"ARG {image.base_image_arg}={image.base_image}\n" in dockerfile
    assert f"FROM ${{{image.base_image_arg}}}\n" in dockerfile
    command = ", ".join(f'"{part}"' for part in image.command)
    assert f"CMD [{command}]" in dockerfile
    assert image.command[-1] == ENCLAVE.entry_point.module.removesuffix(".__main__")
    assert image.base_image.startswith(f"python:{ENCLAVE.python_version}-")


def test_lambda_runtime_is_the_api_tier_python() -> None:
    assert RUNTIME.name == f"python{API.python_version}"


def test_api_bundle_is_the_api_file_set(tmp_path: Path) -> None:
    assert ProductCodeBundling(REPO_ROOT, API).try_bundle(str(tmp_path)) is True
    bundled = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert bundled == shipped_files(REPO_ROOT, API.sources)


def test_parent_wheel_project_holds_only_the_parent_file_set(tmp_path: Path) -> None:
    staged = build.tier_project(PARENT, tmp_path / "parent")
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert files == shipped_files(REPO_ROOT, PARENT.sources) | {"pyproject.toml"}
    project = tomllib.loads((staged / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == PYPROJECT["project"]["name"]
    assert project["scripts"] == {"vault-parent": PARENT.entry_point.console_script}
    assert project["optional-dependencies"] == {
        "parent": PYPROJECT["project"]["optional-dependencies"]["parent"]
    }
    assert project["dependencies"] == PYPROJECT["project"]["dependencies"]


#: Literal source lists look like this: a quoted path of a package under vault/.
_SOURCE_LITERAL = re.compile(r"""["']vault/(common|enclave|api|parent|infra)["']""")


def test_no_other_module_lists_tier_sources() -> None:
    definition = REPO_ROOT / "vault" / "infra" / "artifacts.py"
    offenders = []
    for directory in (REPO_ROOT / "vault", CDK_DIR / "vault_cdk", REPO_ROOT / "emulator"):
        for path in sorted(directory.rglob("*.py")):
            if path == definition or "__pycache__" in path.parts:
                continue
            if _SOURCE_LITERAL.search(path.read_text(encoding="utf-8")):
                offenders.append(path.relative_to(REPO_ROOT).as_posix())
    assert offenders == []
