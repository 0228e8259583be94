"""``vigil beats RECORD [--channel 0] [--model fp32|int8] [--json]``: the AAMI class
(N, S, V, F, Q) of every beat of a WFDB record, found and classified by the same chain
and model the worker runs, fed in 1-second chunks.

JSON: ``{"fs": <Hz>, "beats": [[<0-based sample>, "<class>"], ...]}``; text: one
``sample class`` line per beat. A beat is classified once the next beat is known
(its post-RR interval is a feature), so each chunk's batch holds the beats that chunk
completed; the last beat is classified at the end of the record.
"""

from __future__ import annotations

import json
import sys

__all__ = ["run"]


def run(record: str, channel: int, as_json: bool, model: str = "fp32") -> int:
    from detectors.beat_classifier import BeatModelError, shared_classifier
    from detectors.beat_features import BeatFeatureStream, BeatRows
    from processors.ecg import EcgAnalyzer
    from vigil.records import RecordError, read_lead

    if model not in ("fp32", "int8"):
        print(f"vigil: unknown model {model!r} (fp32 or int8)", file=sys.stderr)
        return 2
    try:
        fs, signal = read_lead(record, channel)
    except RecordError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return 2
    try:
        classifier = shared_classifier("int8" if model == "int8" else "fp32")
    except BeatModelError as e:
        print(f"vigil: {e}", file=sys.stderr)
        return 2
    analyzer, features = EcgAnalyzer(fs), BeatFeatureStream(fs)
    step = max(1, round(fs))
    beats: list[tuple[int, str]] = []

    def label(rows: BeatRows) -> None:
        beats.extend(zip(rows.samples.tolist(), classifier.classify(rows.features), strict=True))

    for i in range(0, signal.shape[0], step):
        chunk = signal[i:i + step]
        found = analyzer.feed(chunk).beats
        label(features.feed(chunk, [b.sample for b in found]))
    label(features.flush())
    if as_json:
        print(json.dumps({"fs": fs, "beats": [[s, c] for s, c in beats]}))
    else:
        print("\n".join(f"{s} {c}" for s, c in beats))
    return 0
