"""Legacy snapshots built cell by cell, for tests that need exact control over every row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacyRow
from migrator.legacy_copy import LegacyWriter, default_schema


def write_snapshot(
    path: Path,
    checkpoints: Sequence[LegacyRow] = (),
    sessions: Sequence[LegacyRow] = (),
    *,
    tables: Sequence[str] = ("checkpoints", "mcp_sessions"),
) -> Path:
    """A legacy snapshot holding exactly these rows, with the daemon's DDL.

    Rows are (id, id, timestamp, checkpoint_data) and (rowid, session_key, session_data,
    last_seen); a cell may have any SQLite storage type (`migrator.codec.LegacyCell`).
    """
    chosen = [t for t in (CHECKPOINTS, MCP_SESSIONS) if t.name in tables]
    writer = LegacyWriter(path, default_schema(chosen))
    if CHECKPOINTS in chosen:
        writer.insert(CHECKPOINTS, list(checkpoints))
    if MCP_SESSIONS in chosen:
        writer.insert(MCP_SESSIONS, list(sessions))
    return writer.finish()


def _as_cell(blob: object) -> object:
    return blob if isinstance(blob, str | bytes) or blob is None else json.dumps(blob)


def checkpoint_row(checkpoint_id: int, blob: object, timestamp: object = "2025-06-20T23:17:27Z") -> LegacyRow:
    """A checkpoints row; a dict or list blob is written the way the daemon writes it."""
    return (checkpoint_id, checkpoint_id, timestamp, _as_cell(blob))


def session_row(rowid: int, key: object, blob: object, last_seen: object = "2025-06-20T23:17:27.832348") -> LegacyRow:
    """An mcp_sessions row; a dict or list blob is written the way the daemon writes it."""
    return (rowid, key, _as_cell(blob), last_seen)
