"""The synthetic ECG generator (streams/ecg_synth.py): determinism, chunk invariance,
the numba kernel against its Python twin, rate accuracy, Vigil's own QRS detector on
the result, and each rhythm event and artefact checked on the signal itself."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from processors.evaluate import match_beats
from processors.qrs import ecg_findpeaks
from streams.ecg_synth import (
    BeatKind,
    EcgChunk,
    EcgConfig,
    Episode,
    Noise,
    Rhythm,
    SyntheticEcg,
    VtRun,
    ecg_simulate,
)

FS = 250
EVERYTHING = EcgConfig(
    hr_bpm=75,
    rhythm=Rhythm(pvc_per_min=8, vt_runs=(VtRun(12, 6, 170),), af=(Episode(20, 8),), asystole_at_s=34),
    noise=Noise(gaussian_mv=0.05, baseline_wander_mv=0.15, motion_per_min=12, leads_off=(Episode(29, 1.5),)),
)


def rr_s(chunk: EcgChunk) -> npt.NDArray[np.float64]:
    return np.diff(chunk.r_peaks) / FS


def half_max_width_ms(x: npt.NDArray[np.float32], r: int) -> float:
    """Width of the R wave at half its height (clean signal, R above the baseline)."""
    half = x[r] / 2
    lo, hi = r, r
    while x[lo - 1] >= half:
        lo -= 1
    while x[hi + 1] >= half:
        hi += 1
    return (hi - lo + 1) / FS * 1000


def test_same_seed_and_patient_same_record() -> None:
    a = ecg_simulate(10, EVERYTHING, seed=3, patient="p0001")
    b = ecg_simulate(10, EVERYTHING, seed=3, patient="p0001")
    assert np.array_equal(a.samples_mv, b.samples_mv, equal_nan=True)
    assert np.array_equal(a.r_peaks, b.r_peaks)
    for other in (ecg_simulate(10, EVERYTHING, seed=4, patient="p0001"),
                  ecg_simulate(10, EVERYTHING, seed=3, patient="p0002")):
        assert not np.allclose(a.samples_mv, other.samples_mv, equal_nan=True)


def test_chunking_does_not_change_the_record() -> None:
    n = 40 * FS
    whole = ecg_simulate(40, EVERYTHING, seed=5, patient="x")
    gen = SyntheticEcg(EVERYTHING, seed=5, patient="x")
    sizes = np.random.default_rng(0).integers(0, 700, size=200)
    parts, peaks, kinds, done = [], [], [], 0
    for size in sizes:
        chunk = gen.next_chunk_annotated(int(min(size, n - done)))
        assert chunk.start == done
        parts.append(chunk.samples_mv)
        peaks += list(chunk.r_peaks + chunk.start)
        kinds += list(chunk.kinds)
        done += chunk.samples_mv.shape[0]
        if done == n:
            break
    assert done == n
    np.testing.assert_allclose(np.concatenate(parts), whole.samples_mv, atol=1e-6, equal_nan=True)
    assert np.array_equal(peaks, whole.r_peaks) and np.array_equal(kinds, whole.kinds)
    # Every event really happened in this record, so the comparison covered them all.
    assert {BeatKind.SINUS, BeatKind.PVC, BeatKind.VT, BeatKind.AF} <= set(kinds)


def test_numba_kernel_matches_its_python_twin() -> None:
    jit = SyntheticEcg(EVERYTHING, seed=2).next_chunk(4 * FS)
    py = SyntheticEcg(EVERYTHING, seed=2, jit=False).next_chunk(4 * FS)
    np.testing.assert_allclose(jit[0], py[0], atol=1e-6, equal_nan=True)
    assert np.array_equal(jit[1], py[1])


def test_next_chunk_returns_float32_samples_and_peaks_within_the_chunk() -> None:
    gen = SyntheticEcg(seed=1)
    empty, none = gen.next_chunk(0)
    assert empty.shape == (0,) and none.shape == (0,)
    for _ in range(5):
        x, peaks = gen.next_chunk(FS)
        assert x.dtype == np.float32 and x.shape == (FS,)
        assert peaks.dtype == np.int64 and np.all((peaks >= 0) & (peaks < FS))
    assert gen.samples_emitted == 5 * FS


@pytest.mark.parametrize("hr", [35, 70, 120, 180])
def test_true_r_peaks_give_the_configured_mean_rate(hr: float) -> None:
    chunk = ecg_simulate(120, EcgConfig(hr_bpm=hr, hr_std_bpm=0.05 * hr), seed=int(hr))
    assert 60 / rr_s(chunk).mean() == pytest.approx(hr, rel=0.02)
    assert set(chunk.symbols) == {"N"}


def test_true_r_peak_is_the_top_of_the_r_wave() -> None:
    chunk = ecg_simulate(30, seed=8)
    x = chunk.samples_mv
    w = round(0.05 * FS)
    offsets = [int(np.argmax(x[r - w:r + w + 1])) - w for r in chunk.r_peaks if w <= r < x.shape[0] - w]
    # The R time is continuous and rounded to the nearest sample; the model's decay term
    # moves the top of z a fraction of a sample earlier.
    assert set(offsets) <= {-1, 0} and offsets.count(0) > 0.8 * len(offsets)
    # R height above the isoelectric level (just before the P wave) is the configured 1 mV.
    before_p = chunk.r_peaks[1:] - round(0.3 * FS)
    heights = x[chunk.r_peaks[1:]] - x[before_p]
    assert np.median(heights) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(("hr", "rhythm", "noise"), [
    (60, Rhythm(), Noise()),
    (100, Rhythm(), Noise()),
    (150, Rhythm(), Noise()),
    (70, Rhythm(pvc_per_min=6), Noise()),
    (75, Rhythm(), Noise(gaussian_mv=0.03, baseline_wander_mv=0.15)),
], ids=["60bpm", "100bpm", "150bpm", "pvcs", "noise"])
def test_vigils_detector_finds_the_synthetic_beats(hr: float, rhythm: Rhythm, noise: Noise) -> None:
    chunk = ecg_simulate(120, EcgConfig(hr_bpm=hr, rhythm=rhythm, noise=noise), seed=11)
    score = match_beats(chunk.r_peaks, ecg_findpeaks(chunk.samples_mv, sampling_rate=FS), tolerance=round(0.15 * FS))
    assert score.sensitivity >= 0.99 and score.positive_predictivity >= 0.99, score


def test_af_rr_is_irregular_and_sinus_rr_is_not() -> None:
    chunk = ecg_simulate(240, EcgConfig(rhythm=Rhythm(af=(Episode(120),), af_hr_bpm=110)), seed=4)
    rr = rr_s(chunk)
    at = chunk.r_peaks[1:] / FS
    sinus, af = rr[at < 119], rr[at > 121]
    assert sinus.std() / sinus.mean() < 0.05
    assert af.std() / af.mean() > 0.12
    assert 60 / af.mean() == pytest.approx(110, rel=0.1)
    kinds = chunk.kinds[1:]
    assert set(kinds[at > 121]) == {BeatKind.AF} and set(kinds[at < 119]) == {BeatKind.SINUS}
    assert set(chunk.symbols) == {"N"}  # AF-conducted beats are normal beats


def test_af_beats_have_no_p_wave() -> None:
    """At 60 bpm (long RR, so no T wave nearby) the window 220-80 ms before R holds the
    P wave in sinus rhythm and nothing during AF (f waves off to see that)."""
    cfg = EcgConfig(hr_bpm=60, rhythm=Rhythm(af=(Episode(60),), af_hr_bpm=60, af_rr_cv=0.1, af_wave_mv=0.0))
    chunk = ecg_simulate(120, cfg, seed=6)
    x = chunk.samples_mv

    def p_bump(r: int) -> float:
        return float(x[r - round(0.22 * FS):r - round(0.08 * FS)].max() - x[r - round(0.3 * FS)])

    at = chunk.r_peaks / FS
    sinus = [p_bump(r) for r, t in zip(chunk.r_peaks, at, strict=True) if 2 < t < 59]
    af = [p_bump(r) for r, t in zip(chunk.r_peaks, at, strict=True) if t > 62]
    assert min(sinus) > 0.15
    assert max(af) < 0.03


def test_af_adds_fibrillatory_waves_at_4_to_9_hz() -> None:
    episode = Episode(10, 20)
    with_f = ecg_simulate(40, EcgConfig(rhythm=Rhythm(af=(episode,), af_wave_mv=0.1)), seed=9)
    without = ecg_simulate(40, EcgConfig(rhythm=Rhythm(af=(episode,), af_wave_mv=0.0)), seed=9)
    f = (with_f.samples_mv - without.samples_mv).astype(np.float64)
    assert np.array_equal(with_f.r_peaks, without.r_peaks)  # same beats: only the baseline differs
    assert np.all(f[:10 * FS] == 0) and np.all(f[30 * FS:] == 0)
    inside = f[11 * FS:29 * FS]
    spectrum = np.abs(np.fft.rfft(inside))
    peak_hz = np.fft.rfftfreq(inside.shape[0], 1 / FS)[np.argmax(spectrum)]
    assert 4 <= peak_hz <= 9
    assert 0.03 < inside.std() < 0.15


def test_vt_run_has_the_configured_rate_and_length_and_wide_beats() -> None:
    chunk = ecg_simulate(60, EcgConfig(hr_bpm=70, rhythm=Rhythm(vt_runs=(VtRun(20, 12, 180),))), seed=3)
    vt = chunk.r_peaks[chunk.kinds == BeatKind.VT]
    assert vt.shape == (12,)
    assert 20 <= vt[0] / FS < 21
    assert 60 / (np.diff(vt).mean() / FS) == pytest.approx(180, rel=0.02)
    assert [chunk.symbols[i] for i in np.flatnonzero(chunk.kinds == BeatKind.VT)] == ["V"] * 12
    sinus = chunk.r_peaks[(chunk.kinds == BeatKind.SINUS) & (chunk.r_peaks > FS) & (chunk.r_peaks < 59 * FS)]
    vt_width = np.median([half_max_width_ms(chunk.samples_mv, int(r)) for r in vt])
    sinus_width = np.median([half_max_width_ms(chunk.samples_mv, int(r)) for r in sinus])
    assert vt_width >= 1.8 * sinus_width and vt_width >= 50


def test_pvc_is_premature_wide_and_followed_by_a_compensatory_pause() -> None:
    chunk = ecg_simulate(180, EcgConfig(hr_bpm=70, rhythm=Rhythm(pvc_per_min=5, pvc_coupling=0.6)), seed=12)
    rr = rr_s(chunk)
    pvcs = [i for i in np.flatnonzero(chunk.kinds == BeatKind.PVC) if 2 <= i < len(rr)]
    assert 5 <= len(pvcs) <= 30
    sinus_rr = 60 / 70
    for i in pvcs:
        assert chunk.kinds[i - 1] == BeatKind.SINUS and chunk.kinds[i + 1] == BeatKind.SINUS
        assert rr[i - 1] == pytest.approx(0.6 * sinus_rr, rel=0.08)             # premature
        assert rr[i - 1] + rr[i] == pytest.approx(2 * sinus_rr, rel=0.05)       # full compensatory pause
        assert half_max_width_ms(chunk.samples_mv, int(chunk.r_peaks[i])) >= 50  # wide


def test_asystole_is_flat_and_beatless() -> None:
    chunk = ecg_simulate(40, EcgConfig(rhythm=Rhythm(asystole_at_s=15)), seed=2)
    assert chunk.r_peaks.max() < 15 * FS
    assert chunk.r_peaks[chunk.r_peaks > 10 * FS].shape[0] >= 4  # beating until then
    after = chunk.samples_mv[19 * FS:]
    assert np.ptp(after) < 0.02
    assert np.ptp(chunk.samples_mv[5 * FS:14 * FS]) > 0.8


def test_leads_off_sends_nan_or_the_rail_value() -> None:
    off = Episode(10, 5)
    x = ecg_simulate(30, EcgConfig(noise=Noise(leads_off=(off,), gaussian_mv=0.02)), seed=1).samples_mv
    assert np.all(np.isnan(x[10 * FS:15 * FS]))
    assert np.all(np.isfinite(x[:10 * FS])) and np.all(np.isfinite(x[15 * FS:]))
    rail = ecg_simulate(30, EcgConfig(noise=Noise(leads_off=(off,), leads_off_value_mv=5.0)), seed=1).samples_mv
    assert np.all(rail[10 * FS:15 * FS] == 5.0) and np.all(rail[:10 * FS] < 2)


def test_gaussian_noise_has_the_configured_spread() -> None:
    clean = ecg_simulate(60, seed=7).samples_mv.astype(np.float64)
    noisy = ecg_simulate(60, EcgConfig(noise=Noise(gaussian_mv=0.05)), seed=7).samples_mv.astype(np.float64)
    noise = noisy - clean
    assert noise.std() == pytest.approx(0.05, rel=0.05)
    assert abs(noise.mean()) < 0.002
    assert abs(np.corrcoef(noise[:-1], noise[1:])[0, 1]) < 0.05  # white


def test_motion_bursts_come_and_go_at_the_configured_rate() -> None:
    minutes = 10
    noise = Noise(motion_per_min=6, motion_mv=0.5, motion_s=1.0)
    clean = ecg_simulate(minutes * 60, seed=7).samples_mv
    noisy = ecg_simulate(minutes * 60, EcgConfig(noise=noise), seed=7).samples_mv
    active = noisy != clean
    # A burst crosses zero now and then: close gaps shorter than 50 ms.
    active = np.convolve(active, np.ones(round(0.05 * FS)), mode="same") > 0
    starts = np.flatnonzero(active[1:] & ~active[:-1])
    assert 30 <= starts.shape[0] <= 95  # Poisson, mean 60 (overlapping bursts merge)
    assert 0.03 < active.mean() < 0.2   # each about 1 s
    assert np.abs(noisy - clean).max() < 2 * 0.75


@pytest.mark.parametrize("make", [
    lambda: EcgConfig(sampling_rate=50),
    lambda: EcgConfig(hr_bpm=300),
    lambda: EcgConfig(hr_std_bpm=-1),
    lambda: Rhythm(pvc_coupling=0.2),
    lambda: Rhythm(asystole_at_s=-1),
    lambda: VtRun(10, 0),
    lambda: Episode(5, 0),
    lambda: Noise(gaussian_mv=-0.1),
])
def test_invalid_configuration_is_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_negative_seed_and_chunk_size_are_refused() -> None:
    with pytest.raises(ValueError):
        SyntheticEcg(seed=-1)
    with pytest.raises(ValueError):
        SyntheticEcg().next_chunk(-1)
