"""The documentation keeps up with the code: every public name documented."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

import backendapi
import backendapi.notebook
import backendapi.testing

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
MODULES = [backendapi, backendapi.testing, backendapi.notebook]


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
