"""The whole life of one daemon database, phase by phase, with the daemon writing throughout:
backfill, dual write, shadow reads, relational reads, archive, cleanup, and back from the archive.

Both sides live in the one SQLite file (`ksi.db`), as they would inside the daemon.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from migrator import open_store
from migrator.cli import main
from migrator.equivalence import json_differences
from migrator.errors import UnreadableRecord
from migrator.fabricate import fabricate_snapshot
from migrator.fakes import fake_checkpoint_blob, fake_session_blob, make_faker
from migrator.legacy_copy import compare_legacy_files
from migrator.store import Store

TABLES = ["checkpoints", "mcp_sessions"]
UNREADABLE = object()  # what a read of a row that is not a JSON object must give: UnreadableRecord


class Daemon:
    """Saves checkpoints and sessions and expires sessions, as the KSI daemon does, from one seed."""

    def __init__(self, seed: int) -> None:
        self.fake, self.rng = make_faker(seed), random.Random(seed)
        self.lock = threading.Lock()  # faker and random are not thread-safe

    def next_operation(self) -> tuple[str, Any]:
        with self.lock:
            roll = self.rng.random()
            agent, conversation = f"agent-{self.rng.randrange(4)}", f"conv-{self.rng.randrange(12)}"
            if roll < 0.3:
                return "checkpoint", fake_checkpoint_blob(self.fake, self.rng)
            if roll < 0.9:
                blob = fake_session_blob(self.fake, self.rng, agent, conversation)
                return "session", (f"{agent}:{conversation}", blob, f"2025-07-01T10:{self.rng.randrange(60):02d}:00")
            return "expire", f"{agent}:{conversation}"

    def work(self, store: Store, operations: int) -> None:
        for _ in range(operations):
            name, argument = self.next_operation()
            if name == "checkpoint":
                store.save_checkpoint(argument)
            elif name == "session":
                store.save_session(*argument)
            else:
                store.delete_session(argument)


@contextmanager
def daemon_running(work: Callable[[], None], threads: int = 3) -> Iterator[None]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        running = [pool.submit(work) for _ in range(threads)]
        yield
        for future in running:
            future.result()  # a failed daemon write fails the test


def cli(*argv: str | Path) -> int:
    return main([str(arg) for arg in argv])


def legacy_blobs(path: Path) -> dict[tuple[str, Any], Any]:
    """(table, key) -> the JSON object each legacy row holds, read with sqlite3 and json alone."""
    expected: dict[tuple[str, Any], Any] = {}
    with closing(sqlite3.connect(path)) as connection:
        connection.text_factory = bytes
        rows = [("checkpoints", *row) for row in connection.execute("SELECT id, checkpoint_data FROM checkpoints")]
        rows += [
            ("mcp_sessions", *row)
            for row in connection.execute(
                "SELECT session_key, session_data FROM mcp_sessions WHERE typeof(session_key) = 'text'"
            )
        ]
    for table, key, data in rows:
        expected[(table, key.decode() if isinstance(key, bytes) else key)] = _as_blob(data)
    return expected


def _as_blob(data: Any) -> Any:
    try:
        value = json.loads(data.decode("utf-8")) if isinstance(data, bytes) else None
    except (UnicodeDecodeError, ValueError):
        return UNREADABLE
    return value if isinstance(value, dict) else UNREADABLE


def read_everything(store: Store, keys: list[tuple[str, Any]]) -> dict[tuple[str, Any], Any]:
    found: dict[tuple[str, Any], Any] = {}
    for table, key in keys:
        read = store.load_checkpoint if table == "checkpoints" else store.get_session
        try:
            found[(table, key)] = read(key)
        except UnreadableRecord:
            found[(table, key)] = UNREADABLE
    return found


def differing_blobs(expected: dict[tuple[str, Any], Any], found: dict[tuple[str, Any], Any]) -> list[str]:
    problems = []
    for where, value in expected.items():
        if value is UNREADABLE or found[where] is UNREADABLE:
            if value is not found[where]:
                problems.append(f"{where}: one side unreadable")
        else:
            problems += [f"{where} {d}" for d in json_differences(value, found[where])]
    return problems


def backup(path: Path, copy: Path) -> Path:
    """A consistent copy through SQLite's backup API, in rollback-journal mode like a snapshot."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode = delete")
    return copy


