"""What differs between the SQL engines a target can live on: one object per engine.

The models, the SQL peewee generates from them and the whole mapping are one code path for
SQLite, PostgreSQL and MySQL/MariaDB. Whatever the engines disagree on in the *data* is settled
upstream, once for all of them: text an engine cannot hold stays escaped in JSON
(`codec.is_storable_text`), unique keys are digests (`codec.key_digest`), numbers beyond 64 bits
and legacy REAL cells are text. What peewee leaves to each engine lives in one `Engine` subclass
per engine, chosen once from the database (`engine(database)`, or `engine_for_url(url)` before
connecting), in the manner of `playhouse.migrate.SchemaMigrator.from_database`:

* how to connect, and to refuse writes. MySQL: `utf8mb4` (its `utf8` has no 4-byte characters),
  strict SQL mode (a value a column cannot hold is an error, never silently cut), LONGTEXT for
  text (TEXT holds 64 KiB) and DATETIME(6) (DATETIME drops the microseconds). PostgreSQL's TEXT,
  TIMESTAMP and BIGINT need no change.
* table options. MySQL: InnoDB, and a binary NO PAD collation, so that comparisons, lookups and
  GROUP BY tell "a" from "A" and from "a " (`utf8mb4_bin` is PAD SPACE: "a" = "a ").
* grouping by text. MySQL sorts and groups TEXT by its first `max_sort_length` bytes (1 KiB by
  default, and a larger value needs a larger sort buffer), so it groups by a SHA-256 of the text.
* indexes on text columns, which have no length bound. MySQL indexes TEXT only up to a prefix;
  a PostgreSQL btree refuses entries over ~2.7 kB, so there a text column's index is a btree on
  the MD5 of its value (as a uuid: 16 bytes), and an equality asks through it (`text_equals`):
  equal digests, then equal text, so a digest collision can never merge two values. (A hash
  index, as before, builds in time quadratic in the rows sharing one value: `tool_name` holds a
  few dozen names.) Neither may carry a unique constraint.
* the bulk insert: psycopg2's `execute_values` for PostgreSQL; pymysql's `executemany`, which
  already rewrites the models' `INSERT ... VALUES (%s, ...)` into multi-row statements;
  SQLite's `executemany`, which runs in-process. Tables loaded empty (`indexes_built_after`) get
  their secondary indexes built after the load on every engine, and the servers' native loaders
  (`COPY ... FROM STDIN`, `LOAD DATA LOCAL INFILE`; `migrator/loading.py`).
* how a value comes back when read with plain SQL (for the forward check).
* namespaces: a PostgreSQL schema or a MySQL database, for the harness, the sign-off gate's
  latency checks and the benchmarks.
"""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, quote, urlencode, urlparse, urlunparse

import peewee as pw
from playhouse.db_url import connect as connect_url
from playhouse.db_url import parse as parse_url
from playhouse.db_url import schemes

from migrator import loading
from migrator.errors import UnsupportedEngine
from migrator.loading import EmptyTableLoads
from migrator.peewee_parts import IndexParts, sort_models

try:  # the driver of PostgreSQL targets; absent when only SQLite or MySQL targets are used
    from psycopg2.extras import execute_values
except ImportError:  # pragma: no cover - depends on the installed extras
    execute_values = None

SQLITE, POSTGRESQL, MYSQL = "sqlite", "postgresql", "mysql"

Adapter = Callable[[Any], Any]
_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def sqlite_datetime_text(value: datetime) -> str:
    """How a parsed timestamp copy is stored in SQLite (which has no datetime type): the text that
    Python's sqlite3 wrote by default before that default was deprecated (Python 3.12), so
    targets written by every version of this tool hold the same text."""
    return value.isoformat(" ")


sqlite3.register_adapter(datetime, sqlite_datetime_text)


def _optional(adapt: Adapter) -> Adapter:
    return lambda value: None if value is None else adapt(value)


