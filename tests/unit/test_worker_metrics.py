"""streams.worker_metrics: readiness, input lag and the worker's metric families, from
stand-ins for Faust's app and consumer (the fuzz and database-down tests scrape a real
worker; these reach the states a test cannot time, such as a rebalance)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, NamedTuple

from streams.gc_pauses import GcPauses
from streams.loop_delay import LoopDelay
from streams.metrics import render
from streams.sink import SinkStats
from streams.worker_metrics import input_lag, not_ready, worker_families


def app(count: int = 1, rebalancing: bool = False, in_recovery: bool = False) -> Any:
    return SimpleNamespace(rebalancing_count=count, rebalancing=rebalancing, in_recovery=in_recovery)


def test_readiness_says_why_not() -> None:
    assert not_ready(app(count=0), None) == "not in its group yet"
    assert not_ready(app(rebalancing=True), None) == "rebalancing"
    assert not_ready(app(in_recovery=True), SinkStats()) == "recovering its tables"
    assert not_ready(app(), None) is None and not_ready(app(), SinkStats()) is None
    down = SinkStats(unavailable_since=time.monotonic() - 12.2)
    assert not_ready(app(), down) == "the event store has refused writes for 12 s"
    assert not_ready(app(rebalancing=True), down) == "rebalancing"  # the first reason


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    def __init__(self) -> None:
        self._read_offset = {TP("w.ecg", 0): 99, TP("w.ecg", 1): 10, TP("w.vitals", 0): 5, TP("w-ecg-changelog", 0): 3}
        self.ends = {TP("w.ecg", 0): 100, TP("w.ecg", 1): 250, TP("w.vitals", 0): 4, TP("w-ecg-changelog", 0): 9}

    def assignment(self) -> set[TP]:
        return {*self.ends, TP("w.fhir", 0)}  # nothing known yet of the last one

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)


def test_input_lag_is_what_the_broker_holds_past_the_last_record_taken() -> None:
    assert input_lag(Consumer(), {"w.ecg", "w.vitals", "w.fhir"}) == [
        ({"topic": "w.ecg", "partition": "0"}, 0),     # the end is the offset after the last record
        ({"topic": "w.ecg", "partition": "1"}, 239),
        ({"topic": "w.vitals", "partition": "0"}, 0),  # (a stale high watermark never gives less than 0)
    ]


def states(checkpoints: int, rewinds: int, holes: int, held: int) -> Any:
    return SimpleNamespace(checkpoints=checkpoints, rewinds=rewinds, holes=holes, held=held)


def test_the_families_carry_the_workers_counts() -> None:
    sink = SinkStats(batches=7, events=120, waveforms=30, retries=2, rejected=1, last_flush_s=0.004)
    sink.alarm_latency.observe(0.2)
    gc = GcPauses()
    gc.total_count, gc.total_seconds = [5, 2, 1], [0.05, 0.04, 0.1]
    delay = LoopDelay()
    for seconds in (0.0005, 0.0005, 0.03, 1.2):
        delay.observe(seconds)
    families = worker_families({"w.vitals": 40, "w.ecg": 30}, {"malformed_json": 3},
                               sink, {"vitals": states(4, 1, 0, 20), "ecg": states(6, 0, 2, 19)}, gc,
                               delay.histogram,
                               [({"topic": "w.ecg", "partition": "1"}, 239.0)], ready=False)
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    lines = set(render(families).splitlines())
    for line in ['vigil_worker_messages_total{topic="w.ecg"} 30', 'vigil_worker_messages_total{topic="w.vitals"} 40',
                 'vigil_worker_dead_letters_total{reason="malformed_json"} 3',
                 "vigil_worker_events_appended_total 120", "vigil_worker_waveforms_appended_total 30",
                 "vigil_worker_sink_batches_total 7", "vigil_worker_sink_retries_total 2",
                 "vigil_worker_sink_rejected_total 1", "vigil_worker_sink_last_flush_seconds 0.004",
                 'vigil_worker_alarm_latency_seconds_bucket{le="0.25"} 1', "vigil_worker_alarm_latency_seconds_count 1",
                 "vigil_worker_checkpoints_total 10", "vigil_worker_gaps_reread_total 1",
                 "vigil_worker_offsets_absent_total 2", 'vigil_worker_patient_states{table="vitals"} 20',
                 'vigil_worker_patient_states{table="ecg"} 19',
                 'vigil_worker_input_lag_messages{topic="w.ecg",partition="1"} 239',
                 'vigil_worker_gc_pauses_total{generation="full"} 1', 'vigil_worker_gc_pauses_total{generation="young"} 5',
                 'vigil_worker_gc_pause_seconds_total{generation="full"} 0.1',
                 'vigil_worker_event_loop_delay_seconds_bucket{le="0.001"} 2',
                 'vigil_worker_event_loop_delay_seconds_bucket{le="0.05"} 3',
                 'vigil_worker_event_loop_delay_seconds_bucket{le="1"} 3',
                 'vigil_worker_event_loop_delay_seconds_bucket{le="2.5"} 4',
                 "vigil_worker_event_loop_delay_seconds_count 4", "vigil_worker_ready 0"]:
        assert line in lines, line
