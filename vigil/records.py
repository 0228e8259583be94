"""Reading one lead of a WFDB record for the record-level commands (`vigil rpeaks`,
`vigil beats`), with the same one-line errors for all of them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["RecordError", "read_lead"]


class RecordError(Exception):
    """The record or the lead cannot be read; the message is meant for the user."""


def read_lead(record: str, channel: int) -> tuple[float, npt.NDArray[np.float64]]:
    """``(sampling rate in Hz, samples in physical units)`` of one channel."""
    import wfdb

    try:
        rec = wfdb.rdrecord(record, channels=[channel])
    except FileNotFoundError as e:
        raise RecordError(f"no WFDB record at {record} ({e.filename})") from e
    except (ValueError, IndexError) as e:
        raise RecordError(f"cannot read channel {channel} of {record}: {e}") from e
    return float(rec.fs), np.asarray(rec.p_signal[:, 0], dtype=np.float64)
