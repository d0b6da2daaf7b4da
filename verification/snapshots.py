"""Legacy snapshots built cell by cell, for tests that need exact control over every row."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Sequence
from contextlib import closing
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


def hot_wal_copy(path: Path, folder: Path) -> Path:
    """A copy of a legacy file as copying a live WAL database leaves it: the main file and a -wal
    that holds its latest pages, and no -shm index of it (`LegacySource` reads it from a private
    copy). `path` is put in WAL mode; the copy is `folder`/its name."""
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("PRAGMA journal_mode = wal")
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the rows written below stay in the WAL
        for (table,) in writer.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            writer.execute(f'UPDATE "{table}" SET rowid = rowid')
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / path.name
        shutil.copyfile(path, copy)  # while the writer is open: the WAL is not checkpointed yet
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
    return copy


def _as_cell(blob: object) -> object:
    return blob if isinstance(blob, str | bytes) or blob is None else json.dumps(blob)


def checkpoint_row(checkpoint_id: int, blob: object, timestamp: object = "2025-06-20T23:17:27Z") -> LegacyRow:
    """A checkpoints row; a dict or list blob is written the way the daemon writes it."""
    return (checkpoint_id, checkpoint_id, timestamp, _as_cell(blob))


def session_row(rowid: int, key: object, blob: object, last_seen: object = "2025-06-20T23:17:27.832348") -> LegacyRow:
    """An mcp_sessions row; a dict or list blob is written the way the daemon writes it."""
    return (rowid, key, _as_cell(blob), last_seen)
