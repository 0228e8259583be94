from __future__ import annotations

from processors.evaluate import BeatScore, flutter_episodes, match_beats


def test_one_to_one_matching_within_the_window() -> None:
    ref = [100, 200, 300, 400]
    det = [102, 195, 196, 330, 600]  # 195 and 196 both near 200: only one may count
    assert match_beats(ref, det, tolerance=10) == BeatScore(tp=2, fn=2, fp=3)
    assert match_beats(ref, det, tolerance=30) == BeatScore(tp=3, fn=1, fp=2)


def test_nearest_detection_wins() -> None:
    assert match_beats([100, 110], [105, 111], tolerance=10) == BeatScore(2, 0, 0)


def test_rates() -> None:
    s = BeatScore(tp=98, fn=2, fp=1)
    assert s.sensitivity == 0.98 and round(s.positive_predictivity, 4) == 0.9899
    assert BeatScore(0, 0, 0).sensitivity == 1.0
    assert s + BeatScore(2, 0, 0) == BeatScore(100, 2, 1)


def test_flutter_episodes_are_left_out() -> None:
    samples = [10, 50, 60, 200, 300]
    symbols = ["N", "[", "!", "]", "N"]
    episodes = flutter_episodes(samples, symbols)
    assert episodes == [(50, 200)]
    assert match_beats([10, 300], [10, 80, 120, 300], tolerance=5, excluded=episodes) == BeatScore(2, 0, 0)
    assert match_beats([10, 300], [10, 80, 120, 300], tolerance=5) == BeatScore(2, 0, 2)
