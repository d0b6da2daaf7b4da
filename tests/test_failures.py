"""Operations under fire: a full disk, a missing folder, a lock that does not clear, a server
that drops the connection. Each is one line on stderr that says what to do, exit status 2, and
leaves no partial file; a server's dropped connection is retried, and a re-run is exact."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import peewee as pw
import psycopg2.errors
import pymysql
import pytest

from migrator import engines, failures, open_store, relational
from migrator.backfill import backfill
from migrator.cli import main
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource
from migrator.target import target_database
from migrator.verify import verify
from verification.engines import EngineRegistry
from verification.snapshots import write_snapshot

SMALL_DISK = "48k"  # room for the tool's first bytes, not for a whole copy


def run(*argv: object) -> int:
    return main([str(arg) for arg in argv])


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snapshot") / "legacy.db"
    fabricate_snapshot(path, checkpoints=30, sessions=600, seed=5)
    return path


@pytest.fixture(scope="module")
def migrated(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("target") / "target.db"
    assert run("migrate", "--source", snapshot, "--target", target) == 0
    return target


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a file system too small for what is written into it (a tmpfs)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here (root needed): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ksi-migrate: error: "), err
    return err


@pytest.mark.parametrize(
    ("command", "out"),
    [("restore", "copy.db"), ("export", "rows.jsonl"), ("archive", "archive")],
)
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(
    command: str, out: str, snapshot: Path, migrated: Path, full_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = ("--source", snapshot) if command == "archive" else ("--target", migrated)
    capsys.readouterr()
    assert run(command, *given, "--out", full_disk / out) == 2
    error = one_line_error(capsys)
    assert "no space left on the device" in error or "the disk is full" in error, error
    assert list(full_disk.iterdir()) == []  # no partial file, folder, journal or WAL


def test_a_migrate_that_fills_the_disk_is_one_line_and_the_target_stays_consistent(
    snapshot: Path, full_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = full_disk / "target.db"
    capsys.readouterr()
    assert run("migrate", "--source", snapshot, "--target", target) == 2
    error = one_line_error(capsys)
    assert "disk is full" in error or "no space left" in error, error
    leftovers = sorted(path.name for path in full_disk.iterdir())
    assert [name for name in leftovers if name not in ("target.db", "target.db-wal", "target.db-shm")] == []
    if target.exists():  # every batch is a transaction: what is there is whole, and a re-run carries on
        with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as reader:
            assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("command", ["restore", "export", "verify"])
def test_an_output_file_in_a_missing_folder_is_one_line_naming_it(
    command: str, snapshot: Path, migrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file goes into a folder that exists (a typo must not make folders); an archive is a
    folder of its own, made with its missing parents (0700)."""
    missing = tmp_path / "no" / "such" / "folder"
    given = (
        ("--source", snapshot, "--target", migrated, "--report")
        if command == "verify"
        else ("--target", migrated, "--out")
    )
    capsys.readouterr()
    assert run(command, *given, missing / "out") == 2
    error = one_line_error(capsys)
    assert f"{missing} does not exist" in error and "create it" in error, error
    assert ".partial" not in error, error  # the temporary name is no business of the operator's
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(("command", "out"), [("restore", "copy.db"), ("export", "rows.jsonl")])
def test_an_orphaned_child_row_is_one_line_with_what_to_do_and_leaves_no_file(
    command: str, out: str, snapshot: Path, migrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child row whose legacy row is gone (deleted by hand, foreign keys off) cannot be rebuilt:
    the rollback stops at it with one line that names it and says how to heal the target."""
    target = tmp_path / "orphaned.db"
    target.write_bytes(migrated.read_bytes())
    with closing(sqlite3.connect(target)) as connection, connection:
        orphan = "INSERT INTO checkpoint_request (checkpoint_id, position, request_id, request_id_digest, layout)"
        connection.execute(f"{orphan} VALUES (777, 0, 'r', 'd', '[]')")
    (tmp_path / "out").mkdir()
    capsys.readouterr()
    assert run(command, "--target", target, "--out", tmp_path / "out" / out) == 2
    error = one_line_error(capsys)
    assert "checkpoints rowid 777" in error and "no checkpoint row" in error, error
    assert "migrate --recheck" in error, error  # what to do
    assert list((tmp_path / "out").iterdir()) == []  # no partial copy, export or journal


def test_a_one_file_target_in_rollback_journal_mode_is_migrated_without_locking_itself(
    snapshot: Path, tmp_path: Path
) -> None:
    """The source's long read would hold the same file's writes out ("database is locked") in
    rollback-journal mode; the one-file layout is put in WAL mode first, as open_store does."""
    one_file = tmp_path / "ksi.db"
    one_file.write_bytes(snapshot.read_bytes())
    with closing(sqlite3.connect(one_file)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert run("migrate", "--source", one_file, "--target", one_file) == 0
    assert run("verify", "--source", one_file, "--target", one_file) == 0
    with closing(sqlite3.connect(one_file)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_lock_that_does_not_clear_is_one_line_with_what_to_do(
    snapshot: Path, migrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "locked.db"
    target.write_bytes(migrated.read_bytes())
    with closing(sqlite3.connect(target, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")  # another writer that never lets go (within the busy timeout)
        capsys.readouterr()
        assert run("migrate", "--source", snapshot, "--target", target, "--recheck") == 2
        holder.execute("ROLLBACK")
    error = one_line_error(capsys)
    assert "stayed locked" in error and "WAL mode" in error


# --- a server that drops the connection ------------------------------------------------------


def terminate(server_url: str, application_name: str, started: threading.Event, done: threading.Event) -> int:
    """Cut every connection the migrate opened, once it has begun writing (a restart, as the run sees it)."""
    killed = 0
    with closing(engines.connect(server_url)) as server:
        while not done.is_set() and not killed:
            query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
            rows = server.execute_sql(f"{query} AND state <> 'idle'", (application_name,)).fetchall()
            killed = len(rows)
            time.sleep(0.05)
    if killed:
        started.set()
    return killed


def test_a_postgresql_connection_cut_during_migrate_is_retried_and_the_result_is_exact(
    snapshot: Path, engine_registry: EngineRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine_registry.targets(engines.POSTGRESQL).fresh() as url:
        name = f"ksi_cut_{time.monotonic_ns()}"
        target = f"{url}&application_name={name}" if "?" in url else f"{url}?application_name={name}"
        done, killed = threading.Event(), threading.Event()
        cutter = threading.Thread(target=terminate, args=(url, name, killed, done))
        cutter.start()
        try:
            status = run("migrate", "--source", snapshot, "--target", target, "--batch-size", "50", "--json")
        finally:
            done.set()
            cutter.join()
        out, err = capsys.readouterr()
        assert killed.is_set(), "the migrate ended before its connection could be cut"
        assert status in (0, 2), err
        if status == 0:  # the dropped connection was opened again and the run started over
            assert json.loads(out)["attempts"] >= 2
        else:  # out of attempts: one line, and nothing more to it
            assert err.count("\n") == 1 and "connection" in err, err
        assert run("migrate", "--source", snapshot, "--target", url) == 0  # a re-run carries on
        with LegacySource(snapshot) as source, target_database(url, must_exist=True) as database:
            assert verify(source, database).ok


def test_a_postgresql_connection_cut_during_verify_is_opened_again_and_the_comparison_starts_over(
    snapshot: Path, engine_registry: EngineRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine_registry.targets(engines.POSTGRESQL).fresh() as url:
        assert run("migrate", "--source", snapshot, "--target", url) == 0
        name = f"ksi_cut_{time.monotonic_ns()}"
        target = f"{url}&application_name={name}" if "?" in url else f"{url}?application_name={name}"
        cut: list[tuple[bool]] = []

        def cut_once(table: str, rows: int) -> None:  # after the first batch: the server ends the connection
            if not cut:
                with closing(engines.connect(url)) as server:
                    query = "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = %s"
                    cut.extend(server.execute_sql(query, (name,)).fetchall())

        monkeypatch.setattr(failures, "RETRY_PAUSES", (0.0, 0.0))
        with LegacySource(snapshot) as source, target_database(target, must_exist=True) as database:
            report = verify(source, database, batch_size=20, progress=cut_once)
        assert cut == [(True,)], "no connection of the verify was found to cut"
        assert report.ok and report.attempts == 2


def test_a_verify_started_over_reports_each_row_once(
    snapshot: Path, migrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second attempt reads every row again; its progress counts only what the first did not reach."""
    verify_module = sys.modules["migrator.verify"]  # by name, `migrator.verify` is the function
    once = verify_module._verify_once
    attempts: list[int] = []

    def drops_half_way(source: Any, database: Any, batch_size: int, progress: Any, *rest: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            progress("mcp_sessions", 250)
            raise driver_error_as_peewee_raises_it(psycopg2.OperationalError("server closed the connection"))
        return once(source, database, batch_size, progress, *rest)

    monkeypatch.setattr(verify_module, "_verify_once", drops_half_way)
    monkeypatch.setattr(failures, "RETRY_PAUSES", (0.0,))
    reported: list[int] = []
    with LegacySource(snapshot) as source, target_database(migrated, must_exist=True) as database:
        report = verify(source, database, progress=lambda table, rows: reported.append(rows))
        total = sum(source.count(table) for table in source.tables)
    assert report.ok and report.attempts == 2
    assert reported[0] == 250 and sum(reported) == total, reported


def test_a_dropped_connection_is_retried_with_a_warning_that_shows_no_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    database = engines.connect("postgresql://u:S3cretPW@127.0.0.1:1/db")  # never connected: the drop is made up
    monkeypatch.setattr(failures, "RETRY_PAUSES", (0.0,))
    monkeypatch.setattr(failures, "reconnect", lambda database: None)
    echoed = "server closed the connection\nDETAIL: dsn user=u password=S3cretPW, kwargs {'password': 'S3cretPW'}"
    calls: list[Any] = []

    def attempt(progress: Any) -> str:
        calls.append(progress)
        if len(calls) == 1:
            raise driver_error_as_peewee_raises_it(psycopg2.OperationalError(echoed))
        return "compared"

    with caplog.at_level(logging.WARNING, logger="migrator.failures"):
        assert failures.retried_on_lost_connections(database, attempt, None) == ("compared", 2)
    (warning,) = caplog.messages
    assert "S3cretPW" not in warning and "\n" not in warning, warning
    assert warning.endswith("attempt 2 of 2 in 0 s"), warning


def kill_loads(server_url: str, database: str, killed: threading.Event, done: threading.Event) -> None:
    """Kill the MySQL connection of the migrate that writes into `database` once it is busy loading."""
    with closing(engines.connect(server_url)) as server:
        while not done.is_set() and not killed.is_set():
            found = server.execute_sql(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND info LIKE 'LOAD DATA%%'", (database,)
            ).fetchall()
            for (connection_id,) in found:
                with suppress(pw.DatabaseError):  # it may have finished meanwhile
                    server.execute_sql(f"KILL {int(connection_id)}")
                    killed.set()
            time.sleep(0.01)


def test_a_mysql_connection_cut_during_a_jobs_1_load_is_retried_and_the_result_is_exact(
    snapshot: Path, engine_registry: EngineRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--jobs 1` into a server maps on a thread while the main thread sends LOAD DATA from memory:
    a connection killed in the middle of a load stops that thread, and the run starts over."""
    with engine_registry.targets(engines.MYSQL).fresh() as url:
        database = urlparse(url).path.lstrip("/")
        done, killed = threading.Event(), threading.Event()
        killer = threading.Thread(target=kill_loads, args=(url, database, killed, done))
        killer.start()
        try:
            options = ("--batch-size", "50", "--jobs", "1", "--json")
            status = run("migrate", "--source", snapshot, "--target", url, *options)
        finally:
            done.set()
            killer.join()
        out, err = capsys.readouterr()
        assert killed.is_set(), "the migrate ended before a load could be cut"
        assert status == 0, err
        assert json.loads(out)["attempts"] >= 2
        assert not any(thread.name == "ksi-map" for thread in threading.enumerate())
        with LegacySource(snapshot) as source, target_database(url, must_exist=True) as target:
            assert verify(source, target).ok


# --- a transaction that loses a race with another writer ---------------------------------------


def driver_error_as_peewee_raises_it(error: Exception) -> Exception:
    """The exception a statement raises when the driver says `error`, wrapped as peewee wraps it."""
    try:
        with pw.ExceptionWrapper(pw.EXCEPTIONS):  # type: ignore[attr-defined]  # peewee's, not in its stubs
            raise error
    except Exception as wrapped:  # noqa: BLE001 - whatever peewee made of it
        return wrapped
    raise AssertionError("unreachable")  # pragma: no cover


LOST_RACES = {
    "mysql-deadlock": pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock; try restarting"),
    "mysql-lock-wait": pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"),
    "postgresql-deadlock": psycopg2.errors.DeadlockDetected("deadlock detected"),
    "postgresql-serialization": psycopg2.errors.SerializationFailure("could not serialize access"),
    "unique-key-taken-meanwhile": pymysql.err.IntegrityError(1062, "Duplicate entry for key 'session_key_digest'"),
}


def fail_once(monkeypatch: pytest.MonkeyPatch, module: str, error: Exception) -> list[int]:
    """`write_legacy_rows` in `module` raises `error` the first time, then writes; the calls made."""
    real = relational.write_legacy_rows
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            raise driver_error_as_peewee_raises_it(error)
        return real(*args, **kwargs)

    monkeypatch.setattr(sys.modules[module], "write_legacy_rows", flaky)  # by name, `migrator.backfill` is a function
    return calls


@pytest.mark.parametrize("race", list(LOST_RACES))
def test_a_dual_write_that_loses_a_race_with_a_catch_up_is_run_again_not_left_pending(
    race: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's deadlock, lock wait or unique key met in the relational write of a save (a
    catch-up in another process wrote the same rows meanwhile) is a race, not a failure: the
    write is run again, so no repair is left pending and relational reads serve the new row."""
    legacy = write_snapshot(tmp_path / "legacy.db")
    with open_store(tmp_path / "target.db", legacy=legacy, mode="dual_write", create=True) as store:
        calls = fail_once(monkeypatch, "migrator.store.core", LOST_RACES[race])
        store.save_session("a:c", {"agent_id": "a", "n": 1}, "2025-06-20T10:00:00")
        monkeypatch.undo()
        assert calls == [1, 2]
        assert store.report().pending_repairs == []
    with open_store(tmp_path / "target.db", mode="relational_only", read_only=True) as reader:
        assert json.dumps(reader.get_session("a:c")) == '{"agent_id": "a", "n": 1}'


@pytest.mark.parametrize("race", list(LOST_RACES))
def test_a_catch_up_batch_that_loses_a_race_with_the_daemon_is_checked_and_written_again(
    race: str, snapshot: Path, migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "later.db", tmp_path / "target.db"
    source.write_bytes(snapshot.read_bytes())
    target.write_bytes(migrated.read_bytes())
    with closing(sqlite3.connect(source)) as connection, connection:  # the daemon saw five sessions again
        connection.execute("UPDATE mcp_sessions SET last_seen = '2030-01-01T00:00:00' WHERE rowid <= 5")
    calls = fail_once(monkeypatch, "migrator.backfill", LOST_RACES[race])
    with LegacySource(source) as legacy, target_database(target, must_exist=True) as database:
        report = backfill(legacy, database)
    monkeypatch.undo()
    assert len(calls) >= 2 and report.attempts == 1
    assert {t.table: t.rewritten for t in report.tables}["mcp_sessions"] == 5
    with LegacySource(source) as legacy, target_database(target, must_exist=True) as database:
        assert verify(legacy, database).ok


def test_a_server_still_starting_when_the_run_connects_again_is_waited_for_too(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart takes seconds: the connection drops, and the first attempts to connect again
    meet a server that is not up yet. Those are retried with the same growing pauses."""
    backfill_module = sys.modules["migrator.backfill"]  # by name, `migrator.backfill` is the function

    once = backfill_module._backfill_once
    dropped: list[str] = []

    def drops_once(*args: Any, **kwargs: Any) -> Any:
        if not dropped:
            dropped.append("run")
            raise driver_error_as_peewee_raises_it(psycopg2.OperationalError("server closed the connection"))
        return once(*args, **kwargs)

    target = tmp_path / "target.db"
    with LegacySource(snapshot) as source, target_database(target) as database:
        connect = database.connect
        refusals = [psycopg2.OperationalError("the database system is starting up")] * 2

        def starting_up(*args: Any, **kwargs: Any) -> Any:
            if refusals:
                raise driver_error_as_peewee_raises_it(refusals.pop())
            return connect(*args, **kwargs)

        monkeypatch.setattr(backfill_module, "_backfill_once", drops_once)
        monkeypatch.setattr(failures, "RETRY_PAUSES", (0.0, 0.0, 0.0, 0.0))
        monkeypatch.setattr(database, "connect", starting_up)
        report = backfill(source, database)
        monkeypatch.undo()
        assert refusals == [] and report.attempts == 4  # the drop, two refusals, then the run
        assert verify(source, database).ok
