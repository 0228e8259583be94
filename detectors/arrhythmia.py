"""Lethal-arrhythmia and ECG technical conditions, from the streaming ECG chain.

Definitions of the PhysioNet/CinC Challenge 2015 (Clifford GD et al., Reducing false
arrhythmia alarms in the ICU, Computing in Cardiology 42:273-276, 2015):

- asystole: no QRS for at least 4 s;
- extreme bradycardia: heart rate below 40 bpm for 5 consecutive beats;
- extreme tachycardia: heart rate above 140 bpm for 17 consecutive beats;
- ventricular tachycardia: 5 or more consecutive ventricular beats with heart rate above 100 bpm;
- ventricular flutter/fibrillation: fibrillatory, flutter or oscillatory waveform for at least 4 s.

"Heart rate over N consecutive beats" is read as the mean rate of the run,
``60 * (N - 1) / (t_N - t_1)`` (N beats span N - 1 intervals), compared strictly
with the bound. Beats are consecutive when they are usable (in an ``ok`` quality
window), follow each other with no unusable beat between, no untrusted window
(noise, saturated, leads off; for VT, see below, noise is not one) lies between
them, and they are less than the asystole time apart (a pause that long is an
asystole, not part of a slow run). VT needs a class label per beat
from a separate classifier (``labels``, keyed by beat sample: "N", "S", "V", "F",
"Q"); only "V" counts, and without labels VT is reported as not evaluated. A label
may come with a later chunk than its beat (a classifier that needs the next RR
interval labels a beat once the next one is found): the beat waits in the run, and
the VT rule is checked at it when its label comes. VF comes from the waveform
(`detectors.vf`).

VT keeps its own run, which also takes the beats of ``noise`` windows: the quality
index calls most windows of a wide-complex VT noise (a sine-like ECG has a low
kurtosis, as in flutter), so the rule would otherwise be switched off exactly when
VT is present. Such a beat counts only when the classifier calls it "V", and a run
holding one counts only when it is regular: its longest RR at most
``vt_noise_rr_ratio`` times its shortest (detections in artefact are irregular).
Measured through the worker's `streams.ecg_pipeline.process_chunk` with the shipped
classifier, 1-s chunks, before -> after this rule (VT alarms raised within runs of 5
or more reference V beats faster than 100 bpm, found / runs; false: VT alarms
elsewhere): MIT-BIH, 37 records, 1 -> 5 of 11, false 0 -> 0 (one more alarm fell in
record 207's ventricular flutter, itself a lethal alarm); 24 of them with nstdb
muscle artefact at 0 and 6 dB or baseline wander at 0 dB mixed in, 2 -> 12 of 33,
false 0 -> 0; nstdb 118e_6 / e00 / e12 / e24 (electrode motion) false 0 -> 0; the
2015 challenge's VT alarm records, lead II, a VT alarm from 16 s before the
monitor's to 10 s after it (the short records end at it): true alarms 1 -> 5 of 31,
false alarms 0 -> 0 of 88. (A high-priority alarm latches, so a record's later runs
raise no new alarm: "found" is a floor.) The bound 2.0 was picked on these same
records, replaying the chain's beats offline (1.5 and none were the others tried: on
the noise mixes 14 and 17 of 33 runs found against 16, with one false VT in 118e12
without a bound).

Asystole is measured over *observed* signal only: the gap since the last QRS, or
since the last untrusted window, whichever is later. ``ok`` and ``flat`` windows are
observed; so is a ``noise`` window with no QRS-like activity in it
(`detectors.ecg_activity`), because the quiet baseline of a real asystole is what
the quality index calls noise. The end of the observed signal is taken
``beat_latency_s`` before the end of the last quality window, because the QRS
detector confirms a beat up to a few hundred ms after it happened.

Technical conditions come from the quality windows: ``ecg_leads_off``
(``leads_off``), ``ecg_flat_line`` (``flat``) and ``ecg_noise`` (``noise`` that is not
quiet, and ``saturated``). A noise window covered by a fibrillatory VF window is VF,
not noise, and raises no noise alarm. A ``suspect`` window (processors/ecg.py: clean
signal holding an implausibly short RR) is observed signal whose beats do not count;
a label this module does not know is treated as untrusted, without a technical
alarm.

Usage, per patient and lead, for every chunk::

    update = analyzer.feed(chunk)                      # processors.ecg.EcgAnalyzer
    state, report = detector.feed(state, chunk, update.beats, update.windows, labels)
    engine.step(alarm_state, AlarmInputs(observations=report.observations), now)

The same chunk must go to both. Each observation says whether its condition held
at any time in the chunk's analysis (see `detectors.alarm_conditions.Observation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detectors.alarm_conditions import Observation
from detectors.ecg_activity import ActivityMeter, ActivityState
from detectors.vf import VfDetector, VfSettings, VfState, VfWindow

__all__ = ["BeatLike", "WindowLike", "ArrhythmiaSettings", "ArrhythmiaState", "ArrhythmiaReport",
           "ArrhythmiaDetector"]


class BeatLike(Protocol):
    """A detected R peak (`processors.ecg.Beat` is one)."""

    @property
    def sample(self) -> int: ...

    @property
    def usable(self) -> bool: ...

    @property
    def quality(self) -> str:
        """The label of its quality window (``ok`` when usable)."""
        ...


class WindowLike(Protocol):
    """A labelled quality window (`processors.sqi.QualityWindow` is one)."""

    @property
    def start(self) -> int: ...

    @property
    def label(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ArrhythmiaSettings:
    asystole_s: float = 4.0
    brady_bpm: float = 40.0
    brady_beats: int = 5
    tachy_bpm: float = 140.0
    tachy_beats: int = 17
    vt_bpm: float = 100.0
    vt_beats: int = 5
    vt_noise_rr_ratio: float = 2.0
    """A VT run holding a beat from a noise window counts only if its longest RR is at
    most this times its shortest (see the module docstring)."""
    quality_window_s: float = 2.0
    """Must equal the ECG chain's quality window (processors.ecg.EcgAnalyzer ``window_s``)."""
    beat_latency_s: float = 0.0
    """How long after a quality window's end its last beat may still be reported. 0 for
    processors.ecg, which releases a window only once every beat in it is found."""
    quiet_mv: float = 0.15
    vf: VfSettings = field(default_factory=VfSettings)


