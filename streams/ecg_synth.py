"""Synthetic ECG from McSharry's dynamical model, streamed per patient, deterministic for a seed.

The model (McSharry et al. 2003, eq. 3) moves a point round the unit limit cycle of
the (x, y) plane with angular velocity ω = 2π / RR, and pushes the ECG, z, with one
Gaussian term per wave i ∈ {P, Q, R, S, T} placed at angle θ_i on the cycle::

    ẋ = αx − ωy,   ẏ = αy + ωx,   α = 1 − sqrt(x² + y²)
    ż = −Σ_i a_i Δθ_i exp(−Δθ_i² / 2b_i²) − (z − z0(t)),   Δθ_i = (θ − θ_i) mod 2π
    z0(t) = A sin(2π f_resp t)                               (respiratory baseline wander)

On the limit cycle α = 0 and (x, y) = (cos θ, sin θ) with θ̇ = ω, so the first two
equations are solved exactly by advancing the phase; only z is integrated, with
classical fourth-order Runge-Kutta at a fixed internal rate of at least 500 Hz (ECGSYN
integrates at 512 Hz). The forcing does not depend on z, so each step costs two
forcing evaluations (mid-point and end; the start is the previous end).

Where a stream needs something the paper's batch generator does not, we depart from
ECGSYN, each time for a reason:

- ω is constant between consecutive R peaks (θ = 0): ω = 2π / (R_{k+1} − R_k). The R
  peaks then fall exactly on a beat schedule drawn ahead of the signal, which is the
  ground truth the tests and `next_chunk` report.
- Integrating one term of eq. 3 across its wave, ignoring the slow decay, gives a
  wave of height a_i b_i² / ω. ECGSYN rescales the finished record to a fixed mV
  range; a stream cannot look at the whole record, so each wave is given a height
  h_i in mV and a_i = h_i ω / b_i² for the interval it is drawn in. The default
  heights are Table 1's a_i b_i², normalised to R.
- Between R_k and R_{k+1} we draw the waves after the R of beat k (its R, S, T) and
  before the R of beat k+1 (its P, Q, R), each with that beat's own parameters, so a
  beat can be ectopic (no P wave, wide QRS) without changing its neighbours.
- Ventricular beats (PVCs, VT) keep their waves fixed in seconds, not radians: a wide
  complex does not stretch with the compensatory pause after it.
- Sinus widths b_i are scaled by sqrt(hr/60), the angles of Q and S by sqrt(hr/60) and
  those of P and T by (hr/60)^¼, as ECGSYN does, so that intervals shorten less than
  RR as the mean rate rises (QT roughly per Bazett).
- Heart-rate variability: McSharry's RR spectrum, two Gaussians at the Mayer (0.1 Hz)
  and respiratory (RSA) frequencies, 0.01 Hz wide, LF/HF 0.5, is realised as a sum of
  32 cosines whose frequencies are drawn from that spectrum and whose phases are
  random (spectral representation with random frequencies, Shinozuka and Deodatis
  1991). ECGSYN's inverse FFT needs the record length in advance; a sum of cosines
  is defined for all t, and its variance is exactly the configured one.

Because z relaxes towards z0 (mean 0), the signal has zero mean and its isoelectric
line sits about 0.1 mV below zero; wave heights are measured from that line. The
model runs for 5 s before sample 0, so the first chunk is already in steady state.

Rhythm events sit on the beat schedule: premature ventricular contractions (coupling
interval, full compensatory pause: the next sinus beat falls where it would have),
VT runs (rate, number of beats), atrial fibrillation (irregular RR, log-normal with a
given CV; conducted beats without P; a sawtooth fibrillatory baseline after Stridh
and Sörnmo 2001) and asystole (no electrical activity from a given time, for a given
time or for good; the sinus node keeps its clock, so beats resume on schedule). The
mean sinus rate may follow a trend (``hr_trend``, so that a scripted bradycardia
slows the ECG too); the HRV then keeps its coefficient of variation. Noise is
added after the model: white Gaussian noise, indexed by sample number through the
splitmix64 mixer (Steele, Lea and Flood 2014) so it does not depend on chunking;
electrode-motion bursts (Hann-windowed sums of random 0.5-8 Hz sinusoids, Poisson
in time); and leads-off episodes (NaN, or a rail value).

Everything random is drawn from generators seeded by (seed, patient) and consumed in
beat or burst order, never in chunk order, so ``next_chunk`` returns the same samples
however a record is cut (to the last bit; the numba kernel and its Python twin agree
to float rounding). Pure: no I/O, no clocks.

References
----------
McSharry PE, Clifford GD, Tarassenko L, Smith LA. A dynamical model for generating
synthetic electrocardiogram signals. IEEE Trans Biomed Eng 50(3):289-294 (2003).
Stridh M, Sörnmo L. Spatiotemporal QRST cancellation techniques for analysis of
atrial fibrillation. IEEE Trans Biomed Eng 48(1):105-111 (2001).
Shinozuka M, Deodatis G. Simulation of stochastic processes by spectral
representation. Appl Mech Rev 44(4):191-204 (1991).
Steele GL, Lea D, Flood CH. Fast splittable pseudorandom number generators.
OOPSLA 2014, 453-472.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

import numba
import numpy as np
import numpy.typing as npt
from numba.extending import register_jitable

__all__ = ["BeatKind", "EcgChunk", "EcgConfig", "Episode", "Noise", "Rhythm", "SyntheticEcg", "VtRun",
           "ecg_simulate"]

Samples = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_TWO_PI = 2.0 * math.pi
# The model runs this long before sample 0: z relaxes to its isoelectric level with a
# 1 s time constant (the −(z − z0) term), so sample 0 is already in steady state.
_WARMUP_S = 5.0


class BeatKind(IntEnum):
    """What drew a beat. NONE marks a slot in the schedule with no electrical activity
    (asystole); it is never reported as an R peak."""

    NONE = 0
    SINUS = 1
    AF = 2
    """Conducted during atrial fibrillation: normal QRS, no P wave."""
    PVC = 3
    VT = 4

    @property
    def symbol(self) -> str:
        """MIT-BIH beat label: ``N`` for supraventricular beats, ``V`` for ventricular."""
        return "V" if self in (BeatKind.PVC, BeatKind.VT) else "N"


@dataclass(frozen=True, slots=True)
class Episode:
    """A time span of a record, in seconds from its start; open-ended by default."""

    start_s: float
    duration_s: float = math.inf

    def __post_init__(self) -> None:
        if not (self.start_s >= 0 and self.duration_s > 0):
            raise ValueError(f"episode needs start_s >= 0 and duration_s > 0, got {self.start_s}, {self.duration_s}")

    @classmethod
    def parse(cls, text: str) -> Episode:
        """``"30"`` (from 30 s on) or ``"30:10"`` (30 s to 40 s), as a command line gives it."""
        start, sep, duration = text.partition(":")
        try:
            episode = cls(float(start), float(duration) if sep else math.inf)
        except ValueError:
            episode = None
        if episode is None or not math.isfinite(episode.start_s):
            raise ValueError(f"expected START[:DURATION] in seconds (START >= 0, DURATION > 0), got {text!r}")
        return episode

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def contains(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True, slots=True)
class VtRun:
    """``beats`` ventricular beats at ``rate_bpm``, starting at the first beat due after ``start_s``."""

    start_s: float
    beats: int = 10
    rate_bpm: float = 180.0

    def __post_init__(self) -> None:
        if self.start_s < 0 or self.beats < 1 or not 100 <= self.rate_bpm <= 300:
            raise ValueError(f"VT run needs start_s >= 0, beats >= 1, rate 100-300 bpm; got {self}")


@dataclass(frozen=True, slots=True)
class Rhythm:
    """Departures from sinus rhythm. PVCs occur only during sinus rhythm."""

    pvc_per_min: float = 0.0
    pvc_coupling: float = 0.6
    """Coupling interval as a fraction of the sinus RR (the pause after makes up the rest of 2 RR)."""
    vt_runs: tuple[VtRun, ...] = ()
    af: tuple[Episode, ...] = ()
    af_hr_bpm: float = 110.0
    """Mean ventricular rate during atrial fibrillation."""
    af_rr_cv: float = 0.2
    """Coefficient of variation of the RR intervals during AF (sinus HRV is about 0.02)."""
    af_wave_mv: float = 0.08
    """Amplitude of the fibrillatory (f) waves."""
    asystole_at_s: float | None = None
    asystole_s: float = math.inf
    """How long the asystole lasts (open-ended by default)."""

    def __post_init__(self) -> None:
        if not 0 <= self.pvc_per_min <= 30:
            raise ValueError(f"pvc_per_min must be 0-30, got {self.pvc_per_min}")
        if not 0.4 <= self.pvc_coupling <= 0.9:
            raise ValueError(f"pvc_coupling must be 0.4-0.9 of the RR, got {self.pvc_coupling}")
        if not 40 <= self.af_hr_bpm <= 200 or not 0 <= self.af_rr_cv <= 0.5:
            raise ValueError(f"AF needs af_hr_bpm 40-200 and af_rr_cv 0-0.5, got {self.af_hr_bpm}, {self.af_rr_cv}")
        if self.asystole_at_s is not None and self.asystole_at_s < 0:
            raise ValueError(f"asystole_at_s must be >= 0, got {self.asystole_at_s}")
        if not self.asystole_s > 0:
            raise ValueError(f"asystole_s must be > 0, got {self.asystole_s}")


@dataclass(frozen=True, slots=True)
class Noise:
    """What the electrodes add to the heart's signal. All off by default (a clean record)."""

    gaussian_mv: float = 0.0
    """Standard deviation of white measurement noise."""
    baseline_wander_mv: float = 0.0
    """Amplitude A of McSharry's respiratory baseline z0 = A sin(2π f_resp t)."""
    motion_per_min: float = 0.0
    """Mean rate of electrode-motion bursts."""
    motion_mv: float = 0.5
    motion_s: float = 1.0
    """Mean duration of a burst."""
    leads_off: tuple[Episode, ...] = ()
    leads_off_value_mv: float = math.nan
    """What the monitor sends with a lead off: NaN, or a rail value such as 5.0."""

    def __post_init__(self) -> None:
        if min(self.gaussian_mv, self.baseline_wander_mv, self.motion_per_min, self.motion_mv) < 0:
            raise ValueError(f"noise amplitudes and rates must be >= 0, got {self}")
        if not 0.1 <= self.motion_s <= 30:
            raise ValueError(f"motion_s must be 0.1-30 s, got {self.motion_s}")


