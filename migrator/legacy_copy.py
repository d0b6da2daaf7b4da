"""Writing an exact legacy copy (the rollback), and comparing two legacy files with SQLite alone.

A copy has the snapshot's own DDL (checked and run under `ddl`'s authorizer), every row with its
rowid and storage types, and the AUTOINCREMENT counters. It is written under a temporary name
and moved into place when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from migrator.codec import InvalidText
from migrator.ddl import check_legacy_schema, run_legacy_ddl, statements_by_table
from migrator.errors import OutputExists, RestoreLayoutError
from migrator.legacy import (
    CELLS,
    LEGACY_TABLES_BY_NAME,
    ROWID,
    LegacyRow,
    LegacySchema,
    LegacyTable,
)
from migrator.private import create_file

# --- writing an exact legacy copy (the rollback) ----------------------------------------------


def default_schema(tables: Iterable[LegacyTable]) -> LegacySchema:
    chosen = list(tables)
    return LegacySchema([t.ddl for t in chosen], {}, "UTF-8", [t.name for t in chosen])


SIDECARS = ("journal", "wal", "shm")


class LegacyWriter:
    """Writes a new SQLite file with the legacy tables' own DDL and rows rebuilt exactly."""

    def __init__(self, out: str | os.PathLike[str], schema: LegacySchema) -> None:
        self.out = Path(out)
        if self.out.exists():
            raise OutputExists(f"refusing to overwrite existing file: {self.out}")
        # The statements come from an archive or a target, files anyone may have edited: checked
        # in a scratch database before a file is created, then run under the same rules.
        check_legacy_schema(schema)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.partial.unlink(missing_ok=True)
        self.schema = schema
        create_file(self.partial)  # 0600 before SQLite writes a byte; its journal takes that mode
        self.connection = sqlite3.connect(self.partial, isolation_level=None)
        try:
            # The encoding must be set before the first table exists; text round-trips either way,
            # but an exact copy keeps the file's encoding too.
            self.connection.execute(f"PRAGMA encoding = '{schema.encoding}'")
            self.connection.execute("BEGIN")
            run_legacy_ddl(self.connection, schema.statements)
        except BaseException:
            self.abort()
            raise

    def insert(self, table: LegacyTable, rows: Sequence[LegacyRow]) -> None:
        plain = [row for row in rows if not any(isinstance(c, InvalidText) for c in row)]
        self.connection.executemany(self._insert_sql(table, None), [self._params(table, r) for r in plain])
        for row in rows:
            if any(isinstance(cell, InvalidText) for cell in row):
                self.connection.execute(self._insert_sql(table, row), self._params(table, row))

    def _insert_sql(self, table: LegacyTable, row: LegacyRow | None) -> str:
        # Text that is not valid UTF-8 can only be bound as bytes, then cast back to TEXT.
        names = list(table.columns) if table.rowid_alias else ["rowid", *table.columns]
        cells = row[CELLS] if row is not None else [None] * len(table.columns)
        marks = ["CAST(? AS TEXT)" if isinstance(c, InvalidText) else "?" for c in cells]
        if not table.rowid_alias:
            marks.insert(0, "?")
        quoted = ", ".join(f'"{n}"' for n in names)
        return f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join(marks)})'

    @staticmethod
    def _params(table: LegacyTable, row: LegacyRow) -> list[Any]:
        cells = [bytes(c) if isinstance(c, InvalidText) else c for c in row[CELLS]]
        return cells if table.rowid_alias else [row[ROWID], *cells]

    def finish(self) -> Path:
        for name, seq in self.schema.sequences.items():
            self.connection.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
            self.connection.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
        self.connection.execute("COMMIT")
        self.connection.close()
        os.replace(self.partial, self.out)
        return self.out

    def abort(self) -> None:
        """Leave nothing behind: the partial file, and any journal SQLite kept beside it."""
        self.connection.close()
        for leftover in (self.partial, *(self.partial.with_name(f"{self.partial.name}-{kind}") for kind in SIDECARS)):
            leftover.unlink(missing_ok=True)


