"""From ECG chunks to events: summaries, gaps, stale chunks, arrhythmia alarms,
and a restored state that carries on exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detectors.alarm_conditions import Priority
from detectors.alarms import AlarmEngine, AlarmPolicy
from detectors.beat_classifier import shared_classifier
from event_store.events import NewEvent
from event_store.integrity import encode_json
from processors.state import pack, unpack
from streams.ecg_codec import EcgChunk, Lead
from streams.ecg_pipeline import ENGINE, SUMMARY_S, EcgLead, EcgPatient, first_summary_s, process_chunk, waveform_of
from streams.ecg_synth import BeatKind, EcgConfig, Rhythm, SyntheticEcg, VtRun
from streams.vitals_codec import Rejected
from streams.vitals_pipeline import SourceRef

FS = 250
T0_US = 1_764_122_400_000_000


def chunks(seconds: int, config: EcgConfig | None = None, seed: int = 3) -> list[EcgChunk]:
    synth = SyntheticEcg(config or EcgConfig(sampling_rate=FS, hr_bpm=72), seed=seed, patient="p1")
    out = []
    for t in range(seconds):
        mv, _ = synth.next_chunk(FS)
        counts = np.round(np.nan_to_num(mv) / 0.005).astype(np.int16)
        out.append(EcgChunk("p1", "mon-1", Lead.II, FS, t, T0_US + t * 1_000_000, counts, 0.005))
    return out


def run(items: list[EcgChunk], state: EcgPatient | None = None, first_offset: int = 0
        ) -> tuple[EcgPatient | None, list[NewEvent]]:
    events: list[NewEvent] = []
    for i, chunk in enumerate(items):
        state, produced = process_chunk(state, chunk, SourceRef("ecg", 0, first_offset + i))
        events += produced
    return state, events


def as_stored(events: list[NewEvent]) -> list[tuple[str, str, str, str]]:
    return [(str(e.event_id), e.event_type, encode_json(e.payload), encode_json(e.metadata)) for e in events]


def test_summaries_every_ten_seconds_of_sinus_rhythm() -> None:
    _, events = run(chunks(40))
    summaries = [e for e in events if e.event_type == "EcgAnalyzed"]
    assert len(summaries) == 4
    last = summaries[-1].payload
    assert last["heart_rate"] is not None and abs(last["heart_rate"] - 72) < 4
    assert last["beats"] >= 10 and last["usable_beats"] == last["beats"]
    assert not [e for e in events if e.event_type == "AlertRaised"]  # clean sinus rhythm raises nothing


def test_a_chains_first_summary_comes_after_its_own_share_of_the_period() -> None:
    firsts = [first_summary_s(f"bed-{i}", "II") for i in range(1000)]
    counts = [firsts.count(s) for s in range(1, SUMMARY_S + 1)]
    assert sum(counts) == 1000 and min(counts) >= 60  # 1 to 10 s, spread over the ward
    # Two patients whose chains start together summarise in different seconds.
    a, b = next((f"bed-{i}", f"bed-{j}") for i in range(50) for j in range(50)
                if first_summary_s(f"bed-{i}", "II") == 3 and first_summary_s(f"bed-{j}", "II") == 8)
    for patient, first in ((a, 3), (b, 8)):
        _, events = run([replace(c, patient_id=patient) for c in chunks(30)])
        ends = [round(e.occurred_at.timestamp() - T0_US / 1e6) for e in events if e.event_type == "EcgAnalyzed"]
        assert ends == list(range(first, 31, SUMMARY_S))
        spans = [e.payload for e in events if e.event_type == "EcgAnalyzed"]
        assert spans[0]["from"].startswith("2025-11-26T02:00:00")  # the first covers the chain from its start


def test_asystole_raises_a_high_priority_alarm() -> None:
    config = EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(asystole_at_s=20.0))
    _, events = run(chunks(40, config))
    raised = [e.payload for e in events if e.event_type == "AlertRaised"]
    assert [(a["condition"], a["priority"]) for a in raised if a["condition"] == "asystole"] == [("asystole", "high")]
    first = next(e for e in events if e.event_type == "AlertRaised" and e.payload["condition"] == "asystole")
    # Raised within 4 s of the pause's threshold plus the chain's release latency.
    assert 24.0 <= (first.occurred_at.timestamp() - T0_US / 1e6) <= 30.0


def test_the_sites_escalation_time_reaches_the_ecg_alarms() -> None:
    config = EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(asystole_at_s=20.0))
    quick = AlarmEngine(AlarmPolicy(escalate_after_s={Priority.HIGH: 10.0, Priority.MEDIUM: 120.0,
                                                      Priority.LOW: 300.0}))
    timings = {}
    for name, engine in (("default", ENGINE), ("quick", quick)):
        state: EcgPatient | None = None
        events: list[NewEvent] = []
        for i, chunk in enumerate(chunks(45, config)):
            state, produced = process_chunk(state, chunk, SourceRef("ecg", 0, i), None, engine)
            events += produced
        timings[name] = [(e.event_type, e.occurred_at.timestamp()) for e in events
                         if e.payload.get("condition") == "asystole"]
    (kind, raised), = timings["default"]  # the default waits 60 s: nothing more within the run
    assert kind == "AlertRaised"
    assert [kind for kind, _ in timings["quick"]] == ["AlertRaised", "AlertEscalated"]
    assert timings["quick"][0][1] == raised and 10.0 <= timings["quick"][1][1] - raised <= 11.0


def test_a_gap_is_reported_and_a_stale_chunk_refused() -> None:
    items = chunks(20)
    state, _ = run(items[:10])
    assert state is not None
    with pytest.raises(Rejected) as stale:
        process_chunk(state, items[5], SourceRef("ecg", 0, 99))
    assert stale.value.reason == "stale_sequence"
    state, events = process_chunk(state, items[13], SourceRef("ecg", 0, 100))
    gaps = [e.payload for e in events if e.event_type == "EcgSignalGap"]
    assert gaps and gaps[0]["missing_chunks"] == 3 and gaps[0]["received_sequence"] == 13
    assert state.leads["II"].next_sequence == 14


def test_a_restored_state_gives_exactly_the_same_events() -> None:
    items = chunks(35, EcgConfig(sampling_rate=FS, hr_bpm=80, rhythm=Rhythm(asystole_at_s=25.0)))
    _, straight = run(items)
    state, first = run(items[:17])
    assert state is not None
    state.commands_through = 77
    restored = EcgPatient.restore(state.snapshot())
    assert restored.commands_through == 77
    _, rest = run(items[17:], restored, first_offset=17)
    assert first + rest == straight
    # As stored: equal dicts can still differ in text (45 against 45.0).
    assert as_stored(first + rest) == as_stored(straight)
    assert any(e.event_type == "AlertRaised" for e in straight)


def test_waveform_rows_keep_counts_and_scale() -> None:
    chunk = chunks(1)[0]
    row = waveform_of(chunk, SourceRef("ecg", 2, 7))
    assert row.sample_count == FS and row.scale_mv == pytest.approx(0.005)
    assert np.allclose(row.millivolts(), chunk.samples_mv())
    assert row.source == {"topic": "ecg", "partition": 2, "offset": 7, "sequence": 0}


def test_warm_up_runs() -> None:
    from streams.ecg_pipeline import warm_up

    warm_up()


def test_a_chunk_whose_clock_did_not_move_on_is_refused() -> None:
    items = chunks(12)
    state, _ = run(items[:10])
    assert state is not None
    before = state.snapshot()
    # A later sequence number (a gap) but the first-sample time of chunk 9: full
    # disclosure would file it under a start time already taken and drop it.
    bad = EcgChunk("p1", "mon-1", Lead.II, FS, 11, items[9].first_sample_us, items[11].samples, 0.005)
    with pytest.raises(Rejected) as refused:
        process_chunk(state, bad, SourceRef("ecg", 0, 10))
    assert refused.value.reason == "time_not_increasing"
    assert state.snapshot() == before  # nothing applied
    state, _ = process_chunk(state, items[10], SourceRef("ecg", 0, 11))  # the real next chunk is fine
    assert state.leads["II"].last_start_us == items[10].first_sample_us


def test_a_snapshot_from_before_the_start_time_was_kept_still_restores() -> None:
    state, _ = run(chunks(3))
    assert state is not None
    old = unpack(state.leads["II"].snapshot())
    del old["last_start_us"]
    restored = EcgLead.restore(pack(old))
    assert restored.last_start_us is None
    patient = replace(state, leads={"II": restored})
    patient, _ = process_chunk(patient, chunks(4)[3], SourceRef("ecg", 0, 3))  # no check until the next chunk
    assert patient.leads["II"].last_start_us == T0_US + 3_000_000


def test_a_snapshot_with_the_vf_samples_in_its_header_still_restores() -> None:
    """Snapshots carried the VF window's samples as base64 in the arrhythmia dict before
    they became an array of their own; both restore to the same state."""
    items = chunks(12)
    state, _ = run(items[:9])
    assert state is not None and state.leads["II"].arrhythmia.vf.buffer  # a partial window is held
    lead = state.leads["II"]
    old = unpack(lead.snapshot())
    assert old["arrhythmia"]["vf"]["buffer"] == ""
    del old["vf_samples"]
    old["arrhythmia"] = lead.arrhythmia.to_dict()
    restored_old, restored_new = EcgLead.restore(pack(old)), EcgLead.restore(lead.snapshot())
    assert restored_old.arrhythmia == restored_new.arrhythmia == lead.arrhythmia
    assert restored_old.snapshot() == restored_new.snapshot()
    _, rest_old = run(items[9:], replace(state, leads={"II": restored_old}), first_offset=9)
    _, rest_new = run(items[9:], EcgPatient.restore(state.snapshot()), first_offset=9)
    assert rest_old == rest_new


def test_a_snapshot_from_when_each_lead_was_a_patient_restores_as_a_patient_with_one_lead() -> None:
    """Until 2026-11-28 the worker kept a state per patient and lead, holding the
    alarms; such a snapshot restores into a patient with that one lead."""
    items = chunks(35, EcgConfig(sampling_rate=FS, hr_bpm=80, rhythm=Rhythm(asystole_at_s=25.0)))
    _, straight = run(items)
    state, first = run(items[:17])
    assert state is not None
    old = unpack(state.leads["II"].snapshot()) | {"offset": state.offset, "alarms": state.alarms.to_dict(),
                                                   "commands_through": 5}
    restored = EcgPatient.restore(pack(old))
    assert list(restored.leads) == ["II"] and restored.commands_through == 5 and restored.offset == 16
    _, rest = run(items[17:], restored, first_offset=17)
    assert as_stored(first + rest) == as_stored(straight)


# --- the beat classifier in the pipeline ------------------------------------------------------


def _with_truth(seconds: int, pvc_per_min: float, seed: int) -> tuple[list[EcgChunk], int]:
    """Chunks of a synthetic patient with PVCs, and how many PVCs were drawn."""
    synth = SyntheticEcg(EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(pvc_per_min=pvc_per_min)),
                         seed=seed, patient="p1")
    out, pvcs = [], 0
    for t in range(seconds):
        part = synth.next_chunk_annotated(FS)
        pvcs += int(np.count_nonzero(part.kinds == BeatKind.PVC))
        counts = np.round(np.nan_to_num(part.samples_mv) / 0.005).astype(np.int16)
        out.append(EcgChunk("p1", "mon-1", Lead.II, FS, t, T0_US + t * 1_000_000, counts, 0.005))
    return out, pvcs


def _classified(items: list[EcgChunk], state: EcgPatient | None = None, first_offset: int = 0
                ) -> tuple[EcgPatient | None, list[NewEvent]]:
    events: list[NewEvent] = []
    for i, chunk in enumerate(items):
        state, produced = process_chunk(state, chunk, SourceRef("ecg", 0, first_offset + i), shared_classifier())
        events += produced
    return state, events


@pytest.mark.parametrize(("pvc_per_min", "seed"), [(0.0, 5), (12.0, 5), (20.0, 8)])
def test_summaries_count_beats_by_class_with_the_model_that_classified_them(pvc_per_min: float, seed: int) -> None:
    items, pvcs = _with_truth(120, pvc_per_min, seed)
    _, events = _classified(items)
    summaries = [e.payload for e in events if e.event_type == "EcgAnalyzed"]
    assert len(summaries) == 12
    counted = {c: sum(s["beat_classes"][c] for s in summaries) for c in "NSVFQ"}
    assert sum(counted.values()) >= sum(s["beats"] for s in summaries) - 2  # every beat, but the last one waits
    assert counted["V"] >= 0.8 * pvcs and counted["V"] <= pvcs + 2
    assert counted["S"] + counted["F"] + counted["Q"] <= 2
    model = shared_classifier().provenance
    assert all(s["beat_model"] == {"model_version": model.version, "model_sha256": model.sha256} for s in summaries)


def test_without_a_classifier_summaries_have_no_classes() -> None:
    _, events = run(chunks(20))
    assert all("beat_classes" not in e.payload for e in events if e.event_type == "EcgAnalyzed")


def test_a_restored_state_classifies_exactly_as_before() -> None:
    items, pvcs = _with_truth(45, 15.0, 9)
    assert pvcs >= 5
    _, straight = _classified(items)
    state, first = _classified(items[:23])
    assert state is not None and state.leads["II"].beat_features is not None
    restored = EcgPatient.restore(state.snapshot())
    _, rest = _classified(items[23:], restored, first_offset=23)
    assert first + rest == straight
    assert any(e.payload.get("beat_classes", {}).get("V") for e in straight)


def test_classification_can_start_and_stop_mid_stream() -> None:
    items, _ = _with_truth(40, 12.0, 5)
    state, _ = run(items[:15])  # a worker without a classifier
    state, events = _classified(items[15:], state, first_offset=15)
    assert state is not None and state.leads["II"].beat_features is not None
    later = [e.payload for e in events if e.event_type == "EcgAnalyzed"][1:]  # whole periods with the classifier
    assert later and all(sum(s["beat_classes"].values()) >= s["beats"] - 2 for s in later)
    state, events = run(items[:0], state)  # nothing: the state is left as it was
    state, _ = process_chunk(state, _with_truth(41, 12.0, 5)[0][40], SourceRef("ecg", 0, 40))
    assert state.leads["II"].beat_features is None  # a worker without one drops the stream


@pytest.mark.parametrize(("rate_bpm", "beats"), [(110, 8), (130, 15)])
def test_a_run_of_ventricular_beats_raises_the_vt_alarm(rate_bpm: int, beats: int) -> None:
    # Each beat's class reaches the arrhythmia detector a chunk after the beat (once
    # the next beat is found), and the VT rule waits for it.
    config = EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(vt_runs=(VtRun(60.0, beats, rate_bpm),)))
    synth = SyntheticEcg(config, seed=1, patient="p1")
    items = []
    for t in range(80):
        mv, _ = synth.next_chunk(FS)
        counts = np.round(np.nan_to_num(mv) / 0.005).astype(np.int16)
        items.append(EcgChunk("p1", "mon-1", Lead.II, FS, t, T0_US + t * 1_000_000, counts, 0.005))
    _, events = _classified(items)
    raised = [e for e in events if e.event_type == "AlertRaised"]
    assert [e.payload["condition"] for e in raised] == ["ventricular_tachycardia"]
    assert raised[0].payload["priority"] == "high"
    assert 60 <= raised[0].occurred_at.timestamp() - T0_US / 1e6 <= 60 + 2 * beats * 60 / rate_bpm + 2
    # The alarm rests on the model's classes: it records which model, as the summaries do.
    model = shared_classifier().provenance
    assert raised[0].metadata["beat_model"] == {"model_version": model.version, "model_sha256": model.sha256}
    _, unclassified = run(items)
    assert not [e for e in unclassified if e.event_type == "AlertRaised"]  # no classes, no VT
    assert not [e for e in unclassified if "beat_model" in e.metadata]


@pytest.mark.parametrize(("hr_bpm", "waits"), [(72, True), (125, False)])
def test_beats_wait_for_the_summary_unless_the_vt_rule_may_need_their_classes(hr_bpm: int, waits: bool) -> None:
    # Under 100 bpm no five beats can make VT: the rows wait and go through the model
    # in one batch with the summary. Above it every chunk's rows are classified at once.
    items = chunks(25, EcgConfig(sampling_rate=FS, hr_bpm=hr_bpm))
    state, events = _classified(items[:12])
    waiting = []
    for i, chunk in enumerate(items[12:18], start=12):
        state, _ = process_chunk(state, chunk, SourceRef("ecg", 0, i), shared_classifier())
        assert state is not None
        waiting.append(sum(len(r) for r in state.leads["II"].beat_rows))
    assert (max(waiting) >= 4) is waits
    assert (sum(waiting) == 0) is not waits


def test_a_snapshot_from_before_beat_samples_were_kept_still_counts_its_beats() -> None:
    items, _ = _with_truth(30, 15.0, 9)
    _, straight = _classified(items)
    state, first = _classified(items[:18])
    assert state is not None and state.leads["II"].beat_rows  # rows wait for the summary
    old = unpack(state.leads["II"].snapshot())
    del old["beat_samples"]
    assert "beat_classes" not in old and "summary_labels" not in old  # (kept only when not empty)
    restored = replace(state, leads={"II": EcgLead.restore(pack(old))})
    _, rest = _classified(items[18:], restored, first_offset=18)
    summaries = [e.payload["beat_classes"] for e in first + rest if e.event_type == "EcgAnalyzed"]
    assert summaries == [e.payload["beat_classes"] for e in straight if e.event_type == "EcgAnalyzed"]


# --- several leads of one patient -------------------------------------------------------------


def two_leads(seconds: int, config: EcgConfig, second: float = -0.7) -> list[tuple[EcgChunk, EcgChunk]]:
    """Lead II and a V1 that is the same heart at ``second`` times its amplitude."""
    out = []
    for chunk in chunks(seconds, config):
        v1 = np.round(chunk.samples.astype(np.float64) * second).astype(np.int16)
        out.append((chunk, EcgChunk("p1", "mon-1", Lead.V1, FS, chunk.sequence, chunk.first_sample_us, v1, 0.005)))
    return out


def raised(items: list[EcgChunk], state: EcgPatient | None = None, first_offset: int = 0
           ) -> list[tuple[float, str, str]]:
    """(seconds, condition, detail) of each AlertRaised."""
    _, events = run(items, state, first_offset)
    return [(e.occurred_at.timestamp() - T0_US / 1e6, str(e.payload["condition"]), str(e.payload["message"]))
            for e in events if e.event_type == "AlertRaised"]


def test_two_leads_in_asystole_raise_one_alarm() -> None:
    pairs = two_leads(40, EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(asystole_at_s=20.0)))
    ii, v1 = raised([a for a, _ in pairs]), raised([b for _, b in pairs])
    assert [c for _, c, _ in ii].count("asystole") == [c for _, c, _ in v1].count("asystole") == 1  # each alone
    both = raised([c for pair in pairs for c in pair])
    assert [c for _, c, _ in both].count("asystole") == 1
    # Raised once every lead sees it: when the later of the two leads alone would have.
    (at,) = [t for t, c, _ in both if c == "asystole"]
    assert at == max(t for t, c, _ in ii + v1 if c == "asystole")


def test_a_lead_off_leaves_the_other_to_watch_the_heart() -> None:
    pairs = two_leads(45, EcgConfig(sampling_rate=FS, hr_bpm=72, rhythm=Rhythm(asystole_at_s=25.0)))
    off = np.full(FS, -32768, dtype=np.int16)  # the input parked at the rail
    pairs = [(replace(a, samples=off) if a.sequence >= 10 else a, b) for a, b in pairs]
    alone = raised([a for a, _ in pairs])
    assert [c for _, c, _ in alone] == ["ecg_leads_off"]  # lead II alone: blind, asystole suppressed
    both = raised([c for pair in pairs for c in pair])
    conditions = [c for _, c, _ in both]
    assert "ecg_leads_off" not in conditions and "asystole" in conditions
    fault = next((t, msg) for t, c, msg in both if c == "ecg_lead_fault")
    assert 10 < fault[0] < 25 and "II off" in fault[1]


def test_a_flat_lead_beside_a_good_one_is_a_lead_fault_not_a_flat_line() -> None:
    pairs = two_leads(30, EcgConfig(sampling_rate=FS, hr_bpm=72), second=0.01)
    assert [c for _, c, _ in raised([b for _, b in pairs])] == ["ecg_flat_line"]  # V1 alone
    both = raised([c for pair in pairs for c in pair])
    assert [(c, "V1 flat" in msg) for _, c, msg in both] == [("ecg_lead_fault", True)]


def test_a_restored_patient_with_two_leads_gives_exactly_the_same_events() -> None:
    pairs = two_leads(35, EcgConfig(sampling_rate=FS, hr_bpm=80, rhythm=Rhythm(asystole_at_s=22.0)))
    items = [c for pair in pairs for c in pair]
    _, straight = run(items)
    state, first = run(items[:33])  # mid-second: lead II sent, V1 not yet
    assert state is not None and sorted(state.leads) == ["II", "V1"] and sorted(state.views) == ["II", "V1"]
    _, rest = run(items[33:], EcgPatient.restore(state.snapshot()), first_offset=33)
    assert as_stored(first + rest) == as_stored(straight)
    assert any(e.event_type == "AlertRaised" for e in straight)


def test_a_lead_that_falls_silent_stops_voting_and_comes_back_after_a_gap() -> None:
    pairs = two_leads(70, EcgConfig(sampling_rate=FS, hr_bpm=72))
    items = [c for a, b in pairs for c in ((a, b) if a.sequence < 10 or a.sequence >= 50 else (a,))]
    state, _ = run(items[:52])  # through second 41: V1 silent for 32 s
    assert state is not None and sorted(state.leads) == ["II", "V1"] and list(state.views) == ["II"]
    state, events = run(items)
    assert state is not None and sorted(state.views) == ["II", "V1"]
    gaps = [e.payload for e in events if e.event_type == "EcgSignalGap"]
    assert [(g["lead"], g["missing_chunks"]) for g in gaps] == [("V1", 40)]
    assert not [e for e in events if e.event_type == "AlertRaised"]
    # Its chain still guards full disclosure: a chunk repeating a stored start time is refused.
    repeat = replace(pairs[5][1], sequence=70)
    with pytest.raises(Rejected) as refused:
        process_chunk(state, repeat, SourceRef("ecg", 0, 999))
    assert refused.value.reason == "time_not_increasing"
