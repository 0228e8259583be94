"""Replaying real WFDB records as ECG chunks (streams/replay.py): the chunks put back
together are the record, and their timestamps follow the chunk duration and speed.
Records are read from ``$VIGIL_DATA_DIR``; a missing record fails, never skips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streams.replay import load_record, replay_chunks, replay_record

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_DATA_DIR", REPO.parent / "shared" / "data"))


def record_path(database: str, name: str) -> Path:
    path = DATA / database / name
    if not path.with_name(name + ".hea").exists():
        pytest.fail(f"record {path} not found: set VIGIL_DATA_DIR to the folder holding {database}/")
    return path


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_mitdb_100_chunks_concatenate_back_to_the_record(speed: float) -> None:
    import wfdb

    path = record_path("mitdb", "100")
    reference = wfdb.rdrecord(str(path), channels=[0]).p_signal[:, 0].astype(np.float32)
    chunks = list(replay_record(path, speed=speed, start_us=1_764_122_400_000_000))
    assert reference.shape == (650000,)
    assert np.array_equal(np.concatenate([c[2] for c in chunks]), reference)
    assert [c[1] for c in chunks] == list(range(len(chunks))) and len(chunks) == 1806  # 650000 / 360, rounded up
    assert {c[2].shape[0] for c in chunks[:-1]} == {360} and chunks[-1][2].shape[0] == 650000 - 1805 * 360
    stamps = np.array([c[0] for c in chunks])
    assert stamps[0] == 1_764_122_400_000_000
    assert np.all(np.abs(np.diff(stamps) - 1_000_000 / speed) <= 1)  # one chunk duration / speed, +-1 us rounding
    assert stamps[-1] - stamps[0] == round(1805 * 1_000_000 / speed)  # no drift over 30 minutes
    assert all(c[2].dtype == np.float32 for c in chunks)


def test_channels_can_be_chosen_by_name() -> None:
    path = record_path("mitdb", "100")
    mlii, v5 = load_record(path, channel="MLII"), load_record(path, channel="V5")
    assert (mlii.lead, v5.lead, mlii.sampling_rate) == ("MLII", "V5", 360.0)
    assert np.array_equal(mlii.signal_mv, load_record(path, channel=0).signal_mv)
    assert np.array_equal(v5.signal_mv, load_record(path, channel=1).signal_mv)
    assert not np.array_equal(mlii.signal_mv, v5.signal_mv)
    with pytest.raises(ValueError, match="MLII, V5"):
        load_record(path, channel="II")
    with pytest.raises(ValueError):
        load_record(path, channel=2)


def test_challenge_2015_record_replays_its_ecg_lead_and_refuses_pleth() -> None:
    records = DATA / "challenge2015" / "RECORDS"
    if not records.exists():
        pytest.fail(f"{records} not found: set VIGIL_DATA_DIR to the folder holding challenge2015/")
    path = record_path("challenge2015", records.read_text().split()[0])
    rec = load_record(path, channel="II")
    assert rec.sampling_rate == 250.0 and rec.signal_mv.shape[0] in (75000, 82500)
    finite = rec.signal_mv[np.isfinite(rec.signal_mv)]
    assert 0.3 < np.ptp(finite) < 20  # millivolts, not ADC units
    chunks = list(replay_chunks(rec.signal_mv, sampling_rate=rec.sampling_rate, chunk_s=0.5, speed=4))
    assert {c[2].shape[0] for c in chunks} == {125}
    assert [c[0] for c in chunks[:3]] == [0, 125_000, 250_000]
    with pytest.raises(ValueError, match="not a voltage"):
        load_record(path, channel="PLETH")


def test_replay_chunks_is_pure_and_stamps_from_the_start_time() -> None:
    x = np.arange(1000, dtype=np.float64)
    chunks = list(replay_chunks(x, sampling_rate=250, chunk_s=1.0, speed=2.0, start_us=5))
    assert [c[0] for c in chunks] == [5, 500_005, 1_000_005, 1_500_005]
    assert [c[1] for c in chunks] == [0, 1, 2, 3]
    assert np.array_equal(np.concatenate([c[2] for c in chunks]), x.astype(np.float32))
    assert list(replay_chunks(np.empty(0), sampling_rate=250)) == []
    with pytest.raises(ValueError):
        replay_chunks(x, sampling_rate=250, speed=0)


def test_record_samples_cannot_be_changed_through_a_chunk() -> None:
    rec = load_record(record_path("mitdb", "100"))
    _, _, first = next(replay_chunks(rec.signal_mv, sampling_rate=rec.sampling_rate))
    with pytest.raises(ValueError):
        first[0] = 99.0


def test_missing_record_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="VIGIL_DATA_DIR"):
        replay_record(DATA / "mitdb" / "no-such-record")
