"""A fresh SQLite load's rows handed over in a file: a worker writes them, the writer copies them.

With `--jobs N` the main process is the one writer of the target, and binding every value of
every row through Python's sqlite3 module (`executemany`) was the largest part of its time. A
worker that maps a batch for a SQLite target writes the rows into a staging file of its own,
made with the target's own CREATE TABLE statements; the writer attaches that file and copies
each table with one `INSERT ... SELECT *`, which SQLite runs without a Python call per value.
Measured on 100k sessions' rows in batches of 2,000: 7.0 s of `executemany` in the writer
against 2.2 s of copying (the worker's writes to its staging files took 5.2 s, on the other core).

Exactness: the staging table is the target table's own definition, so each value is stored
with the same affinity, as the same storage type, by the same driver call (`insert_rows`) a
direct write makes; the copy moves stored values as they are, in rowid order, so the target's
cells and rowids are those of a run in one process (`tests/test_parallel.py` compares both).
A server target's rows are staged as the text lines of its own loader instead (`LineStaging`:
PostgreSQL's COPY, MySQL's LOAD DATA LOCAL), in memory: what `Engine.bulk_insert` would make of
the same rows with `loading.lines`, made where the rows are mapped (a worker, or the thread that
maps for a run with `--jobs 1`: `parallel.mapped_on_a_thread`), so the writer only sends bytes.

The files live in a temporary folder of the run (`TMPDIR`), one per batch in flight, and each
is removed once copied; the folder goes when the run ends, whatever way it ends. Only a run killed
outright (SIGKILL, a power cut) leaves its folder, owner-only but holding session data: the next
staging run removes it (`_remove_abandoned`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import peewee as pw

from migrator import engines, loading
from migrator.errors import StagingFailed
from migrator.peewee_parts import exception_wrapper
from migrator.relational import Row, TableMap, WritableRows, insert_rows

logger = logging.getLogger(__name__)

ALIAS = "ksi_staged"
"""The name a staging file is attached under; only this module's statements use it."""
_STAGING_FILE = pw.SqliteDatabase(None)
"""A worker's connection to its staging files, pointed at each new one in turn (`init`): one
database object for the worker's life, so that its engine and its statements are made once
(`engines.engine` keeps each database's engine for as long as the database lives)."""


@dataclass(frozen=True)
class Staging:
    """Where the workers of a run stage rows, and the target's definition of each table."""

    directory: str
    definitions: dict[str, str]  # table name -> the target's CREATE TABLE statement for it

    def stage(self, tables: Sequence[TableMap], rows: Sequence[Sequence[Row]]) -> StagedTables:
        """Run in a worker, one batch at a time: write each table's rows into a new staging file, in order."""
        path = ""
        try:
            descriptor, path = tempfile.mkstemp(prefix="batch-", suffix=".db", dir=self.directory)
            os.close(descriptor)  # SQLite takes an empty file as an empty database
            _STAGING_FILE.init(path, pragmas={"journal_mode": "off", "synchronous": "off"})
            with _STAGING_FILE.connection_context(), _STAGING_FILE.atomic():
                for table, bucket in zip(tables, rows, strict=True):
                    _STAGING_FILE.execute_sql(self.definitions[table.model._meta.table_name])
                    insert_rows(_STAGING_FILE, table, bucket)
        except (pw.OperationalError, sqlite3.OperationalError, OSError) as exc:  # a full disk, most likely
            if path:
                os.unlink(path)
            raise StagingFailed(
                f"cannot stage rows for the writer in {self.directory}: {exc} (free space there, point TMPDIR "
                "elsewhere, or run with --jobs 1, which stages nothing)"
            ) from None
        return StagedTables(path, [len(bucket) for bucket in rows])


@dataclass(frozen=True)
class StagedTables:
    """A batch's relational rows in a staging file: the rows each table of its kind got there."""

    path: str
    counts: list[int]

    def insert_into(self, database: pw.Database, tables: Sequence[TableMap]) -> None:
        """Copy every table's rows into the target; the file must be `attached`."""
        quoted = engines.engine(database).quoted
        for table, count in zip(tables, self.counts, strict=True):
            if count:
                name = table.model._meta.table_name
                database.execute_sql(f"INSERT INTO main.{quoted(name)} SELECT * FROM {ALIAS}.{quoted(name)}")


