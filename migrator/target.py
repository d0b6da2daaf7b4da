"""Opening the relational target and creating or checking its schema.

A target is a SQLite file path or a database URL in `playhouse.db_url` form
(`sqlite:///path.db`, `postgresql://...`, `mysql://...`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import peewee as pw
from playhouse.db_url import parse as parse_url

from migrator import engines
from migrator.ddl import updated_schema
from migrator.errors import IncompatibleSchema, NotMigrated, RebuildError, TargetUnreachable
from migrator.legacy import LegacySchema
from migrator.models import ALL_MODELS, SCHEMA_VERSION, MigrationMeta, database_proxy
from migrator.private import create_file
from migrator.redaction import mask_secrets, mask_url, url_secrets
from migrator.relational import statement
from migrator.schema_migrations import STEPS, upgrade


def is_url(target: str) -> bool:
    return "://" in target


def local_path(text: str) -> str:
    """A file or folder argument (an argparse `type`, the CLI's and the gate's): a database URL
    there is a mistake, which would become a path named after the URL, password included. It is
    refused with the password masked (argparse and pytest print the message as it is)."""
    if is_url(text):
        raise argparse.ArgumentTypeError(f"expects a file or folder path, not a database URL: {mask_url(text)}")
    return text


MEMORY = ":memory:"  # SQLite's in-memory database: a name, never a file to create


def open_target(target: str | os.PathLike[str], *, must_exist: bool = False, read_only: bool = False) -> pw.Database:
    """Connect to a target and bind the models to it; `read_only` makes the engine refuse writes."""
    text = str(target)
    try:
        if is_url(text):
            if not read_only:
                _create_private_sqlite_file(text)
            database = engines.connect(text, read_only=read_only)
        elif text == MEMORY:
            database = pw.SqliteDatabase(MEMORY, pragmas=engines.SQLITE_PRAGMAS)
        else:
            path = Path(text)
            if (must_exist or read_only) and not path.is_file():
                raise TargetUnreachable(f"target database not found: {path}")
            if not path.parent.is_dir():
                raise TargetUnreachable(f"target folder does not exist: {path.parent}")
            if read_only:
                database = engines.sqlite_read_only(path)
            else:
                create_file(path, exist_ok=True)  # a new target is 0600 (its -wal and -shm take its mode)
                database = pw.SqliteDatabase(str(path), pragmas=engines.SQLITE_PRAGMAS)
        database.connect(reuse_if_open=True)
        if isinstance(database, pw.SqliteDatabase):
            # SQLite reads a file's header on the first statement, and a read-only connection
            # runs none on connect: read it here, so a file that is not a database is this
            # one-line refusal and not a DatabaseError in whatever the command does first.
            database.execute_sql("SELECT count(*) FROM sqlite_master")
    except TargetUnreachable:
        raise
    except Exception as exc:
        # Drivers may echo the connection's password (a libpq DSN, the arguments): masked.
        message = mask_secrets(_one_line(exc), url_secrets(text))
        raise TargetUnreachable(f"cannot open target {mask_url(text)}: {message}") from exc
    database_proxy.initialize(database)
    return database


def _one_line(exc: Exception) -> str:
    # Drivers explain connection failures over several lines; the CLI reports errors in one.
    return " ".join(str(exc).split())


def _create_private_sqlite_file(url: str) -> None:
    """A `sqlite:///` URL's new file is created 0600 first, as a path's is."""
    if engines.engine_for_url(url) is engines.SQLiteEngine:
        path = parse_url(url)["database"]
        if path and path != ":memory:" and not path.startswith("file:"):
            create_file(path, exist_ok=True)


@contextmanager
def target_database(
    target: str | os.PathLike[str], *, must_exist: bool = False, read_only: bool = False
) -> Iterator[pw.Database]:
    database = open_target(target, must_exist=must_exist, read_only=read_only)
    try:
        yield database
    finally:
        database.close()


def in_wal_mode_if_one_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """When the target is the source file itself (the one-file layout), put that file in WAL mode
    before the source is read: in rollback-journal mode the source's long read would hold every
    write of the same run out ("database is locked"). The file is the target, and written anyway;
    the mode stays with it, as `open_store` would set it."""
    text = str(target)
    if is_url(text) or not Path(text).is_file() or Path(text).resolve() != Path(source).resolve():
        return
    database = pw.SqliteDatabase(text, pragmas=engines.SQLITE_PRAGMAS)
    database.connect()
    database.close()


@contextmanager
def planning_database(target: str | os.PathLike[str]) -> Iterator[pw.Database]:
    """The target for a dry run, opened so that nothing can be written: read-only when it exists,
    and an empty in-memory database when a SQLite target does not exist yet (so none is created)."""
    text = str(target)
    exists = is_url(text) or Path(text).is_file()
    database = open_target(text, read_only=True) if exists else open_target(":memory:")
    try:
        yield database
    finally:
        database.close()


# --- schema -----------------------------------------------------------------------------------


def schema_version(database: pw.Database) -> int | None:
    if not database.table_exists(MigrationMeta._meta.table_name):
        return None
    row = MigrationMeta.get_or_none(MigrationMeta.key == "schema_version")
    return int(row.value) if row else None


def create_schema(database: pw.Database) -> None:
    """Create every table and index; idempotent. An older schema is upgraded in place with
    `playhouse.migrate` (migrator.schema_migrations); an unknown or newer one is refused."""
    version = schema_version(database)
    if version is not None and version != SCHEMA_VERSION:
        if version > SCHEMA_VERSION or version not in STEPS:
            raise IncompatibleSchema(
                f"target holds relational schema version {version}; this migrator writes version "
                f"{SCHEMA_VERSION} and has no migration from it"
            )
        upgrade(database, version, SCHEMA_VERSION, lambda new: set_meta(database, "schema_version", str(new)))
    with engines.engine(database).write_transaction():  # reads what exists, then creates
        engines.create_tables(database, ALL_MODELS)
        engines.engine(database).ensure_indexes(ALL_MODELS)
        set_meta(database, "schema_version", str(SCHEMA_VERSION))


def require_schema(database: pw.Database) -> None:
    version = schema_version(database)
    if version is None:
        raise NotMigrated("target holds no migrated data (no ksi_migration_meta table)")
    if version != SCHEMA_VERSION:
        hint = "; `ksi-migrate migrate` upgrades it" if version in STEPS and version < SCHEMA_VERSION else ""
        raise IncompatibleSchema(
            f"target holds relational schema version {version}; this migrator reads version {SCHEMA_VERSION}{hint}"
        )


# The store moves the recorded AUTOINCREMENT counter on every checkpoint save: both statements
# are built by peewee once per database (`relational.statement`), which took 0.14 ms a call.


def set_meta(database: pw.Database, key: str, value: str) -> None:
    def build() -> pw.Query:
        insert = MigrationMeta.insert({MigrationMeta.key: key, MigrationMeta.value: value})
        return engines.engine(database).upsert(insert, MigrationMeta.key, MigrationMeta.value)

    database.execute_sql(statement(database, "set meta", build), [key, value])  # the VALUES, in that order


def get_meta(database: pw.Database, key: str) -> str | None:
    sql = statement(
        database, "get meta", lambda: MigrationMeta.select(MigrationMeta.value).where(MigrationMeta.key == key)
    )
    row = database.execute_sql(sql, [key]).fetchone()
    return row[0] if row else None


def save_legacy_schema(database: pw.Database, schema: LegacySchema) -> None:
    """Remember the snapshot's own DDL, counters and encoding, so a rollback recreates the tables
    exactly: each table the snapshot holds as it is now, each other table as recorded before."""
    previous = load_legacy_schema(database)
    record_legacy_schema(database, updated_schema(previous, schema) if previous else schema)


def record_legacy_schema(database: pw.Database, schema: LegacySchema) -> None:
    """Write the legacy schema record as it is (the store moves a counter with this, on every save)."""
    set_meta(database, LEGACY_SCHEMA_KEY, json.dumps(asdict(schema)))


LEGACY_SCHEMA_KEY = "legacy_schema"


def load_legacy_schema(database: pw.Database) -> LegacySchema | None:
    """The recorded legacy schema; None when none was recorded. A record that cannot be read
    raises `RebuildError`: the rollback depends on it."""
    text = get_meta(database, LEGACY_SCHEMA_KEY)
    if text is None:
        return None
    try:
        record = json.loads(text)
        return LegacySchema(record["statements"], record["sequences"], record["encoding"], record["tables"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RebuildError(f"ksi_migration_meta.{LEGACY_SCHEMA_KEY} cannot be read: {exc!r}") from exc


CLEANUP_META_KEY = "legacy_cleanup"
"""Target metadata written when cleanup dropped the legacy tables: when, from where, which archive."""


def recorded_cleanup(database: pw.Database) -> dict | None:
    """What `cleanup` recorded in the target, or None when it never dropped legacy tables there."""
    text = get_meta(database, CLEANUP_META_KEY)
    return json.loads(text) if text else None
