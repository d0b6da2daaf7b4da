"""The speed-of-light reference for the backfill: hand-written `sqlite3`, no ORM, no checks.

It writes the same relational rows into the same tables (created from the peewee models) with
`json.loads`, plain `dict.get` per column, `json.dumps` for the JSON columns, and one
`executemany` per table inside one transaction. It skips everything that makes the product
exact and safe: canonical-text checks, overlays, type checks, digests for catch-up, quarantine.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from migrator.checkpoints import CHECKPOINT_TABLE, ITEM_TABLE, QUEUE_TABLE, REQUEST_TABLE
from migrator.codec import key_digest
from migrator.models import ALL_MODELS
from migrator.relational import TableMap
from migrator.sessions import SESSION_TABLE, TOOL_TABLE
from migrator.target import target_database

loads, dumps = json.loads, json.dumps


def _insert(table: TableMap) -> str:
    names = ", ".join(f'"{c}"' for c in table.columns)
    marks = ", ".join("?" * len(table.columns))
    return f'INSERT INTO "{table.model._meta.table_name}" ({names}) VALUES ({marks})'


def _parsed(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _session_rows(rowid: int, key: str, data: str, last_seen: Any) -> tuple[tuple, list[tuple]]:
    blob = loads(data)
    get = blob.get
    session = (
        rowid,  # legacy_rowid
        rowid,  # the session's own id: its rowid, as a first load gives it
        "",
        key,
        key_digest(key),  # the unique key (models: unique keys are digests)
        "daemon",
        get("agent_id"),
        get("conversation_id"),
        get("thin_handshake"),
        get("created_at"),
        _parsed(get("created_at")),
        get("created"),
        _parsed(get("created")),
        _json(get("agent_info")),
        None,
        last_seen,
        _parsed(last_seen),
        True,
        dumps(list(blob)),
        None,
        None,
    )
    tools: list[tuple[Any, ...]] = []
    for position, tool in enumerate(get("tools") or ()):
        if isinstance(tool, str):
            tools.append((rowid, position, "name", tool, None, None, None, None, None))
        else:
            tools.append(
                (
                    rowid,
                    position,
                    "object",
                    tool.get("name"),
                    tool.get("description"),
                    _json(tool.get("inputSchema")),
                    None,
                    dumps(list(tool)),
                    None,
                )
            )
    return session, tools


def _checkpoint_rows(checkpoint_id: int, timestamp: Any, data: str) -> tuple[tuple, list, list, list]:
    blob = loads(data)
    get = blob.get
    checkpoint = (
        checkpoint_id,
        "",
        None,
        timestamp,
        get("timestamp"),
        _parsed(get("timestamp")),
        get("reason"),
        "active",
        None,
        dumps(list(blob)),
        None,
        None,
    )
    queues, items, requests = [], [], []
    for position, (session_id, queue) in enumerate((get("session_queues") or {}).items()):
        entries = queue if isinstance(queue, list) else queue.get("items", [])
        flags = (
            (None, None, None)
            if isinstance(queue, list)
            else (queue.get("is_active"), queue.get("active_request"), dumps(list(queue)))
        )
        queues.append(
            (checkpoint_id, position, session_id, key_digest(session_id), "object", len(entries), *flags, None)
        )
        for item_position, item in enumerate(entries):
            items.append(
                (
                    checkpoint_id,
                    position,
                    item_position,
                    item.get("request_id"),
                    item.get("timestamp"),
                    _parsed(item.get("timestamp")),
                    _json(item.get("data")),
                    dumps(list(item)),
                    None,
                )
            )
    for position, (request_id, completion) in enumerate((get("active_completions") or {}).items()):
        c = completion.get
        requests.append(
            (
                checkpoint_id,
                position,
                request_id,
                key_digest(request_id),
                c("session_id"),
                c("agent_id"),
                c("status"),
                c("queued_at"),
                _parsed(c("queued_at")),
                c("started_at"),
                _parsed(c("started_at")),
                c("completed_at"),
                _parsed(c("completed_at")),
                c("error"),
                _json(c("data")),
                _json(c("original_event")),
                dumps(list(completion)),
                None,
            )
        )
    return checkpoint, queues, items, requests


def reference_backfill(source: Path, target: Path) -> int:
    """Load every row of `source` into a fresh `target`; returns the number of legacy rows."""
    with target_database(target) as database:
        database.create_tables(ALL_MODELS)
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    writer = sqlite3.connect(target, isolation_level=None)
    writer.execute("BEGIN")
    count = 0
    sessions, tools = [], []
    for row in reader.execute("SELECT rowid, session_key, session_data, last_seen FROM mcp_sessions"):
        try:
            session, session_tools = _session_rows(*row)
        except (ValueError, TypeError, AttributeError):
            continue
        sessions.append(session)
        tools.extend(session_tools)
        count += 1
    writer.executemany(_insert(SESSION_TABLE), sessions)
    writer.executemany(_insert(TOOL_TABLE), tools)
    tables: list[list] = [[], [], [], []]
    for row in reader.execute("SELECT id, timestamp, checkpoint_data FROM checkpoints"):
        try:
            produced = _checkpoint_rows(*row)
        except (ValueError, TypeError, AttributeError):
            continue
        tables[0].append(produced[0])
        for bucket, rows in zip(tables[1:], produced[1:], strict=True):
            bucket.extend(rows)
        count += 1
    for table, rows in zip((CHECKPOINT_TABLE, QUEUE_TABLE, ITEM_TABLE, REQUEST_TABLE), tables, strict=True):
        writer.executemany(_insert(table), rows)
    writer.execute("COMMIT")
    return count
