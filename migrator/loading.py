"""Loading empty tables fast: secondary indexes built after the load, and the servers' own loaders.

`EmptyTableLoads` is the part of every engine (`migrator/engines.py`) that a backfill into empty
tables uses: their secondary indexes (and on PostgreSQL their foreign keys) are dropped, the rows
loaded, the indexes built in one sorted pass each and the keys checked in one join each;
meanwhile `Engine.bulk_insert` sends those tables' rows through the engine's native loader,
where it has one. Catch-ups into tables that hold rows keep their indexes and the
usual INSERTs, which a live daemon's concurrent writes are checked against.

PostgreSQL's `COPY ... FROM STDIN` (text format) and MySQL's `LOAD DATA LOCAL INFILE` take rows
as lines of tab-separated fields, with `\\N` for NULL and a backslash escaping whatever would
otherwise end a field or a line. Both skip what a parameterised INSERT costs per value (the
driver's quoting in Python, the server's SQL parser), which is where a server backfill spent its
time.

Exactness rests on three rules, held by `tests/test_loading.py` for every value shape:

* Every backslash is doubled, and tab, newline and carriage return are written as `\\t`, `\\n`,
  `\\r`, so no value can end a field or a line early, and `\\.` (PostgreSQL's old end-of-data
  mark) or `\\N` inside a value reach the server as the text they are. An empty string is an
  empty field and NULL is `\\N`: the two never meet.
* The lines are encoded as UTF-8 and the statement says so (`ENCODING 'UTF8'`, `CHARACTER SET
  utf8mb4`), whatever the connection's or the database's own encoding. Text the mapping stores
  never holds NUL or a lone surrogate (`codec.is_storable_text` keeps those escaped in JSON);
  were one to arrive, the encoding (a surrogate) or the server (NUL) refuses the whole batch.
* Only the Python types the models' columns take are written: text, integers, booleans,
  datetimes and NULL. Numbers and bytes of the legacy data travel inside text (JSON, `repr`,
  hex), so no float or blob column exists; any other type is refused (`TypeError`), never
  guessed at.
"""

from __future__ import annotations

import json
import logging
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import reduce
from typing import Any, ClassVar

import peewee as pw
from pymysql.constants import COMMAND
from pymysql.protocol import OKPacketWrapper

from migrator.errors import BrokenReferences, DuplicateKeys
from migrator.models import MigrationMeta, Reference, references_of_table
from migrator.peewee_parts import IndexParts, sort_models

logger = logging.getLogger(__name__)


