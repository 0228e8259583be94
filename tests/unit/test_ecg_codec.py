from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ecg_codec import (
    MAX_ECG_MESSAGE_BYTES,
    MAX_SAMPLES,
    EcgChunk,
    Lead,
    SampleFormat,
    decode_ecg_chunk,
    encode_ecg_chunk,
)
from streams.vitals_codec import Rejected

T0_US = 1764122400000000
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def chunk(samples: np.ndarray | None = None, **fields: Any) -> EcgChunk:
    args: dict[str, object] = {
        "patient_id": "p0001", "device_id": "dev-1", "lead": Lead.II, "sampling_rate_hz": 250,
        "sequence": 7, "first_sample_us": T0_US,
        "samples": np.array([0, 200, -200, 1000], dtype=np.int16) if samples is None else samples,
        "scale_mv": 0.005,
    }
    args.update(fields)
    return EcgChunk(**args)  # type: ignore[arg-type]


def pack(*, magic: bytes = b"VECG", version: int = 1, fmt: int = 1, rate: int = 250, lead: int = 2,
         sequence: int = 7, first_us: int = T0_US, count: int | None = None, scale: float = 0.005,
         patient: bytes = b"p0001", device: bytes = b"dev-1", samples: bytes | None = None,
         crc: int | None = None) -> bytes:
    """Wire bytes with any field set to anything, CRC fixed up unless given."""
    if samples is None:
        samples = np.array([1, 2, 3], dtype="<i2" if fmt != 2 else "<f4").tobytes()
    if count is None:
        count = len(samples) // (4 if fmt == 2 else 2)
    body = (struct.pack("<4sBBHBQqIf", magic, version, fmt, rate, lead, sequence, first_us, count, scale)
            + bytes([len(patient)]) + patient + bytes([len(device)]) + device + samples)
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


def reason_of(raw: bytes | None) -> str:
    with pytest.raises(Rejected) as err:
        decode_ecg_chunk(raw)
    assert err.value.detail
    return err.value.reason


def test_int16_round_trip() -> None:
    original = chunk()
    back = decode_ecg_chunk(encode_ecg_chunk(original))
    assert (back.patient_id, back.device_id, back.lead, back.sampling_rate_hz, back.sequence, back.first_sample_us) \
        == ("p0001", "dev-1", Lead.II, 250, 7, T0_US)
    assert back.sample_format is SampleFormat.INT16 and back.samples.dtype == np.int16
    np.testing.assert_array_equal(back.samples, original.samples)
    assert back.scale_mv == original.scale_mv == float(np.float32(0.005))
    assert back.first_sample_at == datetime(2025, 11, 26, 2, 0, tzinfo=UTC)
    assert back.duration_s == pytest.approx(4 / 250)


def test_samples_mv_applies_the_scale() -> None:
    mv = decode_ecg_chunk(encode_ecg_chunk(chunk())).samples_mv()
    assert mv.dtype == np.float64
    np.testing.assert_allclose(mv, [0.0, 1.0, -1.0, 5.0], rtol=1e-6)


def test_float32_round_trip_is_bit_exact() -> None:
    samples = np.random.default_rng(42).normal(0, 1, 5000).astype(np.float32)
    back = decode_ecg_chunk(encode_ecg_chunk(chunk(samples, scale_mv=1.0, lead=Lead.MLII, sampling_rate_hz=360)))
    assert back.sample_format is SampleFormat.FLOAT32 and back.lead is Lead.MLII
    assert back.samples.tobytes() == samples.tobytes()
    np.testing.assert_array_equal(back.samples_mv(), samples.astype(np.float64))


def test_decoded_samples_are_read_only_copies() -> None:
    back = decode_ecg_chunk(encode_ecg_chunk(chunk()))
    with pytest.raises(ValueError):
        back.samples[0] = 1
    assert back.samples.flags.owndata  # does not keep the whole message buffer alive


