"""The layering of ../shared/DESIGN.md, checked on the real import graph."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN_IN_PURE = {"faust", "aiokafka", "asyncpg", "psycopg", "asyncio", "websockets"}


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return {m.split(".")[0] for m in json.loads(out.stdout)}


def _pure_modules() -> list[str]:
    """Every module of the pure packages (training scripts are offline tools, not the worker's code)."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("processors", "detectors"):
        found.append(package)
        found += [f"{package}.{f.stem}" for f in sorted((root / package).glob("*.py")) if f.stem != "__init__"]
    return found


@pytest.mark.parametrize("module", _pure_modules())
def test_pure_packages_import_no_io(module: str) -> None:
    assert _modules_after_import(module) & FORBIDDEN_IN_PURE == set()


@pytest.mark.parametrize("module", ["event_store.postgres", "event_store.events"])
def test_event_store_knows_nothing_of_kafka(module: str) -> None:
    assert _modules_after_import(module) & {"faust", "aiokafka", "streams", "dashboards"} == set()


@pytest.mark.parametrize("module", ["streams.app", "dashboards.gateway", "event_store.postgres", "detectors.alarms"])
def test_nothing_imports_the_composition_root(module: str) -> None:
    assert "vigil" not in _modules_after_import(module)


ALLOWED_IMPORTS = {
    "processors": set(),
    "detectors": {"processors"},
    "event_store": set(),
    "streams": {"processors", "detectors", "event_store"},
    "dashboards": {"processors", "detectors", "event_store"},
}
"""The one-way arrows of DESIGN.md: each package and the other first-party packages it may
import (`vigil`, the composition root, may import them all)."""


def first_party_imports(package: str) -> dict[str, set[str]]:
    """Other first-party packages named in the import statements of ``package``'s source
    (every file, also those imported lazily inside functions), each with the files naming it."""
    root = Path(__file__).resolve().parents[2]
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in {*ALLOWED_IMPORTS, "vigil"} - {package}:
                    found.setdefault(top, set()).add(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_dependencies_point_one_way(package: str) -> None:
    imported = first_party_imports(package)
    assert {k: v for k, v in imported.items() if k not in ALLOWED_IMPORTS[package]} == {}


def test_the_import_scan_sees_lazy_imports() -> None:
    # vigil.cli imports streams.app inside a function: the scan must see such imports,
    # or a forbidden one placed there would pass the test above.
    assert "vigil/cli.py" in first_party_imports("vigil")["streams"]
