"""The alarm engine (detectors/alarms.py and its modules): limits and care areas,
delays, hysteresis, latching, de-duplication, escalation, acknowledge and silence,
suppression by technical conditions, NEWS2 risk alarms, serialisation and
determinism. Time is passed in; nothing here reads a clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from detectors.alarm_conditions import CONDITIONS, NEWS2_CLEAR_S, ConditionSpec, Observation, Priority
from detectors.alarm_decisions import (
    AlarmAcknowledged,
    AlarmCleared,
    AlarmEscalated,
    AlarmLimitsChanged,
    AlarmRaised,
    ALARM_DECISIONS,
    AlarmDecision,
    AlarmSilenced,
    CommandRejected,
    Decision,
)
from detectors.alarm_inputs import Acknowledge, AlarmInputs, ChangeLimits, Command, Silence, VitalsInput
from detectors.alarm_limits import CARE_AREAS, AlarmLimits, AlarmLimitsError, default_limits
from detectors.alarm_state import AlarmState, AlarmStateError
from detectors.alarms import AlarmEngine, AlarmPolicy, derived_alert_id
from detectors.news2 import parse_observation, score_news2

ENGINE = AlarmEngine()


def fresh(care_area: str = "icu") -> AlarmState:
    return ENGINE.new_state("p1", care_area)


def vitals(**values: float) -> AlarmInputs:
    return AlarmInputs(vitals=VitalsInput(values))


def obs(condition: str, present: bool | None, **kw: Any) -> AlarmInputs:
    return AlarmInputs(observations=[Observation(condition, present, **kw)])


def cmd(*commands: Command) -> AlarmInputs:
    return AlarmInputs(commands=commands)


def run(steps: Sequence[tuple[float, AlarmInputs]], state: AlarmState | None = None,
        engine: AlarmEngine = ENGINE) -> tuple[AlarmState, list[Decision]]:
    st, out = state or fresh(), []
    for now, inputs in steps:
        st, decisions = engine.step(st, inputs, now)
        out += decisions
    return st, out


def alarms_in(decisions: Sequence[Decision]) -> list[AlarmDecision]:
    return [d for d in decisions if isinstance(d, ALARM_DECISIONS)]


def kinds(decisions: Sequence[Decision]) -> list[str]:
    return [f"{type(d).__name__}:{getattr(d, 'condition', '')}" for d in decisions]


# -- limits -----------------------------------------------------------------------------------------


def test_every_care_area_has_every_parameter_and_differs() -> None:
    assert set(CARE_AREAS) == {"icu", "step-down", "ward"}
    assert default_limits("icu")["hr"].high == 120 and default_limits("ward")["hr"].high == 130
    assert default_limits("icu")["spo2"].high is None  # switched off for adults on air


@pytest.mark.parametrize(("changes", "field"), [
    ({"hr": {"low": "fifty"}}, "hr.low"),
    ({"hr": {"low": True}}, "hr.low"),
    ({"hr": {"low": float("nan")}}, "hr.low"),
    ({"hr": {"low": 130}}, "hr.high"),              # low above high
    ({"hr": {"low": 116, "high": 120}}, "hr.high"), # closer than twice the hysteresis
    ({"spo2": {"low": 101}}, "spo2.low"),           # implausible
    ({"temp": {"hysteresis": 3}}, "temp.hysteresis"),
    ({"rr": {"delay_s": -1}}, "rr.delay_s"),
    ({"rr": {"delay_s": 301}}, "rr.delay_s"),
    ({"bp": {"low": 1}}, "bp"),
    ({"sbp": {"lo": 80}}, "sbp.lo"),
    ({"sbp": 80}, "sbp"),
    ([1, 2], "limits"),
    ({"spo2_scale": 3}, "spo2_scale"),
    ({"spo2_scale": True}, "spo2_scale"),
    ({"spo2_scale": "2"}, "spo2_scale"),
])
def test_bad_limit_changes_name_the_field(changes: Any, field: str) -> None:
    with pytest.raises(AlarmLimitsError) as e:
        default_limits("icu").changed(changes)
    assert e.value.field == field and str(e.value).startswith(f"{field}: ")


def test_a_valid_change_touches_only_what_it_names() -> None:
    before = default_limits("icu")
    after = before.changed({"hr": {"low": 40, "delay_s": 5}, "spo2": {"high": 98}})
    assert (after["hr"].low, after["hr"].high, after["hr"].delay_s) == (40, 120, 5)
    assert after["spo2"].high == 98 and after["rr"] == before["rr"]
    assert after.changed({"spo2": {"high": None}})["spo2"].high is None
    assert AlarmLimits.from_dict(json.loads(json.dumps(after.to_dict()))) == after


def test_the_news2_spo2_scale_is_set_with_the_limits_and_kept_through_other_changes() -> None:
    before = default_limits("icu")
    assert before.spo2_scale == 1 and "spo2_scale" not in before.to_dict()  # stored limits from before read the same
    scale2 = before.changed({"spo2_scale": 2, "spo2": {"low": 86}})
    assert scale2.spo2_scale == 2 and scale2["spo2"].low == 86
    assert scale2.changed({"hr": {"high": 110}}).spo2_scale == 2
    assert AlarmLimits.from_dict(json.loads(json.dumps(scale2.to_dict()))) == scale2
    assert scale2.changed({"spo2_scale": 1}) == before.changed({"spo2": {"low": 86}})


def test_a_limits_command_sets_the_scale_the_engine_records() -> None:
    st, out = run([(0, cmd(ChangeLimits({"spo2_scale": 2}, by="dr1")))])
    assert isinstance(out[0], AlarmLimitsChanged) and out[0].limits["spo2_scale"] == 2 and st.limits.spo2_scale == 2


def test_unknown_care_area_is_an_error() -> None:
    with pytest.raises(AlarmLimitsError, match="care_area: unknown care area 'cardio'"):
        default_limits("cardio")


# -- delays and hysteresis ----------------------------------------------------------------------------


def test_limit_alarm_waits_for_its_delay_boundary_included() -> None:
    # ICU heart rate: high 120, delay 10 s.
    st, out = run([(0, vitals(hr=130)), (5, vitals(hr=131)), (9.999, vitals(hr=132))])
    assert out == [] and st.pending == {"hr_high": 0}
    st, out = run([(10, vitals(hr=133))], st)
    assert out == [AlarmRaised(derived_alert_id("p1", "hr_high", 0.0, 1), "p1", "hr_high", Priority.MEDIUM,
                               "Heart rate high: 133 bpm (limit 120 bpm)", 133, 120, 10, False, 0)]


def test_a_dip_inside_the_delay_restarts_it() -> None:
    _, out = run([(0, vitals(hr=130)), (6, vitals(hr=119)), (8, vitals(hr=130)), (17, vitals(hr=130)),
                  (18, vitals(hr=130))])
    assert [(d.at, d.condition) for d in out if isinstance(d, AlarmRaised)] == [(18, "hr_high")]


def test_missing_value_neither_starts_nor_breaks_the_delay() -> None:
    _, out = run([(0, vitals(hr=130)), (5, vitals(spo2=97)), (10, vitals(hr=130))])
    assert kinds(out) == ["AlarmRaised:hr_high"]


def test_delay_is_per_parameter_and_per_patient() -> None:
    st = fresh()
    st, _ = ENGINE.step(st, cmd(ChangeLimits({"hr": {"delay_s": 0}}, by="rn1")), 0)
    _, out = run([(1, vitals(hr=130, spo2=85))], st)
    assert kinds(out) == ["AlarmRaised:hr_high"]  # SpO2 still has its 15 s


def test_hysteresis_on_clearing() -> None:
    # ICU SpO2: low 90, hysteresis 2, delay 15 s.
    st, out = run([(0, vitals(spo2=88)), (15, vitals(spo2=89)), (20, vitals(spo2=91)), (25, vitals(spo2=91.9))])
    assert kinds(out) == ["AlarmRaised:spo2_low"]
    st, out = run([(30, vitals(spo2=92))], st)
    assert kinds(out) == ["AlarmCleared:spo2_low"]
    assert isinstance(out[0], AlarmCleared) and out[0].reason == "condition_ended"
    assert out[0].message == "SpO2 low ended: 92 % (limit 90 %)"


def test_pending_condition_uses_the_limit_itself_not_the_hysteresis() -> None:
    _, out = run([(0, vitals(spo2=89)), (10, vitals(spo2=91)), (20, vitals(spo2=89))])
    assert out == []  # 91 is within limits, so the delay restarted at 20


def test_held_time_reported_by_a_detector_counts_towards_the_delay() -> None:
    # ecg_noise has a 4 s delay.
    _, out = run([(100, obs("ecg_noise", True, held_s=4.0))])
    assert kinds(out) == ["AlarmRaised:ecg_noise"] and isinstance(out[0], AlarmRaised) and out[0].onset == 96
    _, out = run([(100, obs("ecg_noise", True, held_s=3.9))])
    assert out == []


# -- latching, de-duplication, acknowledge -------------------------------------------------------------------


def test_one_alarm_per_condition_while_it_lasts() -> None:
    st, out = run([(t, obs("asystole", True, value=5.0, limit=4.0, unit="s")) for t in range(0, 30, 2)])
    assert kinds(out) == ["AlarmRaised:asystole"]
    assert list(st.alarms) == ["asystole"] and st.seq == 1


def test_high_priority_latches_until_acknowledged() -> None:
    st, out = run([(0, obs("ventricular_tachycardia", True, value=150, limit=100, unit="bpm")),
                   (2, obs("ventricular_tachycardia", False, value=80, limit=100, unit="bpm"))])
    assert kinds(out) == ["AlarmRaised:ventricular_tachycardia"]
    alarm = st.alarms["ventricular_tachycardia"]
    assert not alarm.condition_present and alarm.audible(2)
    st, out = run([(5, cmd(Acknowledge(alarm.alert_id, by="rn1")))], st)
    assert kinds(out) == ["AlarmAcknowledged:ventricular_tachycardia", "AlarmCleared:ventricular_tachycardia"]
    assert isinstance(out[1], AlarmCleared) and out[1].reason == "acknowledged"
    assert isinstance(out[0], AlarmAcknowledged) and (out[0].by, out[0].condition_present) == ("rn1", False)
    assert st.alarms == {}


def test_medium_priority_does_not_latch() -> None:
    _, out = run([(0, obs("ecg_leads_off", True)), (2, obs("ecg_leads_off", False))])
    assert kinds(out) == ["AlarmRaised:ecg_leads_off", "AlarmCleared:ecg_leads_off"]


def test_acknowledged_alarm_stays_while_present_silently_then_clears() -> None:
    st, out = run([(0, obs("asystole", True))])
    alert = out[0]
    assert isinstance(alert, AlarmRaised)
    st, out = run([(3, cmd(Acknowledge(alert.alert_id, "rn1"))), (4, obs("asystole", True)),
                   (500, obs("asystole", True))], st)
    assert kinds(out) == ["AlarmAcknowledged:asystole"]  # no escalation once acknowledged
    assert not st.alarms["asystole"].audible(500)
    st, out = run([(501, obs("asystole", False))], st)
    assert kinds(out) == ["AlarmCleared:asystole"]


def test_a_new_episode_after_clearing_is_a_new_alarm_with_a_new_id() -> None:
    _, out = run([(0, obs("ecg_leads_off", True)), (2, obs("ecg_leads_off", False)), (4, obs("ecg_leads_off", True))])
    raised = [d for d in out if isinstance(d, AlarmRaised)]
    assert len(raised) == 2 and raised[0].alert_id != raised[1].alert_id


@pytest.mark.parametrize(("command", "reason"), [
    (Acknowledge("nope", "rn1"), "unknown_alert"),
    (Silence("nope", 60, "rn1"), "unknown_alert"),
    (Silence(None, 0, "rn1"), "invalid_silence"),
    (Silence(None, 121, "rn1"), "invalid_silence"),
])
def test_commands_that_change_nothing_are_rejected_with_a_reason(command: Command, reason: str) -> None:
    st, _ = run([(0, obs("asystole", True))])
    after, out = ENGINE.step(st, cmd(command), 1)
    assert len(out) == 1 and isinstance(out[0], CommandRejected) and out[0].reason == reason
    assert after.alarms == st.alarms


def test_acknowledging_twice_and_silencing_nothing_are_rejected() -> None:
    st, out = run([(0, obs("asystole", True))])
    alert_id = alarms_in(out)[0].alert_id
    _, out = run([(1, cmd(Acknowledge(alert_id, "rn1"), Acknowledge(alert_id, "rn2"), Silence(None, 60, "rn2")))], st)
    assert [getattr(d, "reason", None) for d in out] == [None, "already_acknowledged", "no_active_alarm"]


# -- silence and escalation --------------------------------------------------------------------------------


def test_silence_pauses_audio_for_its_duration() -> None:
    st, out = run([(0, obs("asystole", True)), (0, obs("ecg_leads_off", True))])
    st, out = run([(10, cmd(Silence(None, 60, "rn1")))], st)
    assert kinds(out) == ["AlarmSilenced:asystole", "AlarmSilenced:ecg_leads_off"]
    assert isinstance(out[0], AlarmSilenced) and out[0].until == 70
    alarm = st.alarms["asystole"]
    assert not alarm.audible(69.9) and alarm.audible(70)


def test_escalation_after_the_configured_time_and_no_further_than_allowed() -> None:
    # Medium escalates after 120 s, high after 60 s, at most twice.
    st, out = run([(0, obs("ecg_leads_off", True)), (119.9, AlarmInputs())])
    assert kinds(out) == ["AlarmRaised:ecg_leads_off"]
    st, out = run([(120, AlarmInputs())], st)
    assert len(out) == 1 and isinstance(out[0], AlarmEscalated)
    assert (out[0].previous_priority, out[0].priority, out[0].level) == (Priority.MEDIUM, Priority.HIGH, 1)
    assert "unacknowledged for 120 s" in out[0].message
    st, out = run([(179.9, AlarmInputs()), (180, AlarmInputs())], st)
    assert [(d.priority, d.level) for d in out if isinstance(d, AlarmEscalated)] == [(Priority.HIGH, 2)]
    assert len(out) == 1
    st, out = run([(10_000, AlarmInputs())], st)
    assert out == [] and st.alarms["ecg_leads_off"].escalation_level == 2


def test_escalation_catches_up_after_a_long_gap_and_ends_a_silence() -> None:
    st, _ = run([(0, obs("ecg_noise", True, held_s=4)), (10, cmd(Silence(None, 120, "rn1")))])
    assert not st.alarms["ecg_noise"].audible(100)
    st, out = run([(500, AlarmInputs())], st)  # low: 300 s to medium, then 120 s to high
    assert [(d.priority, d.level) for d in out if isinstance(d, AlarmEscalated)] == [
        (Priority.MEDIUM, 1), (Priority.HIGH, 2)]
    assert len(out) == 2
    assert st.alarms["ecg_noise"].escalated_at == 420 and st.alarms["ecg_noise"].audible(500)


def test_silence_does_not_stop_escalation_but_acknowledge_does() -> None:
    st, out = run([(0, obs("asystole", True)), (1, cmd(Silence(None, 120, "rn1"))), (60, AlarmInputs())])
    assert kinds(out)[-1] == "AlarmEscalated:asystole"
    st, out = run([(0, obs("asystole", True)), (1, cmd(Acknowledge(alarms_in(out)[0].alert_id, "rn1"))),
                   (600, AlarmInputs())])
    assert "AlarmEscalated:asystole" not in kinds(out)


def test_escalation_time_is_configurable() -> None:
    engine = AlarmEngine(AlarmPolicy(escalate_after_s={Priority.HIGH: 10, Priority.MEDIUM: 20, Priority.LOW: 30},
                                     max_escalations=1))
    _, out = run([(0, obs("asystole", True)), (9, AlarmInputs()), (10, AlarmInputs()), (100, AlarmInputs())],
                 engine=engine)
    assert [(type(d).__name__, d.at) for d in out] == [("AlarmRaised", 0), ("AlarmEscalated", 10)]


# -- suppression -------------------------------------------------------------------------------------------


def test_leads_off_suppresses_asystole_and_raises_a_technical_alarm() -> None:
    both = AlarmInputs(observations=[Observation("ecg_leads_off", True), Observation("asystole", True)])
    _, out = run([(0, both), (10, both)])
    assert kinds(out) == ["AlarmRaised:ecg_leads_off"]
    assert isinstance(out[0], AlarmRaised) and out[0].technical and out[0].priority is Priority.MEDIUM


def test_suppression_holds_an_alarm_already_raised() -> None:
    st, _ = run([(0, obs("asystole", True))])
    both = AlarmInputs(observations=[Observation("ecg_leads_off", True), Observation("asystole", False)])
    st, out = run([(5, both)], st)
    assert kinds(out) == ["AlarmRaised:ecg_leads_off"] and st.alarms["asystole"].condition_present


def test_technical_alarm_still_alarming_suppresses_without_news() -> None:
    st, _ = run([(0, obs("ecg_noise", True, held_s=5))])
    _, out = run([(1, obs("extreme_tachycardia", True))], st)
    assert out == []


def test_a_technical_alarm_whose_condition_flickers_stays_raised_until_its_clear_delay_runs() -> None:
    assert CONDITIONS["ecg_noise"].clear_delay_s == 10.0
    steps = [(0, obs("ecg_noise", True, held_s=4)), (2, obs("ecg_noise", False)), (6, obs("ecg_noise", True)),
             (8, obs("ecg_noise", False)), (12, obs("ecg_noise", False)), (17.9, obs("ecg_noise", False))]
    st, out = run(steps)
    assert kinds(out) == ["AlarmRaised:ecg_noise"]  # one alarm, not one per burst
    held = st.alarms["ecg_noise"]
    assert not held.condition_present and held.absent_since == 8
    assert AlarmState.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    st, out = run([(18, obs("ecg_noise", False))], st)  # 10 s absent since 8
    assert kinds(out) == ["AlarmCleared:ecg_noise"] and "ecg_noise" not in st.alarms


def test_a_technical_alarm_in_its_clear_delay_no_longer_suppresses() -> None:
    st, _ = run([(0, obs("ecg_noise", True, held_s=5)), (1, obs("ecg_noise", False))])
    assert "ecg_noise" in st.alarms
    _, out = run([(2, obs("extreme_tachycardia", True))], st)
    assert kinds(out) == ["AlarmRaised:extreme_tachycardia"]


def test_an_alarm_state_from_before_clear_delays_loads() -> None:
    st, _ = run([(0, obs("ecg_noise", True, held_s=5))])
    doc = st.to_dict()
    del doc["alarms"]["ecg_noise"]["absent_since"]
    assert AlarmState.from_dict(doc) == st


def test_noise_suppresses_rate_arrhythmias_but_not_vt_or_vf() -> None:
    # VT and VF guard against noise themselves (a wide-complex VT or a flutter is what the quality index calls noise).
    inputs = AlarmInputs(observations=[
        Observation("ecg_noise", True, held_s=6), Observation("extreme_tachycardia", True),
        Observation("extreme_bradycardia", True), Observation("asystole", True),
        Observation("ventricular_tachycardia", True), Observation("ventricular_fibrillation", True)])
    _, out = run([(0, inputs)])
    assert kinds(out) == ["AlarmRaised:ventricular_tachycardia", "AlarmRaised:ventricular_fibrillation",
                          "AlarmRaised:ecg_noise"]
    leads_off = AlarmInputs(observations=[Observation("ecg_leads_off", True), Observation("ventricular_tachycardia", True),
                                          Observation("ventricular_fibrillation", True)])
    _, out = run([(0, leads_off)])
    assert kinds(out) == ["AlarmRaised:ecg_leads_off"]


@pytest.mark.parametrize("probe_off", [
    VitalsInput({"spo2": 0, "hr": 80}),
    VitalsInput({"hr": 80}, pleth_present=False),
])
def test_spo2_probe_off_suppresses_low_spo2(probe_off: VitalsInput) -> None:
    steps = [(float(t), AlarmInputs(vitals=probe_off)) for t in range(0, 31, 5)]
    _, out = run(steps)
    assert kinds(out) == ["AlarmRaised:spo2_probe_off"]
    assert isinstance(out[0], AlarmRaised) and out[0].at == 10 and out[0].technical


def test_missing_spo2_with_pleth_present_or_unknown_is_not_probe_off() -> None:
    _, out = run([(float(t), AlarmInputs(vitals=VitalsInput({"hr": 80}, pleth_present=p)))
                  for t in range(0, 60, 5) for p in (True, None)])
    assert out == []


def test_probe_off_restarts_the_low_spo2_delay() -> None:
    steps = [(0, vitals(spo2=85)), (10, AlarmInputs(vitals=VitalsInput({"spo2": 0}))),
             (12, vitals(spo2=85)), (26, vitals(spo2=85)), (27, vitals(spo2=85))]
    _, out = run(steps)
    assert [(d.condition, d.at) for d in out if isinstance(d, AlarmRaised)] == [("spo2_low", 27)]


# -- NEWS2 ------------------------------------------------------------------------------------------------


def news2(**overrides: Any) -> AlarmInputs:
    doc = {"rr": 16, "spo2": 97, "oxygen": False, "sbp": 120, "hr": 70, "acvpu": "A", "temp": 37.0} | overrides
    return AlarmInputs(news2=score_news2(parse_observation(doc)))


def test_news2_risk_bands_raise_alarms_of_matching_priority() -> None:
    st, out = run([(0, news2())])
    assert out == []
    # rr 22 (2) + hr 95 (1) + temp 38.5 (1) + spo2 95 (1) = 5: medium risk.
    st, out = run([(60, news2(rr=22, hr=95, temp=38.5, spo2=95))], st)
    assert [(d.condition, d.priority) for d in alarms_in(out)] == [("news2_medium", Priority.MEDIUM)]
    assert alarms_in(out)[0].message == "NEWS2 medium clinical risk: 5 points (limit 5 points)"
    # + sbp 95 (2) = 7: high risk. A high alarm starts; the medium one ends once the
    # medium band has been gone NEWS2_CLEAR_S.
    high = news2(rr=22, hr=95, temp=38.5, spo2=95, sbp=95)
    st, out = run([(120, high)], st)
    assert kinds(out) == ["AlarmRaised:news2_high"]
    assert alarms_in(out)[0].priority is Priority.HIGH
    st, out = run([(120 + NEWS2_CLEAR_S - 1, high)], st)
    assert out == []
    st, out = run([(120 + NEWS2_CLEAR_S, high)], st)
    assert "AlarmCleared:news2_medium" in kinds(out) and "AlarmCleared:news2_high" not in kinds(out)
    # Back to low risk: news2_high is high priority, so it latches.
    st, out = run([(300, news2())], st)
    assert not [k for k in kinds(out) if not k.startswith("AlarmEscalated")] and not st.alarms["news2_high"].condition_present
    assert "news2_high" in st.alarms


def test_a_news2_band_flickering_at_its_edge_holds_one_alarm() -> None:
    medium, low = news2(rr=22, hr=95, temp=38.5, spo2=95), news2()
    steps = [(float(t), medium if t % 3 else low) for t in range(0, 90)]  # out of the band one second in three
    st, out = run(steps)
    assert kinds(out) == ["AlarmRaised:news2_medium"]
    # Gone for good from t = 90: cleared NEWS2_CLEAR_S later.
    st, out = run([(float(t), low) for t in range(90, 90 + int(NEWS2_CLEAR_S) + 1)], st)
    assert [(kind, d.at) for kind, d in zip(kinds(out), out, strict=True) if not kind.startswith("AlarmEscalated")] \
        == [("AlarmCleared:news2_medium", 90 + NEWS2_CLEAR_S)]  # (escalated meanwhile: nobody acknowledged it)


def test_news2_single_parameter_three_is_low_priority() -> None:
    _, out = run([(0, news2(acvpu="V"))])
    assert [(d.condition, d.priority) for d in alarms_in(out)] == [("news2_low_medium", Priority.LOW)]


# -- limit changes as commands ------------------------------------------------------------------------------


def test_limit_change_applies_in_the_same_step_and_is_recorded() -> None:
    change = ChangeLimits({"hr": {"high": 100, "delay_s": 0}}, by="dr1")
    st, out = run([(0, AlarmInputs(vitals=VitalsInput({"hr": 110}), commands=[change]))])
    assert kinds(out) == ["AlarmLimitsChanged:", "AlarmRaised:hr_high"]
    assert isinstance(out[0], AlarmLimitsChanged) and out[0].limits["hr"]["high"] == 100 and out[0].by == "dr1"
    assert st.limits["hr"].high == 100


def test_bad_limit_change_is_rejected_naming_the_field_and_changes_nothing() -> None:
    st, out = run([(0, cmd(ChangeLimits({"hr": {"low": 200}}, by="dr1")))])
    assert len(out) == 1 and isinstance(out[0], CommandRejected) and out[0].reason == "invalid_limits"
    assert out[0].detail.startswith("hr.high:") and st.limits == default_limits("icu")


def test_transfer_resets_to_the_new_care_area() -> None:
    st, _ = run([(0, cmd(ChangeLimits({"hr": {"high": 100}}, by="dr1")))])
    st, _ = run([(1, cmd(ChangeLimits({}, by="rn2", care_area="ward")))], st)
    assert st.limits == default_limits("ward")


def test_switching_a_limit_off_clears_its_alarm() -> None:
    st, _ = run([(0, vitals(temp=39.0))])
    assert "temp_high" in st.alarms
    _, out = run([(1, AlarmInputs(vitals=VitalsInput({"temp": 39.0}),
                                  commands=[ChangeLimits({"temp": {"high": None}}, by="dr1")]))], st)
    assert kinds(out) == ["AlarmLimitsChanged:", "AlarmCleared:temp_high"]


# -- state, determinism, contract -----------------------------------------------------------------------------


SCENARIO: list[tuple[float, AlarmInputs]] = [
    (0, vitals(hr=130, spo2=88)), (10, vitals(hr=131, spo2=87)), (15, vitals(hr=90, spo2=86)),
    (16, obs("asystole", True, value=4.5, limit=4, unit="s")), (17, obs("ecg_leads_off", True)),
    (18, obs("asystole", False)), (20, cmd(Silence(None, 60, "rn1"))), (200, AlarmInputs()),
]


def test_state_round_trips_through_json_and_behaves_the_same() -> None:
    st, _ = run(SCENARIO)
    st, _ = ENGINE.step(st, vitals(hr=130), 201)
    assert st.pending == {"hr_high": 201}
    assert set(st.alarms) == {"spo2_low", "asystole", "ecg_leads_off"}
    assert {a.escalation_level for a in st.alarms.values()} == {2}
    doc = json.loads(json.dumps(st.to_dict()))
    restored = AlarmState.from_dict(doc)
    assert restored == st
    nxt = AlarmInputs(vitals=VitalsInput({"hr": 60, "spo2": 99}))
    assert ENGINE.step(restored, nxt, 300) == ENGINE.step(st, nxt, 300)


def test_a_restored_state_raises_byte_identical_alarms() -> None:
    """Events are compared as stored JSON: a limit of 45 and one of 45.0 are equal in
    Python but not in the event store, so a restore must not change a number's type."""
    new = fresh("ward")
    restored = AlarmState.from_dict(json.loads(json.dumps(new.to_dict())))
    low_hr = [(t, vitals(hr=40)) for t in range(0, 40)]
    _, from_fresh = run(low_hr, new)
    _, from_restored = run(low_hr, restored)
    assert "AlarmRaised:hr_low" in kinds(from_fresh)
    assert json.dumps([d.to_dict() for d in from_restored]) == json.dumps([d.to_dict() for d in from_fresh])


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.update(state_version=99), "state_version"),
    (lambda d: d.update(seq="1"), "state.seq"),
    (lambda d: d["alarms"]["asystole"].update(priority="urgent"), "alarms.asystole.priority"),
    (lambda d: d["alarms"]["asystole"].update(onset=None), "alarms.asystole.onset"),
])
def test_corrupt_state_is_rejected_naming_where(mutate: Any, field: str) -> None:
    st, _ = run(SCENARIO)
    doc = json.loads(json.dumps(st.to_dict()))
    mutate(doc)
    with pytest.raises(AlarmStateError) as e:
        AlarmState.from_dict(doc)
    assert e.value.field == field


