"""`migrate --jobs N`: blobs parsed in worker processes, the same target as one process writes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from migrator import parallel, staging
from migrator.backfill import backfill
from migrator.cli import main
from migrator.errors import WorkerFailed
from migrator.fabricate import fabricate_snapshot
from migrator.kinds import KINDS
from migrator.legacy import ROWID, LegacySource, LegacyTable
from migrator.status import LAST_MIGRATE_KEY
from migrator.target import target_database
from verification.snapshots import session_row

UNREADABLE = 12  # more than one lap of the catalogue's unreadable kinds, spread over both tables


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "legacy.db"
    fabricate_snapshot(path, checkpoints=60, sessions=900, seed=18, unreadable=UNREADABLE)
    return path


def migrate(snapshot: Path, target: Path, *options: str) -> int:
    return main(["migrate", "--source", str(snapshot), "--target", str(target), *options])


def every_row(target: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in rowid order (the order they were written in), each cell as its
    storage type and SQL literal, so that 1 and 1.0, or text and blob, never compare equal."""
    with sqlite3.connect(target) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        contents = {}
        for table in tables:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            cells = ", ".join(f'typeof("{column}"), quote("{column}")' for column in columns)
            rows = connection.execute(f'SELECT rowid, {cells} FROM "{table}" ORDER BY rowid').fetchall()
            if table == "ksi_migration_meta":  # the last migrate's record says when it ran: it differs by design
                rows = [row for row in rows if f"'{LAST_MIGRATE_KEY}'" not in row]
            contents[table] = rows
    return contents


def test_two_workers_write_exactly_the_tables_one_process_writes(snapshot: Path, tmp_path: Path) -> None:
    # Small batches, so that several are in flight at once and the order they come back in matters.
    assert migrate(snapshot, tmp_path / "one.db", "--jobs", "1", "--batch-size", "37") == 0
    assert migrate(snapshot, tmp_path / "two.db", "--jobs", "2", "--batch-size", "37") == 0
    one, two = every_row(tmp_path / "one.db"), every_row(tmp_path / "two.db")
    assert sorted(one) == sorted(two)
    for table in one:
        assert one[table] == two[table], f"{table} differs between --jobs 1 and --jobs 2"
    assert len(one["mcp_session_tool"]) > 900  # the comparison saw real rows, not two empty targets


