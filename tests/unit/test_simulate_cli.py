"""`vigil simulate`'s options, without a broker: the command builds the ward (or the
record's messages) and hands them to the publisher, which these tests replace at
the Kafka boundary to keep what it was given. Bad values end in one line and
status 2, as every other command's configuration errors do."""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import streams.replay
import vigil.simulate_cli
from streams.ecg_codec import Lead, decode_ecg_chunk
from streams.ecg_synth import BeatKind, EcgConfig, Episode, SyntheticEcg, VtRun
from streams.ward import ECG_SCALE_MV, LEADS_OFF_COUNT, SECOND_LEAD_GAIN, SimulatedWard, TimedMessage
from vigil.cli import main

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_DATA_DIR", REPO.parent / "shared" / "data"))
START_US = 1_764_122_400_000_000


@dataclass
class Published:
    """What the command handed to the publisher."""

    wards: list[tuple[SimulatedWard, int | None, bool]] = field(default_factory=list)
    replays: list[tuple[list[TimedMessage], int, bool]] = field(default_factory=list)

    @property
    def ward(self) -> SimulatedWard:
        (ward, _, _), = self.wards
        return ward


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[Published]:
    seen = Published()

    async def publish_ward(bootstrap: str, ward: SimulatedWard, *, seconds: int | None = None,
                           realtime: bool = True, start_us: int | None = None) -> int:
        seen.wards.append((ward, seconds, realtime))
        return 0

    async def publish_replay(bootstrap: str, messages: Iterable[TimedMessage], *, start_us: int,
                             realtime: bool = True) -> int:
        seen.replays.append((list(messages), start_us, realtime))
        return 0

    monkeypatch.setattr(vigil.simulate_cli, "publish_ward", publish_ward)
    monkeypatch.setattr(streams.replay, "publish_replay", publish_replay)
    monkeypatch.setenv("VIGIL_KAFKA_URL", "kafka://127.0.0.1:9092")
    monkeypatch.setenv("VIGIL_TOPIC_PREFIX", "t")
    threshold = gc.get_threshold()
    yield seen
    gc.set_threshold(*threshold)  # main() tunes the collector


def simulate(*argv: str) -> int:
    return main(["simulate", *argv])


def bed(published: Published, patient: str = "p0001") -> EcgConfig:
    return published.ward.ecg_configs[patient]


def record(database: str, name: str) -> str:
    path = DATA / database / name
    if not path.with_name(name + ".hea").exists():
        pytest.fail(f"record {path} not found: set VIGIL_DATA_DIR to the folder holding {database}/")
    return str(path)


def test_defaults_publish_the_demo_ward_in_real_time(published: Published) -> None:
    assert simulate("--duration", "3") == 0
    (ward, seconds, realtime), = published.wards
    assert (ward.patient_ids, seconds, realtime) == ([f"p{i:04d}" for i in range(1, 9)], 3, True)
    config = bed(published)
    assert (config.hr_std_bpm, config.rhythm.vt_runs, config.noise.leads_off) == (1.0, (), ())
    assert simulate("--fast", "--patients", "2") == 0 and published.wards[1][1:] == (None, False)


def test_scenarios_are_dealt_round_robin_in_the_order_given(published: Published) -> None:
    assert simulate("--patients", "5", "--scenario", "bradycardia,stable", "--scenario", "hypoxia") == 0
    targets = {pid: c.hr_trend[-1][1] if c.hr_trend else None for pid, c in published.ward.ecg_configs.items()}
    assert targets == {"p0001": 36.0, "p0002": None, "p0003": 105.0, "p0004": 36.0, "p0005": None}


@pytest.mark.parametrize(("argv", "expected"), [
    (["--hr-variability", "4"], lambda c: c.hr_std_bpm == 4),
    (["--ectopics", "6"], lambda c: c.rhythm.pvc_per_min == 6),
    (["--vt-at", "20"], lambda c: c.rhythm.vt_runs == (VtRun(20.0, 10, 180.0),)),
    (["--vt-at", "20:5", "--vt-at", "60:2", "--vt-rate", "150"],
     lambda c: c.rhythm.vt_runs == (VtRun(20.0, 12, 150.0), VtRun(60.0, 5, 150.0))),
    (["--af-at", "0", "--af-at", "30:10"], lambda c: c.rhythm.af == (Episode(0.0), Episode(30.0, 10.0))),
    (["--asystole-at", "40:6"], lambda c: (c.rhythm.asystole_at_s, c.rhythm.asystole_s) == (40.0, 6.0)),
    (["--asystole-at", "40"], lambda c: (c.rhythm.asystole_at_s, c.rhythm.asystole_s) == (40.0, float("inf"))),
    (["--noise", "0.05", "--motion", "2"], lambda c: (c.noise.gaussian_mv, c.noise.motion_per_min) == (0.05, 2)),
    (["--leads-off-at", "10:3"], lambda c: c.noise.leads_off == (Episode(10.0, 3.0),)),
])
def test_each_ecg_option_reaches_every_beds_ecg(published: Published, argv: list[str], expected: Any) -> None:
    assert simulate("--patients", "3", "--scenario", "stable", *argv) == 0
    configs = published.ward.ecg_configs
    assert len(configs) == 3 and all(expected(c) for c in configs.values())


