"""Arrhythmia and ECG technical conditions (detectors/arrhythmia.py, vf.py,
ecg_activity.py): each PhysioNet/CinC 2015 definition at its edge, fed through a
small stand-in for the ECG chain; the VF/flutter detector on synthetic signals and
on MIT-BIH records; and the real ECG chain end to end."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from detectors.alarm_conditions import CONDITIONS, Observation
from detectors.alarm_inputs import AlarmInputs
from detectors.alarms import AlarmEngine
from detectors.arrhythmia import ArrhythmiaDetector, ArrhythmiaReport, ArrhythmiaState
from detectors.ecg_activity import ActivityMeter, ActivityState
from detectors.vf import VfDetector, VfSettings, VfState, VfWindow, vf_window
from processors.ecg import EcgAnalyzer
from streams.ecg_synth import EcgConfig, Noise, SyntheticEcg
from tests.conftest import REPO
from tests.unit.test_qrs import synthetic_ecg

DATA = Path(os.environ.get("VIGIL_DATA_DIR", REPO.parent / "shared" / "data"))
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class B:
    sample: int
    quality: str = "ok"
    """The label of the beat's quality window, as processors.ecg gives it."""

    @property
    def usable(self) -> bool:
        return self.quality == "ok"


@dataclass(frozen=True)
class W:
    start: int
    label: str


Reports = list[dict[str, Observation]]


