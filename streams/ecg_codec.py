"""The ECG chunk contract (layout version 1): a compact binary encoding of one lead.

JSON would triple the size of a 500 Hz waveform and lose float32 exactness, so ECG
travels as a small fixed header, the samples, and a CRC32. All integers and floats
are little-endian; there is no padding. Published, with a test vector, as
``streams/contracts/ecg-chunk.v1.md``.

| offset | size | type | field | rule |
| --- | --- | --- | --- | --- |
| 0 | 4 | bytes | magic | ASCII ``VECG`` |
| 4 | 1 | u8 | layout version | 1 |
| 5 | 1 | u8 | sample format | 1 = int16, 2 = float32 |
| 6 | 2 | u16 | sampling rate, Hz | 125 to 1000 |
| 8 | 1 | u8 | lead code | see `Lead` |
| 9 | 8 | u64 | sequence number | per patient, device and lead; increases by 1 per chunk |
| 17 | 8 | i64 | first-sample time, µs since the Unix epoch | after 1970, before 3000 |
| 25 | 4 | u32 | sample count n | 1 to 60000 |
| 29 | 4 | f32 | scale, mV per count | finite, > 0; mV = sample × scale |
| 33 | 1 | u8 | patient id length p | 1 to 64 |
| 34 | p | UTF-8 | patient id | pseudonymous: letters, digits, ``-``, ``_`` |
| 34+p | 1 | u8 | device id length d | 1 to 64 |
| 35+p | d | UTF-8 | device id | same alphabet |
| 35+p+d | n × 2 or n × 4 | i16 or f32 | samples | float32 samples must be finite |
| end − 4 | 4 | u32 | CRC-32 (IEEE, as zlib) of every byte before it | |

The scale applies to both formats, so one formula gives millivolts; float32
producers normally write 1.0. 60000 samples is a minute at 1000 Hz and keeps the
largest valid chunk (float32, longest ids: 240 167 bytes) under the 256 KiB limit.

`decode_ecg_chunk` never raises anything but `Rejected`. It checks in this order,
so a reason points at the first thing wrong: size (``empty``, ``oversized``), magic
(``bad_magic``), version (``unknown_layout_version``), structure (``truncated``,
``too_many_samples``, ``bad_sample_format``, ``length_mismatch``), integrity
(``crc_mismatch``), then meaning (``bad_sampling_rate``, ``unknown_lead``,
``bad_timestamp``, ``no_samples``, ``bad_scale``, ``bad_patient_id``,
``bad_device_id``, ``bad_sample``). Building an `EcgChunk` by hand runs the same
meaning checks (plus ``bad_sequence``), so the encoder cannot write a chunk the
decoder would refuse. The CRC comes before the meaning checks so
that corruption is reported as corruption, not as a strange sampling rate.
"""

from __future__ import annotations

import math
import operator
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import cast

import numpy as np
import numpy.typing as npt

from streams.vitals_codec import Rejected, is_pseudonymous_id

__all__ = [
    "LAYOUT_VERSION",
    "MAGIC",
    "MAX_ECG_MESSAGE_BYTES",
    "MAX_SAMPLES",
    "SAMPLING_RATE_RANGE_HZ",
    "EcgChunk",
    "Lead",
    "SampleFormat",
    "decode_ecg_chunk",
    "encode_ecg_chunk",
]

MAGIC = b"VECG"
LAYOUT_VERSION = 1
MAX_ECG_MESSAGE_BYTES = 256 * 1024
MAX_SAMPLES = 60_000
SAMPLING_RATE_RANGE_HZ = (125, 1000)
MAX_FIRST_SAMPLE_US = 32503680000000_000  # 3000-01-01, as for vitals ``ts``

_FIXED = struct.Struct("<4sBBHBQqIf")  # magic .. scale: 33 bytes
_CRC = struct.Struct("<I")
_F32 = struct.Struct("<f")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SampleFormat(IntEnum):
    INT16 = 1
    FLOAT32 = 2


_DTYPES: dict[SampleFormat, np.dtype[np.int16] | np.dtype[np.float32]] = {
    SampleFormat.INT16: np.dtype("<i2"),
    SampleFormat.FLOAT32: np.dtype("<f4"),
}


