"""The architecture of DESIGN.md, held by tests: layers, import rules, sizes, module docstrings.

Layers (a module may import its own layer and the ones below, never above)::

    4  executor, __init__                              the public face
    3  engine/                                         the manager thread in its parts
    2  _aws, storage/, launch/, image/, provision/      I/O edges: the only users of boto3/docker
    1  payload, _frame, _results, _keys, _pickling,     pure: the wire, planning, prices
       planner, cost, _future, _progress, _initializer
    0  errors, config, _stats, _tags, _threads, _gc,   stdlib only
       _output, _auth, _chunks

    separate entry points: worker (layers 0-1 and storage/ only); cli, __main__ and testing/
    (anything)
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "starburst_executor"
NAME = "starburst_executor"

_LAYERS: dict[str, int] = {
    "errors": 0, "config": 0, "_auth": 0, "_stats": 0, "_tags": 0, "_threads": 0, "_gc": 0, "_output": 0,
    "_chunks": 0,
    "payload": 1, "_frame": 1, "_results": 1, "_keys": 1, "_pickling": 1, "planner": 1, "cost": 1, "_future": 1,
    "_progress": 1, "_initializer": 1, "_detached": 1, "_queue": 1, "_parts": 1,
    "_aws": 2, "storage": 2, "launch": 2, "image": 2, "provision": 2,
    "engine": 3,
    "executor": 4, "__init__": 4, "detached": 4, "session": 4,
}
_ENTRY_POINTS = {"worker", "cli", "cli_sessions", "__main__", "testing"}
_WORKER_MAY_IMPORT = {"errors", "config", "_auth", "_chunks", "_stats", "_threads", "_output",
                      "payload", "_frame", "_results", "_pickling", "_keys", "_initializer", "_detached", "_queue", "_parts", "cost",
                      "storage",
                      "__init__"}

# Outside testing/ (emulators and fixtures for tests, not library code).
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top(dotted: str) -> str:
    """The first component below the package: ``starburst_executor.launch.fargate`` -> ``launch``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """Every module of this package that ``path`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    here = _dotted(path).split(".")
    if not is_package:
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != NAME:
                continue
            if node.module is None or module == NAME:
                # ``from . import payload``: the names are modules.
                found.update(f"{module}.{a.name}" for a in node.names)
            else:
                found.add(module)
    return found


def _layer(dotted: str) -> int | None:
    return _LAYERS.get(_top(dotted))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _dotted(p))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    me = _dotted(path)
    own = _top(me)
    if own in _ENTRY_POINTS:
        return
    assert own in _LAYERS, f"{me} is in no layer: add it to this test's table and DESIGN.md"
    mine = _LAYERS[own]
    upward = sorted(m for m in _imports(path)
                    if _top(m) in _ENTRY_POINTS or (_layer(m) or 0) > mine)
    assert not upward, f"{me} (layer {mine}) imports {upward}"


def test_the_worker_imports_only_the_wire_and_the_store() -> None:
    for path in [PACKAGE / "worker.py"]:
        tops = {_top(m) for m in _imports(path)} - {"worker"}
        assert tops <= _WORKER_MAY_IMPORT, f"worker imports {sorted(tops - _WORKER_MAY_IMPORT)}"


def _loaded_after(statement: str) -> list[str]:
    code = (f"import sys, json\n{statement}\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return list(json.loads(out.splitlines()[-1]))


def _forbidden(loaded: list[str], names: set[str]) -> list[str]:
    hits = []
    for module in loaded:
        parts = module.split(".")
        if parts[0] in {"boto3", "botocore", "docker"} & names:
            hits.append(module)
        elif parts[0] == NAME and len(parts) > 1 and parts[1] in names:
            hits.append(module)
    return sorted(hits)


@pytest.mark.parametrize("statement", [
    "import starburst_executor",
    "from starburst_executor import FargateExecutor, starburst_map, Usage, StarburstFuture",
    "import starburst_executor.executor",
])
def test_importing_the_executor_loads_no_tooling_and_no_sdk(statement: str) -> None:
    loaded = _loaded_after(statement)
    assert not _forbidden(loaded, {"worker", "image", "provision", "cli", "boto3", "botocore",
                                   "docker", "testing"})


def test_the_worker_loads_nothing_of_the_client() -> None:
    loaded = _loaded_after("import starburst_executor.worker")
    assert not _forbidden(loaded, {"engine", "executor", "launch", "image", "provision", "cli",
                                   "testing", "_progress", "_future", "docker"})


def _library_modules() -> list[Path]:
    return [p for p in _modules() if "testing" not in p.relative_to(PACKAGE).parts]


def _too_long(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                problems.append(f"{node.name}: {length} lines (limit {limit})")
    return problems


@pytest.mark.parametrize("path", _library_modules(), ids=lambda p: _dotted(p))
def test_modules_classes_and_functions_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_dotted(path)}: {lines} lines"
    assert not _too_long(path)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _dotted(p))
def test_every_module_opens_with_a_docstring_of_its_job(path: Path) -> None:
    if path.name == "__init__.py" and not path.read_text().strip():
        pytest.fail(f"{_dotted(path)} is empty: say what the package holds")
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 4, f"{_dotted(path)} has no opening docstring"


def test_pyproject_lists_every_package() -> None:
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {_dotted(p) for p in PACKAGE.rglob("__init__.py")} | {f"{NAME}.worker_image"}
    assert listed == found
