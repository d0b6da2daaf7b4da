"""The legacy side: the two KSI tables, read-only snapshots of them, and exact rebuilt copies.

A legacy row travels through the migrator as a `LegacyRow`: the SQLite rowid, then the cells in
the table's column order, each with the Python type of its SQLite storage type
(`migrator.codec.LegacyCell`). Nothing here knows about JSON.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from migrator.codec import TEXT_TAG, InvalidText, LegacyCell, decode_sqlite_text, encode_cell
from migrator.errors import (
    MigratorError,
    NoLegacyTables,
    SourceNotFound,
    UnmappedColumn,
    UnsupportedSource,
)
from migrator.private import copy_file
from migrator.rows import offsets, row_builder

LegacyRow = tuple[Any, ...]
"""(rowid, cell, cell, ...) with the cells in the legacy table's column order."""


ROWID = 0
"""Where a `LegacyRow` holds its rowid: first, before the cells."""
CELLS = slice(1, None)
"""A `LegacyRow`'s cells, in the table's column order."""


@dataclass(frozen=True)
class LegacyTable:
    name: str
    columns: tuple[str, ...]
    key_column: str  # the column users know a row by: `id` or `session_key`
    data_column: str  # the JSON blob
    ddl: str  # the CREATE TABLE the daemon ran, used when the snapshot's own is not recorded
    rowid_alias: bool  # True when the key column *is* the rowid (INTEGER PRIMARY KEY)

    @cached_property
    def at(self) -> Any:
        """Each cell's offset in a `LegacyRow` by column name, the rowid's included (`at.rowid`)."""
        return offsets(self.name, ("rowid", *self.columns))

    @cached_property
    def build(self) -> Callable[..., LegacyRow]:
        """`build(rowid=..., **cells)`: a `LegacyRow` from its cells by column name."""
        return row_builder(self.name, ("rowid", *self.columns))

    @cached_property
    def key_at(self) -> int:
        return CELLS.start + self.columns.index(self.key_column)

    @cached_property
    def data_at(self) -> int:
        return CELLS.start + self.columns.index(self.data_column)

    def key_of(self, row: LegacyRow) -> LegacyCell:
        return row[self.key_at]

    def data_of(self, row: LegacyRow) -> LegacyCell:
        return row[self.data_at]


CHECKPOINTS = LegacyTable(
    name="checkpoints",
    columns=("id", "timestamp", "checkpoint_data"),
    key_column="id",
    data_column="checkpoint_data",
    ddl=(
        "CREATE TABLE checkpoints (\n"
        "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    timestamp TEXT NOT NULL,\n"
        "    checkpoint_data TEXT NOT NULL\n"
        ")"
    ),
    rowid_alias=True,
)

MCP_SESSIONS = LegacyTable(
    name="mcp_sessions",
    columns=("session_key", "session_data", "last_seen"),
    key_column="session_key",
    data_column="session_data",
    ddl=(
        "CREATE TABLE mcp_sessions (\n"
        "    session_key TEXT PRIMARY KEY,\n"
        "    session_data TEXT NOT NULL,\n"
        "    last_seen TIMESTAMP NOT NULL\n"
        ")"
    ),
    rowid_alias=False,
)

LEGACY_TABLES = (CHECKPOINTS, MCP_SESSIONS)
LEGACY_TABLES_BY_NAME = {table.name: table for table in LEGACY_TABLES}


BATCH_BYTES = 4 << 20
"""A batch of legacy rows holds at most about this much cell data. Checkpoints run from a few KB
to over 100 KB each; a row count alone would let a batch of large ones take hundreds of MB."""
FETCH_ROWS = 64  # rows taken from the cursor at a time while a batch fills


def row_bytes(row: LegacyRow) -> int:
    """The size of a row's text and blob cells (numbers are small and fixed)."""
    return sum(len(cell) for cell in row if isinstance(cell, str | bytes))


def display_key(value: LegacyCell) -> str:
    """A row's key as a person reads it in a report: the text itself, or a typed rendering."""
    if isinstance(value, str):
        return value
    if isinstance(value, InvalidText):
        return f"text x'{bytes(value).hex()}'"
    if isinstance(value, bytes):
        return f"x'{value.hex()}'"
    return "NULL" if value is None else repr(value)


