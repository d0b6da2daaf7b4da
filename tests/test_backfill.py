"""Backfill, verify and restore through real SQLite files: catch-up, idempotence, tamper
detection, quarantine, and a source that is never written."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import peewee
import pytest

from migrator import checkpoints, engines, relational, sessions
from migrator.backfill import backfill
from migrator.cli import main
from migrator.codec import InvalidText
from migrator.errors import DuplicateKeys
from migrator.legacy import CHECKPOINTS, LegacySource, file_sha256, row_bytes, snapshot_hashes
from migrator.legacy_copy import compare_legacy_files
from migrator.models import ALL_MODELS, CheckpointQueueItem, McpSession, McpSessionTool, Quarantine
from migrator.relational import rebuilt_rows
from migrator.rollback import restore
from migrator.target import create_schema, target_database
from migrator.verify import verify
from tests.conftest import SnapshotFactory
from verification.snapshots import checkpoint_row, hot_wal_copy, session_row, write_snapshot

QUEUE = {"items": [{"request_id": "r1", "data": {"n": 1}}, {"request_id": "r1", "data": {"n": 1.0}}], "is_active": True}
BLOB = {
    "timestamp": "2025-06-20T23:17:27Z",
    "session_queues": {"s1": QUEUE, "s2": [{"request_id": "r3"}]},
    "active_completions": {"r1": {"status": "queued"}},
}
SESSION = {"agent_id": "a", "tools": ["Read", "Read", {"name": "Bash"}], "thin_handshake": True}

ROWS_CHECKPOINTS = [
    checkpoint_row(3, BLOB),
    checkpoint_row(9, BLOB, timestamp=b"\x00binary"),
    checkpoint_row(10, '{"session_queues":{},"n":1E5}'),
    checkpoint_row(11, "[truncated"),
    checkpoint_row(12, InvalidText(b'{"a": "\xff"}')),
]
ROWS_SESSIONS = [
    session_row(1, "a:conv:1", SESSION),
    session_row(2, "unknown:c", {"agent_id": "unknown"}, last_seen=1750461447),
    session_row(5, "a:c3", SESSION, last_seen=17.25),
    session_row(6, b"blob-key", SESSION),
]


def migrate(source: Path, target: Path) -> dict[str, dict[str, int]]:
    with LegacySource(source) as legacy, target_database(target) as database:
        report = backfill(legacy, database, batch_size=2)
    return {t.table: {k: v for k, v in vars(t).items() if k != "table"} for t in report.tables}


def verify_target(source: Path, target: Path) -> list[str]:
    with LegacySource(source) as legacy, target_database(target) as database:
        report = verify(legacy, database, batch_size=2)
    return [str(m) for m in report.mismatches]


def table_counts(target: Path) -> dict[str, int]:
    with target_database(target):
        return {m._meta.table_name: m.select().count() for m in ALL_MODELS}


@pytest.fixture
def snapshot(snapshot_factory: SnapshotFactory) -> Path:
    return snapshot_factory(ROWS_CHECKPOINTS, ROWS_SESSIONS)


def test_migrate_verify_restore_round_trip(snapshot: Path, tmp_path: Path) -> None:
    target, restored = tmp_path / "target.db", tmp_path / "restored.db"
    before = snapshot_hashes(snapshot)
    report = migrate(snapshot, target)
    assert report["checkpoints"]["migrated"] == 3
    assert report["checkpoints"]["quarantined"] == 2
    assert report["checkpoints"]["noncanonical"] == 1
    assert report["mcp_sessions"]["quarantined"] == 1
    assert verify_target(snapshot, target) == []
    with target_database(target) as database:
        restore(database, restored)
    assert compare_legacy_files(snapshot, restored, ["checkpoints", "mcp_sessions"]) == []
    assert snapshot_hashes(snapshot) == before


def test_quarantine_keeps_reason_and_key(snapshot: Path, tmp_path: Path) -> None:
    migrate(snapshot, tmp_path / "t.db")
    with target_database(tmp_path / "t.db"):
        found = {(q.legacy_table, q.row_key): q.reason for q in Quarantine.select()}
    assert set(found) == {("checkpoints", "11"), ("checkpoints", "12"), ("mcp_sessions", "x'626c6f622d6b6579'")}
    assert "invalid JSON" in found[("checkpoints", "11")]


def test_second_run_writes_nothing_and_counts_stay(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    counts = table_counts(target)
    again = migrate(snapshot, target)
    assert again["checkpoints"]["written"] == 0 and again["checkpoints"]["unchanged"] == 5
    assert table_counts(target) == counts


def test_catch_up_applies_inserts_changes_and_deletes(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    live = tmp_path / "live.db"
    shutil.copy(snapshot, live)
    with sqlite3.connect(live) as daemon:
        daemon.execute("DELETE FROM checkpoints WHERE id IN (3, 11)")  # pruned, one of them quarantined
        daemon.execute("INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES ('t', ?)", (json.dumps(BLOB),))
        daemon.execute("UPDATE checkpoints SET checkpoint_data = '{}' WHERE id = 12")  # repaired
        daemon.execute(  # INSERT OR REPLACE moves last_seen and gives the row a new rowid
            "INSERT OR REPLACE INTO mcp_sessions VALUES ('a:conv:1', ?, '2025-06-21T00:00:00')", (json.dumps(SESSION),)
        )
        daemon.execute("DELETE FROM mcp_sessions WHERE session_key = 'unknown:c'")  # expired
    report = migrate(live, target)
    assert report["checkpoints"]["deleted"] == 2
    assert report["checkpoints"]["written"] == 2
    # The session saved again with new content is the same session (its key): rewritten, not removed and added.
    sessions = report["mcp_sessions"]
    assert (sessions["deleted"], sessions["written"], sessions["rewritten"], sessions["moved"]) == (1, 1, 1, 0)
    assert verify_target(live, target) == []


@pytest.mark.parametrize(
    ("model", "where", "change", "named"),
    [
        (CheckpointQueueItem, CheckpointQueueItem.checkpoint == 9, None, "checkpoints 9 (rowid 9):"),
        (McpSessionTool, McpSessionTool.session == 5, None, "mcp_sessions a:c3 (rowid 5):"),
        (CheckpointQueueItem, CheckpointQueueItem.checkpoint == 3, {"request_id": "r2"}, "checkpoints 3 (rowid 3):"),
        (McpSessionTool, McpSessionTool.session == 1, {"tool_name": "bash"}, "mcp_sessions a:conv:1 (rowid 1):"),
    ],
)
def test_verify_names_the_row_when_one_relational_row_is_changed(
    snapshot: Path, tmp_path: Path, model: type[Any], where: object, change: dict | None, named: str
) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    with target_database(target):
        victim = model.select().where(where).order_by(model.position.desc()).limit(1).get()
        query = model.delete() if change is None else model.update(change)
        assert query.where(where, model.position == victim.position).execute() == 1
    problems = verify_target(snapshot, target)
    # One row, seen both ways: its relational rows are not the mapping's, and its rebuild differs.
    assert len(problems) == 2 and all(p.startswith(named) for p in problems), problems
    assert "differ from what the mapping makes" in problems[0] and "rebuilt legacy row differs" in problems[1]


def test_verify_reports_json_path_of_a_type_change(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    with target_database(target):
        CheckpointQueueItem.update(request_data='{"n": 1}').where(
            (CheckpointQueueItem.checkpoint == 3) & (CheckpointQueueItem.position == 1)
        ).execute()
    problems = verify_target(snapshot, target)
    assert any("checkpoint_data $.session_queues.s1.items[1].data.n: 1.0 (float) != 1 (int)" in p for p in problems), (
        problems
    )


def test_verify_reports_rows_the_source_lacks(
    snapshot: Path, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    smaller = snapshot_factory(ROWS_CHECKPOINTS[:1], ROWS_SESSIONS)
    problems = verify_target(smaller, target)
    assert any("checkpoints 9 (rowid 9): in the target but not in the source" in p for p in problems)


def test_wal_snapshot_and_its_wal_file_stay_byte_identical(snapshot_factory: SnapshotFactory, tmp_path: Path) -> None:
    snapshot = hot_wal_copy(snapshot_factory([checkpoint_row(1, BLOB, timestamp="t")]), tmp_path / "snap")
    before = snapshot_hashes(snapshot)
    assert before["wal"] is not None
    migrate(snapshot, tmp_path / "t.db")
    assert verify_target(snapshot, tmp_path / "t.db") == []
    assert snapshot_hashes(snapshot) == before
    assert sorted(p.name for p in snapshot.parent.iterdir()) == [snapshot.name, f"{snapshot.name}-wal"]


# --- memory: batches bounded by bytes and by relational rows ------------------------------------


def big_checkpoint(rowid: int, items: int) -> tuple[object, ...]:
    queue = [{"request_id": f"r{i}", "data": {"prompt": "x" * 200}} for i in range(items)]
    return checkpoint_row(rowid, {**BLOB, "session_queues": {"s1": queue}})


def test_source_batches_end_at_the_byte_budget_and_keep_every_row_in_order(
    snapshot_factory: SnapshotFactory,
) -> None:
    rows = [big_checkpoint(rowid, items=rowid % 4 * 5) for rowid in range(1, 41)]
    path = snapshot_factory(rows, [])
    with LegacySource(path) as source:
        batches = list(source.batches(CHECKPOINTS, batch_size=1000, max_bytes=4000))
    assert [row for batch in batches for row in batch] == [tuple(row) for row in rows]
    assert len(batches) > 1
    for batch in batches:  # a batch closes on the row that reaches the budget, never before
        assert sum(row_bytes(row) for row in batch[:-1]) < 4000


def test_bundles_read_in_batches_sized_by_child_rows_rebuild_the_same_rows(
    snapshot_factory: SnapshotFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = snapshot_factory([big_checkpoint(rowid, items=rowid % 7 * 3) for rowid in range(1, 31)], [])
    target = tmp_path / "t.db"
    migrate(path, target)
    with target_database(target) as database:
        whole = list(rebuilt_rows(database, checkpoints.KIND, 2000))
        monkeypatch.setattr(relational, "MAX_BATCH_RELATIONAL_ROWS", 10)  # a few legacy rows a batch
        monkeypatch.setattr(relational, "FIRST_BUNDLE_BATCH", 2)
        fetched: list[int] = []
        fetch = relational.fetch

        def counted_fetch(db: Any, query: Any) -> Any:
            fetched.append(1)
            return fetch(db, query)

        monkeypatch.setattr(relational, "fetch", counted_fetch)
        small = list(rebuilt_rows(database, checkpoints.KIND, 2000))
    assert [rowid for rowid, _ in small] == list(range(1, 31))
    assert small == whole
    assert len(fetched) > 5 * len(checkpoints.KIND.tables)  # many batches, not one


# --- indexes built after a fresh load ----------------------------------------------------------


def index_names(target: Path) -> set[str]:
    with closing(sqlite3.connect(target)) as connection:
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        return {name for (name,) in connection.execute(query)}


backfill_module = sys.modules["migrator.backfill"]  # `migrator.backfill` is also the function's name
MODEL_INDEXES = {index._name for model in ALL_MODELS for index in model._meta.fields_to_index()}


def test_a_fresh_load_ends_with_every_index_the_models_declare(snapshot: Path, tmp_path: Path) -> None:
    migrate(snapshot, tmp_path / "t.db")
    assert index_names(tmp_path / "t.db") == MODEL_INDEXES


def test_a_load_that_fails_half_way_still_builds_every_index(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built_during_load: list[set[str]] = []
    sync = backfill_module._sync_batch

    def failing_second_batch(
        database: Any, source: Any, kind: Any, batch: Any, report: Any, run: Any, **options: Any
    ) -> None:
        built_during_load.append(index_names(tmp_path / "t.db"))
        if len(built_during_load) == 2:
            raise RuntimeError("the machine went away")
        sync(database, source, kind, batch, report, run, **options)

    monkeypatch.setattr(backfill_module, "_sync_batch", failing_second_batch)
    with pytest.raises(RuntimeError, match="went away"):
        migrate(snapshot, tmp_path / "t.db")
    assert built_during_load[0] < MODEL_INDEXES  # the load ran without the secondary indexes ...
    assert index_names(tmp_path / "t.db") == MODEL_INDEXES  # ... and they were built all the same


def test_indexes_a_killed_load_left_unbuilt_are_built_when_the_target_is_next_opened(
    snapshot: Path, tmp_path: Path
) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    with closing(sqlite3.connect(target)) as connection:
        connection.execute('DROP INDEX "mcp_session_agent_id"')  # as a kill -9 mid-load leaves it
    assert "mcp_session_agent_id" not in index_names(target)
    assert verify_target(snapshot, target) == []  # reads need no index ...
    migrate(snapshot, target)  # ... and the next run (or store) that opens the target builds it
    assert index_names(target) == MODEL_INDEXES


def test_two_rows_with_one_session_key_fail_the_unique_index_by_name(tmp_path: Path) -> None:
    """A source without the daemon's primary key is refused before it is read (test_legacy.py);
    should two rows with one key reach the load all the same, the index build names the key."""
    target = tmp_path / "t.db"
    row = session_row(1, "a:c1", SESSION)
    with target_database(target) as database:
        create_schema(database)
        with pytest.raises(DuplicateKeys) as refused, engines.engine(database).indexes_built_after([McpSession]):
            relational.write_legacy_rows(database, sessions.KIND, [(row, "d1"), ((2, *row[1:]), "d2")])
    assert "mcp_session_session_key_digest: the snapshot holds two rows" in str(refused.value)


def test_creating_the_schema_holds_the_write_lock_so_a_concurrent_writer_cannot_break_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon keeps writing while `migrate` starts on the same file. Had the schema's
    transaction begun with a read, a commit by the daemon in between would make its first write
    fail at once (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out)."""
    target = tmp_path / "ksi.db"
    with closing(sqlite3.connect(target)) as daemon:
        daemon.execute("PRAGMA journal_mode=wal")
        daemon.execute("CREATE TABLE daemon_writes (n INTEGER)")
        daemon.commit()
    daemon_outcomes: list[str] = []

    def exists_while_the_daemon_commits(self: Any, table_name: str, schema: str | None = None) -> bool:
        found = original_table_exists(self, table_name, schema)
        if not self.in_transaction():
            return found  # the version check before the schema's transaction
        with closing(sqlite3.connect(target, timeout=0.05)) as daemon:
            try:
                daemon.execute("INSERT INTO daemon_writes VALUES (1)")
                daemon.commit()
                daemon_outcomes.append("committed")
            except sqlite3.OperationalError:
                daemon_outcomes.append("waited")  # the schema's transaction holds the lock
        return found

    original_table_exists = peewee.SqliteDatabase.table_exists
    monkeypatch.setattr(peewee.SqliteDatabase, "table_exists", exists_while_the_daemon_commits)
    with target_database(target) as database:
        create_schema(database)
    monkeypatch.undo()
    assert daemon_outcomes and set(daemon_outcomes) == {"waited"}
    assert index_names(target) >= MODEL_INDEXES