def test_vt_run_is_where_it_was_asked(published: Published) -> None:
    assert simulate("--patients", "1", "--scenario", "stable", "--vt-at", "20:5", "--vt-rate", "180") == 0
    chunk = SyntheticEcg(bed(published), seed=42, patient="p0001").next_chunk_annotated(40 * 250)
    vt = chunk.r_peaks[chunk.kinds == BeatKind.VT] / 250.0
    assert vt.size == 15 and 20 <= vt[0] < 21 and vt[-1] < 26
    assert np.allclose(np.diff(vt), 60 / 180, atol=0.01)
    assert set(chunk.kinds[chunk.r_peaks / 250.0 < 20].tolist()) == {BeatKind.SINUS}


def test_asystole_and_leads_off_reach_the_wire_as_asked(published: Published) -> None:
    assert simulate("--patients", "1", "--scenario", "stable", "--asystole-at", "6:6", "--leads-off-at", "15:2") == 0
    ward = published.ward
    counts = np.concatenate([decode_ecg_chunk(value).samples for t in range(20)
                             for _, topic, _, value in ward.timed_second(t, START_US) if topic == "t.ecg"])
    mv = counts * ECG_SCALE_MV
    assert np.ptp(mv[round(7.5 * 250):round(11.5 * 250)]) < 0.05  # flat while asystolic
    assert np.ptp(mv[13 * 250:15 * 250]) > 0.5  # beating again
    assert np.array_equal(np.flatnonzero(counts == LEADS_OFF_COUNT), np.arange(15 * 250, 17 * 250))


def test_two_leads_send_v1_after_each_lead_ii_chunk(published: Published) -> None:
    assert simulate("--patients", "2", "--leads", "2", "--leads-off-at", "3:1") == 0
    ward = published.ward
    chunks = [(key, decode_ecg_chunk(value)) for t in range(5)
              for _, topic, key, value in ward.timed_second(t, START_US) if topic == "t.ecg"]
    assert len(chunks) == 2 * 2 * 5
    for (key_ii, ii), (key_v1, v1) in zip(chunks[::2], chunks[1::2], strict=True):
        assert (ii.lead, v1.lead) == (Lead.II, Lead.V1) and key_ii == key_v1 == ii.patient_id.encode()
        assert (ii.sequence, ii.first_sample_us) == (v1.sequence, v1.first_sample_us)
        off = ii.samples == LEADS_OFF_COUNT
        assert np.array_equal(off, v1.samples == LEADS_OFF_COUNT)  # one electrode set: off together
        expected = ii.samples[~off] * SECOND_LEAD_GAIN
        assert np.max(np.abs(v1.samples[~off] - expected), initial=0) <= 1  # the same heart, rounded once each
    assert simulate("--patients", "1") == 0 and published.wards[1][0].leads == 1  # one lead by default


def test_same_seed_same_bytes_another_seed_differs(published: Published) -> None:
    argv = ("--patients", "2", "--ectopics", "8", "--af-at", "2:3", "--noise", "0.02")
    for seed in ("5", "5", "6"):
        assert simulate(*argv, "--seed", seed) == 0
    runs = [[ward.timed_second(t, START_US) for t in range(5)] for ward, _, _ in published.wards]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_replay_publishes_the_record_keyed_by_the_patient(published: Published) -> None:
    assert simulate("--replay", record("mitdb", "100"), "--speed", "10", "--duration", "5", "--patient", "p0100") == 0
    (messages, start_us, realtime), = published.replays
    assert realtime and len(messages) == 5
    assert {(topic, key) for _, topic, key, _ in messages} == {("t.ecg", b"p0100")}
    chunks = [decode_ecg_chunk(value) for *_, value in messages]
    assert [c.sequence for c in chunks] == [0, 1, 2, 3, 4]
    assert [c.first_sample_us - start_us for c in chunks] == [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]
    assert [at - start_us for at, *_ in messages] == [100_000, 200_000, 300_000, 400_000, 500_000]
    assert {(c.lead, c.sampling_rate_hz, c.device_id) for c in chunks} == {(Lead.MLII, 360, "rec-100")}


