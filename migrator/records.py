"""Split a JSON object into typed columns and join it back, losing nothing.

Every object the schema models (a checkpoint, a queue, a queue item, a completion, a session, a
tool) goes through the same pair of functions. A `RecordSpec` names the keys that have columns
and the type each column holds. `split_record` puts a value in its column only when the value has
exactly that type (`true` in a BOOL column, never `1`), and everything else, unknown keys and
off-type values alike, in an ordered `extra` list. The `layout` keeps the key order, duplicate
keys and which of the two places each value went to. `join_record` is the exact inverse and
writes the text `json.dumps` would write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

from migrator.codec import (
    JSONValue,
    UnreadableBlob,
    dumps,
    encode_optional_bool,
    encode_optional_str,
    encode_str,
    is_storable_text,
    json_type_name,
    keep_duplicate_keys,
    parse_timestamp,
)
from migrator.errors import RebuildError


class Kind(Enum):
    # Members are singletons, so identity hashes them exactly; Enum's own `__hash__` runs in
    # Python and is called for every key of every object a rebuild joins.
    __hash__ = object.__hash__

    TEXT = "text"  # a JSON string (or null) in a text column
    BOOL = "bool"  # a JSON boolean (or null) in a boolean column
    JSON = "json"  # any JSON value, kept as its canonical JSON text
    TIMESTAMP = "timestamp"  # a string kept verbatim in `<column>_text`, plus a parsed copy
    OBJECT = "object"  # a JSON object whose entries become child rows
    ARRAY = "array"  # a JSON array whose elements become child rows


CONTAINER_TYPES = {Kind.OBJECT: dict, Kind.ARRAY: list}


@dataclass(frozen=True)
class Field:
    key: str
    kind: Kind
    column: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        name = self.column or self.key
        if self.kind is Kind.TIMESTAMP:
            return (f"{name}_text", name)
        if self.kind in CONTAINER_TYPES:
            return ()
        return (name,)


@dataclass(frozen=True)
class RecordSpec:
    """The modelled keys of one kind of JSON object, in the order of their columns."""

    name: str
    fields: tuple[Field, ...]
    slots: dict[str, tuple[int, Kind]] = field(init=False, repr=False)
    columns: tuple[str, ...] = field(init=False, repr=False)  # names of the slots, in order
    width: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once: split_record runs for every object of every row.
        slots: dict[str, tuple[int, Kind]] = {}
        position = 0
        for spec_field in self.fields:
            slots[spec_field.key] = (position, spec_field.kind)
            position += len(spec_field.columns)
        columns = tuple(name for spec_field in self.fields for name in spec_field.columns)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "width", len(columns))


@dataclass(slots=True)  # made for every object of every row: slots make that cheaper
class SplitRecord:
    slots: list[Any]
    layout: str
    extra: str | None
    containers: dict[str, Any]


def _fits(kind: Kind, value: JSONValue) -> bool:
    """Whether a value has exactly the column's type (never coerced: `1` is no boolean)."""
    if kind is Kind.TEXT or kind is Kind.TIMESTAMP:
        return value is None or (type(value) is str and is_storable_text(value))
    if kind is Kind.JSON:
        return True
    if kind is Kind.BOOL:
        return value is None or value is True or value is False
    return isinstance(value, CONTAINER_TYPES[kind])


Where = str | Callable[[], str]
"""Names an object in error messages; a callable is only called when there is an error."""


@lru_cache(maxsize=4096)
def _layout_text(entries: tuple[str | tuple[str], ...]) -> str:
    """Layouts repeat from row to row, so their JSON text is made once each."""
    return dumps([list(e) if isinstance(e, tuple) else e for e in entries])


