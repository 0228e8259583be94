"""The dead-letter record: a rejected message, why, and where it came from.

Every message a worker cannot accept is published to the dead-letter topic as one
JSON envelope (schema ``streams/contracts/deadletter.v1.schema.json``)::

    {"schema_version": 1, "reason": "malformed_json", "detail": "Expecting value: ...",
     "source": {"topic": "vigil.vitals", "partition": 3, "offset": 1200,
                "timestamp_ms": 1764122400000, "key_b64": "cDAwMDE="},
     "payload_b64": "e25vdCBqc29u", "payload_size": 9, "payload_truncated": false,
     "worker": "vigil-worker"}

The original bytes travel base64-encoded, so any bytes (invalid UTF-8, binary ECG)
round-trip exactly; ``null`` stands for a Kafka null value or key, distinct from
empty bytes. Why an envelope and not just headers: the payload, the reason and the
source then stay together through any tool that copies values but drops headers.

Payloads longer than `MAX_DEAD_LETTER_PAYLOAD_BYTES` (the largest message any input
topic accepts) are the ``oversized`` rejections themselves; they keep only their
first bytes, with ``payload_truncated`` true and ``payload_size`` the original
length, because a full copy could exceed the broker's own message limit and then the
dead letter itself would fail, which is the one failure with nowhere to go.

`decode_dead_letter` (for replay and inspection tools) raises only `Rejected`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from streams.vitals_codec import Rejected, is_json_integer, load_json_object

__all__ = [
    "DEAD_LETTER_SCHEMA_VERSION",
    "MAX_DEAD_LETTER_BYTES",
    "MAX_DEAD_LETTER_PAYLOAD_BYTES",
    "MAX_DETAIL_CHARS",
    "DeadLetter",
    "DeadLetterSource",
    "dead_letter_headers",
    "decode_dead_letter",
    "encode_dead_letter",
]

DEAD_LETTER_SCHEMA_VERSION = 1
MAX_DEAD_LETTER_PAYLOAD_BYTES = 256 * 1024
"""The largest input any topic accepts (ECG chunks and FHIR messages)."""
MAX_DETAIL_CHARS = 1000
MAX_KEY_BYTES = 1024
MAX_DEAD_LETTER_BYTES = 512 * 1024
"""Room for the base64 payload (4/3 of 256 KiB) plus the rest; under Kafka's 1 MB default."""

_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names
_TOP_FIELDS = frozenset(
    {"schema_version", "reason", "detail", "source", "payload_b64", "payload_size", "payload_truncated", "worker"})
_SOURCE_FIELDS = frozenset({"topic", "partition", "offset", "timestamp_ms", "key_b64"})


