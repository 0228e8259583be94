"""What `vigil simulate`'s ECG options do to the signal: the pieces added to
`streams.ecg_synth` for them (a rate trend, a bounded asystole, episodes from the
command line) and the simulated ward's use of them (`streams.ward`): the ECG's rate
follows the bed's script, and leads off go on the wire as the negative rail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from processors.sqi import SignalQuality
from streams.ecg_codec import decode_ecg_chunk
from streams.ecg_synth import BeatKind, EcgConfig, Episode, Noise, Rhythm, ecg_simulate
from streams.topics import TopicNames
from streams.ward import ECG_SCALE_MV, LEADS_OFF_COUNT, SimulatedWard, ecg_counts

TOPICS = TopicNames("t")
START_US = 1_764_122_400_000_000


def ward_ecg(ward: SimulatedWard, seconds: int, patient: str = "p0001") -> np.ndarray:
    """One bed's ECG counts as the worker decodes them, ``seconds`` long."""
    out = []
    for t in range(seconds):
        for _, topic, key, value in ward.timed_second(t, START_US):
            if topic == TOPICS.ecg and key == patient.encode():
                out.append(decode_ecg_chunk(value).samples)
    return np.concatenate(out)


@pytest.mark.parametrize(("text", "episode"), [("30", Episode(30.0)), ("30:10", Episode(30.0, 10.0)),
                                               ("0:0.5", Episode(0.0, 0.5))])
def test_episode_parses_start_and_optional_duration(text: str, episode: Episode) -> None:
    assert Episode.parse(text) == episode


@pytest.mark.parametrize("text", ["", "x", "-1", "3:", "3:0", "3:-2", "inf", "nan", "1:2:3"])
def test_episode_refuses_what_is_not_a_start_and_a_positive_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"START\[:DURATION\]"):
        Episode.parse(text)


def test_heart_rate_trend_moves_the_beats_and_leaves_a_flat_trend_unchanged() -> None:
    flat = ecg_simulate(30, EcgConfig(hr_bpm=70, hr_std_bpm=0), seed=4)
    # Points equal to hr_bpm are the same record as no trend, bit for bit.
    same = ecg_simulate(30, EcgConfig(hr_bpm=70, hr_std_bpm=0, hr_trend=((0.0, 70.0), (20.0, 70.0))), seed=4)
    assert np.array_equal(flat.samples_mv, same.samples_mv)
    slowing = ecg_simulate(90, EcgConfig(hr_bpm=70, hr_std_bpm=1, hr_trend=((20.0, 70.0), (50.0, 36.0))), seed=4)
    beats = slowing.r_peaks / 250.0
    rate = 60.0 / np.diff(beats)
    at = beats[1:]
    assert abs(np.median(rate[at < 20]) - 70) < 3
    assert abs(np.median(rate[at > 55]) - 36) < 2
    middle = rate[(at > 30) & (at < 40)]
    assert 40 < np.median(middle) < 66  # on its way down


def test_asystole_with_a_duration_stops_the_beats_then_sinus_resumes() -> None:
    chunk = ecg_simulate(40, EcgConfig(rhythm=Rhythm(asystole_at_s=10, asystole_s=8)), seed=2)
    beats = chunk.r_peaks / 250.0
    assert not np.any((beats >= 10.5) & (beats < 18))
    assert np.sum(beats >= 19) >= 20 and set(chunk.kinds.tolist()) == {BeatKind.SINUS}
    quiet = chunk.samples_mv[round(11.5 * 250):round(17.5 * 250)]
    assert np.ptp(quiet) < 0.05  # flat: no electrical activity (the model's baseline settles)
    with pytest.raises(ValueError, match="asystole_s"):
        Rhythm(asystole_at_s=10, asystole_s=0)