@dataclass(frozen=True, slots=True)
class ArrhythmiaState:
    vf: VfState = field(default_factory=VfState)
    activity: ActivityState = field(default_factory=ActivityState)
    vf_recent: tuple[tuple[int, bool], ...] = ()
    """(end, fibrillatory) of the latest assessed VF windows: quality windows arrive later than their samples."""
    activity_recent: tuple[tuple[int, float], ...] = ()
    """(start, largest 50-ms change) of the latest activity windows, for the same reason."""
    run: tuple[int, ...] = ()
    """The latest consecutive usable beats, at most as many as the rate rules need."""
    last_qrs: int | None = None
    last_break: int | None = None
    """End of the latest untrusted window; the start of the first window until one is seen; None before any."""
    analysed_end: int | None = None
    """End of the latest quality window."""
    since: tuple[tuple[str, int], ...] = ()
    """Technical condition -> start of its current run of windows."""
    vt_run: tuple[tuple[int, str, bool], ...] = ()
    """The VT rule's run: (sample, class label or "", from an ``ok`` window), usable beats
    and beats of noise windows, at most as many as ``run``."""
    vt_break: int | None = None
    """End of the latest window that breaks the VT run (untrusted, and not noise)."""

    def to_dict(self) -> dict[str, Any]:
        return {"vf": self.vf.to_dict(), "activity": self.activity.to_dict(),
                "vf_recent": [[e, f] for e, f in self.vf_recent],
                "activity_recent": [[s, v] for s, v in self.activity_recent], "run": list(self.run),
                "last_qrs": self.last_qrs, "last_break": self.last_break, "analysed_end": self.analysed_end,
                "since": dict(self.since), "vt_run": [list(b) for b in self.vt_run], "vt_break": self.vt_break}

    @classmethod
    def from_dict(cls, doc: Any) -> ArrhythmiaState:
        try:
            run = doc["run"]
            if "vt_run" in doc:
                vt_run = tuple((int(s), str(label), bool(clean)) for s, label, clean in doc["vt_run"])
                vt_break = _opt_int(doc["vt_break"])
            else:  # before VT had its own run, the run held (sample, label) of usable beats
                run = [s for s, _ in run]
                vt_run = tuple((int(s), str(label), True) for s, label in doc["run"])
                vt_break = _opt_int(doc["last_break"])
            return cls(VfState.from_dict(doc["vf"]), ActivityState.from_dict(doc["activity"]),
                       tuple((int(e), bool(f)) for e, f in doc["vf_recent"]),
                       tuple((int(s), float(v)) for s, v in doc["activity_recent"]),
                       tuple(int(s) for s in run), _opt_int(doc["last_qrs"]),
                       _opt_int(doc["last_break"]), _opt_int(doc["analysed_end"]),
                       tuple((str(k), int(v)) for k, v in doc["since"].items()), vt_run, vt_break)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"arrhythmia state is malformed: {e!r}") from None


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


