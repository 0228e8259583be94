"""Confirm or reject a bedside monitor's ventricular tachycardia alarm.

Pure: the caller hands over the waveforms that came with the alarm (channel name ->
samples, one sampling rate) and the alarm type; `triage_alarm` returns a
`TriageDecision` with the evidence behind it. Reading records is the CLI's job
(`vigil.triage_cli`) and scoring them the evaluation's (`detectors.training.vt_eval`).

The rule is deliberately one-sided. A missed VT costs five times a false alarm in
the 2015 challenge's score, and more at the bedside, so an alarm stands unless the
waveforms argue against it:

- **stands** when any readable ECG lead shows, in the 16 s before the alarm, at least
  `min_cluster` beats that differ from the patient's own baseline beat and share one
  shape among themselves, they are at least `min_consistency` of that lead's
  odd-looking beats (a repeated ectopic focus, not noise), and somewhere in the
  window 5 consecutive beats of that lead come faster than 100 bpm;
- **rejected** when readable leads show none of that: their beats match the baseline
  beat, or what differs is incoherent (artefact);
- with no readable ECG lead, rejected only if an arterial or pleth pulse keeps its
  baseline amplitude throughout the window (VT without output would flatten it);
  otherwise it stands.

Alarm types other than VT are not triaged here and always stand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.ventricular import (
    EvidenceConfig,
    LeadEvidence,
    PulseEvidence,
    ecg_ventricular_evidence,
    pulse_evidence,
)

__all__ = [
    "ECG_LEADS", "PULSE_CHANNELS", "VT_ALARM", "TriageDecision", "TriageParams", "decide", "gather_evidence",
    "triage_alarm",
]

VT_ALARM = "Ventricular_Tachycardia"
ECG_LEADS = frozenset({"I", "II", "III", "aVR", "aVL", "aVF", "V", "V1", "V2", "V3", "V4", "V5", "V6", "MCL", "MCL1"})
PULSE_CHANNELS = frozenset({"ABP", "ART", "PLETH"})


@dataclass(frozen=True, slots=True)
class TriageParams:
    """The two thresholds chosen on alarm records, plus the pulse fallback band.

    `min_cluster` and `min_consistency` were picked on a fixed half of the 2015
    challenge's VT records (see `detectors.training.vt_eval`, which also reports them
    on the other half and by cross-validation). The VT definition asks for 5
    ventricular beats; 4 allows for one the R-peak detector misses.
    """

    min_cluster: int = 4
    min_consistency: float = 0.8
    min_rate_bpm: float = 100.0
    """The VT definition's rate, over 5 consecutive beats of the lead; not fitted."""
    pulse_band: tuple[float, float] = (0.6, 1.6)
    """Pulse amplitude, as a fraction of baseline, that counts as unchanged; not fitted."""

    def __post_init__(self) -> None:
        if self.min_cluster < 1:
            raise ValueError(f"min_cluster must be >= 1, got {self.min_cluster}")
        if not 0.0 <= self.min_consistency <= 1.0:
            raise ValueError(f"min_consistency is a share, 0..1, got {self.min_consistency}")
        lo, hi = self.pulse_band
        if not 0.0 < lo < 1.0 < hi:
            raise ValueError(f"pulse_band must bracket 1, got {self.pulse_band}")


@dataclass(frozen=True, slots=True)
class TriageDecision:
    alarm: str
    true_alarm: bool
    reason: str
    leads: tuple[LeadEvidence, ...] = ()
    pulses: tuple[PulseEvidence, ...] = ()

    def summary(self) -> dict[str, object]:
        """JSON-ready features, for the audit trail and for debugging a decision."""
        return {
            "alarm": self.alarm,
            "true_alarm": self.true_alarm,
            "reason": self.reason,
            "leads": [{"lead": e.lead, "usable": e.usable, "beats": e.beats, "abnormal": e.abnormal,
                       "cluster": e.cluster, "fastest_bpm": round(e.fastest_bpm, 1), "note": e.reason}
                      for e in self.leads],
            "pulses": [{"channel": p.channel, "usable": p.usable, "min_ratio": round(p.min_ratio, 3),
                        "max_ratio": round(p.max_ratio, 3)} for p in self.pulses],
        }


def gather_evidence(channels: Mapping[str, npt.ArrayLike], *, sampling_rate: float,
                    config: EvidenceConfig | None = None) -> tuple[tuple[LeadEvidence, ...], tuple[PulseEvidence, ...]]:
    """Evidence from every ECG lead and pulse channel; other channels (RESP) are ignored.

    Every signal must end at the alarm.
    """
    leads = tuple(ecg_ventricular_evidence(x, sampling_rate=sampling_rate, lead=name, config=config)
                  for name, x in channels.items() if name in ECG_LEADS)
    pulses = tuple(pulse_evidence(x, sampling_rate=sampling_rate, channel=name, config=config)
                   for name, x in channels.items() if name in PULSE_CHANNELS)
    return leads, pulses


def decide(alarm: str, leads: tuple[LeadEvidence, ...], pulses: tuple[PulseEvidence, ...],
           params: TriageParams | None = None) -> TriageDecision:
    """The rule of the module docstring, on evidence already gathered (cheap: the
    evaluation re-runs it for every candidate threshold)."""
    p = params or TriageParams()
    usable = [e for e in leads if e.usable]
    ectopic = [e for e in usable if e.cluster >= p.min_cluster and e.consistency >= p.min_consistency
               and e.fastest_bpm >= p.min_rate_bpm]
    if ectopic:
        best = max(ectopic, key=lambda e: e.cluster)
        return TriageDecision(alarm, True, f"repeated ectopic beats in lead {best.lead}: {best.reason}", leads, pulses)
    if usable:
        names = ", ".join(e.lead for e in usable)
        return TriageDecision(alarm, False, f"no run of one ectopic shape in lead(s) {names}", leads, pulses)
    lo, hi = p.pulse_band
    steady = [q for q in pulses if q.usable and lo <= q.min_ratio and q.max_ratio <= hi]
    if steady:
        return TriageDecision(alarm, False, f"no readable ECG; {steady[0].channel} pulse unchanged "
                              f"({steady[0].min_ratio:.2f}-{steady[0].max_ratio:.2f} of baseline)", leads, pulses)
    return TriageDecision(alarm, True, "no readable ECG and no steady pulse: VT cannot be ruled out", leads, pulses)


def triage_alarm(channels: Mapping[str, npt.ArrayLike], *, sampling_rate: float, alarm_type: str,
                 alarm_index: int | None = None, params: TriageParams | None = None,
                 config: EvidenceConfig | None = None) -> TriageDecision:
    """Decide whether a monitor alarm is true, from the waveforms up to its onset.

    Parameters
    ----------
    channels : mapping of str to array_like
        Channel name (``II``, ``V``, ``ABP``, ``PLETH``, ...) -> samples, all at
        ``sampling_rate`` and starting together; NaN marks missing samples.
    sampling_rate : float
        Hz.
    alarm_type : str
        As the monitor names it; only ``Ventricular_Tachycardia`` is triaged.
    alarm_index : int, optional
        Sample of the alarm onset; later samples are ignored (default: the end).
    """
    if alarm_type != VT_ALARM:
        return TriageDecision(alarm_type, True, f"{alarm_type} alarms are not triaged: the alarm stands")
    cut = {name: np.asarray(x, dtype=np.float64).ravel()[:alarm_index] for name, x in channels.items()}
    leads, pulses = gather_evidence(cut, sampling_rate=sampling_rate, config=config)
    return decide(alarm_type, leads, pulses, params)