class Engine(EmptyTableLoads):
    """What one engine does its own way, for one database (`engine(database)`)."""

    name: ClassVar[str]
    database_class: ClassVar[type[pw.Database]]
    connect_options: ClassVar[dict[str, Any]] = {}
    read_only_options: ClassVar[dict[str, str]] = {}
    namespace_keyword: ClassVar[str | None] = None  # what CREATE makes a namespace of: SCHEMA, DATABASE

    def __init__(self, database: pw.Database) -> None:
        self.database = database
        super().__init__()

    # --- connecting

    @classmethod
    def connect(cls, url: str, *, read_only: bool = False) -> pw.Database:
        """A peewee database for a URL, configured for exact storage (not yet connected);
        `read_only` makes the server refuse writes on each of its connections."""
        options = dict(cls.connect_options)
        if read_only:
            given = parse_url(url)
            for key, value in cls.read_only_options.items():
                # PostgreSQL's `options` may already set the search_path (`namespace_url`): add to it.
                options[key] = f"{given[key]} {value}" if key == "options" and given.get(key) else value
        return connect_url(url, **options)

    def write_transaction(self) -> AbstractContextManager[Any]:
        """A transaction that reads, then writes."""
        return self.database.atomic()

    # --- the schema

    def create_table_statement(self, model: type[pw.Model]) -> pw.Context:
        return model._schema._create_table(safe=True)  # type: ignore[attr-defined]  # peewee's, not in its stubs

    def index(self, index: pw.ModelIndex) -> pw.ModelIndex:
        """A model's index as this engine can hold it, with the same columns and uniqueness."""
        return index

    def index_columns(self, found: pw.IndexMetadata) -> list[str]:
        """The columns an index of the database covers, as `index` made it for this engine."""
        return list(found.columns)

    def _text_columns_of(self, index: pw.ModelIndex) -> list[pw.Field]:
        parts = IndexParts.of(index)
        text_columns: list[pw.Field] = [e for e in parts.expressions if isinstance(e, pw.TextField)]
        if text_columns and parts.unique:  # a key column has a digest column for that (codec.key_digest)
            raise TypeError(f"{parts.name}: a unique index over unbounded text cannot be exact on {self.name}")
        return text_columns

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Settings chosen for a long bulk load, restored afterwards."""
        yield

    def tune_for_saves(self) -> None:
        """Settings for a store's connections, which write one daemon save at a time."""

    def loads_lines(self) -> bool:
        """Whether tables loaded empty take `loading.lines` through the engine's native loader."""
        return False

    def load_lines(self, fields: Sequence[pw.Field], data: bytes, rows: int) -> None:
        """Load `rows` rows of these columns into a table loaded empty, as `loading.lines` made them."""
        raise NotImplementedError(f"{self.name} has no native loader of text lines")

    # --- queries

    def text_equals(self, column: pw.Field, value: str) -> pw.Expression:
        """`column = value` for a text column, written so that the column's index (`index`) serves it."""
        return column == value

    def group_key(self, text: pw.Field) -> pw.Node:
        """What to GROUP BY so that two text values share a group only when they are equal."""
        return text

    def upsert(self, query: pw.Insert, key: pw.Field, update: pw.Field) -> pw.Insert:
        """`query` that updates `update` when a row with its `key` exists (ON CONFLICT names its target)."""
        return query.on_conflict(conflict_target=[key], preserve=[update])

    def bulk_insert(self, sql: str, rows: Sequence[tuple[Any, ...]], fields: Sequence[pw.Field] = ()) -> None:
        """Send many rows through one INSERT statement of the form `INSERT ... VALUES (%s, ...)`, or,
        when `fields` name the columns of a table this thread loads empty, the native loader."""
        if fields and self.loading_empty(fields[0].model) and self.loads_lines():
            # Rows as text lines, parsed by the server's own loader: no SQL per row.
            self.load_lines(fields, loading.lines(rows, LINE_FIELDS[self.name]), len(rows))
        else:
            self._insert_many(sql, rows)

    def _insert_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """`bulk_insert` through the SQL statement."""
        self.database.cursor().executemany(sql, rows)

    def _columns(self, fields: Sequence[pw.Field]) -> tuple[str, list[str]]:
        """The quoted table and column names of these fields (all of one model)."""
        return self.quoted(fields[0].model._meta.table_name), [self.quoted(f.column_name) for f in fields]

    def stored_value_adapters(self, fields: Sequence[pw.Field]) -> list[Adapter | None]:
        """Per column, how a value the mapping makes comes back when the engine is read with plain
        SQL (None: unchanged), so that a row read from the target compares exactly, by type and
        value, with the row the mapping makes."""
        return [None for _ in fields]

    # --- namespaces (a schema or a database of the same server)

    @classmethod
    def namespace_url(cls, url: str, name: str) -> str:
        """The URL of the same server with `name` as the namespace."""
        raise ValueError(f"{cls.name} has no namespaces: use another file")

    def current_namespace(self) -> str:
        raise ValueError(f"{self.name} has no namespaces")

    def create_namespace(self, name: str) -> None:
        self.database.execute_sql(f"CREATE {self.namespace_keyword} {self.quoted(check_namespace(name))}")

    def drop_namespace(self, name: str) -> None:
        self.database.execute_sql(f"DROP {self.namespace_keyword} IF EXISTS {self.quoted(check_namespace(name))}")

    def quoted(self, *names: str) -> str:
        sql, _ = self.database.get_sql_context().sql(pw.Entity(*names)).query()
        return sql