class EmptyTableLoads:
    """Loads into empty tables: the engine's secondary indexes built after, its loader used."""

    database: pw.Database

    def __init__(self) -> None:
        # The tables this thread is loading empty (`indexes_built_after`): per thread, as a store's
        # other threads keep writing through the same database with the usual statements.
        self._loading = threading.local()

    def index(self, index: pw.ModelIndex) -> pw.ModelIndex:
        raise NotImplementedError  # the engine's (`Engine.index`)

    def quoted(self, *names: str) -> str:
        raise NotImplementedError  # the engine's (`Engine.quoted`)

    def ensure_indexes(self, models: Sequence[type[pw.Model]]) -> None:
        """Create any index (and foreign key) of these tables that a stopped load left unbuilt, and
        check the references it left unchecked."""
        self._add_foreign_keys()
        self._check_recorded_references()
        for model in sort_models(models):
            if self.database.table_exists(model._meta.table_name):
                present = self._index_names(model)
                self._build_indexes([i for i in model._meta.fields_to_index() if IndexParts.of(i).name not in present])

    def _index_names(self, model: type[pw.Model]) -> set[str]:
        return {index.name for index in self.database.get_indexes(model._meta.table_name)}

    @contextmanager
    def indexes_built_after(self, models: Sequence[type[pw.Model]]) -> Iterator[None]:
        """Load these tables, empty so far, without their secondary indexes, then build them;
        `bulk_insert` meanwhile takes the engine's native loader for them, where it has one.

        Once an index outgrows the cache, each insert into it (a random digest, a time) reads
        and writes pages all over the file; the time per row grows with the table (14x the time for
        10x the rows, measured on SQLite). Built afterwards, an index is one sorted pass. The unique
        ones are checked then as well: the source's own primary key already makes their keys unique,
        and a duplicate fails the build with `DuplicateKeys`. Whatever happens, every index is built
        before this returns; a process killed half way leaves them to `ensure_indexes`.
        """
        indexes = [index for model in models for index in model._meta.fields_to_index()]
        if self.foreign_keys_after:
            self._drop_foreign_keys([model._meta.table_name for model in models])
        for model in models:
            present = self._index_names(model)
            for index in model._meta.fields_to_index():
                if IndexParts.of(index).name in present:
                    self._drop_index(index)
        self._loading.tables = {model._meta.table_name for model in models}
        try:
            yield
        finally:
            self._loading.tables = set()
            try:
                self._build_indexes(indexes)
            finally:
                self._add_foreign_keys()

    @contextmanager
    def references_checked_after(self, models: Sequence[type[pw.Model]]) -> Iterator[None]:
        """Load these tables with no foreign-key lookup per row, then check each key in one pass.

        Every row a fresh load inserts into a child table looks its parent up (SQLite's and
        InnoDB's per-row check: 4% of a SQLite load, 14% of the work MariaDB does for one). One
        join per key afterwards finds the same breakage, if any, for less. `models` must be every
        table the block writes: the check is what stands in for the per-row one. The tables to
        check are recorded in `ksi_migration_meta` first, so that a load stopped half way (whose
        batches are committed) is checked by the next run (`ensure_indexes`). Engines that cannot
        turn the check off for their connection alone (and PostgreSQL, which drops the keys for
        the load instead) check per row.
        """
        if not models or not self._defers_reference_checks():
            yield
            return
        self._record_references_to_check([model._meta.table_name for model in models])
        self._check_references_per_row(False)
        try:
            yield
        except BaseException:
            with suppress(Exception):  # a connection the server dropped comes back checking per row
                self._check_references_per_row(True)
            raise
        self._check_references_per_row(True)
        self._check_recorded_references()

    def _record_references_to_check(self, tables: list[str]) -> None:
        with self.database.atomic():
            MigrationMeta.delete().where(MigrationMeta.key == REFERENCES_KEY).execute(self.database)
            MigrationMeta.insert(key=REFERENCES_KEY, value=json.dumps(tables)).execute(self.database)

    def _check_recorded_references(self) -> None:
        """Check the keys of the tables a load recorded (`references_checked_after`), then forget them."""
        if not self.database.table_exists(MigrationMeta._meta.table_name):
            return
        recorded = MigrationMeta.select(MigrationMeta.value).where(MigrationMeta.key == REFERENCES_KEY)
        for (tables,) in list(recorded.tuples().execute(self.database)):
            for table in json.loads(tables):
                for reference in references_of_table(table):
                    self._refuse_broken_references(reference)
        MigrationMeta.delete().where(MigrationMeta.key == REFERENCES_KEY).execute(self.database)

    def _defers_reference_checks(self) -> bool:
        return False

    def _check_references_per_row(self, on: bool) -> None:
        raise NotImplementedError  # the engine's, when `_defers_reference_checks`

    def _refuse_broken_references(self, reference: Reference) -> None:
        """A row that names no parent through this key: what the engine's per-row check refuses.

        NOT EXISTS probes the parent's key per child row, as `orphans` does for the legacy rows a
        target lacks (that check follows the root alone; this one every declared key, a queue
        item's queue included)."""
        child, parent = pw.Table(reference.table).alias("child"), pw.Table(reference.parent)
        pairs = [
            (getattr(child.c, column), getattr(parent.c, parent_column))
            for column, parent_column in zip(reference.columns, reference.parent_columns, strict=True)
        ]
        named = reduce(operator.and_, [column == parent_column for column, parent_column in pairs])
        present = reduce(operator.and_, [column.is_null(False) for column, _ in pairs])
        missing = ~pw.fn.EXISTS(parent.select(pw.SQL("1")).where(named))
        broken = child.select(*[column for column, _ in pairs]).where(present & missing).limit(1)
        for values in broken.tuples().execute(self.database):
            cells = ", ".join(f"{column} = {value!r}" for column, value in zip(reference.columns, values, strict=True))
            raise BrokenReferences(
                f"{reference.table} ({cells}) names no row of {reference.parent}: the load is written, but a "
                f"foreign key does not hold; every command checks it again until the {reference.table} rows "
                f"that name no {reference.parent} row are deleted"
            )

    def loading_empty(self, model: type[pw.Model]) -> bool:
        """Whether this thread is loading `model`'s table empty (inside `indexes_built_after`)."""
        return model._meta.table_name in getattr(self._loading, "tables", ())

    def _drop_index(self, index: pw.ModelIndex) -> None:
        self.database.execute_sql(f"DROP INDEX {self.quoted(IndexParts.of(index).name)}")

    def _build_indexes(self, indexes: Sequence[pw.ModelIndex]) -> None:
        with self._index_build():
            for index in indexes:
                with _duplicates_named(IndexParts.of(index).name):
                    self.database.execute(self.index(index))

    @contextmanager
    def _index_build(self) -> Iterator[None]:
        """Settings for building indexes, restored afterwards."""
        yield

    # PostgreSQL checks a foreign key with a trigger per inserted row: a third of a 100k-session
    # load (measured: 28.0 s with them, 15.9 s without). Dropped for the load and added back after,
    # each is checked once, over the whole table, by one join. The definitions are recorded in
    # `ksi_migration_meta` first, so that a load stopped half way has them added by the next run.
    foreign_keys_after: ClassVar[bool] = False

    def _drop_foreign_keys(self, tables: Sequence[str]) -> None:
        found = self.database.execute_sql(FOREIGN_KEYS_SQL, (list(tables),)).fetchall()
        if not found:
            return
        with self.database.atomic():
            MigrationMeta.insert(key=FOREIGN_KEYS_KEY, value=json.dumps(found)).execute(self.database)
            for table, name, _ in found:
                self.database.execute_sql(f"ALTER TABLE {self.quoted(table)} DROP CONSTRAINT {self.quoted(name)}")

    def _add_foreign_keys(self) -> None:
        """Add back the foreign keys a load dropped (checking every row), and forget the record."""
        if not self.foreign_keys_after or not self.database.table_exists(MigrationMeta._meta.table_name):
            return
        recorded = MigrationMeta.select(MigrationMeta.value).where(MigrationMeta.key == FOREIGN_KEYS_KEY)
        for (record,) in list(recorded.tuples().execute(self.database)):
            with self.database.atomic():
                for table, name, definition in json.loads(record):
                    adding = f"ADD CONSTRAINT {self.quoted(name)} {definition}"
                    self.database.execute_sql(f"ALTER TABLE {self.quoted(table)} {adding}")
                MigrationMeta.delete().where(MigrationMeta.key == FOREIGN_KEYS_KEY).execute(self.database)


