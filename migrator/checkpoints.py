"""Checkpoints: a legacy `checkpoints` row to relational rows, and back. Both directions live here.

    checkpoint_data = {"timestamp": ..., "reason": ..., "session_queues": {sid: queue},
                       "active_completions": {request_id: completion}, ...later keys}

A queue is either the old plain list of items or the new object `{"items": [...],
"is_active": ..., "active_request": ...}`; both shapes can appear in one blob. Every object is
split by `migrator.records`, so key order, off-type values and unknown keys all survive.
"""

from __future__ import annotations

from itertools import groupby
from operator import itemgetter

from migrator.codec import (
    UnreadableBlob,
    apply_overlay,
    decode_cell,
    encode_cell,
    first_duplicate_key,
    join_array,
    join_object,
    json_type_name,
    key_digest,
    key_from_stored,
    parse_blob,
    parse_timestamp,
    storage_type,
    stored_key,
)
from migrator.errors import RebuildError
from migrator.legacy import CHECKPOINTS, LegacyRow
from migrator.models import Checkpoint, CheckpointQueue, CheckpointQueueItem, CheckpointRequest
from migrator.records import Field, Kind, RecordSpec, join_record, split_record
from migrator.relational import BlobKind, Bundle, Row, TableMap

CHECKPOINT_DATA = RecordSpec(
    "checkpoint_data",
    (
        Field("timestamp", Kind.TIMESTAMP, "created_at"),
        Field("reason", Kind.TEXT),
        Field("session_queues", Kind.OBJECT),
        Field("active_completions", Kind.OBJECT),
    ),
)
QUEUE = RecordSpec(
    "queue",
    (
        Field("items", Kind.ARRAY),
        Field("is_active", Kind.BOOL),
        Field("active_request", Kind.TEXT),
    ),
)
QUEUE_ITEM = RecordSpec(
    "queue item",
    (
        Field("request_id", Kind.TEXT),
        Field("timestamp", Kind.TIMESTAMP, "queued_at"),
        Field("data", Kind.JSON, "request_data"),
    ),
)
COMPLETION = RecordSpec(
    "completion",
    (
        Field("session_id", Kind.TEXT),
        Field("agent_id", Kind.TEXT),
        Field("status", Kind.TEXT),
        Field("queued_at", Kind.TIMESTAMP),
        Field("started_at", Kind.TIMESTAMP),
        Field("completed_at", Kind.TIMESTAMP),
        Field("error", Kind.TEXT),
        Field("data", Kind.JSON, "request_data"),
        Field("original_event", Kind.JSON),
    ),
)

CHECKPOINT_TABLE = TableMap(
    Checkpoint,
    (
        "id",
        "source_digest",
        "legacy_timestamp_type",
        "legacy_timestamp",
        *CHECKPOINT_DATA.columns,
        "status",  # the plan's lifecycle, not legacy data: every migrated checkpoint is "active"
        "restored_at",  # the plan's lifecycle too: legacy rows never record one
        "layout",
        "extra",
        "text_overlay",
    ),
)
QUEUE_TABLE = TableMap(
    CheckpointQueue,
    (
        "checkpoint_id",
        "position",
        "session_id",
        "session_id_digest",
        "shape",
        "queue_depth",
        *QUEUE.columns,
        "layout",
        "extra",
    ),
    order=("position",),
)
ITEM_TABLE = TableMap(
    CheckpointQueueItem,
    ("checkpoint_id", "queue_position", "position", *QUEUE_ITEM.columns, "layout", "extra"),
    order=("queue_position", "position"),
)
REQUEST_TABLE = TableMap(
    CheckpointRequest,
    ("checkpoint_id", "position", "request_id", "request_id_digest", *COMPLETION.columns, "layout", "extra"),
    order=("position",),
)

_DATA = 4  # where CHECKPOINT_DATA's slots start in a checkpoint row
_QUEUE = 6  # where QUEUE's slots start in a queue row
_ITEM = 3
_REQUEST = 4


# --- legacy row -> relational rows ------------------------------------------------------------


def to_rows(row: LegacyRow, digest: str) -> Bundle:
    _rowid, checkpoint_id, timestamp, data = row  # rowid is the id: INTEGER PRIMARY KEY
    if not isinstance(data, str):
        raise UnreadableBlob(f"checkpoint_data is a {storage_type(data)} value, expected JSON text")
    blob, overlay = parse_blob(data)
    if not isinstance(blob, dict):
        raise UnreadableBlob(f"checkpoint_data is a JSON {json_type_name(blob)}, expected an object")
    split = split_record(CHECKPOINT_DATA, blob, "checkpoint_data")
    slots = split.slots
    if slots[1] is None and isinstance(timestamp, str):
        slots[1] = parse_timestamp(timestamp)  # queries by time still work without the key
    queues, items = _queue_rows(checkpoint_id, split.containers.get("session_queues", {}))
    requests = _request_rows(checkpoint_id, split.containers.get("active_completions", {}))
    tag, text = encode_cell(timestamp)
    checkpoint = (checkpoint_id, digest, tag, text, *slots, "active", None, split.layout, split.extra, overlay)
    return [checkpoint], queues, items, requests


