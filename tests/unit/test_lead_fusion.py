"""The rules that make one set of ECG alarms out of several leads' reports."""

from __future__ import annotations

from detectors.alarm_conditions import CONDITIONS, Observation
from detectors.lead_fusion import LEAD_FAULT, STALE_S, LeadView, fuse, views_from_dict, views_to_dict

S = 1_000_000  # us
NAMES = ("asystole", "extreme_bradycardia", "extreme_tachycardia", "ventricular_tachycardia",
         "ventricular_fibrillation", "ecg_leads_off", "ecg_flat_line", "ecg_noise")


def report(**present: bool | None) -> tuple[Observation, ...]:
    """A lead's report: every condition, False unless given (None: no news)."""
    return tuple(Observation(n, present.get(n, False), held_s=2.0 if present.get(n) else 0.0) for n in NAMES)


def fused(*steps: tuple[str, tuple[Observation, ...], int]) -> dict[str, Observation]:
    """Feed (lead, report, end us) in order; the last step's observations by condition."""
    views: dict[str, LeadView] = {}
    out: tuple[Observation, ...] = ()
    for lead, obs, now in steps:
        views, out = fuse(views, lead, obs, now)
    return {o.condition: o for o in out}


def test_the_fault_condition_is_in_the_catalogue() -> None:
    assert CONDITIONS[LEAD_FAULT].technical and CONDITIONS[LEAD_FAULT].suppressed_by == frozenset()
    assert not any(LEAD_FAULT in spec.suppressed_by for spec in CONDITIONS.values())


def test_one_lead_is_the_patient() -> None:
    obs = report(asystole=True, ecg_noise=True)
    out = fused(("II", obs, 10 * S))
    assert tuple(out.values())[:-1] == obs and out[LEAD_FAULT].present is False


def test_asystole_rate_alarms_and_fibrillation_need_every_lead_that_is_on() -> None:
    for rule in ("asystole", "extreme_bradycardia", "extreme_tachycardia", "ventricular_fibrillation"):
        # One lead sees it, the other disproves it (QRS complexes, an organised rhythm): not present.
        assert fused(("V", report(), 10 * S), ("II", report(**{rule: True}), 10 * S))[rule].present is False
        assert fused(("II", report(**{rule: True}), 10 * S), ("V", report(), 10 * S))[rule].present is False
        both = fused(("V", report(**{rule: True}), 10 * S), ("II", report(**{rule: True}), 10 * S))[rule]
        assert both.present is True and both.held_s == 2.0
        # A noisy lead still votes (with one lead, noise suppresses these alarms).
        noisy = fused(("V", report(ecg_noise=True), 10 * S), ("II", report(**{rule: True}), 10 * S))
        assert noisy[rule].present is False and noisy["ecg_noise"].present is False


def test_a_lead_that_is_off_does_not_vote() -> None:
    for rule in ("asystole", "ventricular_fibrillation", "ventricular_tachycardia"):
        off = fused(("V", report(ecg_leads_off=True), 10 * S), ("II", report(**{rule: True}), 10 * S))
        assert off[rule].present is True and off["ecg_leads_off"].present is False
        assert off[LEAD_FAULT].present is True and off[LEAD_FAULT].detail == "V off"
    noisy = fused(("V", report(ecg_noise=True), 10 * S), ("II", report(), 10 * S))
    assert noisy[LEAD_FAULT].present is False  # noise alone is no fault to fix
    # With no lead left to vote: no news (leads off then holds for the patient, as with one lead).
    blind = fused(("V", report(ecg_leads_off=True), 10 * S), ("II", report(asystole=True, ecg_leads_off=True), 10 * S))
    assert blind["asystole"].present is None and blind["ecg_leads_off"].present is True


def test_ventricular_tachycardia_needs_one_lead_that_is_on() -> None:
    rule = "ventricular_tachycardia"
    assert fused(("V", report(**{rule: True}), 10 * S), ("II", report(), 10 * S))[rule].present is True
    assert fused(("V", report(**{rule: True}, ecg_noise=True), 10 * S), ("II", report(), 10 * S))[rule].present
    assert fused(("V", report(**{rule: True}, ecg_leads_off=True), 10 * S), ("II", report(), 10 * S))[rule].present \
        is False


def test_technical_conditions_hold_for_the_patient_only_on_every_lead() -> None:
    for rule in ("ecg_leads_off", "ecg_flat_line", "ecg_noise"):
        both = fused(("V", report(**{rule: True}), 10 * S), ("II", report(**{rule: True}), 10 * S))
        assert both[rule].present is True and both[LEAD_FAULT].present is False
        one = fused(("V", report(**{rule: True}), 10 * S), ("II", report(), 10 * S))
        assert one[rule].present is False
    flat = fused(("V", report(ecg_flat_line=True), 10 * S), ("II", report(), 10 * S))
    assert flat[LEAD_FAULT].present is True and flat[LEAD_FAULT].detail == "V flat"
    mixed = fused(("V", report(ecg_flat_line=True), 10 * S), ("II", report(ecg_leads_off=True), 10 * S))
    assert mixed[LEAD_FAULT].present is True and mixed[LEAD_FAULT].detail == "II off; V flat"


def test_no_news_stays_no_news() -> None:
    out = fused(("V", report(asystole=True), 10 * S), ("II", report(asystole=None, ventricular_tachycardia=None), 10 * S))
    assert out["asystole"].present is None and out["ventricular_tachycardia"].present is None
    # A lead that has never evaluated a condition leaves the others' verdict open.
    out = fused(("V", report(asystole=None), 10 * S), ("II", report(asystole=True), 10 * S))
    assert out["asystole"].present is None


def test_a_lead_that_stopped_sending_no_longer_votes() -> None:
    stale = round(STALE_S * S) + 1
    out = fused(("V", report(), 10 * S), ("II", report(asystole=True), 10 * S + stale))
    assert out["asystole"].present is True and out[LEAD_FAULT].present is False
    views, _ = fuse({}, "V", report(), 10 * S)
    views, _ = fuse(views, "II", report(), 10 * S + stale)
    assert list(views) == ["II"]


def test_views_round_trip() -> None:
    views, _ = fuse({}, "V", report(ecg_noise=True), 10 * S)
    views, _ = fuse(views, "II", (Observation("asystole", True, 4.5, 4.0, "s", "without QRS", 0.5),), 11 * S)
    assert views_from_dict(views_to_dict(views)) == views