def check_namespace(name: str) -> str:
    if not _NAMESPACE.fullmatch(name):
        raise ValueError(f"namespace names are lower-case letters, digits and _, got {name!r}")
    return name


# --- SQLite ------------------------------------------------------------------------------------

SQLITE_PRAGMAS = {"foreign_keys": 1, "journal_mode": "wal", "synchronous": "normal"}

BULK_CACHE_KIB = 64 * 1024
"""SQLite's page cache during a backfill. The default (2 MiB) is smaller than the indexes of a
million-row target, so inserts into them would go to disk; 64 MiB is a fixed bound, so memory
stays flat however large the snapshot is."""

SAVE_PRAGMAS = {"temp_store": "memory"}
"""A store's own connections only. A save in `dual_write` mirrors its rows in a savepoint inside
the legacy write's transaction, so that a failed mirror leaves the legacy row committed; SQLite
keeps the original of every page the savepoint changes in a sub-journal, a temporary file once it
passes 64 KiB. For the largest checkpoint of the benchmark that was some 80 pages a save, 160
small writes to a file that is thrown away at the commit; in memory it is bounded by the pages
one save changes. Not for a backfill: its index builds sort through temporary files, which keep
its memory flat (`INDEX_BUILD_CACHE_KIB`)."""
TEMP_STORE_MEMORY = 2  # what `PRAGMA temp_store` reads back for "memory"

INDEX_BUILD_CACHE_KIB = 4 * 1024
"""SQLite's sorter holds up to a page cache's worth of keys in memory before it writes sorted runs
to a temporary file and merges them. Building the indexes of a 1M-session target, measured: a
64 MiB cache took 11.9 s and 137 MB more memory; 4 MiB took 6.9 s and 6 MB more."""


class SQLiteEngine(Engine):
    name = SQLITE
    database_class = pw.SqliteDatabase
    connect_options: ClassVar[dict[str, Any]] = {"pragmas": SQLITE_PRAGMAS}  # a `sqlite:///` URL, as a path

    @classmethod
    def connect(cls, url: str, *, read_only: bool = False) -> pw.Database:
        return sqlite_read_only(parse_url(url)["database"]) if read_only else super().connect(url)

    def write_transaction(self) -> AbstractContextManager[Any]:
        # IMMEDIATE takes the write lock before the first read, so it waits for another writer (the
        # busy timeout) instead of failing half way with SQLITE_BUSY: a read snapshot cannot be
        # upgraded once another connection has committed.
        return self.database.atomic("IMMEDIATE")

    def _drop_index(self, index: pw.ModelIndex) -> None:
        self.database.execute_sql(f"DROP INDEX IF EXISTS {self.quoted(IndexParts.of(index).name)}")

    def _defers_reference_checks(self) -> bool:
        return not self.database.in_transaction()  # SQLite ignores the pragma inside a transaction

    def _check_references_per_row(self, on: bool) -> None:
        cast(pw.SqliteDatabase, self.database).pragma("foreign_keys", int(on))

    @contextmanager
    def _index_build(self) -> Iterator[None]:
        with self._cache_size(INDEX_BUILD_CACHE_KIB), self._sorts_in_files():
            yield

    @contextmanager
    def _sorts_in_files(self) -> Iterator[None]:
        """An index build's sort spills to temporary files, even on a store's connection
        (`SAVE_PRAGMAS`), whose catch-up into empty tables builds the indexes after its load.
        SQLite refuses the switch inside a transaction (a schema upgrade's), where it stays as it is."""
        database = cast(pw.SqliteDatabase, self.database)
        previous = database.pragma("temp_store")
        if previous != TEMP_STORE_MEMORY or database.in_transaction():
            yield
            return
        database.pragma("temp_store", "file")
        try:
            yield
        finally:
            database.pragma("temp_store", previous)

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        with self._cache_size(BULK_CACHE_KIB):
            yield

    def tune_for_saves(self) -> None:
        database = cast(pw.SqliteDatabase, self.database)
        for name, value in SAVE_PRAGMAS.items():
            database.pragma(name, value, permanent=True)  # every connection, from now on

    @contextmanager
    def _cache_size(self, kib: int) -> Iterator[None]:
        database = cast(pw.SqliteDatabase, self.database)
        previous = database.cache_size
        database.cache_size = -kib  # negative: KiB rather than pages
        try:
            yield
        finally:
            database.cache_size = previous

    def stored_value_adapters(self, fields: Sequence[pw.Field]) -> list[Adapter | None]:
        # SQLite keeps datetimes as text and booleans as 0/1.
        as_text, as_number = _optional(sqlite_datetime_text), _optional(int)
        return [
            as_text if isinstance(f, pw.DateTimeField) else as_number if isinstance(f, pw.BooleanField) else None
            for f in fields
        ]


