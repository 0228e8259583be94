"""The dead-letter record: a rejected message, why, and where it came from.

Every message a worker cannot accept is published to the dead-letter topic as JSON
envelopes (schema ``streams/contracts/deadletter.v2.schema.json``)::

    {"schema_version": 2, "reason": "malformed_json", "detail": "Expecting value: ...",
     "source": {"topic": "vigil.vitals", "partition": 3, "offset": 1200,
                "timestamp_ms": 1764122400000, "key_b64": "cDAwMDE="},
     "payload_b64": "e25vdCBqc29u", "payload_offset": 0, "payload_size": 9,
     "worker": "vigil-worker"}

The original bytes travel base64-encoded, so any bytes (invalid UTF-8, binary ECG)
round-trip exactly; ``null`` stands for a Kafka null value or key, distinct from
empty bytes. Why an envelope and not just headers: the payload, the reason and the
source then stay together through any tool that copies values but drops headers.

Nothing is cut. A message longer than `PART_BYTES` (the largest input any topic
accepts, so in practice the ``oversized`` rejections) goes out as one envelope per
`PART_BYTES` slice, in order, all with the same key, reason and source:
``payload_offset`` says where the slice starts and ``payload_size`` how long the
whole message is. Each envelope then stays far below the broker's 1-MB message
limit whatever the input's size (a single envelope holding a large input could
exceed it, and a dead letter that cannot be sent is the one failure with nowhere
to go). `DeadLetterAssembler` puts the slices back together.

Schema version 1 (before 2026-11-28) kept only an oversized message's first
`PART_BYTES` (``payload_truncated``); `decode_dead_letter` still reads it.
`decode_dead_letter` (for inspection tools such as ``vigil dead-letters``) raises
only `Rejected`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from streams.vitals_codec import Rejected, is_json_integer, load_json_object

__all__ = [
    "DEAD_LETTER_SCHEMA_VERSION",
    "MAX_DEAD_LETTER_BYTES",
    "PART_BYTES",
    "MAX_DETAIL_CHARS",
    "DeadLetter",
    "DeadLetterAssembler",
    "DeadLetterSource",
    "dead_letter_headers",
    "decode_dead_letter",
    "encode_dead_letter",
]

DEAD_LETTER_SCHEMA_VERSION = 2
PART_BYTES = 256 * 1024
"""The original bytes one envelope carries at most: the largest input any topic
accepts (ECG chunks and FHIR messages), so only an oversized message is split."""
MAX_DETAIL_CHARS = 1000
MAX_KEY_BYTES = 1024
MAX_DEAD_LETTER_BYTES = 512 * 1024
"""Room for the base64 slice (4/3 of 256 KiB) plus the rest; under Kafka's 1 MB default."""