@dataclass(frozen=True, slots=True)
class ArrhythmiaReport:
    observations: tuple[Observation, ...]
    vf_windows: tuple[VfWindow, ...]
    """The VF windows assessed in this chunk, for display and benchmarks."""


_TECH = {"leads_off": "ecg_leads_off", "flat": "ecg_flat_line", "noise": "ecg_noise"}
# Observed signal: asystole is measured over it. ``suspect`` (processors/ecg.py) is clean
# signal holding an implausibly short RR: its beats are unusable but it shows no pause.
_TRUSTED = {"ok", "suspect", "flat", "quiet"}
# Windows whose beats the VT rule can still take (see the module docstring).
_VT_TRUSTED = _TRUSTED | {"noise", "vf"}
_HISTORY = 32  # windows of VF and activity results kept: quality windows arrive about one RR late


class _Rule:
    """Per-chunk summary of one beat rule: seen at any beat, evaluated at any beat, the value to report."""

    __slots__ = ("seen", "evaluated", "value")

    def __init__(self) -> None:
        self.seen = False
        self.evaluated = False
        self.value: float | None = None

    def note(self, present: bool, value: float) -> None:
        if present or not self.seen:
            self.value = value
        self.seen |= present
        self.evaluated = True

    def present(self) -> bool | None:
        return True if self.seen else (False if self.evaluated else None)


class _Scan:
    """The fields of `ArrhythmiaState` that windows and beats move, while one chunk is
    scanned (mutable: one state is built at the end instead of one per item)."""

    __slots__ = ("run", "vt_run", "vt_break", "last_qrs", "last_break", "analysed_end", "activity", "vf_recent")

    def __init__(self, st: ArrhythmiaState, vf_recent: tuple[tuple[int, bool], ...],
                 activity_recent: tuple[tuple[int, float], ...]) -> None:
        self.run = st.run
        self.vt_run = st.vt_run
        self.vt_break = st.vt_break
        self.last_qrs = st.last_qrs
        self.last_break = st.last_break
        self.analysed_end = st.analysed_end
        self.vf_recent = vf_recent
        self.activity = dict(activity_recent)  # only windows read it


_BEAT_RULES = ("extreme_bradycardia", "extreme_tachycardia", "ventricular_tachycardia")


