"""The source is never touched, even without its sidecars: a WAL-mode snapshot copied without its
-wal and -shm, with a -wal and no -shm, or with a -shm and no -wal, in a writable folder, a
read-only folder or on a read-only mount, is read without creating or changing any file beside it,
and gives the same rows as the same bytes read by SQLite anywhere else."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from migrator.cli import main
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource, is_wal_mode
from migrator.legacy_copy import compare_legacy_files
from tests.test_gate import LIMITS_OUT_OF_REACH, WITHOUT_FAKER

GATE_TESTS = Path(__file__).resolve().parents[1] / "verification" / "gate" / "test_signoff.py"
TABLES = ["checkpoints", "mcp_sessions"]
SIDECAR_SETS = {"no sidecars": (), "a -wal, no -shm": ("-wal",), "a -shm, no -wal": ("-shm",)}


def folder_state(folder: Path) -> dict[str, str]:
    """Every file beside the snapshot, with its sha256: what must not change."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def live_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fabricated legacy database in WAL mode, held open with rows only in its WAL, like the
    daemon's: copies of its files are snapshots with or without each sidecar."""
    live = tmp_path_factory.mktemp("live") / "ksi.db"
    fabricate_snapshot(live, checkpoints=4, sessions=14, seed=11)  # no unreadable rows: the gate passes
    daemon = sqlite3.connect(live, isolation_level=None)
    daemon.execute("PRAGMA journal_mode = wal")
    daemon.execute("PRAGMA wal_autocheckpoint = 0")
    daemon.execute("UPDATE mcp_sessions SET last_seen = '2031-01-01T00:00:00' WHERE rowid % 2 = 0")
    daemon.execute("DELETE FROM checkpoints WHERE rowid = (SELECT min(rowid) FROM checkpoints)")
    try:
        yield live
    finally:
        daemon.close()


def copy_snapshot(live: Path, folder: Path, sidecars: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *sidecars):
        shutil.copyfile(f"{live}{suffix}", folder / f"legacy.db{suffix}")
    return folder / "legacy.db"


def reference_copy(snapshot: Path, folder: Path) -> Path:
    """The same bytes in a writable folder of their own, for SQLite to read as it likes."""
    folder.mkdir()
    for path in snapshot.parent.iterdir():
        shutil.copyfile(path, folder / path.name)
    return folder / snapshot.name


# --- read-only folders and mounts --------------------------------------------------------------


def mount_read_only(folder: Path, fill: Callable[[Path], object]) -> Callable[[], None] | None:
    """`folder` as a new tmpfs filled by `fill`, then remounted read-only; returns how to unmount it,
    or None where mounting is not allowed."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        return None

    def unmount() -> None:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # a reader still open: detach

    try:
        fill(folder)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
    except BaseException:
        unmount()
        raise
    return unmount


@pytest.fixture(params=["read-only mount", "read-only folder"])
def read_only_place(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[Callable[[Path], object]], Path]]:
    """Makes a read-only folder filled by a function. Tests run as root here, which ignores
    permission bits, so the folder's listing and sha256 values are what each test compares; a
    read-only mount (tmpfs remounted `ro`, where allowed) also makes any write fail."""
    undo: list[Callable[[], None]] = []

    def make(fill: Callable[[Path], object]) -> Path:
        folder = tmp_path / "read-only"
        if request.param == "read-only mount":
            unmount = mount_read_only(folder, fill)
            if unmount is None:
                pytest.skip("mounting a tmpfs is not allowed here; the read-only folder case still runs")
            undo.append(unmount)
        else:
            folder.mkdir()
            fill(folder)
            for path in folder.iterdir():
                path.chmod(0o444)
            folder.chmod(0o555)
            undo.append(lambda: folder.chmod(0o755))
        return folder

    try:
        yield make
    finally:
        for step in undo:
            step()


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sidecars", SIDECAR_SETS.values(), ids=SIDECAR_SETS.keys())
def test_a_copied_wal_snapshot_is_read_without_a_file_created_beside_it(
    live_database: Path, tmp_path: Path, sidecars: tuple[str, ...]
) -> None:
    snapshot = copy_snapshot(live_database, tmp_path / "snapshot", sidecars)
    assert is_wal_mode(snapshot)
    reference = reference_copy(snapshot, tmp_path / "reference")
    before = folder_state(snapshot.parent)
    with LegacySource(snapshot) as source:
        rows = {table.name: [row for batch in source.batches(table, 100) for row in batch] for table in source.tables}
    with closing(sqlite3.connect(reference)) as sqlite:
        columns = {
            "checkpoints": "id, timestamp, checkpoint_data",
            "mcp_sessions": "session_key, session_data, last_seen",
        }
        expected = {
            name: sqlite.execute(f"SELECT rowid, {columns[name]} FROM {name} ORDER BY rowid").fetchall()
            for name in TABLES
        }
    assert rows == expected
    assert folder_state(snapshot.parent) == before


def test_a_wal_snapshot_without_sidecars_in_a_read_only_place_migrates_verifies_and_signs_off(
    live_database: Path,
    tmp_path: Path,
    read_only_place: Callable[[Callable[[Path], object]], Path],
    pytester: pytest.Pytester,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = read_only_place(lambda into: copy_snapshot(live_database, into, ()))
    snapshot = folder / "legacy.db"
    before = folder_state(folder)
    assert list(before) == ["legacy.db"] and is_wal_mode(snapshot)
    target, restored = tmp_path / "target.db", tmp_path / "restored.db"

    assert main(["migrate", "--source", str(snapshot), "--target", str(target)]) == 0
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 0
    assert main(["archive", "--source", str(snapshot), "--out", str(tmp_path / "archive")]) == 0
    assert "OK: the target holds every legacy row exactly, and rebuilds each one exactly" in capsys.readouterr().out
    assert main(["restore", "--target", str(target), "--out", str(restored)]) == 0
    gate = pytester.runpytest_subprocess(
        str(GATE_TESTS), *WITHOUT_FAKER, "--ksi-snapshot", str(snapshot), "--ksi-shard-rows", "8", *LIMITS_OUT_OF_REACH
    )

    assert gate.ret == pytest.ExitCode.OK, "\n".join(gate.outlines[-20:])
    assert (pytester.path / "signoff" / "signoff.md").read_text().startswith("PASS")
    assert folder_state(folder) == before
    reference = reference_copy(snapshot, tmp_path / "reference")
    assert compare_legacy_files(reference, restored, TABLES) == []


def test_a_wal_with_no_shm_in_a_read_only_place_is_read_from_a_private_copy(
    live_database: Path, tmp_path: Path, read_only_place: Callable[[Callable[[Path], object]], Path]
) -> None:
    folder = read_only_place(lambda into: copy_snapshot(live_database, into, ("-wal",)))
    snapshot = folder / "legacy.db"
    before = folder_state(folder)
    target, restored = tmp_path / "target.db", tmp_path / "restored.db"
    assert main(["migrate", "--source", str(snapshot), "--target", str(target)]) == 0
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 0
    assert main(["restore", "--target", str(target), "--out", str(restored)]) == 0
    assert folder_state(folder) == before
    assert compare_legacy_files(reference_copy(snapshot, tmp_path / "reference"), restored, TABLES) == []
