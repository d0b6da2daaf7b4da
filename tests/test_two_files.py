"""The daemon's real layout, a file per table (`checkpoint.db`, `mcp_sessions.db`), end to end
through the real command and the gate: migrate, verify, sign off, archive, clean up, restore."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import main
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import file_sha256
from migrator.legacy_copy import compare_legacy_files
from migrator.store import open_store

REPOSITORY = Path(__file__).resolve().parents[1]
GATE_TESTS = REPOSITORY / "verification" / "gate" / "test_signoff.py"
LIMITS_OUT_OF_REACH = ("--ksi-max-checkpoint-save-ms", "60000", "--ksi-max-session-lookup-ms", "60000")

# The daemon's own statements (ksi_daemon/core/checkpoint.py, ksi_daemon/mcp/dynamic_server.py).
CHECKPOINTS_DDL = (
    "CREATE TABLE IF NOT EXISTS checkpoints "
    "(id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL, checkpoint_data TEXT NOT NULL)"
)
SESSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS mcp_sessions "
    "(session_key TEXT PRIMARY KEY, session_data TEXT NOT NULL, last_seen TIMESTAMP NOT NULL)"
)
PRUNE = "DELETE FROM checkpoints WHERE id NOT IN (SELECT id FROM checkpoints ORDER BY id DESC LIMIT 5)"


def daemon_files(folder: Path, seed: int = 16) -> tuple[Path, Path]:
    """`checkpoint.db` and `mcp_sessions.db` written with the daemon's own statements, from the
    rows of a fabricated snapshot: every checkpoint saved and pruned to 5 (ids with gaps, the
    counter far above them), every session saved at shutdown with INSERT OR REPLACE, then a third
    of them saved again (new rowids). The checkpoint file is in WAL mode, as the store keeps it."""
    fabricated = folder / "fabricated.db"
    folder.mkdir(exist_ok=True)
    fabricate_snapshot(fabricated, checkpoints=12, sessions=30, seed=seed)
    checkpoint_db, sessions_db = folder / "checkpoint.db", folder / "mcp_sessions.db"
    with closing(sqlite3.connect(fabricated)) as rows:
        saved = rows.execute("SELECT timestamp, checkpoint_data FROM checkpoints ORDER BY id").fetchall()
        cached = rows.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions ORDER BY rowid").fetchall()
    with closing(sqlite3.connect(checkpoint_db)) as daemon:
        daemon.execute("PRAGMA journal_mode = wal")
        daemon.execute(CHECKPOINTS_DDL)
        for timestamp, data in saved:
            with daemon:
                daemon.execute("INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES (?, ?)", (timestamp, data))
            with daemon:
                daemon.execute(PRUNE)
    with closing(sqlite3.connect(sessions_db)) as daemon, daemon:
        daemon.execute(SESSIONS_DDL)
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", cached)
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", cached[::3])
    return checkpoint_db, sessions_db


def ksi(*argv: str | Path) -> int:
    return main([str(arg) for arg in argv])


def sources(checkpoint_db: Path, sessions_db: Path) -> list[str | Path]:
    return ["--source", checkpoint_db, "--source", sessions_db]


def legacy_file_differences(expected: Path, actual: Path) -> list[str]:
    """What differs between two legacy files as SQLite holds them: the schema's statements, the
    AUTOINCREMENT counters, the encoding, and every row with its rowid and storage types."""
    facts = [legacy_file_facts(path) for path in (expected, actual)]
    problems = [
        f"{name}: {facts[0][name]} != {facts[1][name]}" for name in facts[0] if facts[0][name] != facts[1][name]
    ]
    return problems + compare_legacy_files(expected, actual, legacy_tables(expected))


def legacy_file_facts(path: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(path)) as connection:
        counters = "SELECT name, seq FROM sqlite_sequence ORDER BY name"
        return {
            "schema": connection.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
            ).fetchall(),
            "counters": connection.execute(counters).fetchall() if has(connection, "sqlite_sequence") else None,
            "encoding": connection.execute("PRAGMA encoding").fetchone(),
        }


TABLES = ("checkpoints", "mcp_sessions")


def has(connection: sqlite3.Connection, name: str) -> bool:
    return connection.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def legacy_tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:
        return [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE name IN (?, ?)", TABLES)]


def test_two_source_files_migrate_verify_sign_off_archive_clean_up_and_restore_to_two_identical_files(
    tmp_path: Path, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint_db, sessions_db = daemon_files(tmp_path)
    kept = tmp_path / "as-they-were"
    kept.mkdir()
    originals = {path.name: Path(shutil.copy(path, kept / path.name)) for path in (checkpoint_db, sessions_db)}
    hashes = {path: file_sha256(path) for path in (checkpoint_db, sessions_db)}
    target = tmp_path / "target.db"

    assert ksi("migrate", *sources(checkpoint_db, sessions_db), "--target", target, "--json") == 0
    migrated = {table["table"]: table for table in json.loads(capsys.readouterr().out)["tables"]}
    assert (migrated["checkpoints"]["source_rows"], migrated["mcp_sessions"]["source_rows"]) == (5, 30)
    assert ksi("verify", *sources(checkpoint_db, sessions_db), "--target", target) == 0
    assert "OK: the target holds every legacy row exactly" in capsys.readouterr().out
    assert ksi("verify", "--source", checkpoint_db, "--target", target) == 1  # the sessions are not in that file
    assert "mcp_sessions: 0/0 rows held exactly both ways; 0 differ, 0 missing from the target, 30 extra" in (
        capsys.readouterr().out
    )
    assert ksi("status", "--target", target, *sources(checkpoint_db, sessions_db), "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["source"]["is_last_migrated"] is True
    assert [entry["path"] for entry in status["last_migrate"]["source_files"]] == [
        str(checkpoint_db.resolve()),
        str(sessions_db.resolve()),
    ]

    signed = pytester.runpytest_subprocess(
        str(GATE_TESTS),
        *("-p", "no:faker", "--ksi-shard-rows", "8", *LIMITS_OUT_OF_REACH),
        *("--ksi-snapshot", str(checkpoint_db), "--ksi-snapshot", str(sessions_db), "--ksi-target", str(target)),
    )
    assert signed.ret == pytest.ExitCode.OK
    signoff = json.loads((pytester.path / "signoff" / "signoff.json").read_text(encoding="utf-8"))
    assert signoff["verdict"] == "PASS"
    assert signoff["counts"] == {
        "checkpoints": {"source_rows": 5, "rebuilt_rows": 5},
        "mcp_sessions": {"source_rows": 30, "rebuilt_rows": 30},
    }
    assert [entry["sha256"] for entry in signoff["snapshot"]["files"]] == list(hashes.values())

    archive = tmp_path / "archive"
    assert ksi("archive", *sources(checkpoint_db, sessions_db), "--out", archive) == 0
    cleanup = ["cleanup", *sources(checkpoint_db, sessions_db), "--target", target, "--archive", archive]
    assert ksi(*cleanup, "--dry-run") == 0
    assert ksi(*cleanup) == 0
    assert "--checkpoints-out checkpoint.db --sessions-out mcp_sessions.db" in capsys.readouterr().out
    assert legacy_tables(checkpoint_db) == legacy_tables(sessions_db) == []  # each file's own table dropped

    for origin, option in (("archive", archive), ("target", target)):
        out = tmp_path / f"restored-from-{origin}"
        out.mkdir()
        restored = {name: out / name for name in originals}
        assert (
            ksi(
                "restore",
                f"--{origin}",
                option,
                "--checkpoints-out",
                restored["checkpoint.db"],
                "--sessions-out",
                restored["mcp_sessions.db"],
            )
            == 0
        )
        assert legacy_tables(restored["checkpoint.db"]) == ["checkpoints"]
        assert legacy_tables(restored["mcp_sessions.db"]) == ["mcp_sessions"]
        for name, original in originals.items():
            assert legacy_file_differences(original, restored[name]) == [], (origin, name)


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    return daemon_files(tmp_path)


def test_a_table_in_both_files_is_refused_in_one_line(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint_db, sessions_db = two_files
    both = tmp_path / "both.db"
    shutil.copy(sessions_db, both)
    with closing(sqlite3.connect(both)) as connection, connection:
        connection.execute(CHECKPOINTS_DDL)
    assert ksi("migrate", *sources(checkpoint_db, both), "--target", tmp_path / "t.db") == 2
    error = capsys.readouterr().err
    assert "source table checkpoints is in both" in error and error.count("\n") == 1
    assert not (tmp_path / "t.db").exists()


def test_another_daemons_sessions_file_beside_the_right_checkpoint_file_is_refused(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The files can be mixed up one at a time: the right checkpoint.db shares its rows, another
    daemon's mcp_sessions.db shares no session, and a catch-up would replace every session."""
    checkpoint_db, sessions_db = two_files
    target = tmp_path / "t.db"
    assert ksi("migrate", *sources(checkpoint_db, sessions_db), "--target", target) == 0
    other_checkpoints, other_sessions = daemon_files(tmp_path / "other", seed=61)
    before = file_sha256(target)
    capsys.readouterr()
    for extra in ((), ("--dry-run",)):
        assert ksi("migrate", *sources(checkpoint_db, other_sessions), "--target", target, *extra) == 2
        error = capsys.readouterr().err
        assert f"{other_sessions} shares no session with the target's mcp_sessions" in error, error
        assert "--replace" in error and error.count("\n") == 1
    assert file_sha256(target) == before
    # A later copy of the same sessions file, every session saved again under a new rowid, still shares its keys.
    with closing(sqlite3.connect(sessions_db)) as daemon, daemon:
        rows = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions").fetchall()
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", rows)
    # Another checkpoint file is not judged alone: the daemon keeps five, a later copy often shares none.
    assert ksi("migrate", *sources(other_checkpoints, sessions_db), "--target", target) == 0
    assert ksi("migrate", *sources(checkpoint_db, sessions_db), "--target", target) == 0
    assert ksi("verify", *sources(checkpoint_db, sessions_db), "--target", target) == 0
    assert ksi("migrate", *sources(checkpoint_db, other_sessions), "--target", target, "--replace") == 0
    assert ksi("verify", *sources(checkpoint_db, other_sessions), "--target", target) == 0


