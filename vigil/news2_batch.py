"""``vigil news2 --input FILE.jsonl``: score one observation per line.

Every input line gives exactly one output line, in order: the score, or an error
naming the line number and the field at fault. Blank lines are skipped. The exit
status is 0 when every line was scored and 1 when any line was rejected, so
scripts notice partial failures while still getting every score.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TextIO

from detectors.news2 import News2InputError, parse_observation, score_news2

__all__ = ["score_lines", "run"]


def score_lines(lines: Iterable[str], out: TextIO) -> int:
    """Write one JSON result per non-blank input line; return how many were rejected."""
    rejected = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            result = score_news2(parse_observation(json.loads(line))).to_json()
        except json.JSONDecodeError as e:
            rejected += 1
            result = {"line": number, "error": f"invalid JSON: {e.msg} at column {e.colno}"}
        except News2InputError as e:
            rejected += 1
            result = {"line": number, "field": e.field, "error": str(e)}
        out.write(json.dumps(result, separators=(", ", ": ")) + "\n")
    return rejected


def run(path: str) -> int:
    if path == "-":
        return 1 if score_lines(sys.stdin, sys.stdout) else 0
    try:
        with open(path, encoding="utf-8") as f:
            return 1 if score_lines(f, sys.stdout) else 0
    except OSError as e:
        print(f"vigil: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
