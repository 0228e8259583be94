"""Scripted 1 Hz vital-sign scenarios per patient, deterministic for (seed, patient, t).

A scenario moves a patient from a stable baseline to a deteriorated state: nothing
changes until ``onset_s``, then every scripted vital moves towards its target along a
smoothstep curve that arrives at ``onset_s + ramp_s`` (the scenario's *deadline*) and
stays there. On top of the trend each vital wanders slowly (three sinusoids with
periods of 2-30 min) and carries measurement noise (Gaussian, clipped at 2.5 SD).

=============  ========  ======  =====================================================
scenario       onset     ramp    by the deadline (checked by the tests with NEWS2)
=============  ========  ======  =====================================================
stable         -         -       NEWS2 0 throughout: every value stays in its 0-point band
sepsis         2 min     15 min  HR 124, RR 27, T 39.2 °C, SBP 88/52, SpO2 93, new
                                 confusion from 70 % of the ramp: NEWS2 high (>= 7)
hypoxia        1 min     5 min   SpO2 85, RR 28, HR 105; oxygen on once SpO2 falls below
                                 91: NEWS2 high (>= 7)
bradycardia    1 min     3 min   HR 36, SBP 96/60: pulse scores 3, NEWS2 at least low-medium
=============  ========  ======  =====================================================

Random access rather than a running generator: ``vitals(t)`` depends only on (seed,
patient, t), so a publisher can skip ahead, restart, or run patients in any order and
still send the same numbers. The per-second noise comes from a BLAKE2b hash of (seed,
patient, t); the per-patient baseline and wander from a generator seeded by (seed,
patient). Pure: no I/O, no clocks. The output has the numeric keys of
`streams.vitals_codec` (rounded as a monitor charts them) plus ``oxygen`` and
``acvpu``, the two NEWS2 inputs a monitor does not measure, so it can be scored with
``detectors.news2.parse_observation`` as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypedDict, get_args

__all__ = ["SCRIPTS", "ScenarioName", "ScenarioPatient", "ScenarioVitals", "Script", "codec_values",
           "scenario_vitals"]

ScenarioName = Literal["stable", "sepsis", "hypoxia", "bradycardia"]
_VITALS = ("hr", "spo2", "rr", "sbp", "dbp", "temp")


class ScenarioVitals(TypedDict):
    hr: int
    spo2: int
    rr: int
    sbp: int
    dbp: int
    temp: float
    oxygen: bool
    acvpu: str
    """A (alert) or C (new confusion); V, P, U are not scripted."""


@dataclass(frozen=True, slots=True)
class Script:
    name: ScenarioName
    onset_s: float
    ramp_s: float
    targets: Mapping[str, float]
    """Value each scripted vital reaches at the deadline; the others keep their baseline."""
    confusion_at: float | None = None
    """Fraction of the ramp (0-1) from which ACVPU is C."""
    oxygen_below_spo2: float | None = None
    """Supplemental oxygen is started once the SpO2 trend falls below this."""

    @property
    def deadline_s(self) -> float:
        return self.onset_s + self.ramp_s


SCRIPTS: Mapping[ScenarioName, Script] = MappingProxyType({
    "stable": Script("stable", math.inf, 1.0, MappingProxyType({})),
    "sepsis": Script("sepsis", 120.0, 900.0, MappingProxyType(
        {"hr": 124, "rr": 27, "temp": 39.2, "sbp": 88, "dbp": 52, "spo2": 93}), confusion_at=0.7),
    "hypoxia": Script("hypoxia", 60.0, 300.0, MappingProxyType({"spo2": 85, "rr": 28, "hr": 105}),
                      oxygen_below_spo2=91.0),
    "bradycardia": Script("bradycardia", 60.0, 180.0, MappingProxyType({"hr": 36, "sbp": 96, "dbp": 60})),
})

# Baseline ranges (drawn once per patient) and variation: wander amplitude, noise SD,
# and whether both are relative to the value (heart rate varies in proportion).
# Chosen so that baseline + wander + clipped noise stays inside NEWS2's 0-point band.
_BASELINE = {"hr": (64.0, 80.0), "spo2": (97.2, 99.0), "rr": (14.5, 16.5), "sbp": (120.0, 135.0),
             "dbp": (70.0, 82.0), "temp": (36.6, 37.2)}
_VARIATION = {"hr": (0.04, 0.02, True), "spo2": (0.4, 0.4, False), "rr": (0.6, 0.5, False),
              "sbp": (3.0, 2.0, False), "dbp": (2.0, 1.5, False), "temp": (0.1, 0.05, False)}
_CLIP_SD = 2.5


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class ScenarioPatient:
    """One patient following one script; ``vitals(t)`` for whole seconds t >= 0."""

    def __init__(self, scenario: ScenarioName, *, seed: int, patient: str, onset_s: float | None = None,
                 ramp_s: float | None = None) -> None:
        if scenario not in SCRIPTS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(get_args(ScenarioName))}")
        script = SCRIPTS[scenario]
        if onset_s is not None:
            script = dataclasses.replace(script, onset_s=onset_s)
        if ramp_s is not None:
            script = dataclasses.replace(script, ramp_s=ramp_s)
        if not (script.onset_s >= 0 and script.ramp_s > 0):
            raise ValueError(f"need onset_s >= 0 and ramp_s > 0, got {script.onset_s}, {script.ramp_s}")
        self.script = script
        self.patient = patient
        self._key = f"{seed}|{patient}".encode()
        rng = random.Random(int.from_bytes(hashlib.blake2b(self._key + b"|patient", digest_size=16).digest(), "big"))
        self._base = {v: rng.uniform(*_BASELINE[v]) for v in _VITALS}
        # Per vital: three (amplitude, angular frequency, phase); amplitudes sum to 1.
        self._wander: dict[str, list[tuple[float, float, float]]] = {}
        for v in _VITALS:
            weights = [rng.random() + 0.2 for _ in range(3)]
            self._wander[v] = [(w / sum(weights), 2 * math.pi / rng.uniform(120.0, 1800.0), rng.uniform(0, 2 * math.pi))
                               for w in weights]

    @property
    def deadline_s(self) -> float:
        return self.script.deadline_s

    def _noise(self, t: int) -> list[float]:
        """Six standard normals for second ``t`` (Box-Muller on a BLAKE2b digest)."""
        words = struct.unpack("<6Q", hashlib.blake2b(self._key + b"|%d" % t, digest_size=48).digest())
        u = [(w >> 11) * 2.0**-53 for w in words]
        out = []
        for i in range(0, 6, 2):
            r = math.sqrt(-2.0 * math.log(1.0 - u[i]))
            out += [r * math.cos(2 * math.pi * u[i + 1]), r * math.sin(2 * math.pi * u[i + 1])]
        return out

    def progress(self, t: float) -> float:
        """How far the deterioration has gone at ``t``: 0 until onset, 1 from the deadline."""
        s = self.script
        return _smoothstep((t - s.onset_s) / s.ramp_s) if t > s.onset_s else 0.0

    def trend(self, t: float) -> dict[str, float]:
        """The noiseless, wander-free course of each vital at time ``t``."""
        s, p = self.script, self.progress(t)
        return {v: self._base[v] + (s.targets[v] - self._base[v]) * p if v in s.targets else self._base[v]
                for v in _VITALS}

    def vitals(self, t: int) -> ScenarioVitals:
        if t < 0:
            raise ValueError(f"t must be >= 0 seconds, got {t}")
        s = self.script
        trend = self.trend(t)
        values: dict[str, float] = {}
        for v, noise in zip(_VITALS, self._noise(t), strict=True):
            wander_amp, noise_sd, relative = _VARIATION[v]
            scale = trend[v] if relative else 1.0
            wander = sum(a * math.sin(w * t + ph) for a, w, ph in self._wander[v])
            values[v] = trend[v] + scale * (wander_amp * wander + noise_sd * min(max(noise, -_CLIP_SD), _CLIP_SD))
        oxygen = s.oxygen_below_spo2 is not None and trend["spo2"] < s.oxygen_below_spo2
        confused = s.confusion_at is not None and self.progress(t) >= s.confusion_at
        return ScenarioVitals(
            hr=round(max(values["hr"], 0.0)), spo2=round(min(max(values["spo2"], 0.0), 100.0)),
            rr=round(max(values["rr"], 0.0)), sbp=round(values["sbp"]), dbp=round(values["dbp"]),
            temp=round(values["temp"], 1), oxygen=oxygen, acvpu="C" if confused else "A",
        )


def scenario_vitals(scenario: ScenarioName, *, seed: int, patient: str, t: int) -> ScenarioVitals:
    """One second of one patient's scenario (builds the patient each call: for a
    ward, keep a `ScenarioPatient` per patient instead)."""
    return ScenarioPatient(scenario, seed=seed, patient=patient).vitals(t)


def codec_values(v: ScenarioVitals) -> dict[str, float | None]:
    """The fields `streams.vitals_codec.encode_vitals` carries (oxygen and ACVPU are not in schema 1)."""
    return {"hr": v["hr"], "spo2": v["spo2"], "rr": v["rr"], "sbp": v["sbp"], "dbp": v["dbp"], "temp": v["temp"]}
