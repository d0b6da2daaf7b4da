"""Phase 4: the archive of the legacy tables, the cleanup that drops them only after proving the
archive and the target complete, and the restore from the archive."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migrator import open_store
from migrator.archive import ArchivedTable, Manifest, RowTally, check_archive, parse_line, tally
from migrator.cleanup import RESTORES, SCRATCH_PREFIX, Check, execute_cleanup, plan_cleanup
from migrator.cli import main
from migrator.codec import InvalidText
from migrator.errors import ArchiveCorrupt, CleanupRefused, LegacyUnavailable
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import MCP_SESSIONS, LegacySource, file_sha256, snapshot_hashes
from migrator.legacy_copy import compare_legacy_files
from migrator.models import Checkpoint, McpSessionTool
from migrator.target import target_database
from tests.conftest import SnapshotFactory
from verification.snapshots import checkpoint_row, session_row

TABLES = ["checkpoints", "mcp_sessions"]


@dataclass
class Migrated:
    legacy: Path
    target: Path
    archive: Path


def cli(*argv: str | Path) -> int:
    return main([str(arg) for arg in argv])


@pytest.fixture
def migrated(tmp_path: Path) -> Migrated:
    """A fabricated legacy snapshot (odd rows included), migrated to a separate target, archived."""
    paths = Migrated(tmp_path / "legacy.db", tmp_path / "target.db", tmp_path / "archive")
    fabricate_snapshot(paths.legacy, checkpoints=8, sessions=30, unreadable=4, seed=7)
    assert cli("migrate", "--source", paths.legacy, "--target", paths.target) == 0
    assert cli("archive", "--source", paths.legacy, "--out", paths.archive) == 0
    return paths


def manifest_of(archive: Path) -> dict:
    return json.loads((archive / "manifest.json").read_text())


def rewrite_manifest(archive: Path, change: Callable[[dict], None]) -> None:
    manifest = manifest_of(archive)
    change(manifest)
    (archive / "manifest.json").write_text(json.dumps(manifest))


def cleanup(paths: Migrated, *extra: str) -> int:
    return cli("cleanup", "--source", paths.legacy, "--target", paths.target, "--archive", paths.archive, *extra)


def legacy_tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    return [name for name in TABLES if name in names]


# --- the archive ------------------------------------------------------------------------------


def test_archive_keeps_counts_sha256_values_and_the_schema(migrated: Migrated) -> None:
    manifest = manifest_of(migrated.archive)
    with LegacySource(migrated.legacy) as source:
        counts = {table.name: source.count(table) for table in source.tables}
        schema = source.schema()
    assert {name: entry["rows"] for name, entry in manifest["tables"].items()} == counts
    assert manifest["schema"]["statements"] == schema.statements
    assert manifest["schema"]["sequences"] == schema.sequences == {"checkpoints": schema.sequences["checkpoints"]}
    for entry in manifest["tables"].values():
        assert file_sha256(migrated.archive / entry["file"]) == entry["sha256"]


def test_archive_lines_keep_the_rowid_and_every_storage_type(snapshot_factory: SnapshotFactory, tmp_path: Path) -> None:
    legacy = snapshot_factory(
        [checkpoint_row(3, InvalidText(b'{"a": "\xff"}'), timestamp=b"\x00raw")],
        [session_row(7, "k", {"agent_id": "a"}, last_seen=17.25), session_row(9, b"key", "{}", last_seen=5)],
    )
    assert cli("archive", "--source", legacy, "--out", tmp_path / "archive") == 0
    lines = {}
    for table in TABLES:
        with gzip.open(tmp_path / "archive" / f"{table}.jsonl.gz", "rt") as handle:
            lines[table] = [json.loads(line) for line in handle]
    assert lines["checkpoints"] == [
        {
            "rowid": 3,
            "id": 3,
            "timestamp": {"$sqlite": "blob", "value": "00726177"},
            "checkpoint_data": {"$sqlite": "text-bytes", "value": b'{"a": "\xff"}'.hex()},
        }
    ]
    assert lines["mcp_sessions"] == [
        {
            "rowid": 7,
            "session_key": "k",
            "session_data": '{"agent_id": "a"}',
            "last_seen": {"$sqlite": "real", "value": "17.25"},
        },
        {"rowid": 9, "session_key": {"$sqlite": "blob", "value": "6b6579"}, "session_data": "{}", "last_seen": 5},
    ]
    assert cli("restore", "--archive", tmp_path / "archive", "--out", tmp_path / "restored.db") == 0
    assert compare_legacy_files(legacy, tmp_path / "restored.db", TABLES) == []


def test_the_same_rows_give_a_byte_identical_archive(migrated: Migrated, tmp_path: Path) -> None:
    assert cli("archive", "--source", migrated.legacy, "--out", tmp_path / "again") == 0
    first, second = manifest_of(migrated.archive)["tables"], manifest_of(tmp_path / "again")["tables"]
    assert {n: (e["sha256"], e["checksum"]) for n, e in first.items()} == {
        n: (e["sha256"], e["checksum"]) for n, e in second.items()
    }


def test_archive_refuses_an_existing_folder(migrated: Migrated, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("archive", "--source", migrated.legacy, "--out", migrated.archive) == 2
    assert "refusing to overwrite existing archive folder" in capsys.readouterr().err


def test_restore_from_the_archive_is_exact(migrated: Migrated, tmp_path: Path) -> None:
    restored = tmp_path / "restored.db"
    assert cli("restore", "--archive", migrated.archive, "--out", restored) == 0
    assert compare_legacy_files(migrated.legacy, restored, TABLES) == []
    with LegacySource(migrated.legacy) as original, LegacySource(restored) as copy:
        assert copy.schema() == original.schema()


def test_restore_refuses_a_damaged_archive_and_writes_nothing(migrated: Migrated, tmp_path: Path) -> None:
    data = migrated.archive / "checkpoints.jsonl.gz"
    data.write_bytes(data.read_bytes()[:-40])
    with pytest.raises(ArchiveCorrupt, match=r"checkpoints\.jsonl\.gz: sha256 differs"):
        check_archive(migrated.archive)
    assert cli("restore", "--archive", migrated.archive, "--out", tmp_path / "restored.db") == 2
    assert list(tmp_path.glob("restored.db*")) == []


@pytest.mark.parametrize("argv", [[], ["--target", "t.db", "--archive", "a"]])
def test_restore_takes_exactly_one_of_target_and_archive(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "--out", "x.db", *argv])
    assert exit_info.value.code == 2
    assert "--target" in capsys.readouterr().err


# --- cleanup ----------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(migrated: Migrated, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot_hashes(migrated.legacy)
    assert cleanup(migrated, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count("[ok]") == 5
    assert "[ok] archive restores the source exactly: 42 rows restored into a scratch copy in " in out
    assert 'would run: DROP TABLE "checkpoints"' in out and "nothing was changed" in out
    assert snapshot_hashes(migrated.legacy) == before
    assert sorted(path.name for path in migrated.target.parent.iterdir()) == ["archive", "legacy.db", "target.db"]


def test_cleanup_drops_the_legacy_tables_and_the_store_then_refuses_to_recreate_them(
    migrated: Migrated, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cleanup(migrated) == 0
    assert 'ran: DROP TABLE "mcp_sessions"' in capsys.readouterr().out
    assert legacy_tables(migrated.legacy) == []
    with pytest.raises(LegacyUnavailable, match="cleanup dropped the legacy tables"):
        open_store(migrated.target, legacy=migrated.legacy, mode="dual_write")
    assert legacy_tables(migrated.legacy) == []


def damage_remove_manifest(paths: Migrated) -> None:
    (paths.archive / "manifest.json").unlink()


def damage_remove_a_table_file(paths: Migrated) -> None:
    (paths.archive / "mcp_sessions.jsonl.gz").unlink()


def damage_lose_the_last_row(paths: Migrated) -> None:
    """An archive cut short, with a manifest whose sha256 was taken after the cut."""
    data = paths.archive / "checkpoints.jsonl.gz"
    lines = gzip.decompress(data.read_bytes()).splitlines(keepends=True)
    data.write_bytes(gzip.compress(b"".join(lines[:-1])))
    rewrite_manifest(paths.archive, lambda m: m["tables"]["checkpoints"].update(sha256=file_sha256(data)))


def damage_change_an_archived_byte(paths: Migrated) -> None:
    data = paths.archive / "checkpoints.jsonl.gz"
    text = gzip.decompress(data.read_bytes()).replace(b'"timestamp": "', b'"timestamp": "X', 1)
    data.write_bytes(gzip.compress(text))


def damage_change_a_source_row(paths: Migrated) -> None:
    """The daemon rewrote a session after the archive (same count); the target caught up."""
    with closing(sqlite3.connect(paths.legacy)) as daemon, daemon:
        first = "(SELECT min(rowid) FROM mcp_sessions)"
        daemon.execute(f"UPDATE mcp_sessions SET last_seen = '2031-01-01T00:00:00' WHERE rowid = {first}")
    assert cli("migrate", "--source", paths.legacy, "--target", paths.target) == 0


def damage_remove_a_relational_row(paths: Migrated) -> None:
    with target_database(paths.target):
        assert McpSessionTool.delete().where(McpSessionTool.position == 0).limit(1).execute() == 1


def damage_remove_a_relational_checkpoint(paths: Migrated) -> None:
    with target_database(paths.target):
        victim = Checkpoint.select(Checkpoint.id).order_by(Checkpoint.id).first()
        assert Checkpoint.delete().where(Checkpoint.id == victim.id).execute() == 1


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (damage_remove_manifest, "archive complete and readable: archive has no manifest.json"),
        (damage_remove_a_table_file, "archive complete and readable: archive lacks mcp_sessions.jsonl.gz"),
        (damage_lose_the_last_row, "checkpoints.jsonl.gz holds 9 rows; the manifest counts 10"),
        (damage_change_an_archived_byte, "archive complete and readable: checkpoints.jsonl.gz: sha256 differs"),
        (damage_change_a_source_row, "archive matches the source: mcp_sessions: row checksum differs"),
        (damage_remove_a_relational_row, "target holds every source row exactly: 1 source row(s) not held exactly"),
        (
            damage_remove_a_relational_checkpoint,
            "target holds every source row exactly: 1 source row(s) not held exactly",
        ),
    ],
)
def test_cleanup_refuses_explains_and_changes_nothing(
    migrated: Migrated, capsys: pytest.CaptureFixture[str], damage: Callable[[Migrated], None], reason: str
) -> None:
    damage(migrated)
    capsys.readouterr()
    before = snapshot_hashes(migrated.legacy)
    assert cleanup(migrated) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ksi-migrate: error: cleanup refused, nothing was changed: ")
    assert reason in err[0]
    assert snapshot_hashes(migrated.legacy) == before
    assert legacy_tables(migrated.legacy) == TABLES
    assert cleanup(migrated, "--dry-run") == 1  # the dry run shows the same failed check
    assert "[FAILED]" in capsys.readouterr().out
    # A script that asked for JSON gets one document saying why, as well as the line on stderr.
    assert cleanup(migrated, "--json") == 2
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert (document["error_type"], document["exit_code"]) == ("CleanupRefused", 2)
    assert reason in document["error"] and f"ksi-migrate: error: {document['error']}" == captured.err.strip()
    assert legacy_tables(migrated.legacy) == TABLES


def test_cleanup_refuses_when_the_source_changes_between_the_checks_and_the_drop(migrated: Migrated) -> None:
    with target_database(migrated.target) as database:
        plan = plan_cleanup(migrated.legacy, database, migrated.archive)
        assert plan.ready
        with closing(sqlite3.connect(migrated.legacy)) as daemon, daemon:
            daemon.execute("INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES ('t', '{}')")
        with pytest.raises(
            CleanupRefused, match="the source changed since the checks: checkpoints: the source has 11 rows"
        ):
            execute_cleanup(plan, database)
    assert legacy_tables(migrated.legacy) == TABLES


# --- a manifest is data, never code -------------------------------------------------------------


def attack_attach_a_database(paths: Migrated) -> str:
    """The manifest's DDL would create a file elsewhere on disk."""
    outside = paths.archive.parent / "elsewhere" / "PWNED.db"
    outside.parent.mkdir()
    attach = [f"ATTACH DATABASE '{outside}' AS pwn", "CREATE TABLE pwn.owned(x)"]
    rewrite_manifest(paths.archive, lambda m: m["schema"]["statements"].extend(attach))
    return f"manifest.json refused: schema.statements[2] \"ATTACH DATABASE '{str(outside)[:40]}"


