"""Which entries of the catalogue of legacy formats (`migrator.formats`) a generated row shows.

The coverage tests run what a generator made through these functions and require every entry of
`migrator.formats.catalogue_entries()` to be seen: `tests/test_formats.py` for `fabricate`,
`verification/test_formats_produced.py` for the hypothesis strategies. They judge the data alone,
never how it was made, so a generator that stops producing a shape is caught whatever it makes
instead. An entry is seen only in its pure form (an era's keys in its order, a queue with exactly
its shape's keys), never guessed from an object that mixes several.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from migrator.codec import InvalidText, keep_duplicate_keys
from migrator.formats import (
    CHECKPOINT_ERAS,
    COMPLETION_KEYS,
    COMPONENTS,
    LATER_CHECKPOINT_KEYS,
    LATER_COMPLETION_KEYS,
    LATER_ITEM_KEYS,
    LATER_QUEUE_KEYS,
    LATER_SESSION_KEYS,
    LATER_TOOL_KEYS,
    QUEUE_SHAPES,
    SESSION_SHAPES,
    TIMESTAMP_SPELLINGS,
    Era,
    SessionShape,
)
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacyRow, LegacySource

__all__ = [
    "Entry",
    "checkpoint_blob_shapes",
    "checkpoint_row_shapes",
    "session_blob_shapes",
    "session_row_shapes",
    "snapshot_shapes",
    "spellings_of",
]

Entry = tuple[str, str]
"""(category, name), as `migrator.formats.catalogue_entries()` lists them."""


def _names(keys: Iterable[Any]) -> frozenset[str]:
    return frozenset(key.name for key in keys)


_LATER_CHECKPOINT = _names(LATER_CHECKPOINT_KEYS)
_LATER_QUEUE = _names(LATER_QUEUE_KEYS)
_LATER_ITEM = _names(LATER_ITEM_KEYS)
_LATER_COMPLETION = _names(LATER_COMPLETION_KEYS)
_LATER_SESSION = _names(LATER_SESSION_KEYS)
_LATER_TOOL = _names(LATER_TOOL_KEYS)
_QUEUE_KEYS = frozenset(key for shape in QUEUE_SHAPES for key in shape.keys or ())
_ITEM_KEYS = frozenset(key for shape in QUEUE_SHAPES for key in shape.item_keys)
_SESSION_KEYS = frozenset(key for shape in SESSION_SHAPES for key in shape.keys)
_TOOL_SCHEMA_KEYS = ("name", "description", "inputSchema")
_COMPLETION_TIMES = ("queued_at", "started_at", "completed_at")
_SESSION_TIMES = ("created_at", "created")


def _keys(obj: dict) -> list[str]:
    """Every key in document order, a repeated one as often as it is written."""
    return list(obj.keys())


def _known(keys: list[str], known: frozenset[str]) -> list[str]:
    """The keys a shape could list, in order, repeats kept: unknown and later keys are other entries."""
    return [key for key in keys if key in known]


def _later_keys(obj: Any, later: frozenset[str], category: str) -> set[Entry]:
    return {(category, key) for key in _keys(obj) if key in later} if isinstance(obj, dict) else set()


# --- timestamps -------------------------------------------------------------------------------


def spellings_of(value: Any) -> set[Entry]:
    """The spelling a time value is written in (at most one: the patterns exclude each other)."""
    return {("timestamp spelling", spelling.name) for spelling in TIMESTAMP_SPELLINGS if _spelt(value, spelling)}


def _spelt(value: Any, spelling: Any) -> bool:
    if spelling.pattern is None:
        return type(value) is type(spelling.example)  # exactly: a bool is no number of seconds
    return isinstance(value, str) and re.fullmatch(spelling.pattern, value) is not None


# --- checkpoints ------------------------------------------------------------------------------


def _queue_form(queue: Any) -> str | None:
    """The catalogue's name for a queue's shape, or None when it is none of them exactly."""
    if isinstance(queue, list):
        return "list" if all(isinstance(item, dict) for item in queue) else None
    if not isinstance(queue, dict) or not isinstance(queue.get("items"), list):
        return None
    own = _known(_keys(queue), _QUEUE_KEYS)
    return next((shape.name for shape in QUEUE_SHAPES if shape.keys is not None and own == list(shape.keys)), None)


def _items(queue: Any) -> list[Any]:
    items = queue if isinstance(queue, list) else queue.get("items") if isinstance(queue, dict) else None
    return items if isinstance(items, list) else []


def _queue_shapes(queue: Any) -> set[Entry]:
    form = _queue_form(queue)
    seen = _later_keys(queue, _LATER_QUEUE, "later queue key")
    for item in _items(queue):
        seen |= _later_keys(item, _LATER_ITEM, "later queue item key")
        if isinstance(item, dict):
            seen |= spellings_of(item.get("timestamp"))
            shape = next((shape for shape in QUEUE_SHAPES if shape.name == form), None)
            if shape is not None and _known(_keys(item), _ITEM_KEYS) == list(shape.item_keys):
                seen.add(("queue shape", shape.name))
    return seen


def _completion_shapes(completion: Any) -> set[Entry]:
    if not isinstance(completion, dict):
        return set()
    seen = _later_keys(completion, _LATER_COMPLETION, "later completion key")
    for key in COMPLETION_KEYS:
        if key not in completion:
            seen.add(("completion key missing", key))
        else:
            seen.add(("completion key present", key))
            if completion[key] is None:
                seen.add(("completion key null", key))
    for key in _COMPLETION_TIMES:
        seen |= spellings_of(completion.get(key))
    return seen


def _is_components(value: Any) -> bool:
    return isinstance(value, dict) and _keys(value) == list(COMPONENTS) and all(type(v) is bool for v in value.values())


def _is_era(blob: dict, era: Era, forms: list[str | None]) -> bool:
    """The era's keys first, in order, with values of their kind; queue shapes tell apart eras
    that wrote the same keys."""
    twins = [other for other in CHECKPOINT_ERAS if other.keys == era.keys]
    return (
        _keys(blob)[: len(era.keys)] == list(era.keys)
        and (len(twins) == 1 or {form for form in forms if form is not None} == set(era.queue_shapes))
        and isinstance(blob.get("session_queues"), dict)
        and isinstance(blob.get("active_completions"), dict)
        and ("timestamp" not in era.keys or isinstance(blob.get("timestamp"), str))
        and ("components" not in era.keys or _is_components(blob.get("components")))
    )


def checkpoint_blob_shapes(blob: Any) -> set[Entry]:
    """The catalogue entries one `checkpoint_data` value shows."""
    if not isinstance(blob, dict):
        return set()
    seen = _later_keys(blob, _LATER_CHECKPOINT, "later checkpoint key") | spellings_of(blob.get("timestamp"))
    queues, completions = blob.get("session_queues"), blob.get("active_completions")
    forms: list[str | None] = []
    if isinstance(queues, dict):
        for queue in queues.values():
            forms.append(_queue_form(queue))
            seen |= _queue_shapes(queue)
    if isinstance(completions, dict):
        for completion in completions.values():
            seen |= _completion_shapes(completion)
    seen |= {("checkpoint era", era.name) for era in CHECKPOINT_ERAS if _is_era(blob, era, forms)}
    return seen


# --- sessions ---------------------------------------------------------------------------------


def _tool_form(tool: Any) -> str | None:
    if isinstance(tool, str):
        return "name"
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        return None
    own = tuple(_known(_keys(tool), frozenset(_TOOL_SCHEMA_KEYS)))
    return {("name",): "name-only", _TOOL_SCHEMA_KEYS: "schema"}.get(own)


def _is_session_shape(blob: dict, shape: SessionShape) -> bool:
    """The shape's keys in order (keys no shape lists aside), `tools` a list. Which forms the
    tools take are entries of their own."""
    own = [key for key in _known(_keys(blob), _SESSION_KEYS) if key in shape.keys or key not in _LATER_SESSION]
    return own == list(shape.keys) and isinstance(blob.get("tools"), list)


def session_blob_shapes(blob: Any) -> set[Entry]:
    """The catalogue entries one `session_data` value shows."""
    if not isinstance(blob, dict):
        return set()
    seen: set[Entry] = set()
    for key in _SESSION_TIMES:
        seen |= spellings_of(blob.get(key))
    shapes = [shape for shape in SESSION_SHAPES if _is_session_shape(blob, shape)]
    seen |= {("session shape", shape.name) for shape in shapes}
    keys = _keys(blob)
    for position, key in enumerate(keys):
        # A later key counts where no shape lists it, or after the last key of a shape that does not
        # (thin_handshake after a daemon session's `created`).
        lacking = [shape for shape in SESSION_SHAPES if key not in shape.keys]
        if key in _LATER_SESSION and (
            len(lacking) == len(SESSION_SHAPES) or any(shape.keys[-1] in keys[:position] for shape in lacking)
        ):
            seen.add(("later session key", key))
    tools = blob.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        form = _tool_form(tool)
        if form is not None:
            seen.add(("tool form", form))
        seen |= _later_keys(tool, _LATER_TOOL, "later tool key")
    return seen


# --- rows, readable or not --------------------------------------------------------------------


class _Unparsed(Exception):
    def __init__(self, kind: str | None) -> None:
        self.kind = kind


def _parse(data: Any) -> Any:
    """The JSON value of a cell, repeated keys kept; `_Unparsed` names the unreadable kind."""
    if isinstance(data, InvalidText):
        surrogate = any(0xA0 <= raw[1] <= 0xBF for raw in _after(bytes(data), 0xED))
        raise _Unparsed("lone_surrogate" if surrogate else "invalid_utf8")
    if isinstance(data, bytes):
        raise _Unparsed("blob_typed")
    if not isinstance(data, str):
        raise _Unparsed(None)  # INTEGER, REAL, NULL: the harness's own extras, beyond the catalogue
    if data == "":
        raise _Unparsed("empty")
    try:
        return json.loads(data, object_pairs_hook=keep_duplicate_keys)
    except RecursionError:
        raise _Unparsed("too_deep") from None
    except ValueError:
        if data.startswith("{'"):
            raise _Unparsed("python_repr") from None
        raise _Unparsed("truncated" if _is_json_prefix(data) else None) from None


def _after(raw: bytes, lead: int) -> Iterator[bytes]:
    """Every two-byte window of `raw` that starts with the byte `lead`."""
    index = raw.find(bytes([lead]))
    while 0 <= index < len(raw) - 1:
        yield raw[index : index + 2]
        index = raw.find(bytes([lead]), index + 1)


_LITERALS = ("true", "false", "null", "NaN", "Infinity")
_FILLERS = ("", "0", ":0", '"":0')  # a cut after `-`, `1.` or `:`, after a key, after `,` in an object


def _is_json_prefix(text: str) -> bool:
    """True when `text` is the beginning of some JSON text: what a write cut short leaves.

    It finishes the open string or literal, closes the open containers, and tries the few
    fillers a cut can need in between.
    """
    closers: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            closers.append("]" if char == "[" else "}")
        elif char in "]}" and (not closers or closers.pop() != char):
            return False
    head = _string_end(text, escaped) if in_string else _literal_end(text)
    tail = "".join(reversed(closers))
    for filler in _FILLERS:
        try:
            json.loads(text + head + filler + tail)
        except (ValueError, RecursionError):
            continue
        return True
    return False


def _string_end(text: str, escaped: bool) -> str:
    if escaped:
        return 'n"'
    unicode_escape = re.search(r"\\u([0-9a-fA-F]{0,3})$", text)
    return ("0" * (4 - len(unicode_escape.group(1))) if unicode_escape else "") + '"'


def _literal_end(text: str) -> str:
    letters = re.search(r"[A-Za-z]+$", text)
    run = letters.group() if letters else ""
    return next((word[len(run) :] for word in _LITERALS if run and word.startswith(run)), "")


def _structure_kinds(table: str, value: Any) -> set[str]:
    """The unreadable kinds a parsed value shows: a type where the mapping expects another."""
    if isinstance(value, list):
        return {"top_level_array"}
    if isinstance(value, str):
        return {"top_level_string"}
    if not isinstance(value, dict):
        return set()
    if table == MCP_SESSIONS.name:
        return {"wrong_container"} if isinstance(value.get("tools"), str) else set()
    kinds: set[str] = set()
    queues, completions = value.get("session_queues"), value.get("active_completions")
    if isinstance(queues, str) or isinstance(completions, str):
        kinds.add("wrong_container")
    for mapping in (queues, completions):
        if isinstance(mapping, dict) and len(set(_keys(mapping))) < len(_keys(mapping)):
            kinds.add("repeated_id")
    for queue in queues.values() if isinstance(queues, dict) else ():
        if isinstance(queue, dict) and isinstance(queue.get("items"), str):
            kinds.add("wrong_container")
        if not isinstance(queue, dict | list) or any(not isinstance(item, dict) for item in _items(queue)):
            kinds.add("wrong_element")
    if isinstance(completions, dict) and any(not isinstance(c, dict) for c in completions.values()):
        kinds.add("wrong_element")
    return kinds


def _data_shapes(table: str, data: Any) -> set[Entry]:
    try:
        value = _parse(data)
    except _Unparsed as unparsed:
        return {("unreadable kind", unparsed.kind)} if unparsed.kind else set()
    blob_shapes = checkpoint_blob_shapes if table == CHECKPOINTS.name else session_blob_shapes
    return blob_shapes(value) | {("unreadable kind", kind) for kind in _structure_kinds(table, value)}


def checkpoint_row_shapes(row: LegacyRow) -> set[Entry]:
    """Entries one `checkpoints` row `(rowid, id, timestamp, checkpoint_data)` shows."""
    _rowid, _id, stamp, data = row
    return spellings_of(stamp) | _data_shapes(CHECKPOINTS.name, data)


def session_row_shapes(row: LegacyRow) -> set[Entry]:
    """Entries one `mcp_sessions` row `(rowid, session_key, session_data, last_seen)` shows."""
    _rowid, key, data, last_seen = row
    seen = spellings_of(last_seen) | _data_shapes(MCP_SESSIONS.name, data)
    if not isinstance(key, str):
        seen.add(("unreadable kind", "session_key_not_text"))
    return seen


def snapshot_shapes(path: Path) -> set[Entry]:
    """Every entry a legacy SQLite file shows, read as the migrator reads it."""
    seen: set[Entry] = set()
    with LegacySource(path) as source:
        for table, shapes in ((CHECKPOINTS, checkpoint_row_shapes), (MCP_SESSIONS, session_row_shapes)):
            for batch in source.batches(table, 1000):
                for row in batch:
                    seen |= shapes(row)
    return seen
