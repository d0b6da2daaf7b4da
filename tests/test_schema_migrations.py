"""Schema evolution with playhouse.migrate: a target of any earlier version is upgraded in place,
keeps every row, and verifies exact afterwards."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import peewee as pw
import pytest
from playhouse.migrate import SchemaMigrator, migrate

from migrator.backfill import backfill
from migrator.errors import IncompatibleSchema
from migrator.legacy import LegacySource
from migrator.models import ALL_MODELS, SCHEMA_VERSION, McpSession, McpSessionTool
from migrator.schema_migrations import V2_KEYS, V4_REDUNDANT, foreign_keys_suspended
from migrator.target import create_schema, require_schema, schema_version, set_meta, target_database
from migrator.verify import verify
from tests.conftest import SnapshotFactory
from verification.snapshots import checkpoint_row, session_row

NUL_KEY = "agent:conv\x00tail"
CHECKPOINT = {"session_queues": {"s1": [], "s2": {"items": []}}, "active_completions": {"r1": {}, "r2": {}}}


def _downgrade_to_version_2(database: pw.Database) -> None:
    """The target as release 2 left it: a session's id is its legacy rowid, no column apart."""
    migrator = SchemaMigrator.from_database(database)
    assert not McpSession.select().where(McpSession.id != McpSession.legacy_rowid).exists()  # as a first load gives
    unique = [index.name for index in database.get_indexes("mcp_session") if "legacy_rowid" in index.columns]
    with foreign_keys_suspended(database):
        migrate(
            *(migrator.drop_index("mcp_session", name) for name in unique),
            migrator.drop_column("mcp_session", "legacy_rowid"),
        )
    set_meta(database, "schema_version", "2")


def _downgrade_to_version_1(database: pw.Database) -> None:
    """The target as release 1 left it: unique keys on the key text, NUL keys stored raw."""
    _downgrade_to_version_2(database)
    McpSession.update(session_key=NUL_KEY).where(McpSession.session_key != "plain:key").execute()
    migrator = SchemaMigrator.from_database(database)
    with foreign_keys_suspended(database):
        _drop_digests(database, migrator)
    set_meta(database, "schema_version", "1")


def _drop_digests(database: pw.Database, migrator: SchemaMigrator) -> None:
    for table, key_column, digest_column, _ in V2_KEYS:
        unique = [index.name for index in database.get_indexes(table) if digest_column in index.columns]
        old_columns = (key_column,) if table == "mcp_session" else ("checkpoint_id", key_column)
        migrate(
            *(migrator.drop_index(table, name) for name in unique),
            migrator.drop_column(table, digest_column),
            migrator.add_index(table, old_columns, unique=True),
        )


@pytest.fixture
def version_1_target(snapshot_factory: SnapshotFactory, tmp_path: Path) -> tuple[Path, Path]:
    snapshot = snapshot_factory(
        [checkpoint_row(1, CHECKPOINT)],
        [session_row(1, "plain:key", {"tools": ["Read"]}), session_row(2, NUL_KEY, {"agent_id": "a"})],
    )
    target = tmp_path / "v1.db"
    with LegacySource(snapshot) as source, target_database(target) as database:
        backfill(source, database)
        _downgrade_to_version_1(database)
    return snapshot, target


def test_a_version_1_target_is_upgraded_in_place_and_stays_exact(version_1_target: tuple[Path, Path]) -> None:
    snapshot, target = version_1_target
    with target_database(target) as database:
        assert schema_version(database) == 1
        with pytest.raises(IncompatibleSchema, match="`ksi-migrate migrate` upgrades it"):
            require_schema(database)
        create_schema(database)
        assert schema_version(database) == SCHEMA_VERSION
        for table, _, digest_column, unique_columns in V2_KEYS:
            assert [i.columns for i in database.get_indexes(table) if i.unique and digest_column in i.columns] == [
                list(unique_columns)
            ]
        with LegacySource(snapshot) as source:
            report = verify(source, database)
    assert report.ok, [str(m) for m in report.mismatches]


def test_an_upgraded_target_catches_up_without_rewriting_rows(version_1_target: tuple[Path, Path]) -> None:
    snapshot, target = version_1_target
    with LegacySource(snapshot) as source, target_database(target) as database:
        report = backfill(source, database)
    assert [t.written for t in report.tables] == [0, 0]
    assert [t.unchanged for t in report.tables] == [1, 2]


def test_a_newer_schema_is_refused(version_1_target: tuple[Path, Path]) -> None:
    _, target = version_1_target
    with target_database(target) as database:
        set_meta(database, "schema_version", str(SCHEMA_VERSION + 1))
        with pytest.raises(IncompatibleSchema, match=f"version {SCHEMA_VERSION + 1}"):
            create_schema(database)


TOOLS = ["Read", {"name": "Bash", "inputSchema": {"type": "object"}}, 7]


@pytest.fixture
def upgraded_target(target: str) -> Iterator[str]:
    """`target`, whose tables are dropped afterwards: a server's namespaces are emptied and used
    again by later tests, and an upgraded table's columns are not in a new table's order."""
    yield target
    with target_database(target) as database:
        database.drop_tables(ALL_MODELS)


