"""Catch-up by identity: sessions the daemon saved again unchanged under new rowids are moved in
place, not rewritten with their tools, on every engine, through the real command."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from migrator.backfill import backfill
from migrator.cli import main
from migrator.legacy import LegacySource, file_sha256
from migrator.models import McpSession, McpSessionTool
from migrator.relational import fetch
from migrator.target import target_database
from tests.conftest import SnapshotFactory
from verification.snapshots import session_row

TOOLS = ["Read", {"name": "Bash", "description": "run"}, "Read"]


def sessions(count: int) -> list[tuple[Any, ...]]:
    return [
        session_row(rowid, f"agent-{rowid}:conv", {"agent_id": f"agent-{rowid}", "tools": TOOLS[: rowid % 4]})
        for rowid in range(1, count + 1)
    ]


def save_all_again(path: Path) -> None:
    """The daemon's shutdown save: every cached session with INSERT OR REPLACE, unchanged."""
    with closing(sqlite3.connect(path)) as daemon, daemon:
        rows = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions ORDER BY rowid").fetchall()
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", rows)


def migrate_json(source: Path, target: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["migrate", "--source", str(source), "--target", target, "--json", "--batch-size", "7", *extra]) == 0
    report = json.loads(capsys.readouterr().out)
    return {table["table"]: table for table in report["tables"]}


def verify_ok(source: Path, target: str) -> bool:
    return main(["verify", "--source", str(source), "--target", target]) == 0


def tool_rows(target: str) -> list[tuple[Any, ...]]:
    """Every tool row, every column of it (the session it references included)."""
    with target_database(target, must_exist=True) as database:
        return sorted(fetch(database, McpSessionTool.select()), key=repr)


def session_ids(target: str) -> dict[int, int]:
    """legacy rowid -> the session's own id."""
    with target_database(target, must_exist=True) as database:
        return dict(fetch(database, McpSession.select(McpSession.legacy_rowid, McpSession.id)))