class Lead(IntEnum):
    """Lead codes on the wire. Stable: a code is never reused for another lead."""

    I = 1  # noqa: E741 - the lead's clinical name
    II = 2
    III = 3
    AVR = 4
    AVL = 5
    AVF = 6
    V1 = 7
    V2 = 8
    V3 = 9
    V4 = 10
    V5 = 11
    V6 = 12
    MLII = 13
    """Modified lead II (ambulatory recordings such as the MIT-BIH database)."""


_LEAD_CODES = frozenset(int(lead) for lead in Lead)


@dataclass(frozen=True, slots=True, eq=False)
class EcgChunk:
    """One chunk of one lead. Building one checks it, so an `EcgChunk` that exists
    is always encodable, and the decoder gets the same checks by building one.

    ``samples`` is a 1-D int16 or float32 array (the format follows its dtype);
    ``scale_mv`` is stored as the float32 the wire carries, so encoding and
    decoding give back exactly the same chunk.
    """

    patient_id: str
    device_id: str
    lead: Lead
    sampling_rate_hz: int
    sequence: int
    first_sample_us: int
    samples: npt.NDArray[np.int16] | npt.NDArray[np.float32]
    scale_mv: float = 1.0

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype not in (np.int16, np.float32):
            raise Rejected("bad_sample_format", f"samples must be 1-D int16 or float32, got {self.samples.dtype}")
        lo, hi = SAMPLING_RATE_RANGE_HZ
        rate = _as_int(self.sampling_rate_hz, "bad_sampling_rate")
        if not lo <= rate <= hi:
            raise Rejected("bad_sampling_rate", f"{rate} Hz outside {lo}-{hi} Hz")
        lead = _as_int(self.lead, "unknown_lead")
        if lead not in _LEAD_CODES:
            raise Rejected("unknown_lead", f"lead code {lead}")
        sequence = _as_int(self.sequence, "bad_sequence")
        if not 0 <= sequence < 2**64:
            raise Rejected("bad_sequence", f"sequence {sequence} is not a u64")
        first_us = _as_int(self.first_sample_us, "bad_timestamp")
        if not 0 < first_us < MAX_FIRST_SAMPLE_US:
            raise Rejected("bad_timestamp", f"first sample at {first_us} µs is not after 1970 and before 3000")
        n = len(self.samples)
        if n == 0:
            raise Rejected("no_samples", "a chunk needs at least one sample")
        if n > MAX_SAMPLES:
            raise Rejected("too_many_samples", f"{n} samples exceeds {MAX_SAMPLES}")
        try:  # round to the float32 the wire carries; too big for float32 overflows here
            (scale,) = _F32.unpack(_F32.pack(self.scale_mv))
        except (struct.error, OverflowError, TypeError):
            scale = math.nan
        if not math.isfinite(scale) or scale <= 0:
            raise Rejected("bad_scale", f"scale {self.scale_mv!r:.20} mV/count must be finite and positive in float32")
        if not is_pseudonymous_id(self.patient_id):
            raise Rejected("bad_patient_id", "patient id must be 1-64 letters, digits, '-' or '_'")
        if not is_pseudonymous_id(self.device_id):
            raise Rejected("bad_device_id", "device id must be 1-64 letters, digits, '-' or '_'")
        if self.samples.dtype == np.float32 and not np.isfinite(self.samples).all():
            raise Rejected("bad_sample", "float32 samples must be finite")
        # Normalised so that a chunk equals its own decoded encoding, field by field.
        for name, value in (("sampling_rate_hz", rate), ("lead", Lead(lead)), ("sequence", sequence),
                            ("first_sample_us", first_us), ("scale_mv", scale)):
            object.__setattr__(self, name, value)

    @property
    def sample_format(self) -> SampleFormat:
        return SampleFormat.INT16 if self.samples.dtype == np.int16 else SampleFormat.FLOAT32

    @property
    def first_sample_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.first_sample_us)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sampling_rate_hz

    def samples_mv(self) -> npt.NDArray[np.float64]:
        """The samples in millivolts, as a new float64 array."""
        return self.samples.astype(np.float64) * self.scale_mv