def attack_file_outside_the_folder(paths: Migrated) -> str:
    """A table file two folders up, with the sha256 the manifest gives for it."""
    outside = paths.archive.parent.parent / "outside.jsonl.gz"
    outside.write_bytes((paths.archive / "checkpoints.jsonl.gz").read_bytes())
    rewrite_manifest(paths.archive, lambda m: m["tables"]["checkpoints"].update(file="../../outside.jsonl.gz"))
    return "manifest.json refused: tables.checkpoints.file '../../outside.jsonl.gz': not a plain file name"


def attack_absolute_path(paths: Migrated) -> str:
    rewrite_manifest(paths.archive, lambda m: m["tables"]["mcp_sessions"].update(file="/etc/hostname"))
    return "manifest.json refused: tables.mcp_sessions.file '/etc/hostname': an absolute path"


def link_to_a_copy_outside(path: Path) -> None:
    """Move `path` out of the archive folder, and leave a symbolic link to it in its place."""
    outside = path.parent.parent / path.name
    path.rename(outside)
    path.symlink_to(outside)


def attack_link_leading_outside(paths: Migrated) -> str:
    """A plain name in the manifest, but the file is a symbolic link to a file outside the folder."""
    link_to_a_copy_outside(paths.archive / "checkpoints.jsonl.gz")
    return "tables.checkpoints.file 'checkpoints.jsonl.gz': a symbolic link to a file outside the archive folder"


