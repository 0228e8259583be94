"""Replay a real ECG record (WFDB: MIT-BIH, the 2015 PhysioNet/CinC Challenge) as a
stream of chunks, at real time or ``speed`` times faster.

The timing and the messages are pure; only reading and sending do I/O.
`load_record` reads one ECG channel with ``wfdb.rdrecord``; `replay_chunks` cuts a
signal into chunks and stamps them (`replay_record` does both); `replay_messages`
makes them the ECG chunks a monitor would publish (`streams.ecg_codec`, int16 as the
simulated ward sends), each with its topic, key and send time; `publish_replay`
sends those at their time with `streams.ward.send_second`.

Two clocks, in microseconds from ``start_us``:

- device time (``first_sample_us``) is the record's own time base: chunk ``i``'s
  first sample is stamped ``i * chunk_samples / sampling_rate`` s after
  ``start_us``, whatever the speed, so every chunk's stamps agree with its sampling
  rate and the worker's analysis (heart rate, alarm delays, waveform storage) runs on
  the record's time. At ``speed`` > 1 device time therefore runs ahead of the wall
  clock: a 30-min record replayed at 10x ends stamped 27 min in the future.
- send time (``send_at_us``) is when a paced publisher sends the chunk: once the
  chunk is complete, as a monitor does, on a clock ``speed`` times faster:
  ``(i + 1) * chunk_samples / sampling_rate / speed`` s after ``start_us`` (the last,
  shorter chunk when its last sample is due).

Both are computed from sample indices, never accumulated, so a long replay does not
drift, and sequence numbers count chunks from 0.

Samples are physical units, mV, as float32. Missing samples (the WFDB invalid value:
v244s's lead II is missing for 210 of its 300 s) stay NaN in the chunks and go on
the wire as `streams.ward.LEADS_OFF_COUNT`, the negative rail, as a monitor sends a
lead off: the worker's quality check labels those windows ``leads_off`` (the
"ECG leads off" technical alarm) rather than analysing them. Chunks that are wholly
missing are sent too, not skipped: a skipped chunk reads as a transport gap
(``EcgSignalGap``, the chain restarts), which would blame the network for a signal
the device never had.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streams.ecg_codec import SAMPLING_RATE_RANGE_HZ, EcgChunk, Lead, encode_ecg_chunk
from streams.vitals_codec import is_pseudonymous_id
from streams.ward import ECG_SCALE_MV, TimedMessage, ecg_counts, open_producer, send_second

__all__ = ["EcgRecord", "ReplayChunk", "load_record", "publish_replay", "replay_chunks", "replay_messages",
           "replay_record"]


class ReplayChunk(NamedTuple):
    first_sample_us: int
    """Device time of the first sample (the record's own time base)."""
    send_at_us: int
    """When a paced publisher sends the chunk (complete, ``speed`` times fast)."""
    sequence: int
    """From 0, one per chunk."""
    samples_mv: npt.NDArray[np.float32]


_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


@dataclass(frozen=True, slots=True)
class EcgRecord:
    name: str
    lead: str
    sampling_rate: float
    signal_mv: npt.NDArray[np.float32]
    """Read-only, so the chunks handed out can be views without being changed under the caller."""


def load_record(path: str | Path, *, channel: int | str = 0) -> EcgRecord:
    """One ECG channel of a WFDB record; ``path`` without extension (``.../mitdb/100``).

    ``channel`` is an index or a signal name from the header (``"MLII"``, ``"II"``):
    Challenge records order their signals differently, so pick them by name. Raises
    `FileNotFoundError` when the header is missing and `ValueError` for an unknown
    channel or one that is not a voltage (PLETH, ABP, RESP).
    """
    import wfdb  # heavy (pandas, matplotlib): only when a record is replayed

    path = Path(path)
    if not path.with_name(path.name + ".hea").exists():
        raise FileNotFoundError(f"no WFDB header {path}.hea (set VIGIL_DATA_DIR to the folder holding the records)")
    header = wfdb.rdheader(str(path))
    names = [str(n) for n in header.sig_name]
    if isinstance(channel, str):
        if channel not in names:
            raise ValueError(f"record {path.name} has no signal {channel!r}; it has {', '.join(names)}")
        index = names.index(channel)
    else:
        if not 0 <= channel < len(names):
            raise ValueError(f"record {path.name} has {len(names)} signals, no channel {channel}")
        index = channel
    record = wfdb.rdrecord(str(path), channels=[index])
    unit = str(record.units[0]).strip().lower()
    if unit not in _TO_MV:
        raise ValueError(f"signal {names[index]!r} of {path.name} is in {record.units[0]!r}, not a voltage")
    signal = np.asarray(record.p_signal[:, 0] * _TO_MV[unit], dtype=np.float32)
    signal.setflags(write=False)
    return EcgRecord(path.name, names[index], float(record.fs), signal)


def replay_chunks(signal_mv: npt.ArrayLike, *, sampling_rate: float, chunk_s: float = 1.0, speed: float = 1.0,
                  start_us: int = 0) -> Iterator[ReplayChunk]:
    """Cut ``signal_mv`` into chunks of ``round(chunk_s * sampling_rate)`` samples (the
    last one may be shorter) and stamp them. Pure: nothing is read, nothing waits."""
    if not sampling_rate > 0 or not chunk_s > 0 or not speed > 0:
        raise ValueError(f"sampling_rate, chunk_s and speed must be > 0, got {sampling_rate}, {chunk_s}, {speed}")
    x = np.asarray(signal_mv, dtype=np.float32).ravel()
    step = max(round(chunk_s * sampling_rate), 1)
    return _chunks(x, step, 1e6 / sampling_rate, speed, start_us)


def _chunks(x: npt.NDArray[np.float32], step: int, sample_us: float, speed: float,
            start_us: int) -> Iterator[ReplayChunk]:
    n = x.shape[0]
    for seq, at in enumerate(range(0, n, step)):
        end = min(at + step, n)
        yield ReplayChunk(start_us + round(at * sample_us), start_us + round(end * sample_us / speed), seq,
                          x[at:end])


def replay_record(path: str | Path, *, channel: int | str = 0, chunk_s: float = 1.0, speed: float = 1.0,
                  start_us: int = 0) -> Iterator[ReplayChunk]:
    """`load_record` then `replay_chunks`. The record is read now, so a missing file
    or channel fails here rather than at the first chunk."""
    rec = load_record(path, channel=channel)
    return replay_chunks(rec.signal_mv, sampling_rate=rec.sampling_rate, chunk_s=chunk_s, speed=speed,
                         start_us=start_us)


def _wire_lead(name: str) -> Lead:
    """The wire's code for a header's lead name (``MLII``, ``II``, ``aVF``, ``V5``)."""
    try:
        return Lead[name.strip().upper()]
    except KeyError:
        raise ValueError(f"lead {name!r} has no code on the wire ({', '.join(lead.name for lead in Lead)}); "
                         f"choose another channel") from None


def replay_messages(record: EcgRecord, *, patient_id: str, topic: str, speed: float = 1.0, start_us: int,
                    chunk_s: float = 1.0, duration_s: float | None = None,
                    device_id: str | None = None) -> Iterator[TimedMessage]:
    """``record`` as the ECG messages a monitor would publish, keyed by ``patient_id``:
    ``(send_at_us, topic, key, value)`` in send order, ``value`` an int16 chunk of
    `streams.ward.ECG_SCALE_MV` per count (see the module docstring for the clocks and
    missing samples). ``duration_s`` replays only the record's start; the device id
    defaults to ``rec-<record name>``. Pure; the record is checked now, so a rate or
    lead the wire cannot carry, or an id that is not pseudonymous, raises
    `ValueError` here rather than at the first chunk."""
    fs = record.sampling_rate
    lo, hi = SAMPLING_RATE_RANGE_HZ
    if not (fs.is_integer() and lo <= fs <= hi):
        raise ValueError(f"record {record.name} is sampled at {fs:g} Hz; the wire takes whole rates {lo}-{hi} Hz")
    lead = _wire_lead(record.lead)
    device = device_id or "rec-" + re.sub(r"[^A-Za-z0-9_-]", "-", record.name)[:60]
    for what, value in (("patient id", patient_id), ("device id", device)):
        if not is_pseudonymous_id(value):
            raise ValueError(f"{what} {value!r} must be 1-64 letters, digits, '-' or '_'")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    signal = record.signal_mv if duration_s is None else record.signal_mv[:max(round(duration_s * fs), 1)]
    chunks = replay_chunks(signal, sampling_rate=fs, chunk_s=chunk_s, speed=speed, start_us=start_us)
    key = patient_id.encode()
    return ((c.send_at_us, topic, key, encode_ecg_chunk(EcgChunk(
                patient_id, device, lead, int(fs), c.sequence, c.first_sample_us, ecg_counts(c.samples_mv),
                ECG_SCALE_MV)))
            for c in chunks)


async def publish_replay(bootstrap: str, messages: Iterable[TimedMessage], *, start_us: int,
                         realtime: bool = True) -> int:
    """Send `replay_messages` made with ``start_us``; returns how many. In real time
    each goes out at its send time, counted from when the producer is ready;
    otherwise as fast as the broker takes them."""
    async with open_producer(bootstrap) as producer:
        began = time.monotonic() if realtime else None
        sent = await send_second(producer, messages, start_us=start_us, began=began)
        await producer.flush()
    return sent