def test_sessions_saved_again_unchanged_are_moved_and_no_tool_row_is_written(
    target: str, snapshot_factory: SnapshotFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    source = snapshot_factory([], sessions(30))
    first = migrate_json(source, target, capsys)["mcp_sessions"]
    tools = first["child_rows_written"]
    assert tools == sum(len(TOOLS[: rowid % 4]) for rowid in range(1, 31)) > 0
    before, ids = tool_rows(target), session_ids(target)
    save_all_again(source)
    with closing(sqlite3.connect(source)) as daemon:
        assert daemon.execute("SELECT min(rowid) FROM mcp_sessions").fetchone()[0] > 30  # every rowid moved
    again = migrate_json(source, target, capsys)["mcp_sessions"]
    assert again["moved"] == 30
    assert (again["written"], again["rewritten"], again["deleted"], again["unchanged"]) == (0, 0, 0, 0)
    assert again["child_rows_written"] == 0  # not one tool mapped or written again
    assert tool_rows(target) == before  # nor updated: each still references its session's own id
    moved = session_ids(target)
    assert sorted(moved.values()) == sorted(ids) and sorted(moved) != sorted(ids)  # new rowids, the same ids
    assert verify_ok(source, target)
    quiet = migrate_json(source, target, capsys)["mcp_sessions"]
    assert (quiet["moved"], quiet["written"], quiet["unchanged"]) == (0, 0, 30)


def test_moved_changed_expired_and_new_sessions_in_one_catch_up(
    snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = snapshot_factory([], sessions(12))
    target = str(tmp_path / "t.db")
    migrate_json(source, target, capsys)
    with closing(sqlite3.connect(source)) as daemon, daemon:
        rows = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions ORDER BY rowid").fetchall()
        daemon.execute("DELETE FROM mcp_sessions WHERE rowid IN (2, 12)")  # expired; 12 is the top rowid, reused
        changed = [
            (key, data, "2026-01-01T00:00:00") if n % 3 == 0 else (key, data, seen)
            for n, (key, data, seen) in enumerate(rows)
        ]
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", changed[2:6] + changed[6:11])
        daemon.execute("INSERT INTO mcp_sessions VALUES ('new:conv', '{\"tools\": [\"Read\"]}', '2026-01-02')")
    plan = migrate_json(source, target, capsys, "--dry-run")["mcp_sessions"]
    report = migrate_json(source, target, capsys)["mcp_sessions"]
    # Rows 3..11 saved again: those with a new last_seen (n = 3, 6, 9) are rewritten, five moved. The
    # first one saved (row 3's key) took rowid 12 again, which the target holds for the expired session:
    # a row is never moved onto another's rowid, so it is rewritten there, and the expired one replaced.
    assert (report["moved"], report["rewritten"], report["written"], report["deleted"]) == (5, 4, 5, 1)
    assert report["unchanged"] == 1  # row 1, never saved again
    assert {key: plan[key] for key in ("moved", "rewritten", "written", "deleted")} == {
        key: report[key] for key in ("moved", "rewritten", "written", "deleted")
    }
    assert verify_ok(source, target)


def test_a_dry_run_counts_the_moves_and_changes_nothing(
    snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = snapshot_factory([], sessions(9))
    target = str(tmp_path / "t.db")
    migrate_json(source, target, capsys)
    save_all_again(source)
    before = file_sha256(Path(target))
    capsys.readouterr()
    assert main(["migrate", "--source", str(source), "--target", target, "--dry-run"]) == 0
    assert "a run would write 0 new, rewrite 0, move 9, keep 0 unchanged, remove 0" in capsys.readouterr().out
    assert file_sha256(Path(target)) == before


def test_a_session_the_daemon_saves_again_during_the_catch_up_is_left_to_the_next(
    snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """The move of a session whose row the daemon replaced after the snapshot was read is not
    made: the newer row is the daemon's (its dual write, or the next catch-up) to bring over."""
    source = snapshot_factory([], sessions(5))
    target = tmp_path / "t.db"
    with LegacySource(source) as legacy, target_database(target) as database:
        backfill(legacy, database)
    save_all_again(source)
    with closing(sqlite3.connect(source)) as daemon:
        daemon.execute("PRAGMA journal_mode = wal")  # a live daemon's file, read in place ...
        daemon.execute("SELECT count(*) FROM mcp_sessions").fetchone()  # ... with its -wal and -shm beside it
        with LegacySource(source) as legacy, target_database(target) as database:
            legacy.count(legacy.tables[-1])  # the snapshot is taken
            with daemon:
                row = daemon.execute("SELECT session_key, session_data FROM mcp_sessions WHERE rowid = 6").fetchone()
                daemon.execute("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, 'later')", row)
            report = backfill(legacy, database).tables[-1]
        assert (report.moved, report.changed_meanwhile) == (4, 1)
        with LegacySource(source) as legacy, target_database(target) as database:
            assert backfill(legacy, database).tables[-1].written == 1
    assert verify_ok(source, str(target))


def test_a_new_session_at_a_rowid_whose_id_a_moved_session_keeps_gets_an_id_of_its_own(
    target: str, snapshot_factory: SnapshotFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Session 1 moves to rowid 4 and keeps its id 1; a new session the daemon writes at rowid 1
    cannot have id 1, so it gets the next free one, and its tools reference that."""
    source = snapshot_factory([], sessions(3))
    migrate_json(source, target, capsys)
    with closing(sqlite3.connect(source)) as daemon, daemon:
        row = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions WHERE rowid = 1").fetchone()
        daemon.execute("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", row)  # rowid 4
    assert migrate_json(source, target, capsys)["mcp_sessions"]["moved"] == 1
    before = tool_rows(target)
    with closing(sqlite3.connect(source)) as daemon, daemon:
        daemon.execute(
            "INSERT INTO mcp_sessions (rowid, session_key, session_data, last_seen) "
            "VALUES (1, 'new:c', ?, '2026-01-01')",
            (TOOLS_JSON,),
        )
    report = migrate_json(source, target, capsys)["mcp_sessions"]
    assert (report["written"], report["moved"], report["child_rows_written"]) == (1, 0, 3)
    assert session_ids(target) == {1: 4, 2: 2, 3: 3, 4: 1}  # 4: above every id in use (1, 2, 3)
    after = tool_rows(target)
    assert [row for row in after if row not in before] == [row for row in after if row[0] == 4] != []
    assert verify_ok(source, target)


TOOLS_JSON = json.dumps({"tools": TOOLS})


def test_tools_whose_session_is_gone_are_reported_by_verify_as_orphans(
    snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session's tools reference its own id, which no rowid names once the session moved: a
    comparison by rowid cannot see them when their session is gone, so verify looks for them."""
    source = snapshot_factory([], sessions(3))
    target = str(tmp_path / "t.db")
    migrate_json(source, target, capsys)
    save_all_again(source)
    migrate_json(source, target, capsys)
    with closing(sqlite3.connect(target)) as connection, connection:  # foreign keys off, as by hand
        connection.execute("INSERT INTO mcp_session_tool (session_id, position, form) VALUES (77, 0, 'json')")
    capsys.readouterr()
    assert main(["verify", "--source", str(source), "--target", target]) == 1
    assert "mcp_sessions -: child rows without their legacy row: mcp_session_tool rows of mcp_session id 77" in (
        capsys.readouterr().out
    )
