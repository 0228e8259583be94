"""Snapshots: exact, typed, and refused when damaged."""

from __future__ import annotations

import numpy as np
import pytest

from processors.state import StateError, pack, unpack


def test_round_trip_is_bit_exact() -> None:
    rng = np.random.default_rng(1)
    values = {"f": rng.normal(size=(3, 4)), "i": np.arange(5, dtype=np.int64), "b": np.array([True, False]),
              "n": 7, "s": ["ok", "noise"], "none": None, "x": 0.1 + 0.2, "empty": np.zeros((0, 3))}
    back = unpack(pack(values))
    assert back.keys() == values.keys()
    for k, v in values.items():
        if isinstance(v, np.ndarray):
            assert back[k].dtype == v.dtype and back[k].shape == v.shape
            assert back[k].tobytes() == v.tobytes()
        else:
            assert back[k] == v


def test_objects_and_nan_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="dtype"):
        pack({"o": np.array([object()])})
    with pytest.raises(ValueError):
        pack({"x": float("nan")})


@pytest.mark.parametrize("damage", [lambda b: b"XXXX" + b[4:], lambda b: b[:20], lambda b: b[:-3],
                                    lambda b: b[:8] + b"}" + b[9:]])
def test_damaged_snapshots_raise_state_error(damage: object) -> None:
    data = pack({"a": np.arange(10.0), "n": 1})
    with pytest.raises(StateError):
        unpack(damage(data))  # type: ignore[operator]