@dataclass(frozen=True, slots=True)
class EcgConfig:
    """One patient's synthetic ECG (lead II-like, mV)."""

    sampling_rate: float = 250.0
    hr_bpm: float = 70.0
    hr_std_bpm: float = 1.0
    """Standard deviation of the sinus heart rate (McSharry's default is 1 bpm)."""
    lf_hf_ratio: float = 0.5
    respiration_hz: float = 0.25
    """Centre of the RSA (HF) peak, and the frequency of the baseline wander."""
    amplitude_mv: float = 1.0
    """Height of a sinus R wave."""
    internal_rate_hz: float = 500.0
    """The ODE step is 1 / (sampling_rate * ceil(internal_rate_hz / sampling_rate))."""
    rhythm: Rhythm = field(default_factory=Rhythm)
    noise: Noise = field(default_factory=Noise)
    hr_trend: tuple[tuple[float, float], ...] = ()
    """``(time s, bpm)`` points the mean sinus rate follows, linearly between them and
    flat before the first and after the last; empty: ``hr_bpm`` throughout. The waves'
    shapes (QT), the PVC odds per beat and the HRV's scale stay those of ``hr_bpm``."""

    def __post_init__(self) -> None:
        if not 100 <= self.sampling_rate <= 2000:
            raise ValueError(f"sampling_rate must be 100-2000 Hz, got {self.sampling_rate}")
        if not 20 <= self.hr_bpm <= 250:
            raise ValueError(f"hr_bpm must be 20-250, got {self.hr_bpm}")
        if not 0 <= self.hr_std_bpm <= 0.2 * self.hr_bpm:
            raise ValueError(f"hr_std_bpm must be 0-{0.2 * self.hr_bpm:g} (20 % of the rate), got {self.hr_std_bpm}")
        if not self.lf_hf_ratio > 0 or not 0.05 <= self.respiration_hz <= 1.0:
            raise ValueError(f"need lf_hf_ratio > 0 and respiration_hz 0.05-1, got {self.lf_hf_ratio}, "
                             f"{self.respiration_hz}")
        if not 0 < self.amplitude_mv <= 10 or not self.internal_rate_hz > 0:
            raise ValueError(f"need amplitude_mv 0-10 and internal_rate_hz > 0, got {self.amplitude_mv}, "
                             f"{self.internal_rate_hz}")
        times = [t for t, _ in self.hr_trend]
        if any(not t >= 0 for t in times) or times != sorted(times) or any(not 20 <= hr <= 250 for _, hr in self.hr_trend):
            raise ValueError(f"hr_trend needs times >= 0 in order and rates 20-250 bpm, got {self.hr_trend}")


