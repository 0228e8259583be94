from __future__ import annotations

import json

import pytest

from streams.simulator import WardSimulator, patient_ids
from streams.vitals_codec import decode_vitals


def run(sim: WardSimulator, seconds: int) -> list[list[tuple[str, bytes]]]:
    return [sim.tick(1764122400000 + i * 1000) for i in range(seconds)]


def test_same_seed_same_ward() -> None:
    assert run(WardSimulator(5, seed=7), 30) == run(WardSimulator(5, seed=7), 30)
    assert run(WardSimulator(5, seed=7), 30) != run(WardSimulator(5, seed=8), 30)


def test_every_message_is_valid_and_keyed_by_patient() -> None:
    for tick in run(WardSimulator(16), 200):
        assert [pid for pid, _ in tick] == patient_ids(16)
        for pid, raw in tick:
            assert decode_vitals(raw).patient_id == pid


def test_scripted_patient_crosses_the_hr_limit_early_and_recovers() -> None:
    hr = [json.loads(tick[0][1])["hr"] for tick in run(WardSimulator(2), 180)]
    first_high = next(i for i, v in enumerate(hr) if v > 130)
    assert first_high <= 20
    assert max(hr[100:180]) < 120
    others = [json.loads(tick[1][1])["hr"] for tick in run(WardSimulator(2), 180)]
    assert max(others) < 120


def test_needs_a_patient() -> None:
    with pytest.raises(ValueError):
        WardSimulator(0)