def test_largest_chunk_fits_the_message_limit() -> None:
    big = chunk(np.zeros(MAX_SAMPLES, np.float32), scale_mv=1.0, patient_id="p" * 64, device_id="d" * 64)
    raw = encode_ecg_chunk(big)
    assert len(raw) == 240_167 <= MAX_ECG_MESSAGE_BYTES
    assert len(decode_ecg_chunk(raw).samples) == MAX_SAMPLES


def test_one_sample_and_the_rate_bounds_are_valid() -> None:
    for rate in (125, 1000):
        back = decode_ecg_chunk(encode_ecg_chunk(chunk(np.array([5], np.int16), sampling_rate_hz=rate)))
        assert back.sampling_rate_hz == rate and back.samples.tolist() == [5]


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "empty"),
    (b"", "empty"),
    (b"\0" * (MAX_ECG_MESSAGE_BYTES + 1), "oversized"),
    (b"VEC", "truncated"),
    (b"VECG", "truncated"),
    (b"XECG\x01", "bad_magic"),
    (b"{\"schema_version\": 1}", "bad_magic"),
    (pack(magic=b"VECH"), "bad_magic"),
    (pack(version=2), "unknown_layout_version"),
    (pack(version=0), "unknown_layout_version"),
    (pack()[:20], "truncated"),
    (pack()[:35], "truncated"),
    (pack(count=MAX_SAMPLES + 1), "too_many_samples"),
    (pack(count=2**32 - 1), "too_many_samples"),
    (pack(fmt=3), "bad_sample_format"),
    (pack(fmt=0), "bad_sample_format"),
    (pack(count=4), "truncated"),
    (pack(count=2), "length_mismatch"),
    (pack() + b"\0", "length_mismatch"),
    (pack(crc=0), "crc_mismatch"),
    (pack(rate=124), "bad_sampling_rate"),
    (pack(rate=1001), "bad_sampling_rate"),
    (pack(rate=0), "bad_sampling_rate"),
    (pack(lead=0), "unknown_lead"),
    (pack(lead=14), "unknown_lead"),
    (pack(first_us=0), "bad_timestamp"),
    (pack(first_us=-1), "bad_timestamp"),
    (pack(first_us=32503680000000_000), "bad_timestamp"),
    (pack(samples=b"", count=0), "no_samples"),
    (pack(scale=0.0), "bad_scale"),
    (pack(scale=-0.005), "bad_scale"),
    (pack(scale=float("inf")), "bad_scale"),
    (pack(scale=float("nan")), "bad_scale"),
    (pack(patient=b""), "bad_patient_id"),
    (pack(patient=b"p 1"), "bad_patient_id"),
    (pack(patient=b"p" * 65), "bad_patient_id"),
    (pack(patient=b"\xff\xfe"), "bad_patient_id"),
    (pack(device=b""), "bad_device_id"),
    (pack(device=b"dev/1"), "bad_device_id"),
    (pack(device=b"\xc3"), "bad_device_id"),
    (pack(fmt=2, samples=np.array([1.0, np.nan], "<f4").tobytes()), "bad_sample"),
    (pack(fmt=2, samples=np.array([np.inf], "<f4").tobytes()), "bad_sample"),
])
def test_every_rejection_reason(raw: bytes | None, reason: str) -> None:
    assert reason_of(raw) == reason


def test_the_pack_helper_makes_valid_chunks() -> None:
    # Otherwise the rejection table above would prove nothing.
    back = decode_ecg_chunk(pack(sequence=2**64 - 1))
    assert back.samples.tolist() == [1, 2, 3] and back.sequence == 2**64 - 1
    assert decode_ecg_chunk(pack(fmt=2)).samples.tolist() == [1.0, 2.0, 3.0]


def test_checks_run_in_the_documented_order() -> None:
    assert reason_of(pack(magic=b"XECG", version=9)) == "bad_magic"
    assert reason_of(pack(version=9, crc=0)) == "unknown_layout_version"
    assert reason_of(pack(rate=5, crc=0)) == "crc_mismatch"  # corruption is reported as corruption
    assert reason_of(pack(rate=5, lead=99)) == "bad_sampling_rate"


