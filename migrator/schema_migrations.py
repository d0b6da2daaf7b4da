"""Schema evolution: one `playhouse.migrate` step from each version to the next.

`target.create_schema` runs the steps a target needs before it is used, in one transaction per
step, so a target made by an older release keeps its data and is brought up to date in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from migrator.codec import key_digest, stored_key
from migrator.errors import IncompatibleSchema

BATCH = 5000

# Version 2 moved each unique key from the key text to a digest column beside it, so that
# every engine can enforce it exactly, and stores keys no engine can hold (NUL, lone
# surrogates) in an escaped form. (table, key column, digest column, unique index columns)
V2_KEYS = (
    ("mcp_session", "session_key", "session_key_digest", ("session_key_digest",)),
    ("checkpoint_queue", "session_id", "session_id_digest", ("checkpoint_id", "session_id_digest")),
    ("checkpoint_request", "request_id", "request_id_digest", ("checkpoint_id", "request_id_digest")),
)


def _v1_to_v2(database: pw.Database) -> None:
    migrator = SchemaMigrator.from_database(database)
    for table, key_column, digest_column, unique_columns in V2_KEYS:
        old_unique = [
            index.name for index in database.get_indexes(table) if index.unique and key_column in index.columns
        ]
        migrate(
            *(migrator.drop_index(table, name) for name in old_unique),
            migrator.add_column(table, digest_column, pw.CharField(max_length=32, null=True)),
        )
        _fill_digests(database, table, key_column, digest_column)
        migrate(
            migrator.add_not_null(table, digest_column),
            migrator.add_index(table, unique_columns, unique=True),
        )


def _fill_digests(database: pw.Database, table: str, key_column: str, digest_column: str) -> None:
    """Rewrite each key in its stored form and record its digest, a batch of keys at a time."""
    rows = pw.Table(table, (key_column, digest_column)).bind(database)
    key, digest = getattr(rows, key_column), getattr(rows, digest_column)
    pending = rows.select(key).distinct().where(digest.is_null()).limit(BATCH)
    while keys := [row[key_column] for row in pending.dicts()]:
        for old in keys:
            stored = stored_key(old)
            rows.update({key: stored, digest: key_digest(stored)}).where((key == old) & digest.is_null()).execute()


def _v2_to_v3(database: pw.Database) -> None:
    """Version 3 gave each session an id of its own apart from its legacy rowid, so that a move
    changes the rowid alone (`models.McpSession`). Until then the id was the rowid, so the rowid
    column starts as a copy of it, and every tool keeps referencing its session's id unchanged."""
    migrator = SchemaMigrator.from_database(database)
    migrate(migrator.add_column("mcp_session", "legacy_rowid", pw.BigIntegerField(null=True)))
    sessions = pw.Table("mcp_session", ("id", "legacy_rowid")).bind(database)
    own_id, rowid = (getattr(sessions, column) for column in ("id", "legacy_rowid"))
    sessions.update({rowid: own_id}).execute()
    migrate(
        migrator.add_not_null("mcp_session", "legacy_rowid"),
        migrator.add_index("mcp_session", ("legacy_rowid",), unique=True),
    )


# Version 4 dropped the index on each child table's parent reference: the child's primary key
# starts with that reference, and its index serves the same lookups. (table, reference column)
V4_REDUNDANT = (
    ("checkpoint_queue", "checkpoint_id"),
    ("checkpoint_queue_item", "checkpoint_id"),
    ("checkpoint_request", "checkpoint_id"),
    ("mcp_session_tool", "session_id"),
)


def _v3_to_v4(database: pw.Database) -> None:
    migrator = SchemaMigrator.from_database(database)
    for table, column in V4_REDUNDANT:
        # By columns, not by name: whatever an engine or an earlier load called it.
        indexes = database.get_indexes(table)
        redundant = [index.name for index in indexes if index.columns == [column] and not index.unique]
        migrate(*(migrator.drop_index(table, name) for name in redundant))


STEPS: dict[int, Callable[[pw.Database], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
"""The step that takes a target from version N to N + 1."""


@contextmanager
def foreign_keys_suspended(database: pw.Database) -> Iterator[None]:
    """SQLite changes a column by copying the table and dropping the old one; with foreign keys
    enforced, that drop would cascade and delete every child row. SQLite's own procedure for
    schema changes is to suspend enforcement (outside any transaction), then check the keys."""
    if not isinstance(database, pw.SqliteDatabase):
        yield
        return
    database.pragma("foreign_keys", 0)
    try:
        yield
        broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise IncompatibleSchema(f"schema upgrade left {len(broken)} rows without their parent row")
    finally:
        database.pragma("foreign_keys", 1)


def upgrade(database: pw.Database, version: int, to_version: int, record: Callable[[int], None]) -> None:
    """Run every step from `version` up to `to_version`, each in its own transaction together
    with `record(new_version)`, so an interrupted upgrade resumes at the step it stopped in."""
    with foreign_keys_suspended(database):
        for step_from in range(version, to_version):
            with database.atomic():
                STEPS[step_from](database)
                record(step_from + 1)
