"""Everything the tool creates is its owner's alone: 0600 files, 0700 folders, through the CLI and
through the library (which does not rely on the CLI's umask)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator.archive import restore_archive, write_archive
from migrator.backfill import backfill
from migrator.cli import main
from migrator.demo import run_demo
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource, sidecar
from migrator.private import copy_file, create_file, make_folder, open_new, write_new_text
from migrator.rollback import export, restore
from migrator.target import target_database
from verification.gate.artifacts import write_signoff

LOOSE_UMASK = 0o022  # the usual default: without explicit modes, files would be 0644 and folders 0755


@pytest.fixture
def loose_umask() -> Iterator[None]:
    previous = os.umask(LOOSE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes_under(folder: Path, *, besides: tuple[Path, ...] = ()) -> dict[str, int]:
    return {str(path.relative_to(folder)): mode(path) for path in sorted(folder.rglob("*")) if path not in besides}


def not_private(modes: dict[str, int], folder: Path) -> dict[str, str]:
    wanted = {True: 0o700, False: 0o600}
    return {name: oct(m) for name, m in modes.items() if m != wanted[(folder / name).is_dir()]}


@pytest.fixture
def private_source(tmp_path: Path) -> Path:
    source = tmp_path / "legacy.db"
    fabricate_snapshot(source, checkpoints=4, sessions=12, unreadable=2, seed=3)
    source.chmod(0o600)
    return source


# --- the building blocks -----------------------------------------------------------------------


def test_files_and_folders_are_created_private_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    with open_new(tmp_path / "new.txt", "w", encoding="utf-8") as handle:
        handle.write("x")
    create_file(tmp_path / "empty.db")
    write_new_text(tmp_path / "text.json", "{}")
    copy_file(tmp_path / "new.txt", tmp_path / "copy.txt")
    make_folder(tmp_path / "a" / "b" / "c")
    assert not_private(modes_under(tmp_path), tmp_path) == {}
    assert set(modes_under(tmp_path)) == {"new.txt", "empty.db", "text.json", "copy.txt", "a", "a/b", "a/b/c"}


def test_a_new_file_never_replaces_or_follows_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_text("kept")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere.txt")
    for name in ("kept.txt", "link"):
        with pytest.raises(FileExistsError):
            open_new(tmp_path / name, "w")
    assert (tmp_path / "kept.txt").read_text() == "kept" and not (tmp_path / "elsewhere.txt").exists()
    create_file(tmp_path / "kept.txt", exist_ok=True)
    assert (tmp_path / "kept.txt").read_text() == "kept"


# --- every command -----------------------------------------------------------------------------


def test_every_command_creates_only_private_files_and_folders(
    private_source: Path, tmp_path: Path, loose_umask: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    source = str(private_source)
    target, archive = str(out / "target.db"), str(out / "nested" / "archive")
    out.mkdir(mode=0o700)
    for argv in (
        ["fabricate", str(out / "fabricated.db"), "--checkpoints", "2", "--sessions", "5"],
        ["migrate", "--source", source, "--target", target],
        ["migrate", "--source", source, "--target", f"sqlite:///{out / 'url-target.db'}"],
        ["verify", "--source", source, "--target", target, "--report", str(out / "report.json")],
        ["archive", "--source", source, "--out", archive],
        ["restore", "--archive", archive, "--out", str(out / "from-archive.db")],
        ["restore", "--target", target, "--out", str(out / "from-target.db")],
        ["export", "--target", target, "--out", str(out / "export.jsonl")],
        ["cleanup", "--source", source, "--target", target, "--archive", archive],
        ["demo", "--dir", str(out / "demo" / "here"), "--checkpoints", "2", "--sessions", "20"],
    ):
        assert main(argv) == 0, argv
    capsys.readouterr()
    created = modes_under(out)
    assert {"target.db", "nested/archive/manifest.json", "export.jsonl", "demo/here/restored.db"} <= set(created)
    assert not_private(created, out) == {}
    assert mode(private_source) == 0o600


def test_library_functions_create_private_files_without_the_cli(
    private_source: Path, tmp_path: Path, loose_umask: None
) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    with LegacySource(private_source) as source, target_database(out / "target.db") as database:
        backfill(source, database)
        live = [out / "target.db", sidecar(out / "target.db", "wal"), sidecar(out / "target.db", "shm")]
        assert {path.name: oct(mode(path)) for path in live} == {path.name: "0o600" for path in live}
        write_archive(source, out / "archive")
        restore(database, out / "restored.db")
        export(database, out / "export.jsonl")
    restore_archive(out / "archive", out / "from-archive.db")
    write_signoff(out / "signoff", SIGNOFF)
    run_demo(out / "demo", checkpoints=1, sessions=5, seed=1)
    created = modes_under(out)
    assert {"archive", "archive/checkpoints.jsonl.gz", "signoff/signoff.md", "demo/relational.db"} <= set(created)
    assert not_private(created, out) == {}


SIGNOFF: dict[str, Any] = {  # the least signoff_markdown reads
    "verdict": "PASS",
    "checks": [],
    "snapshot": {"path": "s", "sha256": "0", "wal_sha256": None},
    "target": {"location": "scratch", "scratch": True},
    "migration": None,
    "tool": {"version": "0", "commit": None, "local_changes": None},
    "generated_at": "now",
    "signed": {"host": "h", "user": "u", "at": "now"},
    "quarantine": None,
    "accepted_quarantine_file": None,
    "accepted_quarantine_sha256": None,
}


def test_the_private_copy_of_a_snapshot_is_private(private_source: Path, tmp_path: Path, loose_umask: None) -> None:
    """A WAL with no -shm index is read from a copy: the copy is 0600 in a 0700 folder."""
    wal_source = tmp_path / "wal" / "legacy.db"
    wal_source.parent.mkdir()
    with sqlite3.connect(private_source) as daemon:
        daemon.execute("PRAGMA journal_mode = wal")
        daemon.execute("PRAGMA wal_autocheckpoint = 0")
        daemon.execute("UPDATE mcp_sessions SET last_seen = last_seen")
        for name in ("", "-wal"):
            Path(f"{wal_source}{name}").write_bytes(Path(f"{private_source}{name}").read_bytes())
    daemon.close()
    with LegacySource(wal_source) as source:
        copy = Path(source.connection.execute("PRAGMA database_list").fetchone()[2])
        assert copy.parent != wal_source.parent
        assert {path.name: oct(mode(path)) for path in (copy, copy.parent, sidecar(copy, "wal"))} == {
            copy.name: "0o600",
            copy.parent.name: "0o700",
            f"{copy.name}-wal": "0o600",
        }
