"""One patient's ECG alarm conditions from several leads.

A monitor that sends two or more leads of one patient gets one set of ECG alarms,
not one per lead. Each lead keeps its own chain and arrhythmia detector
(`detectors.arrhythmia`); after each chunk of any lead, `fuse` turns the latest
reports of every lead still sending into the observations of the patient, by the
rule each condition calls for:

- **a lead that is off cannot vote.** A lead that shows leads off (`ecg_leads_off`)
  says nothing about the heart; the others go on being analysed. Leads off, flat line
  and noise are the patient's technical conditions only when *every* lead shows
  them (then the physiological alarms they would fake are suppressed, as with one
  lead). A lead off or flat while another still monitors is its own low-priority
  technical condition, ``ecg_lead_fault`` ("ECG lead off or flat, analysing the
  others", naming the leads), so the electrode still gets fixed; a lead that is
  only noisy raises nothing (noise comes and goes);
- **asystole, extreme bradycardia, extreme tachycardia and ventricular fibrillation
  need every lead that is on.** Each is a rhythm of the whole heart, visible on every
  lead, while what fakes it is usually in one: QRS complexes too small to detect on
  one lead (false asystole, false bradycardia), T waves or artefact counted as beats
  (false tachycardia), muscle or motion artefact that looks fibrillatory. A noisy
  lead keeps its vote (with one lead, noise suppresses the rate alarms);
- **ventricular tachycardia needs one lead that is on.** The beat classifier was
  trained on lead II (MLII) only and often does not call another lead's ventricular
  beats V, so asking every lead would miss most runs.

Measured with `bench/ecg_alarms.py` (the worker's pipeline; MIT-BIH 37 records with
their second lead, 24 of them with noise-stress mixes on both leads, 4 electrode
motion records, the 2015 challenge's 119 VT alarm records with II and the next ECG
lead), one lead against two: false VF alarms 11 -> 1 (mitdb), 43 -> 6 (noise mixes),
1 -> 0 (electrode motion), while VF alarms within MIT-BIH's flutter episodes went
8 -> 10; 47 -> 19 VF alarms in the challenge records (none of which is a VF alarm);
asystole alarms 5 -> 0 in the first three sets (none has an asystole) and 29 -> 21
in the challenge's; extreme tachycardia 16 -> 8 and 16 -> 12, bradycardia 6 -> 5
and 4 -> 0; noise alarms 922 -> 580 and 196 -> 175; VT runs found the same (8 of 11,
19 of 33, no false one), and the challenge's true VT alarms with a VT alarm of ours
7 of 31 instead of 5, its false ones 1 of 88 instead of 0. Asking every lead for VT
found 2 of 11 and 2 of 33 runs, 1 of 31 alarms. A first version, in which VF needed
one lead and a noisy lead lost its vote on the rate alarms, raised more than one
lead alone: 45 and 199 VF alarms, 55 asystoles in the challenge records.

A lead's status for a condition is its latest report that evaluated it (present
True or False); a lead whose last chunk ended more than `STALE_S` before the
current one no longer votes. A condition the current lead's report has no news of
(present None) stays without news, so each lead's chunks re-evaluate only what that
lead evaluated, as one lead's chunks do. With one lead sending, the observations
are that lead's.

Pure and deterministic: the views are data (`LeadView`), kept in the patient's
state and snapshotted with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from detectors.alarm_conditions import Observation

__all__ = ["LeadView", "STALE_S", "LEAD_FAULT", "fuse", "views_to_dict", "views_from_dict"]

STALE_S = 3.0
"""A lead whose latest chunk ended this long before the current chunk's end no longer votes."""
LEAD_FAULT = "ecg_lead_fault"

_LEADS_OFF, _FLAT = "ecg_leads_off", "ecg_flat_line"
_EVERY_LEAD = frozenset({_LEADS_OFF, _FLAT, "ecg_noise"})
_EVERY_VOTER = frozenset({"asystole", "extreme_bradycardia", "extreme_tachycardia", "ventricular_fibrillation"})
_ANY_VOTER = frozenset({"ventricular_tachycardia"})