def test_a_restore_to_a_file_per_table_names_a_file_for_each(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    assert ksi("migrate", *sources(*two_files), "--target", target) == 0
    capsys.readouterr()
    assert ksi("restore", "--target", target, "--checkpoints-out", tmp_path / "c.db") == 2
    assert "mcp_sessions is to be restored as well" in capsys.readouterr().err
    assert ksi("restore", "--target", target) == 2
    assert "say where the tables go" in capsys.readouterr().err
    assert not (tmp_path / "c.db").exists()
    assert ksi("restore", "--target", target, "--out", tmp_path / "one.db") == 0  # one file holds both, as before
    assert legacy_tables(tmp_path / "one.db") == ["checkpoints", "mcp_sessions"]


StoreFactory = Callable[..., Any]


@pytest.mark.parametrize("mode", ["dual_write", "shadow"])
def test_the_store_writes_each_table_to_its_own_file_and_catches_up_from_both(
    two_files: tuple[Path, Path], tmp_path: Path, mode: str
) -> None:
    checkpoint_db, sessions_db = two_files
    target = tmp_path / "t.db"
    assert ksi("migrate", *sources(checkpoint_db, sessions_db), "--target", target) == 0
    legacy = {"checkpoints": checkpoint_db, "mcp_sessions": sessions_db}
    with open_store(target, legacy=legacy, mode=mode) as store:
        checkpoint_id = store.save_checkpoint({"session_queues": {}, "active_completions": {}})
        store.save_session("agent-new:conv", {"agent_id": "agent-new", "tools": [{"name": "Read"}]}, "2026-01-01")
        assert store.get_session("agent-new:conv") == {"agent_id": "agent-new", "tools": [{"name": "Read"}]}
        report = store.catch_up()
        assert [table.written for table in report.tables] == [0, 0]  # the dual writes mirrored both
    with closing(sqlite3.connect(checkpoint_db)) as connection:
        assert connection.execute("SELECT max(id) FROM checkpoints").fetchone() == (checkpoint_id,)
        assert not has(connection, "mcp_sessions")
    with closing(sqlite3.connect(sessions_db)) as connection:
        assert connection.execute("SELECT count(*) FROM mcp_sessions WHERE session_key = 'agent-new:conv'").fetchone()
        assert not has(connection, "checkpoints")
    assert ksi("verify", *sources(checkpoint_db, sessions_db), "--target", target) == 0


def test_the_store_refuses_a_layout_that_names_one_table_only(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    from migrator.errors import LegacyUnavailable

    with pytest.raises(LegacyUnavailable, match="names a file for each of checkpoints, mcp_sessions"):
        open_store(tmp_path / "t.db", legacy={"checkpoints": two_files[0]}, create=True)


def test_the_gate_migrates_the_two_files_into_its_scratch_target_and_signs_them_off(
    two_files: tuple[Path, Path], pytester: pytest.Pytester
) -> None:
    checkpoint_db, sessions_db = two_files
    signed = pytester.runpytest_subprocess(
        str(GATE_TESTS),
        *("-p", "no:faker", *LIMITS_OUT_OF_REACH),
        *("--ksi-snapshot", str(checkpoint_db), "--ksi-snapshot", str(sessions_db)),
    )
    assert signed.ret == pytest.ExitCode.OK
    signoff = json.loads((pytester.path / "signoff" / "signoff.json").read_text(encoding="utf-8"))
    assert signoff["verdict"] == "PASS"
    assert signoff["snapshot"]["path"] == f"{checkpoint_db} + {sessions_db}"
    assert signoff["counts"]["mcp_sessions"] == {"source_rows": 30, "rebuilt_rows": 30}


def test_the_sign_offs_commands_name_both_files() -> None:
    from verification.gate.checks import SOURCE_UNTOUCHED
    from verification.gate.ledger import FAIL, CheckVerdict
    from verification.gate.next_steps import Invocation, next_steps

    files = (Path("/data/checkpoint.db"), Path("/data/mcp_sessions.db"))
    args = ("--pyargs", "verification", "--ksi-snapshot", str(files[0]), "--ksi-snapshot", str(files[1]))
    run = Invocation(Path("/work"), "/venv/bin/python", args, files, None, Path("/s/signoff.json"))
    assert run.ksi_migrate("verify") == (
        "/venv/bin/python -m migrator verify --source /data/checkpoint.db --source /data/mcp_sessions.db"
        " --target TARGET"
    )
    backup, on_copies = next_steps(CheckVerdict(SOURCE_UNTOUCHED, SOURCE_UNTOUCHED, FAIL, "changed"), run)
    assert "sqlite3 /data/checkpoint.db '.backup checkpoint-copy.db' && sqlite3 /data/mcp_sessions.db" in backup
    assert on_copies.endswith(
        "--pyargs verification --ksi-snapshot checkpoint-copy.db --ksi-snapshot mcp_sessions-copy.db`"
    )
