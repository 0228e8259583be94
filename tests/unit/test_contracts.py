"""The documents in streams/contracts/ against the code that implements them.

jsonschema is not a dependency, so `validate` below implements the subset of JSON
Schema 2020-12 the contracts use, and refuses any keyword outside it: a schema
that starts using one fails here instead of being half-checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import streams.ecg_codec
from streams.dead_letter import DeadLetterSource, decode_dead_letter, encode_dead_letter
from streams.ecg_codec import EcgChunk, Lead, decode_ecg_chunk, encode_ecg_chunk
from streams.topics import TopicNames
from streams.vitals_codec import Rejected, decode_vitals, encode_vitals

STREAMS = Path(__file__).resolve().parents[2] / "streams"
CONTRACTS = STREAMS / "contracts"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# ---------------------------------------------------------------- the validator

_ANNOTATIONS = {"$schema", "$id", "title", "description", "examples", "$comment"}
_ASSERTIONS = {"type", "const", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
               "minLength", "maxLength", "pattern", "properties", "required", "additionalProperties"}


def _is_type(value: object, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "number":
        return number
    if name == "integer":  # 2020-12: any number with a zero fractional part
        return number and (isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)
                                                      and value == int(value)))
    raise AssertionError(f"unknown type {name}")


def _json_equal(a: object, b: object) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    # ECMA-262 ``$`` (no multiline) matches only at the very end; Python's also before a final "\n".
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


def validate(schema: dict[str, Any], value: object, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: keyword`` strings."""
    unknown = set(schema) - _ANNOTATIONS - _ASSERTIONS
    assert not unknown, f"{path}: keywords {unknown} are outside the tested subset"
    errors: list[str] = []
    types = schema.get("type")
    if types is not None and not any(_is_type(value, t) for t in ([types] if isinstance(types, str) else types)):
        return [f"{path}: type"]
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{path}: const")
    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        errors.append(f"{path}: enum")
    if _is_type(value, "number"):
        n: Any = value
        bounds: dict[str, Callable[[Any, Any], bool]] = {
            "minimum": lambda v, b: v >= b, "maximum": lambda v, b: v <= b,
            "exclusiveMinimum": lambda v, b: v > b, "exclusiveMaximum": lambda v, b: v < b}
        errors += [f"{path}: {k}" for k, ok in bounds.items() if k in schema and not ok(n, schema[k])]
        if "multipleOf" in schema and n % schema["multipleOf"] != 0:
            errors.append(f"{path}: multipleOf")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: minLength")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: maxLength")
        if "pattern" in schema and not _ecma_pattern(schema["pattern"]).search(value):
            errors.append(f"{path}: pattern")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in properties:
                errors += validate(properties[key], item, f"{path}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}.{key}: additionalProperties")
    return errors


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS / name).read_text())
    return loaded


SCHEMAS = sorted(p.name for p in CONTRACTS.glob("*.schema.json"))
DECODERS: dict[str, Callable[[bytes], object]] = {
    "vitals.v1.schema.json": decode_vitals, "vitals.v2.schema.json": decode_vitals,
    "deadletter.v1.schema.json": decode_dead_letter, "deadletter.v2.schema.json": decode_dead_letter,
}

# ---------------------------------------------------------------- the validator itself


def test_the_validator_catches_what_it_claims() -> None:
    s = {"type": "object", "required": ["a"], "additionalProperties": False, "properties": {
        "a": {"type": "integer", "exclusiveMinimum": 0}, "b": {"type": ["string", "null"], "pattern": "^x{1,2}$"},
        "c": {"enum": ["A", None]}, "d": {"const": 1}}}
    assert validate(s, {"a": 1.0, "b": None, "c": None, "d": 1.0}) == []
    assert validate(s, {"a": 0, "b": "xx\n", "c": "B", "d": True, "e": 1}) == [
        "$.a: exclusiveMinimum", "$.b: pattern", "$.c: enum", "$.d: const", "$.e: additionalProperties"]
    assert validate({"multipleOf": 4}, 8) == [] and validate({"multipleOf": 4}, 6) == ["$: multipleOf"]
    assert validate(s, {}) == ["$.a: required"]
    assert validate(s, {"a": True}) == ["$.a: type"]
    with pytest.raises(AssertionError, match="outside the tested subset"):
        validate({"oneOf": []}, 1)


# ---------------------------------------------------------------- the schemas


def test_every_json_topic_has_its_schema() -> None:
    assert SCHEMAS == ["deadletter.v1.schema.json", "deadletter.v2.schema.json", "vitals.v1.schema.json",
                       "vitals.v2.schema.json"]


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_is_draft_2020_12_with_an_id(name: str) -> None:
    s = schema(name)
    assert s["$schema"] == DRAFT
    version = int(re.fullmatch(r".*\.v(\d+)\.schema\.json", name).group(1))  # type: ignore[union-attr]
    assert s["$id"].endswith(f":{version}")
    assert s["properties"]["schema_version"]["const"] == version
    assert "schema_version" in s["required"]
    validate(s, {})  # walks the top level: only supported keywords


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_examples_validate_and_decode(name: str) -> None:
    s = schema(name)
    assert s["examples"]
    for example in s["examples"]:
        assert validate(s, example) == []
        DECODERS[name](json.dumps(example).encode())  # raises Rejected if the decoder disagrees