@dataclass(frozen=True, slots=True)
class EcgChunk:
    """One chunk of signal and the true beats whose R peak lies in it."""

    start: int
    """Absolute index of the first sample."""
    samples_mv: Samples
    r_peaks: npt.NDArray[np.int64]
    """R-peak indices within the chunk (add ``start`` for absolute ones)."""
    kinds: npt.NDArray[np.int8]
    """`BeatKind` of each R peak."""

    @property
    def symbols(self) -> list[str]:
        return [BeatKind(int(k)).symbol for k in self.kinds]


# -- morphology -----------------------------------------------------------------------

# McSharry et al. 2003, Table 1: angle (rad), a_i, b_i (rad) for P, Q, R, S, T.
_THETA = (-math.pi / 3, -math.pi / 12, 0.0, math.pi / 12, math.pi / 2)
_A = (1.2, -5.0, 30.0, -7.5, 0.75)
_B = (0.25, 0.1, 0.1, 0.1, 0.4)

# Ventricular complexes, fixed in time: (offset from R in s, height / sinus R height,
# Gaussian sigma in s). No P wave; a broad R, a deep S and a discordant (inverted) T,
# about 160 ms from QRS onset to offset. VT's T comes earlier to fit a 300 ms cycle.
_PVC = ((0.0, 0.0, 0.05), (-0.045, -0.10, 0.020), (0.0, 1.3, 0.030), (0.055, -0.45, 0.030), (0.30, -0.40, 0.070))
_VT = ((0.0, 0.0, 0.05), (0.0, 0.0, 0.02), (0.0, 1.2, 0.030), (0.055, -0.40, 0.030), (0.18, -0.30, 0.050))


