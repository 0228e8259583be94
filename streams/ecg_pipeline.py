"""From one accepted ECG chunk to the events it produces. Pure, so it is tested
without a broker; the Faust agent in `streams.app` is a thin pump around it.

Per lead, `EcgLead` carries the streaming chain (`processors.ecg`) and the
bookkeeping that makes the stream trustworthy; per patient, `EcgPatient` holds its
leads' chains and one alarm state:

- sequence numbers: a chunk older than the next expected one (a duplicate or a late
  arrival) is rejected with ``stale_sequence`` and dead-lettered, never merged into
  the signal; a jump forward is a gap: an ``EcgSignalGap`` event says how many
  chunks are missing, and the chain restarts on the new chunk (a fresh learning
  period) rather than splicing signal across the hole;
- the arrhythmia detector (`detectors.arrhythmia`: asystole, extreme brady- and
  tachycardia, VT, VF/flutter, leads off, noise) and the alarm engine
  (`detectors.alarms`), whose decisions become ``AlertRaised`` and friends, on
  device time;
- the beat classifier (`detectors.beat_classifier`, when the worker runs one): every
  beat the chain finds gets an AAMI class (N, S, V, F, Q) from its `BeatFeatureStream`
  row (released one beat behind: a row needs the next beat's RR). The rows wait for
  the summary and go through the model in one batch (an inference costs about 25 us
  for one row, 52 for twelve), unless the arrhythmia detector's VT rule may need
  their classes (`ArrhythmiaDetector.vt_possible`: five recent beats faster than
  100 bpm): then the rows waiting are classified at once. Either way the classes go
  to the detector with the chunk (a summary's batch runs before the detector); a beat
  the VT rule saw unlabelled is judged when its class comes;
- a summary every `SUMMARY_S` seconds of signal (``EcgAnalyzed``: beats, usable beats,
  heart rate and HRV, quality windows by label, and beats by class with the model's
  version and checksum), instead of an event per beat. A chain's first summary comes
  after 1 to `SUMMARY_S` s, by patient and lead (`first_summary_s`), so that a ward
  whose chains start together (a demo, a bench, every device back after a network
  outage) does not summarise, classify and compute HRV for every patient in the same
  second, every 10 s (`bench/worker_cpu.py --patients 400 --checkpoint 1000`, two
  runs each: the busiest second took 360-379 ms of CPU with every first summary at
  10 s, 306-345 ms spread; a median second 190-212 ms);
- the source offset of the last chunk applied, so that a worker that restarts from
  a checkpoint and sees a chunk again skips it.

A patient whose monitor sends several leads has one `EcgPatient` (one key in the
worker's table): a chain per lead (`EcgLead`, with its own sequence numbers, gaps
and summaries) and one alarm state, which the leads' reports reach through
`detectors.lead_fusion` (a lead that is off does not vote; asystole, the rate alarms
and VF need every lead that is on, VT one). With one lead, its reports go to the
alarm engine as they are. A lead that falls silent stops voting after
`detectors.lead_fusion.STALE_S`, but its chain is kept: when it comes back, its
chunks are checked against it as ever (a jump in sequence numbers is a gap), so a
chunk that repeats a stored start time is still refused (``time_not_increasing``)
rather than silently dropped by full disclosure.

Event ids derive from the chunk's (topic, partition, offset) and the event's index,
so re-processing after a crash stores each event once.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.alarm_inputs import AlarmInputs
from detectors.alarm_state import AlarmState
from detectors.alarms import AlarmEngine
from detectors.arrhythmia import ArrhythmiaDetector, ArrhythmiaState
from detectors.beat_classifier import AAMI_CLASSES, BeatClassifier
from detectors.beat_features import BeatFeatureStream, BeatRows
from detectors.lead_fusion import LeadView, fuse, views_from_dict, views_to_dict
from detectors.vf import VfState
from event_store.events import NewEvent
from event_store.waveforms import WaveformChunk
from processors.ecg import EcgAnalyzer
from processors.ecg import warm_up as warm_up_chain
from processors.state import pack, unpack
from streams.ecg_codec import EcgChunk
from streams.vitals_codec import Rejected
from streams.vitals_pipeline import SourceRef, decision_event, event_id_for

__all__ = ["EcgLead", "EcgPatient", "process_chunk", "waveform_of", "warm_up", "SUMMARY_S", "ENGINE",
           "first_summary_s"]

SUMMARY_S = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENGINE = AlarmEngine()
_DETECTORS: dict[int, ArrhythmiaDetector] = {}  # stateless apart from settings: one per sampling rate


def _detector(fs: int) -> ArrhythmiaDetector:
    if fs not in _DETECTORS:
        _DETECTORS[fs] = ArrhythmiaDetector(fs)
    return _DETECTORS[fs]


def first_summary_s(patient_id: str, lead: str) -> int:
    """Seconds of signal before a chain's first summary: 1 to `SUMMARY_S`, the same for
    a patient's lead in every process (a CRC, not Python's salted ``hash``)."""
    return SUMMARY_S - zlib.crc32(f"{patient_id}/{lead}".encode()) % SUMMARY_S


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass
class EcgLead:
    """The streaming chain of one lead of a patient."""

    patient_id: str
    lead: str
    fs: int
    base_us: int
    """Device time of the chain's sample 0."""
    next_sequence: int
    analyzer: EcgAnalyzer
    arrhythmia: ArrhythmiaState
    fed: int = 0
    summary_start: int = 0
    beats: int = 0
    usable: int = 0
    windows: Counter[str] = field(default_factory=Counter)
    last_start_us: int | None = None
    """Device time of the last chunk's first sample, as the chunk stated it (full
    disclosure files the chunk under it). None in snapshots from before it was kept."""
    beat_features: BeatFeatureStream | None = None
    """Feature rows for the beat classifier; None while the worker classifies no beats."""
    beat_rows: list[BeatRows] = field(default_factory=list)
    """Feature rows of the beats released and not yet classified (sample -1: unknown, in
    snapshots from before the samples were kept)."""
    beat_classes: Counter[str] = field(default_factory=Counter)
    """Beats classified since the last summary, by class."""

    @classmethod
    def start(cls, chunk: EcgChunk) -> EcgLead:
        return cls(chunk.patient_id, chunk.lead.name, chunk.sampling_rate_hz, chunk.first_sample_us, chunk.sequence,
                   EcgAnalyzer(chunk.sampling_rate_hz), ArrhythmiaState())

    def sample_us(self, sample: int) -> int:
        """Device time of the chain's sample ``sample``, µs since the epoch."""
        return self.base_us + round(sample * 1_000_000 / self.fs)

    def sample_time(self, sample: int) -> datetime:
        return _at(self.sample_us(sample))

    def snapshot(self) -> bytes:
        # The VF window's samples go as an array (raw bytes), not as the base64 text of
        # ArrhythmiaState.to_dict inside the JSON header: a fifth of a snapshot's CPU.
        vf = self.arrhythmia.vf
        return pack({
            "patient_id": self.patient_id, "lead": self.lead, "fs": self.fs, "base_us": self.base_us,
            "next_sequence": self.next_sequence, "fed": self.fed,
            "summary_start": self.summary_start, "beats": self.beats, "usable": self.usable,
            "windows": dict(self.windows), "last_start_us": self.last_start_us, "analyzer": np.frombuffer(self.analyzer.snapshot(), dtype=np.uint8),
            "arrhythmia": replace(self.arrhythmia, vf=VfState(vf.next_start)).to_dict(),
            "vf_samples": np.frombuffer(vf.buffer, dtype="<f8"),
            **({} if self.beat_features is None else
               {"beat_features": np.frombuffer(self.beat_features.snapshot(), dtype=np.uint8)}),
            **({"beat_rows": np.concatenate([r.features for r in self.beat_rows]),
                "beat_samples": np.concatenate([r.samples for r in self.beat_rows])} if self.beat_rows else {}),
            **({"beat_classes": dict(self.beat_classes)} if self.beat_classes else {}),
        })

    @classmethod
    def restore(cls, data: bytes) -> EcgLead:
        return cls.from_values(unpack(data))

    @classmethod
    def from_values(cls, v: dict[str, Any]) -> EcgLead:
        """The chain from an unpacked snapshot (`processors.state.unpack`)."""
        arrhythmia = ArrhythmiaState.from_dict(v["arrhythmia"])
        if "vf_samples" in v:  # (snapshots before it carry them in the dict)
            arrhythmia = replace(arrhythmia, vf=VfState(arrhythmia.vf.next_start,
                                                        v["vf_samples"].astype("<f8").tobytes()))
        analyzer = EcgAnalyzer(v["fs"])
        analyzer.restore(v["analyzer"].tobytes())
        return cls(v["patient_id"], v["lead"], v["fs"], v["base_us"], v["next_sequence"], analyzer,
                   arrhythmia, v["fed"], v["summary_start"], v["beats"], v["usable"], Counter(v["windows"]),
                   v.get("last_start_us"),
                   BeatFeatureStream.restore(v["beat_features"].tobytes()) if "beat_features" in v else None,
                   [BeatRows(v["beat_samples"] if "beat_samples" in v else np.full(len(v["beat_rows"]), -1),
                             v["beat_rows"])] if "beat_rows" in v else [],
                   Counter(v.get("beat_classes", {})))