def row_digest(cells: Sequence[LegacyCell]) -> str:
    """Fingerprint of a legacy row's cells, storage types included, for catch-up backfills."""
    digest = hashlib.blake2b(digest_size=16)
    for cell in cells:
        # A TEXT cell is digested as its text, whatever tag storage gives it, so the digests in
        # targets and archive manifests written by earlier versions still match.
        tag, text = (TEXT_TAG, cell) if isinstance(cell, str) else encode_cell(cell)
        data = b"" if text is None else text.encode("utf-8")
        digest.update(f"{tag}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def file_sha256(path: Path) -> str | None:
    if not path.exists():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar(path: Path, kind: str) -> Path:
    """A database's `-wal`, `-shm` or `-journal` file."""
    return Path(f"{path}-{kind}")


WAL_FORMAT = 2  # file format version bytes 18 and 19 of the header: 1 rollback journal, 2 WAL


def is_wal_mode(path: Path) -> bool:
    """Whether the database file is in WAL mode, from its header (reading it changes nothing)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return False  # SQLite says why when it tries
    return len(header) == 20 and header[18] == header[19] == WAL_FORMAT


def snapshot_hashes(path: Path) -> dict[str, str | None]:
    """sha256 of the snapshot and of its WAL file, to prove neither changed."""
    return {"db": file_sha256(path), "wal": file_sha256(Path(f"{path}-wal"))}


# --- reading a snapshot -----------------------------------------------------------------------


@dataclass(frozen=True)
class LegacySchema:
    """What it takes to recreate the legacy tables exactly, besides their rows."""

    statements: list[str]  # CREATE TABLE / INDEX / TRIGGER of the legacy tables, in order
    sequences: dict[str, int]  # sqlite_sequence entries (AUTOINCREMENT high-water marks)
    encoding: str
    tables: list[str]


Query = Callable[[str, Sequence[Any]], Iterable[tuple[Any, ...]]]
"""Runs one SQL statement with parameters and gives its rows (`sqlite3.Connection.execute`, or a
peewee database's `execute_sql`)."""


def read_legacy_schema(query: Query, names: Sequence[str]) -> LegacySchema:
    """The DDL, AUTOINCREMENT counters and encoding of these legacy tables in a SQLite database."""
    marks = ", ".join("?" * len(names))
    statements = [
        row[0]
        for row in query(
            f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL "
            "ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid",
            list(names),
        )
    ]
    sequences: dict[str, int] = {}
    if list(query("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'", [])):
        sequences = {name: seq for name, seq in query("SELECT name, seq FROM sqlite_sequence", []) if name in names}
    encoding = next(iter(query("PRAGMA encoding", [])))[0]
    return LegacySchema(statements, sequences, encoding, list(names))


class UnmappedColumns(StrEnum):
    """What a `LegacySource` does with a column of a legacy table that the mapping does not read."""

    REFUSE = "refuse"  # raise `UnmappedColumn`: migrating would lose it
    REPORT = "report"  # list it in `LegacySource.unmapped`; `stored_table` reads it as well (archive)


ROWID_NAMES = ("rowid", "oid", "_rowid_")


def _case_fix(kind: str, name: str, wanted: str) -> str:
    """What to run for a legacy table named in another case. SQLite refuses a rename that changes
    only the case ("there is already another table"), so a table takes two; a view cannot be renamed."""
    if kind == "view":
        return f'drop the view (DROP VIEW "{name}") and give the table it reads the name {wanted}'
    step = f'ALTER TABLE "{wanted}_renamed" RENAME TO {wanted}'
    return f'rename it in two steps: ALTER TABLE "{name}" RENAME TO "{wanted}_renamed"; {step}'


class LegacySource:
    """A legacy snapshot opened strictly read-only, read in one consistent read transaction.

    Each legacy table is inspected before anything is read, so a table the mapping cannot carry
    exactly is refused with one line that names it (`UnsupportedSource`): a view, a table
    WITHOUT ROWID, a column that hides the rowid, an unexpected primary key, a missing column.
    A column the mapping does not read is handled as `unmapped` says.
    """

    def __init__(self, path: str | os.PathLike[str], *, unmapped: UnmappedColumns = UnmappedColumns.REFUSE) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceNotFound(f"source database not found: {self.path}")
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._counts: dict[str, int] = {}
        self.connection, self._live = self._connect_read_only()
        try:
            # Taken before the snapshot begins: any commit after it changes the number (`written_since`).
            self._version = self._data_version()
            self.connection.execute("BEGIN")
            kinds = dict(self.connection.execute("SELECT name, type FROM sqlite_master").fetchall())
        except sqlite3.DatabaseError as exc:
            self.close()
            raise MigratorError(f"source is not a readable SQLite database: {self.path}: {exc}") from exc
        try:
            self._refuse_names_in_another_case(kinds)
        except BaseException:
            self.close()
            raise
        self.tables = [table for table in LEGACY_TABLES if table.name in kinds]
        if not self.tables:
            self.close()
            raise NoLegacyTables(f"source has neither a checkpoints nor an mcp_sessions table: {self.path}")
        try:
            self.unmapped = [(table.name, column) for table in self.tables for column in self._inspect(table, kinds)]
        except BaseException:
            self.close()
            raise
        if unmapped is UnmappedColumns.REFUSE and self.unmapped:
            self.close()
            named = ", ".join(f"{table}.{column}" for table, column in self.unmapped)
            raise UnmappedColumn(
                f"source column(s) {named} in {self.path} are not carried by the mapping, so migrating would lose "
                "them; move them out of the legacy table, or extend the mapping, before migrating"
            )

    def _connect_read_only(self) -> tuple[sqlite3.Connection, sqlite3.Connection | None]:
        """The connection that reads the snapshot, and, where a writer may still change the file
        (a live daemon's database read in place), a second one that reads it as it is now."""
        # mode=ro never writes the database or its WAL. But SQLite creates a WAL database's -wal and
        # -shm beside it when they are missing, as in a copied snapshot, and cannot read it at all
        # where it cannot create them (read-only media, a read-only folder).
        parameters = "mode=ro"
        location = self.path
        if not sidecar(self.path, "wal").exists() and is_wal_mode(self.path):
            # No WAL content to read: immutable=1 reads the file alone, with no sidecar and no lock.
            parameters = "mode=ro&immutable=1"
        elif not sidecar(self.path, "shm").exists() and sidecar(self.path, "wal").exists():
            # A WAL to read, but no index of it: read a private copy, where SQLite may build one.
            self._scratch = tempfile.TemporaryDirectory(prefix="ksi-source-")
            location = Path(self._scratch.name) / self.path.name
            copy_file(self.path, location)
            copy_file(sidecar(self.path, "wal"), sidecar(location, "wal"))
        uri = f"file:{quote(str(location.resolve()))}?{parameters}"

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            connection.text_factory = decode_sqlite_text
            return connection

        live = parameters == "mode=ro" and self._scratch is None
        return connect(), (connect() if live else None)

    def _data_version(self) -> int | None:
        return self._live.execute("PRAGMA data_version").fetchone()[0] if self._live is not None else None

    @property
    def reads_a_copy(self) -> bool:
        """Whether the snapshot is read from a private copy (a WAL beside no index of it): each
        process that opened the file again would copy it again."""
        return self._scratch is not None

    def written_since(self) -> bool:
        """Whether another connection (a daemon) committed to the file since the snapshot began."""
        return self._live is not None and self._data_version() != self._version

    def rows_now(self, table: LegacyTable, rowids: Sequence[int]) -> dict[int, LegacyRow]:
        """The rows with these rowids as the file holds them now, outside the snapshot."""
        reader = self._live or self.connection
        columns = ", ".join(f'"{c}"' for c in table.columns)
        marks = ", ".join("?" * len(rowids))
        query = f'SELECT rowid, {columns} FROM "{table.name}" WHERE rowid IN ({marks})'
        return {row[ROWID]: row for row in reader.execute(query, list(rowids))}

    def _refuse_names_in_another_case(self, kinds: dict[str, str]) -> None:
        """SQLite matches names regardless of ASCII case, so the daemon's `FROM mcp_sessions` reads a
        table named `MCP_SESSIONS`; looked up by its exact name here, it would be passed by in
        silence (not migrated, verified, archived, nor dropped), so it is refused instead."""
        for name, kind in kinds.items():
            for table in LEGACY_TABLES:
                if kind in ("table", "view") and name != table.name and name.isascii() and name.lower() == table.name:
                    raise UnsupportedSource(
                        f"source {kind} {name} in {self.path} is the daemon's {table.name} named in another case; "
                        f"before migrating, {_case_fix(kind, name, table.name)}"
                    )

    def _inspect(self, table: LegacyTable, kinds: dict[str, str]) -> list[str]:
        """Refuse a table the mapping cannot carry exactly; return its columns the mapping does not read."""
        where = f"source {table.name} in {self.path}"
        if kinds[table.name] != "table":
            raise UnsupportedSource(f"{where} is a {kinds[table.name]}, not a table")
        listed = self.connection.execute(
            "SELECT wr, type FROM pragma_table_list WHERE name = ?", (table.name,)
        ).fetchone()
        if listed and listed[1] in ("virtual", "shadow"):
            raise UnsupportedSource(f"{where} is a {listed[1]} table: its rows are not stored as a table's")
        if listed and listed[0]:
            raise UnsupportedSource(f"{where} is a WITHOUT ROWID table: its rows have no rowid to be kept by")
        info = self.connection.execute(f'PRAGMA table_xinfo("{table.name}")').fetchall()
        names = [row[1] for row in info]
        hiding = [name for name in names if name.lower() in ROWID_NAMES]
        if hiding:
            raise UnsupportedSource(f"{where}: column {hiding[0]} hides SQLite's rowid, which rows are kept by")
        missing = [column for column in table.columns if column not in names]
        if missing:
            raise UnsupportedSource(f"{where} lacks column(s) {', '.join(missing)}")
        generated = [row[1] for row in info if row[6] in (2, 3)]  # hidden: 2 virtual, 3 stored generated
        if generated:
            raise UnsupportedSource(f"{where}: column {generated[0]} is generated; its values cannot be restored")
        self._check_primary_key(table, info, where)
        return [name for name in names if name not in table.columns]

    def _check_primary_key(self, table: LegacyTable, info: list[tuple[Any, ...]], where: str) -> None:
        """The daemon's keys: `checkpoints.id` is the rowid itself (INTEGER PRIMARY KEY), and
        `mcp_sessions.session_key` is a primary key of its own. A table declared otherwise would
        restore with other rowids or other uniqueness, so it is refused."""
        key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
        # A primary key that is not the rowid has an index of its own (origin "pk"); the rowid alias has none.
        own_index = any(
            row[3] == "pk" for row in self.connection.execute(f'PRAGMA index_list("{table.name}")').fetchall()
        )
        is_rowid = table.rowid_alias
        if key != [table.key_column] or own_index == is_rowid:
            expected = "INTEGER PRIMARY KEY (the rowid)" if is_rowid else "a PRIMARY KEY that is not the rowid"
            found = f"({', '.join(key)})" if key else "none"
            alias = "the rowid" if key and not own_index else "not the rowid"
            raise UnsupportedSource(
                f"{where} has primary key {found}, {alias}; the daemon's {table.key_column} is {expected}"
            )

    def reader(self, table: LegacyTable) -> sqlite3.Connection:
        """The connection, in the snapshot's read transaction, that reads this table (`LegacySources`
        reads each table from its own file)."""
        return self.connection

    def stored_table(self, table: LegacyTable) -> LegacyTable:
        """The table with every column it holds in this snapshot: the mapped ones, then the others.
        Its rows are what an archive keeps, so that nothing of a legacy row is left behind."""
        others = tuple(column for name, column in self.unmapped if name == table.name)
        return replace(table, columns=(*table.columns, *others)) if others else table

    def count(self, table: LegacyTable) -> int:
        """The table's rows, counted once: the whole source is read in one read transaction, so
        the count cannot change while it is open (the progress bar and the report share it)."""
        if table.name not in self._counts:
            self._counts[table.name] = self.connection.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
        return self._counts[table.name]

    def batches(self, table: LegacyTable, batch_size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[LegacyRow]]:
        """Every row in rowid order, in batches of `batch_size` rows or `max_bytes` of cells,
        whichever comes first (always at least one row), so memory stays flat however many rows
        there are and however large each blob is."""
        columns = ", ".join(f'"{c}"' for c in table.columns)
        cursor = self.connection.execute(f'SELECT rowid, {columns} FROM "{table.name}" ORDER BY rowid')
        batch: list[LegacyRow] = []
        size = 0
        while chunk := cursor.fetchmany(FETCH_ROWS):
            for row in chunk:
                batch.append(row)
                size += row_bytes(row)
                if len(batch) >= batch_size or size >= max_bytes:
                    yield batch
                    batch, size = [], 0
        if batch:
            yield batch

    def existing_rowids(self, table: LegacyTable, rowids: Sequence[int]) -> set[int]:
        marks = ", ".join("?" * len(rowids))
        query = f'SELECT rowid FROM "{table.name}" WHERE rowid IN ({marks})'
        return {rowid for (rowid,) in self.connection.execute(query, list(rowids))}

    def schema(self, *, now: bool = False) -> LegacySchema:
        """The legacy tables' DDL, counters and encoding in the snapshot, or as the file holds them
        `now` (a daemon writing meanwhile moves the AUTOINCREMENT counter on)."""
        reader = self._live if now and self._live is not None else self.connection
        return read_legacy_schema(reader.execute, [table.name for table in self.tables])

    def close(self) -> None:
        self.connection.close()
        if self._live is not None:
            self._live.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> LegacySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