def split_record(spec: RecordSpec, obj: dict, where: Where) -> SplitRecord:
    """Typed column slots, layout, extra values and child containers of one JSON object.

    `where` names the object in error messages, e.g. `checkpoint_data.session_queues["s1"]`.
    A container key holding anything but its container type makes the row unreadable: the
    schema has no place for it, so the row is quarantined whole instead.
    """
    if type(obj) is not dict:  # a DupDict: a repeated key goes to `extra`, which needs bookkeeping
        return _split_repeating(spec, obj, where)
    # The common case, written out: this runs for every object of every row (half a million
    # times for 100k sessions), and a call per key to a `_fits` costs a fifth of it.
    slots: list[Any] = [None] * spec.width
    layout: list[str | tuple[str]] = []
    extra: list[JSONValue] = []
    containers: dict[str, Any] = {}
    spec_slots = spec.slots
    for key, value in obj.items():
        slot = spec_slots.get(key)
        if slot is not None:
            position, kind = slot
            if kind is Kind.TEXT or kind is Kind.TIMESTAMP:
                if value is None or (type(value) is str and is_storable_text(value)):
                    slots[position] = value
                    if kind is Kind.TIMESTAMP:
                        slots[position + 1] = None if value is None else parse_timestamp(value)
                    layout.append(key)
                    continue
            elif kind is Kind.JSON:
                slots[position] = dumps(value)
                layout.append(key)
                continue
            elif kind is Kind.BOOL:
                if value is None or value is True or value is False:
                    slots[position] = value
                    layout.append(key)
                    continue
            elif isinstance(value, CONTAINER_TYPES[kind]):
                containers[key] = value
                layout.append(key)
                continue
            else:
                raise _misplaced_container(kind, key, value, where)
        layout.append((key,))
        extra.append(value)
    return SplitRecord(slots, _layout_text(tuple(layout)), dumps(extra) if extra else None, containers)


def _misplaced_container(kind: Kind, key: str, value: JSONValue, where: Where) -> UnreadableBlob:
    expected = "object" if kind is Kind.OBJECT else "array"
    place = where() if callable(where) else where
    return UnreadableBlob(f"{place}.{key} is {json_type_name(value)}, expected {expected}")


def _split_repeating(spec: RecordSpec, obj: dict, where: Where) -> SplitRecord:
    """`split_record` of an object that repeats a key: each key's first value goes to its column
    (when it fits), every later one to `extra`."""
    slots: list[Any] = [None] * spec.width
    used: set[str] = set()
    layout: list[str | tuple[str]] = []
    extra: list[JSONValue] = []
    containers: dict[str, Any] = {}
    for key, value in obj.items():
        slot = spec.slots.get(key)
        repeated = key in used
        if slot is None or repeated or not _fits(slot[1], value):
            if slot is not None and slot[1] in CONTAINER_TYPES and not repeated:
                raise _misplaced_container(slot[1], key, value, where)
            layout.append((key,))
            extra.append(value)
            continue
        used.add(key)
        layout.append(key)
        position, kind = slot
        if kind is Kind.TEXT or kind is Kind.BOOL:
            slots[position] = value
        elif kind is Kind.JSON:
            slots[position] = dumps(value)
        elif kind is Kind.TIMESTAMP:
            slots[position] = value
            slots[position + 1] = None if value is None else parse_timestamp(value)
        else:
            containers[key] = value
    return SplitRecord(slots, _layout_text(tuple(layout)), dumps(extra) if extra else None, containers)


@lru_cache(maxsize=4096)
def _parse_layout(layout: str) -> tuple[tuple[str, bool, str], ...]:
    """(key, comes-from-extra, the key's JSON text and colon) of a layout's entries; layouts
    repeat, so parsing and encoding the keys is done once each."""
    entries = [(e[0], True) if isinstance(e, list) else (e, False) for e in json.loads(layout)]
    return tuple((key, from_extra, f"{encode_str(key)}: ") for key, from_extra in entries)


_ENCODERS: dict[Kind, Callable[[Any], str]] = {
    Kind.TEXT: encode_optional_str,
    Kind.TIMESTAMP: encode_optional_str,
    Kind.BOOL: encode_optional_bool,
    Kind.JSON: lambda text: text,
}


def join_record(
    spec: RecordSpec,
    slots: Sequence[Any],
    layout: str,
    extra: str | None,
    containers: dict[str, str] | None = None,
) -> str:
    """The JSON text of an object from its split parts; `containers` holds encoded child texts."""
    extras = iter(json.loads(extra, object_pairs_hook=keep_duplicate_keys)) if extra else iter(())
    parts = []
    try:
        for key, from_extra, key_text in _parse_layout(layout):
            if from_extra:
                text = dumps(next(extras))
            else:
                position, kind = spec.slots[key]
                if kind in CONTAINER_TYPES:
                    text = (containers or {})[key]
                else:
                    text = _ENCODERS[kind](slots[position])
                    if kind is Kind.JSON and text is None:
                        raise RebuildError(f"{spec.name}.{key} is listed but its column is empty")
            parts.append(key_text + text)
    except (StopIteration, KeyError) as exc:
        raise RebuildError(f"{spec.name} layout does not match its columns: {exc!r}") from exc
    return "{" + ", ".join(parts) + "}"