@dataclass
class EcgPatient:
    """Working state for one patient's ECG: a chain per lead, one alarm state."""

    patient_id: str
    alarms: AlarmState
    leads: dict[str, EcgLead] = field(default_factory=dict)
    offset: int = -1
    """Source offset of the last chunk applied."""
    commands_through: int = 0
    """Log position of the last care-team command given to ``alarms`` (`streams.commands`)."""
    views: dict[str, LeadView] = field(default_factory=dict)
    """What each lead last said (`detectors.lead_fusion`); empty while only one lead ever sent."""

    @classmethod
    def start(cls, chunk: EcgChunk) -> EcgPatient:
        return cls(chunk.patient_id, ENGINE.new_state(chunk.patient_id, "ward"))

    def snapshot(self) -> bytes:
        return pack({
            "patient_id": self.patient_id, "offset": self.offset, "alarms": self.alarms.to_dict(),
            "commands_through": self.commands_through, "leads": list(self.leads),
            **{f"lead:{name}": np.frombuffer(lead.snapshot(), dtype=np.uint8) for name, lead in self.leads.items()},
            **({"views": views_to_dict(self.views)} if self.views else {}),
        })

    @classmethod
    def restore(cls, data: bytes) -> EcgPatient:
        v = unpack(data)
        alarms = AlarmState.from_dict(v["alarms"])
        if "leads" not in v:  # a snapshot from when each lead was a patient of its own
            lead = EcgLead.from_values(v)
            return cls(v["patient_id"], alarms, {lead.lead: lead}, v["offset"], v.get("commands_through", 0))
        return cls(v["patient_id"], alarms, {name: EcgLead.restore(v[f"lead:{name}"].tobytes()) for name in v["leads"]},
                   v["offset"], v["commands_through"], views_from_dict(v.get("views", {})))


