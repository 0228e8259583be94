"""Compact, exact, non-executable snapshots of the streaming objects' state.

The worker keeps each patient's DSP state in a changelog-backed table and restores
it after a crash or a rebalance; the restored object must then produce exactly what
the original would have (the fault tests compare event for event). So snapshots
carry float64 arrays bit for bit. They are data, never code: a JSON header naming
each array's dtype, shape and place, then the raw little-endian buffers, so a
snapshot read back from Kafka cannot run anything (unlike pickle).

    pack({"st": np.zeros(3), "n": 5, "labels": ["ok"]}) -> bytes
    unpack(bytes) -> the same dict (arrays come back as read-only-free copies)

Values may be numpy arrays (numeric or bool), or anything JSON can carry exactly
(ints, strings, lists, dicts, finite floats).
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any

import numpy as np

__all__ = ["pack", "unpack", "StateError"]

_MAGIC = b"VST1"
_ALLOWED = frozenset("?bBhHiIlLqQefd")  # dtype chars: bool, integers, floats


class StateError(ValueError):
    """The bytes are not a snapshot this version can read."""


# One encoder for every snapshot: json.dumps would build it anew each call.
_HEADER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_LITTLE = sys.byteorder == "little"


def pack(values: dict[str, Any]) -> bytes:
    arrays: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, value in values.items():
        if isinstance(value, np.ndarray):
            a = np.ascontiguousarray(value)
            char = a.dtype.char
            if char not in _ALLOWED:
                raise TypeError(f"{name}: dtype {a.dtype} cannot be snapshotted")
            if not (_LITTLE and a.dtype.isnative):
                a = a.astype(a.dtype.newbyteorder("<"), copy=False)
            data = a.tobytes()
            arrays[name] = [char, list(a.shape), offset, len(data)]
            blobs.append(data)
            offset += len(data)
        else:
            plain[name] = value
    head = _HEADER.encode({"arrays": arrays, "values": plain}).encode()
    return _MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs)


def unpack(data: bytes) -> dict[str, Any]:
    if data[:4] != _MAGIC or len(data) < 8:
        raise StateError("not a Vigil state snapshot (bad magic)")
    (head_len,) = struct.unpack_from("<I", data, 4)
    body = 8 + head_len
    if body > len(data):
        raise StateError(f"snapshot truncated: header says {head_len} bytes, {len(data) - 8} present")
    try:
        header = json.loads(data[8:body])
    except ValueError as e:
        raise StateError(f"snapshot header is not JSON: {e}") from e
    out: dict[str, Any] = dict(header["values"])
    for name, (char, shape, offset, nbytes) in header["arrays"].items():
        if char not in _ALLOWED or body + offset + nbytes > len(data):
            raise StateError(f"array {name!r} is malformed or truncated")
        dtype = np.dtype(char).newbyteorder("<")
        raw = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=body + offset)
        out[name] = raw.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    return out
