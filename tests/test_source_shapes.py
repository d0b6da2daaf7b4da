"""Every source column is accounted for: a legacy table the mapping cannot carry exactly is refused
with one line naming it, and a column the mapping does not read is never dropped silently, by
`migrate`, `verify`, `cleanup` or the sign-off gate."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from migrator.cli import main
from migrator.errors import UnmappedColumn, UnsupportedSource
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacySource, UnmappedColumns, snapshot_hashes
from migrator.legacy_copy import compare_legacy_files
from verification.snapshots import checkpoint_row, session_row, write_snapshot

SESSION = {"agent_id": "a", "tools": ["Read"]}
DAEMON_CHECKPOINTS = CHECKPOINTS.ddl
DAEMON_SESSIONS = MCP_SESSIONS.ddl


def cli(*argv: object) -> int:
    return main([str(arg) for arg in argv])


def snapshot_with(path: Path, *statements: str) -> Path:
    """A legacy file made by these statements, with one session and one checkpoint where they fit."""
    with closing(sqlite3.connect(path)) as connection, connection:
        for statement in statements:
            connection.execute(statement)
    return path


@pytest.fixture
def with_owner_email(tmp_path: Path) -> Path:
    """The daemon's tables, then `ALTER TABLE mcp_sessions ADD COLUMN owner_email TEXT`, filled in every row."""
    source = write_snapshot(
        tmp_path / "legacy.db",
        [checkpoint_row(1, {"session_queues": {}})],
        [session_row(1, "a:c1", SESSION), session_row(2, "a:c2", SESSION)],
    )
    with closing(sqlite3.connect(source)) as connection, connection:
        connection.execute("ALTER TABLE mcp_sessions ADD COLUMN owner_email TEXT")
        connection.execute("UPDATE mcp_sessions SET owner_email = 'owner' || rowid || '@example.com'")
    return source


