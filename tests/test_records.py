"""`records.split_record`'s two paths, and the tool rows' shortcut, held to each other.

`split_record` splits a plain dict (every object of nearly every row) with its checks written
out, and an object that repeats a key with bookkeeping of the keys already placed. On an object
that repeats no key both must give the same split; `sessions._tool_row` maps `{"name": ...}`
without `split_record`, and must give the row that `split_record` would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator import checkpoints, records, sessions
from migrator.codec import UnreadableBlob
from migrator.records import Kind, RecordSpec, split_record
from verification.strategies import adversarial_texts, json_objects, weighted
from verification.strategies.adversarial import json_scalars

SPECS = (
    sessions.SESSION_DATA,
    sessions.TOOL,
    checkpoints.CHECKPOINT_DATA,
    checkpoints.QUEUE,
    checkpoints.QUEUE_ITEM,
    checkpoints.COMPLETION,
)


def _values() -> st.SearchStrategy[Any]:
    """Any parsed JSON value (`json_values` also holds text to embed as it is)."""
    return st.recursive(
        st.one_of(json_scalars(), adversarial_texts()),
        lambda children: st.one_of(st.lists(children, max_size=3), json_objects(children)),
        max_leaves=6,
    )


TEXTS = st.none() | adversarial_texts() | st.sampled_from(["2025-06-20T23:17:27Z", "2025-06-20 23:17:27", "x"])
FITTING: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.TEXT: TEXTS,
    Kind.TIMESTAMP: TEXTS,
    Kind.BOOL: st.sampled_from([None, True, False]),
    Kind.JSON: _values(),
    Kind.OBJECT: st.dictionaries(st.text(max_size=3), json_scalars(), max_size=2),
    Kind.ARRAY: st.lists(json_scalars(), max_size=2),
}
OFF_TYPE: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.TEXT: st.sampled_from([0, 1.5, True, "\x00", "a\ud800", [], {}]),
    Kind.TIMESTAMP: st.sampled_from([0, -0.0, False, "\x00", ["2025-06-20T23:17:27Z"]]),
    Kind.BOOL: st.sampled_from([0, 1, 1.0, "true", [], {}]),
    Kind.JSON: _values(),
    # A container key holding another type makes the whole row unreadable: drawn rarely, so
    # that most objects split.
    Kind.OBJECT: st.sampled_from([[], "x", None]),
    Kind.ARRAY: st.sampled_from([{}, "x", None]),
}


def _value_for(spec: RecordSpec, key: str) -> st.SearchStrategy[Any]:
    if key not in spec.slots:
        return _values()
    kind = spec.slots[key][1]
    rare = 1 if kind in records.CONTAINER_TYPES else 8
    return weighted((8, FITTING[kind]), (rare, OFF_TYPE[kind]))


@st.composite
def objects_of(draw: st.DrawFn, spec: RecordSpec) -> dict[str, Any]:
    """Objects with every key of the spec, in any order, among others."""
    others = draw(st.lists(st.text(max_size=5), unique=True, max_size=3))
    keys = draw(st.permutations(list(dict.fromkeys([*spec.slots, *others]))))
    return {key: draw(_value_for(spec, key)) for key in keys}


def _split_or_reason(split: Any, spec: RecordSpec, obj: dict[str, Any]) -> Any:
    try:
        result = split(spec, obj, "obj")
    except UnreadableBlob as exc:
        return str(exc)
    return (result.slots, result.layout, result.extra, result.containers)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
@given(data=st.data())
def test_a_plain_object_splits_as_the_path_for_repeated_keys_splits_it(spec: RecordSpec, data: st.DataObject) -> None:
    obj = data.draw(objects_of(spec))
    assert _split_or_reason(split_record, spec, obj) == _split_or_reason(records._split_repeating, spec, obj)


def _named_tools() -> st.SearchStrategy[dict[str, Any]]:
    """`{"name": ...}`, the shape `_tool_row` maps on its own, and the same with more keys after."""
    more = st.dictionaries(st.sampled_from(["description", "inputSchema", "name ", "x"]), _values(), max_size=2)
    return st.builds(lambda name, rest: {"name": name, **rest}, st.text(max_size=5) | _values(), more)


@given(_named_tools() | objects_of(sessions.TOOL))
def test_a_tool_object_maps_as_split_record_maps_it(tool: dict[str, Any]) -> None:
    split = split_record(sessions.TOOL, tool, "tool")
    row = sessions._tool_row(7, 3, tool)
    at = sessions.TOOL_AT
    assert list(row[sessions.TOOL_TABLE.record]) == split.slots
    assert (row[at.session_id], row[at.position], row[at.form]) == (7, 3, "object")
    assert (row[at.layout], row[at.extra]) == (split.layout, split.extra)
