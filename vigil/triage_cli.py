"""``vigil triage RECORD [--json]``: confirm or reject the monitor alarm that a WFDB
record (PhysioNet/CinC Challenge 2015 layout) was cut around.

Only samples before the alarm onset (5:00 into the record) are read, and only the
header's first comment, the alarm type; the answer comment after it is never read.
"""

from __future__ import annotations

import json
import sys

__all__ = ["run"]


def run(record: str, as_json: bool) -> int:
    from detectors.training.vt_eval import load_alarm_record
    from detectors.vt_triage import triage_alarm

    try:
        rec = load_alarm_record(record)
    except FileNotFoundError as e:
        print(f"vigil: no WFDB record at {record} ({e.filename})", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"vigil: cannot read {record}: {e}", file=sys.stderr)
        return 2
    decision = triage_alarm(rec.channels, sampling_rate=rec.sampling_rate, alarm_type=rec.alarm_type)
    if as_json:
        print(json.dumps({"alarm": decision.alarm, "true_alarm": decision.true_alarm}))
    else:
        verdict = "true alarm" if decision.true_alarm else "false alarm"
        print(f"{rec.name}: {decision.alarm}: {verdict} ({decision.reason})")
        for lead in decision.leads:
            print(f"  {lead.lead}: {lead.reason}")
    return 0
