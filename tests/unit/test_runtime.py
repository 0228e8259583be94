"""vigil.runtime: the collector setting every Vigil process starts with."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator

import pytest

from vigil.config import ConfigError
from vigil.runtime import GC_GEN0_THRESHOLD, WORKER_GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_default_raises_only_the_young_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_GC_GEN0", raising=False)
    gc.set_threshold(700, 11, 12)
    assert tune_gc() == GC_GEN0_THRESHOLD
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 11, 12)


def test_environment_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_GC_GEN0", "700")
    assert tune_gc() == 700
    assert gc.get_threshold()[0] == 700
    assert tune_gc(default=WORKER_GC_GEN0_THRESHOLD) == 700


def test_a_process_may_bring_its_own_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_GC_GEN0", raising=False)
    assert tune_gc(default=WORKER_GC_GEN0_THRESHOLD) == WORKER_GC_GEN0_THRESHOLD != GC_GEN0_THRESHOLD
    assert gc.get_threshold()[0] == WORKER_GC_GEN0_THRESHOLD


def test_the_worker_command_takes_the_worker_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import vigil.cli

    monkeypatch.delenv("VIGIL_GC_GEN0", raising=False)
    seen: dict[str, int] = {}

    def dispatch(args: argparse.Namespace, settings: object) -> int:
        seen[args.command] = gc.get_threshold()[0]
        return 0

    monkeypatch.setattr(vigil.cli, "_dispatch", dispatch)
    assert vigil.cli.main(["worker"]) == 0
    assert vigil.cli.main(["news2", "--input", "-"]) == 0
    assert seen == {"worker": WORKER_GC_GEN0_THRESHOLD, "news2": GC_GEN0_THRESHOLD}


@pytest.mark.parametrize("raw", ["lots", "0", "-5"])
def test_a_bad_setting_is_a_configuration_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("VIGIL_GC_GEN0", raw)
    before = gc.get_threshold()
    with pytest.raises(ConfigError, match="VIGIL_GC_GEN0"):
        tune_gc()
    assert gc.get_threshold() == before
