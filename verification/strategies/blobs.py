"""Whole `checkpoint_data` and `session_data` values in every historical shape.

Each JSON object the migrator splits into columns (a checkpoint, a queue, a queue item, a
completion, a session, a tool) is built by `records`: every modelled key gets a value from its own
strategy (or is left out when that strategy draws `MISSING`), unknown keys and repeats of typed
keys are appended, and the keys may then be shuffled. A value is realistic most of the time and
adversarial the rest: `null`, an off-type value, any JSON at all.

Which keys each object has, in which order, comes from the catalogue of legacy formats
(`migrator.formats`): the checkpoint eras, queue and session shapes, tool forms and later keys.
`verification/test_formats_produced.py` checks that every entry of it is drawn.

Every field takes an override in the manner of `st.builds`/`from_model`:

    checkpoint_blobs(reason=st.just("manual"), active_completions=st.just({}))
    session_blobs(tools=st.just(["Read", "Read"]))

An override is the strategy for that key's value; draw `MISSING` from it to leave the key out.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from migrator.formats import (
    CHECKPOINT_ERAS,
    COMPLETION_KEYS,
    LATER_CHECKPOINT_KEYS,
    LATER_COMPLETION_KEYS,
    LATER_ITEM_KEYS,
    LATER_QUEUE_KEYS,
    LATER_SESSION_KEYS,
    LATER_TOOL_KEYS,
    QUEUE_SHAPES,
    SESSION_SHAPES,
    Era,
    LaterKey,
    QueueShape,
    SessionShape,
    by_name,
)
from verification.strategies import content
from verification.strategies.adversarial import (
    adversarial_texts,
    json_values,
    object_from_pairs,
    weighted,
    with_a_trap,
)

__all__ = [
    "MISSING",
    "checkpoint_blobs",
    "completion_maps",
    "completions",
    "list_queues",
    "object_queues",
    "optional",
    "queue_items",
    "session_blobs",
    "session_queue_maps",
    "tool_entries",
    "tool_lists",
]


class _Missing:
    """Drawn in place of a value to mean "this key is not in the object at all"."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@cache
def optional(values: SearchStrategy[Any], present: int = 9) -> SearchStrategy[Any]:
    """The key is absent one time in `present + 1`; shrinking prefers it absent."""
    return weighted((1, st.just(MISSING)), (present, values))


# --- field values: realistic most of the time, adversarial the rest ---------------------------


@cache
def text_field(realistic: SearchStrategy[str]) -> SearchStrategy[Any]:
    """A key with a text column: text usually, but null or any other JSON value is possible."""
    return optional(
        weighted(
            (4, realistic),
            (2, with_a_trap(realistic)),
            (2, adversarial_texts()),
            (1, st.none()),
            (1, json_values(4)),
        )
    )


@cache
def timestamp_field(realistic: SearchStrategy[str] | None = None) -> SearchStrategy[Any]:
    """A key with a timestamp column: any textual form, odd text, null, or epoch seconds."""
    texts = realistic if realistic is not None else content.timestamps()
    return optional(
        weighted(
            (5, texts),
            (1, with_a_trap(texts)),
            (2, adversarial_texts()),
            (1, st.none()),
            (1, content.epoch_times()),
        )
    )


@cache
def bool_field() -> SearchStrategy[Any]:
    off_type = st.sampled_from((0, 1, 1.0, -0.0, "true", "", [], {}))
    return optional(weighted((6, st.booleans()), (1, st.none()), (1, off_type), (1, json_values(4))))