class ArrhythmiaDetector:
    """``feed(state, samples, beats, windows, labels=None) -> (state, report)``; pure."""

    def __init__(self, sampling_rate: float, settings: ArrhythmiaSettings | None = None) -> None:
        self.settings = s = settings or ArrhythmiaSettings()
        if min(s.brady_beats, s.tachy_beats, s.vt_beats) < 2:
            raise ValueError("a beat rule needs at least 2 beats")
        self.fs = float(sampling_rate)
        self._vf = VfDetector(sampling_rate, s.vf)
        self.window_size = round(s.quality_window_s * sampling_rate)
        self._activity = ActivityMeter(sampling_rate, self.window_size)
        self._keep = max(s.brady_beats, s.tachy_beats, s.vt_beats)
        self._limits = {"extreme_bradycardia": (s.brady_bpm, s.brady_beats),
                        "extreme_tachycardia": (s.tachy_bpm, s.tachy_beats),
                        "ventricular_tachycardia": (s.vt_bpm, s.vt_beats)}
        self._details = {name: f"over {n} {'ventricular ' if name == 'ventricular_tachycardia' else ''}beats"
                         for name, (_, n) in self._limits.items()}
        # Observations are immutable: the ones that carry no measurement (most of them,
        # most chunks) are made once, not every chunk for every patient.
        self._no_news = {name: Observation(name, None, None, bpm, "bpm", self._details[name])
                         for name, (bpm, _) in self._limits.items()}
        self._tech_still = {(name, present): Observation(name, present) for name in _TECH.values()
                            for present in (None, False, True)}
        self._vf_no_news = Observation("ventricular_fibrillation", None)
        self._vf_absent = Observation("ventricular_fibrillation", False)

    def feed(self, state: ArrhythmiaState, samples: npt.ArrayLike, beats: Sequence[BeatLike],
             windows: Sequence[WindowLike], labels: Mapping[int, str] | None = None
             ) -> tuple[ArrhythmiaState, ArrhythmiaReport]:
        """``samples``: the chunk (mV); ``beats`` and ``windows``: what the ECG chain
        released for that same chunk; ``labels``: beat classes by sample, for beats of
        this chunk or of earlier ones still unlabelled, if a classifier runs (None: it
        does not, and VT is not evaluated)."""
        s = self.settings
        x = np.asarray(samples, dtype=np.float64).ravel()
        vf_state, vf_windows = self._vf.feed(state.vf, x)
        activity_state, activity = self._activity.feed(state.activity, x)
        assessed = tuple((w.end, w.fibrillatory) for w in vf_windows if w.assessed) if vf_windows else ()
        vf_recent = (state.vf_recent + assessed)[-_HISTORY:]
        activity_recent = (state.activity_recent + tuple(sorted(activity.items())) if activity
                           else state.activity_recent)[-_HISTORY:]
        asystole = _Rule()
        scan = _Scan(state, vf_recent, activity_recent if windows else ())
        # Labels of beats already in the run (a beat is classified once the next is found).
        late = self._label_run(scan, labels) if labels and scan.vt_run else ()
        # Rules, technical conditions and their timers only for chunks that bring beats,
        # labels or windows (most bring one or neither): fewer objects for every patient every second.
        rules = {name: _Rule() for name in _BEAT_RULES} if beats or late else None
        tech = {name: _Rule() for name in _TECH.values()} if windows else None
        held = dict.fromkeys(_TECH.values(), 0.0)
        since = dict(state.since)
        for end in late:
            self._vt(scan.vt_run, end, rules or {})

        # Windows and beats in time order; a window goes before the beats inside it.
        if tech is not None:
            events: list[tuple[int, int, Any]] = [(w.start, 0, w) for w in windows] + [(b.sample, 1, b) for b in beats]
            events.sort(key=lambda e: (e[0], e[1]))
            for _, kind, item in events:
                if kind == 0:
                    self._window(scan, item, tech, held, since)
                else:
                    self._beat(scan, item, labels, rules or {}, asystole)
        elif rules is not None:
            for b in sorted(beats, key=lambda b: b.sample):
                self._beat(scan, b, labels, rules, asystole)
        st = ArrhythmiaState(vf_state, activity_state, vf_recent, activity_recent, scan.run, scan.last_qrs,
                             scan.last_break, scan.analysed_end, tuple(sorted(since.items())), scan.vt_run,
                             scan.vt_break)

        # Asystole still going on at the end of what has been analysed.
        if st.analysed_end is not None and st.last_break is not None:
            start = max(st.last_break, st.last_qrs if st.last_qrs is not None else st.last_break)
            gap = (st.analysed_end - round(s.beat_latency_s * self.fs) - start) / self.fs
            if st.last_break < st.analysed_end or asystole.evaluated:
                asystole.note(gap >= s.asystole_s, round(max(gap, 0.0), 2))

        obs = [Observation("asystole", asystole.present(), asystole.value, s.asystole_s, "s", "without QRS",
                           max((asystole.value or 0.0) - s.asystole_s, 0.0) if asystole.seen else 0.0)]
        for name in _BEAT_RULES:
            rule = rules[name] if rules is not None else None
            present = None if rule is None or (name == "ventricular_tachycardia" and labels is None) else rule.present()
            if present is None and (rule is None or rule.value is None):
                obs.append(self._no_news[name])
            else:
                obs.append(Observation(name, present, rule.value if rule is not None else None, self._limits[name][0],
                                       "bpm", self._details[name]))
        obs.append(self._vf_observation(vf_windows))
        for name in _TECH.values():
            present = tech[name].present() if tech is not None else None
            h = held[name]
            obs.append(self._tech_still[name, present] if h == 0.0 else Observation(name, present, held_s=h))
        return st, ArrhythmiaReport(tuple(obs), tuple(vf_windows))

    def vt_possible(self, state: ArrhythmiaState, beats: Sequence[BeatLike]) -> bool:
        """Whether the VT rule could hold at a beat of ``state``'s VT run or of ``beats``:
        some 5 consecutive ones among them run faster than its rate (breaks in the run
        aside, so it errs towards yes). When not, no beat class is needed yet."""
        bpm, n = self._limits["ventricular_tachycardia"]
        samples = [b[0] for b in state.vt_run] + sorted(int(b.sample) for b in beats
                                                        if b.usable or b.quality == "noise")
        span = 60.0 * (n - 1) * self.fs / bpm  # a run faster than bpm spans fewer samples
        return any(samples[i + n - 1] - samples[i] < span for i in range(len(samples) - n + 1))

    def _window(self, st: _Scan, w: WindowLike, tech: dict[str, _Rule], held: dict[str, float],
                since: dict[str, int]) -> None:
        end = w.start + self.window_size
        cls = w.label
        if cls == "noise" and st.activity.get(w.start, np.inf) < self.settings.quiet_mv:
            cls = "quiet"
        if cls in ("noise", "saturated"):
            # The latest VF window ending by this window's end covers it: VF, not noise.
            latest = [fib for e, fib in st.vf_recent if e <= end]
            cls = "vf" if latest and latest[-1] else "noise"
        for label, name in _TECH.items():
            if cls == label:
                since.setdefault(name, w.start)
                held[name] = max(held[name], (end - since[name]) / self.fs)
            else:
                since.pop(name, None)
            tech[name].note(cls == label, 0.0)
        if cls not in _VT_TRUSTED:
            st.vt_break, st.vt_run = end, ()
        if cls not in _TRUSTED:
            st.last_break, st.analysed_end, st.run = end, end, ()
            return
        if st.last_break is None:
            st.last_break = w.start
        st.analysed_end = end

    def _beat(self, st: _Scan, b: BeatLike, labels: Mapping[int, str] | None,
              rules: dict[str, _Rule], asystole: _Rule) -> None:
        s, sample = self.settings, int(b.sample)
        if st.last_break is not None and sample >= st.last_break:
            start = max(st.last_break, st.last_qrs if st.last_qrs is not None else st.last_break)
            gap = (sample - start) / self.fs
            if gap >= s.asystole_s:
                asystole.note(True, round(gap, 2))
        st.last_qrs = sample if st.last_qrs is None else max(st.last_qrs, sample)
        label = labels.get(sample, "") if labels is not None else ""
        self._vt_beat(st, b, sample, label, rules)
        if not b.usable or (st.last_break is not None and sample < st.last_break):
            # An unusable beat breaks the run; so does one from before an untrusted window (a late search-back).
            if not b.usable:
                st.run = ()
            return
        run = st.run if st.run and self._continues(st.run[-1], sample, st.last_break) else ()
        run = (*run[1 - self._keep:], sample)
        for name in ("extreme_bradycardia", "extreme_tachycardia"):
            bpm, n = self._limits[name]
            if len(run) < n:
                continue
            rate = 60.0 * (n - 1) * self.fs / max(run[-1] - run[-n], 1)
            rules[name].note(rate < bpm if name == "extreme_bradycardia" else rate > bpm, round(rate, 1))
        st.run = run

    def _continues(self, last: int, sample: int, brk: int | None) -> bool:
        """Whether a run whose latest beat is ``last`` goes on at ``sample``: not when a
        breaking window ended since ``last`` (``brk``), nor after a pause that is an
        asystole in its own right (counting it into a bradycardic run as well would
        alarm twice for one event)."""
        return (brk is None or last >= brk) and sample - last < self.settings.asystole_s * self.fs

    def _vt_beat(self, st: _Scan, b: BeatLike, sample: int, label: str, rules: dict[str, _Rule]) -> None:
        """The beat into the VT run, as `_beat` does for the rate run, but a noise window's
        beat joins it too (marked not clean), and only other untrusted windows break it."""
        clean = b.usable
        broken = not clean and b.quality != "noise"
        if broken or (st.vt_break is not None and sample < st.vt_break):
            if broken:
                st.vt_run = ()
            return
        run = st.vt_run if st.vt_run and self._continues(st.vt_run[-1][0], sample, st.vt_break) else ()
        run = (*run[1 - self._keep:], (sample, label, clean))
        if label:  # (an unlabelled beat's VT check waits for its label)
            self._vt(run, len(run), rules)
        st.vt_run = run

    def _vt(self, run: tuple[tuple[int, str, bool], ...], end: int, rules: dict[str, _Rule]) -> None:
        """The VT rule at the beat ``run[end - 1]``, over the beats up to it."""
        bpm, n = self._limits["ventricular_tachycardia"]
        if end < n:
            return
        beats = run[end - n:end]
        rate = 60.0 * (n - 1) * self.fs / max(beats[-1][0] - beats[0][0], 1)
        present = rate > bpm and all(label == "V" for _, label, _ in beats)
        if present and not all(clean for _, _, clean in beats):
            rr = [beats[i + 1][0] - beats[i][0] for i in range(n - 1)]
            present = max(rr) <= self.settings.vt_noise_rr_ratio * max(min(rr), 1)
        rules["ventricular_tachycardia"].note(present, round(rate, 1))

    @staticmethod
    def _label_run(scan: _Scan, labels: Mapping[int, str]) -> list[int]:
        """Give the beats of the VT run that were still unlabelled the labels that came
        for them; the run lengths (up to each newly labelled beat) at which to check VT."""
        late = [i + 1 for i, (sample, label, _) in enumerate(scan.vt_run) if not label and sample in labels]
        if late:
            run = list(scan.vt_run)
            for end in late:
                sample, _, clean = run[end - 1]
                run[end - 1] = (sample, labels[sample], clean)
            scan.vt_run = tuple(run)
        return late

    def _vf_observation(self, windows: list[VfWindow]) -> Observation:
        s = self.settings.vf
        assessed = [w for w in windows if w.assessed]
        if not assessed:
            return self._vf_no_news
        hits = [w for w in assessed if w.fibrillatory]
        w = hits[-1] if hits else assessed[-1]
        if w.screened:  # ruled out in the time domain: no spectrum to quote
            return self._vf_absent
        return Observation("ventricular_fibrillation", bool(hits), round(w.concentration, 2), s.min_concentration,
                           "", f"of ECG power at {w.dominant_hz:g} Hz")