def run_chain(fs: int, seconds: float, beats: Sequence[int], *, signal: FloatArray | None = None,
              label: Callable[[int], str] = lambda start: "ok", unusable: set[int] | None = None,
              classes: Mapping[int, str] | None = None, chunk: int | None = None,
              state: ArrhythmiaState | None = None, late: bool = False) -> tuple[ArrhythmiaState, Reports]:
    """A stand-in for processors.ecg: each quality window is released once complete,
    with the beats inside it. ``label(start)`` gives each window's label. With
    ``late``, each beat's class comes with the chunk after the one that released the
    beat, as in the worker (a beat is classified once the next one is found)."""
    det = ArrhythmiaDetector(fs)
    size, n = det.window_size, round(seconds * fs)
    x = np.zeros(n) if signal is None else signal
    step = chunk or fs
    st, out, released = state or ArrhythmiaState(), [], 0
    pending: list[int] = []
    for at in range(0, n, step):
        end = min(at + step, n)
        windows = [W(k * size, label(k * size)) for k in range(released, end // size)]
        released = max(released, end // size)
        last = windows[-1].start + size if windows else -1
        first = windows[0].start if windows else -1
        bs = [B(b, "suspect" if b in (unusable or set()) else label(b // size * size))
              for b in beats if first <= b < last]
        given = classes
        if late and classes is not None:
            given = {b: classes[b] for b in pending if b in classes}
            pending = [b.sample for b in bs]
        st, report = det.feed(st, x[at:end], bs, windows, given)
        out.append({o.condition: o for o in report.observations})
    return st, out


def seen(reports: Reports, condition: str) -> bool:
    return any(r[condition].present for r in reports)


def regular(fs: int, start_s: float, rr_samples: int, count: int) -> list[int]:
    return [round(start_s * fs) + i * rr_samples for i in range(count)]


# -- asystole -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gap", "expected"), [(999, False), (1000, True)])
def test_asystole_needs_four_seconds_without_qrs(gap: int, expected: bool) -> None:
    fs = 250
    beats = regular(fs, 1, 250, 10)
    beats += [beats[-1] + gap + i * 250 for i in range(10)]  # the last beat is at 23 s
    _, reports = run_chain(fs, 26, beats)
    assert seen(reports, "asystole") is expected


def test_asystole_while_no_beat_comes_and_its_value_is_the_gap() -> None:
    fs = 250
    _, reports = run_chain(fs, 20, regular(fs, 1, 250, 6))  # last beat at 6 s, then nothing
    first = next(i for i, r in enumerate(reports) if r["asystole"].present)
    assert first == 9  # the window ending at 10 s is the first to show 4 s without QRS
    assert reports[first]["asystole"].value == 4.0
    assert all(r["asystole"].present for r in reports[first:])
    assert reports[-1]["asystole"].value == 14.0


def test_leads_off_is_not_asystole_and_coverage_restarts_after_it() -> None:
    fs = 250

    def label(start: int) -> str:
        return "leads_off" if 8 * fs <= start < 16 * fs else "ok"

    # beats until 6 s, leads off 8-16 s, beats again from 19 s: 2 s + 3 s of observed pause only.
    beats = regular(fs, 1, 250, 6) + regular(fs, 19, 250, 10)
    _, reports = run_chain(fs, 30, beats, label=label)
    assert not seen(reports, "asystole")
    assert seen(reports, "ecg_leads_off")
    during = reports[11]  # the chunk ending at 12 s releases the window 10-12 s
    assert during["ecg_leads_off"].present and during["asystole"].present is None
    # The same pause without the leads-off windows is an asystole.
    _, plain = run_chain(fs, 30, beats)
    assert seen(plain, "asystole")


def test_noise_hides_asystole_but_a_quiet_line_called_noise_does_not() -> None:
    fs = 250
    beats = regular(fs, 1, 250, 6) + regular(fs, 16, 250, 10)
    rng = np.random.default_rng(5)
    quiet = 0.01 * rng.standard_normal(30 * fs)            # baseline noise: no QRS could hide in it
    loud = quiet + 0.5 * rng.standard_normal(30 * fs)      # muscle noise: it could

    def label(start: int) -> str:
        return "noise" if 8 * fs <= start < 14 * fs else "ok"

    _, q = run_chain(fs, 26, beats, signal=quiet, label=label)  # the last beat is at 25 s
    _, n = run_chain(fs, 26, beats, signal=loud, label=label)
    assert seen(q, "asystole") and not seen(q, "ecg_noise")
    assert not seen(n, "asystole") and seen(n, "ecg_noise")


# -- bradycardia, tachycardia ------------------------------------------------------------------------------


@pytest.mark.parametrize(("rr", "count", "expected"), [
    (376, 5, True),   # 39.9 bpm over 5 beats
    (375, 5, False),  # exactly 40 bpm is not below 40
    (376, 4, False),  # only 4 beats at that rate
])
def test_extreme_bradycardia_edges(rr: int, count: int, expected: bool) -> None:
    fs = 250
    beats = regular(fs, 1, 250, 10)
    beats += [beats[-1] + rr * (i + 1) for i in range(count - 1)]
    beats += [beats[-1] + 250 * (i + 1) for i in range(10)]
    _, reports = run_chain(fs, 40, beats)
    assert seen(reports, "extreme_bradycardia") is expected
    if expected:
        hit = next(r for r in reports if r["extreme_bradycardia"].present)["extreme_bradycardia"]
        assert hit.value == 39.9 and hit.limit == 40


@pytest.mark.parametrize(("rr", "count", "expected"), [
    (179, 17, True),   # 140.8 bpm over 17 beats
    (180, 17, False),  # exactly 140 bpm is not above 140
    (179, 16, False),  # only 16 beats at that rate: the 17-beat run still holds one slow interval
])
def test_extreme_tachycardia_edges(rr: int, count: int, expected: bool) -> None:
    fs = 420  # 140 bpm is exactly 180 samples
    beats = regular(fs, 1, 420, 10)
    beats += [beats[-1] + rr * (i + 1) for i in range(count - 1)]
    beats += [beats[-1] + 420 * (i + 1) for i in range(10)]
    _, reports = run_chain(fs, 40, beats)
    assert seen(reports, "extreme_tachycardia") is expected


def test_an_unusable_beat_or_noise_window_breaks_a_run() -> None:
    fs = 250
    slow = regular(fs, 1, 400, 8)  # 37.5 bpm
    _, whole = run_chain(fs, 20, slow)
    assert seen(whole, "extreme_bradycardia")
    _, broken = run_chain(fs, 20, slow, unusable={slow[4]})
    assert not seen(broken, "extreme_bradycardia")


# -- ventricular tachycardia ---------------------------------------------------------------------------


@pytest.mark.parametrize("late", [False, True], ids=["labelled", "labelled-a-chunk-later"])
@pytest.mark.parametrize(("v_beats", "rr", "expected"), [(5, 149, True), (4, 149, False), (5, 150, False)])
def test_ventricular_tachycardia_edges(v_beats: int, rr: int, expected: bool, late: bool) -> None:
    fs = 250  # 100 bpm is exactly 150 samples
    beats = regular(fs, 1, 250, 8)
    run = [beats[-1] + rr * (i + 1) for i in range(v_beats)]
    beats += run + [run[-1] + 250 * (i + 1) for i in range(8)]
    classes = {b: "N" for b in beats} | {b: "V" for b in run}
    _, reports = run_chain(fs, 30, beats, classes=classes, late=late)
    assert seen(reports, "ventricular_tachycardia") is expected


def test_a_late_label_completes_a_run_found_a_chunk_earlier() -> None:
    # Seven fast V beats, released in one chunk with no label yet: VT is not judged
    # (None, not False) until the labels come, with the next chunk.
    fs = 250
    beats = regular(fs, 1, 120, 7)  # 125 bpm
    det = ArrhythmiaDetector(fs)
    st, first = det.feed(ArrhythmiaState(), np.zeros(fs), [B(b) for b in beats], [], {})
    vt = {o.condition: o for o in first.observations}["ventricular_tachycardia"]
    assert vt.present is None
    _, second = det.feed(st, np.zeros(fs), [], [], dict.fromkeys(beats, "V"))
    vt = {o.condition: o for o in second.observations}["ventricular_tachycardia"]
    assert vt.present is True
    assert vt.value == 125.0


def test_without_beat_classes_ventricular_tachycardia_is_not_evaluated() -> None:
    _, reports = run_chain(250, 20, regular(250, 1, 100, 60))
    assert all(r["ventricular_tachycardia"].present is None for r in reports)


def test_fast_normal_beats_are_not_ventricular_tachycardia() -> None:
    beats = regular(250, 1, 120, 60)
    _, reports = run_chain(250, 20, beats, classes=dict.fromkeys(beats, "N"))
    assert not seen(reports, "ventricular_tachycardia")
    assert reports[-1]["ventricular_tachycardia"].present is False


def vt_in_noise(fs: int, rrs: Sequence[int], classes: str = "V", noise: str = "noise",
                late: bool = False) -> Reports:
    """Sinus at 60 bpm, then a run of beats with RR intervals ``rrs`` inside windows labelled
    ``noise`` (4-10 s), given class ``classes``; the sinus beats are N."""
    sinus = regular(fs, 0.5, fs, 3)
    run = list(np.cumsum([4 * fs + fs // 4, *rrs]))
    after = regular(fs, 11, fs, 8)
    beats = sinus + run + after
    label = {b: "N" for b in sinus + after} | dict.fromkeys(run, classes)

    def window(start: int) -> str:
        return noise if 4 * fs <= start < 10 * fs else "ok"

    _, reports = run_chain(fs, 20, beats, label=window, classes=label, late=late)
    return reports


@pytest.mark.parametrize("late", [False, True], ids=["labelled", "labelled-a-chunk-later"])
def test_ventricular_tachycardia_in_noise_windows_counts_when_regular_and_ventricular(late: bool) -> None:
    # A wide-complex VT is what the quality index calls noise (low kurtosis): its beats still count for VT.
    fs = 250
    assert seen(vt_in_noise(fs, [120] * 8, late=late), "ventricular_tachycardia")
    assert seen(vt_in_noise(fs, [100, 140, 110, 130, 120, 150], late=late), "ventricular_tachycardia")
    # Not when the classifier does not call them V, nor when the run is irregular (artefact):
    # the longest RR more than twice the shortest (vt_noise_rr_ratio).
    assert not seen(vt_in_noise(fs, [120] * 8, classes="Q", late=late), "ventricular_tachycardia")
    assert not seen(vt_in_noise(fs, [60, 121, 60, 121, 60, 121, 60], late=late), "ventricular_tachycardia")
    assert seen(vt_in_noise(fs, [60, 120, 60, 120, 60, 120, 60], late=late), "ventricular_tachycardia")


def test_noise_beats_never_count_for_rate_alarms_and_other_windows_still_break_vt() -> None:
    fs = 250
    reports = vt_in_noise(fs, [100] * 20)  # 150 bpm for 20 beats, all in noise windows
    assert seen(reports, "ventricular_tachycardia")
    assert not seen(reports, "extreme_tachycardia")
    assert not seen(vt_in_noise(fs, [120] * 8, noise="leads_off"), "ventricular_tachycardia")
    assert not seen(vt_in_noise(fs, [120] * 8, noise="saturated"), "ventricular_tachycardia")


def test_a_state_from_before_the_vt_run_restores_with_its_labels() -> None:
    fs = 250
    beats = regular(fs, 1, 120, 4)
    det = ArrhythmiaDetector(fs)
    st, _ = det.feed(ArrhythmiaState(), np.zeros(fs), [B(b) for b in beats], [], dict.fromkeys(beats, "V"))
    doc = st.to_dict()
    del doc["vt_run"], doc["vt_break"]
    doc["run"] = [[b, "V"] for b in beats]  # how the run was stored before VT had its own
    legacy = ArrhythmiaState.from_dict(json.loads(json.dumps(doc)))
    assert legacy.run == st.run and legacy.vt_run == st.vt_run
    fifth = beats[-1] + 120
    _, report = det.feed(legacy, np.zeros(fs), [B(fifth)], [], {fifth: "V"})
    assert {o.condition: o for o in report.observations}["ventricular_tachycardia"].present is True


def test_suspect_windows_are_observed_signal_whose_beats_do_not_count() -> None:
    fs = 250
    slow = regular(fs, 1, 400, 12)  # 37.5 bpm

    def label(start: int) -> str:  # processors/ecg.py: clean signal holding an implausible RR
        return "suspect" if 4 * fs <= start < 6 * fs else "ok"

    in_suspect = {b for b in slow if 4 * fs <= b < 6 * fs}
    _, reports = run_chain(fs, 20, slow, label=label, unusable=in_suspect)
    assert not seen(reports, "asystole")
    assert {c for r in reports for c, o in r.items() if o.present} == {"extreme_bradycardia"}
    # The run restarts after the suspect beats: brady is seen only once 5 usable beats follow them.
    first = next(i for i, r in enumerate(reports) if r["extreme_bradycardia"].present)
    assert first + 1 >= (max(in_suspect) + 5 * 400) / fs


# -- VF / flutter ----------------------------------------------------------------------------------------


def sine(fs: int, seconds: float, hz: float, seed: int = 0) -> FloatArray:
    t = np.arange(round(seconds * fs)) / fs
    rng = np.random.default_rng(seed)
    # A slightly wandering frequency and amplitude, plus noise: flutter is not a pure tone.
    phase = 2 * np.pi * np.cumsum(hz * (1 + 0.05 * np.sin(2 * np.pi * 0.2 * t))) / fs
    return (0.8 + 0.2 * np.sin(2 * np.pi * 0.3 * t)) * np.sin(phase) + 0.05 * rng.standard_normal(t.size)


@pytest.mark.parametrize("hz", [3.5, 4.0, 5.0, 6.0, 8.0])
def test_oscillation_at_flutter_and_fibrillation_rates_is_fibrillatory(hz: float) -> None:
    _, windows = VfDetector(250).feed(VfState(), sine(250, 12, hz))
    assert len(windows) == 9 and all(w.fibrillatory for w in windows)
    assert all(abs(w.dominant_hz - hz) <= 0.5 for w in windows)


@pytest.mark.parametrize("hr", [40, 75, 120, 180])
def test_synthetic_ecg_at_any_rate_is_not_fibrillatory(hr: float) -> None:
    x, _ = synthetic_ecg(360, 60, seed=int(hr), hr=hr)
    _, windows = VfDetector(360).feed(VfState(), x)
    assert windows and not any(w.fibrillatory for w in windows)


@pytest.mark.parametrize("name", ["zeros", "tiny_sine", "white_noise", "slow_wave", "nan"])
def test_degenerate_input_is_not_fibrillatory(name: str) -> None:
    rng = np.random.default_rng(1)
    x = {
        "zeros": np.zeros(2000),
        "tiny_sine": 0.02 * np.sin(2 * np.pi * 5 * np.arange(2000) / 250),  # below the amplitude floor
        "white_noise": rng.standard_normal(2000),
        "slow_wave": np.sin(2 * np.pi * 1.0 * np.arange(2000) / 250),       # 60 /min: too slow
        "nan": np.full(2000, np.nan),
    }[name]
    w = vf_window(x[:1000], 250)
    assert not w.fibrillatory
    assert w.assessed is (name != "nan")


def test_vf_windows_do_not_depend_on_chunking() -> None:
    x, _ = synthetic_ecg(250, 20, seed=3)
    x[1000:3000] = sine(250, 8, 4.5)
    x[4000:4100] = np.nan
    det = VfDetector(250)
    _, whole = det.feed(VfState(), x)
    assert [w.start for w in whole] == list(range(0, 4001, 250))
    for chunk in (1, 37, 250, 999):
        st, parts = VfState(), []
        for i in range(0, x.size, chunk):
            st, ws = det.feed(st, x[i:i + chunk])
            parts += ws
        assert parts == whole


def _vf_window_numpy(x: FloatArray, fs: float, start: int = 0) -> VfWindow:
    """The plain numpy formulation the kernels replaced, with the default settings
    (change aversion: the kernels must give these numbers to the bit)."""
    settings = VfSettings()
    n = x.shape[0]
    if n == 0 or np.isnan(x).any():
        return VfWindow(start, start + n, False, False, 0.0, 0.0, 0.0, 0.0, 0.0)

    def q(a: FloatArray, p: float) -> float:
        pos = p * (a.shape[0] - 1)
        lo = int(pos)
        hi = min(lo + 1, a.shape[0] - 1)
        part = np.partition(a, (lo, hi))
        return float(part[lo] + (part[hi] - part[lo]) * (pos - lo))

    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    t = np.arange(n) - (n - 1) / 2.0
    band = (freqs >= 0.5) & (freqs <= 30.0)
    y = x - x.mean()
    y = y - t * (float(t @ y) / float(t @ t)) if n > 1 else y
    amplitude = q(y, 0.95) - q(y, 0.05)
    power = np.abs(np.fft.rfft(y * np.hanning(n))) ** 2
    total = float(power[band].sum())
    if total <= 0.0:
        return VfWindow(start, start + n, True, False, 0.0, 0.0, 0.0, 0.0, amplitude)
    dominant = float(freqs[band][int(np.argmax(power[band]))])
    concentration = float(power[band & (np.abs(freqs - dominant) <= settings.band_hz)].sum()) / total
    excursion = np.abs(y - q(y, 0.5))
    top = q(excursion, 0.99)
    above = excursion > settings.occupancy_level * top if top > 0 else np.zeros(n, dtype=bool)
    parts = max(1, min(settings.parts, n))
    part_occupancy = min(float(part.mean()) for part in np.array_split(above, parts))
    fibrillatory = (settings.min_dominant_hz <= dominant <= settings.max_dominant_hz
                    and concentration >= settings.min_concentration and float(above.mean()) >= settings.min_occupancy
                    and part_occupancy >= settings.min_part_occupancy and amplitude >= settings.min_amplitude_mv)
    shares = []
    for part in np.array_split(x, 2) if fibrillatory else ():
        m = part.shape[0]
        u = np.arange(m) - (m - 1) / 2.0
        z = part - part.mean()
        z = z - u * (float(u @ z) / float(u @ u))
        p = np.abs(np.fft.rfft(z * np.hanning(m))) ** 2
        f = np.fft.rfftfreq(m, 1.0 / fs)
        inside = (f >= 0.5) & (f <= 30.0)
        shares.append(float(p[inside & (np.abs(f - dominant) <= settings.band_hz)].sum()) / float(p[inside].sum()))
    half = min(shares) if shares else 0.0
    return VfWindow(start, start + n, True, fibrillatory and half >= settings.min_half_concentration, dominant,
                    concentration, float(above.mean()), part_occupancy, amplitude, half)


def _vf_windows_to_check() -> list[tuple[FloatArray, int]]:
    rng = np.random.default_rng(8)
    out: list[tuple[FloatArray, int]] = []
    for k in range(60):
        fs = (125, 250, 360)[k % 3]
        n = int(rng.integers(fs, 5 * fs))
        x = sine(fs, n / fs + 1, float(rng.uniform(1, 10)))[:n] * rng.uniform(0, 2)
        if k % 5 == 0:
            x = synthetic_ecg(fs, n / fs + 1, seed=k)[0][:n]
        if k % 7 == 0:
            x = np.round(x, 1)  # ties for the quantiles
        if k % 11 == 0:
            x = np.full(n, 0.3)  # no power at all
        if k % 13 == 0:
            x[n // 2] = np.nan
        out.append((x, fs))
    return out


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "python"])
def test_vf_kernels_give_the_numpy_formulation_to_the_bit(jit: bool) -> None:
    for i, (x, fs) in enumerate(_vf_windows_to_check()):
        got, want = vf_window(x, fs, start=i, jit=jit), _vf_window_numpy(x, fs, start=i)
        assert got == want
        assert [type(getattr(got, f)) for f in got.__slots__] == [type(getattr(want, f)) for f in want.__slots__]


def test_vf_kernels_on_mitdb_207_flutter_and_its_neighbourhood() -> None:
    x, _ = record("207")
    for start in range(0, 600 * 360, 7 * 360):  # the first ten minutes hold flutter and sinus rhythm
        w = x[start:start + 4 * 360]
        assert vf_window(w, 360, start=start) == _vf_window_numpy(w, 360, start=start)


def _screen_agrees(x: FloatArray, fs: float, start: int) -> bool:
    """Whether the screened window decides as the full one; True if it was screened."""
    full, quick = vf_window(x, fs, start=start), vf_window(x, fs, start=start, screen=True)
    assert quick.fibrillatory == full.fibrillatory and quick.assessed == full.assessed
    if not quick.screened:
        assert quick == full
        return False
    s = VfSettings()
    assert quick.amplitude_mv == full.amplitude_mv and quick.dominant_hz == quick.concentration == 0.0
    if full.concentration > 0:  # (a window with no power in the band reports no occupancy)
        assert (quick.occupancy, quick.part_occupancy) == (full.occupancy, full.part_occupancy)
    assert (quick.occupancy < s.min_occupancy or quick.part_occupancy < s.min_part_occupancy
            or quick.amplitude_mv < s.min_amplitude_mv)
    return True


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "python"])
def test_screened_windows_decide_as_the_full_assessment(jit: bool) -> None:
    screened = [_screen_agrees(x, fs, i) for i, (x, fs) in enumerate(_vf_windows_to_check())]
    assert 0 < sum(screened) < len(screened)  # both paths taken


def test_screened_windows_on_mitdb_207_decide_as_the_full_assessment() -> None:
    x, _ = record("207")
    screened = [_screen_agrees(x[start:start + 4 * 360], 360, start) for start in range(0, 600 * 360, 7 * 360)]
    assert 0 < sum(screened) < len(screened)


def test_sinus_rhythm_reports_vf_absent_without_a_spectrum() -> None:
    fs = 250
    x, beats = synthetic_ecg(fs, 12, seed=2)
    windows = VfDetector(fs).feed(VfState(), x)[1]
    assert windows and all(w.screened and not w.fibrillatory for w in windows)
    _, reports = run_chain(fs, 12, [int(b) for b in beats], signal=x)
    vf = [r["ventricular_fibrillation"] for r in reports if r["ventricular_fibrillation"].present is not None]
    assert vf and all(o.present is False and o.value is None and o.detail == "" for o in vf)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "python"])
def test_activity_kernel_gives_the_numpy_formulation(jit: bool) -> None:
    x, _ = synthetic_ecg(250, 12, seed=4)
    x[700:800] = np.nan
    meter = ActivityMeter(250, 500, jit=jit)
    st, got = ActivityState(), dict[int, float]()
    for i in range(0, x.size, 113):
        st, found = meter.feed(st, x[i:i + 113])
        got |= found
    change = np.abs(x[meter.lag:] - x[:-meter.lag])
    change = np.where(np.isnan(change), 0.0, change)  # change[j] belongs to sample j + lag
    want = {k: float(change[max(k - meter.lag, 0):k + 500 - meter.lag].max()) for k in range(0, x.size - 499, 500)}
    assert got == want


def test_short_oscillation_is_not_vf_but_five_seconds_is() -> None:
    fs = 250
    for seconds, expected in ((2.0, False), (3.0, False), (5.0, True)):
        x, _ = synthetic_ecg(fs, 30, seed=4)
        x[10 * fs:10 * fs + round(seconds * fs)] = sine(fs, seconds, 4.5)
        _, windows = VfDetector(fs).feed(VfState(), x)
        assert any(w.fibrillatory for w in windows) is expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bursts_of_electrode_motion_on_a_fast_sinus_rhythm_are_not_fibrillatory(seed: int) -> None:
    # A burst of a second or so can own a 4-s window's spectrum; each half of a VF window must
    # hold the oscillation (half concentration). Without that rule these made 2-4 such windows each.
    fs = 250
    noise = Noise(motion_per_min=6, motion_mv=1.0, gaussian_mv=0.1, baseline_wander_mv=0.3)
    synth = SyntheticEcg(EcgConfig(sampling_rate=fs, hr_bpm=110, noise=noise), seed=seed, patient=f"p{seed}")
    x = np.concatenate([synth.next_chunk(fs)[0] for _ in range(300)])
    _, windows = VfDetector(fs).feed(VfState(), x)
    passed = [w for w in windows if w.half_concentration > 0]  # every other test passed
    assert passed and not any(w.fibrillatory for w in windows)
    assert all(w.half_concentration < VfSettings().min_half_concentration for w in passed)


def test_vf_is_reported_and_its_noise_windows_are_not_ecg_noise() -> None:
    fs = 250
    x, beats = synthetic_ecg(fs, 30, seed=6)
    x[10 * fs:20 * fs] = sine(fs, 10, 4.5)

    def label(start: int) -> str:  # what processors/sqi.py calls a sine-like ECG
        return "noise" if 10 * fs <= start < 20 * fs else "ok"

    kept = [int(b) for b in beats if not 10 * fs <= b < 20 * fs]
    _, reports = run_chain(fs, 30, kept, signal=x, label=label)
    assert seen(reports, "ventricular_fibrillation")
    # Only the first noise window, before a whole VF window has built up, counts as noise:
    # too short for the noise alarm's delay.
    noise = [r["ecg_noise"] for r in reports if r["ecg_noise"].present]
    assert len(noise) == 1 and noise[0].held_s == 2.0 < CONDITIONS["ecg_noise"].delay_s
    hit = next(r for r in reports if r["ventricular_fibrillation"].present)["ventricular_fibrillation"]
    assert hit.value is not None and hit.value >= 0.5 and "4.5 Hz" in hit.detail


# -- technical conditions -------------------------------------------------------------------------------


def test_technical_conditions_report_how_long_they_have_lasted() -> None:
    fs = 250

    def label(start: int) -> str:
        return "flat" if 4 * fs <= start < 12 * fs else "ok"

    _, reports = run_chain(fs, 16, regular(fs, 0.5, 250, 4), label=label)
    flat = [r["ecg_flat_line"] for r in reports]
    assert [o.present for o in flat[4:14]] == [None, True, None, True, None, True, None, True, None, False]
    assert [o.held_s for o in flat if o.present] == [2.0, 4.0, 6.0, 8.0]
    assert flat[0].present is None  # no window complete yet: nothing to say


def test_activity_meter_is_chunk_independent() -> None:
    x, _ = synthetic_ecg(250, 12, seed=8)
    meter = ActivityMeter(250, 500)
    _, whole = meter.feed(ActivityState(), x)
    assert sorted(whole) == list(range(0, 3000, 500)) and min(whole.values()) > 0.5
    for chunk in (1, 13, 500, 777):
        st, parts = ActivityState(), dict[int, float]()
        for i in range(0, x.size, chunk):
            st, out = meter.feed(st, x[i:i + chunk])
            parts |= out
        assert parts == whole


# -- state --------------------------------------------------------------------------------------------------


def test_state_round_trips_through_json_and_continues_identically() -> None:
    fs = 250
    x, beats = synthetic_ecg(fs, 30, seed=9)
    x[5000:5050] = np.nan
    classes = {int(b): "V" if i % 7 == 0 else "N" for i, b in enumerate(beats)}
    det = ArrhythmiaDetector(fs)
    half = 15 * fs
    first = [int(b) for b in beats if b < 14 * fs]
    st, _ = run_chain(fs, 15, first, signal=x[:half], classes=classes)
    restored = ArrhythmiaState.from_dict(json.loads(json.dumps(st.to_dict())))
    assert restored == st
    rest = [int(b) for b in beats if 14 * fs <= b < 28 * fs]
    a = det.feed(st, x[half:], [B(b) for b in rest], [W(k * 500, "ok") for k in range(7, 15)], classes)
    b = det.feed(restored, x[half:], [B(b) for b in rest], [W(k * 500, "ok") for k in range(7, 15)], classes)
    assert a == b
    with pytest.raises(ValueError, match="malformed"):
        ArrhythmiaState.from_dict({"vf": {"next_start": 0, "buffer": ""}})


# -- the real ECG chain ------------------------------------------------------------------------------------


def real_chain(x: FloatArray, fs: int, chunk: int) -> list[ArrhythmiaReport]:
    analyzer, det, st, out = EcgAnalyzer(fs), ArrhythmiaDetector(fs), ArrhythmiaState(), []
    for i in range(0, x.size, chunk):
        update = analyzer.feed(x[i:i + chunk])
        st, report = det.feed(st, x[i:i + chunk], update.beats, update.windows)
        out.append(report)
    return out


def conditions(reports: list[ArrhythmiaReport]) -> set[str]:
    return {o.condition for r in reports for o in r.observations if o.present}


def test_real_chain_clean_ecg_raises_nothing() -> None:
    x, _ = synthetic_ecg(250, 60, seed=10, hr=75)
    assert conditions(real_chain(x, 250, 125)) == set()


@pytest.mark.parametrize(("pause", "expected"), [
    ("wander", {"asystole"}),                     # isoelectric line with baseline wander: sqi says noise
    ("zeros", {"asystole", "ecg_flat_line"}),     # an exactly flat line
    ("nan", {"ecg_leads_off"}),                   # leads off: no asystole
    ("muscle", {"ecg_noise"}),                    # beats hidden in noise: no asystole
])
def test_real_chain_pause(pause: str, expected: set[str]) -> None:
    fs = 250
    x, _ = synthetic_ecg(fs, 40, seed=11, noise=0.01)
    span = slice(20 * fs, 28 * fs)
    t = np.arange(20 * fs, 28 * fs) / fs
    rng = np.random.default_rng(12)
    x[span] = {
        "wander": 0.1 * np.sin(2 * np.pi * 0.3 * t) + 0.01 * rng.standard_normal(t.size),
        "zeros": np.zeros(t.size),
        "nan": np.full(t.size, np.nan),
        "muscle": x[span] + 0.6 * rng.standard_normal(t.size),
    }[pause]
    assert conditions(real_chain(x, fs, 100)) == expected


def test_real_chain_same_episodes_whatever_the_chunking() -> None:
    fs = 250
    x, _ = synthetic_ecg(fs, 40, seed=13, noise=0.01)
    x[20 * fs:28 * fs] = 0.0
    for chunk in (50, 250, 1000):
        reports = real_chain(x, fs, chunk)
        sample = chunk * next(i for i, r in enumerate(reports)
                              if any(o.present for o in r.observations if o.condition == "asystole"))
        assert 24 * fs <= sample <= 26 * fs + chunk  # 4 s into the pause, plus the chain's window latency


def test_real_chain_into_the_engine_one_latched_asystole_alarm() -> None:
    fs = 250
    x, _ = synthetic_ecg(fs, 40, seed=14, noise=0.01)
    x[20 * fs:28 * fs] = 0.1 * np.sin(2 * np.pi * 0.3 * np.arange(8 * fs) / fs)
    engine = AlarmEngine()
    alarm_state, decisions = engine.new_state("p7", "icu"), []
    for i, report in enumerate(real_chain(x, fs, 125)):
        alarm_state, out = engine.step(alarm_state, AlarmInputs(observations=report.observations), (i + 1) * 0.5)
        decisions += out
    assert [(type(d).__name__, getattr(d, "condition", "")) for d in decisions] == [("AlarmRaised", "asystole")]
    assert alarm_state.alarms["asystole"].latching and not alarm_state.alarms["asystole"].condition_present


# -- MIT-BIH records ------------------------------------------------------------------------------------------


def record(name: str) -> tuple[FloatArray, object]:
    import wfdb

    path = DATA / "mitdb" / name
    if not path.with_suffix(".hea").exists():
        pytest.fail(f"MIT-BIH record {path} not found: set VIGIL_DATA_DIR to the folder holding mitdb/")
    return wfdb.rdrecord(str(path), channels=[0]).p_signal[:, 0], wfdb.rdann(str(path), "atr")


def rhythm_episodes(ann: object, rhythm: str, n: int) -> list[tuple[int, int]]:
    marks = [(int(s), str(a).strip("\x00")) for s, sym, a in
             zip(ann.sample, ann.symbol, ann.aux_note, strict=True) if sym == "+"]  # type: ignore[attr-defined]
    return [(s, marks[i + 1][0] if i + 1 < len(marks) else n) for i, (s, a) in enumerate(marks) if a == rhythm]


def test_mitdb_207_every_flutter_episode_found_and_nothing_outside() -> None:
    x, ann = record("207")
    episodes = rhythm_episodes(ann, "(VFL", x.size)
    assert len(episodes) == 6
    _, windows = VfDetector(360).feed(VfState(), x)
    for a, b in episodes:  # windows with at least 3 of their 4 s in the episode
        inside = [w for w in windows if min(w.end, b) - max(w.start, a) >= 3 * 360]
        assert sum(w.fibrillatory for w in inside) >= 0.7 * len(inside) > 0
    outside = [w for w in windows if not any(w.end > a and w.start < b for a, b in episodes)]
    assert len(outside) > 1500 and not any(w.fibrillatory for w in outside)


@pytest.mark.parametrize("name", ["100", "119", "230"])
def test_mitdb_records_without_ventricular_arrhythmia_have_no_vf_window(name: str) -> None:
    x, _ = record(name)
    _, windows = VfDetector(360).feed(VfState(), x)
    assert len(windows) > 1700 and not any(w.fibrillatory for w in windows)


AAMI = {**dict.fromkeys("NLRBej", "N"), **dict.fromkeys("AaJS", "S"), "V": "V", "E": "V", "F": "F",
        **dict.fromkeys("/fQ?", "Q")}


@pytest.mark.parametrize("name", ["203", "205", "210"])
def test_mitdb_ventricular_tachycardia_from_reference_beat_classes(name: str) -> None:
    """The reference annotations stand in for the beat classifier and the QRS detector:
    every run of 5+ ventricular beats above 100 bpm is found, and nothing else."""
    x, ann = record(name)
    beats = [(int(s), AAMI[sym]) for s, sym in zip(ann.sample, ann.symbol, strict=True)  # type: ignore[attr-defined]
             if sym in AAMI]
    expected = []  # seconds at which a 5-beat V window above 100 bpm ends
    for i in range(4, len(beats)):
        tail = beats[i - 4:i + 1]
        if all(c == "V" for _, c in tail) and 60 * 4 * 360 / (tail[-1][0] - tail[0][0]) > 100:
            expected.append(tail[-1][0] / 360)
    assert expected
    samples = [s for s, _ in beats]
    _, reports = run_chain(360, x.size / 360, samples, classes=dict(beats), signal=x)
    # Report i covers the chunk ending at i + 1 s; a beat comes out with its 2-s quality window.
    found = [i + 1 for i, r in enumerate(reports) if r["ventricular_tachycardia"].present]
    assert all(any(0 < f - e <= 3 for f in found) for e in expected)
    assert all(any(0 < f - e <= 3 for e in expected) for f in found)