def sqlite_read_only(path: str | Path) -> pw.SqliteDatabase:
    """A SQLite file opened `mode=ro`: SQLite itself refuses every write, the WAL's included."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    return pw.SqliteDatabase(uri, uri=True, pragmas={"foreign_keys": 1})


# --- PostgreSQL --------------------------------------------------------------------------------

EXECUTE_VALUES_PAGE = 1000  # rows a statement; a backfill batch is batching.DEFAULT_BATCH_SIZE legacy rows
COPY_CHUNK = 1 << 20  # bytes a COPY message carries (psycopg2 sends 8 KiB by default)


def _text_key(text: pw.Node | str) -> pw.Node:
    """What a PostgreSQL index on a text column holds: a fixed 16 bytes, however long the text."""
    return pw.fn.md5(text).cast("uuid")


_TEXT_KEY_DESCRIBED = re.compile(r"\(md5\((\w+)\)::uuid\)")
"""How PostgreSQL describes an index key `_text_key` made (`pg_get_indexdef`, peewee's `get_indexes`)."""


def _covered_column(described: str) -> str:
    """The column an index key covers: itself, or the text column of a `_text_key`."""
    match = _TEXT_KEY_DESCRIBED.fullmatch(described)
    return match.group(1) if match else described


class PostgreSQLEngine(Engine):
    name = POSTGRESQL
    database_class = pw.PostgresqlDatabase
    read_only_options: ClassVar[dict[str, str]] = {"options": "-c default_transaction_read_only=on"}  # libpq
    namespace_keyword = "SCHEMA"
    foreign_keys_after = True

    def index(self, index: pw.ModelIndex) -> pw.ModelIndex:
        if not self._text_columns_of(index):
            return index
        parts = IndexParts.of(index)
        keys = [_text_key(e) if isinstance(e, pw.TextField) else e for e in parts.expressions]
        return pw.ModelIndex(parts.model, keys, name=parts.name)

    def text_equals(self, column: pw.Field, value: str) -> pw.Expression:
        # The digest finds the rows through the index; the text itself decides, exactly.
        return (_text_key(column) == _text_key(value)) & (column == value)

    def index_columns(self, found: pw.IndexMetadata) -> list[str]:
        return [_covered_column(column) for column in found.columns]

    def _insert_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        cursor = self.database.cursor()
        if not self._through_psycopg2(cursor):
            cursor.executemany(sql, rows)
            return
        # psycopg2's executemany sends one statement a row; execute_values one a page of rows.
        head, separator, row_template = sql.rpartition(" VALUES ")
        execute_values(cursor, f"{head}{separator}%s", rows, template=row_template, page_size=EXECUTE_VALUES_PAGE)

    def loads_lines(self) -> bool:  # COPY, through psycopg2's copy_expert
        return self._through_psycopg2(self.database.cursor())

    @staticmethod
    def _through_psycopg2(cursor: Any) -> bool:
        # peewee may also drive PostgreSQL through psycopg 3, whose cursors psycopg2's helpers cannot use.
        return execute_values is not None and type(cursor).__module__.startswith("psycopg2")

    def load_lines(self, fields: Sequence[pw.Field], data: bytes, rows: int) -> None:
        cursor = self.database.cursor()
        cursor.copy_expert(loading.copy_statement(*self._columns(fields)), io.BytesIO(data), COPY_CHUNK)

    @classmethod
    def namespace_url(cls, url: str, name: str) -> str:
        # Through the connection's search_path, so every unqualified name resolves there; it
        # replaces any `options` the URL had.
        parsed = urlparse(url)
        query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True) if k != "options"]
        query.append(("options", f"-c search_path={check_namespace(name)}"))
        return urlunparse(parsed._replace(query=urlencode(query)))

    def current_namespace(self) -> str:
        return self.database.execute_sql("SELECT current_schema()").fetchone()[0]

    def drop_namespace(self, name: str) -> None:
        self.database.execute_sql(f"DROP SCHEMA IF EXISTS {self.quoted(check_namespace(name))} CASCADE")