def encode_ecg_chunk(chunk: EcgChunk) -> bytes:
    """The wire bytes of ``chunk`` (see the module docstring for the layout)."""
    patient = chunk.patient_id.encode()
    device = chunk.device_id.encode()
    fmt = chunk.sample_format
    head = _FIXED.pack(MAGIC, LAYOUT_VERSION, fmt, chunk.sampling_rate_hz, chunk.lead, chunk.sequence,
                       chunk.first_sample_us, len(chunk.samples), chunk.scale_mv)
    body = b"".join([head, bytes([len(patient)]), patient, bytes([len(device)]), device,
                     chunk.samples.astype(_DTYPES[fmt], copy=False).tobytes()])
    return body + _CRC.pack(zlib.crc32(body))


def decode_ecg_chunk(raw: bytes | None) -> EcgChunk:
    """Parse and check one chunk; raises `Rejected` (reasons in the module docstring)."""
    if not raw:
        raise Rejected("empty", "message has no value")
    if len(raw) > MAX_ECG_MESSAGE_BYTES:
        raise Rejected("oversized", f"{len(raw)} bytes exceeds {MAX_ECG_MESSAGE_BYTES}")
    if raw[:4] != MAGIC[: len(raw)]:
        raise Rejected("bad_magic", f"starts with {bytes(raw[:4])!r}, not {MAGIC!r}")
    if len(raw) <= 4:
        raise Rejected("truncated", f"ends after {len(raw)} bytes, inside the header")
    if raw[4] != LAYOUT_VERSION:
        raise Rejected("unknown_layout_version", f"layout version {raw[4]} is not {LAYOUT_VERSION}")
    pos = _need(raw, 0, _FIXED.size + 1, "the header")
    _, _, fmt_code, rate, lead, sequence, first_us, count, scale = _FIXED.unpack_from(raw)
    p_len = raw[pos - 1]
    pos = _need(raw, pos, p_len + 1, "the patient id")
    patient_raw = raw[pos - p_len - 1 : pos - 1]
    d_len = raw[pos - 1]
    pos = _need(raw, pos, d_len, "the device id")
    device_raw = raw[pos - d_len : pos]
    if count > MAX_SAMPLES:
        raise Rejected("too_many_samples", f"{count} samples exceeds {MAX_SAMPLES}")
    if fmt_code not in SampleFormat.__members__.values():
        raise Rejected("bad_sample_format", f"sample format {fmt_code} is neither 1 (int16) nor 2 (float32)")
    dtype = _DTYPES[SampleFormat(fmt_code)]
    end = _need(raw, pos, count * dtype.itemsize + _CRC.size, f"the {count} samples and CRC")
    if end != len(raw):
        raise Rejected("length_mismatch", f"{len(raw) - end} bytes after the CRC")
    (crc,) = _CRC.unpack_from(raw, end - _CRC.size)
    if zlib.crc32(raw[: end - _CRC.size]) != crc:
        raise Rejected("crc_mismatch", "CRC-32 does not match: the chunk was corrupted")
    # Invalid UTF-8 becomes U+FFFD, which the id alphabet refuses: bad_*_id, in order.
    patient_id = patient_raw.decode(errors="replace")
    device_id = device_raw.decode(errors="replace")
    # A native-order copy: the chunk must not pin the message buffer or carry its byte order.
    wire = np.frombuffer(raw, dtype=dtype, count=count, offset=pos)
    samples: npt.NDArray[np.int16] | npt.NDArray[np.float32] = (
        wire.astype(np.int16) if dtype.kind == "i" else wire.astype(np.float32))
    samples.flags.writeable = False
    # The lead code is checked (and made a `Lead`) by EcgChunk, in the documented order.
    return EcgChunk(patient_id, device_id, cast(Lead, lead), rate, sequence, first_us, samples, scale)


def _as_int(value: object, reason: str) -> int:
    """``value`` as a Python int (numpy integers welcome), else `Rejected` ``reason``."""
    if isinstance(value, bool | float):
        raise Rejected(reason, f"{value!r:.20} is not an integer")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise Rejected(reason, f"{value!r:.20} is not an integer") from None


def _need(raw: bytes, pos: int, size: int, what: str) -> int:
    """Position after ``size`` more bytes from ``pos``, or `Rejected` ``truncated``."""
    end = pos + size
    if end > len(raw):
        raise Rejected("truncated", f"ends after {len(raw)} bytes, inside {what} (needs {end})")
    return end