def test_the_two_vitals_versions_differ_only_by_the_new_fields_and_strictness() -> None:
    v1, v2 = schema("vitals.v1.schema.json"), schema("vitals.v2.schema.json")
    new = set(v2["properties"]) - set(v1["properties"])
    assert new == {"oxygen", "acvpu"}
    for key in set(v1["properties"]) - {"schema_version"}:
        assert v1["properties"][key] == v2["properties"][key], key
    assert (v1["additionalProperties"], v2["additionalProperties"]) == (True, False)


# ---------------------------------------------------------------- encoders produce valid messages

_ID = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def _pressures_crossed(doc: dict[str, Any]) -> bool:
    """Systolic below diastolic: the one decoder rule a JSON Schema cannot state (it
    compares two fields), so the tests below expect ``impossible_value`` for it."""
    sbp, dbp = doc.get("sbp"), doc.get("dbp")
    return _is_type(sbp, "number") and _is_type(dbp, "number") and sbp < dbp  # type: ignore[operator]


def _reading(lo: float, hi: float) -> st.SearchStrategy[float | None]:
    return st.none() | st.integers(int(lo), int(hi)) | st.floats(lo, hi)


@_PROPERTY
@given(_ID, st.integers(1, 32503680000000 - 1), st.none() | _ID,
       st.fixed_dictionaries({}, optional={"hr": _reading(0, 350), "spo2": _reading(0, 100), "rr": _reading(0, 100),
                                           "sbp": _reading(0, 350), "dbp": _reading(0, 300), "temp": _reading(20, 46)}),
       st.none() | st.booleans(), st.none() | st.sampled_from("ACVPU"), st.sampled_from([1, 2]))
def test_encoded_vitals_validate_and_decode(patient: str, ts: int, device: str | None, values: dict[str, float | None],
                                            oxygen: bool | None, acvpu: str | None, version: int) -> None:
    if version == 1:
        oxygen = acvpu = None
    raw = encode_vitals(patient, ts, values, device, oxygen=oxygen, acvpu=acvpu, schema_version=version)
    assert validate(schema(f"vitals.v{version}.schema.json"), json.loads(raw)) == []
    if _pressures_crossed(values):
        with pytest.raises(Rejected, match="impossible_value"):
            decode_vitals(raw)
        return
    v = decode_vitals(raw)
    assert v.values == {k: float(x) for k, x in values.items() if x is not None}
    assert (v.oxygen, v.acvpu) == (oxygen, acvpu)


@_PROPERTY
@given(st.sampled_from(["malformed_json", "crc_mismatch", "fhir_bad_unit"]), st.text(max_size=1200),
       st.none() | st.binary(max_size=300), st.none() | st.binary(max_size=40), st.none() | st.integers(0, 2**62),
       st.none() | st.text(max_size=20))
def test_encoded_dead_letters_validate(reason: str, detail: str, payload: bytes | None, key: bytes | None,
                                       ts: int | None, worker: str | None) -> None:
    (raw,) = encode_dead_letter(reason, detail, DeadLetterSource("vigil.fhir", 1, 2, ts, key), payload, worker=worker)
    assert validate(schema("deadletter.v2.schema.json"), json.loads(raw)) == []
    assert decode_dead_letter(raw).payload == payload


def test_the_slices_of_an_oversized_dead_letter_validate() -> None:
    raws = encode_dead_letter("oversized", "big", DeadLetterSource("vigil.ecg", 0, 0), b"\0" * 600_000)
    assert len(raws) == 3
    for raw in raws:
        assert validate(schema("deadletter.v2.schema.json"), json.loads(raw)) == []
    doc = json.loads(raws[1])
    doc["payload_offset"] += 1
    assert validate(schema("deadletter.v2.schema.json"), doc) == ["$.payload_offset: multipleOf"]


# ---------------------------------------------------------------- schema and decoder agree

# Values chosen to sit on and around every boundary the schemas draw.
_TRICKY = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, 2, 3, -1, 0.5, 1.0, 2.0, 20, 46, 46.01, 19.99, 100, 100.5, 300,
                                               301, 350, 351, 32503680000000, 32503679999999, 1764122400000.0]),
    st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "A", "a", "V", "X", "p1", "p 1", "p1\n", "x" * 64, "x" * 65, "bed-01", "1"]),
    st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                               max_size=1),
)
_VITALS_KEYS = ["schema_version", "patient_id", "device_id", "ts", "hr", "spo2", "rr", "sbp", "dbp", "temp", "oxygen",
                "acvpu", "other"]


@_PROPERTY
@given(st.sampled_from([1, 2]), st.lists(st.tuples(st.sampled_from(_VITALS_KEYS), _TRICKY | st.just(...)),
                                         max_size=4))