def process_chunk(patient: EcgPatient | None, chunk: EcgChunk, source: SourceRef,
                  classifier: BeatClassifier | None = None, engine: AlarmEngine = ENGINE
                  ) -> tuple[EcgPatient, list[NewEvent]]:
    """Apply one chunk; return the patient's new state and the events to append.
    Raises `Rejected` (``stale_sequence``, ``sampling_rate_changed``, ``time_not_increasing``)
    for a chunk that must be dead-lettered; ``patient`` is then unchanged. ``engine``: the
    alarm engine of the site's policy (escalation times; `ENGINE` has the defaults).

    With a ``classifier``, every beat found is classified. A lead whose chain began
    without one (or before a restart that turned classification on) is classified
    from this chunk on; without one, a lead's feature stream is dropped."""
    events: list[NewEvent] = []
    stream_id = f"patient-{chunk.patient_id}"
    shared: list[dict[str, object]] = []  # the chunk's metadata, built with its first event (most chunks have none)

    def metadata() -> dict[str, object]:
        # With a classifier, the model is in the loop of every event the chunk gives (the VT
        # rule reads its classes), so each records which model it was, for the auditor.
        if not shared:
            shared.append(source.as_metadata() | {"device_id": chunk.device_id, "lead": chunk.lead.name}
                          | ({} if classifier is None else {"beat_model": classifier.provenance.as_metadata()}))
        return shared[0]

    def emit(event_type: str, occurred_at: datetime, payload: dict[str, object]) -> None:
        events.append(NewEvent(event_id_for(source, len(events)), stream_id, event_type, occurred_at,
                               {"patient_id": chunk.patient_id, "lead": chunk.lead.name, **payload},
                               metadata=metadata()))

    patient = patient or EcgPatient.start(chunk)
    chain = patient.leads.get(chunk.lead.name)
    if chain is None:
        chain = EcgLead.start(chunk)
    elif chunk.sequence < chain.next_sequence:
        raise Rejected("stale_sequence", f"chunk {chunk.sequence} is older than the next expected "
                                         f"({chain.next_sequence}): a duplicate or a late arrival")
    elif chunk.sampling_rate_hz != chain.fs:
        raise Rejected("sampling_rate_changed", f"{chunk.sampling_rate_hz} Hz after {chain.fs} Hz without a gap")
    elif chain.last_start_us is not None and chunk.first_sample_us <= chain.last_start_us:
        # The device clock did not move on (or the sequence number is wrong): full
        # disclosure files a chunk under its start time, one row each, and would drop it.
        raise Rejected("time_not_increasing", f"chunk {chunk.sequence} starts at {chunk.first_sample_us} us, not "
                                              f"after the previous chunk ({chain.last_start_us} us)")
    elif chunk.sequence > chain.next_sequence:
        emit("EcgSignalGap", chunk.first_sample_at, {
            "missing_chunks": chunk.sequence - chain.next_sequence, "expected_sequence": chain.next_sequence,
            "received_sequence": chunk.sequence, "last_sample_at": chain.sample_time(chain.fed).isoformat(),
        })
        chain = EcgLead.start(chunk)  # the chain restarts; the patient's alarms outlive the gap
    patient.leads[chunk.lead.name] = chain

    x = chunk.samples_mv()
    if classifier is None:
        chain.beat_features, chain.beat_rows, chain.beat_classes = None, [], Counter()
    elif chain.beat_features is None:
        chain.beat_features = BeatFeatureStream(chain.fs, start=chain.fed)
    # (summary_start is 0 only before a chain's first summary)
    period = (SUMMARY_S if chain.summary_start else first_summary_s(chain.patient_id, chain.lead)) * chain.fs
    summary_due = chain.fed + x.shape[0] - chain.summary_start >= period
    update = chain.analyzer.feed(x)
    detector = _detector(chain.fs)
    labels: dict[int, str] | None = None  # None: no classifier, and VT is not evaluated
    if classifier is not None and chain.beat_features is not None:
        rows = chain.beat_features.feed(x, [b.sample for b in update.beats])
        if len(rows):
            chain.beat_rows.append(rows)
        needed = summary_due or (bool(chain.beat_rows) and detector.vt_possible(chain.arrhythmia, update.beats))
        labels = _classify(classifier, chain) if needed else {}
    chain.arrhythmia, report = detector.feed(chain.arrhythmia, x, update.beats, update.windows, labels)
    chain.fed += x.shape[0]
    now_us = chain.sample_us(chain.fed)
    observations = report.observations
    if len(patient.leads) > 1:
        patient.views, observations = fuse(patient.views, chain.lead, observations, now_us)
    # Seconds exactly as datetime.timestamp() gives them (integer µs / 10**6); the
    # datetime itself only when there is an event to stamp.
    patient.alarms, decisions = engine.step(patient.alarms, AlarmInputs(observations=observations),
                                            now=now_us / 1_000_000)
    if decisions:
        now = _at(now_us)
        for decision in decisions:
            events.append(decision_event(decision, event_id_for(source, len(events)), stream_id, now, metadata()))
    chain.next_sequence = chunk.sequence + 1
    patient.offset = source.offset
    chain.last_start_us = chunk.first_sample_us
    if update.beats:
        chain.beats += len(update.beats)
        chain.usable += sum(b.usable for b in update.beats)
    if update.windows:
        chain.windows.update(w.label for w in update.windows)
    if summary_due:
        hrv = update.hrv
        emit("EcgAnalyzed", chain.sample_time(chain.fed), {
            "from": chain.sample_time(chain.summary_start).isoformat(),
            "to": chain.sample_time(chain.fed).isoformat(),
            "beats": chain.beats, "usable_beats": chain.usable,
            "heart_rate": None if hrv.heart_rate is None else round(hrv.heart_rate, 1),
            "sdnn_ms": None if hrv.sdnn_ms is None else round(hrv.sdnn_ms, 1),
            "rmssd_ms": None if hrv.rmssd_ms is None else round(hrv.rmssd_ms, 1),
            "pnn50": None if hrv.pnn50 is None else round(hrv.pnn50, 1),
            "windows": dict(sorted(chain.windows.items())),
            **({} if classifier is None else _classes(classifier, chain)),
        })
        chain.summary_start = chain.fed
        chain.beats = chain.usable = 0
        chain.windows = Counter()
    return patient, events