def attack_manifest_link_leading_outside(paths: Migrated) -> str:
    link_to_a_copy_outside(paths.archive / "manifest.json")
    return "manifest.json: a symbolic link to a file outside the archive folder"


@pytest.fixture
def deep_archive(migrated: Migrated) -> Migrated:
    """The archive two folders down, so that `../../` stays inside the test's folder."""
    deep = migrated.archive.parent / "deep" / "er" / "archive"
    deep.parent.mkdir(parents=True)
    migrated.archive.rename(deep)
    return Migrated(migrated.legacy, migrated.target, deep)


@pytest.mark.parametrize(
    "attack",
    [
        attack_attach_a_database,
        attack_file_outside_the_folder,
        attack_absolute_path,
        attack_link_leading_outside,
        attack_manifest_link_leading_outside,
    ],
)
def test_a_tampered_manifest_is_refused_by_restore_and_cleanup_which_drop_and_create_nothing(
    deep_archive: Migrated, tmp_path: Path, capsys: pytest.CaptureFixture[str], attack: Callable[[Migrated], str]
) -> None:
    expected = attack(deep_archive)
    capsys.readouterr()
    listing = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    before = snapshot_hashes(deep_archive.legacy)
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").is_file() else None

    assert cli("restore", "--archive", deep_archive.archive, "--out", tmp_path / "restored.db") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ksi-migrate: error: ") and expected in err
    assert cleanup(deep_archive) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cleanup refused, nothing was changed: archive complete and readable: " in err
    assert expected in err
    assert cleanup(deep_archive, "--dry-run") == 1

    assert legacy_tables(deep_archive.legacy) == TABLES
    assert snapshot_hashes(deep_archive.legacy) == before
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == listing  # nothing created
    if hostname:
        assert hostname not in capsys.readouterr().out + err  # never opened, so never shown


