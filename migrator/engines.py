"""What differs between the SQL engines a target can live on, kept in this one module.

The models, the SQL peewee generates from them and the whole mapping are one code path for
SQLite, PostgreSQL and MySQL/MariaDB. Whatever the engines disagree on in the *data* is settled
upstream, once for all of them: text an engine cannot hold stays escaped in JSON
(`codec.is_storable_text`), unique keys are digests (`codec.key_digest`), numbers beyond 64 bits
and legacy REAL cells are text. This module holds the few decisions peewee leaves to each engine:

* how to connect. MySQL: `utf8mb4` (its `utf8` has no 4-byte characters), strict SQL mode (a
  value a column cannot hold is an error, never silently cut), LONGTEXT for text (TEXT holds
  64 KiB) and DATETIME(6) (DATETIME drops the microseconds). PostgreSQL's TEXT, TIMESTAMP and
  BIGINT need no change.
* table options. MySQL: InnoDB, and a binary NO PAD collation, so that comparisons, lookups and
  GROUP BY tell "a" from "A" and from "a " (`utf8mb4_bin` is PAD SPACE: "a" = "a ").
* grouping by text. MySQL sorts and groups TEXT by its first `max_sort_length` bytes (1 KiB by
  default, and a larger value needs a larger sort buffer), so it groups by a SHA-256 of the text.
* indexes on text columns, which have no length bound. MySQL indexes TEXT only up to a prefix;
  a PostgreSQL btree refuses entries over ~2.7 kB, so text columns get hash indexes there
  (equality is all the plan's queries ask of them). Neither may carry a unique constraint.
* the bulk insert: psycopg2's `execute_values` for PostgreSQL; pymysql's `executemany`, which
  already rewrites the models' `INSERT ... VALUES (%s, ...)` into multi-row statements;
  SQLite's `executemany`, which runs in-process.
* namespaces: a scratch PostgreSQL schema or MySQL database, for the harness, the sign-off
  gate's latency checks and the benchmarks.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlparse, urlunparse

import peewee as pw
from playhouse.db_url import connect as connect_url
from playhouse.db_url import parse as parse_url
from playhouse.db_url import schemes

from migrator.errors import DuplicateKeys, UnsupportedEngine

try:  # the driver of PostgreSQL targets; absent when only SQLite or MySQL targets are used
    from psycopg2.extras import execute_values
except ImportError:  # pragma: no cover - depends on the installed extras
    execute_values = None

SQLITE, POSTGRESQL, MYSQL = "sqlite", "postgresql", "mysql"

TEXT_INDEX_PREFIX = 255
"""Characters of a text column a MySQL index covers (MySQL indexes TEXT only up to a prefix)."""

SQLITE_PRAGMAS = {"foreign_keys": 1, "journal_mode": "wal", "synchronous": "normal"}
MYSQL_OPTIONS: dict[str, Any] = {
    "charset": "utf8mb4",
    "sql_mode": "TRADITIONAL",  # strict for every table, no zero dates, no engine substitution
    "field_types": {"TEXT": "LONGTEXT", "DATETIME": "DATETIME(6)"},
}
MYSQL_NO_PAD_BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")  # MariaDB 10.2+, MySQL 8.0+
EXECUTE_VALUES_PAGE = 1000  # rows a statement; a backfill batch is 2000 legacy rows by default


def engine_of(database: pw.Database) -> str:
    """The engine family of a connected (or configured) peewee database."""
    if isinstance(database, pw.PostgresqlDatabase):
        return POSTGRESQL
    if isinstance(database, pw.MySQLDatabase):
        return MYSQL
    if isinstance(database, pw.SqliteDatabase):
        return SQLITE
    raise TypeError(f"unsupported database {type(database).__name__}")


def engine_of_url(url: str) -> str:
    """The engine family a `playhouse.db_url` URL names, without connecting."""
    scheme = urlparse(url).scheme
    database_class = schemes.get(scheme)
    if database_class is None:
        raise ValueError(f"unsupported database URL scheme {scheme!r}; use one of {', '.join(sorted(schemes))}")
    for family, base in ((POSTGRESQL, pw.PostgresqlDatabase), (MYSQL, pw.MySQLDatabase), (SQLITE, pw.SqliteDatabase)):
        if issubclass(database_class, base):
            return family
    raise ValueError(f"unsupported database URL scheme {scheme!r}")


# --- how values are stored ---------------------------------------------------------------------


def sqlite_datetime_text(value: datetime) -> str:
    """How a parsed timestamp copy is stored in SQLite (which has no datetime type): the text that
    Python's sqlite3 wrote by default before that default was deprecated (Python 3.12), so
    targets written by every version of this tool hold the same text."""
    return value.isoformat(" ")


sqlite3.register_adapter(datetime, sqlite_datetime_text)

Adapter = Callable[[Any], Any]


def _optional(adapt: Adapter) -> Adapter:
    return lambda value: None if value is None else adapt(value)


def stored_value_adapters(database: pw.Database, fields: Sequence[pw.Field]) -> list[Adapter | None]:
    """Per column, how a value the mapping makes comes back when the engine is read with plain
    SQL (None: unchanged), so that a row read from the target can be compared exactly, by type
    and value, with the row the mapping makes. SQLite keeps datetimes as text and booleans as
    0/1; MySQL keeps booleans as 0/1 (TINYINT); PostgreSQL hands both back as they were sent."""
    engine = engine_of(database)
    adapters: list[Adapter | None] = []
    for field in fields:
        if isinstance(field, pw.DateTimeField) and engine == SQLITE:
            adapters.append(_optional(sqlite_datetime_text))
        elif isinstance(field, pw.BooleanField) and engine != POSTGRESQL:
            adapters.append(_optional(int))
        else:
            adapters.append(None)
    return adapters


# --- connecting --------------------------------------------------------------------------------


READ_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    POSTGRESQL: {"options": "-c default_transaction_read_only=on"},  # libpq: for every transaction of the session
    MYSQL: {"init_command": "SET SESSION TRANSACTION READ ONLY"},  # run by pymysql on each new connection
}
"""Connection options that make the server refuse every write on the connection."""


def connect(url: str, *, read_only: bool = False) -> pw.Database:
    """A peewee database for a URL, configured for exact storage on its engine (not yet connected).

    `read_only` makes the server refuse writes on each of its connections (peewee opens one per
    thread); a SQLite URL opens its file as `open_target` does for a path.
    """
    engine = engine_of_url(url)
    options = _connect_options(engine)
    if read_only:
        given = parse_url(url)
        if engine == SQLITE:
            return sqlite_read_only(given["database"])
        for key, value in READ_ONLY_OPTIONS[engine].items():
            # PostgreSQL's `options` may already set the search_path (`url_in_namespace`): add to it.
            options[key] = f"{given[key]} {value}" if key == "options" and given.get(key) else value
    return connect_url(url, **options)


def sqlite_read_only(path: str | Path) -> pw.SqliteDatabase:
    """A SQLite file opened `mode=ro`: SQLite itself refuses every write, the WAL's included."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    return pw.SqliteDatabase(uri, uri=True, pragmas={"foreign_keys": 1})