def _classify(classifier: BeatClassifier, chain: EcgLead) -> dict[int, str]:
    """Classify the rows waiting in ``chain`` in one batch and count them; their classes by beat sample."""
    if not chain.beat_rows:
        return {}
    classes = classifier.classify(np.concatenate([r.features for r in chain.beat_rows]))
    samples = np.concatenate([r.samples for r in chain.beat_rows]).tolist()
    chain.beat_rows = []
    chain.beat_classes.update(classes)
    return {s: c for s, c in zip(samples, classes, strict=True) if s >= 0}


def _classes(classifier: BeatClassifier, chain: EcgLead) -> dict[str, object]:
    """A summary's beats by class (all classified before the detector ran), and the model."""
    counted, chain.beat_classes = chain.beat_classes, Counter()
    return {"beat_classes": {c: counted[c] for c in AAMI_CLASSES}, "beat_model": classifier.provenance.as_metadata()}


def waveform_of(chunk: EcgChunk, source: SourceRef) -> WaveformChunk:
    """The chunk as a full-disclosure row: int16 counts with their scale (float32
    chunks are stored at 1 µV per count, ±32 mV, far beyond any ECG)."""
    if chunk.samples.dtype == np.int16:
        samples, scale = chunk.samples.astype("<i2").tobytes(), float(chunk.scale_mv)
    else:
        mv = chunk.samples_mv()
        samples, scale = np.clip(np.round(mv * 1000.0), -32768, 32767).astype("<i2").tobytes(), 0.001
    return WaveformChunk(chunk.patient_id, chunk.lead.name, chunk.first_sample_at, float(chunk.sampling_rate_hz),
                         samples, scale, {"topic": source.topic, "partition": source.partition,
                                          "offset": source.offset, "sequence": chunk.sequence})


def warm_up(sampling_rate: int = 250, classifier: BeatClassifier | None = None) -> None:
    """Compile (or load from the numba cache) every kernel a chunk goes through: the
    ECG chain's (`processors.ecg.warm_up`), the arrhythmia detector's (VF, activity)
    and the beat features'; and run the ``classifier`` once. So a worker's first real
    chunks do not pay for it. Call once at process start."""
    warm_up_chain()
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.1, 5 * sampling_rate)
    _detector(sampling_rate).feed(ArrhythmiaState(), x, [], [])
    stream = BeatFeatureStream(sampling_rate)
    stream.feed(x, range(sampling_rate // 2, x.shape[0], sampling_rate))
    rows = stream.flush()
    if classifier is not None:
        classifier.classify(rows.features)