FOREIGN_KEYS_KEY = "foreign_keys_to_add"
REFERENCES_KEY = "references_to_check"
FOREIGN_KEYS_SQL = """
SELECT t.relname, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE c.contype = 'f' AND n.nspname = current_schema() AND t.relname = ANY(%s)
ORDER BY t.relname, c.conname
"""
"""PostgreSQL: the foreign keys of these tables of the current schema, each as (table, name, definition)."""


@contextmanager
def _duplicates_named(index_name: str) -> Iterator[None]:
    """A unique index the rows break, as `DuplicateKeys` naming it."""
    try:
        yield
    except pw.IntegrityError as exc:
        raise DuplicateKeys(
            f"{index_name}: the snapshot holds two rows with the same key, so the unique index "
            f"cannot be built ({exc}); the rest of the target is complete"
        ) from exc


# --- the text formats of COPY and LOAD DATA ------------------------------------------------------

NULL_FIELD = "\\N"


def _escaped(text: str) -> str:
    # The backslash first, so the escapes added after it are not doubled again.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _field_writer(true: str, false: str) -> Callable[[Any], str]:
    """One value as a field; booleans as the engine's own spelling (`t`/`f`, `1`/`0`)."""

    def field(value: Any) -> str:
        kind = value.__class__
        if kind is str:
            return _escaped(value)
        if value is None:
            return NULL_FIELD
        if kind is bool:
            return true if value else false
        if kind is int:
            return str(value)
        if kind is datetime:
            return value.isoformat(" ")  # what both servers' timestamp inputs read, microseconds kept
        raise TypeError(f"no bulk-load spelling for a {kind.__name__} value ({value!r})")

    return field


POSTGRESQL_FIELD = _field_writer("t", "f")
MYSQL_FIELD = _field_writer("1", "0")  # BOOL is TINYINT(1)


def lines(rows: Iterable[Sequence[Any]], field: Callable[[Any], str]) -> bytes:
    """The rows as UTF-8 lines of tab-separated fields, each line ended by a newline."""
    text = "".join(["\t".join(map(field, row)) + "\n" for row in rows])
    return text.encode("utf-8")  # a lone surrogate fails here, before anything is sent


def copy_statement(table: str, columns: Sequence[str]) -> str:
    """PostgreSQL's COPY of `lines` into these (already quoted) columns."""
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT text, ENCODING 'UTF8')"


LOCAL_FILE_NAME = "ksi-batch"
"""The file a LOAD DATA statement names. Nothing is read from it: `load_data` answers the
server's request for it with the batch's own lines, from memory."""


def load_data_statement(table: str, columns: Sequence[str]) -> str:
    """MySQL's LOAD DATA of `lines` into these (already quoted) columns.

    Every option is spelled out, so no server default (`character_set_database`, a site's
    `FIELDS` settings) changes how a line is read. With ENCLOSED BY empty, the word NULL is text.
    """
    return (
        f"LOAD DATA LOCAL INFILE '{LOCAL_FILE_NAME}' INTO TABLE {table} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' "
        f"LINES STARTING BY '' TERMINATED BY '\\n' ({', '.join(columns)})"
    )