def _morphology(hr_bpm: float, amplitude_mv: float) -> tuple[_F64, npt.NDArray[np.int64]]:
    """(kinds x 5 waves x (centre, height mV, width)) and, per kind, 1 if centre and
    width are in seconds rather than radians."""
    f = math.sqrt(hr_bpm / 60.0)
    angle_scale = (math.sqrt(f), f, 1.0, f, math.sqrt(f))
    height_r = _A[2] * _B[2] ** 2
    sinus = np.array([[_THETA[i] * angle_scale[i], _A[i] * _B[i] ** 2 / height_r, _B[i] * f] for i in range(5)])
    morph = np.zeros((len(BeatKind), 5, 3))
    morph[:, :, 2] = 1.0  # harmless widths for the absent waves
    morph[BeatKind.SINUS] = sinus
    morph[BeatKind.AF] = sinus
    morph[BeatKind.AF, 0, 1] = 0.0  # no P wave in AF
    morph[BeatKind.PVC] = np.array(_PVC)
    morph[BeatKind.VT] = np.array(_VT)
    morph[:, :, 1] *= amplitude_mv
    fixed = np.zeros(len(BeatKind), dtype=np.int64)
    fixed[[BeatKind.PVC, BeatKind.VT]] = 1
    return morph, fixed


# -- the integrator (numba kernel and its plain-Python twin) ------------------------------

