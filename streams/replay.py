"""Replay a real ECG record (WFDB: MIT-BIH, the 2015 PhysioNet/CinC Challenge) as a
stream of chunks, at real time or ``speed`` times faster.

Two steps, so the timing logic stays pure: `load_record` reads one ECG channel with
``wfdb.rdrecord`` (the only I/O here), and `replay_chunks` cuts a signal into chunks
and stamps each with the time it is due. `replay_record` does both. Publishing the
chunks to Kafka, and sleeping until each one is due, is the caller's job.

Timestamps are microseconds on the replay's own clock: chunk ``i`` starts
``i * chunk_samples / sampling_rate / speed`` seconds after ``start_us``, computed
from ``i`` (never accumulated) so a long replay does not drift. At ``speed`` 1 that
is the record's own time; at ``speed`` 10 ten seconds of record go out per second.

Samples are physical units, mV, as float32. Missing samples (the WFDB invalid value,
present in some Challenge records) stay NaN, as a monitor would report a lead off.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["EcgRecord", "ReplayChunk", "load_record", "replay_chunks", "replay_record"]

ReplayChunk = tuple[int, int, npt.NDArray[np.float32]]
"""(timestamp_us, sequence number from 0, samples in mV)."""

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
    return _chunks(x, step, 1e6 * step / (sampling_rate * speed), start_us)


def _chunks(x: npt.NDArray[np.float32], step: int, period_us: float, start_us: int) -> Iterator[ReplayChunk]:
    for seq, at in enumerate(range(0, x.shape[0], step)):
        yield start_us + round(seq * period_us), seq, x[at:at + step]


def replay_record(path: str | Path, *, channel: int | str = 0, chunk_s: float = 1.0, speed: float = 1.0,
                  start_us: int = 0) -> Iterator[ReplayChunk]:
    """`load_record` then `replay_chunks`. The record is read now, so a missing file
    or channel fails here rather than at the first chunk."""
    rec = load_record(path, channel=channel)
    return replay_chunks(rec.signal_mv, sampling_rate=rec.sampling_rate, chunk_s=chunk_s, speed=speed,
                         start_us=start_us)