def test_vitals_decoder_accepts_exactly_what_its_schema_accepts(version: int, changes: list[tuple[str, Any]]) -> None:
    doc: dict[str, Any] = dict(schema(f"vitals.v{version}.schema.json")["examples"][0])
    for key, value in changes:
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    reason: str | None = None
    try:
        decode_vitals(json.dumps(doc).encode())
    except Rejected as r:
        reason = r.reason
    decoded = reason is None
    declared = next((v for v in (1, 2) if _json_equal(doc.get("schema_version"), v)), None)
    if declared is None:
        assert not decoded and reason == "unknown_schema_version"
        return
    errors = validate(schema(f"vitals.v{declared}.schema.json"), doc)
    event(f"decoded={decoded}")  # both outcomes must occur: see --hypothesis-show-statistics
    if not errors and _pressures_crossed(doc):
        assert reason == "impossible_value", doc
        return
    assert decoded == (errors == []), (errors, doc)


_DL_KEYS = ["schema_version", "reason", "detail", "source", "payload_b64", "payload_size", "payload_truncated",
            "payload_offset", "worker", "other", "source.topic", "source.partition", "source.offset", "source.timestamp_ms",
            "source.key_b64", "source.other"]


@_PROPERTY
@given(st.sampled_from([1, 2]), st.lists(st.tuples(st.sampled_from(_DL_KEYS), _TRICKY | st.just(...)
                                                   | st.sampled_from(["AAAA", "QQ==", "é", 262144])),
                                         min_size=1, max_size=3))
def test_dead_letter_decoder_rejects_whatever_breaks_its_schema(version: int, changes: list[tuple[str, Any]]) -> None:
    doc: dict[str, Any] = json.loads(json.dumps(schema(f"deadletter.v{version}.schema.json")["examples"][0]))
    for path, value in changes:
        target, key = (doc["source"], path[7:]) if path.startswith("source.") and isinstance(
            doc.get("source"), dict) else (doc, path)
        if value is ...:
            target.pop(key, None)
        else:
            target[key] = value
    invalid = bool(validate(schema(f"deadletter.v{version}.schema.json"), doc))
    event(f"schema-invalid={invalid}")
    if invalid:
        with pytest.raises(Rejected):
            decode_dead_letter(json.dumps(doc).encode())


# ---------------------------------------------------------------- the ECG layout document


def _layout_table(text: str) -> str:
    start = text.index("| offset |")
    return text[start: text.index("\n\n", start)]


def test_ecg_layout_table_is_the_same_in_code_and_contract() -> None:
    doc = streams.ecg_codec.__doc__
    assert doc is not None
    assert _layout_table(doc) == _layout_table((CONTRACTS / "ecg-chunk.v1.md").read_text())


def test_ecg_test_vector_is_what_the_encoder_writes() -> None:
    text = (CONTRACTS / "ecg-chunk.v1.md").read_text()
    block = re.search(r"## Test vector\n.*?```\n(.*?)```", text, re.S)
    assert block is not None
    vector = bytes.fromhex("".join(block.group(1).split()))
    chunk = EcgChunk("p0001", "dev-1", Lead.II, 250, 7, 1764122400000000,
                     np.array([0, 200, -200, 1000], np.int16), 0.005)
    assert encode_ecg_chunk(chunk) == vector and len(vector) == 57
    np.testing.assert_allclose(decode_ecg_chunk(vector).samples_mv(), [0, 1, -1, 5], rtol=1e-6)


def test_ecg_lead_table_matches_the_enum() -> None:
    text = (CONTRACTS / "ecg-chunk.v1.md").read_text()
    section = text[text.index("## Lead codes"): text.index("## Rejection")]
    documented = {int(code): name for code, name in re.findall(r"\| (\d+) \| (\w+)", section)}
    assert {code: name.upper() for code, name in documented.items()} == {lead.value: lead.name for lead in Lead}


# ---------------------------------------------------------------- the README


def test_readme_names_every_topic_and_links_existing_files() -> None:
    text = (CONTRACTS / "README.md").read_text()
    topics = TopicNames("<prefix>")
    for name in (topics.vitals, topics.ecg, topics.fhir, topics.dead_letter):
        assert f"`{name}`" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links and all((CONTRACTS / link).is_file() for link in links)


def test_every_reason_code_in_the_codecs_is_documented() -> None:
    readme = (CONTRACTS / "README.md").read_text()
    documented = set(re.findall(r"`([a-z][a-z0-9_]+)`", readme))
    raised: set[str] = set()
    for module in ("vitals_codec", "ecg_codec", "fhir", "dead_letter"):
        raised |= set(re.findall(r'Rejected\(\s*"([a-z0-9_]+)"', (STREAMS / f"{module}.py").read_text()))
        raised |= set(re.findall(r'reason = "([a-z0-9_]+)"', (STREAMS / f"{module}.py").read_text()))
    assert len(raised) > 30
    assert raised - documented - {"bad_sequence"} == set()  # bad_sequence: encoder-side only, in ecg-chunk.v1.md
