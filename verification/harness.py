"""The generative harness's plumbing: migrate, verify and restore real databases, and read
them back independently of the migrator, so that a property compares what they really hold.

Legacy files are SQLite; a target is a SQLite file or a server database (`verification.engines`).
Hypothesis runs many examples inside one test call and function-scoped fixtures are not reset
between them, so every database-backed example makes its own folder with `scratch_folder()` and
takes an empty target with `Targets.fresh()`.

A plain module the tests import (pytest advises against importing a conftest).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw

from migrator.backfill import BackfillReport, backfill
from migrator.batching import Progress
from migrator.codec import InvalidText, cell_identity
from migrator.compare import compare_legacy_rows, compare_rows
from migrator.kinds import KINDS
from migrator.legacy import LEGACY_TABLES, LegacyRow, LegacySource, LegacyTable
from migrator.legacy_copy import compare_legacy_files
from migrator.models import MigrationMeta
from migrator.rollback import restore
from migrator.status import LAST_MIGRATE_KEY
from migrator.target import target_database
from migrator.verify import VerifyReport, verify

LEGACY_TABLE_NAMES = [table.name for table in LEGACY_TABLES]


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A fresh folder for one example's databases, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ksi-harness-") as folder:
        yield Path(folder)


# --- driving the migrator ---------------------------------------------------------------------


Target = str | Path
"""A SQLite file or a database URL."""


def migrate(
    source: Path,
    target: Target,
    batch_size: int,
    progress: Progress | None = None,
    *,
    same_daemon: bool = False,
    **options: Any,
) -> BackfillReport:
    """`same_daemon`: the source is known to be the target's own daemon file, so a catch-up from it
    is allowed even when every row changed (the guard against another daemon's file is off).
    `options`: the run's own (`dry_run`, `recheck`, `jobs`), as `backfill` takes them."""
    with LegacySource(source) as legacy, target_database(target) as database:
        return backfill(legacy, database, batch_size=batch_size, progress=progress, replace_all=same_daemon, **options)


def verify_target(source: Path, target: Target, batch_size: int) -> VerifyReport:
    with LegacySource(source) as legacy, target_database(target, must_exist=True) as database:
        return verify(legacy, database, batch_size=batch_size)


def restore_copy(target: Target, out: Path, batch_size: int) -> Path:
    with target_database(target, must_exist=True) as database:
        restore(database, out, batch_size=batch_size)
    return out


def rows_written(report: BackfillReport) -> dict[str, tuple[int, int]]:
    """(written, deleted) per legacy table: what a backfill run changed."""
    return {table.table: (table.written, table.deleted) for table in report.tables}


# --- reading legacy files, independently of LegacySource ---------------------------------------


def text_or_invalid(raw: bytes) -> str | InvalidText:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


def read_legacy_rows(path: Path, table: LegacyTable) -> list[LegacyRow]:
    """Every row of a legacy table as SQLite stored it, in rowid order."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        connection.text_factory = text_or_invalid
        columns = ", ".join(f'"{column}"' for column in table.columns)
        return connection.execute(f'SELECT rowid, {columns} FROM "{table.name}" ORDER BY rowid').fetchall()


def legacy_row_differences(table: LegacyTable, expected: Sequence[LegacyRow], actual: Sequence[LegacyRow]) -> list[str]:
    """Every way two versions of a legacy table differ (each given in rowid order): cell by cell,
    storage type included, the JSON column value by value, through the one comparison engine."""

    def in_rowid_order(rows: Sequence[LegacyRow]) -> list[LegacyRow]:
        return sorted(rows, key=lambda row: row[0])

    return [str(mismatch) for mismatch in compare_legacy_rows(table, in_rowid_order(expected), in_rowid_order(actual))]


def rebuilt_row_differences(source: Path, target: Target, batch_size: int) -> list[str]:
    """How the target differs from the source both ways, row by row (`compare.compare_rows`):
    its relational rows against the mapping of each source row, and each rebuilt row against it."""
    problems = []
    with target_database(target, must_exist=True) as database:
        for table in LEGACY_TABLES:
            comparisons = compare_rows(
                KINDS[table.name], read_legacy_rows(source, table), database, batch_size=batch_size
            )
            problems += [str(mismatch) for comparison in comparisons for mismatch in comparison.mismatches]
    return problems


def legacy_file_differences(expected: Path, actual: Path, tables: Sequence[LegacyTable] = LEGACY_TABLES) -> list[str]:
    """Two legacy files compared twice: by SQLite's `typeof()`/`quote()`, and cell by cell here.
    `tables`: the legacy tables both files hold (one, in the daemon's file per table)."""
    problems = compare_legacy_files(expected, actual, [table.name for table in tables])
    for table in tables:
        problems += legacy_row_differences(table, read_legacy_rows(expected, table), read_legacy_rows(actual, table))
    return problems


# --- reading the relational target ------------------------------------------------------------

TableContents = dict[str, list[dict[str, Any]]]


def target_contents(target: Target) -> TableContents:
    """Every row of every table of the target, as column -> value, read with plain SQL (no model);
    the last migrate's log record left out."""
    with target_database(target, must_exist=True) as database:
        contents: TableContents = {}
        for name in sorted(t for t in database.get_tables() if not t.startswith("sqlite_")):  # not SQLite's own
            quoted, _ = database.get_sql_context().sql(pw.Entity(name)).query()
            cursor = database.execute_sql(f"SELECT * FROM {quoted}")
            columns = [description[0] for description in cursor.description]
            rows = [dict(zip(columns, map(_comparable, row), strict=True)) for row in cursor.fetchall()]
            contents[name] = [row for row in rows if not _is_log_record(name, row)]
    return contents


def _is_log_record(table_name: str, row: dict[str, Any]) -> bool:
    # The last migrate's record says when and from which path: a log no read depends on, and it
    # differs between two runs by design, so the proofs leave it out.
    return table_name == MigrationMeta._meta.table_name and row.get("key") == LAST_MIGRATE_KEY


def _comparable(value: Any) -> Any:
    # SQLite stores datetimes as text; server drivers hand them back as datetime objects.
    return value.isoformat(" ") if isinstance(value, datetime) else value


def as_multisets(contents: TableContents) -> dict[str, list[tuple]]:
    """Table contents comparable exactly: each row as typed cells, each table in a fixed order."""
    return {
        name: sorted((tuple((column, cell_identity(value)) for column, value in row.items()) for row in rows), key=repr)
        for name, rows in contents.items()
    }


def contents_by_identity(contents: TableContents) -> TableContents:
    """The target's rows with every legacy *rowid* replaced by the identity users know rows by.

    A checkpoint's id is its identity and stays. A session's rowid is only where SQLite happened
    to put it, and a session's own id is where the target first wrote it, so sessions and their
    tools are keyed by `session_key` instead, and quarantined rows by their cells. The
    quarantine's own surrogate id is dropped too.
    """
    session_keys = {row["id"]: row["session_key"] for row in contents.get("mcp_session", [])}
    rekeyed = dict(contents)
    rekeyed["mcp_session"] = [_without(row, "id", "legacy_rowid") for row in contents.get("mcp_session", [])]
    rekeyed["mcp_session_tool"] = [
        {**_without(row, "session_id"), "session_key": session_keys[row["session_id"]]}
        for row in contents.get("mcp_session_tool", [])
    ]
    rekeyed["ksi_quarantine"] = [
        _without(row, "id", *(("source_rowid",) if row["legacy_table"] == "mcp_sessions" else ()))
        for row in contents.get("ksi_quarantine", [])
    ]
    return rekeyed


def _without(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    return {column: value for column, value in row.items() if column not in columns}