@register_jitable
def _forcing(t: float, bt: _F64, kinds: npt.NDArray[np.int64], k: int, morph: _F64,
             fixed: npt.NDArray[np.int64], wander_mv: float, wander_w: float) -> tuple[float, int]:
    """Right-hand side of ż = F(t) − z at time ``t``, and the interval index k with
    bt[k] <= t < bt[k + 1] (times only grow, so k only moves forward)."""
    nb = bt.shape[0]
    while k + 2 < nb and bt[k + 1] <= t:
        k += 1
    w = _TWO_PI / (bt[k + 1] - bt[k])
    phi = w * (t - bt[k])
    g = 0.0
    for side in range(2):
        kind = kinds[k + side]
        scale = w if fixed[kind] else 1.0
        shift = _TWO_PI * side
        for i in range(5):
            h = morph[kind, i, 1]
            if h == 0.0:
                continue
            b = morph[kind, i, 2] * scale
            d = phi - shift - morph[kind, i, 0] * scale
            if abs(d) > 6.0 * b:
                continue
            g -= h * w * d / (b * b) * math.exp(-0.5 * d * d / (b * b))
    return g + wander_mv * math.sin(wander_w * t), k


def _integrate(first: int, n: int, sub: int, fs: float, bt: _F64, kinds: npt.NDArray[np.int64], k: int,
               morph: _F64, fixed: npt.NDArray[np.int64], wander_mv: float, wander_w: float, state: _F64,
               out: _F64) -> int:
    """RK4 for ż = F(t) − z over ``n`` output samples, ``sub`` steps each, starting at
    absolute step ``first``. Times are computed from step numbers, never accumulated,
    so a chunk boundary changes nothing. Writes z at each sample time; returns k."""
    rate = fs * sub
    h = 1.0 / rate
    z = state[0]
    fa, k = _forcing(first / rate, bt, kinds, k, morph, fixed, wander_mv, wander_w)
    for j in range(n):
        out[j] = z
        for s in range(sub):
            i = first + j * sub + s
            fm, k = _forcing((i + 0.5) / rate, bt, kinds, k, morph, fixed, wander_mv, wander_w)
            fe, k = _forcing((i + 1) / rate, bt, kinds, k, morph, fixed, wander_mv, wander_w)
            k1 = fa - z
            k2 = fm - (z + 0.5 * h * k1)
            k3 = fm - (z + 0.5 * h * k2)
            k4 = fe - (z + h * k3)
            z += h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            fa = fe
    state[0] = z
    return k


_integrate_jit = numba.njit(cache=True)(_integrate)