def test_a_version_2_target_is_upgraded_in_place_stays_exact_and_then_moves_sessions_alone(
    upgraded_target: str, snapshot_factory: SnapshotFactory
) -> None:
    """Version 3 keeps a session's id apart from its rowid: the upgrade copies the rowid (the id
    until then) into its own column, with its unique index, and touches no tool; afterwards, a
    daemon's shutdown save (every session under a new rowid) moves the sessions and nothing else."""
    snapshot = snapshot_factory(
        [checkpoint_row(1, CHECKPOINT)],
        [session_row(rowid, f"agent-{rowid}:c", {"tools": TOOLS[: rowid % 4]}) for rowid in range(1, 9)]
        + [session_row(9, NUL_KEY, {"agent_id": "a"}), session_row(10, "bad:key", "[not json")],
    )
    with LegacySource(snapshot) as source, target_database(upgraded_target) as database:
        backfill(source, database)
        _downgrade_to_version_2(database)
        assert schema_version(database) == 2
        with pytest.raises(IncompatibleSchema, match="`ksi-migrate migrate` upgrades it"):
            require_schema(database)
        tools = sorted(McpSessionTool.select().tuples(), key=repr)
        create_schema(database)
        assert schema_version(database) == SCHEMA_VERSION
        assert [i.columns for i in database.get_indexes("mcp_session") if i.unique and "legacy_rowid" in i.columns] == [
            ["legacy_rowid"]
        ]
        ids = [(session.legacy_rowid, session.id) for session in McpSession.select()]
        assert sorted(ids) == [(n, n) for n in range(1, 10)]
        assert sorted(McpSessionTool.select().tuples(), key=repr) == tools
        report = verify(source, database)
        assert report.ok, [str(m) for m in report.mismatches]
    with closing(sqlite3.connect(snapshot)) as daemon, daemon:
        rows = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions ORDER BY rowid").fetchall()
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", rows)
    with LegacySource(snapshot) as source, target_database(upgraded_target) as database:
        (sessions,) = [t for t in backfill(source, database).tables if t.table == "mcp_sessions"]
        assert (sessions.moved, sessions.written, sessions.child_rows_written) == (9, 1, 0)  # the quarantined row
        assert sorted(McpSessionTool.select().tuples(), key=repr) == tools
        assert set(McpSession.select(McpSession.legacy_rowid).scalars()).isdisjoint(range(1, 11))
        report = verify(source, database)
    assert report.ok, [str(m) for m in report.mismatches]


def _downgrade_to_version_3(database: pw.Database) -> None:
    """The target as release 3 left it: each child's parent reference indexed on its own too."""
    migrator = SchemaMigrator.from_database(database)
    migrate(*(migrator.add_index(table, (column,)) for table, column in V4_REDUNDANT))
    set_meta(database, "schema_version", "3")


def _reference_indexes(database: pw.Database) -> list[tuple[str, list[str]]]:
    return [
        (table, index.columns)
        for table, column in V4_REDUNDANT
        for index in database.get_indexes(table)
        if index.columns == [column]
    ]


def test_a_version_3_target_loses_its_redundant_indexes_and_still_cascades(
    upgraded_target: str, snapshot_factory: SnapshotFactory
) -> None:
    """The primary key of each child table starts with its parent reference, so the index on the
    reference alone goes; a catch-up that deletes a checkpoint and a session still cascades to
    their children, and the target verifies exact before and after."""
    snapshot = snapshot_factory(
        [checkpoint_row(1, CHECKPOINT), checkpoint_row(2, {**CHECKPOINT, "reason": "gone"})],
        [session_row(1, "a:c", {"tools": TOOLS}), session_row(2, "b:c", {"tools": TOOLS[:1]})],
    )
    with LegacySource(snapshot) as source, target_database(upgraded_target) as database:
        backfill(source, database)
        assert _reference_indexes(database) == []  # a new target never has them
        _downgrade_to_version_3(database)
        assert len(_reference_indexes(database)) == len(V4_REDUNDANT)
        create_schema(database)
        assert schema_version(database) == SCHEMA_VERSION
        assert _reference_indexes(database) == []
        assert verify(source, database).ok
    with closing(sqlite3.connect(snapshot)) as daemon, daemon:
        daemon.execute("DELETE FROM checkpoints WHERE id = 2")
        daemon.execute("DELETE FROM mcp_sessions WHERE rowid = 2")
    with LegacySource(snapshot) as source, target_database(upgraded_target) as database:
        assert [t.deleted for t in backfill(source, database).tables] == [1, 1]
        assert McpSessionTool.select().count() == len(TOOLS)
        report = verify(source, database)
    assert report.ok, [str(m) for m in report.mismatches]


@pytest.mark.parametrize(("table", "column"), V4_REDUNDANT)
def test_a_lookup_by_parent_searches_the_primary_key_not_the_table(tmp_path: Path, table: str, column: str) -> None:
    """What the dropped indexes were for: a child's rows found by their parent (reads, and each
    cascade of a delete), still by an index, the primary key's, never by a scan of the table."""
    with target_database(tmp_path / "t.db") as database:
        create_schema(database)
        plan = database.execute_sql(f'EXPLAIN QUERY PLAN SELECT * FROM "{table}" WHERE "{column}" = 1').fetchall()
    assert [row[-1] for row in plan] == [f"SEARCH {table} USING INDEX sqlite_autoindex_{table}_1 ({column}=?)"]
