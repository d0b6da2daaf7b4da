"""Checkpoints: a legacy `checkpoints` row to relational rows, and back. Both directions live here.

    checkpoint_data = {"timestamp": ..., "reason": ..., "session_queues": {sid: queue},
                       "active_completions": {request_id: completion}, ...later keys}

A queue is either the old plain list of items or the new object `{"items": [...],
"is_active": ..., "active_request": ...}`; both shapes can appear in one blob. Every object is
split by `migrator.records`, so key order, off-type values and unknown keys all survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

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
        CHECKPOINT_DATA,
        "status",  # the plan's lifecycle, not legacy data: every migrated checkpoint is "active"
        "restored_at",  # the plan's lifecycle too: legacy rows never record one
        "layout",
        "extra",
        "text_overlay",
    ),
)
QUEUE_TABLE = TableMap(
    CheckpointQueue,
    ("checkpoint_id", "position", "session_id", "session_id_digest", "shape", "queue_depth", QUEUE, "layout", "extra"),
    order=("position",),
)
ITEM_TABLE = TableMap(
    CheckpointQueueItem,
    ("checkpoint_id", "queue_position", "position", QUEUE_ITEM, "layout", "extra"),
    order=("queue_position", "position"),
)
REQUEST_TABLE = TableMap(
    CheckpointRequest,
    ("checkpoint_id", "position", "request_id", "request_id_digest", COMPLETION, "layout", "extra"),
    order=("position",),
)

LEGACY = CHECKPOINTS.at
CREATED_AT = CHECKPOINT_DATA.columns.index("created_at")  # the parsed time, within the record
CHECKPOINT_AT, QUEUE_AT, ITEM_AT, REQUEST_AT = CHECKPOINT_TABLE.at, QUEUE_TABLE.at, ITEM_TABLE.at, REQUEST_TABLE.at


# --- legacy row -> relational rows ------------------------------------------------------------


def to_rows(row: LegacyRow, digest: str) -> Bundle:
    checkpoint_id, timestamp, data = row[LEGACY.id], row[LEGACY.timestamp], row[LEGACY.checkpoint_data]
    if not isinstance(data, str):
        raise UnreadableBlob(f"checkpoint_data is a {storage_type(data)} value, expected JSON text")
    blob, overlay = parse_blob(data)
    if not isinstance(blob, dict):
        raise UnreadableBlob(f"checkpoint_data is a JSON {json_type_name(blob)}, expected an object")
    split = split_record(CHECKPOINT_DATA, blob, "checkpoint_data")
    slots = split.slots
    if slots[CREATED_AT] is None and isinstance(timestamp, str):
        slots[CREATED_AT] = parse_timestamp(timestamp)  # queries by time still work without the key
    queues, items = _queue_rows(checkpoint_id, split.containers.get("session_queues", {}))
    requests = _request_rows(checkpoint_id, split.containers.get("active_completions", {}))
    tag, text = encode_cell(timestamp)
    checkpoint = CHECKPOINT_TABLE.build(
        id=checkpoint_id,
        source_digest=digest,
        legacy_timestamp_type=tag,
        legacy_timestamp=text,
        record=slots,
        status="active",
        restored_at=None,
        layout=split.layout,
        extra=split.extra,
        text_overlay=overlay,
    )
    return [checkpoint], queues, items, requests


NO_QUEUE_RECORD: Sequence[Any] = (None,) * QUEUE.width  # an old list queue has no object to split


def _queue_rows(checkpoint_id: int, session_queues: dict) -> tuple[list[Row], list[Row]]:
    _refuse_duplicate_keys(session_queues, "checkpoint_data.session_queues")
    queues: list[Row] = []
    items: list[Row] = []
    for position, (session_id, queue) in enumerate(session_queues.items()):

        def where(session_id: str = session_id) -> str:
            return f"checkpoint_data.session_queues[{session_id!r}]"

        stored, digest = _key_columns(session_id)
        if isinstance(queue, list):
            entries = queue
            record, shape, layout, extra = NO_QUEUE_RECORD, "list", None, None
        elif isinstance(queue, dict):
            split = split_record(QUEUE, queue, where)
            entries = split.containers.get("items", [])
            record, shape, layout, extra = split.slots, "object", split.layout, split.extra
        else:
            raise UnreadableBlob(f"{where()} is a JSON {json_type_name(queue)}, expected an array or object")
        queues.append(
            QUEUE_TABLE.build(
                checkpoint_id=checkpoint_id,
                position=position,
                session_id=stored,
                session_id_digest=digest,
                shape=shape,
                queue_depth=len(entries),
                record=record,
                layout=layout,
                extra=extra,
            )
        )
        for item_position, item in enumerate(entries):

            def item_where(item_position: int = item_position) -> str:
                return f"{where()}.items[{item_position}]"

            if not isinstance(item, dict):
                raise UnreadableBlob(f"{item_where()} is a JSON {json_type_name(item)}, expected an object")
            split = split_record(QUEUE_ITEM, item, item_where)
            items.append(
                ITEM_TABLE.build(
                    checkpoint_id=checkpoint_id,
                    queue_position=position,
                    position=item_position,
                    record=split.slots,
                    layout=split.layout,
                    extra=split.extra,
                )
            )
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
        stored, digest = _key_columns(request_id)
        rows.append(
            REQUEST_TABLE.build(
                checkpoint_id=checkpoint_id,
                position=position,
                request_id=stored,
                request_id_digest=digest,
                record=split.slots,
                layout=split.layout,
                extra=split.extra,
            )
        )
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
    checkpoint_id = checkpoint[CHECKPOINT_AT.id]
    containers = {
        "session_queues": _queues_text(checkpoint_id, queues, items),
        "active_completions": join_object(
            (
                key_from_stored(r[REQUEST_AT.request_id]),
                join_record(COMPLETION, r[REQUEST_TABLE.record], r[REQUEST_AT.layout], r[REQUEST_AT.extra]),
            )
            for r in requests
        ),
    }
    record = checkpoint[CHECKPOINT_TABLE.record]
    canonical = join_record(
        CHECKPOINT_DATA, record, checkpoint[CHECKPOINT_AT.layout], checkpoint[CHECKPOINT_AT.extra], containers
    )
    return CHECKPOINTS.build(
        rowid=checkpoint_id,  # the id is the rowid: INTEGER PRIMARY KEY
        id=checkpoint_id,
        timestamp=decode_cell(
            checkpoint[CHECKPOINT_AT.legacy_timestamp_type], checkpoint[CHECKPOINT_AT.legacy_timestamp]
        ),
        checkpoint_data=apply_overlay(canonical, checkpoint[CHECKPOINT_AT.text_overlay]),
    )


def _queues_text(checkpoint_id: int, queues: list[Row], items: list[Row]) -> str:
    items_by_queue: dict[int, list[Row]] = {
        position: list(rows) for position, rows in groupby(items, key=itemgetter(ITEM_AT.queue_position))
    }
    pairs = []
    for queue in queues:
        position, session_id = queue[QUEUE_AT.position], key_from_stored(queue[QUEUE_AT.session_id])
        items_text = join_array(
            join_record(QUEUE_ITEM, item[ITEM_TABLE.record], item[ITEM_AT.layout], item[ITEM_AT.extra])
            for item in items_by_queue.pop(position, [])
        )
        if queue[QUEUE_AT.shape] == "list":
            pairs.append((session_id, items_text))
        else:
            record = queue[QUEUE_TABLE.record]
            pairs.append(
                (
                    session_id,
                    join_record(QUEUE, record, queue[QUEUE_AT.layout], queue[QUEUE_AT.extra], {"items": items_text}),
                )
            )
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