DUPLICATE_KEY = 1062  # MySQL's ER_DUP_ENTRY
LOAD_PACKET_BYTES = 1 << 20
"""Bytes of lines a LOAD DATA packet carries, at most (less when the server's `max_allowed_packet`
is smaller). pymysql sends a file 16 KB at a time; each packet is a system call after which the
sending thread must take the GIL back, and while another thread of the run maps rows that took up
to 5 ms a packet (Python's switch interval), which starved the server."""


def load_data(
    database: pw.Database, table: str, columns: Sequence[str], data: bytes, rows: int, packet_bytes: int
) -> None:
    """MySQL's LOAD DATA LOCAL of `rows` rows, as `lines` made them, sent from memory.

    The server answers the statement by asking for the file it names, and may ask for any file:
    pymysql would send whichever it named while its connection's `_local_infile` is on. It is
    never on: the statement is sent here, and the request is answered with `data`, whatever file
    it names, so no file of this machine is read or written for a load. With LOCAL the server
    turns a duplicate key or a value it cannot store into a warning and skips the row: any
    warning is raised here, as the IntegrityError or DataError an INSERT would have raised, and
    the transaction rolls back.
    """
    connection = database.connection()
    connection._execute_command(COMMAND.COM_QUERY, load_data_statement(table, columns))
    request = connection._read_packet()  # an error packet (local_infile OFF, say) raises here
    if not request.is_load_local_packet():
        raise pw.OperationalError(f"LOAD DATA into {table}: the server did not ask for the rows")
    try:
        for start in range(0, len(data), packet_bytes):
            connection.write_packet(data[start : start + packet_bytes])
    finally:
        connection.write_packet(b"")  # the end of the rows, as the protocol asks even after a failure
    answer = OKPacketWrapper(connection._read_packet())
    connection.server_status = answer.server_status  # pymysql keeps it from each OK packet (autocommit)
    if answer.affected_rows != rows or answer.warning_count:
        problems = connection.show_warnings()[:3]
        error = pw.IntegrityError if any(code == DUPLICATE_KEY for _, code, _ in problems) else pw.DataError
        said = "; ".join(f"{code} {message}" for _, code, message in problems)
        raise error(f"LOAD DATA into {table} loaded {answer.affected_rows} of {rows} rows: {said}")


def load_packet_bytes(database: pw.Database) -> int:
    """`LOAD_PACKET_BYTES`, or less when the server's `max_allowed_packet` is smaller (a packet
    carries 4 bytes of header beside its payload)."""
    (allowed,) = database.execute_sql("SELECT @@SESSION.max_allowed_packet").fetchone()
    return min(LOAD_PACKET_BYTES, int(allowed) - 4)


def local_files_allowed(database: pw.Database) -> bool:
    """Whether LOAD DATA LOCAL can be used: through pymysql, on a server that allows it. When the
    server does not (`local_infile` OFF), the load falls back to multi-row INSERTs and says so."""
    driver = type(database.connection()).__module__
    allowed = driver.startswith("pymysql") and server_allows_local_files(database)
    if not allowed:
        logger.warning(
            "this MySQL server does not allow LOAD DATA LOCAL INFILE (local_infile is OFF), so empty tables "
            "are loaded with multi-row INSERTs, which is slower; `SET GLOBAL local_infile = 1` on the server "
            "enables the fast path"
        )
    return allowed


def server_allows_local_files(database: pw.Database) -> bool:
    return bool(database.execute_sql("SELECT @@GLOBAL.local_infile").fetchone()[0])


def add_indexes(database: pw.Database, table: str, indexes: Sequence[pw.ModelIndex]) -> None:
    """MySQL: these indexes of one table in one ALTER TABLE, which reads the table once for all of
    them (a CREATE INDEX each reads it once each). A table has one unique index at most."""
    if not indexes:
        return
    clauses = []
    for index, parts in ((index, IndexParts.of(index)) for index in indexes):
        sql, _ = database.get_sql_context().sql(index.safe(False)).query()
        _, _, columns = sql.partition(f" ON {table} ")  # `CREATE INDEX name ON table (columns)`: the columns
        name, _ = database.get_sql_context().sql(pw.Entity(parts.name)).query()
        clauses.append(f"ADD {'UNIQUE ' if parts.unique else ''}INDEX {name} {columns}")
    unique = [parts.name for parts in map(IndexParts.of, indexes) if parts.unique]
    with _duplicates_named(", ".join(unique) or table):
        database.execute_sql(f"ALTER TABLE {table} {', '.join(clauses)}")
