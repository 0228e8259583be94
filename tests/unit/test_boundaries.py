"""The layering of ../shared/DESIGN.md, checked on the real import graph."""

from __future__ import annotations

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