# --- defence in depth: the archive restored into a scratch copy and compared row by row ----------


def reseal_with_one_changed_row(paths: Migrated) -> None:
    """An archive whose one session row was changed after it was written, and whose manifest was
    then made to agree with it (the file's sha256 and the row checksum): consistent on its own,
    so only a comparison with the source can tell."""
    data = paths.archive / "mcp_sessions.jsonl.gz"
    lines = gzip.decompress(data.read_bytes()).decode("ascii").splitlines(keepends=True)
    record = json.loads(lines[0])
    record["last_seen"] = "2031-01-01T00:00:00"
    lines[0] = json.dumps(record) + "\n"
    data.write_bytes(gzip.compress("".join(lines).encode("ascii"), mtime=0))
    rows = [parse_line(MCP_SESSIONS, line.rstrip("\n")) for line in lines]
    resealed = {"sha256": file_sha256(data), "checksum": tally(rows).checksum}
    rewrite_manifest(paths.archive, lambda m: m["tables"]["mcp_sessions"].update(resealed))


def checks_of(paths: Migrated) -> dict[str, Check]:
    with target_database(paths.target) as database:
        return {check.name: check for check in plan_cleanup(paths.legacy, database, paths.archive).checks}


def test_a_resealed_archive_is_refused_by_the_checksums_and_by_the_scratch_restore(migrated: Migrated) -> None:
    reseal_with_one_changed_row(migrated)
    before = snapshot_hashes(migrated.legacy)

    checks = checks_of(migrated)

    assert checks["archive complete and readable"].passed  # consistent on its own
    assert not checks["archive matches the source"].passed
    restored = checks[RESTORES]
    assert not restored.passed
    assert restored.detail.startswith("1 row(s) of the restored copy differ from the source, e.g. mcp_sessions ")
    assert "(rowid 1): rebuilt legacy row differs from the source row" in restored.detail
    assert cleanup(migrated) == 2
    assert legacy_tables(migrated.legacy) == TABLES and snapshot_hashes(migrated.legacy) == before


