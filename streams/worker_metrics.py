"""What the worker's /metrics and /readyz say (`streams.metrics` serves them): the
counts `streams.app` keeps, in Prometheus' terms. Pure functions of those counts,
Faust's rebalance flags and the consumer's offsets."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from streams.gc_pauses import GC_GENERATIONS, GcPauses
from streams.loop_delay import PROBE_INTERVAL_S
from streams.metrics import Family, Histogram, HistogramFamily
from streams.sink import SinkStats

__all__ = ["input_lag", "not_ready", "worker_families"]

Samples = list[tuple[dict[str, str], float]]


class StateCounts(Protocol):
    """What the metrics read of a `streams.states.PatientStates`."""

    checkpoints: int
    rewinds: int
    holes: int

    @property
    def held(self) -> int: ...


def not_ready(app: Any, sink: SinkStats | None) -> str | None:
    """Why the worker (Faust ``app``) is not ready to process its share of the input,
    or None: it has not joined its group yet, is rebalancing or recovering its tables,
    or the event store refuses the sink's writes (``sink``: None before its first use)."""
    if not app.rebalancing_count:
        return "not in its group yet"
    if app.rebalancing:
        return "rebalancing"
    if app.in_recovery:
        return "recovering its tables"
    down = sink.unavailable_since if sink is not None else None
    return None if down is None else f"the event store has refused writes for {time.monotonic() - down:.0f} s"


def input_lag(consumer: Any, input_topics: Collection[str]) -> Samples:
    """Per assigned partition of ``input_topics``: records on the broker not taken yet,
    the consumer's last known high watermark (from its fetches) less the offset after
    the last record it delivered. Partitions it knows neither of are left out."""
    read = consumer._read_offset  # Faust's: the offset of the last record delivered, per partition
    out: Samples = []
    for tp in sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition)):
        if tp.topic not in input_topics:
            continue  # a table's changelog
        end, last = consumer.highwater(tp), read.get(tp)
        if end is not None and last is not None:
            out.append(({"topic": tp.topic, "partition": str(tp.partition)}, max(end - last - 1, 0)))
    return out


def worker_families(taken: Mapping[str, int], dead_letters: Mapping[str, int], sink: SinkStats,
                    states: Mapping[str, StateCounts], gc: GcPauses, loop_delay: Histogram, lag: Samples,
                    ready: bool) -> list[Family | HistogramFamily]:
    """``taken``: messages the agents took, by topic; ``states``: the patient tables by
    name; ``loop_delay``: `streams.loop_delay.LoopDelay`'s."""

    def counter(name: str, help_: str, value: float) -> Family:
        return Family(name, "counter", help_, [({}, value)])

    def per_generation(counts: list[int] | list[float]) -> Samples:
        return [({"generation": name}, counts[g]) for name, g in GC_GENERATIONS]

    tables = states.values()
    return [
        Family("vigil_worker_messages_total", "counter", "Device messages taken by the agents, by topic",
               [({"topic": t}, n) for t, n in sorted(taken.items())]),
        Family("vigil_worker_dead_letters_total", "counter", "Messages dead-lettered, by reason",
               [({"reason": r}, n) for r, n in sorted(dead_letters.items())]),
        counter("vigil_worker_events_appended_total", "Events the sink handed to the store (after a restart, "
                "those of input read again count again; the store keeps each once)", sink.events),
        counter("vigil_worker_waveforms_appended_total", "ECG chunks written to the waveform table", sink.waveforms),
        counter("vigil_worker_sink_batches_total", "Batches the sink made durable", sink.batches),
        counter("vigil_worker_sink_retries_total", "Writes retried while the store was unavailable", sink.retries),
        counter("vigil_worker_sink_rejected_total", "Messages whose events the store refused", sink.rejected),
        Family("vigil_worker_sink_last_flush_seconds", "gauge", "Duration of the last durable batch",
               [({}, sink.last_flush_s)]),
        HistogramFamily("vigil_worker_alarm_latency_seconds", "Alarm events (raised, escalated, resolved): "
                        "device time to the commit that stored them", [({}, sink.alarm_latency)]),
        counter("vigil_worker_checkpoints_total", "Patient state checkpoints written",
                sum(s.checkpoints for s in tables)),
        counter("vigil_worker_gaps_reread_total", "Offset gaps that made the worker read a partition again",
                sum(s.rewinds for s in tables)),
        counter("vigil_worker_offsets_absent_total", "Offset gaps taken as absent from the log (transaction markers)",
                sum(s.holes for s in tables)),
        Family("vigil_worker_patient_states", "gauge", "Patient states held in memory, by table",
               [({"table": name}, s.held) for name, s in states.items()]),
        Family("vigil_worker_input_lag_messages", "gauge",
               "Records on the broker the worker has not taken yet, by assigned input partition", lag),
        Family("vigil_worker_gc_pauses_total", "counter", "Garbage collector passes, by generation",
               per_generation(gc.total_count)),
        Family("vigil_worker_gc_pause_seconds_total", "counter", "Seconds the collector held the worker, by generation",
               per_generation(gc.total_seconds)),
        HistogramFamily("vigil_worker_event_loop_delay_seconds", f"How late the event loop woke a probe due "
                        f"every {PROBE_INTERVAL_S * 1000:g} ms: what a message arriving then waited before the "
                        "worker could look at it",
                        [({}, loop_delay)]),
        Family("vigil_worker_ready", "gauge", "1 when /readyz answers 200", [({}, 1 if ready else 0)]),
    ]
