"""The legacy DDL a restore runs is data: CREATE TABLE of a legacy table or CREATE INDEX on one,
one statement a string, nothing else; checked before any file is created."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import main
from migrator.ddl import check_legacy_schema
from migrator.errors import SchemaRefused
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacySchema, LegacySource
from migrator.legacy_copy import compare_legacy_files
from migrator.rollback import restore
from migrator.target import record_legacy_schema, target_database
from tests.conftest import SnapshotFactory
from verification.snapshots import checkpoint_row, session_row

DAEMON_DDL = [CHECKPOINTS.ddl, MCP_SESSIONS.ddl]
BOTH = ["checkpoints", "mcp_sessions"]


def schema(*extra: object, tables: list[str] = BOTH, **fields: Any) -> LegacySchema:
    values: dict[str, Any] = {
        "statements": [*DAEMON_DDL, *extra],
        "sequences": {},
        "encoding": "UTF-8",
        "tables": tables,
    }
    return LegacySchema(**{**values, **fields})


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["CREATE INDEX checkpoints_by_time ON checkpoints(timestamp)"],
        ['CREATE UNIQUE INDEX "by key" ON mcp_sessions(session_key, last_seen) WHERE last_seen > 0'],
        ["CREATE INDEX idx ON checkpoints(timestamp);  -- a trailing comment is one statement"],
    ],
)
def test_the_daemons_tables_and_plain_indexes_are_accepted(extra: list[str]) -> None:
    check_legacy_schema(schema(*extra))


def test_the_daemons_own_schema_with_its_autoincrement_counter_is_accepted(snapshot_factory: SnapshotFactory) -> None:
    legacy = snapshot_factory([checkpoint_row(5, {})], [session_row(1, "k", {})])
    with LegacySource(legacy) as source:
        recorded = source.schema()
    check_legacy_schema(LegacySchema(recorded.statements, {"checkpoints": 5}, recorded.encoding, recorded.tables))


OUTSIDE = "{tmp}/PWNED.db"  # a file an ATTACH would create


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([f"ATTACH DATABASE '{OUTSIDE}' AS pwn"], f"SQLite was asked to ATTACH '{OUTSIDE}'"),
        ([f"ATTACH DATABASE '{OUTSIDE}' AS pwn", "CREATE TABLE pwn.owned(x)"], "ATTACH"),
        (["CREATE TABLE pwn.owned(x)"], "unknown database pwn"),
        (["CREATE TRIGGER t AFTER INSERT ON checkpoints BEGIN DELETE FROM mcp_sessions; END"], "CREATE TRIGGER 't'"),
        (["CREATE VIEW v AS SELECT * FROM checkpoints"], "CREATE VIEW 'v'"),
        (["CREATE TABLE other (x)"], "CREATE TABLE 'other'"),
        (["CREATE TEMP TABLE scratch (x)"], "sqlite_temp_master"),
        (["CREATE INDEX i ON checkpoints(timestamp); CREATE TABLE other (x)"], "one statement at a time"),
        ([f"ATTACH DATABASE '{OUTSIDE}' AS pwn; CREATE TABLE pwn.owned(x)"], f"SQLite was asked to ATTACH '{OUTSIDE}'"),
        ([f"VACUUM INTO '{OUTSIDE}'"], f"SQLite was asked to ATTACH '{OUTSIDE}'"),  # VACUUM INTO writes a copy
        (["CREATE INDEX i ON checkpoints(load_extension('x'))"], "FUNCTION 'load_extension'"),
        (["CREATE VIRTUAL TABLE v USING fts5(x)"], "CREATE VTABLE"),
        (["PRAGMA writable_schema = 1"], "PRAGMA 'writable_schema'"),
        (["SELECT 1"], "SQLite was asked to SELECT"),
        (["CREATE TABLE IF NOT EXISTS checkpoints (id)"], "created nothing"),
        ([42], "not a string"),
    ],
)
def test_anything_else_is_refused_naming_the_statement(extra: list[object], reason: str, tmp_path: Path) -> None:
    statements = [item.format(tmp=tmp_path) if isinstance(item, str) else item for item in extra]
    with pytest.raises(SchemaRefused) as refused:
        check_legacy_schema(schema(*statements))
    message = str(refused.value)
    assert message.startswith("statements[2] ")
    assert reason.format(tmp=tmp_path) in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # the scratch database attached nothing


def test_a_create_table_as_select_is_refused() -> None:
    with pytest.raises(SchemaRefused, match=r"statements\[1\] .*SQLite was asked to SELECT"):
        check_legacy_schema(schema(statements=[CHECKPOINTS.ddl, "CREATE TABLE mcp_sessions AS SELECT 1 AS x"]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"encoding": "UTF-8'; ATTACH 'x' AS y; --"}, "encoding"),
        ({"sequences": {"checkpoints": "7; DROP TABLE x"}}, "sequences.checkpoints"),
        ({"sequences": {"other": 3}}, "sequences: 'other'"),
        ({"tables": ["checkpoints", "other"]}, "tables: 'other' is not a legacy table"),
        ({"tables": ["checkpoints"]}, "statements create the tables ['checkpoints', 'mcp_sessions']"),
        ({"tables": ["checkpoints", "checkpoints", "mcp_sessions"]}, "names a table twice"),
        ({"statements": "CREATE TABLE checkpoints (id)"}, "statements: str, not a list"),
        (
            {"statements": ["CREATE TABLE checkpoints (id)", MCP_SESSIONS.ddl]},
            "table checkpoints lacks column(s) timestamp, checkpoint_data",
        ),
    ],
)
def test_the_other_fields_must_have_the_expected_form(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaRefused, match=re.escape(message)) as refused:
        check_legacy_schema(schema(**fields))
    assert "\n" not in str(refused.value)


def test_restore_from_a_tampered_target_runs_nothing_and_writes_nothing(
    snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = snapshot_factory([checkpoint_row(1, {})], [session_row(1, "k", {})])
    target, restored, outside = tmp_path / "t.db", tmp_path / "r.db", tmp_path / "elsewhere" / "PWNED.db"
    outside.parent.mkdir()
    assert main(["migrate", "--source", str(legacy), "--target", str(target)]) == 0
    with target_database(target) as database:
        tampered = schema(f"ATTACH DATABASE '{outside}' AS pwn")
        record_legacy_schema(database, tampered)  # as a hand edit of the record would leave it
        with pytest.raises(SchemaRefused):
            restore(database, restored)
    capsys.readouterr()
    assert main(["restore", "--target", str(target), "--out", str(restored)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'statements[2] "ATTACH DATABASE' in err
    assert not outside.exists() and list(outside.parent.iterdir()) == []
    assert not restored.exists() and not Path(f"{restored}.partial").exists()


def test_a_source_with_a_trigger_is_refused_by_migrate_and_archive_before_anything_is_written(
    snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = snapshot_factory([checkpoint_row(1, {})], [session_row(1, "k", {})])
    with sqlite3.connect(legacy) as connection:
        connection.execute("CREATE TRIGGER audit AFTER DELETE ON mcp_sessions BEGIN SELECT 1; END")
    connection.close()
    for argv in (["migrate", "--target", str(tmp_path / "t.db")], ["archive", "--out", str(tmp_path / "archive")]):
        assert main([argv[0], "--source", str(legacy), *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"cannot {argv[0]} {legacy}: its schema.statements[2] 'CREATE TRIGGER audit" in err
        assert "drop it from the source" in err
    assert not (tmp_path / "archive").exists() and not (tmp_path / "archive.partial").exists()
    with sqlite3.connect(tmp_path / "t.db") as target:  # opened by the command, left empty
        assert target.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    target.close()


def test_a_restore_recreates_an_accepted_index(snapshot_factory: SnapshotFactory, tmp_path: Path) -> None:
    legacy = snapshot_factory([checkpoint_row(1, {}), checkpoint_row(2, {})], [session_row(1, "k", {})])
    with sqlite3.connect(legacy) as connection:
        connection.execute("CREATE INDEX checkpoints_by_time ON checkpoints(timestamp)")
    connection.close()
    assert main(["archive", "--source", str(legacy), "--out", str(tmp_path / "archive")]) == 0
    assert main(["restore", "--archive", str(tmp_path / "archive"), "--out", str(tmp_path / "r.db")]) == 0
    assert compare_legacy_files(legacy, tmp_path / "r.db", BOTH) == []
    with LegacySource(legacy) as original, LegacySource(tmp_path / "r.db") as copy:
        assert copy.schema() == original.schema()
        assert any("checkpoints_by_time" in statement for statement in copy.schema().statements)