@pytest.fixture
def mapped_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch this process maps itself (a worker's calls happen in its own process)."""
    sizes: list[int] = []
    map_batch = parallel.map_batch

    def counted(kind_name: str, batch: list[Any], staging: Any = None) -> parallel.MappedBatch:
        sizes.append(len(batch))
        return map_batch(kind_name, batch, staging)

    monkeypatch.setattr(parallel, "map_batch", counted)
    return sizes


def test_while_the_workers_start_this_process_maps_and_the_tables_are_the_same(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting a worker takes a third of a second or more: the writer does not wait for it, and
    once it is up the worker takes its share. Here it takes half a second more to start, and
    this process takes a fifth of a second a batch (26 of them), so both have work to do."""
    start, map_here, copy = parallel._Worker.start, parallel.map_batch, staging.StagedTables.insert_into
    written_from: list[str] = []  # who mapped each batch, in the order they are written

    def slow_start(context: Any) -> parallel._Worker:
        time.sleep(0.5)
        return start(context)

    def slow_map_here(*task: Any) -> parallel.MappedBatch:
        time.sleep(0.2)
        written_from.append("here")  # mapped here, and written before the next is read
        return map_here(*task)

    def copied(self: staging.StagedTables, *args: Any) -> None:
        written_from.append("worker")
        copy(self, *args)

    monkeypatch.setattr(parallel._Worker, "start", slow_start)
    monkeypatch.setattr(parallel, "map_batch", slow_map_here)
    monkeypatch.setattr(staging.StagedTables, "insert_into", copied)
    assert migrate(snapshot, tmp_path / "one.db", "--jobs", "1", "--batch-size", "37") == 0
    written_from.clear()
    assert migrate(snapshot, tmp_path / "two.db", "--jobs", "2", "--batch-size", "37") == 0
    assert written_from[:2] == ["here", "here"], "this process waited for the worker instead of mapping"
    assert "worker" in written_from, "the worker never took a batch once it was up"
    assert every_row(tmp_path / "one.db") == every_row(tmp_path / "two.db")


def test_a_worker_that_cannot_start_leaves_its_share_to_this_process_with_a_warning(
    snapshot: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mapped_here: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def cannot_start(context: Any) -> parallel._Worker:
        raise OSError(11, "Resource temporarily unavailable")  # fork's EAGAIN: a process limit reached

    monkeypatch.setattr(parallel._Worker, "start", cannot_start)
    with caplog.at_level(logging.WARNING, logger="migrator.parallel"):
        assert migrate(snapshot, tmp_path / "t.db", "--jobs", "2", "--batch-size", "37") == 0
    with LegacySource(snapshot) as source:
        assert sum(mapped_here) == sum(source.count(table) for table in source.tables)  # every row, mapped here
    assert [record.getMessage() for record in caplog.records] == [
        "cannot start a worker process ([Errno 11] Resource temporarily unavailable): "
        "its share is mapped by the others or here"
    ]
    assert main(["verify", "--source", str(snapshot), "--target", str(tmp_path / "t.db")]) == 0


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The row counts of each staged batch the writer copies (in this process: the writer's)."""
    copied: list[list[int]] = []
    insert_into = staging.StagedTables.insert_into

    def counted(self: staging.StagedTables, *args: Any) -> None:
        copied.append(self.counts)
        insert_into(self, *args)

    monkeypatch.setattr(staging.StagedTables, "insert_into", counted)
    return copied


def _left_in(temporary: Path) -> list[str]:
    """What a run left in TMPDIR, but for the folder of multiprocessing's own forkserver
    (`pymp-*`), made there when this test is the first to start it and removed at exit."""
    return sorted(path.name for path in temporary.iterdir() if not path.name.startswith("pymp-"))


def test_workers_stage_their_rows_for_a_sqlite_target_and_leave_no_file(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: list[list[int]]
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the run's staging folder goes
    target = tmp_path / "t.db"
    assert migrate(snapshot, target, "--jobs", "2", "--batch-size", "37") == 0
    assert copies, "no batch was staged by a worker"
    assert _left_in(temporary) == []  # every staging file, and the folder, removed
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 0


def test_the_staging_folder_of_a_killed_run_is_removed_by_the_next_and_no_live_one(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed with SIGKILL cannot remove its staging folder, which holds session data. The
    next run that stages removes it once its process is gone and it has been idle for a while;
    a folder whose run is alive, or was touched just now, or that no run of this tool made, stays."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    idle = time.time() - 2 * staging.IDLE_SECONDS
    folders = {
        "killed": temporary / f"{staging.FOLDER_PREFIX}{killed.pid}-abc_123",
        "killed just now": temporary / f"{staging.FOLDER_PREFIX}{killed.pid}-def456",
        "alive": temporary / f"{staging.FOLDER_PREFIX}{os.getppid()}-ghi789",
        "not a run's": temporary / f"{staging.FOLDER_PREFIX}notes",
        "no process id": temporary / f"{staging.FOLDER_PREFIX}{10**30}-jkl",  # os.kill: OverflowError
        "the process group": temporary / f"{staging.FOLDER_PREFIX}0-mno",  # os.kill(0, 0) signals this group
    }
    for name, folder in folders.items():
        folder.mkdir()
        (folder / "batch-1.db").write_text("session data")
        if name != "killed just now":
            os.utime(folder, (idle, idle))
    with caplog.at_level(logging.WARNING, logger="migrator.staging"):
        assert migrate(snapshot, tmp_path / "t.db", "--jobs", "2", "--batch-size", "37") == 0
    assert _left_in(temporary) == sorted(folder.name for name, folder in folders.items() if name != "killed")
    assert [record.getMessage() for record in caplog.records] == [
        f"removed {folders['killed']}, the staging folder of an earlier run that was killed"
    ]


def test_a_staging_file_that_cannot_be_written_is_one_line_and_jobs_1_carries_on(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @contextmanager
    def gone(prefix: str) -> Iterator[str]:
        yield str(tmp_path / "no such folder")  # as a disk that refuses every new file

    monkeypatch.setattr(staging.tempfile, "TemporaryDirectory", gone)
    target = tmp_path / "t.db"
    assert migrate(snapshot, target, "--jobs", "2", "--batch-size", "37") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith("ksi-migrate: error: cannot stage rows for the writer in "), error
    assert "--jobs 1" in error
    assert migrate(snapshot, target, "--jobs", "1") == 0
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 0


def test_a_row_a_daemon_changes_while_its_batch_is_staged_is_not_written_from_the_snapshot(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: list[list[int]]
) -> None:
    source, target = tmp_path / "legacy.db", tmp_path / "t.db"
    shutil.copy(snapshot, source)
    daemon = sqlite3.connect(source, isolation_level=None)  # open throughout, as a running daemon's file is
    daemon.execute("PRAGMA journal_mode = wal")
    daemon.execute("SELECT count(*) FROM mcp_sessions")  # a read makes the -wal and -shm a live file has
    batches = LegacySource.batches
    changed: list[int] = []

    def changing_a_row_once_read(self: LegacySource, table: LegacyTable, *args: Any) -> Iterator[list[Any]]:
        for batch in batches(self, table, *args):
            if table.name == "mcp_sessions" and not changed:  # the first batch: a worker has room for it
                changed.append(batch[1][ROWID])
                daemon.execute("UPDATE mcp_sessions SET last_seen = 'later' WHERE rowid = ?", changed)
            yield batch

    monkeypatch.setattr(LegacySource, "batches", changing_a_row_once_read)
    with closing(daemon), LegacySource(source) as legacy, target_database(target) as database:
        report = backfill(legacy, database, jobs=2, batch_size=37)
    (sessions,) = [table for table in report.tables if table.table == "mcp_sessions"]
    assert sessions.changed_meanwhile == 1  # the others of that batch were mapped again and written
    # Once a daemon has written, the batches it left alone are still written as the workers staged them.
    assert len([counts for counts in copies if len(counts) == len(KINDS["mcp_sessions"].tables)]) > 10
    with sqlite3.connect(target) as connection:
        held = connection.execute("SELECT count(*) FROM mcp_session WHERE legacy_rowid = ?", changed).fetchone()
    assert held == (0,)  # the daemon's newer row is left to the next catch-up, never the snapshot's
    monkeypatch.undo()
    assert migrate(source, target, "--jobs", "2") == 0
    assert main(["verify", "--source", str(source), "--target", str(target)]) == 0


def test_an_unreadable_row_is_quarantined_by_a_worker(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "t.db"
    assert migrate(snapshot, target, "--jobs", "2", "--batch-size", "50") == 0
    with sqlite3.connect(target) as connection:
        (quarantined,) = connection.execute("SELECT count(*) FROM ksi_quarantine").fetchone()
    assert quarantined == UNREADABLE
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 0


def test_a_worker_that_dies_is_one_line_and_a_rerun_carries_on(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    batches = LegacySource.batches

    def killing_the_workers(self: LegacySource, *args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        for number, batch in enumerate(batches(self, *args, **kwargs)):
            if number == 3:  # the first batches are with the workers by now
                for worker in multiprocessing.active_children():
                    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
            yield batch

    monkeypatch.setattr(LegacySource, "batches", killing_the_workers)
    target = tmp_path / "t.db"
    assert migrate(snapshot, target, "--jobs", "2", "--batch-size", "20") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error  # one line, no traceback
    assert error.startswith("ksi-migrate: error: a worker process parsing checkpoints rows stopped unexpectedly")
    monkeypatch.undo()
    assert migrate(snapshot, target, "--jobs", "2") == 0
    assert main(["verify", "--source", str(snapshot), "--target", str(target)]) == 0


def test_one_job_and_a_catch_up_start_no_worker_process(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t.db"
    assert migrate(snapshot, target, "--jobs", "2") == 0  # a fresh load: workers

    def no_workers(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(parallel._Worker, "start", no_workers)
    assert migrate(snapshot, tmp_path / "other.db", "--jobs", "1") == 0
    assert migrate(snapshot, target, "--jobs", "2") == 0  # a catch-up maps what changed, here


@pytest.mark.parametrize(("cores", "jobs"), [(1, 1), (2, 2), (16, parallel.MAX_DEFAULT_JOBS)])
def test_jobs_default_to_the_cores_this_process_may_use_capped(
    cores: int, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert parallel.default_jobs() == jobs


def test_a_worker_killed_while_it_maps_or_sends_its_answer_is_one_error_not_a_hang(snapshot: Path) -> None:
    # An answer larger than a pipe holds, so the worker is killed while it maps or while it
    # sends. Reading its answer must end with WorkerFailed: a shared result pipe whose writing
    # end this process also held (ProcessPoolExecutor's) waited here for ever.
    with LegacySource(snapshot) as source:
        table = KINDS["mcp_sessions"].legacy
        batch = next(source.batches(table, batch_size=10_000, max_bytes=1 << 40))
    with parallel.worker_pool(2) as pool:
        assert pool is not None
        pool.wait_started()
        (worker,) = pool.workers
        worker.hand((table.name, batch, None))
        os.kill(worker.process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        outcome: list[BaseException] = []
        reading = threading.Thread(target=_answer_into, args=(worker, table.name, outcome), daemon=True)
        reading.start()
        reading.join(60)
        assert not reading.is_alive(), "reading a killed worker's answer hung"
        with pytest.raises(WorkerFailed, match="stopped unexpectedly"):
            raise outcome[0]


def _answer_into(worker: parallel._Worker, kind_name: str, outcome: list[BaseException]) -> None:
    try:
        worker.answer(kind_name)
    except BaseException as exc:  # noqa: BLE001 - handed to the test's thread, which checks it
        outcome.append(exc)
    else:
        outcome.append(AssertionError("a killed worker's answer was read whole"))


def test_an_exception_in_a_worker_is_raised_here_with_the_workers_traceback(snapshot: Path) -> None:
    with LegacySource(snapshot) as source:
        batch = next(source.batches(KINDS["mcp_sessions"].legacy, batch_size=5))
    with parallel.worker_pool(2) as pool:
        assert pool is not None
        pool.wait_started()
        (worker,) = pool.workers
        worker.hand(("no such kind", batch, None))  # a KeyError in the worker's lookup of the kind
        with pytest.raises(KeyError, match="no such kind") as raised:
            worker.answer("no such kind")
    cause = raised.value.__cause__
    assert isinstance(cause, parallel.WorkerTraceback)
    assert "Traceback (most recent call last)" in str(cause) and "in map_batch" in str(cause)


def test_the_writer_maps_a_batch_only_while_it_has_worked_no_more_than_a_worker() -> None:
    balance = parallel._Balance()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # this process's CPU seconds since the load began
        pass
    assert not balance.here_has_time(workers=2)  # the workers have reported nothing yet
    balance.workers_seconds = 0.05  # two workers, 0.025 s each: still less than here
    assert not balance.here_has_time(workers=2)
    balance.workers_seconds = 2 * 60.0
    assert balance.here_has_time(workers=2)


# --- `--jobs 1` into a server: mapping on a thread ----------------------------------------------------


def session_batches(count: int, size: int = 3) -> list[list[Any]]:
    rows = [session_row(n, f"k{n}", {"agent_id": f"a{n}", "tools": [{"name": f"t{n}"}]}) for n in range(1, count + 1)]
    return [rows[start : start + size] for start in range(0, len(rows), size)]


LINES = staging.LineStaging("mysql")
SESSIONS = "mcp_sessions"


def test_a_thread_maps_and_stages_every_batch_in_the_order_read_as_this_thread_would() -> None:
    batches = session_batches(10)
    on_a_thread = list(parallel.mapped_on_a_thread(SESSIONS, batches, LINES))
    here = [parallel.map_batch(SESSIONS, batch, LINES) for batch in batches]
    assert [batch for batch, _ in on_a_thread] == batches
    assert [(m.digests, m.mapped) for _, m in on_a_thread] == [(m.digests, m.mapped) for m in here]
    assert all(isinstance(m.mapped[0], staging.StagedLines) for _, m in on_a_thread)


def test_an_error_on_the_mapping_thread_is_raised_here_after_the_batches_before_it() -> None:
    def batches() -> Iterator[list[Any]]:
        yield from session_batches(6)
        raise sqlite3.DatabaseError("disk I/O error")

    got = []
    with pytest.raises(sqlite3.DatabaseError, match="disk I/O error"):
        for batch, _ in parallel.mapped_on_a_thread(SESSIONS, batches(), LINES):
            got.append(batch)
    assert got == session_batches(6)
    assert not any(t.name == "ksi-map" for t in threading.enumerate())


def test_a_caller_that_stops_early_stops_the_thread_which_read_only_a_few_batches_ahead() -> None:
    read: list[int] = []

    def batches() -> Iterator[list[Any]]:
        for number, batch in enumerate(session_batches(300)):
            read.append(number)
            yield batch

    mapped = parallel.mapped_on_a_thread(SESSIONS, batches(), LINES)
    assert isinstance(mapped, Generator)
    next(mapped)
    time.sleep(0.2)  # time enough to run ahead as far as it may
    assert len(read) <= 1 + parallel.MAPPED_AHEAD_ON_A_THREAD + 1  # the one taken, the queue, one in hand
    mapped.close()
    assert not any(t.name == "ksi-map" for t in threading.enumerate())