def _queue_rows(checkpoint_id: int, session_queues: dict) -> tuple[list[Row], list[Row]]:
    _refuse_duplicate_keys(session_queues, "checkpoint_data.session_queues")
    queues: list[Row] = []
    items: list[Row] = []
    for position, (session_id, queue) in enumerate(session_queues.items()):

        def where(session_id: str = session_id) -> str:
            return f"checkpoint_data.session_queues[{session_id!r}]"

        key = _key_columns(session_id)
        if isinstance(queue, list):
            entries = queue
            queues.append((checkpoint_id, position, *key, "list", len(queue), *[None] * QUEUE.width, None, None))
        elif isinstance(queue, dict):
            split = split_record(QUEUE, queue, where)
            entries = split.containers.get("items", [])
            queues.append(
                (checkpoint_id, position, *key, "object", len(entries), *split.slots, split.layout, split.extra)
            )
        else:
            raise UnreadableBlob(f"{where()} is a JSON {json_type_name(queue)}, expected an array or object")
        for item_position, item in enumerate(entries):

            def item_where(item_position: int = item_position) -> str:
                return f"{where()}.items[{item_position}]"

            if not isinstance(item, dict):
                raise UnreadableBlob(f"{item_where()} is a JSON {json_type_name(item)}, expected an object")
            split = split_record(QUEUE_ITEM, item, item_where)
            items.append((checkpoint_id, position, item_position, *split.slots, split.layout, split.extra))
    return queues, items


def _request_rows(checkpoint_id: int, completions: dict) -> list[Row]:
    _refuse_duplicate_keys(completions, "checkpoint_data.active_completions")
    rows: list[Row] = []
    for position, (request_id, completion) in enumerate(completions.items()):

        def where(request_id: str = request_id) -> str:
            return f"checkpoint_data.active_completions[{request_id!r}]"

        if not isinstance(completion, dict):
            raise UnreadableBlob(f"{where()} is a JSON {json_type_name(completion)}, expected an object")
        split = split_record(COMPLETION, completion, where)
        rows.append((checkpoint_id, position, *_key_columns(request_id), *split.slots, split.layout, split.extra))
    return rows


def _key_columns(key: str) -> tuple[str, str]:
    """A map key's column and its digest column (the unique key): any key text, NUL and lone
    surrogates included, is stored exactly on every engine."""
    stored = stored_key(key)
    return stored, key_digest(stored)


def _refuse_duplicate_keys(mapping: dict, where: str) -> None:
    # Session ids and request ids are identities here (unique constraints); a map that repeats
    # one is not a map the daemon could have written, so the row is quarantined, not guessed at.
    repeated = first_duplicate_key(mapping)
    if repeated is not None:
        raise UnreadableBlob(f"{where} repeats the key {repeated!r}")


# --- relational rows -> legacy row ------------------------------------------------------------


def from_rows(bundle: Bundle) -> LegacyRow:
    (checkpoint,), queues, items, requests = bundle
    checkpoint_id = checkpoint[0]
    containers = {
        "session_queues": _queues_text(checkpoint_id, queues, items),
        "active_completions": join_object(
            (key_from_stored(r[2]), join_record(COMPLETION, r[_REQUEST:], r[-2], r[-1])) for r in requests
        ),
    }
    canonical = join_record(CHECKPOINT_DATA, checkpoint[_DATA:], checkpoint[-3], checkpoint[-2], containers)
    data = apply_overlay(canonical, checkpoint[-1])
    timestamp = decode_cell(checkpoint[2], checkpoint[3])
    return (checkpoint_id, checkpoint_id, timestamp, data)


def _queues_text(checkpoint_id: int, queues: list[Row], items: list[Row]) -> str:
    items_by_queue: dict[int, list[Row]] = {
        position: list(rows) for position, rows in groupby(items, key=itemgetter(1))
    }
    pairs = []
    for queue in queues:
        position, session_id, shape = queue[1], key_from_stored(queue[2]), queue[4]
        items_text = join_array(
            join_record(QUEUE_ITEM, item[_ITEM:], item[-2], item[-1]) for item in items_by_queue.pop(position, [])
        )
        if shape == "list":
            pairs.append((session_id, items_text))
        else:
            pairs.append((session_id, join_record(QUEUE, queue[_QUEUE:], queue[-2], queue[-1], {"items": items_text})))
    if items_by_queue:
        raise RebuildError(
            f"checkpoint {checkpoint_id} has queue items for missing queue position(s) {sorted(items_by_queue)}"
        )
    return join_object(pairs)


KIND = BlobKind(
    legacy=CHECKPOINTS,
    tables=(CHECKPOINT_TABLE, QUEUE_TABLE, ITEM_TABLE, REQUEST_TABLE),
    to_rows=to_rows,
    from_rows=from_rows,
)