def legacy_tables_in(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:
        names = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [name for name in TABLES if name in names]


def sequences(path: Path) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT name, seq FROM sqlite_sequence WHERE name IN ('checkpoints')").fetchall()


def test_whole_life_on_one_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, archive = tmp_path / "ksi.db", tmp_path / "archive"
    fabricate_snapshot(db, checkpoints=12, sessions=60, unreadable=3, seed=11)  # the daemon's history
    daemon = Daemon(seed=11)

    # Phase 1: the daemon as it was keeps writing JSON while the backfill runs; a catch-up follows.
    with open_store(db, mode="legacy") as store, daemon_running(lambda: daemon.work(store, 15)):
        assert cli("migrate", "--source", db, "--target", db) == 0
    assert cli("migrate", "--source", db, "--target", db) == 0
    assert cli("verify", "--source", db, "--target", db) == 0

    # Phase 2: dual write from several threads, with a catch-up inside the daemon meanwhile; the
    # sides stay equal, and the catch-up finds nothing to write.
    with open_store(db, mode="dual_write") as store:
        with daemon_running(lambda: daemon.work(store, 15)):
            caught_up = store.catch_up()
        assert [table.written for table in caught_up.tables] == [0, 0]
        assert store.report().pending_repairs == []
    assert cli("verify", "--source", db, "--target", db) == 0

    # Phase 3: shadow reads of every row while the daemon writes on; not one mismatch.
    with open_store(db, mode="shadow") as store:
        keys = list(legacy_blobs(db))
        with daemon_running(lambda: daemon.work(store, 10)):
            read_everything(store, keys)
        read_everything(store, keys)
        store.wait_for_shadow_reads()
        shadow = store.report()
    assert (shadow.shadow_mismatches, shadow.shadow_errors, shadow.shadow_skipped) == (0, 0, 0), shadow.mismatches
    assert shadow.shadow_matches + shadow.shadow_stale == 2 * len(keys)

    # Phase 3, relational reads: every row served by the relational rows, equal to the JSON.
    with open_store(db, mode="relational") as store:
        expected = legacy_blobs(db)
        assert differing_blobs(expected, read_everything(store, list(expected))) == []
        assert store.report().fallbacks == 0
    assert cli("verify", "--source", db, "--target", db) == 0

    # Phase 4, with the daemon stopped: archive, a dry run, cleanup.
    before = backup(db, tmp_path / "before-cleanup.db")
    assert cli("archive", "--source", db, "--out", archive) == 0
    assert cli("cleanup", "--source", db, "--target", db, "--archive", archive, "--dry-run") == 0
    assert legacy_tables_in(db) == TABLES
    assert cli("cleanup", "--source", db, "--target", db, "--archive", archive) == 0
    assert legacy_tables_in(db) == []
    assert "dropped checkpoints, mcp_sessions" in capsys.readouterr().out

    # The daemon restarts relational_only: the same data, and ids that go on where the JSON stopped.
    with open_store(db, mode="relational_only") as store:
        assert differing_blobs(expected, read_everything(store, list(expected))) == []
        assert store.save_checkpoint({"reason": "dev"}) == sequences(before)[0][1] + 1

    # Rollback from the archive: the legacy tables exactly as they were before cleanup.
    restored = tmp_path / "restored.db"
    assert cli("restore", "--archive", archive, "--out", restored) == 0
    assert compare_legacy_files(before, restored, TABLES) == []
    assert sequences(restored) == sequences(before)