def test_same_inputs_same_alarms_and_ids() -> None:
    _, a = run(SCENARIO, engine=AlarmEngine())
    _, b = run(SCENARIO, engine=AlarmEngine())
    assert a == b and len(a) >= 5
    raised = [d for d in a if isinstance(d, AlarmRaised)]
    assert [d.alert_id for d in raised] == [derived_alert_id("p1", d.condition, d.onset, i + 1)
                                            for i, d in enumerate(raised)]
    # Change aversion: ids are stored in events, so the derivation must never change.
    assert derived_alert_id("p1", "asystole", 16.0, 3) == "8bfdc4a9-56c1-50fe-9922-ecd6451862c3"
    assert json.loads(json.dumps([d.to_dict() for d in a])) == [d.to_dict() for d in a]


def test_caller_supplied_alert_ids() -> None:
    engine = AlarmEngine(alert_id=lambda patient, condition, onset, seq: f"{patient}/{condition}/{onset:g}/{seq}")
    _, out = run([(5, obs("asystole", True)), (7, obs("ecg_leads_off", True))], engine=engine)
    assert [d.alert_id for d in alarms_in(out)] == ["p1/asystole/5/1", "p1/ecg_leads_off/7/2"]


def test_time_never_runs_backwards() -> None:
    st, out = run([(100, obs("ecg_leads_off", True)), (50, obs("ecg_leads_off", False))])
    assert [d.at for d in alarms_in(out)] == [100, 100] and st.clock == 100
    with pytest.raises(ValueError, match="finite"):
        ENGINE.step(st, AlarmInputs(), float("nan"))


