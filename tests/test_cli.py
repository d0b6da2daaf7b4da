"""The CLI through `main(argv)`: each command, its exit codes and its one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import __version__
from migrator.batching import DEFAULT_BATCH_SIZE
from migrator.cli import COMMANDS, build_parser, main
from migrator.legacy import snapshot_hashes
from migrator.legacy_copy import compare_legacy_files
from migrator.models import SCHEMA_VERSION, McpSessionTool, MigrationMeta
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


def test_every_option_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if action.option_strings:  # either spelling will do: README says `-v`
                spellings = [rf"(?<![\w-]){re.escape(option)}(?![\w-])" for option in action.option_strings]
                documented = any(re.search(spelling, text) for spelling in spellings)
                assert documented, f"README does not document `ksi-migrate {name} {action.option_strings[-1]}`"


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
        (["fabricate", "{tmp}/no/such/dir/x.db", "--sessions", "1"], "no such file or folder"),
        # A target opened read-only is not read on connect: these once ended in a traceback.
        (["status", "--target", "{notsqlite}"], "cannot open target"),
        (["migrate", "--source", "{snapshot}", "--target", "{notsqlite}", "--dry-run"], "cannot open target"),
        (["verify", "--source", "{snapshot}", "--target", "{notsqlite}"], "cannot open target"),
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


# --- for scripts: JSON documents, status, progress in logs ------------------------------------


def test_migrate_verify_and_status_print_one_json_document_each(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    assert main(["migrate", "--source", str(snapshot), "--target", str(target), "--json"]) == 0
    migrated = json.loads(capsys.readouterr().out)
    assert [t["table"] for t in migrated["tables"]] == ["checkpoints", "mcp_sessions"]
    assert migrated["tables"][1] | {"migrated": 1, "quarantined": 1, "written": 2} == migrated["tables"][1]
    assert main(["verify", "--source", str(snapshot), "--target", str(target), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert (verified["ok"], verified["mismatch_kinds"]) == (True, {})
    assert main(["status", "--target", str(target), "--source", str(snapshot), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status) == {"schema_version", "tables", "last_migrate", "cleanup", "source"}
    assert status["tables"]["mcp_sessions"] == {"relational": 1, "quarantined": 1, "noncanonical": 0}
    assert status["last_migrate"]["source"] == str(snapshot.resolve())
    assert status["last_migrate"]["source_sha256"] == snapshot_hashes(snapshot)["db"] == status["source"]["sha256"]
    assert status["source"]["is_last_migrated"] is True and status["cleanup"] is None


MIGRATE_KEYS = ["tables", "seconds", "dry_run", "recheck", "attempts"]
MIGRATE_TABLE_KEYS = [
    "table", "source_rows", "written", "rewritten", "moved", "unchanged", "deleted", "orphans_removed",
    "changed_meanwhile", "child_rows_written", "migrated", "quarantined", "noncanonical",
]  # fmt: skip
VERIFY_KEYS = ["ok", "tables", "mismatch_kinds", "mismatches", "seconds", "attempts"]
CLEANUP_KEYS = ["source", "files", "archive", "ready", "executed", "checks", "tables", "statements"]


def test_migrate_json_piped_into_json_tool_is_one_document_with_every_figure(snapshot: Path, tmp_path: Path) -> None:
    # As a script runs it: `ksi-migrate migrate ... --json | python -m json.tool`. Progress and
    # notices go to stderr, so stdout holds the document alone.
    migrate = [sys.executable, "-m", "migrator", "migrate", "--source", str(snapshot), "--target", str(tmp_path / "t")]
    with subprocess.Popen([*migrate, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as producer:
        tool = subprocess.run(
            [sys.executable, "-m", "json.tool"], stdin=producer.stdout, capture_output=True, text=True, check=False
        )
    assert (producer.returncode, tool.returncode, tool.stderr) == (0, 0, "")
    document = json.loads(tool.stdout)
    assert list(document) == MIGRATE_KEYS
    assert [list(table) for table in document["tables"]] == [MIGRATE_TABLE_KEYS, MIGRATE_TABLE_KEYS]
    assert [table["source_rows"] for table in document["tables"]] == [2, 2]


def test_verify_and_cleanup_print_one_json_document_with_their_figures(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, archive = tmp_path / "t.db", tmp_path / "archive"
    assert main(["migrate", "--source", str(snapshot), "--target", str(target)]) == 0
    assert main(["archive", "--source", str(snapshot), "--out", str(archive)]) == 0
    capsys.readouterr()
    assert main(["verify", "--source", str(snapshot), "--target", str(target), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert list(verified) == VERIFY_KEYS
    assert [(t["table"], t["source_rows"], t["matched"]) for t in verified["tables"]] == [
        ("checkpoints", 2, 2),
        ("mcp_sessions", 2, 2),
    ]
    cleanup = ["cleanup", "--source", str(snapshot), "--target", str(target), "--archive", str(archive), "--json"]
    for extra, executed in ((["--dry-run"], False), ([], True)):
        assert main([*cleanup, *extra]) == 0
        document = json.loads(capsys.readouterr().out)
        assert list(document) == CLEANUP_KEYS
        assert (document["ready"], document["executed"], document["tables"]) == (
            True,
            executed,
            ["checkpoints", "mcp_sessions"],
        )
        assert document["checks"] and all(list(check) == ["name", "passed", "detail"] for check in document["checks"])
    assert main(["status", "--target", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cleanup"]["tables"] == ["checkpoints", "mcp_sessions"]


def test_batch_size_shows_its_default_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("migrate", "verify", "restore", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"(default: {DEFAULT_BATCH_SIZE})" in " ".join(capsys.readouterr().out.split()), command


def test_status_says_when_the_source_changed_since_the_last_migrate(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.db"
    main(["migrate", "--source", str(snapshot), "--target", str(target)])
    with sqlite3.connect(snapshot) as daemon:
        daemon.execute("DELETE FROM checkpoints WHERE id = 4")
    capsys.readouterr()
    before = (target.stat().st_mtime_ns, target.read_bytes())
    assert main(["status", "--target", str(target), "--source", str(snapshot)]) == 0
    out = capsys.readouterr().out
    assert f"relational schema version {SCHEMA_VERSION}" in out and "checkpoints: 1 relational, 1 quarantined" in out
    assert "1 checkpoints, 2 mcp_sessions" in out and "changed since the last migrate" in out
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before  # read, never written


def test_status_of_a_target_that_holds_nothing_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert main(["status", "--target", str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema_version"] is None


def test_without_a_terminal_progress_is_a_line_every_few_seconds(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("migrator.progress.PROGRESS_LINE_SECONDS", 0.0)  # every batch, for the test
    assert main(["migrate", "--source", str(snapshot), "--target", str(tmp_path / "t.db"), "--batch-size", "1"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.fullmatch(r"migrate: \w+, \d+ of 4 rows, [\d,]+ rows/s", line) for line in lines), lines
    assert lines[-1].startswith("migrate: mcp_sessions, 4 of 4 rows")
    done = [line.split(" rows, ")[0] for line in lines]
    assert len(done) == len(set(done)), lines  # each line says something new: the end is said once


# The long runs besides `migrate` and `verify`, and how many times each reads every source row.
LONG_RUNS = {
    "archive": (lambda paths: ["archive", "--source", paths["source"], "--out", paths["archive"]], 1),
    "restore-archive": (
        lambda paths: ["restore", "--archive", paths["archive"], "--out", paths["copy"], "--batch-size", "1"],
        2,  # to check the archive whole, then to write it
    ),
    "restore-target": (
        lambda paths: ["restore", "--target", paths["target"], "--out", paths["copy"], "--batch-size", "1"],
        1,
    ),
    "cleanup": (  # 3 reads of the source, 2 of the archive
        lambda paths: [
            *("cleanup", "--source", paths["source"], "--target", paths["target"]),
            *("--archive", paths["archive"], "--dry-run"),
        ],
        5,
    ),
    # Batches of 3 for 2 rows a table: only what is left over at the end is there to report.
    "export": (lambda paths: ["export", "--target", paths["target"], "--out", paths["copy"], "--batch-size", "3"], 1),
}


@pytest.mark.parametrize("run", LONG_RUNS)
def test_every_long_run_reports_its_progress_up_to_its_total(
    run: str, snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = {name: str(tmp_path / name) for name in ("target", "archive", "copy")} | {"source": str(snapshot)}
    assert main(["migrate", "--source", paths["source"], "--target", paths["target"]]) == 0
    if run in ("restore-archive", "cleanup"):
        assert main(["archive", "--source", paths["source"], "--out", paths["archive"]]) == 0
    capsys.readouterr()
    monkeypatch.setattr("migrator.progress.PROGRESS_LINE_SECONDS", 0.0)  # every report, for the test
    command, passes = LONG_RUNS[run]
    argv = command(paths)
    assert main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    total = passes * sum(len(rows) for rows in ROWS.values())
    assert lines and all(
        re.fullmatch(rf"{argv[0]}: [\w. ]+, \d+ of {total} rows, [\d,]+ rows/s", line) for line in lines
    )
    assert re.match(rf"{argv[0]}: (\w+ )?mcp_sessions, {total} of {total} rows", lines[-1]), lines


def test_verbose_after_the_command_name_shows_the_traceback_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "-v", "--source", str(tmp_path / "no.db"), "--target", str(tmp_path / "t.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1].startswith("ksi-migrate: error: source database")


def test_demo_says_where_its_files_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "demo"
    assert main(["demo", "--dir", str(folder), "--checkpoints", "3", "--sessions", "10"]) == 0
    assert f"the demo's files are in {folder}" in capsys.readouterr().out
    assert sorted(path.name for path in folder.iterdir()) == ["legacy.db", "relational.db", "restored.db"]