@pytest.mark.parametrize("trend", [((5.0, 70.0), (1.0, 60.0)), ((-1.0, 70.0),), ((0.0, 300.0),), ((0.0, math.nan),)])
def test_bad_rate_trends_are_refused(trend: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError, match="hr_trend"):
        EcgConfig(hr_trend=trend)


def test_bradycardia_bed_ecg_follows_its_script_and_stable_bed_keeps_its_rate() -> None:
    ward = SimulatedWard(2, seed=3, topics=TOPICS, scenarios=["bradycardia", "stable"], onset_s=10, ramp_s=30)
    brady, stable = ward.ecg_configs["p0001"], ward.ecg_configs["p0002"]
    assert stable.hr_trend == ()
    assert brady.hr_trend[0] == (10.0, brady.hr_bpm) and brady.hr_trend[-1] == (40.0, 36.0)
    times = [t for t, _ in brady.hr_trend]
    assert times == sorted(times) and max(np.diff(times)) <= 5.0
    # The script's own course (smoothstep: slow at first), not a straight line.
    points = dict(brady.hr_trend)
    assert points[15.0] == pytest.approx(brady.hr_bpm + (36.0 - brady.hr_bpm) * (1 / 6) ** 2 * (3 - 2 / 6))
    assert points[25.0] == pytest.approx((brady.hr_bpm + 36.0) / 2)


def test_ward_applies_the_ecg_settings_to_every_bed_at_its_own_rate() -> None:
    config = EcgConfig(hr_std_bpm=3, rhythm=Rhythm(pvc_per_min=4), noise=Noise(gaussian_mv=0.02))
    ward = SimulatedWard(3, seed=1, topics=TOPICS, scenarios=["stable"], ecg_config=config)
    for bed in ward.ecg_configs.values():
        assert (bed.hr_std_bpm, bed.rhythm, bed.noise) == (3, config.rhythm, config.noise)
    assert len({bed.hr_bpm for bed in ward.ecg_configs.values()}) == 3
    assert SimulatedWard(2, seed=1, topics=TOPICS, ecg=False).ecg_configs == {}
    with pytest.raises(ValueError, match="scenarios"):
        SimulatedWard(2, seed=1, topics=TOPICS, scenarios=[])


def test_counts_round_clip_short_of_the_rail_and_send_missing_samples_at_it() -> None:
    mv = np.array([0.0, 1.0, -0.0124, 500.0, -500.0, math.nan], dtype=np.float32)
    counts = ecg_counts(mv)
    assert counts.dtype == np.int16
    assert counts.tolist() == [0, 200, -2, 32767, -32767, LEADS_OFF_COUNT]


def test_leads_off_reach_the_worker_as_the_rail_and_its_quality_check_says_so() -> None:
    ward = SimulatedWard(1, seed=5, topics=TOPICS, scenarios=["stable"],
                         ecg_config=EcgConfig(noise=Noise(leads_off=(Episode(8.0, 6.0),))))
    counts = ward_ecg(ward, 20)
    off = np.flatnonzero(counts == LEADS_OFF_COUNT)
    assert off[0] == 8 * 250 and off[-1] == 14 * 250 - 1 and off.size == 6 * 250
    labels = {w.start // 500: w.label for w in SignalQuality(250).feed(counts * ECG_SCALE_MV)}
    assert [labels[k] for k in (4, 5, 6)] == ["leads_off"] * 3  # 8-14 s, in 2-s windows
    assert labels[1] == labels[9] == "ok"


def test_same_seed_and_options_give_the_same_bytes() -> None:
    config = EcgConfig(rhythm=Rhythm(pvc_per_min=6, af=(Episode(3.0, 4.0),)), noise=Noise(gaussian_mv=0.03))

    def run(seed: int) -> list[object]:
        ward = SimulatedWard(2, seed=seed, topics=TOPICS, ecg_config=config)
        return [ward.timed_second(t, START_US) for t in range(8)]

    assert run(9) == run(9)
    assert run(9) != run(10)
