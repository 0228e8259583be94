"""bench/ecg_alarms.py's bedside nurse: acknowledging each alarm lets a later run
of the same condition raise a new one, which a latched alarm would hide."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from streams.ecg_synth import EcgConfig, Rhythm, SyntheticEcg, VtRun

FS = 250


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "ecg_alarms.py"
    spec = importlib.util.spec_from_file_location("ecg_alarms_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_vt_runs() -> np.ndarray:
    runs = (VtRun(40.0, 15, 130), VtRun(100.0, 15, 130))
    synth = SyntheticEcg(EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(vt_runs=runs)), seed=1, patient="p1")
    return np.concatenate([synth.next_chunk(FS)[0] for _ in range(140)])


def test_an_acknowledged_alarm_lets_the_next_run_raise_another(bench: ModuleType) -> None:
    x = two_vt_runs()
    acknowledged = [t for t, cond in bench.alarms([x], FS) if cond == "ventricular_tachycardia"]
    latched = [t for t, cond in bench.alarms([x], FS, ack=False) if cond == "ventricular_tachycardia"]
    assert len(latched) == 1 and 40 <= latched[0] <= 50
    assert len(acknowledged) == 2 and acknowledged[0] == latched[0] and 100 <= acknowledged[1] <= 110