@dataclass(frozen=True, slots=True)
class DeadLetterSource:
    """Where the rejected message was read: enough to find it again in Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    """The Kafka record timestamp (faust ``message.timestamp`` is in seconds: multiply)."""
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: DeadLetterSource
    payload: bytes | None
    """The original value; only its first bytes when ``payload_truncated``."""
    payload_size: int
    payload_truncated: bool
    worker: str | None


def encode_dead_letter(
    reason: str, detail: str, source: DeadLetterSource, payload: bytes | None, *, worker: str | None = None
) -> bytes:
    """The envelope for one rejected message. ``reason`` is a `Rejected.reason`
    code; ``detail`` is cut to `MAX_DETAIL_CHARS`, the key to `MAX_KEY_BYTES`.
    Raises ValueError only for caller bugs (a malformed reason code or source)."""
    if not _REASON.fullmatch(reason):
        raise ValueError(f"reason {reason!r} is not a lower_snake_case code")
    if not _TOPIC.fullmatch(source.topic) or source.partition < 0 or source.offset < 0:
        raise ValueError(f"bad source {source}")
    size = 0 if payload is None else len(payload)
    kept = None if payload is None else payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
    doc: dict[str, Any] = {
        "schema_version": DEAD_LETTER_SCHEMA_VERSION,
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "source": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "timestamp_ms": source.timestamp_ms,
            "key_b64": _b64(None if source.key is None else source.key[:MAX_KEY_BYTES]),
        },
        "payload_b64": _b64(kept),
        "payload_size": size,
        "payload_truncated": size > MAX_DEAD_LETTER_PAYLOAD_BYTES,
        "worker": worker,
    }
    # ensure_ascii: a detail quoting a lone surrogate from bad input still encodes.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def decode_dead_letter(raw: bytes | None) -> DeadLetter:
    """Parse an envelope back; raises `Rejected` (``empty``, ``oversized``,
    ``malformed_json``, ``unknown_schema_version``, ``unknown_field``, ``invalid_field``)."""
    doc = load_json_object(raw, MAX_DEAD_LETTER_BYTES)
    version = doc.get("schema_version")
    if not is_json_integer(version) or version != DEAD_LETTER_SCHEMA_VERSION:
        raise Rejected("unknown_schema_version", f"schema_version {version!r:.40} is not {DEAD_LETTER_SCHEMA_VERSION}")
    _only(doc, _TOP_FIELDS, "")
    _all(doc, _TOP_FIELDS, "")
    reason, detail, worker = doc["reason"], doc["detail"], doc["worker"]
    if not isinstance(reason, str) or not _REASON.fullmatch(reason):
        raise Rejected("invalid_field", "reason must be a lower_snake_case code")
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL_CHARS:
        raise Rejected("invalid_field", f"detail must be a string of at most {MAX_DETAIL_CHARS} characters")
    if worker is not None and not isinstance(worker, str):
        raise Rejected("invalid_field", "worker must be a string or null")
    payload = _unb64(doc["payload_b64"], "payload_b64", MAX_DEAD_LETTER_PAYLOAD_BYTES)
    size, truncated = _count(doc["payload_size"], "payload_size"), doc["payload_truncated"]
    if not isinstance(truncated, bool):
        raise Rejected("invalid_field", "payload_truncated must be true or false")
    kept = 0 if payload is None else len(payload)
    expected = min(size, MAX_DEAD_LETTER_PAYLOAD_BYTES)
    if kept != expected or truncated != (size > MAX_DEAD_LETTER_PAYLOAD_BYTES) or (payload is None and size):
        raise Rejected("invalid_field", f"payload of {kept} bytes does not match payload_size {size} / truncated")
    return DeadLetter(reason, detail, _source(doc["source"]), payload, size, truncated, worker)


def dead_letter_headers(reason: str, detail: str, source: DeadLetterSource) -> list[tuple[str, bytes]]:
    """The Kafka headers the worker has always sent (reason, detail, ``topic/partition/offset``),
    kept next to the envelope so header-based filters and dashboards keep working."""
    return [
        ("reason", reason.encode()),
        ("detail", detail[:MAX_DETAIL_CHARS].encode(errors="backslashreplace")),
        ("source", f"{source.topic}/{source.partition}/{source.offset}".encode()),
    ]


def _source(src: object) -> DeadLetterSource:
    if not isinstance(src, dict):
        raise Rejected("invalid_field", "source must be an object")
    _only(src, _SOURCE_FIELDS, "source.")
    _all(src, _SOURCE_FIELDS, "source.")
    topic = src["topic"]
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise Rejected("invalid_field", "source.topic must be a Kafka topic name")
    ts = src["timestamp_ms"]
    return DeadLetterSource(
        topic,
        _count(src["partition"], "source.partition"),
        _count(src["offset"], "source.offset"),
        None if ts is None else _count(ts, "source.timestamp_ms"),
        _unb64(src["key_b64"], "source.key_b64", MAX_KEY_BYTES),
    )


def _count(value: object, where: str) -> int:
    if not is_json_integer(value) or value < 0:
        raise Rejected("invalid_field", f"{where} must be a non-negative integer")
    return int(value)


def _only(doc: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise Rejected("unknown_field", f"{prefix}{unknown[0]!r:.40} is not a dead-letter field")


def _all(doc: dict[str, Any], required: frozenset[str], prefix: str) -> None:
    missing = sorted(required - set(doc))
    if missing:
        raise Rejected("invalid_field", f"{prefix}{missing[0]} is missing")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: object, where: str, max_bytes: int) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > (max_bytes + 2) // 3 * 4:
        raise Rejected("invalid_field", f"{where} must be base64 of at most {max_bytes} bytes, or null")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("invalid_field", f"{where} is not valid base64") from None