@dataclass(frozen=True)
class LineStaging:
    """A server run's rows staged as its native loader's lines (`loading.lines`), in memory."""

    engine: str  # the engine's name, which says how each value is spelled (`engines.LINE_FIELDS`)

    def stage(self, tables: Sequence[TableMap], rows: Sequence[Sequence[Row]]) -> StagedLines:
        field = engines.LINE_FIELDS[self.engine]
        return StagedLines([loading.lines(bucket, field) for bucket in rows], [len(bucket) for bucket in rows])


@dataclass(frozen=True)
class StagedLines:
    """A batch's relational rows as each table's lines, and the rows each table got."""

    data: list[bytes]
    counts: list[int]

    def insert_into(self, database: pw.Database, tables: Sequence[TableMap]) -> None:
        """Load every table's lines into the target, as `insert_rows` would load its rows."""
        engine = engines.engine(database)
        for table, data, count in zip(tables, self.data, self.counts, strict=True):
            if count:
                with exception_wrapper:  # the driver's errors as peewee's, as `insert_rows` raises them
                    engine.load_lines(table.fields, data, count)


Stager = Staging | LineStaging
"""Where a run's rows are staged for its writer, by kind of target."""


@contextmanager
def staging_for(database: pw.Database, models: Sequence[type[pw.Model]], *, workers: bool) -> Iterator[Stager | None]:
    """How rows mapped away from the writer for these fresh tables are staged, or None.

    A SQLite target stages them in files, for workers only (`workers`): with `--jobs 1` its rows
    are mapped and written in one thread. A server whose loader takes lines stages them as lines,
    with or without workers: a run with `--jobs 1` maps them on a thread of its own while the
    writer waits for the server (`parallel.mapped_on_a_thread`)."""
    engine = engines.engine(database)
    if models and engine.loads_lines():
        yield LineStaging(engine.name)
        return
    if not workers or not models or engine.name != engines.SQLITE:
        yield None
        return
    names = [model._meta.table_name for model in models]
    marks = ", ".join("?" for _ in names)
    tables = f"SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ({marks})"
    found = database.execute_sql(tables, names)
    _remove_abandoned(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=f"{FOLDER_PREFIX}{os.getpid()}-") as directory:
        yield Staging(directory, dict(found.fetchall()))


FOLDER_PREFIX = "ksi-staging-"
"""A run's staging folder is named for it and its process id: `ksi-staging-<pid>-<random>`."""
_RUN_FOLDER = re.compile(rf"{FOLDER_PREFIX}(\d+)-\w+")
IDLE_SECONDS = 60.0
"""How long a folder must have been left untouched before it counts as abandoned: a live run adds
and removes a file in it every batch, so one whose process id is not alive here (another pid
namespace sharing TMPDIR) is still left alone."""


def _remove_abandoned(temporary: Path) -> None:
    """Remove the staging folders, and the session data in them, of this user's runs that were
    killed before they could: their process is gone and they have not changed for a while."""
    for folder in temporary.glob(f"{FOLDER_PREFIX}*"):
        matched = _RUN_FOLDER.fullmatch(folder.name)
        try:
            stat = folder.lstat()
        except OSError:
            continue  # removed meanwhile
        if not matched or not folder.is_dir() or folder.is_symlink() or stat.st_uid != os.getuid():
            continue
        if _alive(int(matched[1])) or time.time() - stat.st_mtime < IDLE_SECONDS:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning("removed %s, the staging folder of an earlier run that was killed", folder)


def _alive(pid: int) -> bool:
    """Whether a process id may be a live run's: only one that is surely gone is not."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; no process id at all
        return True
    return True  # (0 names this process group, always alive: such a folder is left alone too)


def staged_tables(mapped: WritableRows | None) -> StagedTables | None:
    """The staging file of a batch's rows, if a worker staged them."""
    tables = None if mapped is None else mapped[0]
    return tables if isinstance(tables, StagedTables) else None


@contextmanager
def attached(database: pw.Database, staged: StagedTables | None) -> Iterator[None]:
    """The staging file attached while a batch is written (outside any transaction: SQLite
    detaches a file only then), and removed afterwards, written or not."""
    if staged is None:
        yield
        return
    database.execute_sql(f"ATTACH DATABASE ? AS {ALIAS}", (staged.path,))
    try:
        yield
    finally:
        try:
            database.execute_sql(f"DETACH DATABASE {ALIAS}")
        finally:
            os.unlink(staged.path)