# --- MySQL and MariaDB -------------------------------------------------------------------------

TEXT_INDEX_PREFIX = 255
"""Characters of a text column a MySQL index covers (MySQL indexes TEXT only up to a prefix)."""
MYSQL_NO_PAD_BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")  # MariaDB 10.2+, MySQL 8.0+
LOCAL_FILES = 128  # the client capability flag CLIENT_LOCAL_FILES of the MySQL protocol


class MySQLEngine(Engine):
    name = MYSQL
    database_class = pw.MySQLDatabase
    connect_options: ClassVar[dict[str, Any]] = {
        "charset": "utf8mb4",
        "sql_mode": "TRADITIONAL",  # strict for every table, no zero dates, no engine substitution
        "field_types": {"TEXT": "LONGTEXT", "DATETIME": "DATETIME(6)"},
        "client_flag": LOCAL_FILES,  # what LOAD DATA LOCAL needs; `loading.load_data` says why it is safe
    }
    read_only_options: ClassVar[dict[str, str]] = {"init_command": "SET SESSION TRANSACTION READ ONLY"}
    namespace_keyword = "DATABASE"

    @classmethod
    def connect(cls, url: str, *, read_only: bool = False) -> pw.Database:
        database = super().connect(url, read_only=read_only)
        # playhouse.db_url still hands pymysql the password as `passwd`, which pymysql deprecates:
        # a gate run would end with a warning for every connection it made.
        if "passwd" in database.connect_params:
            database.connect_params["password"] = database.connect_params.pop("passwd")
        return database

    def __init__(self, database: pw.Database) -> None:
        super().__init__(database)
        self._local_files: bool | None = None  # whether LOAD DATA LOCAL is allowed, once asked
        self._packet_bytes: int | None = None  # what a LOAD DATA packet carries, once asked

    def collation(self) -> str:
        """The binary NO PAD collation of utf8mb4 this MySQL or MariaDB server offers."""
        marks = ", ".join(["%s"] * len(MYSQL_NO_PAD_BINARY_COLLATIONS))
        cursor = self.database.execute_sql(
            f"SELECT collation_name FROM information_schema.collations WHERE collation_name IN ({marks})",
            MYSQL_NO_PAD_BINARY_COLLATIONS,
        )
        offered = {name for (name,) in cursor.fetchall()}
        for name in MYSQL_NO_PAD_BINARY_COLLATIONS:
            if name in offered:
                return name
        raise UnsupportedEngine(
            "this MySQL server has no binary NO PAD utf8mb4 collation (one of "
            f"{', '.join(MYSQL_NO_PAD_BINARY_COLLATIONS)}): use MariaDB 10.2+ or MySQL 8.0+"
        )

    def create_table_statement(self, model: type[pw.Model]) -> pw.Context:
        statement = super().create_table_statement(model)
        statement.literal(f" ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE={self.collation()}")
        return statement

    def index(self, index: pw.ModelIndex) -> pw.ModelIndex:
        if not self._text_columns_of(index):
            return index
        parts = IndexParts.of(index)
        expressions = [
            pw.NodeList((e, pw.SQL(f"({TEXT_INDEX_PREFIX})")), glue="") if isinstance(e, pw.TextField) else e
            for e in parts.expressions
        ]
        return pw.ModelIndex(parts.model, expressions, name=parts.name)

    def _drop_index(self, index: pw.ModelIndex) -> None:
        parts = IndexParts.of(index)
        self.database.execute_sql(
            f"DROP INDEX {self.quoted(parts.name)} ON {self.quoted(parts.model._meta.table_name)}"
        )

    def loads_lines(self) -> bool:  # LOAD DATA LOCAL, where the server allows it
        return self._loads_local_files()

    def load_lines(self, fields: Sequence[pw.Field], data: bytes, rows: int) -> None:
        if self._packet_bytes is None:  # asked once per database
            self._packet_bytes = loading.load_packet_bytes(self.database)
        loading.load_data(self.database, *self._columns(fields), data, rows, self._packet_bytes)

    def _defers_reference_checks(self) -> bool:
        return True

    def _check_references_per_row(self, on: bool) -> None:
        self.database.execute_sql(f"SET SESSION foreign_key_checks = {int(on)}")

    def _loads_local_files(self) -> bool:
        if self._local_files is None:  # asked once per database
            self._local_files = loading.local_files_allowed(self.database)
        return self._local_files

    def _build_indexes(self, indexes: Sequence[pw.ModelIndex]) -> None:
        for model in dict.fromkeys(IndexParts.of(index).model for index in indexes):  # one ALTER a table, in order
            adapted = [self.index(index) for index in indexes if IndexParts.of(index).model is model]
            loading.add_indexes(self.database, self.quoted(model._meta.table_name), adapted)

    def group_key(self, text: pw.Field) -> pw.Node:
        # MySQL compares only the first `max_sort_length` bytes of TEXT when it groups.
        return pw.fn.SHA2(text, 256)

    def upsert(self, query: pw.Insert, key: pw.Field, update: pw.Field) -> pw.Insert:
        return query.on_conflict(preserve=[update])  # ON DUPLICATE KEY names no conflict target

    def stored_value_adapters(self, fields: Sequence[pw.Field]) -> list[Adapter | None]:
        return [_optional(int) if isinstance(f, pw.BooleanField) else None for f in fields]  # BOOL is TINYINT

    @classmethod
    def namespace_url(cls, url: str, name: str) -> str:
        return urlunparse(urlparse(url)._replace(path=f"/{check_namespace(name)}"))

    def current_namespace(self) -> str:
        return self.database.execute_sql("SELECT DATABASE()").fetchone()[0]