_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's legal topic names
_COMMON_FIELDS = frozenset({"schema_version", "reason", "detail", "source", "payload_b64", "payload_size", "worker"})
_TOP_FIELDS = {1: _COMMON_FIELDS | {"payload_truncated"}, 2: _COMMON_FIELDS | {"payload_offset"}}
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

    def to_dict(self) -> dict[str, Any]:
        """The envelope's ``source`` object (the key cut to `MAX_KEY_BYTES`, base64)."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "timestamp_ms": self.timestamp_ms,
                "key_b64": _b64(None if self.key is None else self.key[:MAX_KEY_BYTES])}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: DeadLetterSource
    payload: bytes | None
    """The original value, or the slice of it that starts at ``payload_offset`` (only
    its first `PART_BYTES` in a version-1 envelope with ``payload_truncated``)."""
    payload_size: int
    """Length of the whole original value."""
    payload_truncated: bool
    """Only version-1 envelopes are ever truncated."""
    worker: str | None
    payload_offset: int = 0

    @property
    def whole(self) -> bool:
        """Whether ``payload`` is the entire original value (a null or empty one included)."""
        return self.payload_offset == 0 and (0 if self.payload is None else len(self.payload)) == self.payload_size


def encode_dead_letter(
    reason: str, detail: str, source: DeadLetterSource, payload: bytes | None, *, worker: str | None = None
) -> list[bytes]:
    """The envelopes for one rejected message, to be sent in order with its key: one,
    or one per `PART_BYTES` slice of a longer payload. ``reason`` is a `Rejected.reason`
    code; ``detail`` is cut to `MAX_DETAIL_CHARS`, the key to `MAX_KEY_BYTES`.
    Raises ValueError only for caller bugs (a malformed reason code or source)."""
    if not _REASON.fullmatch(reason):
        raise ValueError(f"reason {reason!r} is not a lower_snake_case code")
    if not _TOPIC.fullmatch(source.topic) or source.partition < 0 or source.offset < 0:
        raise ValueError(f"bad source {source}")
    size = 0 if payload is None else len(payload)
    head: dict[str, Any] = {
        "schema_version": DEAD_LETTER_SCHEMA_VERSION,
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "source": source.to_dict(),
    }
    # ensure_ascii: a detail quoting a lone surrogate from bad input still encodes.
    return [json.dumps(head | {"payload_b64": _b64(None if payload is None else payload[start:start + PART_BYTES]),
                               "payload_offset": start, "payload_size": size, "worker": worker},
                       separators=(",", ":"), ensure_ascii=True).encode()
            for start in range(0, max(size, 1), PART_BYTES)]


def decode_dead_letter(raw: bytes | None) -> DeadLetter:
    """Parse one envelope back (version 1 or 2); raises `Rejected` (``empty``,
    ``oversized``, ``malformed_json``, ``unknown_schema_version``, ``unknown_field``,
    ``invalid_field``)."""
    doc = load_json_object(raw, MAX_DEAD_LETTER_BYTES)
    version = doc.get("schema_version")
    if not is_json_integer(version) or version not in _TOP_FIELDS:
        raise Rejected("unknown_schema_version", f"schema_version {version!r:.40} is not 1 or 2")
    fields = _TOP_FIELDS[int(version)]
    _only(doc, fields, "")
    _all(doc, fields, "")
    reason, detail, worker = doc["reason"], doc["detail"], doc["worker"]
    if not isinstance(reason, str) or not _REASON.fullmatch(reason):
        raise Rejected("invalid_field", "reason must be a lower_snake_case code")
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL_CHARS:
        raise Rejected("invalid_field", f"detail must be a string of at most {MAX_DETAIL_CHARS} characters")
    if worker is not None and not isinstance(worker, str):
        raise Rejected("invalid_field", "worker must be a string or null")
    payload = _unb64(doc["payload_b64"], "payload_b64", PART_BYTES)
    size = _count(doc["payload_size"], "payload_size")
    kept = 0 if payload is None else len(payload)
    if version == 1:
        truncated, start = doc["payload_truncated"], 0
        if not isinstance(truncated, bool):
            raise Rejected("invalid_field", "payload_truncated must be true or false")
        if truncated != (size > PART_BYTES):
            raise Rejected("invalid_field", f"payload_truncated must say whether payload_size {size} exceeds {PART_BYTES}")
    else:
        truncated, start = False, _count(doc["payload_offset"], "payload_offset")
        if start % PART_BYTES or (start and start >= size):
            raise Rejected("invalid_field", f"payload_offset {start} is not a slice start of a {size}-byte payload")
    if kept != min(size - start, PART_BYTES) or (payload is None and size):
        raise Rejected("invalid_field", f"a payload slice of {kept} bytes at {start} does not match payload_size {size}")
    return DeadLetter(reason, detail, _source(doc["source"]), payload, size, truncated, worker, start)


class DeadLetterAssembler:
    """Puts the slices of split dead letters back together.

    `add` every envelope read, in any order; it returns each message once it is
    whole (a message in one envelope at once), as a `DeadLetter` whose ``payload``
    is the entire original value. A slice seen twice (a worker that crashed after
    sending part of a message sends it all again) counts once; a message sent again
    after it was whole comes out again, as it was dead-lettered again."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int, int, int], dict[int, DeadLetter]] = {}

    def add(self, letter: DeadLetter) -> DeadLetter | None:
        if letter.whole or letter.payload_truncated:
            return letter
        src = letter.source
        key = (src.topic, src.partition, src.offset, letter.payload_size)
        parts = self._parts.setdefault(key, {})
        parts[letter.payload_offset] = letter
        if sum(len(p.payload or b"") for p in parts.values()) < letter.payload_size:
            return None
        del self._parts[key]
        first = parts[0]
        return replace(first, payload=b"".join(parts[s].payload or b"" for s in sorted(parts)), payload_offset=0)

    def incomplete(self) -> Iterator[tuple[DeadLetterSource, int, int]]:
        """``(source, bytes held, payload_size)`` of each message still missing slices."""
        for parts in self._parts.values():
            first = next(iter(parts.values()))
            yield first.source, sum(len(p.payload or b"") for p in parts.values()), first.payload_size


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