@cache
def json_field(realistic: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """A key whose value the schema keeps as JSON text: anything at all may be there."""
    return optional(weighted((5, realistic), (4, json_values()), (1, st.none())))


# --- records ----------------------------------------------------------------------------------


@cache
def later_values(key: LaterKey) -> SearchStrategy[Any]:
    """A later key's value: one the catalogue saw it hold, or any JSON at all."""
    return weighted((1, st.sampled_from(key.examples)), (1, json_values(6)))


@cache
def unknown_keys(
    typed_keys: tuple[str, ...], later_keys: tuple[LaterKey, ...]
) -> SearchStrategy[list[tuple[str, Any]]]:
    """Keys the schema does not model, and second occurrences of typed keys, with any value.

    The later keys are the catalogue's for this kind of object (`migrator.formats.LATER_*`).
    """
    later = st.one_of([st.tuples(st.just(key.name), later_values(key)) for key in later_keys])
    others = st.tuples(weighted((2, st.sampled_from(typed_keys)), (2, adversarial_texts())), json_values(6))
    return st.lists(weighted((4, later), (3, others)), max_size=3)


@st.composite
def records(
    draw: st.DrawFn,
    fields: Mapping[str, SearchStrategy[Any]],
    extras: SearchStrategy[list[tuple[str, Any]]],
    shuffle: SearchStrategy[bool],
) -> dict:
    """One JSON object: the fields in order (absent when `MISSING`), extras after, maybe shuffled."""
    pairs = [(key, value) for key, values in fields.items() if (value := draw(values)) is not MISSING]
    pairs += draw(extras)
    if draw(shuffle):
        pairs = draw(st.permutations(pairs))
    return object_from_pairs(pairs)


def _chosen(overrides: Mapping[str, SearchStrategy[Any] | None], defaults: dict[str, SearchStrategy[Any]]) -> dict:
    """The defaults with every given override in its place, the key order kept."""
    chosen = {key: overrides.get(key) for key in defaults}
    return {key: default if chosen[key] is None else chosen[key] for key, default in defaults.items()}


def _with_repeats(values: SearchStrategy[list[Any]]) -> SearchStrategy[list[Any]]:
    """Lists where some element appears again later: a retried request, a tool listed twice."""

    @st.composite
    def repeated(draw: st.DrawFn) -> list[Any]:
        items = draw(values)
        if not items:
            return items
        for index in draw(st.lists(st.integers(0, len(items) - 1), max_size=2)):
            items.insert(draw(st.integers(index + 1, len(items))), items[index])
        return items

    return repeated()


# --- checkpoints ------------------------------------------------------------------------------

# The keys production blobs carry come from the catalogue (`migrator.formats`), not from the
# mapping's record specs: a key the mapping stopped typing must still be drawn, and kept exactly.
_QUEUE_SHAPES: dict[str, QueueShape] = by_name(QUEUE_SHAPES)
_ITEM_KEYS = tuple(dict.fromkeys(key for shape in QUEUE_SHAPES for key in shape.item_keys))
_QUEUE_TYPED_KEYS = ("is_active", "active_request")  # never `items`: a second one is its own test


def _in_shape(keys: tuple[str, ...], fields: dict[str, SearchStrategy[Any]]) -> dict[str, SearchStrategy[Any]]:
    """`fields` in the order `keys` gives, those not in `keys` after it and absent unless overridden."""
    absent = st.just(MISSING)
    return {key: fields[key] for key in keys} | {key: absent for key in fields if key not in keys}


@cache
def queue_items(
    *,
    shape: str = "object",
    request_ids: SearchStrategy[Any] | None = None,
    shuffle: SearchStrategy[bool] | None = None,
    **overrides: SearchStrategy[Any],
) -> SearchStrategy[dict]:
    """One queued request with the item keys of a queue shape; list-shaped queues had no `timestamp`."""
    fields = {
        "request_id": text_field(request_ids if request_ids is not None else content.request_ids()),
        "data": json_field(content.request_data()),
        "timestamp": timestamp_field(),
    }
    defaults = _in_shape(_QUEUE_SHAPES[shape].item_keys, fields)
    extras = unknown_keys(_ITEM_KEYS, LATER_ITEM_KEYS)
    return records(_chosen(overrides, defaults), extras, shuffle if shuffle is not None else _rarely())


@cache
def list_queues(entries: SearchStrategy[Any] | None = None) -> SearchStrategy[list[Any]]:
    """The old queue shape: a plain list of items, in order, a request now and then queued twice."""
    return _with_repeats(st.lists(entries if entries is not None else queue_items(shape="list"), max_size=4))


@cache
def object_queues(
    entries: SearchStrategy[Any] | None = None,
    *,
    shape: str = "object",
    shuffle: SearchStrategy[bool] | None = None,
    **overrides: Any,
) -> SearchStrategy[dict]:
    """An object-shaped queue, `{"items": [...], "is_active": ..., "active_request": ...}` or
    another of the catalogue's object shapes.

    `entries` draws each element of `items`; `items=` overrides the whole value of the key.
    """
    each = entries if entries is not None else queue_items(shape=shape)
    fields = {
        "items": optional(_with_repeats(st.lists(each, max_size=4)), present=19),
        "is_active": bool_field(),
        "active_request": text_field(content.request_ids()),
    }
    defaults = _in_shape(_QUEUE_SHAPES[shape].keys or (), fields)
    extras = unknown_keys(_QUEUE_TYPED_KEYS, LATER_QUEUE_KEYS)
    return records(_chosen(overrides, defaults), extras, shuffle if shuffle is not None else _rarely())


@cache
def queues_of(shapes: tuple[str, ...] = tuple(_QUEUE_SHAPES)) -> SearchStrategy[Any]:
    """A queue in one of the catalogue's queue `shapes`."""
    return st.one_of(
        [list_queues() if _QUEUE_SHAPES[name].keys is None else object_queues(shape=name) for name in shapes]
    )


@cache
def session_queue_maps(
    queues: SearchStrategy[Any] | None = None, session_ids: SearchStrategy[str] | None = None, min_size: int = 0
) -> SearchStrategy[dict]:
    """`session_queues`: session id to queue, every shape mixed in one map unless `queues` says."""
    ids = session_ids if session_ids is not None else weighted((4, content.session_ids()), (1, adversarial_texts()))
    return st.dictionaries(ids, queues if queues is not None else queues_of(), min_size=min_size, max_size=3)


@cache
def completions(*, shuffle: SearchStrategy[bool] | None = None, **overrides: SearchStrategy[Any]) -> SearchStrategy:
    """One `active_completions` entry; every key may be missing, null or off-type."""
    fields = {
        "session_id": text_field(content.session_ids()),
        "agent_id": text_field(content.agent_ids()),
        "status": text_field(content.statuses()),
        "queued_at": timestamp_field(),
        "started_at": timestamp_field(),
        "completed_at": timestamp_field(),
        "error": text_field(content.error_texts()),
        "data": json_field(content.request_data()),
        "original_event": json_field(content.original_events()),
    }
    defaults = _in_shape(COMPLETION_KEYS, fields)
    extras = unknown_keys(COMPLETION_KEYS, LATER_COMPLETION_KEYS)
    return records(_chosen(overrides, defaults), extras, shuffle if shuffle is not None else _rarely())


@cache
def completion_maps(entries: SearchStrategy[dict] | None = None) -> SearchStrategy[dict]:
    """`active_completions`: request id to completion."""
    ids = weighted((4, content.request_ids()), (1, adversarial_texts()))
    return st.dictionaries(ids, entries if entries is not None else completions(), max_size=3)


_ERAS: dict[str, Era] = by_name(CHECKPOINT_ERAS)


@cache
def checkpoint_blobs(
    *,
    era: SearchStrategy[str] | None = None,
    timestamp: SearchStrategy[Any] | None = None,
    session_queues: SearchStrategy[Any] | None = None,
    active_completions: SearchStrategy[Any] | None = None,
    components: SearchStrategy[Any] | None = None,
    reason: SearchStrategy[Any] | None = None,
    extra_keys: SearchStrategy[list[tuple[str, Any]]] | None = None,
    shuffle: SearchStrategy[bool] | None = None,
) -> SearchStrategy[dict]:
    """A whole `checkpoint_data` value of one daemon era (`migrator.formats.CHECKPOINT_ERAS`).

    The era's keys come first in its order, then `reason` and later keys. An override of a key
    the era lacks (`timestamp` in bf15176's) adds that key after them.
    """
    overrides = {
        "timestamp": timestamp,
        "session_queues": session_queues,
        "active_completions": active_completions,
        "components": components,
        "reason": reason,
    }
    extras = extra_keys if extra_keys is not None else unknown_keys(("timestamp", "reason"), LATER_CHECKPOINT_KEYS)
    shuffles = shuffle if shuffle is not None else _rarely()
    # Built once per era, not per draw: building strategies costs far more than drawing.
    by_era = {name: records(_chosen(overrides, _checkpoint_defaults(e)), extras, shuffles) for name, e in _ERAS.items()}
    return (era if era is not None else st.sampled_from(tuple(_ERAS))).flatmap(by_era.__getitem__)


def _checkpoint_defaults(era: Era) -> dict[str, SearchStrategy[Any]]:
    mixed = len(era.queue_shapes) if len(era.queue_shapes) > 1 else 0
    fields = {
        "timestamp": timestamp_field(content.timestamps()),
        # An era that mixed queue shapes in one checkpoint gets room for one queue of each.
        "session_queues": optional(session_queue_maps(queues_of(era.queue_shapes), min_size=mixed), present=19),
        "active_completions": optional(completion_maps(), present=19),
        "components": optional(weighted((4, content.components()), (1, json_values(4)))),
        "reason": optional(weighted((4, content.reasons()), (1, st.none()), (1, json_values(4))), present=1),
    }
    return _in_shape((*era.keys, "reason"), fields)


@cache
def _rarely() -> SearchStrategy[bool]:
    """Shuffle an object now and then: the daemon's own order is the common case."""
    return weighted((3, st.just(False)), (1, st.just(True)))


# --- sessions ---------------------------------------------------------------------------------

_SESSION_SHAPES: dict[str, SessionShape] = by_name(SESSION_SHAPES)
_SESSION_KEYS = tuple(dict.fromkeys(key for shape in SESSION_SHAPES for key in shape.keys))
_TOOL_KEYS = ("name", "description", "inputSchema")


@cache
def tool_entries(*, form: str | None = None) -> SearchStrategy[Any]:
    """One `tools` element in a catalogue form (`migrator.formats.TOOL_FORMS`: a bare name,
    `{"name": ...}`, a full schema), or an object of any of their keys, or anything else."""
    by_form: dict[str, SearchStrategy[Any]] = {
        "name": content.tool_names(),
        "name-only": content.tool_names().map(lambda name: {"name": name}),
        "schema": content.tool_schemas(),
        "object": records(
            {
                "name": text_field(content.tool_names()),
                "description": optional(text_field(content.error_texts()), present=1),
                "inputSchema": optional(json_field(content.tool_schemas()), present=1),
            },
            unknown_keys(_TOOL_KEYS, LATER_TOOL_KEYS),
            st.booleans(),
        ),
        "json": json_values(4),
    }
    if form is not None:
        return by_form[form]
    weights = {"name": 3, "name-only": 3, "schema": 1, "object": 2, "json": 1}
    return weighted(*((weight, by_form[name]) for name, weight in weights.items()))


@cache
def tool_lists(entries: SearchStrategy[Any] | None = None) -> SearchStrategy[list[Any]]:
    """A tools list in order, sometimes empty, often with a tool listed twice."""
    return _with_repeats(st.lists(entries if entries is not None else tool_entries(), max_size=4))


@cache
def session_blobs(
    *,
    shape: SearchStrategy[str] | None = None,
    agent_id: SearchStrategy[Any] | None = None,
    conversation_id: SearchStrategy[Any] | None = None,
    thin_handshake: SearchStrategy[Any] | None = None,
    created_at: SearchStrategy[Any] | None = None,
    created: SearchStrategy[Any] | None = None,
    agent_info: SearchStrategy[Any] | None = None,
    permissions: SearchStrategy[Any] | None = None,
    tools: SearchStrategy[Any] | None = None,
    extra_keys: SearchStrategy[list[tuple[str, Any]]] | None = None,
    shuffle: SearchStrategy[bool] | None = None,
) -> SearchStrategy[dict]:
    """A whole `session_data` value in one of the catalogue's session shapes, or a mix of them
    (an override adds its key to every shape; optional and unknown keys mix the rest)."""
    overrides = {
        "agent_id": agent_id,
        "conversation_id": conversation_id,
        "thin_handshake": thin_handshake,
        "created_at": created_at,
        "created": created,
        "agent_info": agent_info,
        "permissions": permissions,
        "tools": tools,
    }
    extras = extra_keys if extra_keys is not None else unknown_keys(_SESSION_KEYS, LATER_SESSION_KEYS)
    shuffles = shuffle if shuffle is not None else _rarely()
    # Built once per shape, not per draw: building strategies costs far more than drawing.
    by_shape = {
        name: records(_chosen(overrides, _session_defaults(s)), extras, shuffles) for name, s in _SESSION_SHAPES.items()
    }
    return (shape if shape is not None else st.sampled_from(tuple(_SESSION_SHAPES))).flatmap(by_shape.__getitem__)


def _session_defaults(shape: SessionShape) -> dict[str, SearchStrategy[Any]]:
    names_only = shape.tool_forms == ("name",)
    fields = {
        "agent_id": text_field(content.agent_ids()),
        "conversation_id": text_field(content.conversation_ids()),
        "agent_info": json_field(content.agent_infos()),
        "permissions": json_field(content.permissions()),
        "tools": optional(tool_lists(_plan_tool_entries() if names_only else tool_entries()), present=19),
        "thin_handshake": bool_field(),
        "created_at": timestamp_field(content.timestamps(("utc_z", "utc_z_whole"))),
        "created": timestamp_field(),
    }
    # A later key the mapping types may follow a shape that lacks it (thin_handshake on a daemon's
    # session); the other later keys come with the unknown ones.
    later = {key.name: optional(fields[key.name], present=1) for key in LATER_SESSION_KEYS if key.name in fields}
    return _in_shape(shape.keys, fields) | {key: value for key, value in later.items() if key not in shape.keys}


def _plan_tool_entries() -> SearchStrategy[Any]:
    return weighted((4, tool_entries(form="name")), (1, tool_entries()))
