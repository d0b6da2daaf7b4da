"""The CLI through `main(argv)`: each command, its exit codes and its one-line errors."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import __version__
from migrator.cli import COMMANDS, main
from migrator.legacy import compare_legacy_files, snapshot_hashes
from migrator.models import McpSessionTool, MigrationMeta
from migrator.target import target_database
from tests.conftest import SnapshotFactory
from verification.snapshots import checkpoint_row, session_row

README = Path(__file__).resolve().parent.parent / "README.md"

ROWS = {
    "checkpoints": [
        checkpoint_row(1, {"session_queues": {"s": ["x"]}}),
        checkpoint_row(4, {"reason": "dev", "session_queues": {}}),
    ],
    "sessions": [session_row(1, "a:c", {"agent_id": "a", "tools": ["Read", "Read"]}), session_row(2, "b:c", "{oops")],
}


@pytest.fixture
def snapshot(snapshot_factory: SnapshotFactory) -> Path:
    return snapshot_factory(ROWS["checkpoints"], ROWS["sessions"])


def test_every_command_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for name in COMMANDS:
        assert re.search(rf"`ksi-migrate {name}\b", text), f"README does not document `ksi-migrate {name}`"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_migrate_verify_restore_export(snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target, restored, exported = tmp_path / "t.db", tmp_path / "r.db", tmp_path / "e.jsonl"
    assert main(["migrate", "--source", str(snapshot), "--target", str(target), "--batch-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints: 2 source rows; 1 migrated, 1 quarantined, 0 non-canonical" in out
    assert "mcp_sessions: 2 source rows; 1 migrated, 1 quarantined" in out
    report = tmp_path / "report.json"
    assert main(["verify", "--source", str(snapshot), "--target", str(target), "--report", str(report)]) == 0
    assert "OK: the target holds every legacy row exactly, and rebuilds each one exactly" in capsys.readouterr().out
    assert json.loads(report.read_text())["ok"] is True
    assert main(["restore", "--target", str(target), "--out", str(restored)]) == 0
    assert compare_legacy_files(snapshot, restored, ["checkpoints", "mcp_sessions"]) == []
    assert main(["export", "--target", f"sqlite:///{target}", "--out", str(exported)]) == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["table"] for line in lines] == ["checkpoints", "checkpoints", "mcp_sessions", "mcp_sessions"]
    assert lines[3] == {
        "table": "mcp_sessions",
        "session_key": "b:c",
        "session_data": "{oops",
        "last_seen": ROWS["sessions"][1][3],
    }


def test_verify_fails_and_names_the_tampered_row(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    main(["migrate", "--source", str(snapshot), "--target", str(target)])
    with target_database(target):
        McpSessionTool.delete().where(McpSessionTool.position == 1).execute()
    before = snapshot_hashes(snapshot)
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 1
    out = capsys.readouterr().out
    assert "mcp_sessions a:c (rowid 1): relational rows differ from what the mapping makes of the source row" in out
    assert "mcp_session_tool[session_id=1, position=1]:" in out and "<missing>" in out
    assert "mcp_sessions a:c (rowid 1): rebuilt legacy row differs from the source row" in out
    assert "session_data $.tools: length 2 != 1" in out
    assert snapshot_hashes(snapshot) == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["migrate", "--source", "{missing}", "--target", "{target}"], "source database not found"),
        (["verify", "--source", "{snapshot}", "--target", "{missing}"], "target database not found"),
        (["migrate", "--source", "{empty}", "--target", "{target}"], "neither a checkpoints nor an mcp_sessions table"),
        (["migrate", "--source", "{snapshot}", "--target", "{tmp}/no/such/dir/t.db"], "target folder does not exist"),
        (["migrate", "--source", "{snapshot}", "--target", "postgresql://nobody@127.0.0.1:1/x"], "cannot open target"),
        (["restore", "--target", "{snapshot}", "--out", "{tmp}/r.db"], "holds no migrated data"),
        (["fabricate", "{snapshot}", "--sessions", "1"], "refusing to overwrite"),
        (["migrate", "--source", "{notsqlite}", "--target", "{target}"], "not a readable SQLite database"),
        (["fabricate", "{tmp}/no/such/dir/x.db", "--sessions", "1"], "No such file or directory"),
    ],
)
def test_errors_are_one_line_without_traceback(
    argv: list[str],
    message: str,
    snapshot: Path,
    snapshot_factory: SnapshotFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE other (x)").connection.close()
    notsqlite = tmp_path / "notes.txt"
    notsqlite.write_text("hello, this is not a database at all" * 100)
    values = {
        "missing": tmp_path / "missing.db",
        "target": tmp_path / "t.db",
        "snapshot": snapshot,
        "empty": empty,
        "tmp": tmp_path,
        "notsqlite": notsqlite,
    }
    assert main([part.format(**values) for part in argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_incompatible_schema_version_is_refused(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    main(["migrate", "--source", str(snapshot), "--target", str(target)])
    with target_database(target):
        MigrationMeta.update(value="99").where(MigrationMeta.key == "schema_version").execute()
    assert main(["migrate", "--source", str(snapshot), "--target", str(target)]) == 2
    assert "schema version 99" in capsys.readouterr().err
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 2


def test_verbose_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-v", "migrate", "--source", str(tmp_path / "x.db"), "--target", str(tmp_path / "t.db")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "migrator", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