def test_with_the_checksum_comparison_gone_the_scratch_restore_alone_refuses_a_resealed_archive(
    migrated: Migrated, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fault that drops the comparison of row checksums (counts only) lets the archive pass its
    second check; the drop is still refused, by the restore, naming the row."""
    from migrator import cleanup as cleanup_module

    def counts_only(table: str, found: RowTally, archived: ArchivedTable) -> list[str]:
        return [] if found.rows == archived.rows else [f"{table}: counts differ"]

    monkeypatch.setattr(cleanup_module, "tally_differences", counts_only)
    reseal_with_one_changed_row(migrated)
    before = snapshot_hashes(migrated.legacy)

    checks = checks_of(migrated)

    assert checks["archive matches the source"].passed  # blind, by the fault
    assert not checks[RESTORES].passed and "mcp_sessions " in checks[RESTORES].detail
    capsys.readouterr()
    assert cleanup(migrated) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cleanup refused, nothing was changed: {RESTORES}: 1 row(s)" in err
    assert legacy_tables(migrated.legacy) == TABLES and snapshot_hashes(migrated.legacy) == before


def test_the_scratch_copy_is_private_and_removed(migrated: Migrated, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrator import cleanup as cleanup_module

    seen: list[tuple[int, int]] = []
    original = cleanup_module.write_archived_tables

    def spying(folder: Path, manifest: Manifest, out: Path, **kwargs: Any) -> dict[str, int]:
        written = original(folder, manifest, out, **kwargs)
        seen.append((out.parent.stat().st_mode & 0o777, Path(out).stat().st_mode & 0o777))
        assert out.parent.parent == migrated.target.parent  # beside the target
        return written

    monkeypatch.setattr(cleanup_module, "write_archived_tables", spying)
    assert checks_of(migrated)[RESTORES].passed
    assert seen == [(0o700, 0o600)]
    assert not list(migrated.target.parent.glob(f"{SCRATCH_PREFIX}*"))


SMALL_DISK = "8m"
ROOM_TO_OPEN_THE_TARGET = 96 * 1024  # its -wal and -shm, and little more


def test_a_full_disk_under_the_scratch_copy_is_one_line_and_drops_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target on a small file system, filled up: the scratch copy beside it cannot be written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(disk)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (root needed): {mounted.stderr.decode().strip()}")
    try:
        paths = Migrated(tmp_path / "legacy.db", disk / "target.db", tmp_path / "archive")
        fabricate_snapshot(paths.legacy, checkpoints=4, sessions=200, seed=3)
        assert cli("migrate", "--source", paths.legacy, "--target", paths.target) == 0
        assert cli("archive", "--source", paths.legacy, "--out", paths.archive) == 0
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # the rest of the disk
        with contextlib.suppress(OSError):
            while os.write(filler, b"\0" * 4096):
                pass
        os.ftruncate(filler, os.fstat(filler).st_size - ROOM_TO_OPEN_THE_TARGET)
        os.close(filler)
        assert paths.legacy.stat().st_size > 2 * ROOM_TO_OPEN_THE_TARGET  # no room for a copy of it
        capsys.readouterr()
        before = snapshot_hashes(paths.legacy)
        assert cleanup(paths) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{RESTORES}: the archive could not be restored into a scratch copy" in err
        assert "no space left on the device" in err or "the disk is full" in err, err
        assert legacy_tables(paths.legacy) == TABLES and snapshot_hashes(paths.legacy) == before
        assert not list(disk.glob(f"{SCRATCH_PREFIX}*"))  # the scratch folder is gone
        (disk / "filler").unlink()
        assert cleanup(paths) == 0  # with room again, the same archive is restored, compared and trusted
        assert legacy_tables(paths.legacy) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
