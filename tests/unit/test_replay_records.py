"""Replaying real WFDB records as ECG chunks (streams/replay.py): the chunks put back
together are the record; their device times follow the record's own time base and
their send times the chunk duration over the speed; on the wire they are chunks the
worker's decoder accepts, with missing samples at the negative rail.
Records are read from ``$VIGIL_DATA_DIR``; a missing record fails, never skips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from processors.sqi import SignalQuality
from streams.ecg_codec import Lead, decode_ecg_chunk
from streams.replay import EcgRecord, ReplayChunk, load_record, replay_chunks, replay_messages, replay_record
from streams.ward import ECG_SCALE_MV, LEADS_OFF_COUNT

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
    assert np.array_equal(np.concatenate([c.samples_mv for c in chunks]), reference)
    assert [c.sequence for c in chunks] == list(range(len(chunks))) and len(chunks) == 1806  # 650000 / 360, rounded up
    assert {c.samples_mv.shape[0] for c in chunks[:-1]} == {360} and chunks[-1].samples_mv.shape[0] == 650000 - 1805 * 360
    first = np.array([c.first_sample_us for c in chunks])
    assert first[0] == 1_764_122_400_000_000
    assert set(np.diff(first).tolist()) == {1_000_000}  # the record's own time, whatever the speed
    sent = np.array([c.send_at_us for c in chunks])
    assert np.all(np.abs(np.diff(sent[:-1]) - 1_000_000 / speed) <= 1)  # one chunk duration / speed, +-1 us rounding
    assert sent[-2] - first[0] == round(1805 * 1_000_000 / speed)  # no drift over 30 minutes
    assert sent[-1] - first[0] == round(650000 / 360 * 1_000_000 / speed)  # the short last chunk, when complete
    assert all(c.samples_mv.dtype == np.float32 for c in chunks)


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
    assert {c.samples_mv.shape[0] for c in chunks} == {125}
    assert [c.first_sample_us for c in chunks[:3]] == [0, 500_000, 1_000_000]
    assert [c.send_at_us for c in chunks[:3]] == [125_000, 250_000, 375_000]
    with pytest.raises(ValueError, match="not a voltage"):
        load_record(path, channel="PLETH")


def test_replay_chunks_is_pure_and_stamps_from_the_start_time() -> None:
    x = np.arange(1000, dtype=np.float64)
    chunks = list(replay_chunks(x, sampling_rate=250, chunk_s=1.0, speed=2.0, start_us=5))
    assert [c.first_sample_us for c in chunks] == [5, 1_000_005, 2_000_005, 3_000_005]
    assert [c.send_at_us for c in chunks] == [500_005, 1_000_005, 1_500_005, 2_000_005]
    assert [c.sequence for c in chunks] == [0, 1, 2, 3]
    assert np.array_equal(np.concatenate([c.samples_mv for c in chunks]), x.astype(np.float32))
    assert list(replay_chunks(np.empty(0), sampling_rate=250)) == []
    with pytest.raises(ValueError):
        replay_chunks(x, sampling_rate=250, speed=0)


def test_record_samples_cannot_be_changed_through_a_chunk() -> None:
    rec = load_record(record_path("mitdb", "100"))
    first = next(replay_chunks(rec.signal_mv, sampling_rate=rec.sampling_rate)).samples_mv
    with pytest.raises(ValueError):
        first[0] = 99.0


def test_missing_record_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="VIGIL_DATA_DIR"):
        replay_record(DATA / "mitdb" / "no-such-record")


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_stamps_agree_with_the_sampling_rate_at_any_speed(speed: float) -> None:
    # 3.5 s at 200 Hz in 1-s chunks: a chunk's device time is the previous one's
    # plus its real duration; it is sent once complete, speed times sooner.
    chunks: list[ReplayChunk] = list(replay_chunks(np.zeros(700), sampling_rate=200, speed=speed, start_us=1_000))
    assert [c.sequence for c in chunks] == [0, 1, 2, 3]
    assert [c.first_sample_us for c in chunks] == [1_000, 1_001_000, 2_001_000, 3_001_000]
    assert [c.send_at_us - 1_000 for c in chunks] == [round(s * 1e6 / speed) for s in (1, 2, 3, 3.5)]
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.first_sample_us - a.first_sample_us == a.samples_mv.shape[0] * 1_000_000 // 200
        assert a.send_at_us <= b.first_sample_us  # never sent before the device could have it


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_mitdb_100_replays_as_chunks_the_worker_decodes(speed: float) -> None:
    rec = load_record(record_path("mitdb", "100"))
    start = 1_764_122_400_000_000
    messages = list(replay_messages(rec, patient_id="p0100", topic="vigil.ecg", speed=speed, start_us=start))
    assert len(messages) == 1806
    assert {(topic, key) for _, topic, key, _ in messages} == {("vigil.ecg", b"p0100")}
    chunks = [decode_ecg_chunk(value) for _, _, _, value in messages]
    assert {(c.patient_id, c.device_id, c.lead, c.sampling_rate_hz, c.scale_mv) for c in chunks} == {
        ("p0100", "rec-100", Lead.MLII, 360, float(np.float32(ECG_SCALE_MV)))}
    assert [c.sequence for c in chunks] == list(range(1806))
    assert [c.first_sample_us for c in chunks] == [start + i * 1_000_000 for i in range(1806)]
    sent = [at for at, _, _, _ in messages]
    assert sent == sorted(sent) and sent[0] == start + round(1_000_000 / speed)
    # MIT-BIH is 200 counts per mV: 5 uV, the wire's step, so nothing is lost.
    wire = np.concatenate([c.samples_mv() for c in chunks])
    assert np.max(np.abs(wire - rec.signal_mv)) < 1e-6


def test_missing_samples_go_out_at_the_rail_and_read_as_leads_off() -> None:
    rec = load_record(record_path("challenge2015", "v244s"), channel="II")
    missing = np.isnan(rec.signal_mv)
    assert missing.sum() > 100 * 250  # most of this record's lead II is missing
    chunks = [decode_ecg_chunk(value) for *_, value in
              replay_messages(rec, patient_id="p0244", topic="t.ecg", speed=10, start_us=1_764_122_400_000_000)]
    # Every chunk is sent, wholly missing ones too: no sequence gap for the worker.
    assert [c.sequence for c in chunks] == list(range(300))
    counts = np.concatenate([c.samples for c in chunks])
    assert np.array_equal(counts == LEADS_OFF_COUNT, missing)  # real samples (down to -183 mV) clip short of it
    labels = [w.label for w in SignalQuality(250).feed(counts * ECG_SCALE_MV)]
    window_missing = [bool(row.all()) for row in missing.reshape(-1, 500)]
    assert all(label == "leads_off" for label, off in zip(labels, window_missing, strict=True) if off)
    assert sum(window_missing) > 50


def test_replay_messages_are_deterministic_and_can_stop_early() -> None:
    rec = load_record(record_path("mitdb", "100"))

    def run() -> list[object]:
        return list(replay_messages(rec, patient_id="p1", topic="t", speed=4, start_us=10**15, duration_s=5.5))

    first = run()
    assert first == run() and len(first) == 6
    assert decode_ecg_chunk(first[-1][3]).samples.shape == (180,)  # type: ignore[index]


@pytest.mark.parametrize(("change", "message"), [
    ({"patient_id": "Jane Doe"}, "patient id"),
    ({"patient_id": "p1", "device_id": "x" * 65}, "device id"),
    ({"speed": 0.0}, "speed"),
    ({"duration_s": 0.0}, "duration_s"),
])
def test_replay_messages_refuse_what_the_wire_cannot_carry(change: dict[str, object], message: str) -> None:
    rec = EcgRecord("r", "II", 250.0, np.zeros(500, dtype=np.float32))
    args: dict[str, object] = {"patient_id": "p1", "topic": "t", "start_us": 10**15} | change
    with pytest.raises(ValueError, match=message):
        replay_messages(rec, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("lead", "rate"), [("V", 250.0), ("II", 360.5), ("II", 100.0)])
def test_leads_and_rates_without_a_wire_code_are_refused(lead: str, rate: float) -> None:
    rec = EcgRecord("r", lead, rate, np.zeros(500, dtype=np.float32))
    with pytest.raises(ValueError, match="lead|Hz"):
        replay_messages(rec, patient_id="p1", topic="t", start_us=10**15)
