"""Unit tests of migrator.codec: exact parsing, text overlays, SQLite cells, timestamps."""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

import pytest

from migrator import codec
from migrator.codec import (
    DupDict,
    InvalidText,
    JSONValue,
    LegacyCell,
    UnreadableBlob,
    apply_overlay,
    cell_identity,
    decode_cell,
    decode_sqlite_text,
    dumps,
    encode_cell,
    encoded_blob,
    first_duplicate_key,
    is_storable_text,
    keep_duplicate_keys,
    key_digest,
    key_from_stored,
    parse_blob,
    parse_timestamp,
    storage_type,
    stored_key,
)
from migrator.equivalence import json_differences
from migrator.errors import RebuildError
from migrator.legacy import row_digest


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
def test_cells_round_trip_with_their_storage_type(value: LegacyCell, kind: str) -> None:
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
        ("9999-12-31T23:59:59.999999", datetime(9999, 12, 31, 23, 59, 59, 999999)),
        ("0999-12-31T23:59:59Z", None),  # before MySQL's DATETIME range
        ("0001-01-01T00:00:00+01:00", None),  # in UTC, before year 1
    ],
)
def test_timestamps_get_a_parsed_copy(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


# --- text every engine can hold, and keys ------------------------------------------------------------

KEYS = ["agent:conv", "", "a\x00b", "\x00", "\ud800 lone", "\x1b", '\x1b"a"', "🙂", "a ", "A"]


def test_nul_and_lone_surrogates_are_not_storable_text() -> None:
    assert is_storable_text("é 🙂 \x01")
    assert not is_storable_text("a\x00b")  # PostgreSQL's text refuses NUL
    assert not is_storable_text("\ud800")  # UTF-8 cannot encode a lone surrogate


def test_text_cells_every_engine_cannot_hold_get_their_own_tag() -> None:
    assert encode_cell("plain") == (None, "plain")
    tag, text = encode_cell("a\x00b")
    assert (tag, text) == ("text-json", '"a\\u0000b"')
    assert text is not None and is_storable_text(text)
    assert decode_cell(tag, text) == "a\x00b"


@pytest.mark.parametrize("key", KEYS)
def test_every_key_has_a_storable_form_that_gives_it_back(key: str) -> None:
    stored = stored_key(key)
    assert is_storable_text(stored)
    assert key_from_stored(stored) == key
    assert (stored == key) == (is_storable_text(key) and not key.startswith("\x1b"))


def test_no_two_keys_share_a_stored_form_or_a_digest() -> None:
    stored = [stored_key(key) for key in KEYS]
    assert len(set(stored)) == len(KEYS)
    assert len({key_digest(form) for form in stored}) == len(KEYS)
    assert {len(key_digest(form)) for form in stored} == {32}


def test_row_digests_of_text_cells_do_not_depend_on_how_they_are_stored() -> None:
    # Targets and archive manifests written before NUL text had its own tag hold digests of the
    # text itself; a new tag must not make their rows look changed, or an archive look corrupt.
    # The value is blake2b-128 of b"None:3:a\x00b", the digest version 0.1.0 wrote.
    assert row_digest(["a\x00b"]) == "b3372ee8b869045f0cc18ab205a5bc5c"


def test_dumps_writes_what_json_dumps_writes() -> None:
    values = [{"a": [1, 1.0, -0.0, 1e16, 2**70, float("nan"), float("inf"), True, None]}, "\u00e9\ud800\x00", [], {}]
    values.append(DupDict([("k", 1), ("k", [2])]))
    for value in values:
        assert dumps(value) == json.dumps(value)


@pytest.mark.parametrize(
    ("position", "wrong"),
    [(6, True), (4, ":"), (5, ",")],
    ids=["sorted-keys", "key-separator", "item-separator"],
)
def test_the_reused_encoder_falls_back_to_json_dumps_when_it_writes_otherwise(
    monkeypatch: pytest.MonkeyPatch, position: int, wrong: object
) -> None:
    # `dumps` is chosen once, at import; mutation testing cannot reach that, so it is checked here.
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]

    def make_otherwise(*args: object) -> object:
        return make(*args[:position], wrong, *args[position + 1 :])

    assert codec._reused_encoder() is not json.dumps  # the C encoder made as json.dumps makes it is kept
    # Only codec's view of the json module changes: json.dumps itself makes its encoder as ever.
    encoder = SimpleNamespace(c_make_encoder=make_otherwise)
    monkeypatch.setattr(codec, "json", SimpleNamespace(encoder=encoder, JSONEncoder=json.JSONEncoder, dumps=json.dumps))
    assert codec._reused_encoder() is json.dumps


