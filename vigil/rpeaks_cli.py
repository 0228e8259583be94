"""``vigil rpeaks RECORD [--channel 0] [--chunk-seconds 1] [--json]``: R peaks of a WFDB
record, found by the same streaming detector the worker uses, fed in chunks."""

from __future__ import annotations

import json
import sys

__all__ = ["run"]


def run(record: str, channel: int, chunk_seconds: float, as_json: bool) -> int:
    from processors.qrs import ecg_findpeaks
    from vigil.records import RecordError, read_lead

    try:
        fs, signal = read_lead(record, channel)
    except RecordError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return 2
    chunk = max(1, round(chunk_seconds * fs))
    peaks = ecg_findpeaks(signal, sampling_rate=fs, chunk_size=chunk)
    if as_json:
        print(json.dumps({"fs": fs, "peaks": [int(p) for p in peaks]}))
    else:
        print("\n".join(str(int(p)) for p in peaks))
    return 0