def compare_legacy_files(expected: Path, actual: Path, tables: Sequence[str]) -> list[str]:
    """Rows that differ between two legacy files, judged by SQLite itself (not by this package).

    Every cell is compared by `typeof()`, `quote()` and `hex()`, with the rowid, in both
    directions, so a value of another storage type or a missing or extra row shows up. `hex()` is
    there because `quote()` ends a TEXT value at its first NUL. One blind spot remains: no core SQL
    function shows the sign of a REAL zero, so -0.0 and 0.0 look alike here.
    """
    connection = sqlite3.connect(":memory:", uri=True)
    # SQLite compares; Python only reports, and must not fail on TEXT that is not UTF-8.
    connection.text_factory = lambda raw: raw.decode("utf-8", "backslashreplace")
    try:
        for alias, path in (("expected", expected), ("actual", actual)):
            connection.execute(f"ATTACH ? AS {alias}", (f"file:{quote(str(Path(path).resolve()))}?mode=ro",))
        problems = []
        for name in tables:
            table = LEGACY_TABLES_BY_NAME[name]
            cells = ", ".join(f'typeof("{c}"), quote("{c}"), hex("{c}")' for c in table.columns)
            select = f'SELECT rowid, {cells} FROM {{}}."{name}"'
            for left, right, label in (("expected", "actual", "missing from"), ("actual", "expected", "extra in")):
                query = f"{select.format(left)} EXCEPT {select.format(right)} LIMIT 5"
                for rowid, *described in connection.execute(query):
                    problems.append(f"{name} rowid {rowid} {label} the copy: {tuple(described)}")
        return problems
    finally:
        connection.close()


def outputs_label(outs: Outputs) -> str:
    """The file, or the files joined with ` + `, a restore writes."""
    return " + ".join(str(path) for path in outs.values()) if isinstance(outs, Mapping) else str(outs)


def write_legacy_copy(
    out: str | os.PathLike[str],
    schema: LegacySchema,
    tables: Iterable[tuple[LegacyTable, Iterable[LegacyRow]]],
    *,
    batch_size: int,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Write a new legacy file from streams of rows, a batch at a time; nothing is left behind
    when a stream fails (a rebuild error, a damaged archive). Returns rows written per table."""
    writer = LegacyWriter(out, schema)
    counts: dict[str, int] = {}
    try:
        for table, rows in tables:
            counts[table.name] = 0
            for batch in batched(rows, batch_size):
                writer.insert(table, batch)
                counts[table.name] += len(batch)
                if progress:
                    progress(table.name, len(batch))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return counts


Outputs = str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]]
"""Where a restore writes: one file for every table, or a file per table (the daemon's layout,
`{"checkpoints": "checkpoint.db", "mcp_sessions": "mcp_sessions.db"}`)."""


def write_legacy_copies(
    outs: Outputs,
    schema: LegacySchema,
    tables: Iterable[tuple[LegacyTable, Iterable[LegacyRow]]],
    *,
    batch_size: int,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """`write_legacy_copy` into one file, or into a file per table: each file holds its tables'
    own statements and AUTOINCREMENT counters, in the schema's encoding, as the daemon's files
    do. Every file is new; when one fails, those already written are removed too."""
    if not isinstance(outs, Mapping):
        return write_legacy_copy(outs, schema, tables, batch_size=batch_size, progress=progress)
    missing = [name for name in schema.tables if name not in outs]
    if missing:
        raise RestoreLayoutError(f"{', '.join(missing)} is to be restored as well: say which file it goes to")
    unknown = [name for name in outs if name not in schema.tables]
    if unknown:
        held = ", ".join(schema.tables) or "no legacy table"
        raise RestoreLayoutError(f"there is no {', '.join(unknown)} table to restore (only {held})")
    streams = dict((table.name, (table, rows)) for table, rows in tables)
    by_file: dict[Path, list[str]] = {}
    for name in schema.tables:
        by_file.setdefault(Path(outs[name]), []).append(name)
    taken = [path for path in by_file if path.exists()]
    if taken:
        raise OutputExists(f"refusing to overwrite existing file: {taken[0]}")
    groups = statements_by_table(schema.statements)
    written: list[Path] = []
    counts: dict[str, int] = {}
    try:
        for path, names in by_file.items():
            part = LegacySchema(
                [statement for name in names for statement in groups.get(name, [])],
                {name: seq for name, seq in schema.sequences.items() if name in names},
                schema.encoding,
                names,
            )
            counts |= write_legacy_copy(
                path, part, [streams[n] for n in names], batch_size=batch_size, progress=progress
            )
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return counts


def batched(rows: Iterable[LegacyRow], size: int) -> Iterator[list[LegacyRow]]:
    batch: list[LegacyRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
