"""Scoring a beat detector against reference annotations (ANSI/AAMI EC57 style).

Each reference beat is matched to at most one detection within ``tolerance``
samples (the nearest unmatched one), and each detection to at most one reference.
Sensitivity Se = TP / (TP + FN); positive predictivity +P = TP / (TP + FP).
The EC57 window is 150 ms: ``tolerance = round(0.150 * sampling_rate)``.
Ventricular flutter/fibrillation episodes carry no beat labels, so, as EC57
prescribes for beat-by-beat comparison, detections inside them are left out
(`flutter_episodes` finds them from the ``[`` and ``]`` annotations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BeatScore", "match_beats", "flutter_episodes"]


@dataclass(frozen=True, slots=True)
class BeatScore:
    tp: int
    fn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def positive_predictivity(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def __add__(self, other: BeatScore) -> BeatScore:
        return BeatScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def flutter_episodes(samples: Sequence[int], symbols: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) sample ranges between ``[`` and ``]`` annotations."""
    episodes, start = [], None
    for sample, symbol in zip(samples, symbols, strict=True):
        if symbol == "[":
            start = int(sample)
        elif symbol == "]" and start is not None:
            episodes.append((start, int(sample)))
            start = None
    return episodes


def match_beats(
    reference: npt.ArrayLike, detected: npt.ArrayLike, tolerance: int,
    excluded: Sequence[tuple[int, int]] = (),
) -> BeatScore:
    """Match sorted sample indices one-to-one within ``tolerance`` samples; detections
    inside an ``excluded`` (start, end) range are not scored."""
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    det = np.sort(np.asarray(detected, dtype=np.int64))
    for lo, hi in excluded:
        det = det[(det < lo) | (det > hi)]
    used = np.zeros(det.shape[0], dtype=bool)
    tp = 0
    start = 0
    for r in ref:
        while start < det.shape[0] and det[start] < r - tolerance:
            start += 1
        best, best_d = -1, tolerance + 1
        k = start
        while k < det.shape[0] and det[k] <= r + tolerance:
            d = abs(int(det[k]) - int(r))
            if not used[k] and d < best_d:
                best, best_d = k, d
            k += 1
        if best >= 0:
            used[best] = True
            tp += 1
    return BeatScore(tp, int(ref.shape[0]) - tp, int(det.shape[0]) - tp)