def _connect_options(engine: str) -> dict[str, Any]:
    if engine == SQLITE:  # a `sqlite:///` URL opens the file as a path does
        return {"pragmas": SQLITE_PRAGMAS}
    return dict(MYSQL_OPTIONS) if engine == MYSQL else {}


def mysql_collation(database: pw.Database) -> str:
    """The binary NO PAD collation of utf8mb4 this MySQL or MariaDB server offers."""
    marks = ", ".join(["%s"] * len(MYSQL_NO_PAD_BINARY_COLLATIONS))
    cursor = database.execute_sql(
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


def write_transaction(database: pw.Database) -> AbstractContextManager[Any]:
    """A transaction that reads, then writes. SQLite's IMMEDIATE takes the write lock before the
    first read, so it waits for another writer (the busy timeout) instead of failing half way with
    SQLITE_BUSY: a read snapshot cannot be upgraded once another connection has committed."""
    return database.atomic("IMMEDIATE") if isinstance(database, pw.SqliteDatabase) else database.atomic()


# --- the schema --------------------------------------------------------------------------------


def create_tables(database: pw.Database, models: Sequence[type[pw.Model]]) -> None:
    """Create the tables that do not exist yet, each with its indexes adapted to the engine.

    A table that exists is left as it is: MySQL has no `CREATE INDEX IF NOT EXISTS`, so indexes
    are only created together with their table.
    """
    for model in pw.sort_models(models):
        if database.table_exists(model._meta.table_name):
            continue
        database.execute(_create_table_statement(database, model))
        for index in model._meta.fields_to_index():
            database.execute(engine_index(database, index).safe(database.safe_create_index))


def ensure_indexes(database: pw.Database, models: Sequence[type[pw.Model]]) -> None:
    """SQLite: create any index of these tables that is missing (`CREATE INDEX IF NOT EXISTS`), as
    after a bulk load that built them last (`indexes_built_after`) and was stopped before it could."""
    if engine_of(database) != SQLITE:
        return
    for model in pw.sort_models(models):
        if database.table_exists(model._meta.table_name):
            for index in model._meta.fields_to_index():
                database.execute(engine_index(database, index).safe(True))


def _create_table_statement(database: pw.Database, model: type[pw.Model]) -> pw.Context:
    statement = model._schema._create_table(safe=True)
    if engine_of(database) == MYSQL:
        collation = mysql_collation(database)
        statement.literal(f" ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE={collation}")
    return statement


def engine_index(database: pw.Database, index: pw.ModelIndex) -> pw.ModelIndex:
    """A model's index as this engine can hold it, with the same columns and uniqueness."""
    engine = engine_of(database)
    text_columns = [e for e in index._expressions if isinstance(e, pw.TextField)]
    if engine == SQLITE or not text_columns:
        return index
    if index._unique:  # a key column has a digest column for that (codec.key_digest)
        raise TypeError(f"{index._name}: a unique index over unbounded text cannot be exact on {engine}")
    if engine == POSTGRESQL:
        if len(index._expressions) > 1:
            raise TypeError(f"{index._name}: PostgreSQL hash indexes cover one column")
        return pw.ModelIndex(index._model, index._expressions, using="hash", name=index._name)
    expressions = [
        pw.NodeList((e, pw.SQL(f"({TEXT_INDEX_PREFIX})")), glue="") if isinstance(e, pw.TextField) else e
        for e in index._expressions
    ]
    return pw.ModelIndex(index._model, expressions, name=index._name)


def exact_group_key(database: pw.Database, text: pw.Field) -> pw.Node:
    """What to GROUP BY so that two text values share a group only when they are equal: MySQL
    compares only the first `max_sort_length` bytes of TEXT when it groups, so it groups by a
    SHA-256 of the whole text there."""
    return pw.fn.SHA2(text, 256) if engine_of(database) == MYSQL else text


def insert_or_update(database: pw.Database, query: pw.Insert, key: pw.Field, update: pw.Field) -> pw.Insert:
    """`query` that updates `update` when a row with its `key` exists: MySQL's ON DUPLICATE KEY
    names no conflict target, PostgreSQL's and SQLite's ON CONFLICT must."""
    if engine_of(database) == MYSQL:
        return query.on_conflict(preserve=[update])
    return query.on_conflict(conflict_target=[key], preserve=[update])


# --- the bulk insert ---------------------------------------------------------------------------


def bulk_insert(database: pw.Database, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Send many rows through one INSERT statement of the form `INSERT ... VALUES (%s, ...)`."""
    cursor = database.cursor()
    if _is_psycopg2(cursor):
        # psycopg2's executemany sends one statement a row; execute_values one a page of rows.
        head, separator, row_template = sql.rpartition(" VALUES ")
        execute_values(cursor, f"{head}{separator}%s", rows, template=row_template, page_size=EXECUTE_VALUES_PAGE)
    else:
        cursor.executemany(sql, rows)


def _is_psycopg2(cursor: Any) -> bool:
    # peewee may also drive PostgreSQL through psycopg 3, whose cursors execute_values cannot use.
    return execute_values is not None and type(cursor).__module__.startswith("psycopg2")


# --- namespaces --------------------------------------------------------------------------------

_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _check_namespace(name: str) -> str:
    if not _NAMESPACE.fullmatch(name):
        raise ValueError(f"namespace names are lower-case letters, digits and _, got {name!r}")
    return name


def url_in_namespace(url: str, name: str) -> str:
    """The URL of the same server with `name` as the namespace: MySQL's database, PostgreSQL's schema
    (through the connection's `search_path`, so every unqualified name resolves there; it replaces
    any `options` the URL had)."""
    parsed = urlparse(url)
    engine = engine_of_url(url)
    if engine == MYSQL:
        return urlunparse(parsed._replace(path=f"/{_check_namespace(name)}"))
    if engine == POSTGRESQL:
        query = [(k, v) for k, v in parse_qsl(parsed.query, keep_blank_values=True) if k != "options"]
        query.append(("options", f"-c search_path={_check_namespace(name)}"))
        return urlunparse(parsed._replace(query=urlencode(query)))
    raise ValueError(f"{engine} has no namespaces: use another file")


def current_namespace(database: pw.Database) -> str:
    """The schema (PostgreSQL) or database (MySQL) that unqualified table names resolve to."""
    function = "current_schema()" if engine_of(database) == POSTGRESQL else "DATABASE()"
    return database.execute_sql(f"SELECT {function}").fetchone()[0]


def create_namespace(database: pw.Database, name: str) -> None:
    keyword = "SCHEMA" if engine_of(database) == POSTGRESQL else "DATABASE"
    database.execute_sql(f"CREATE {keyword} {_quoted(database, _check_namespace(name))}")


def drop_namespace(database: pw.Database, name: str) -> None:
    if engine_of(database) == POSTGRESQL:
        database.execute_sql(f"DROP SCHEMA IF EXISTS {_quoted(database, _check_namespace(name))} CASCADE")
    else:
        database.execute_sql(f"DROP DATABASE IF EXISTS {_quoted(database, _check_namespace(name))}")


def _quoted(database: pw.Database, *names: str) -> str:
    sql, _ = database.get_sql_context().sql(pw.Entity(*names)).query()
    return sql


def copy_tables(database: pw.Database, models: Sequence[type[pw.Model]], source: str, destination: str) -> None:
    """Copy every row of these tables from one namespace to another of the same server; the
    destination tables must exist, with the same columns in the same order."""
    for model in pw.sort_models(models):
        table = model._meta.table_name
        database.execute_sql(
            f"INSERT INTO {_quoted(database, destination, table)} SELECT * FROM {_quoted(database, source, table)}"
        )


# --- bulk loads --------------------------------------------------------------------------------

BULK_CACHE_KIB = 64 * 1024
"""SQLite's page cache during a backfill. The default (2 MiB) is smaller than the indexes of a
million-row target, so inserts into them would go to disk; 64 MiB is a fixed bound, so memory
stays flat however large the snapshot is."""


@contextmanager
def indexes_built_after(database: pw.Database, models: Sequence[type[pw.Model]]) -> Iterator[None]:
    """SQLite: load these tables, empty so far, without their secondary indexes, then build them.

    Once an index outgrows the page cache, each insert into it (a random digest, a time) reads
    and writes pages all over the file; the time per row grows with the table (14x the time for
    10x the rows, measured). Built afterwards, an index is one sorted pass. The unique ones are
    checked then as well: the source's own primary key already makes their keys unique, and a
    duplicate fails the build with `DuplicateKeys`. Whatever happens, every index is built before
    this returns; a process killed half way leaves them to `ensure_indexes` on the next open.
    """
    if engine_of(database) != SQLITE or not models:
        yield
        return
    indexes = [index for model in models for index in model._meta.fields_to_index()]
    for index in indexes:
        database.execute_sql(f'DROP INDEX IF EXISTS "{index._name}"')
    try:
        yield
    finally:
        _build_indexes(database, indexes)


INDEX_BUILD_CACHE_KIB = 4 * 1024
"""SQLite's sorter holds up to a page cache's worth of keys in memory before it writes sorted runs
to a temporary file and merges them. Building the indexes of a 1M-session target, measured: a
64 MiB cache took 11.9 s and 137 MB more memory; 4 MiB took 6.9 s and 6 MB more."""


def _build_indexes(database: pw.Database, indexes: Sequence[pw.ModelIndex]) -> None:
    previous = database.cache_size
    database.cache_size = -INDEX_BUILD_CACHE_KIB
    try:
        for index in indexes:
            try:
                database.execute(engine_index(database, index).safe(True))
            except pw.IntegrityError as exc:
                raise DuplicateKeys(
                    f"{index._name}: the snapshot holds two rows with the same key, so the unique index "
                    f"cannot be built ({exc}); the rest of the target is complete"
                ) from exc
    finally:
        database.cache_size = previous


@contextmanager
def bulk_load(database: pw.Database) -> Iterator[None]:
    """Settings chosen for a long bulk load, restored afterwards (the target stays as it was)."""
    if not isinstance(database, pw.SqliteDatabase):
        yield
        return
    previous = database.cache_size
    database.cache_size = -BULK_CACHE_KIB  # negative: KiB rather than pages
    try:
        yield
    finally:
        database.cache_size = previous
