"""The legacy side of the store: the daemon's own tables, written and read with its own statements."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import peewee as pw

from migrator import checkpoints, sessions
from migrator.codec import LegacyCell, decode_sqlite_text
from migrator.errors import (
    LegacyUnavailable,
    SourceNotFound,
)
from migrator.legacy import (
    CELLS,
    CHECKPOINTS,
    LEGACY_TABLES,
    MCP_SESSIONS,
    LegacyRow,
    LegacySchema,
    LegacyTable,
    read_legacy_schema,
)
from migrator.models import Checkpoint, McpSession, Quarantine
from migrator.redaction import mask_url
from migrator.store.common import (
    KEPT_CHECKPOINTS,
    LegacyChange,
)
from migrator.target import (
    is_url,
    load_legacy_schema,
    recorded_cleanup,
    save_legacy_schema,
    schema_version,
)

# --- the legacy side --------------------------------------------------------------------------


def _typed_select(table: LegacyTable) -> str:
    # TEXT comes back as bytes and is decoded here, so text that is not valid UTF-8 (kept in
    # quarantine) is read as `InvalidText` instead of failing the whole read.
    cells = ", ".join(
        f'typeof("{c}"), CASE WHEN typeof("{c}") = \'text\' THEN CAST("{c}" AS BLOB) ELSE "{c}" END'
        for c in table.columns
    )
    return f'SELECT rowid, {cells} FROM "{table.name}"'


def _typed_row(raw: tuple[Any, ...]) -> LegacyRow:
    rowid, *pairs = raw
    types, values = pairs[::2], pairs[1::2]
    cells = [decode_sqlite_text(v) if t == "text" else v for t, v in zip(types, values, strict=True)]
    return (rowid, *cells)


class DaemonTables:
    """The legacy tables, written and read with the KSI daemon's own statements."""

    def __init__(self, database: pw.Database) -> None:  # always SQLite: the daemon's own database
        self.database = database

    def schema(self) -> LegacySchema:
        present = [table.name for table in LEGACY_TABLES if table.name not in self.missing()]
        return read_legacy_schema(self.database.execute_sql, present)

    def missing(self) -> list[str]:
        cursor = self.database.execute_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {name for (name,) in cursor.fetchall()}
        return [table.name for table in LEGACY_TABLES if table.name not in names]

    def create(self) -> None:
        for table in LEGACY_TABLES:
            self.database.execute_sql(table.ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))

    def insert_checkpoint(self, timestamp: str, data: str) -> LegacyChange:
        cursor = self.database.execute_sql(
            "INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES (?, ?)", (timestamp, data)
        )
        checkpoint_id = cursor.lastrowid
        kept = f"id NOT IN (SELECT id FROM checkpoints ORDER BY id DESC LIMIT {KEPT_CHECKPOINTS})"
        pruned = self._rowids(f"SELECT id FROM checkpoints WHERE {kept}")
        self.database.execute_sql(f"DELETE FROM checkpoints WHERE {kept}")
        counter = self.database.execute_sql("SELECT seq FROM sqlite_sequence WHERE name = 'checkpoints'").fetchone()
        row = self.row(CHECKPOINTS, checkpoint_id)
        return LegacyChange(checkpoints.KIND, str(checkpoint_id), row, pruned, counter[0] if counter else None)

    def put_session(self, session_key: str, data: str, last_seen: LegacyCell) -> LegacyChange:
        replaced = self._rowids("SELECT rowid FROM mcp_sessions WHERE session_key = ?", (session_key,))
        cursor = self.database.execute_sql(
            "INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", (session_key, data, last_seen)
        )
        # Read back rather than assume: the column affinities decide the stored types.
        return LegacyChange(sessions.KIND, session_key, self.row(MCP_SESSIONS, cursor.lastrowid), replaced)

    def delete_session(self, session_key: str) -> LegacyChange:
        removed = self._rowids("SELECT rowid FROM mcp_sessions WHERE session_key = ?", (session_key,))
        self.database.execute_sql("DELETE FROM mcp_sessions WHERE session_key = ?", (session_key,))
        return LegacyChange(sessions.KIND, session_key, None, removed)

    def update_checkpoint(self, checkpoint_id: int | None, data: str) -> LegacyChange | None:
        """The daemon's in-place update: `UPDATE checkpoints SET checkpoint_data = ? WHERE id = ?`;
        the `timestamp` column keeps the time of the save. None when there is no such checkpoint."""
        if checkpoint_id is None:
            return None
        cursor = self.database.execute_sql(
            "UPDATE checkpoints SET checkpoint_data = ? WHERE id = ?", (data, checkpoint_id)
        )
        if not cursor.rowcount:
            return None
        row = self.row(CHECKPOINTS, checkpoint_id)
        return LegacyChange(checkpoints.KIND, str(checkpoint_id), row, (checkpoint_id,))

    def latest_checkpoint_id(self) -> int | None:
        """The daemon's `SELECT id FROM checkpoints ORDER BY id DESC LIMIT 1`."""
        found = self.database.execute_sql("SELECT id FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        return found[0] if found else None

    def checkpoint_list(self) -> list[tuple[int, LegacyCell]]:
        """(id, timestamp) of every checkpoint, newest first, each cell as stored."""
        cursor = self.database.execute_sql(f"{_typed_select(CHECKPOINTS)} ORDER BY id DESC")
        return [(row[CHECKPOINTS.at.id], row[CHECKPOINTS.at.timestamp]) for row in map(_typed_row, cursor.fetchall())]

    def sessions_seen_after(self, cutoff: str) -> list[LegacyRow]:
        """The daemon's start-up load: `WHERE last_seen > ?`, SQLite's own comparison of the cells."""
        cursor = self.database.execute_sql(
            f"{_typed_select(MCP_SESSIONS)} WHERE last_seen > ? ORDER BY rowid", (cutoff,)
        )
        return [_typed_row(raw) for raw in cursor.fetchall()]

    def expire_sessions(self, cutoff: str) -> LegacyChange:
        """The daemon's expiry: `DELETE FROM mcp_sessions WHERE last_seen < ?`."""
        removed = self._rowids("SELECT rowid FROM mcp_sessions WHERE last_seen < ?", (cutoff,))
        self.database.execute_sql("DELETE FROM mcp_sessions WHERE last_seen < ?", (cutoff,))
        return LegacyChange(sessions.KIND, f"sessions seen before {cutoff}", None, removed)

    def row(self, table: LegacyTable, rowid: int) -> LegacyRow | None:
        return self._first(table, "rowid = ?", (rowid,))

    def checkpoint(self, checkpoint_id: int) -> LegacyRow | None:
        return self._first(CHECKPOINTS, "id = ?", (checkpoint_id,))

    def latest_checkpoint(self) -> LegacyRow | None:
        return self._first(CHECKPOINTS, "id = (SELECT max(id) FROM checkpoints)", ())

    def session(self, session_key: str) -> LegacyRow | None:
        return self._first(MCP_SESSIONS, "session_key = ?", (session_key,))

    def _first(self, table: LegacyTable, where: str, params: tuple[Any, ...]) -> LegacyRow | None:
        raw = self.database.execute_sql(f"{_typed_select(table)} WHERE {where} LIMIT 1", params).fetchone()
        return _typed_row(raw) if raw is not None else None

    def _rowids(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[int, ...]:
        return tuple(rowid for (rowid,) in self.database.execute_sql(sql, params).fetchall())


def stored_form(table: LegacyTable, row: LegacyRow) -> LegacyRow:
    """A row as the legacy table would store it: its column affinities decide the storage types
    (a TIMESTAMP column turns `1.0` into `1`). Used when there is no legacy table to ask."""
    names = list(table.columns) if table.rowid_alias else ["rowid", *table.columns]
    values = row[CELLS] if table.rowid_alias else row
    marks = ", ".join("?" * len(names))
    with closing(sqlite3.connect(":memory:")) as scratch:
        scratch.execute(table.ddl)
        scratch.execute(f'INSERT INTO "{table.name}" ({", ".join(names)}) VALUES ({marks})', values)
        return _typed_row(scratch.execute(_typed_select(table)).fetchone())


LEGACY_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal"}


def open_legacy_side(
    target: str | os.PathLike[str], legacy: str | os.PathLike[str] | None, database: pw.Database
) -> tuple[DaemonTables, Path]:
    if legacy is None and is_url(str(target)):
        beside = mask_url(str(target))
        raise LegacyUnavailable(f"the legacy tables need a SQLite file: pass legacy=PATH beside {beside}")
    path = Path(legacy if legacy is not None else target)
    if not is_url(str(target)) and path.resolve() == Path(target).resolve():
        tables = DaemonTables(database)  # one file: both sides commit together
    elif path.is_file():
        # WAL, so that a reader (`verify`, `archive`, a catch-up, the gate) never holds the daemon's
        # writes out: in rollback-journal mode a long read makes every save wait, then fail with
        # "database is locked". The mode is kept by the file, as it is for the target.
        tables = DaemonTables(pw.SqliteDatabase(str(path), pragmas=LEGACY_PRAGMAS))
    else:
        raise SourceNotFound(f"legacy database not found: {path}")
    missing = tables.missing()
    if missing:
        _refuse_missing_legacy(database, path, missing)
        tables.create()
        if schema_version(database) is not None and load_legacy_schema(database) is None:
            save_legacy_schema(database, tables.schema())  # as the first catch-up would record it
    return tables, path


def _refuse_missing_legacy(database: pw.Database, path: Path, missing: list[str]) -> None:
    """New legacy tables are created only on a fresh start: next to migrated rows, an empty legacy
    table would be mirrored by the next catch-up, which would delete every relational row."""
    if schema_version(database) is None:
        return
    cleaned = recorded_cleanup(database)
    if cleaned is not None:
        raise LegacyUnavailable(
            f"cleanup dropped the legacy tables {cleaned['tables']} (archive {cleaned['archive']}); open the store "
            "in relational_only mode, or restore the legacy tables before writing them again"
        )
    holds_rows = Checkpoint.select().exists() or McpSession.select().exists() or Quarantine.select().exists()
    if holds_rows:
        raise LegacyUnavailable(
            f"{path} lacks the legacy table(s) {', '.join(missing)} while the target holds migrated rows; "
            "point legacy= at the daemon's database, or open the store in relational_only mode"
        )
