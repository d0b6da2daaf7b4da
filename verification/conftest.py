"""The generative harness's plumbing: migrate, verify and restore real databases, and read
them back independently of the migrator, so that a property compares what they really hold.

Legacy files are SQLite; a target is a SQLite file or a server database (`verification.engines`).
Hypothesis runs many examples inside one test call and function-scoped fixtures are not reset
between them, so every database-backed example makes its own folder with `scratch_folder()` and
takes an empty target with `Targets.fresh()`.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from migrator.backfill import KINDS, BackfillReport, Progress, backfill
from migrator.codec import InvalidText, cell_identity, keep_duplicate_keys
from migrator.equivalence import json_differences
from migrator.legacy import LEGACY_TABLES, LegacyRow, LegacySource, LegacyTable, compare_legacy_files
from migrator.relational import rebuilt_rows
from migrator.rollback import restore
from migrator.target import target_database
from migrator.verify import VerifyReport, row_differences, verify

LEGACY_TABLE_NAMES = [table.name for table in LEGACY_TABLES]


def pytest_configure(config: pytest.Config) -> None:
    # The suite's default hypothesis profile. The repository's root conftest does this too; an
    # installed package (`--pyargs verification`) has only this one, and the gate alone may run
    # where hypothesis is not installed (then the fuzzing plugin is not loaded).
    if config.pluginmanager.has_plugin("verification.fuzzing"):
        from verification.fuzzing import load_default_profile

        load_default_profile(config)


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A fresh folder for one example's databases, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ksi-harness-") as folder:
        yield Path(folder)


# --- driving the migrator ---------------------------------------------------------------------


Target = str | Path
"""A SQLite file or a database URL."""


def migrate(source: Path, target: Target, batch_size: int, progress: Progress | None = None) -> BackfillReport:
    with LegacySource(source) as legacy, target_database(target) as database:
        return backfill(legacy, database, batch_size=batch_size, progress=progress)


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


def _text_or_invalid(raw: bytes) -> str | InvalidText:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


def read_legacy_rows(path: Path, table: LegacyTable) -> list[LegacyRow]:
    """Every row of a legacy table as SQLite stored it, in rowid order."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        connection.text_factory = _text_or_invalid
        columns = ", ".join(f'"{column}"' for column in table.columns)
        return connection.execute(f'SELECT rowid, {columns} FROM "{table.name}" ORDER BY rowid').fetchall()


def parse_json_cell(cell: Any) -> tuple[bool, Any]:
    """(True, value) when the cell is JSON text, keeping repeated keys; (False, None) otherwise."""
    if not isinstance(cell, str):  # another storage type, or TEXT that is not UTF-8
        return False, None
    try:
        return True, json.loads(cell, object_pairs_hook=keep_duplicate_keys)
    except (ValueError, RecursionError):
        return False, None


def json_cell_differences(expected: Any, actual: Any) -> list[str]:
    """The strict JSON differences of two JSON cells; none when neither is JSON."""
    expected_is_json, expected_value = parse_json_cell(expected)
    actual_is_json, actual_value = parse_json_cell(actual)
    if expected_is_json != actual_is_json:
        return [f"one cell is JSON and the other is not: {expected!r:.60} vs {actual!r:.60}"]
    if not expected_is_json:
        return []
    return [str(difference) for difference in json_differences(expected_value, actual_value)]


def legacy_row_differences(table: LegacyTable, expected: Sequence[LegacyRow], actual: Sequence[LegacyRow]) -> list[str]:
    """Every way two versions of a legacy table differ: cell by cell, storage type included,
    and, for the JSON column, value by value with `json_differences`."""
    by_rowid = {row[0]: row for row in actual}
    problems = [f"{table.name} rowid {row[0]} is missing" for row in expected if row[0] not in by_rowid]
    expected_rowids = {row[0] for row in expected}
    problems += [f"{table.name} rowid {rowid} is extra" for rowid in by_rowid if rowid not in expected_rowids]
    for row in expected:
        other = by_rowid.get(row[0])
        if other is None:
            continue
        problems += [f"{table.name} rowid {row[0]}: {text}" for text in row_differences(table, row, other)]
        json_problems = json_cell_differences(table.data_of(row), table.data_of(other))
        problems += [f"{table.name} rowid {row[0]} {table.data_column} {text}" for text in json_problems]
    return problems


def rebuilt_row_differences(source: Path, target: Target, batch_size: int) -> list[str]:
    """How the legacy rows rebuilt from the target differ from the source's, without a restore."""
    problems = []
    with target_database(target, must_exist=True) as database:
        for table in LEGACY_TABLES:
            rebuilt = list(rebuilt_rows(database, KINDS[table.name], batch_size))
            problems += [f"{table.name} rowid {rowid}: {row}" for rowid, row in rebuilt if isinstance(row, Exception)]
            rows = [row for _, row in rebuilt if not isinstance(row, Exception)]
            problems += legacy_row_differences(table, read_legacy_rows(source, table), rows)
    return problems


def legacy_file_differences(expected: Path, actual: Path) -> list[str]:
    """Two legacy files compared twice: by SQLite's `typeof()`/`quote()`, and cell by cell here."""
    problems = compare_legacy_files(expected, actual, LEGACY_TABLE_NAMES)
    for table in LEGACY_TABLES:
        problems += legacy_row_differences(table, read_legacy_rows(expected, table), read_legacy_rows(actual, table))
    return problems


# --- reading the relational target ------------------------------------------------------------

TableContents = dict[str, list[dict[str, Any]]]


def target_contents(target: Target) -> TableContents:
    """Every row of every table of the target, as column -> value, read with plain SQL (no model)."""
    with target_database(target, must_exist=True) as database:
        contents: TableContents = {}
        for name in sorted(t for t in database.get_tables() if not t.startswith("sqlite_")):  # not SQLite's own
            quoted, _ = database.get_sql_context().sql(pw.Entity(name)).query()
            cursor = database.execute_sql(f"SELECT * FROM {quoted}")
            columns = [description[0] for description in cursor.description]
            contents[name] = [dict(zip(columns, map(_comparable, row), strict=True)) for row in cursor.fetchall()]
    return contents


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
    to put it, so sessions and their tools are keyed by `session_key` instead, and quarantined
    rows by their cells. The quarantine's own surrogate id is dropped too.
    """
    session_keys = {row["id"]: row["session_key"] for row in contents.get("mcp_session", [])}
    rekeyed = dict(contents)
    rekeyed["mcp_session"] = [_without(row, "id") for row in contents.get("mcp_session", [])]
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