def test_replay_channel_by_index_or_name_and_default_patient(published: Published) -> None:
    assert simulate("--replay", record("mitdb", "100"), "--channel", "1", "--duration", "1", "--fast") == 0
    assert simulate("--replay", record("challenge2015", "v244s"), "--channel", "II", "--duration", "1") == 0
    (first, _, realtime), (second, _, _) = published.replays
    assert not realtime
    assert (decode_ecg_chunk(first[0][3]).lead, first[0][2]) == (Lead.V5, b"replay-100")
    assert (decode_ecg_chunk(second[0][3]).lead, second[0][2]) == (Lead.II, b"replay-v244s")


@pytest.mark.parametrize(("argv", "message"), [
    (["--patients", "0"], "--patients must be >= 1"),
    (["--duration", "0"], "--duration must be >= 1"),
    (["--scenario", "sepsis,flu"], "--scenario: unknown 'flu'; choose from stable, sepsis, hypoxia, bradycardia"),
    (["--vt-at", "soon"], r"--vt-at: expected START\[:DURATION\]"),
    (["--vt-at", "10:0"], r"--vt-at: expected START\[:DURATION\]"),
    (["--af-at", "-3"], r"--af-at: expected START\[:DURATION\]"),
    (["--asystole-at", "5:x"], r"--asystole-at: expected START\[:DURATION\]"),
    (["--leads-off-at", ""], r"--leads-off-at: expected START\[:DURATION\]"),
    (["--vt-at", "10", "--vt-rate", "50"], "rate 100-300 bpm"),
    (["--ectopics", "40"], "pvc_per_min must be 0-30"),
    (["--hr-variability", "30"], r"hr_std_bpm must be 0-.* \(20 % of the rate\)"),
    (["--noise", "-1"], "noise amplitudes and rates must be >= 0"),
    (["--onset", "-1"], "onset_s >= 0"),
    (["--no-ecg", "--ectopics", "2"], "--ectopics shapes the ECG; drop --no-ecg"),
    (["--no-ecg", "--leads", "2"], "--leads shapes the ECG; drop --no-ecg"),
    (["--replay", "x", "--leads", "2"], "--replay sends a record's ECG only; drop --leads"),
    (["--channel", "MLII"], "--channel needs --replay"),
    (["--speed", "4"], "--speed needs --replay"),
    (["--replay", "x", "--scenario", "stable"], "--replay sends a record's ECG only; drop --scenario"),
    (["--replay", "x", "--no-ecg"], "drop --no-ecg"),
    (["--replay", "no/such/record"], "--replay: no WFDB header"),
])
def test_bad_values_are_one_line_and_status_2(published: Published, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], message: str) -> None:
    assert simulate(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vigil: configuration error: ")
    assert re.search(message, err), err
    assert published.wards == [] and published.replays == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--channel", "V9"], "no signal 'V9'"),
    (["--channel", "7"], "no channel 7"),
    (["--speed", "0"], "--speed must be above 0"),
    (["--patient", "Jane_Doe!"], "patient id"),
])
def test_bad_replay_values_are_one_line_and_status_2(published: Published, capsys: pytest.CaptureFixture[str],
                                                     argv: list[str], message: str) -> None:
    assert simulate("--replay", record("mitdb", "100"), *argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert published.replays == []


def test_a_lead_the_wire_has_no_code_for_is_refused(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate("--replay", record("challenge2015", "v244s"), "--channel", "V") == 2
    assert "lead 'V' has no code on the wire" in capsys.readouterr().err


def test_without_a_broker_the_command_says_which_variable(published: Published, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("VIGIL_KAFKA_URL")
    assert simulate("--duration", "1") == 2
    assert "VIGIL_KAFKA_URL is not set" in capsys.readouterr().err


def test_malformed_numbers_are_argparse_usage_errors(published: Published, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        simulate("--noise", "loud")
    assert exit_.value.code == 2 and "argument --noise: invalid float value: 'loud'" in capsys.readouterr().err


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        simulate("--help")
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for option in ("--scenario", "--hr-variability", "--ectopics", "--vt-at", "--vt-rate", "--af-at", "--asystole-at",
                   "--noise", "--motion", "--leads-off-at", "--leads", "--replay", "--channel", "--speed", "--patient"):
        assert option in out