def test_migrate_refuses_a_column_it_does_not_carry_naming_it(
    with_owner_email: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot_hashes(with_owner_email)
    assert cli("migrate", "--source", with_owner_email, "--target", tmp_path / "t.db") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "mcp_sessions.owner_email" in error and "would lose" in error
    assert not (tmp_path / "t.db").exists()  # refused before anything was written
    assert snapshot_hashes(with_owner_email) == before


def test_a_column_added_after_migration_fails_verify_and_cleanup_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_snapshot(tmp_path / "legacy.db", [checkpoint_row(1, {})], [session_row(1, "a:c1", SESSION)])
    target, archive = tmp_path / "t.db", tmp_path / "archive"
    assert cli("migrate", "--source", source, "--target", target) == 0
    assert cli("archive", "--source", source, "--out", archive) == 0
    with closing(sqlite3.connect(source)) as connection, connection:
        connection.execute("ALTER TABLE mcp_sessions ADD COLUMN owner_email TEXT")
        connection.execute("UPDATE mcp_sessions SET owner_email = 'owner@example.com'")
    capsys.readouterr()
    assert cli("verify", "--source", source, "--target", target) == 1
    assert "mcp_sessions.owner_email is in no target table" in capsys.readouterr().out
    assert cli("cleanup", "--source", source, "--target", target, "--archive", archive, "--dry-run") == 1
    assert "[FAILED] every source column carried: mcp_sessions.owner_email" in capsys.readouterr().out
    assert cli("cleanup", "--source", source, "--target", target, "--archive", archive) == 2
    assert "every source column carried: mcp_sessions.owner_email" in capsys.readouterr().err
    with closing(sqlite3.connect(source)) as connection:  # nothing was dropped
        assert connection.execute("SELECT count(*) FROM mcp_sessions WHERE owner_email IS NOT NULL").fetchone() == (1,)


def test_the_archive_keeps_a_column_the_mapping_does_not_and_cleanup_still_refuses(
    with_owner_email: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`owner_email` is archived and restored with every row; the target cannot hold it, so the
    one command allowed to destroy data refuses to drop the table it lives in."""
    archive, restored = tmp_path / "archive", tmp_path / "restored.db"
    assert cli("archive", "--source", with_owner_email, "--out", archive) == 0
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["tables"]["mcp_sessions"]["columns"][-1] == "owner_email"
    assert cli("restore", "--archive", archive, "--out", restored) == 0
    assert compare_legacy_files(with_owner_email, restored, ["checkpoints"]) == []
    with closing(sqlite3.connect(with_owner_email)) as source, closing(sqlite3.connect(restored)) as copy:
        query = "SELECT rowid, * FROM mcp_sessions ORDER BY rowid"
        assert copy.execute(query).fetchall() == source.execute(query).fetchall()
    target = tmp_path / "t.db"
    capsys.readouterr()
    assert cli("migrate", "--source", with_owner_email, "--target", target) == 2  # refused, as above
    assert cli("cleanup", "--source", with_owner_email, "--target", target, "--archive", archive) == 2
    assert "target database not found" in capsys.readouterr().err
    with closing(sqlite3.connect(with_owner_email)) as source:
        assert source.execute("SELECT count(*) FROM mcp_sessions WHERE owner_email IS NOT NULL").fetchone() == (2,)


def test_the_source_reports_or_carries_unmapped_columns_when_asked(with_owner_email: Path) -> None:
    with pytest.raises(UnmappedColumn, match=r"mcp_sessions\.owner_email"):
        LegacySource(with_owner_email)
    with LegacySource(with_owner_email, unmapped=UnmappedColumns.REPORT) as source:
        assert source.unmapped == [("mcp_sessions", "owner_email")]
        (rows,) = list(source.batches(source.tables[1], 10))
        assert [len(row) for row in rows] == [4, 4]  # rowid and the mapped columns
        (rows,) = list(source.batches(source.stored_table(source.tables[1]), 10))
        assert [row[-1] for row in rows] == ["owner1@example.com", "owner2@example.com"]


SHAPES = {
    "view": (
        [
            DAEMON_SESSIONS,
            "CREATE TABLE cps (id INTEGER PRIMARY KEY, timestamp TEXT, checkpoint_data TEXT)",
            "CREATE VIEW checkpoints AS SELECT * FROM cps",
        ],
        "source checkpoints in .* is a view, not a table",
    ),
    "without rowid": (
        [DAEMON_CHECKPOINTS, f"{DAEMON_SESSIONS} WITHOUT ROWID"],
        "source mcp_sessions in .* is a WITHOUT ROWID table",
    ),
    "rowid column": (
        [
            DAEMON_CHECKPOINTS,
            "CREATE TABLE mcp_sessions (rowid INTEGER, session_key TEXT PRIMARY KEY, "
            "session_data TEXT NOT NULL, last_seen TIMESTAMP NOT NULL)",
        ],
        "column rowid hides SQLite's rowid",
    ),
    "id not the rowid": (
        ["CREATE TABLE checkpoints (id INT PRIMARY KEY, timestamp TEXT NOT NULL, checkpoint_data TEXT NOT NULL)"],
        r"has primary key \(id\), not the rowid; the daemon's id is INTEGER PRIMARY KEY",
    ),
    "id primary key descending": (
        ["CREATE TABLE checkpoints (id INTEGER PRIMARY KEY DESC, timestamp TEXT NOT NULL, checkpoint_data TEXT)"],
        r"has primary key \(id\), not the rowid",
    ),
    "no session primary key": (
        ["CREATE TABLE mcp_sessions (session_key TEXT, session_data TEXT NOT NULL, last_seen TIMESTAMP NOT NULL)"],
        "has primary key none",
    ),
    "session key as rowid": (
        ["CREATE TABLE mcp_sessions (session_key INTEGER PRIMARY KEY, session_data TEXT, last_seen TIMESTAMP)"],
        r"has primary key \(session_key\), the rowid",
    ),
    "missing column": (
        ["CREATE TABLE mcp_sessions (session_key TEXT PRIMARY KEY, session_data TEXT NOT NULL)"],
        "lacks column.s. last_seen",
    ),
    # SQLite matches names regardless of case: the daemon reads these as its own tables.
    "table named in another case": (
        [DAEMON_CHECKPOINTS, DAEMON_SESSIONS.replace("mcp_sessions", "MCP_Sessions", 1)],
        "source table MCP_Sessions in .* is the daemon's mcp_sessions named in another case",
    ),
    "view named in another case": (
        [
            DAEMON_SESSIONS,
            "CREATE TABLE cps (id INTEGER PRIMARY KEY, timestamp TEXT, checkpoint_data TEXT)",
            "CREATE VIEW CHECKPOINTS AS SELECT * FROM cps",
        ],
        "source view CHECKPOINTS in .* is the daemon's checkpoints named in another case",
    ),
    "virtual table": (
        ["CREATE VIRTUAL TABLE mcp_sessions USING fts5(session_key, session_data, last_seen)"],
        "source mcp_sessions in .* is a virtual table",
    ),
    "generated column": (
        [
            "CREATE TABLE mcp_sessions (session_key TEXT PRIMARY KEY, session_data TEXT NOT NULL, "
            "last_seen TIMESTAMP NOT NULL, agent TEXT AS (json_extract(session_data, '$.agent_id')))"
        ],
        "column agent is generated",
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_table_the_mapping_cannot_carry_is_refused_by_every_command_in_one_line(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    statements, message = SHAPES[shape]
    source = snapshot_with(tmp_path / "odd.db", *statements)
    with pytest.raises(UnsupportedSource, match=message):
        LegacySource(source, unmapped=UnmappedColumns.REPORT)
    target = tmp_path / "t.db"
    for argv in (
        ("migrate", "--source", source, "--target", target),
        ("migrate", "--source", source, "--target", target, "--dry-run"),
        ("verify", "--source", source, "--target", target),
        ("archive", "--source", source, "--out", tmp_path / "archive"),
    ):
        capsys.readouterr()
        status = cli(*argv)
        error = capsys.readouterr().err
        assert status == 2 and error.count("\n") == 1 and error.startswith("ksi-migrate: error:"), (argv, error)
    assert not (tmp_path / "archive").exists()


def test_the_daemons_own_declarations_pass_in_any_column_order(tmp_path: Path) -> None:
    source = snapshot_with(
        tmp_path / "reordered.db",
        "CREATE TABLE mcp_sessions (last_seen TIMESTAMP NOT NULL, session_data TEXT NOT NULL, "
        "session_key TEXT PRIMARY KEY)",
        "INSERT INTO mcp_sessions VALUES ('2025-06-20T10:00:00', '{\"tools\": []}', 'a:c')",
    )
    with LegacySource(source) as legacy:
        (rows,) = list(legacy.batches(legacy.tables[0], 10))
    assert rows == [(1, "a:c", '{"tools": []}', "2025-06-20T10:00:00")]
    target = tmp_path / "t.db"
    assert cli("migrate", "--source", source, "--target", target) == 0
    assert cli("verify", "--source", source, "--target", target) == 0
    assert json.loads(json.dumps(rows))  # plain values all the way


def test_the_gate_fails_a_named_check_for_an_unmapped_column(pytester: pytest.Pytester, with_owner_email: Path) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "verification.gate.plugin",
        "--ksi-snapshot",
        str(with_owner_email),
        "-p",
        "no:cacheprovider",
        str(Path(__file__).resolve().parent.parent / "verification" / "gate"),
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    signoff = json.loads((pytester.path / "signoff" / "signoff.json").read_text())
    checks = {check["name"]: check for check in signoff["checks"]}
    assert signoff["verdict"] == "FAIL"
    assert checks["source_columns"]["verdict"] == "FAIL"
    assert any("mcp_sessions.owner_email" in problem for problem in checks["source_columns"]["problems"])