# -- random streams ------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's output function (uint64 arithmetic wraps, as intended)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _indexed_normal(key: np.uint64, start: int, n: int) -> _F64:
    """Standard normal values number start .. start+n-1 of the stream ``key``
    (Box-Muller on splitmix64 outputs 2i and 2i+1): random access, so chunking cannot matter."""
    i = np.arange(2 * start, 2 * (start + n), dtype=np.uint64)
    u = (_mix(key + (i + np.uint64(1)) * _GOLDEN) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    u1, u2 = 1.0 - u[0::2], u[1::2]  # u1 in (0, 1]
    out: _F64 = np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
    return out


class _Tachogram:
    """Sinus RR(t), seconds: mean plus McSharry's two-peak spectrum as a sum of cosines.
    With a rate trend the mean follows it and the cosines scale with the mean."""

    def __init__(self, cfg: EcgConfig, rng: np.random.Generator, components: int = 32) -> None:
        self.mean = 60.0 / cfg.hr_bpm
        self._trend = (np.array([t for t, _ in cfg.hr_trend]), np.array([hr for _, hr in cfg.hr_trend]))
        std = 60.0 * cfg.hr_std_bpm / cfg.hr_bpm**2  # first-order: dRR = 60 dHR / HR²
        r = cfg.lf_hf_ratio
        n_lf = min(max(round(components * r / (1 + r)), 1), components - 1)
        n_hf = components - n_lf
        freq = np.concatenate([rng.normal(0.1, 0.01, n_lf), rng.normal(cfg.respiration_hz, 0.01, n_hf)])
        # Each cosine of amplitude c has variance c²/2; split the variance LF:HF = r:1.
        var_lf, var_hf = std**2 * r / (1 + r), std**2 / (1 + r)
        self._amp = np.concatenate([np.full(n_lf, math.sqrt(2 * var_lf / n_lf)), np.full(n_hf, math.sqrt(2 * var_hf / n_hf))])
        self._w = _TWO_PI * freq
        self._phase = rng.uniform(0, _TWO_PI, components)

    def mean_rr(self, t: float) -> float:
        times, rates = self._trend
        return 60.0 / float(np.interp(t, times, rates)) if times.size else self.mean

    def rr(self, t: float) -> float:
        mean = self.mean_rr(t)
        # Without a trend mean / self.mean is exactly 1.0: the same bits as before trends.
        return max(mean + mean / self.mean * float(np.cos(self._w * t + self._phase) @ self._amp), 0.25)


class _BeatSchedule:
    """Draws beats (R time in s, kind) one at a time, in order. The sinus node keeps its
    own clock; events insert beats or replace its output."""

    _MIN_RR = 0.2  # no two R peaks closer than this (ventricular refractory period)

    def __init__(self, cfg: EcgConfig, rng: np.random.Generator, hrv: _Tachogram) -> None:
        self._rhythm = cfg.rhythm
        self._rng = rng
        self._hrv = hrv
        self._p_pvc = cfg.rhythm.pvc_per_min / cfg.hr_bpm
        self._vt = deque(sorted(cfg.rhythm.vt_runs, key=lambda run: run.start_s))
        self._pending: deque[tuple[float, BeatKind]] = deque()
        af_sd = math.sqrt(math.log1p(cfg.rhythm.af_rr_cv**2))
        self._af_log = (math.log(60.0 / cfg.rhythm.af_hr_bpm) - af_sd**2 / 2, af_sd)  # mean RR as configured
        self._sinus_next = -_WARMUP_S - hrv.rr(0.0) / 2  # start mid-cycle, between two beats
        self._last = -math.inf

    def _in_af(self, t: float) -> bool:
        return any(e.contains(t) for e in self._rhythm.af)

    def _draw(self) -> tuple[float, BeatKind]:
        if self._pending:
            return self._pending.popleft()
        t = self._sinus_next
        if self._vt and t >= self._vt[0].start_s:
            run = self._vt.popleft()
            rr = 60.0 / run.rate_bpm
            at = max(run.start_s, self._last + rr)
            beats = [(at + i * rr, BeatKind.VT) for i in range(run.beats)]
            self._pending.extend(beats[1:])
            self._sinus_next = beats[-1][0] + self._hrv.mean_rr(beats[-1][0])  # sinus resumes one RR after the run
            return beats[0]
        if self._in_af(t):
            mu, sd = self._af_log
            self._sinus_next = t + max(math.exp(mu + sd * self._rng.standard_normal()), 0.25)
            return t, BeatKind.AF
        rr = self._hrv.rr(t)
        if self._rng.random() < self._p_pvc and not self._in_af(t + rr):
            # Full compensatory pause: the PVC conceals the next sinus beat, the one
            # after that comes on time.
            self._pending.append((t + self._rhythm.pvc_coupling * rr, BeatKind.PVC))
            self._sinus_next = t + rr + self._hrv.rr(t + rr)
        else:
            self._sinus_next = t + rr
        return t, BeatKind.SINUS

    def next(self) -> tuple[float, BeatKind]:
        t, kind = self._draw()
        t = max(t, self._last + self._MIN_RR)
        self._last = t
        asystole = self._rhythm.asystole_at_s
        if asystole is not None and asystole <= t < asystole + self._rhythm.asystole_s:
            kind = BeatKind.NONE
        return t, kind


@dataclass(frozen=True, slots=True)
class _Burst:
    start: float
    duration: float
    amplitude: float
    w: _F64
    phase: _F64
    weight: _F64


class _Bursts:
    """Electrode-motion bursts, a Poisson process drawn in time order."""

    def __init__(self, noise: Noise, rng: np.random.Generator) -> None:
        self._noise = noise
        self._rng = rng
        self._next = self._gap() if noise.motion_per_min > 0 else math.inf
        self.active: list[_Burst] = []

    def _gap(self) -> float:
        return float(self._rng.exponential(60.0 / self._noise.motion_per_min))

    def advance(self, t_end: float) -> None:
        """Draw every burst starting before ``t_end``."""
        while self._next < t_end:
            n = self._noise
            weight = self._rng.normal(size=4)
            self.active.append(_Burst(self._next, n.motion_s * self._rng.uniform(0.5, 1.5),
                                      n.motion_mv * self._rng.uniform(0.5, 1.5), _TWO_PI * self._rng.uniform(0.5, 8, 4),
                                      self._rng.uniform(0, _TWO_PI, 4), weight / np.sqrt(weight @ weight)))
            self._next += self._gap()


# -- the stream ----------------------------------------------------------------------------

def _patient_key(seed: int, patient: str | int) -> list[int]:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    digest = hashlib.blake2b(str(patient).encode(), digest_size=8).digest()
    return [seed, int.from_bytes(digest, "little")]


class SyntheticEcg:
    """One patient's ECG, generated chunk by chunk, continuing seamlessly.

    ``SyntheticEcg(config, seed=7, patient="p0001")`` gives the same record for the same
    arguments, however it is chunked: ``next_chunk(250)`` four times equals
    ``next_chunk(1000)`` once. ``jit=False`` runs the integrator's plain-Python twin.
    """

    def __init__(self, config: EcgConfig | None = None, *, seed: int = 0, patient: str | int = 0,
                 jit: bool = True) -> None:
        self.config = cfg = config or EcgConfig()
        streams = np.random.SeedSequence(_patient_key(seed, patient)).spawn(4)
        hrv = _Tachogram(cfg, np.random.default_rng(streams[0]))
        self._schedule = _BeatSchedule(cfg, np.random.default_rng(streams[1]), hrv)
        self._bursts = _Bursts(cfg.noise, np.random.default_rng(streams[2]))
        self._noise_key = np.uint64(streams[3].generate_state(1, np.uint64)[0])
        self._morph, self._fixed = _morphology(cfg.hr_bpm, cfg.amplitude_mv)
        self._fs = float(cfg.sampling_rate)
        self._sub = max(1, math.ceil(cfg.internal_rate_hz / self._fs))
        self._wander = (cfg.noise.baseline_wander_mv, _TWO_PI * cfg.respiration_hz)
        self._kernel = _integrate_jit if jit else _integrate
        self._times: list[float] = []
        self._kinds: list[int] = []
        self._k = 0          # interval of the next sample: times[k] <= t < times[k + 1]
        self._reported = 0   # first beat not yet reported
        self._z = np.zeros(1)
        warmup = round(_WARMUP_S * self._fs)
        self._extend(0.0)
        self._k += self._kernel(-warmup * self._sub, warmup, self._sub, self._fs, np.array(self._times),
                                np.array(self._kinds, dtype=np.int64), 0, self._morph, self._fixed, self._wander[0],
                                self._wander[1], self._z, np.empty(warmup))
        self._n = 0

    @property
    def sampling_rate(self) -> float:
        return self._fs

    @property
    def samples_emitted(self) -> int:
        """Absolute index of the next sample."""
        return self._n

    def _extend(self, t_end: float) -> None:
        while not self._times or self._times[-1] <= t_end:
            t, kind = self._schedule.next()
            self._times.append(t)
            self._kinds.append(int(kind))

    def next_chunk(self, n_samples: int) -> tuple[Samples, npt.NDArray[np.int64]]:
        """The next ``n_samples`` samples (mV, float32) and the R-peak indices within them."""
        chunk = self.next_chunk_annotated(n_samples)
        return chunk.samples_mv, chunk.r_peaks

    def next_chunk_annotated(self, n_samples: int) -> EcgChunk:
        """As `next_chunk`, with the chunk's start and the kind of every beat."""
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        n0, fs = self._n, self._fs
        t_end = (n0 + n_samples) / fs
        self._extend(t_end)
        z = np.empty(n_samples)
        if n_samples:
            bt = np.array(self._times[self._k:])
            kinds = np.array(self._kinds[self._k:], dtype=np.int64)
            self._k += self._kernel(n0 * self._sub, n_samples, self._sub, fs, bt, kinds, 0, self._morph, self._fixed,
                                    self._wander[0], self._wander[1], self._z, z)
        self._add_artefacts(z, n0)
        peaks, kinds_out = self._report(n0, n0 + n_samples)
        self._trim()
        self._n = n0 + n_samples
        return EcgChunk(n0, z.astype(np.float32), peaks, kinds_out)

    def _add_artefacts(self, z: _F64, n0: int) -> None:
        """Everything added after the model: f waves, noise, motion, leads off."""
        n, fs, cfg = z.shape[0], self._fs, self.config
        if n == 0:
            return
        t0, t1 = n0 / fs, (n0 + n) / fs
        for ep in cfg.rhythm.af:
            if cfg.rhythm.af_wave_mv > 0 and ep.start_s < t1 and ep.end_s > t0:
                lo, hi = self._span(ep.start_s, ep.end_s, n0, n)
                z[lo:hi] += _f_waves((n0 + np.arange(lo, hi)) / fs, ep, cfg.rhythm.af_wave_mv)
        if cfg.noise.gaussian_mv > 0:
            z += cfg.noise.gaussian_mv * _indexed_normal(self._noise_key, n0, n)
        self._bursts.advance(t1)
        for b in self._bursts.active:
            if b.start < t1 and b.start + b.duration > t0:
                lo, hi = self._span(b.start, b.start + b.duration, n0, n)
                t = (n0 + np.arange(lo, hi)) / fs
                window = np.sin(math.pi * (t - b.start) / b.duration) ** 2  # Hann
                z[lo:hi] += b.amplitude * window * (np.sin(np.outer(t, b.w) + b.phase) @ b.weight)
        self._bursts.active = [b for b in self._bursts.active if b.start + b.duration > t1]
        for ep in cfg.noise.leads_off:
            lo, hi = self._span(ep.start_s, ep.end_s, n0, n)
            z[lo:hi] = cfg.noise.leads_off_value_mv

    def _span(self, start_s: float, end_s: float, n0: int, n: int) -> tuple[int, int]:
        """Chunk-relative [lo, hi) of the samples whose time lies in [start_s, end_s)."""
        lo = math.ceil(start_s * self._fs) - n0
        hi = math.ceil(end_s * self._fs) - n0 if math.isfinite(end_s) else n
        return min(max(lo, 0), n), min(max(hi, 0), n)

    def _report(self, n0: int, n1: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8]]:
        peaks: list[int] = []
        kinds: list[int] = []
        while self._reported < len(self._times):
            at = math.floor(self._times[self._reported] * self._fs + 0.5)
            if at >= n1:
                break
            kind = self._kinds[self._reported]
            if at >= n0 and kind != BeatKind.NONE:
                peaks.append(at - n0)
                kinds.append(kind)
            self._reported += 1
        return np.array(peaks, dtype=np.int64), np.array(kinds, dtype=np.int8)

    def _trim(self) -> None:
        drop = min(self._k, self._reported)
        if drop > 64:
            del self._times[:drop], self._kinds[:drop]
            self._k -= drop
            self._reported -= drop


