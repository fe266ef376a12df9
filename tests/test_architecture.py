"""The package's shape, checked: one source for both clients, HTTP libraries behind the seam."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "backendapi"
SCRIPT = ROOT / "scripts" / "unasync.py"
HTTP_LIBRARIES = ("requests", "urllib3", "aiohttp", "yarl")


def _load_script(root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "unasync_under_test", root / "scripts" / "unasync.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_blocking_client_is_up_to_date() -> None:
    """What `make test` runs in CI: a change to backendapi/_async/ must be regenerated."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_each_generated_file_is_the_whole_output_of_its_source() -> None:
    unasync = _load_script(ROOT)
    for source, target in unasync.FILES:
        text = (ROOT / target).read_text(encoding="utf-8")
        assert text == unasync.generate(source, target), target
        first_lines = text.splitlines()[:2]
        assert first_lines[0] == f"# Generated from {source} by scripts/unasync.py: do not edit."
        assert "make unasync" in first_lines[1]


def test_the_check_fails_on_a_stale_generated_file(tmp_path: Path) -> None:
    """Any difference counts, not only a changed line: here one blank line at the very end."""
    for part in ("scripts", "backendapi/_async", "backendapi/_sync"):
        shutil.copytree(ROOT / part, tmp_path / part)
    unasync = _load_script(tmp_path)
    assert unasync.main(["--check"]) == 0
    target = tmp_path / unasync.FILES[0][1]
    target.write_text(target.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert unasync.main(["--check"]) == 1
    assert unasync.main([]) == 0  # regenerates it
    assert unasync.main(["--check"]) == 0


def test_the_rewrite_leaves_nothing_async_in_the_blocking_client() -> None:
    for path in (PACKAGE / "_sync").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            assert not isinstance(
                node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)
            ), f"{path.name}:{getattr(node, 'lineno', '?')}"
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert not {"asyncio", "aiohttp", "AiohttpTransport", "AsyncStream"} & names


def _runtime_imports(path: Path) -> Iterator[str]:
    """The top-level names of the modules ``path`` imports outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(inner) for inner in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_only_the_transports_import_the_http_libraries() -> None:
    """The test server may run on aiohttp.web: it is a server, not the client."""
    offenders: List[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("_transports", "testing") or relative.name == "testing.py":
            continue
        found = set(_runtime_imports(path)) & set(HTTP_LIBRARIES)
        offenders += [f"{relative}: {name}" for name in sorted(found)]
    assert offenders == []


def test_the_check_of_imports_sees_an_import() -> None:
    transports = set(_runtime_imports(PACKAGE / "_transports" / "aiohttp.py"))
    assert {"aiohttp", "yarl"} <= transports
    assert "aiohttp" not in set(_runtime_imports(PACKAGE / "_async" / "client.py"))


@pytest.mark.parametrize("transport", ["requests", "aiohttp"])
def test_each_transport_stays_small(transport: str) -> None:
    lines = (PACKAGE / "_transports" / f"{transport}.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 400
