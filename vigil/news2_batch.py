"""``vigil news2 --input FILE.jsonl``: score one observation per line.

Every input line gives exactly one output line, in order, so output line k always
answers input line k: the score, or an error naming the line number (and the field
at fault, when there is one). Nothing on one line stops the others: invalid UTF-8,
invalid or too deeply nested JSON and numbers too big for a float are error lines
too, and so is a blank line (``{"line": N, "error": "empty line"}``; the newline
that ends the last line does not start a blank one). The exit status is 0 when
every line was scored and 1 when any line was rejected, so scripts notice partial
failures while still getting every score.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from detectors.news2 import News2InputError, parse_observation, score_news2

__all__ = ["score_lines", "run"]


def score_lines(lines: Iterable[str], out: TextIO) -> int:
    """Write one JSON result per input line; return how many were rejected.

    Lines read with ``errors="surrogateescape"`` (as `run` does) carry invalid
    UTF-8 as lone surrogates, which are reported here for that line alone."""
    rejected = 0
    for number, line in enumerate(lines, start=1):
        result = _score_line(line, number)
        if "error" in result:
            rejected += 1
        out.write(json.dumps(result, separators=(", ", ": ")) + "\n")
    return rejected


def _score_line(line: str, number: int) -> dict[str, Any]:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as e:
        return {"line": number, "error": f"not valid UTF-8 at column {e.start + 1}"}
    if not line.strip():
        return {"line": number, "error": "empty line"}
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        return {"line": number, "error": f"invalid JSON: {e.msg} at column {e.colno}"}
    except RecursionError:
        return {"line": number, "error": "invalid JSON: nested too deeply"}
    except ValueError as e:  # an integer literal longer than sys.get_int_max_str_digits()
        return {"line": number, "error": f"invalid JSON: {str(e).partition(';')[0][:200]}"}
    try:
        return score_news2(parse_observation(doc)).to_json()
    except News2InputError as e:
        return {"line": number, "field": e.field, "error": str(e)}


def run(path: str) -> int:
    # surrogateescape: a bad byte becomes an error on its own line instead of a
    # UnicodeDecodeError that ends the run (see `score_lines`).
    if path == "-":
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        return 1 if score_lines(stdin, sys.stdout) else 0
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return 1 if score_lines(f, sys.stdout) else 0
    except OSError as e:
        print(f"vigil: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