def _f_waves(t: _F64, episode: Episode, amplitude_mv: float) -> _F64:
    """Fibrillatory waves, Stridh and Sörnmo's sawtooth model: three harmonics of a
    6 Hz wave, frequency-modulated (±0.2 Hz at 0.1 Hz) and amplitude-modulated (±30 %
    at 0.08 Hz), faded in and out over 0.5 s at the episode's edges."""
    f0, df, ff, fa = 6.0, 0.2, 0.1, 0.08
    theta = _TWO_PI * f0 * t + (df / ff) * np.sin(_TWO_PI * ff * t)
    a = amplitude_mv * (1.0 + 0.3 * np.sin(_TWO_PI * fa * t))
    wave = sum((2.0 / (i * math.pi)) * a * np.sin(i * theta) for i in range(1, 4))
    fade = np.clip(np.minimum(t - episode.start_s, episode.end_s - t) / 0.5, 0.0, 1.0)
    out: _F64 = -wave * fade
    return out


def ecg_simulate(duration_s: float, config: EcgConfig | None = None, *, seed: int = 0,
                 patient: str | int = 0) -> EcgChunk:
    """A whole record in one chunk: ``duration_s`` seconds, from sample 0."""
    gen = SyntheticEcg(config, seed=seed, patient=patient)
    return gen.next_chunk_annotated(round(duration_s * gen.sampling_rate))