def test_every_truncation_is_rejected_as_truncated() -> None:
    raw = encode_ecg_chunk(chunk())
    for n in range(1, len(raw)):
        assert reason_of(raw[:n]) == "truncated", n


def test_every_single_bit_flip_is_rejected() -> None:
    raw = encode_ecg_chunk(chunk())
    header_and_ids = 33 + 1 + 5 + 1 + 5
    reasons = set()
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reason = reason_of(bytes(flipped))
        reasons.add(reason)
        if bit // 8 >= header_and_ids:  # a sample or the CRC itself
            assert reason == "crc_mismatch", bit
    assert {"bad_magic", "unknown_layout_version", "crc_mismatch", "truncated"} <= reasons


@pytest.mark.parametrize(("fields", "reason"), [
    ({"samples": np.zeros(3, np.int32)}, "bad_sample_format"),
    ({"samples": np.zeros((2, 2), np.int16)}, "bad_sample_format"),
    ({"sampling_rate_hz": 250.0}, "bad_sampling_rate"),
    ({"sampling_rate_hz": True}, "bad_sampling_rate"),
    ({"lead": 99}, "unknown_lead"),
    ({"sequence": -1}, "bad_sequence"),
    ({"sequence": 2**64}, "bad_sequence"),
    ({"first_sample_us": 0}, "bad_timestamp"),
    ({"samples": np.zeros(0, np.int16)}, "no_samples"),
    ({"samples": np.zeros(MAX_SAMPLES + 1, np.int16)}, "too_many_samples"),
    ({"scale_mv": 1e39}, "bad_scale"),  # finite in float64, infinite in float32
    ({"scale_mv": 0.0}, "bad_scale"),
    ({"patient_id": "Jane Doe"}, "bad_patient_id"),
    ({"device_id": ""}, "bad_device_id"),
    ({"samples": np.array([np.nan], np.float32)}, "bad_sample"),
])
def test_an_invalid_chunk_cannot_be_built(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected) as err:
        chunk(**fields)
    assert err.value.reason == reason


def test_numpy_integers_and_plain_lead_codes_are_normalised() -> None:
    c = chunk(sampling_rate_hz=np.int64(500), lead=3, sequence=np.uint64(9))
    assert c.lead is Lead.III and type(c.sampling_rate_hz) is int and type(c.sequence) is int
    assert decode_ecg_chunk(encode_ecg_chunk(c)).sampling_rate_hz == 500


@_PROPERTY
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_rejected(raw: bytes) -> None:
    try:
        decode_ecg_chunk(raw)
    except Rejected as r:
        assert r.reason


@_PROPERTY
@given(st.binary(min_size=33, max_size=200))
def test_random_bytes_behind_a_valid_prefix_raise_only_rejected(tail: bytes) -> None:
    # Random input almost never gets past the magic; this starts it at the version byte.
    for raw in (b"VECG\x01" + tail, b"VECG\x01" + tail + struct.pack("<I", zlib.crc32(b"VECG\x01" + tail))):
        try:
            decode_ecg_chunk(raw)
        except Rejected as r:
            assert r.reason


@_PROPERTY
@given(
    st.lists(st.integers(-32768, 32767), min_size=1, max_size=300),
    st.integers(125, 1000), st.sampled_from(list(Lead)), st.integers(0, 2**64 - 1),
    st.integers(1, 32503680000000_000 - 1), st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
)
def test_any_valid_int16_chunk_round_trips(samples: list[int], rate: int, lead: Lead, seq: int, t0: int,
                                            pid: str) -> None:
    original = chunk(np.array(samples, np.int16), sampling_rate_hz=rate, lead=lead, sequence=seq,
                     first_sample_us=t0, patient_id=pid)
    back = decode_ecg_chunk(encode_ecg_chunk(original))
    assert (back.sampling_rate_hz, back.lead, back.sequence, back.first_sample_us, back.patient_id) \
        == (rate, lead, seq, t0, pid)
    assert back.samples.tolist() == samples