def test_unknown_condition_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="unknown condition 'ghost'"):
        ENGINE.step(fresh(), obs("ghost", True), 0)


def test_policy_rejects_dangling_suppression_and_bad_timings() -> None:
    with pytest.raises(ValueError, match="unknown conditions"):
        AlarmPolicy(conditions={"a": ConditionSpec("a", "A", Priority.HIGH, suppressed_by=frozenset({"b"}))})
    with pytest.raises(ValueError, match="escalate_after_s"):
        AlarmPolicy(escalate_after_s={Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 1})


def test_catalogue_priorities_follow_the_design() -> None:
    high = {n for n, s in CONDITIONS.items() if s.priority is Priority.HIGH}
    assert high == {"news2_high", "asystole", "extreme_bradycardia", "extreme_tachycardia",
                    "ventricular_tachycardia", "ventricular_fibrillation"}
    assert all(s.latches == (s.priority is Priority.HIGH) for s in CONDITIONS.values())
    assert {n for n, s in CONDITIONS.items() if s.technical} == {"ecg_leads_off", "ecg_flat_line", "ecg_noise",
                                                                 "ecg_lead_fault", "spo2_probe_off"}


def test_limit_observations_for_an_engine_leave_out_only_what_changes_nothing() -> None:
    from detectors.vital_alarms import limit_observations, news2_observations

    limits = default_limits("ward").changed({"temp": {"high": None}})
    readings = [{"hr": 150.0, "spo2": 0.0, "rr": 16.0, "temp": 39.5}, {"hr": 80.0, "sbp": 85.0},
                {"hr": 129.0, "spo2": 97.0, "dbp": 120.0, "temp": 36.0}, {}]
    for values in readings:
        for busy in (set(), {"hr_high", "temp_high"}, {"sbp_low", "spo2_low", "news2_medium"}):
            full = limit_observations(VitalsInput(values), limits, {"hr_high"})
            kept = limit_observations(VitalsInput(values), limits, {"hr_high"}, busy)
            assert kept == [o for o in full if o.present or (o.present is False and o.condition in busy)]
            news2 = score_news2(parse_observation({"rr": 25, "spo2": 91, "oxygen": True, "sbp": 95, "hr": 120,
                                                   "acvpu": "A", "temp": 38.5}))
            assert news2_observations(news2, busy) == [o for o in news2_observations(news2)
                                                       if o.present or o.condition in busy]


