"""The documentation keeps up with the code: every public name documented, and every test
that ``docs/reliability.md`` names exists."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Set, Tuple

import pytest

import backendapi
import backendapi.notebook
import backendapi.testing

TESTS = Path(__file__).resolve().parent
README = (TESTS.parent / "README.md").read_text(encoding="utf-8")
MODULES = [backendapi, backendapi.testing, backendapi.notebook]
RELIABILITY_DOC = TESTS.parent / "docs" / "reliability.md"
# The modules whose every test has a row in docs/reliability.md.
FULLY_DOCUMENTED = sorted(
    [path.name for path in TESTS.glob("test_network_*.py")] + ["test_bad_arguments.py"]
)


def public_names(module: ModuleType) -> List[str]:
    return list(module.__all__)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_public_name_is_in_the_readme(module: ModuleType) -> None:
    missing = [name for name in public_names(module) if f"`{name}" not in README]
    assert missing == []


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_public_name_has_a_docstring(module: ModuleType) -> None:
    undocumented = []
    for name in public_names(module):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            undocumented.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or (
                    not callable(member) and not isinstance(member, property)
                ):
                    continue
                if not inspect.getdoc(member):
                    undocumented.append(f"{name}.{attr}")
    assert undocumented == []


def _test_names(path: Path) -> Set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def test_reliability_doc_names_existing_tests() -> None:
    """Every test file and test named in docs/reliability.md exists, and every test of the
    network modules (and of test_bad_arguments.py) is named in its tables."""
    doc = RELIABILITY_DOC.read_text(encoding="utf-8")
    modules: Dict[str, Set[str]] = {path.name: _test_names(path) for path in TESTS.glob("*.py")}
    everywhere = set().union(*modules.values())

    files = set(re.findall(r"\b(test_\w+\.py)\b", doc))
    assert sorted(files - set(modules)) == [], f"{RELIABILITY_DOC.name} names missing files"

    listed: Set[Tuple[Optional[str], str]] = set()
    for line in doc.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        for module, name in re.findall(
            r"`(?:(?:tests/)?(test_\w+\.py)::)?(test_\w+)(?:\[[^\]`]*\])?`", line
        ):
            listed.add((module or None, name))
    assert listed, f"no test names found in the tables of {RELIABILITY_DOC}"

    missing = sorted(
        f"{module or '*'}::{name}"
        for module, name in listed
        if name not in (modules.get(module, set()) if module else everywhere)
    )
    assert missing == [], f"{RELIABILITY_DOC.name} names tests that do not exist: {missing}"

    assert len(FULLY_DOCUMENTED) > 1
    unlisted = sorted(
        f"{module}::{name}"
        for module in FULLY_DOCUMENTED
        for name in modules[module]
        if (module, name) not in listed
    )
    assert unlisted == [], f"tests missing from {RELIABILITY_DOC.name}: {unlisted}"