@dataclass(frozen=True, slots=True)
class LeadView:
    """What one lead last said: the end of its latest chunk (device time, us) and its
    latest observation of each condition it has evaluated."""

    until_us: int
    latest: Mapping[str, Observation]


def fuse(views: Mapping[str, LeadView], lead: str, observations: Sequence[Observation], now_us: int
         ) -> tuple[dict[str, LeadView], tuple[Observation, ...]]:
    """The views with ``lead``'s new report (its chunk ended at ``now_us``) and the
    patient's observations (module docstring). Views of leads that no longer vote are
    dropped."""
    own = views.get(lead)
    latest = dict(own.latest) if own is not None else {}
    latest.update((o.condition, o) for o in observations if o.present is not None)
    current = {name: v for name, v in views.items() if name != lead and now_us - v.until_us <= STALE_S * 1e6}
    current[lead] = LeadView(now_us, latest)
    if len(current) == 1:
        return current, (*observations, Observation(LEAD_FAULT, False))
    off = sorted(name for name, v in current.items() if _says(v, _LEADS_OFF))
    voters = [v for name, v in current.items() if name not in off]
    fused = []
    for o in observations:
        if o.present is None:
            fused.append(o)
        elif o.condition in _EVERY_LEAD:
            fused.append(_every(o, list(current.values())))
        elif o.condition in _EVERY_VOTER:
            fused.append(_every(o, voters) if voters else replace(o, present=None))
        elif o.condition in _ANY_VOTER:
            fused.append(_any(o, voters) if voters else replace(o, present=None))
        else:
            fused.append(o)
    flat = sorted(name for name, v in current.items() if _says(v, _FLAT))
    fault = bool(off or flat) and len(off) < len(current) and len(flat) < len(current)
    fused.append(Observation(LEAD_FAULT, fault, detail=_fault_detail(off, flat) if fault else ""))
    return current, tuple(fused)


def _fault_detail(off: Sequence[str], flat: Sequence[str]) -> str:
    return "; ".join(f"{', '.join(names)} {what}" for names, what in ((off, "off"), (flat, "flat")) if names)


def _says(view: LeadView, condition: str) -> bool:
    o = view.latest.get(condition)
    return o is not None and o.present is True


def _every(o: Observation, voters: Sequence[LeadView]) -> Observation:
    """``o``'s condition as all ``voters`` see it: present if every one says so (the
    shortest duration among them), absent if any says not, no news otherwise."""
    seen = [v.latest.get(o.condition) for v in voters]
    if any(s is not None and s.present is False for s in seen):
        return o if o.present is False else replace(o, present=False, held_s=0.0)
    if all(s is not None for s in seen):
        held = min(s.held_s for s in seen if s is not None)
        return o if o.held_s == held else replace(o, held_s=held)
    return replace(o, present=None)


def _any(o: Observation, voters: Sequence[LeadView]) -> Observation:
    """``o``'s condition (present or absent) as any of ``voters`` sees it: present, with
    that lead's observation (this lead's first), if one does; else absent."""
    if o.present:
        return o
    present = [s for v in voters if (s := v.latest.get(o.condition)) is not None and s.present]
    if present:
        return present[0]
    return o


def views_to_dict(views: Mapping[str, LeadView]) -> dict[str, Any]:
    return {name: {"until_us": v.until_us,
                   "latest": {c: [o.present, o.value, o.limit, o.unit, o.detail, o.held_s] for c, o in v.latest.items()}}
            for name, v in views.items()}


def views_from_dict(doc: Any) -> dict[str, LeadView]:
    try:
        return {str(name): LeadView(int(v["until_us"]), {
            str(c): Observation(str(c), bool(p), None if val is None else float(val),
                                None if lim is None else float(lim), str(unit), str(detail), float(held))
            for c, (p, val, lim, unit, detail, held) in v["latest"].items()}) for name, v in doc.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"lead views are malformed: {e!r}") from None