def test_skipping_idle_observations_changes_no_decision() -> None:
    """The engine leaves out vitals observations that cannot change anything (absent,
    neither pending nor alarming); stepping with all of them gives the same run."""
    import random

    fast, full = AlarmEngine(), AlarmEngine()
    full._skip_idle = False
    rnd = random.Random(3)
    for patient in range(20):
        a = b = fast.new_state(f"p{patient}", "ward")
        now = 0.0
        for _ in range(300):
            now += rnd.choice([0.0, 1.0, 1.0, 5.0, 70.0])
            values = {k: round(v + rnd.gauss(0, 1) * s, 1) for k, (v, s) in
                      {"hr": (90, 30), "spo2": (95, 4), "rr": (18, 6), "sbp": (115, 25), "temp": (37.5, 1.2)}.items()
                      if rnd.random() > 0.1}
            commands: list[Command] = []
            if a.alarms and rnd.random() < 0.1:
                commands.append(Acknowledge(rnd.choice(list(a.alarms.values())).alert_id, "rn"))
            inputs = AlarmInputs(vitals=VitalsInput({k: max(v, 0.0) for k, v in values.items()}), commands=commands)
            a, da = fast.step(a, inputs, now)
            b, db = full.step(b, inputs, now)
            assert (a, da) == (b, db)
