"""Unit tests of migrator.codec: exact parsing, text overlays, SQLite cells, timestamps."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from migrator.codec import (
    DupDict,
    InvalidText,
    UnreadableBlob,
    apply_overlay,
    cell_identity,
    decode_cell,
    decode_sqlite_text,
    dumps,
    encode_cell,
    first_duplicate_key,
    keep_duplicate_keys,
    parse_blob,
    parse_timestamp,
    storage_type,
)
from migrator.errors import RebuildError


def test_json_dumps_writes_every_pair_of_a_dupdict() -> None:
    # The whole duplicate-key design rests on this behaviour of the standard library.
    value = json.loads('{"a": 1, "a": [2, {"b": 1, "b": 2}]}', object_pairs_hook=keep_duplicate_keys)
    assert isinstance(value, DupDict)
    assert dumps(value) == '{"a": 1, "a": [2, {"b": 1, "b": 2}]}'
    assert dumps({"x": value}) == '{"x": {"a": 1, "a": [2, {"b": 1, "b": 2}]}}'
    assert first_duplicate_key(value) == "a"
    assert first_duplicate_key({"a": 1}) is None


def test_canonical_text_needs_no_overlay() -> None:
    text = json.dumps({"n": 1, "f": 1.0, "z": -0.0, "nan": float("nan"), "big": 2**90, "s": "é\u0000"})
    value, overlay = parse_blob(text)
    assert overlay is None
    assert dumps(value) == text


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"b":[1,2]}',
        '{\n  "a": 1E5,\n  "b": "\\u00e9\\/",\n  "c": -0\n}\n',
        '  {"a" : 1.0e0 , "a" : 2}',
        '{"s": "é", "x": 1.10, "y": 1e400, "z": -1e400}',
        "[1,\t2]",
    ],
)
def test_overlay_restores_noncanonical_text_exactly(text: str) -> None:
    value, overlay = parse_blob(text)
    assert overlay is not None
    assert apply_overlay(dumps(value), overlay) == text


def test_overlay_refuses_a_changed_structure() -> None:
    _, overlay = parse_blob('{"a":[1,2]}')
    with pytest.raises(RebuildError, match="tokens"):
        apply_overlay(dumps({"a": [1]}), overlay)


@pytest.mark.parametrize("text", ["", "{", '{"a": }', "[1,]", '{"a": "\x01"}', "\ufeff{}", "nul", "{'a': 1}"])
def test_invalid_json_is_unreadable(text: str) -> None:
    with pytest.raises(UnreadableBlob, match="invalid JSON"):
        parse_blob(text)


def test_nesting_too_deep_is_unreadable_not_a_crash() -> None:
    with pytest.raises(UnreadableBlob, match="nested too deeply"):
        parse_blob("[" * 100_000 + "]" * 100_000)


def test_integers_longer_than_python_default_limit_survive() -> None:
    text = json.dumps({"n": int("9" * 5000)})
    value, overlay = parse_blob(text)
    assert overlay is None and dumps(value) == text


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("text", "text"),
        ("", "text"),
        ("nul\x00inside", "text"),
        (InvalidText(b"\xff\xfe"), "text"),
        (b"\x00\x01", "blob"),
        (b"", "blob"),
        (None, "null"),
        (0, "integer"),
        (-(2**63), "integer"),
        (1.5, "real"),
        (-0.0, "real"),
        (float("inf"), "real"),
    ],
)
def test_cells_round_trip_with_their_storage_type(value: object, kind: str) -> None:
    assert storage_type(value) == kind
    tag, text = encode_cell(value)
    back = decode_cell(tag, text)
    assert type(back) is type(value)
    assert cell_identity(back) == cell_identity(value)


def test_cell_identity_tells_storage_types_and_float_signs_apart() -> None:
    assert cell_identity(1) != cell_identity(1.0)
    assert cell_identity(0.0) != cell_identity(-0.0)
    assert cell_identity("a") != cell_identity(b"a")
    assert cell_identity(InvalidText(b"a")) != cell_identity(b"a")


def test_invalid_utf8_text_is_kept_as_bytes() -> None:
    assert decode_sqlite_text("é".encode()) == "é"
    kept = decode_sqlite_text(b"\xff")
    assert isinstance(kept, InvalidText) and bytes(kept) == b"\xff"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-20T23:17:27.832348Z", datetime(2025, 6, 20, 23, 17, 27, 832348)),
        ("2025-06-20T23:17:27Z", datetime(2025, 6, 20, 23, 17, 27)),
        ("2025-06-21T01:17:27+02:00", datetime(2025, 6, 20, 23, 17, 27)),
        ("2025-06-20T23:17:27", datetime(2025, 6, 20, 23, 17, 27)),
        ("yesterday", None),
    ],
)
def test_timestamps_get_a_parsed_copy(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected
