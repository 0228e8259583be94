"""The alarm conditions Vigil knows, their IEC 60601-1-8 priorities, and the
`Observation` every detector reports them with.

IEC 60601-1-8 (medical electrical equipment, alarm systems) sorts alarm conditions
into *physiological* ones (the patient) and *technical* ones (the equipment: a lead
off, a probe off, a signal too noisy to analyse), each with a priority of high
(immediate response), medium (prompt response) or low (awareness). The standard
leaves the assignment to the manufacturer's risk analysis; the one below follows
common bedside-monitor practice:

- lethal arrhythmias and NEWS2 high risk: high;
- vital-sign limit violations and NEWS2 medium risk: medium;
- NEWS2 low-medium risk (a single parameter scoring 3): low;
- technical conditions that blind a lethal-arrhythmia or desaturation alarm (ECG
  leads off, SpO2 probe off): medium; the others (ECG noise, flat line): low.

A technical condition *suppresses* the physiological conditions it would otherwise
fake (``suppressed_by``): with the leads off the ECG shows no QRS, which is not
asystole. The VF/flutter and VT alarms are deliberately not suppressed by ECG
noise: the signal-quality index (processors/sqi.py) calls every 2-s window of the
flutter episodes of MIT-BIH record 207 ``noise`` (18 of 18 in its first 300 s), and
most windows of a wide-complex VT, because a sine-like ECG has a low kurtosis;
letting noise suppress them would switch their detection off exactly when they are
present. Each guards against noise itself: the VF detector (detectors/vf.py) rejects
broadband noise, and the VT rule (detectors/arrhythmia.py) takes a noise window's
beats only when the beat classifier calls them ventricular and the run is regular.
A flat line suppresses nothing: the signal-quality index calls a window flat when it
spans under 50 uV (processors/sqi.py), which a true asystole on a clean line does
too, so the flat-line alarm asks for the electrodes to be checked beside the
asystole alarm rather than instead of it; a missed asystole costs far more than a
false one. Only leads off (most samples missing, or the input parked at a rail) is
sure to be the equipment.

Condition names are stable strings: they are stored in events, never derived from
code paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

__all__ = ["Priority", "ConditionSpec", "Observation", "CONDITIONS", "ECG_ARRHYTHMIAS", "NEWS2_CLEAR_S"]


class Priority(StrEnum):
    """IEC 60601-1-8 alarm priority; compares by urgency (``LOW < MEDIUM < HIGH``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def raised(self) -> Priority:
        """The next priority up (HIGH stays HIGH): what escalation moves to."""
        return _ORDER[min(self.rank + 1, len(_ORDER) - 1)]


_ORDER = (Priority.LOW, Priority.MEDIUM, Priority.HIGH)
_RANK = {p: i for i, p in enumerate(_ORDER)}


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    """How one alarm condition behaves once a detector has observed it.

    ``delay_s`` is the alarm-condition delay: how long the condition must persist
    before it alarms. ``clear_delay_s`` is its mirror: how long a raised,
    non-latching alarm's condition must stay absent before the alarm clears, so a
    condition that flickers (noise coming and going) holds one alarm instead of
    raising a new one every few seconds. For vital-sign limits the patient's `AlarmLimits` carry the
    delay instead (it is set per parameter, per care area). ``latching`` defaults to
    "high priority": such an alarm stays until acknowledged even when the condition
    ends, so a brief run of VT is not missed by someone who looked away.
    """

    name: str
    label: str
    priority: Priority
    technical: bool = False
    delay_s: float = 0.0
    clear_delay_s: float = 0.0
    latching: bool | None = None
    suppressed_by: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.clear_delay_s < 0:
            raise ValueError(f"{self.name}: delay_s and clear_delay_s must be >= 0, got {self.delay_s}, "
                             f"{self.clear_delay_s}")

    @property
    def latches(self) -> bool:
        return self.priority is Priority.HIGH if self.latching is None else self.latching


@dataclass(frozen=True, slots=True)
class Observation:
    """What a detector saw of one condition since its previous report.

    ``present`` is True if the condition held at any time in that interval (so a
    short episode between two reports is not lost), False if it was evaluated and
    did not hold, and None if there was nothing to evaluate (no new data): None
    changes nothing, neither starting nor clearing an alarm. ``held_s`` says how
    long the condition had already lasted when it was reported (0 if unknown); the
    engine counts it towards the condition's delay. ``value`` and ``limit`` are in
    the units of ``unit`` and go into the alarm message as they are.
    """

    condition: str
    present: bool | None
    value: float | None = None
    limit: float | None = None
    unit: str = ""
    detail: str = ""
    held_s: float = 0.0


MEDIUM, HIGH, LOW = Priority.MEDIUM, Priority.HIGH, Priority.LOW
_ECG_TECH = frozenset({"ecg_leads_off", "ecg_noise"})

ECG_ARRHYTHMIAS = ("asystole", "extreme_bradycardia", "extreme_tachycardia", "ventricular_tachycardia",
                   "ventricular_fibrillation")
"""The conditions of the PhysioNet/CinC Challenge 2015, computed by detectors/arrhythmia.py."""

NEWS2_CLEAR_S = 60.0
"""How long a NEWS2 risk band must be gone before its alarm clears (see the catalogue
below). On the simulated ward of the fault tests (12 beds, seed 7, 400 s through the
vitals pipeline) the three deteriorating patients raised 43 NEWS2 alarms without it
(one patient's medium-risk alarm raised and cleared 14 times), 7 with it: each band
once on the way up (low-medium, medium, high), at the same seconds as before. A delay
before raising (10 s) cut that to 3 but held back each patient's first NEWS2 alarm by
28 to 36 s, since the band flickered in and out and each absence restarts a delay."""

_SPECS = (
    # Vital-sign limits (delay comes from the patient's AlarmLimits).
    ConditionSpec("hr_high", "Heart rate high", MEDIUM),
    ConditionSpec("hr_low", "Heart rate low", MEDIUM),
    ConditionSpec("spo2_low", "SpO2 low", MEDIUM, suppressed_by=frozenset({"spo2_probe_off"})),
    ConditionSpec("spo2_high", "SpO2 high", MEDIUM, suppressed_by=frozenset({"spo2_probe_off"})),
    ConditionSpec("rr_high", "Respiration rate high", MEDIUM),
    ConditionSpec("rr_low", "Respiration rate low", MEDIUM),
    ConditionSpec("sbp_high", "Systolic pressure high", MEDIUM),
    ConditionSpec("sbp_low", "Systolic pressure low", MEDIUM),
    ConditionSpec("dbp_high", "Diastolic pressure high", MEDIUM),
    ConditionSpec("dbp_low", "Diastolic pressure low", MEDIUM),
    ConditionSpec("temp_high", "Temperature high", MEDIUM),
    ConditionSpec("temp_low", "Temperature low", MEDIUM),
    # NEWS2 risk bands (RCP 2017, Chart 2). Exactly one band is present at a time. NEWS2 was made
    # for observations charted hours apart; scored every second, a patient whose respiration rate
    # sits on a band edge moves between bands from one reading to the next, so a band's alarm
    # clears only once the band has been gone NEWS2_CLEAR_S (a patient moving up holds the lower
    # band's alarm beside the higher one for that long).
    ConditionSpec("news2_high", "NEWS2 high clinical risk", HIGH, clear_delay_s=NEWS2_CLEAR_S),
    ConditionSpec("news2_medium", "NEWS2 medium clinical risk", MEDIUM, clear_delay_s=NEWS2_CLEAR_S),
    ConditionSpec("news2_low_medium", "NEWS2 single parameter scoring 3", LOW, clear_delay_s=NEWS2_CLEAR_S),
    # Lethal arrhythmias (PhysioNet/CinC Challenge 2015 definitions; the durations are in the definitions).
    ConditionSpec("asystole", "Asystole", HIGH, suppressed_by=_ECG_TECH),
    ConditionSpec("extreme_bradycardia", "Extreme bradycardia", HIGH, suppressed_by=_ECG_TECH),
    ConditionSpec("extreme_tachycardia", "Extreme tachycardia", HIGH, suppressed_by=_ECG_TECH),
    ConditionSpec("ventricular_tachycardia", "Ventricular tachycardia", HIGH,
                  suppressed_by=frozenset({"ecg_leads_off"})),
    ConditionSpec("ventricular_fibrillation", "Ventricular fibrillation/flutter", HIGH,
                  suppressed_by=frozenset({"ecg_leads_off"})),
    # Technical conditions.
    ConditionSpec("ecg_leads_off", "ECG leads off", MEDIUM, technical=True),
    # Some of several leads off or flat: the others go on being analysed (detectors/lead_fusion.py),
    # so it suppresses nothing, but an electrode needs fixing. Same delays as flat line and noise.
    ConditionSpec("ecg_lead_fault", "ECG lead off or flat, analysing the others", LOW, technical=True,
                  delay_s=4.0, clear_delay_s=10.0),
    # Noise comes and goes every few seconds. Raises of the noise alarm, through the worker's ECG
    # pipeline, over MIT-BIH 105 107 108 111 121 203 207 217: clear delay 0 s 233, 6 s 82, 10 s 66, 20 s 53.
    ConditionSpec("ecg_flat_line", "ECG flat line, check electrodes", LOW, technical=True, delay_s=4.0,
                  clear_delay_s=10.0),
    ConditionSpec("ecg_noise", "ECG noisy, rate and asystole alarms suspended", LOW, technical=True, delay_s=4.0,
                  clear_delay_s=10.0),
    ConditionSpec("spo2_probe_off", "SpO2 probe off", MEDIUM, technical=True, delay_s=10.0),
)

CONDITIONS: Mapping[str, ConditionSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""The default catalogue, in a fixed order: decisions of one step come out in this order."""