def test_an_encoded_plain_blob_is_mapped_without_a_second_parse() -> None:
    blob = {"session_queues": {"s": [{"data": {"n": 1.0}}]}, "x": [-0.0, 2**70, "\ud800"]}
    with encoded_blob(blob) as text:
        assert text == json.dumps(blob)
        value, overlay = parse_blob(str(text))  # an equal text read back from a table will do
        assert value is blob and overlay is None
        assert parse_blob(text + " ")[0] is not blob  # any other text is parsed
    assert parse_blob(text)[0] is not blob  # and only inside the block


@pytest.mark.parametrize(
    "blob",
    [
        {1: "int key", "1": "text key"},  # the keys collide once json.dumps makes text of them
        {"t": (1, 2)},  # json.loads gives a list
        {"s": type("Text", (str,), {})("a str subclass")},
        {"b": [True, type("Flag", (int,), {})(1)]},
    ],
    ids=["colliding keys", "tuple", "str subclass", "int subclass"],
)
def test_a_blob_of_other_types_is_parsed_from_its_text(blob: dict) -> None:
    with encoded_blob(blob) as text:
        value, overlay = parse_blob(text)
    assert value is not blob
    assert (value, overlay) == parse_blob(text)


@pytest.mark.parametrize(
    "blob",
    [(1, "a"), type("Text", (str,), {})("a str subclass"), 7, 1.5, True, None, "text", [1, {"k": None}]],
    ids=["tuple", "str subclass", "int", "float", "bool", "null", "str", "list"],
)
def test_a_blob_that_is_not_an_object_is_encoded_and_read_back_as_json_loads_gives_it(blob: JSONValue) -> None:
    # The fast path hands back the blob itself only when json.loads would give an equal value of
    # the same types: a tuple or a str subclass at the top is parsed from its text.
    with encoded_blob(blob) as text:
        value, overlay = parse_blob(text)
    assert overlay is None
    assert json_differences(json.loads(text), value) == []
    assert (value is blob) == (type(blob) in (int, float, bool, type(None), str, list))


# --- tokens: what overlays count and respell -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ['{"a": [1, -2.5e3, "x\\\\\\"y"]}', '\n {\t"k" :\r\n[ true,false , null ] }  \n', '"\\u00e9"', "NaN", "[]"],
)
def test_tokens_with_their_whitespace_are_the_whole_text(text: str) -> None:
    spaces, tokens, trailing = codec._tokens(text)
    assert "".join(space + token for space, token in zip(spaces, tokens, strict=True)) + trailing == text
    assert tokens == [token for _, token in codec._TOKEN.findall(text)]


@pytest.mark.parametrize("text", ["[1, /2]", '{"a": 1} x', 'x{"a": 1}', "[1 ; 2]", "[1]\n/"])
def test_a_character_no_token_takes_fails_the_split_wherever_it_sits(text: str) -> None:
    """The split checks that the tokens and their whitespace cover the text with no gap."""
    with pytest.raises(ValueError, match="cannot tokenise JSON"):
        codec._tokens(text)


def test_a_noncanonical_text_that_repeats_a_key_keeps_every_pair() -> None:
    """The plain parse keeps the last of a repeated key: its overlay would not fit, so the text is
    parsed again keeping every pair, and rebuilt exactly."""
    text = '{"a": 1,  "b": 2, "a": 3}'
    value, overlay = codec.parse_blob(text)
    assert isinstance(value, codec.DupDict) and value.pairs == [("a", 1), ("b", 2), ("a", 3)]
    assert overlay is not None and codec.apply_overlay(codec.dumps(value), overlay) == text
