"""The store: daemon-exact dual writes, reads in every mode, shadow comparisons, repairs after a
failed relational write, the plan's queries, threads and asyncio."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from migrator import engines, open_store, relational, wal
from migrator.backfill import backfill
from migrator.equivalence import json_differences
from migrator.errors import (
    LegacyUnavailable,
    RebuildError,
    SourceNotFound,
    TargetUnreachable,
    UnknownMode,
    UnreadableRecord,
)
from migrator.fakes import fake_checkpoint_blob, fake_session_blob, make_faker
from migrator.legacy import MCP_SESSIONS, LegacySource
from migrator.legacy_copy import compare_legacy_files
from migrator.models import Checkpoint, CheckpointQueueItem, McpSession, McpSessionTool
from migrator.rollback import restore
from migrator.store import Mode, Store, StoreReport
from migrator.store import core as store_core
from migrator.store.aio import AsyncStore
from migrator.store.legacy_side import DaemonTables
from migrator.store.relational_side import RelationalTables
from migrator.target import load_legacy_schema, target_database
from migrator.verify import verify
from verification.snapshots import checkpoint_row, session_row, write_snapshot

CHECKPOINT = {
    "timestamp": "2025-06-20T23:17:27Z",
    "reason": "dev",
    "session_queues": {"s1": {"items": [{"request_id": "r1", "data": {"n": 1.0}}], "is_active": True}},
    "active_completions": {"r1": {"session_id": "s1", "status": "processing", "data": {"big": 10**30}}},
}
SESSION = {"agent_id": "a", "conversation_id": "c:1", "tools": [{"name": "Bash"}, "Read", "Read"], "x": float("nan")}
SEEN = "2025-06-21T10:00:00.5"


def differences(expected: Any, actual: Any) -> list[str]:
    return [str(d) for d in json_differences(expected, actual)]


def verify_problems(legacy: Path, store: Store) -> list[str]:
    with LegacySource(legacy) as source:
        report = verify(source, store.database)
    return [str(m) for m in report.mismatches] + ([] if report.ok else [f"{report.problems} problem(s)"])


def legacy_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()


@pytest.fixture
def one_file(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Opens stores on one SQLite file that holds both the legacy and the relational tables."""
    opened: list[Store] = []

    def make(mode: str = "dual_write") -> Store:
        store = open_store(tmp_path / "ksi.db", mode=mode, create=True)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def two_files(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Opens stores on a legacy file and a separate target file."""
    legacy = write_snapshot(tmp_path / "legacy.db")
    opened: list[Store] = []

    def make(mode: str = "dual_write") -> Store:
        store = open_store(tmp_path / "target.db", legacy=legacy, mode=mode, create=True)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


# --- writes exactly like the daemon -----------------------------------------------------------


def test_dual_write_writes_the_daemons_legacy_rows_and_exact_relational_rows(
    one_file: Callable[..., Store], tmp_path: Path
) -> None:
    store = one_file()
    ids = [store.save_checkpoint({**CHECKPOINT, "n": n}) for n in range(7)]
    store.save_session("a:c:1", SESSION, SEEN)
    with closing(sqlite3.connect(tmp_path / "ksi.db")) as connection:
        kept = connection.execute("SELECT id, checkpoint_data FROM checkpoints ORDER BY id").fetchall()
        session = connection.execute(
            "SELECT session_key, session_data, typeof(last_seen), last_seen FROM mcp_sessions"
        ).fetchall()
    assert [row[0] for row in kept] == ids[2:]  # pruned to the newest five
    assert kept[-1][1] == json.dumps({**CHECKPOINT, "n": 6})
    assert session == [("a:c:1", json.dumps(SESSION), "text", SEEN)]
    assert verify_problems(tmp_path / "ksi.db", store) == []


def test_saves_of_values_json_loads_would_not_return_are_mapped_from_their_text(
    one_file: Callable[..., Store], tmp_path: Path
) -> None:
    # Only a value of the types json.loads returns is mapped without parsing its text again
    # (codec.encoded_blob); these are parsed, and must come out exactly all the same.
    store = one_file()
    store.save_checkpoint({**CHECKPOINT, 1: "an int key", "1": "its text twin"})
    store.save_checkpoint({**CHECKPOINT, "session_queues": {"s": ({"request_id": "r"},)}})
    store.save_session("a:c", {**SESSION, "tools": ("Read",)}, SEEN)
    assert verify_problems(tmp_path / "ksi.db", store) == []
    with closing(sqlite3.connect(tmp_path / "ksi.db")) as connection:
        (overlays,) = connection.execute("SELECT count(*) FROM checkpoint WHERE text_overlay IS NOT NULL").fetchone()
    assert overlays == 1  # the repeated key "1" is kept by the overlay, as a migrate keeps it


def test_checkpoint_timestamp_column_is_the_daemons_timestamp_utc(
    one_file: Callable[..., Store], tmp_path: Path
) -> None:
    one_file().save_checkpoint(CHECKPOINT)
    with closing(sqlite3.connect(tmp_path / "ksi.db")) as connection:
        (stamp,) = connection.execute("SELECT timestamp FROM checkpoints").fetchone()
    assert stamp.endswith("Z") and "+" not in stamp and stamp[10] == "T"


def test_pruning_and_session_replacement_cascade_to_every_relational_table(one_file: Callable[..., Store]) -> None:
    store = one_file()
    first = store.save_checkpoint(CHECKPOINT)
    for _ in range(5):
        store.save_checkpoint(CHECKPOINT)
    store.save_session("a:c", SESSION, SEEN)
    store.save_session("a:c", {"agent_id": "a", "tools": ["Write"]}, SEEN)
    assert Checkpoint.select().count() == 5
    assert CheckpointQueueItem.select().where(CheckpointQueueItem.checkpoint == first).count() == 0
    assert [t.tool_name for t in McpSessionTool.select()] == ["Write"]
    assert store.delete_session("a:c") is True
    assert (McpSession.select().count(), McpSessionTool.select().count()) == (0, 0)
    assert store.get_session("a:c") is None


def test_session_last_seen_keeps_the_storage_type_the_column_affinity_gives(
    one_file: Callable[..., Store], tmp_path: Path
) -> None:
    store = one_file()
    store.save_session("k", {"agent_id": "a"}, 17.0)  # a TIMESTAMP column stores 17.0 as INTEGER 17
    with closing(sqlite3.connect(tmp_path / "ksi.db")) as connection:
        assert connection.execute("SELECT typeof(last_seen), last_seen FROM mcp_sessions").fetchone() == ("integer", 17)
    assert verify_problems(tmp_path / "ksi.db", store) == []


# --- reads in every mode ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "dual_write", "shadow", "relational"])
def test_every_mode_reads_back_exactly_what_was_saved(one_file: Callable[..., Store], mode: str) -> None:
    one_file("dual_write").save_checkpoint(CHECKPOINT)
    writer = one_file("dual_write")
    writer.save_session("a:c", SESSION, SEEN)
    checkpoint_id = writer.save_checkpoint({**CHECKPOINT, "reason": "shutdown"})
    store = one_file(mode)
    assert differences(SESSION, store.get_session("a:c")) == []
    assert differences({**CHECKPOINT, "reason": "shutdown"}, store.load_checkpoint(checkpoint_id)) == []
    assert differences({**CHECKPOINT, "reason": "shutdown"}, store.latest_checkpoint()) == []
    assert store.get_session("missing") is None and store.load_checkpoint(999) is None
    store.wait_for_shadow_reads()
    assert (store.report().shadow_mismatches, store.report().fallbacks) == (0, 0)


def test_a_blob_that_is_not_a_json_object_raises_the_same_error_on_both_sides(
    tmp_path: Path,
) -> None:
    legacy = write_snapshot(tmp_path / "legacy.db", [checkpoint_row(4, "[1, 2]")], [session_row(1, "k", "{oops")])
    with open_store(tmp_path / "t.db", legacy=legacy, mode="dual_write", create=True) as backfilled:
        backfilled.catch_up()
    for mode in ("dual_write", "relational"):
        store = open_store(tmp_path / "t.db", legacy=legacy, mode=mode, create=True)
        with pytest.raises(UnreadableRecord, match="checkpoints rowid 4: checkpoint_data is not a JSON object"):
            store.load_checkpoint(4)
        with pytest.raises(UnreadableRecord, match="mcp_sessions rowid 1: session_data is not JSON"):
            store.get_session("k")
        assert store.report().fallbacks == 0  # the quarantined rows answered, not the JSON
        store.close()


def test_relational_mode_falls_back_to_the_json_for_a_key_it_lacks_and_counts_it(
    two_files: Callable[..., Store], tmp_path: Path
) -> None:
    store = two_files("relational")
    with closing(sqlite3.connect(tmp_path / "legacy.db")) as old_daemon, old_daemon:  # not yet on the store
        old_daemon.execute("INSERT INTO mcp_sessions VALUES ('old:1', ?, ?)", (json.dumps(SESSION), SEEN))
    assert differences(SESSION, store.get_session("old:1")) == []
    assert store.report().fallbacks == 1
    store.catch_up()
    assert differences(SESSION, store.get_session("old:1")) == []
    assert store.report().fallbacks == 1  # now served by the relational rows


# --- shadow reads -----------------------------------------------------------------------------


def test_shadow_records_a_mismatch_with_its_json_path(one_file: Callable[..., Store]) -> None:
    one_file("dual_write").save_session("a:c", SESSION, SEEN)
    McpSessionTool.update(tool_name="bash").where(McpSessionTool.position == 0).execute()
    store = one_file("shadow")
    assert differences(SESSION, store.get_session("a:c")) == []  # the caller gets the JSON
    store.wait_for_shadow_reads()
    report = store.report()
    assert (report.shadow_matches, report.shadow_mismatches) == (0, 1)
    assert report.mismatches[0].table == "mcp_sessions" and report.mismatches[0].key == "a:c"
    assert report.mismatches[0].differences == ['$.tools[0].name: "Bash" (str) != "bash" (str)']


def test_a_shadow_mismatch_is_logged_with_its_table_key_and_difference(
    one_file: Callable[..., Store], caplog: pytest.LogCaptureFixture
) -> None:
    one_file("dual_write").save_session("a:c", SESSION, SEEN)
    McpSessionTool.update(tool_name="bash").where(McpSessionTool.position == 0).execute()
    store = one_file("shadow")
    with caplog.at_level(logging.WARNING, logger="migrator.store"):
        store.get_session("a:c")
        store.wait_for_shadow_reads()
    logged = [record.getMessage() for record in caplog.records if "differs" in record.getMessage()]
    assert logged == ['shadow read of mcp_sessions a:c differs: [\'$.tools[0].name: "Bash" (str) != "bash" (str)\']']


def test_shadow_comparison_runs_off_the_callers_path(
    one_file: Callable[..., Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    one_file("dual_write").save_session("a:c", SESSION, SEEN)
    store = one_file("shadow")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    original = RelationalTables.session

    def slow_session(self: RelationalTables, key: str) -> Any:
        started.set()
        release.wait(timeout=5)
        finished.set()
        return original(self, key)

    monkeypatch.setattr(RelationalTables, "session", slow_session)
    assert differences(SESSION, store.get_session("a:c")) == []
    assert not finished.is_set()  # the read returned while the relational read was still held
    release.set()
    store.wait_for_shadow_reads(timeout=10)
    assert started.is_set() and store.report().shadow_matches == 1


def test_a_failing_relational_path_never_breaks_a_shadow_read(
    one_file: Callable[..., Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    one_file("dual_write").save_session("a:c", SESSION, SEEN)
    store = one_file("shadow")
    calls: list[str] = []

    def broken(self: RelationalTables, key: str) -> Any:
        calls.append(key)
        raise RuntimeError("relational side down")

    monkeypatch.setattr(RelationalTables, "session", broken)
    assert differences(SESSION, store.get_session("a:c")) == []
    store.wait_for_shadow_reads()
    report = store.report()
    assert (report.shadow_errors, report.shadow_mismatches, report.shadow_matches) == (1, 0, 0)
    assert calls == ["a:c"]  # not read again under the write lock, which would hold the daemon's writes


def test_a_relational_read_that_races_a_write_is_stale_not_an_error(
    one_file: Callable[..., Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relational side reads a session's rows one query after another, so a write between
    two of them can make the row vanish half way (seen on PostgreSQL): read again while no
    write can run, it is found, and the read counts as stale, as a race that returns a value does."""
    one_file("dual_write").save_session("a:c", SESSION, SEEN)
    store = one_file("shadow")
    original, calls = RelationalTables.session, []

    def raced_once(self: RelationalTables, key: str) -> Any:
        calls.append(key)
        if len(calls) == 1:
            raise RebuildError("mcp_sessions rowid 1 vanished while it was read")
        return original(self, key)

    monkeypatch.setattr(RelationalTables, "session", raced_once)
    assert differences(SESSION, store.get_session("a:c")) == []
    store.wait_for_shadow_reads()
    report = store.report()
    assert (report.shadow_errors, report.shadow_mismatches, report.shadow_stale, len(calls)) == (0, 0, 1, 2)


# --- a failed relational write ----------------------------------------------------------------


def fail_inserts_into(monkeypatch: pytest.MonkeyPatch, model: type) -> list[int]:
    """Make the relational write raise when it reaches `model`, after the root rows went in."""
    calls: list[int] = []
    original = relational.insert_rows

    def insert_rows(database: Any, table: relational.TableMap, rows: Any) -> None:
        if table.model is model and rows:
            calls.append(len(rows))
            raise RuntimeError("injected fault in the middle of the relational write")
        original(database, table, rows)

    monkeypatch.setattr(relational, "insert_rows", insert_rows)
    return calls


def test_separate_files_a_failed_relational_write_keeps_the_legacy_row_and_the_catch_up_repairs_it(
    two_files: Callable[..., Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = two_files("relational")
    store.save_session("a:c", {"agent_id": "a", "tools": ["Read"]}, SEEN)
    faults = fail_inserts_into(monkeypatch, McpSessionTool)
    store.save_session("a:c", SESSION, SEEN)  # the daemon's save succeeds
    monkeypatch.undo()
    assert faults == [3]
    assert legacy_rows(tmp_path / "legacy.db", "mcp_sessions")[0][1:] == ("a:c", json.dumps(SESSION), SEEN)
    report = store.report()
    assert [(p.table, p.key) for p in report.pending_repairs] == [("mcp_sessions", "a:c")]
    assert differences(SESSION, store.get_session("a:c")) == []  # served from the JSON while pending
    assert store.report().fallbacks == 1
    assert verify_problems(tmp_path / "legacy.db", store) != []
    store.catch_up()
    assert verify_problems(tmp_path / "legacy.db", store) == []
    assert (store.report().pending_repairs, store.report().repaired) == ([], 1)


def test_separate_files_a_failed_checkpoint_write_is_repaired_by_a_migrate_run_elsewhere(
    two_files: Callable[..., Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrator.cli import main

    store = two_files("dual_write")
    fail_inserts_into(monkeypatch, CheckpointQueueItem)
    checkpoint_id = store.save_checkpoint(CHECKPOINT)
    monkeypatch.undo()
    assert differences(CHECKPOINT, store.load_checkpoint(checkpoint_id)) == []
    assert len(store.report().pending_repairs) == 1
    store.close()
    target, legacy = tmp_path / "target.db", tmp_path / "legacy.db"
    assert main(["migrate", "--source", str(legacy), "--target", str(target)]) == 0
    store = two_files("dual_write")  # a restarted daemon has no pending list; the next check shows equality
    assert verify_problems(legacy, store) == []


def test_one_file_commits_both_sides_in_one_transaction(
    one_file: Callable[..., Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = one_file("dual_write")
    seen_by_another_connection: list[int] = []
    original = relational.write_legacy_rows

    def write_legacy_rows(database: Any, kind: Any, rows: Any, **kwargs: Any) -> Any:
        with closing(sqlite3.connect(tmp_path / "ksi.db")) as other:
            seen_by_another_connection.append(other.execute("SELECT count(*) FROM checkpoints").fetchone()[0])
        return original(database, kind, rows, **kwargs)

    monkeypatch.setattr("migrator.store.core.write_legacy_rows", write_legacy_rows)
    store.save_checkpoint(CHECKPOINT)
    store.save_checkpoint(CHECKPOINT)
    assert seen_by_another_connection == [0, 1]  # each legacy row still uncommitted during its relational write


def test_one_file_a_failed_relational_write_commits_the_legacy_row_alone(
    one_file: Callable[..., Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = one_file("dual_write")
    fail_inserts_into(monkeypatch, CheckpointQueueItem)
    checkpoint_id = store.save_checkpoint(CHECKPOINT)
    monkeypatch.undo()
    assert Checkpoint.get_or_none(Checkpoint.id == checkpoint_id) is None  # the savepoint rolled back
    assert differences(CHECKPOINT, store.load_checkpoint(checkpoint_id)) == []
    assert verify_problems(tmp_path / "ksi.db", store) != []
    store.catch_up()
    assert verify_problems(tmp_path / "ksi.db", store) == []
    assert store.report().repaired == 1


# --- relational_only --------------------------------------------------------------------------


def run_daemon_script(store: Store) -> None:
    for n in range(7):
        store.save_checkpoint({**CHECKPOINT, "n": n})
    store.save_session("a:c", SESSION, SEEN)
    store.save_session("b:c", {"agent_id": "b"}, 3.0)
    store.save_session("a:c", {"agent_id": "a", "tools": []}, "2025-06-22T00:00:00")
    store.delete_session("b:c")
    store.save_session("c:c", {"agent_id": "c"}, SEEN)
    store.save_session("d:c", {"agent_id": "d"}, 4.0)  # a TIMESTAMP column keeps this as INTEGER 4


def test_relational_only_holds_exactly_what_the_legacy_tables_would_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("migrator.store.core.timestamp_utc", lambda: "2025-06-20T23:17:27.832348Z")
    with open_store(tmp_path / "daemon.db", mode="legacy", create=True) as daemon:
        run_daemon_script(daemon)
    with open_store(tmp_path / "relational.db", mode="relational_only", create=True) as store:
        run_daemon_script(store)
        restore(store.database, tmp_path / "rebuilt.db")
        session = RelationalTables(store.database).session("d:c")
        assert session is not None
        last_seen = session[MCP_SESSIONS.at.last_seen]
    assert (type(last_seen), last_seen) == (int, 4)  # held as the legacy column would hold it
    assert compare_legacy_files(tmp_path / "daemon.db", tmp_path / "rebuilt.db", ["checkpoints", "mcp_sessions"]) == []
    sequence = "SELECT name, seq FROM sqlite_sequence"
    with closing(sqlite3.connect(tmp_path / "daemon.db")) as a, closing(sqlite3.connect(tmp_path / "rebuilt.db")) as b:
        assert a.execute(sequence).fetchall() == b.execute(sequence).fetchall() == [("checkpoints", 7)]


def test_relational_only_never_reuses_an_id_autoincrement_gave_out(tmp_path: Path) -> None:
    legacy = write_snapshot(tmp_path / "legacy.db", [checkpoint_row(2, CHECKPOINT), checkpoint_row(3, CHECKPOINT)])
    with closing(sqlite3.connect(legacy)) as daemon, daemon:
        daemon.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'checkpoints'")  # ids 4..9 were deleted
    with open_store(tmp_path / "t.db", legacy=legacy, create=True) as backfilled:
        backfilled.catch_up()
    with open_store(tmp_path / "t.db", mode="relational_only", create=True) as store:
        assert [store.save_checkpoint(CHECKPOINT) for _ in range(2)] == [10, 11]


def test_relational_only_never_creates_legacy_tables(tmp_path: Path) -> None:
    with open_store(tmp_path / "t.db", mode="relational_only", create=True) as store:
        checkpoint_id = store.save_checkpoint(CHECKPOINT)
        assert differences(CHECKPOINT, store.load_checkpoint(checkpoint_id)) == []
        with pytest.raises(LegacyUnavailable):
            store.catch_up()
    with closing(sqlite3.connect(tmp_path / "t.db")) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not names & {"checkpoints", "mcp_sessions"}


# --- opening ----------------------------------------------------------------------------------


def test_mode_comes_from_the_environment_and_unknown_modes_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KSI_STORE_MODE", "shadow")
    with open_store(tmp_path / "t.db", create=True) as store:
        assert store.mode is Mode.SHADOW
    with pytest.raises(UnknownMode, match="'dual-write'; choose one of legacy, dual_write"):
        open_store(tmp_path / "t.db", mode="dual-write")


def test_naming_the_target_itself_as_the_legacy_file_commits_both_sides_together(tmp_path: Path) -> None:
    with open_store(tmp_path / "ksi.db", legacy=tmp_path / "ksi.db", create=True) as store:
        assert store.one_file
    with open_store(tmp_path / "ksi.db", create=True) as store:
        assert store.one_file
    with pytest.raises(SourceNotFound, match="legacy database not found"):
        open_store(tmp_path / "ksi.db", legacy=tmp_path / "typo.db")


def test_a_target_that_does_not_exist_is_refused_unless_asked_for(tmp_path: Path) -> None:
    with pytest.raises(TargetUnreachable, match="target database not found"):
        open_store(tmp_path / "ksi_typo.db")
    assert not (tmp_path / "ksi_typo.db").exists()
    with open_store(tmp_path / "new.db", create=True) as store:
        assert store.save_checkpoint({"reason": "dev"}) == 1


def test_two_stores_in_one_process_each_keep_to_their_own_target(tmp_path: Path) -> None:
    """The models are bound per call (`models.bound_to`): opening a second store, or another
    target, never changes what the first one reads or writes, from any thread."""
    first = open_store(tmp_path / "first.db", mode="relational_only", create=True)
    first.save_checkpoint({"reason": "first"})
    second = open_store(tmp_path / "second.db", mode="relational_only", create=True)
    second.save_checkpoint({"reason": "second"})
    second.save_checkpoint({"reason": "second again"})
    with target_database(tmp_path / "third.db"):  # the process-wide binding moves once more
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda store: store.latest_checkpoint(), [first, second] * 4))
        assert first.checkpoints_by_reason("first") == {1: {"reason": "first"}}
        assert second.checkpoints_by_reason("first") == {}
    assert answers == [{"reason": "first"}, {"reason": "second again"}] * 4
    first.close()
    second.close()


def test_refuses_to_start_empty_legacy_tables_beside_migrated_rows(tmp_path: Path) -> None:
    with open_store(tmp_path / "t.db", mode="relational_only", create=True) as store:
        store.save_checkpoint(CHECKPOINT)
    with pytest.raises(LegacyUnavailable, match="lacks the legacy table"):
        open_store(tmp_path / "t.db", mode="dual_write", create=True)
    with closing(sqlite3.connect(tmp_path / "t.db")) as connection:
        assert connection.execute("SELECT count(*) FROM sqlite_master WHERE name = 'checkpoints'").fetchone() == (0,)


# --- the plan's queries -----------------------------------------------------------------------


def test_queries_by_agent_reason_and_tool(one_file: Callable[..., Store]) -> None:
    store = one_file()
    store.save_session("a:1", {"agent_id": "a", "tools": ["Read", "Read", {"name": "Bash"}]}, SEEN)
    store.save_session("a:2", {"agent_id": "a", "tools": ["Read"]}, SEEN)
    store.save_session("b:1", {"agent_id": "b", "tools": [{"name": "Bash"}, "Write"]}, SEEN)
    shutdown = store.save_checkpoint({**CHECKPOINT, "reason": "shutdown"})
    store.save_checkpoint(CHECKPOINT)
    agent_a = store.sessions_for_agent("a")
    assert list(agent_a) == ["a:1", "a:2"]
    assert differences({"agent_id": "a", "tools": ["Read"]}, agent_a["a:2"]) == []
    by_reason = store.checkpoints_by_reason("shutdown")
    assert list(by_reason) == [shutdown]
    assert differences({**CHECKPOINT, "reason": "shutdown"}, by_reason[shutdown]) == []
    assert list(store.tool_usage().items()) == [("Bash", 2), ("Read", 2), ("Write", 1)]  # sessions, not mentions


# --- threads and asyncio ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["one_file", "two_files"])
def test_concurrent_saves_and_reads_from_many_threads(
    layout: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = request.getfixturevalue(layout)("shadow")
    fake, rng = make_faker(5), random.Random(5)
    checkpoints = [fake_checkpoint_blob(fake, rng) for _ in range(12)]
    keys = [(f"agent-{n % 3}", f"conversation-{n % 9}") for n in range(36)]  # 9 sessions, each saved 4 times
    sessions = [
        (f"{agent}:{conversation}", fake_session_blob(fake, rng, agent, conversation)) for agent, conversation in keys
    ]

    def work(n: int) -> None:
        if n < len(checkpoints):
            store.save_checkpoint(checkpoints[n])
        key, blob = sessions[n]
        store.save_session(key, blob, f"2025-06-21T10:00:{n:02d}")
        store.get_session(key)
        store.latest_checkpoint()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(len(sessions))))
    store.wait_for_shadow_reads()
    legacy = tmp_path / ("ksi.db" if layout == "one_file" else "legacy.db")
    assert verify_problems(legacy, store) == []
    assert len(legacy_rows(legacy, "checkpoints")) == 5 and len(legacy_rows(legacy, "mcp_sessions")) == 9
    report = store.report()
    assert (report.shadow_mismatches, report.shadow_errors, report.pending_repairs) == (0, 0, [])
    assert report.shadow_matches + report.shadow_stale == 2 * len(sessions)


def test_async_calls_leave_the_event_loop_free(one_file: Callable[..., Store], monkeypatch: pytest.MonkeyPatch) -> None:
    store = one_file()
    release = threading.Event()
    original = DaemonTables.insert_checkpoint

    def insert_when_released(self: DaemonTables, timestamp: str, data: str) -> Any:
        if not release.wait(timeout=5):  # set by a coroutine: only possible while the loop runs
            raise TimeoutError("the event loop was blocked")
        return original(self, timestamp, data)

    monkeypatch.setattr(DaemonTables, "insert_checkpoint", insert_when_released)

    async def daemon() -> tuple[int, StoreReport, bool]:
        saving = asyncio.create_task(store.aio.save_checkpoint(CHECKPOINT))
        await asyncio.sleep(0.01)
        was_waiting = not saving.done()
        release.set()
        checkpoint_id = await saving
        assert differences(CHECKPOINT, await store.aio.load_checkpoint(checkpoint_id)) == []
        return checkpoint_id, store.report(), was_waiting

    checkpoint_id, report, was_waiting = asyncio.run(daemon())
    assert checkpoint_id == 1 and was_waiting and report.pending_repairs == []


# Every coroutine of `store.aio`, in an order a daemon could call them, with its arguments. Each
# must give what the same call on the store gives: the async face is a thread hop, nothing more.
ASYNC_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("save_checkpoint", (CHECKPOINT,)),
    ("save_checkpoint", ({"reason": "other", "agents": {}},)),
    ("update_latest_checkpoint", ({"reason": "latest", "agents": {}},)),
    ("update_checkpoint", (1, {"reason": "first", "n": 1.0})),
    ("load_checkpoint", (1,)),
    ("latest_checkpoint", ()),
    ("list_checkpoints", ()),
    ("checkpoints_by_reason", ("first",)),
    ("save_session", ("a:c", SESSION, SEEN)),
    ("save_session", ("b:c", {"agent_id": "b", "tools": ["Read"]}, "2025-06-20T10:00:00")),
    ("get_session", ("a:c",)),
    ("load_session", ("b:c",)),
    ("sessions_for_agent", ("a",)),
    ("tool_usage", ()),
    ("sessions_seen_after", ("2025-06-21T00:00:00",)),
    ("expire_sessions", ("2025-06-21T00:00:00",)),
    ("delete_session", ("a:c",)),
    ("get_session", ("a:c",)),
    ("catch_up", ()),
]


def test_every_async_call_answers_as_the_same_call_on_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coroutines = {name for name, member in vars(AsyncStore).items() if asyncio.iscoroutinefunction(member)}
    coroutines = {name for name in coroutines if "ǁ" not in name}  # not the copies mutation testing adds
    assert coroutines == {name for name, _ in ASYNC_CALLS}, "a coroutine of store.aio this test never calls"
    with (
        open_store(tmp_path / "sync.db", mode="dual_write", create=True) as sync_store,
        open_store(tmp_path / "async.db", mode="dual_write", create=True) as async_store,
    ):
        monkeypatch.setattr(store_core, "timestamp_utc", lambda: "2025-06-21T12:00:00.000000Z")  # one clock for both

        async def daemon() -> list[Any]:
            return [await getattr(async_store.aio, name)(*args) for name, args in ASYNC_CALLS]

        answers = asyncio.run(daemon())
        expected = [getattr(sync_store, name)(*args) for name, args in ASYNC_CALLS]
    for (name, _), want, got in zip(ASYNC_CALLS, expected, answers, strict=True):
        if name == "catch_up":
            want, got = want.to_dict()["tables"], got.to_dict()["tables"]
        assert differences(comparable(want), comparable(got)) == [], name


def comparable(answer: Any) -> Any:
    """A store's answer as JSON values: records and tuples become lists, so NaN and key order count."""
    if isinstance(answer, tuple | list):
        return [comparable(item) for item in answer]
    if isinstance(answer, dict):
        return {str(key): comparable(value) for key, value in answer.items()}
    if hasattr(answer, "__dataclass_fields__"):
        return {name: comparable(getattr(answer, name)) for name in answer.__dataclass_fields__}
    return answer


# --- WAL checkpoints off the write path --------------------------------------------------------


def checkpoint_ids_in_the_database_file(path: Path) -> list[int]:
    """The legacy checkpoints in the database file itself, as if there were no WAL (`immutable`):
    what a WAL checkpoint has copied into it so far."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as connection:
        try:
            return [rowid for (rowid,) in connection.execute("SELECT id FROM checkpoints")]
        except sqlite3.DatabaseError:
            # The table is still only in the WAL, or (immutable reads take no lock) the read raced
            # the checkpoint's copy and saw a half-written page: either way, not there yet.
            return []


TEMP_STORE_FILE, TEMP_STORE_MEMORY = 1, 2  # what `PRAGMA temp_store` reads back


def test_a_store_journals_its_savepoints_in_memory_and_its_index_builds_sort_in_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = write_snapshot(tmp_path / "legacy.db")
    store = open_store(tmp_path / "target.db", legacy=legacy, mode="dual_write", create=True)

    def temp_store() -> int:
        return int(store.database.execute_sql("PRAGMA temp_store").fetchone()[0])

    during_builds: list[int] = []
    index = engines.SQLiteEngine.index

    def index_in_build(engine: engines.SQLiteEngine, model_index: Any) -> Any:
        during_builds.append(temp_store())
        return index(engine, model_index)

    monkeypatch.setattr(engines.SQLiteEngine, "index", index_in_build)
    try:
        with ThreadPoolExecutor(1) as other_thread:  # each thread has a connection of its own
            assert (temp_store(), other_thread.submit(temp_store).result()) == (TEMP_STORE_MEMORY,) * 2
        store.catch_up()  # into empty tables: the indexes are built after the load
        assert during_builds and set(during_builds) == {TEMP_STORE_FILE}
        assert temp_store() == TEMP_STORE_MEMORY
        assert verify_problems(legacy, store) == []
    finally:
        store.close()


def test_a_background_thread_checkpoints_the_wal_so_that_saves_do_not(tmp_path: Path) -> None:
    path = tmp_path / "ksi.db"
    store = open_store(path, mode="dual_write", create=True)
    try:
        # The writer checkpoints itself only as a backstop, far beyond SQLite's 1,000 pages.
        assert store.database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == wal.BACKSTOP_PAGES
        saved = store.save_checkpoint(CHECKPOINT)
        deadline = time.monotonic() + 10
        while saved not in checkpoint_ids_in_the_database_file(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert saved in checkpoint_ids_in_the_database_file(path)
    finally:
        store.close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("ksi-wal-checkpoint")] == []


# --- every flow the daemon runs, in every mode ------------------------------------------------

MODES = ["legacy", "dual_write", "shadow", "relational", "relational_only"]
DAY_AGO = "2025-06-20T10:00:00"  # datetime.isoformat(): naive local time, the fraction left out when zero


def daemon_flows(store: Store) -> dict[str, Any]:
    """The daemon's checkpoint and session flows through one store: what each read answers."""
    ids = [store.save_checkpoint({**CHECKPOINT, "n": n}) for n in range(7)]  # pruned to the newest five
    listed_before = store.list_checkpoints()
    updated = store.update_latest_checkpoint({**CHECKPOINT, "active_completions": {}})
    assert store.update_checkpoint(ids[-2], {"cleared": True}) is True
    assert store.update_checkpoint(ids[0], {"pruned": True}) is False
    seen_at = ("2025-06-20T09:59:59.999999", DAY_AGO, "2025-06-20T10:00:00.000001", "2025-06-21T08:00:00", DAY_AGO)
    for number, seen in enumerate(seen_at):
        store.save_session(f"agent_{number}:c", {"agent_id": f"agent_{number}", "tools": []}, seen)
    store.save_session("agent_1:c", {"agent_id": "agent_1", "tools": ["Read"]}, "2025-06-20T10:00:00.5")  # replaced
    loaded = store.load_session("agent_1:c")
    after = store.sessions_seen_after(DAY_AGO)
    expired = store.expire_sessions(DAY_AGO)
    return {
        "ids": ids,
        "listed before": listed_before,
        "listed after": store.list_checkpoints(),
        "updated": updated,
        "latest": store.latest_checkpoint(),
        "by id": store.load_checkpoint(ids[-2]),
        "loaded": loaded,
        "seen after": [(record.key, record.blob, record.last_seen) for record in after],
        "expired": expired,
        "left": [(record.key, record.last_seen) for record in store.sessions_seen_after("2000-01-01T00:00:00")],
    }


def test_the_daemons_flows_answer_alike_in_every_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("migrator.store.core.timestamp_utc", lambda: "2025-06-20T23:17:27.832348Z")
    answers = {}
    for mode in MODES:
        with open_store(tmp_path / f"{mode}.db", mode=mode, create=True) as store:
            answers[mode] = daemon_flows(store)
            store.wait_for_shadow_reads()
            assert store.report().shadow_mismatches == 0, store.report().mismatches
        if mode != "legacy" and mode != "relational_only":
            assert verify_problems(tmp_path / f"{mode}.db", store) == []
    legacy = answers.pop("legacy")
    assert legacy["listed before"] == [
        (i, legacy["listed before"][k][1]) for k, i in enumerate(reversed(legacy["ids"][2:]))
    ]
    assert legacy["listed after"] == legacy["listed before"]  # an update keeps the timestamp of the save
    assert legacy["updated"] == legacy["ids"][-1] and legacy["latest"] == {**CHECKPOINT, "active_completions": {}}
    assert legacy["by id"] == {"cleared": True}
    assert legacy["loaded"].last_seen == "2025-06-20T10:00:00.5" and legacy["loaded"].blob["tools"] == ["Read"]
    assert [key for key, _, _ in legacy["seen after"]] == ["agent_2:c", "agent_3:c", "agent_1:c"]  # in rowid order
    assert legacy["expired"] == 1  # seen before the cutoff; one seen exactly at it stays, and is not "after"
    assert [key for key, _ in legacy["left"]] == ["agent_2:c", "agent_3:c", "agent_4:c", "agent_1:c"]
    for mode, answer in answers.items():
        assert differences(legacy, answer) == [], mode


def test_a_relational_store_selects_seen_sessions_by_time_where_other_spellings_differ(tmp_path: Path) -> None:
    """The daemon writes `isoformat()`; for other spellings SQLite's text comparison and the time
    named differ, and the relational store answers by the time (the README says so)."""
    rows = [
        session_row(1, "space:c", {"tools": []}, last_seen="2025-06-20 11:00:00"),  # ' ' sorts before 'T'
        session_row(2, "zulu:c", {"tools": []}, last_seen="2025-06-20T10:00:00Z"),  # the cutoff's time, longer text
        session_row(3, "number:c", {"tools": []}, last_seen=1750413600),  # a number sorts below any text
        session_row(4, "offset:c", {"tools": []}, last_seen="2025-06-20T11:30:00+02:00"),  # 09:30 UTC
        session_row(5, "daemon:c", {"tools": []}, last_seen="2025-06-20T10:30:00"),
    ]
    legacy = write_snapshot(tmp_path / "legacy.db", [], rows)
    target = tmp_path / "t.db"
    with LegacySource(legacy) as source, target_database(target) as database:
        backfill(source, database)
    with open_store(target, legacy=legacy, mode="dual_write") as store:
        by_text = [record.key for record in store.sessions_seen_after(DAY_AGO)]
    with open_store(target, mode="relational_only") as store:
        by_time = [record.key for record in store.sessions_seen_after(DAY_AGO)]
    assert by_text == ["zulu:c", "offset:c", "daemon:c"]
    assert by_time == ["space:c", "daemon:c"]


def test_the_daemon_files_schema_recorded_before_a_catch_up_takes_each_table_from_its_own_file(
    tmp_path: Path,
) -> None:
    """The sessions file may also hold an unused copy of the checkpoints table (an older daemon
    created both; a catch-up refuses a table found in two files). The legacy schema a save records
    before any catch-up, which `restore` recreates, must still be each table's own file's."""
    checkpoints = write_snapshot(tmp_path / "checkpoint.db", [checkpoint_row(1, {"a": 1})], tables=["checkpoints"])
    sessions = write_snapshot(tmp_path / "mcp_sessions.db", sessions=[session_row(1, "a:c", {"agent_id": "a"})])
    with closing(sqlite3.connect(sessions)) as connection, connection:
        connection.execute("CREATE INDEX stray_copy ON checkpoints (timestamp)")  # not in the checkpoint file
    files = {"checkpoints": checkpoints, "mcp_sessions": sessions}
    with open_store(tmp_path / "target.db", legacy=files, mode="dual_write", create=True) as store:
        store.save_checkpoint({"reason": "live"})
        recorded = load_legacy_schema(store.database)
    with LegacySource(checkpoints) as source:
        checkpoint_ddl = source.schema().statements
    assert recorded is not None
    assert [s for s in recorded.statements if "checkpoints" in s] == checkpoint_ddl
    assert recorded.tables == ["checkpoints", "mcp_sessions"]


@pytest.mark.parametrize("layout", ["legacy-file", "daemon-files"])
def test_a_long_read_of_the_legacy_file_never_holds_a_save_out(layout: str, tmp_path: Path) -> None:
    """`verify`, `archive` or the gate reading the legacy file in one long read transaction: in
    rollback-journal mode the save's commit would wait for it and then fail ("database is
    locked"); the store puts the legacy file in WAL mode, where readers never hold writers out."""
    legacy = write_snapshot(tmp_path / "legacy.db")
    with closing(sqlite3.connect(legacy)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    if layout == "daemon-files":
        sessions = write_snapshot(tmp_path / "mcp_sessions.db")
        with closing(sqlite3.connect(legacy)) as connection, connection:
            connection.execute("DROP TABLE mcp_sessions")
        with closing(sqlite3.connect(sessions)) as connection, connection:
            connection.execute("DROP TABLE checkpoints")
        files: Any = {"checkpoints": legacy, "mcp_sessions": sessions}
    else:
        files, sessions = legacy, legacy
    with open_store(tmp_path / "target.db", legacy=files, mode="dual_write", create=True) as store:
        with closing(sqlite3.connect(sessions, isolation_level=None)) as reader:
            assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM mcp_sessions").fetchone()  # a read transaction held open
            store.save_session("live:1", {"agent_id": "live"}, "2025-06-20T10:00:00")
            store.save_checkpoint({"reason": "live"})
            assert reader.execute("SELECT count(*) FROM mcp_sessions WHERE session_key = 'live:1'").fetchone() == (0,)
            reader.execute("COMMIT")
        assert store.report().pending_repairs == []
    with LegacySource(sessions) as source:
        saved = "SELECT count(*) FROM mcp_sessions WHERE session_key = 'live:1'"
        assert source.connection.execute(saved).fetchone() == (1,)