# --- choosing ----------------------------------------------------------------------------------

LINE_FIELDS = {POSTGRESQL: loading.POSTGRESQL_FIELD, MYSQL: loading.MYSQL_FIELD}
"""How each engine with a loader of text lines spells a value in them (`loading.lines`), by name:
a worker that stages lines (`staging.LineStaging`) is handed the name, which pickles."""

ENGINES: tuple[type[Engine], ...] = (PostgreSQLEngine, MySQLEngine, SQLiteEngine)
_BOUND_ENGINE = "_ksi_engine"
"""The attribute of a database that holds its engine. An engine refers to its database, so a
registry keyed by the database (even a `WeakKeyDictionary`) would keep every database alive for
good; held by the database itself, the two are one cycle, which the collector frees together."""


def engine(database: pw.Database) -> Engine:
    """The engine of a connected (or configured) peewee database, chosen once per database."""
    bound: Engine | None = getattr(database, _BOUND_ENGINE, None)
    if bound is None:
        kind = next((kind for kind in ENGINES if isinstance(database, kind.database_class)), None)
        if kind is None:
            raise TypeError(f"unsupported database {type(database).__name__}")
        bound = kind(database)
        setattr(database, _BOUND_ENGINE, bound)
    return bound


def engine_for_url(url: str) -> type[Engine]:
    """The engine a `playhouse.db_url` URL names, without connecting."""
    scheme = urlparse(url).scheme
    database_class = schemes.get(scheme)
    if database_class is None:
        raise ValueError(f"unsupported database URL scheme {scheme!r}; use one of {', '.join(sorted(schemes))}")
    for kind in ENGINES:
        if issubclass(database_class, kind.database_class):
            return kind
    raise ValueError(f"unsupported database URL scheme {scheme!r}")


def connect(url: str, *, read_only: bool = False) -> pw.Database:
    """A peewee database for a URL, configured for exact storage on its engine (not yet connected)."""
    return engine_for_url(url).connect(url, read_only=read_only)


def create_tables(database: pw.Database, models: Sequence[type[pw.Model]]) -> None:
    """Create the tables that do not exist yet, each with its indexes adapted to the engine.

    A table that exists is left as it is: MySQL has no `CREATE INDEX IF NOT EXISTS`, so indexes
    are only created together with their table.
    """
    chosen = engine(database)
    for model in sort_models(models):
        if database.table_exists(model._meta.table_name):
            continue
        database.execute(chosen.create_table_statement(model))
        for index in model._meta.fields_to_index():
            database.execute(chosen.index(index).safe(database.safe_create_index))