# --- repair, dry runs and the wrong snapshot ---------------------------------------------------


def run_cli(*argv: object) -> int:
    return main([str(arg) for arg in argv])


def test_recheck_repairs_a_hand_edited_target_that_a_plain_run_trusts(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    with closing(sqlite3.connect(target)) as connection, connection:
        connection.execute("UPDATE mcp_session SET is_active = 0, last_seen = NULL WHERE id = 1")  # derived only
        connection.execute("UPDATE checkpoint_queue SET queue_depth = 99 WHERE checkpoint_id = 3")
        connection.execute("DELETE FROM mcp_session_tool WHERE session_id = 5 AND position = 0")
    assert len(verify_target(snapshot, target)) >= 3
    plain = migrate(snapshot, target)
    assert plain["mcp_sessions"]["written"] == 0 and len(verify_target(snapshot, target)) >= 3  # digests agree
    with LegacySource(snapshot) as legacy, target_database(target) as database:
        repaired = backfill(legacy, database, batch_size=2, recheck=True)
    rewritten = {t.table: t.rewritten for t in repaired.tables}
    assert rewritten == {"checkpoints": 1, "mcp_sessions": 2}
    assert verify_target(snapshot, target) == []


def test_recheck_reaches_the_largest_rowid_sqlite_allows(tmp_path: Path) -> None:
    # A recheck compares each batch up to the rowid above its last one; above 2**63 - 1 there is
    # none, and asking for it overflowed SQLite's INTEGER (found by verification's recheck property).
    largest = 2**63 - 1
    source = write_snapshot(tmp_path / "legacy.db", [checkpoint_row(largest, BLOB)], [session_row(largest, "a:c", {})])
    target = tmp_path / "t.db"
    migrate(source, target)
    with LegacySource(source) as legacy, target_database(target) as database:
        report = backfill(legacy, database, batch_size=2, recheck=True)
    assert {t.table: t.rewritten for t in report.tables} == {"checkpoints": 0, "mcp_sessions": 0}
    assert verify_target(source, target) == []


def test_recheck_removes_orphaned_child_rows_and_a_plain_run_is_not_tripped_by_them(
    snapshot: Path, tmp_path: Path
) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    with closing(sqlite3.connect(target)) as connection, connection:  # foreign keys off, as by hand
        connection.execute("DELETE FROM mcp_session WHERE id = 1")  # its tools stay behind
        orphan = "INSERT INTO checkpoint_request (checkpoint_id, position, request_id, request_id_digest, layout)"
        connection.execute(f"{orphan} VALUES (77, 0, 'r', 'd', '[]')")
    assert migrate(snapshot, target)["mcp_sessions"]["written"] == 1  # the orphans under rowid 1 are cleared first
    assert any("checkpoints 77" in problem or "rowid 77" in problem for problem in verify_target(snapshot, target))
    with LegacySource(snapshot) as legacy, target_database(target) as database:
        report = backfill(legacy, database, batch_size=2, recheck=True)
    assert {t.table: t.orphans_removed for t in report.tables} == {"checkpoints": 1, "mcp_sessions": 0}
    assert verify_target(snapshot, target) == []


def test_a_snapshot_that_shares_no_row_with_the_target_is_refused_before_anything_is_written(
    snapshot: Path, snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    other = snapshot_factory([checkpoint_row(900, {"session_queues": {}})], [session_row(1, "other:daemon", SESSION)])
    before = file_sha256(target)
    capsys.readouterr()
    assert run_cli("migrate", "--source", other, "--target", target) == 2
    error = capsys.readouterr().err
    assert "shares no row with the target" in error and "--replace" in error and error.count("\n") == 1
    assert file_sha256(target) == before
    assert run_cli("migrate", "--source", other, "--target", target, "--replace") == 0
    assert verify_target(other, target) == []


def test_a_later_snapshot_of_the_same_daemon_is_not_mistaken_for_another(snapshot: Path, tmp_path: Path) -> None:
    """Every checkpoint pruned and every session rewritten under a new rowid: the session keys
    still say it is the same daemon's file."""
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    live = tmp_path / "live.db"
    shutil.copy(snapshot, live)
    with closing(sqlite3.connect(live)) as daemon, daemon:
        daemon.execute("DELETE FROM checkpoints")
        daemon.execute("INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES ('t', '{}')")
        rows = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions").fetchall()
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", rows)  # new rowids, same keys
    migrate(live, target)
    assert verify_target(live, target) == []


def test_a_dry_run_reports_the_plan_and_changes_nothing(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    assert run_cli("migrate", "--source", snapshot, "--target", target, "--dry-run") == 0
    assert "checkpoints: 5 source rows; a run would write 5 new, rewrite 0, move 0, keep 0 unchanged, remove 0" in (
        capsys.readouterr().out
    )
    assert not target.exists()  # not even created
    migrate(snapshot, target)
    with closing(sqlite3.connect(target)) as connection, connection:
        connection.execute("UPDATE mcp_session SET is_active = 0 WHERE id = 1")
        connection.execute("DELETE FROM checkpoint WHERE id = 9")
    before = file_sha256(target)
    assert run_cli("migrate", "--source", snapshot, "--target", target, "--dry-run", "--recheck") == 0
    out = capsys.readouterr().out
    assert "checkpoints: 5 source rows; a run would write 1 new, rewrite 0, move 0, keep 4 unchanged, remove 0" in out
    assert "mcp_sessions: 4 source rows; a run would write 0 new, rewrite 1, move 0, keep 3 unchanged, remove 0" in out
    assert "dry run: nothing was written" in out
    assert file_sha256(target) == before


def test_a_table_renamed_away_and_back_between_catch_ups_restores_with_the_sources_ddl(
    snapshot: Path, tmp_path: Path
) -> None:
    target = tmp_path / "t.db"
    migrate(snapshot, target)
    with closing(sqlite3.connect(snapshot)) as daemon, daemon:  # SQLite rewrites the stored DDL on rename
        daemon.execute("ALTER TABLE mcp_sessions RENAME TO mcp_sessions_old")
        daemon.execute("ALTER TABLE mcp_sessions_old RENAME TO mcp_sessions")
        ddl = daemon.execute("SELECT sql FROM sqlite_master WHERE name = 'mcp_sessions'").fetchone()[0]
    assert ddl.startswith('CREATE TABLE "mcp_sessions"')  # the spelling changed
    assert any("legacy_schema" in problem for problem in verify_target(snapshot, target))
    migrate(snapshot, target)
    assert verify_target(snapshot, target) == []
    restored = tmp_path / "restored.db"
    assert run_cli("restore", "--target", target, "--out", restored) == 0
    assert compare_legacy_files(snapshot, restored, ["checkpoints", "mcp_sessions"]) == []
    with closing(sqlite3.connect(restored)) as copy:
        assert copy.execute("SELECT sql FROM sqlite_master WHERE name = 'mcp_sessions'").fetchone()[0] == ddl
