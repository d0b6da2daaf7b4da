"""Targets on every engine (`migrator/engines.py`): SQLite, PostgreSQL and MySQL/MariaDB.

Each test pins one way a server differs from SQLite (named in its docstring) and runs on every
engine through the `target` fixture (`verification/engines.py`): a legacy snapshot goes in,
is verified, restored to SQLite and compared by SQLite itself (`compare_legacy_files`), and
where the trap lives in a typed column or a lookup, that is read back from the target too.
"""

from __future__ import annotations

import gc
import json
import random
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from migrator import engines, open_store
from migrator.backfill import backfill
from migrator.cli import main
from migrator.equivalence import json_differences
from migrator.errors import ReadOnlyStore, UnreadableRecord
from migrator.legacy import LegacySource
from migrator.legacy_copy import compare_legacy_files
from migrator.models import Checkpoint, CheckpointQueue, CheckpointRequest, McpSession, McpSessionTool
from migrator.relational import TableMap, insert_sql
from migrator.sessions import KIND as sessions_kind
from migrator.store import Store
from migrator.store.relational_side import RelationalTables
from migrator.target import create_schema, recorded_cleanup, target_database
from migrator.verify import verify
from tests.conftest import OTHER_SESSION_COLUMNS, SESSION_COLUMNS, SnapshotFactory, session_rows
from verification.engines import EngineRegistry
from verification.gate.schema import check_schema
from verification.snapshots import checkpoint_row, session_row

LEGACY_TABLES = ["checkpoints", "mcp_sessions"]


def round_trip_problems(source: Path, target: str, tmp_path: Path) -> list[str]:
    """Migrate, verify, restore to a new SQLite file, and compare it with the source."""
    assert main(["migrate", "--source", str(source), "--target", target, "--batch-size", "2"]) == 0
    with LegacySource(source) as legacy, target_database(target, must_exist=True) as database:
        report = verify(legacy, database, batch_size=2)
    problems = [str(mismatch) for mismatch in report.mismatches]
    restored = tmp_path / "restored.db"
    assert main(["restore", "--target", target, "--out", str(restored)]) == 0
    return problems + compare_legacy_files(source, restored, LEGACY_TABLES)


@contextmanager
def relational_store(target: str) -> Iterator[Store]:
    """The daemon's store after cut-over: the relational rows alone answer."""
    with open_store(target, mode="relational_only", create=True) as store:
        yield store


def column_values(target: str, field: pw.Field) -> list[Any]:
    with target_database(target, must_exist=True):
        in_key_order = field.model.select(field).order_by(*field.model._meta.get_primary_keys())
        return [value for (value,) in in_key_order.tuples()]


# --- NUL ---------------------------------------------------------------------------------------

NUL_CHECKPOINT = (
    '{"timestamp": "2025\\u0000", "reason": "a\\u0000b", "session_queues": {"s\\u0000": [{"request_id": '
    '"r\\u0000", "timestamp": "\\u0000"}]}, "active_completions": {"r\\u0000": {"status": "\\u0000"}}}'
)
NUL_SESSION = '{"agent_id": "\\u0000", "tools": ["Re\\u0000ad", {"name": "\\u0000"}], "created": "\\u0000"}'


def test_nul_characters_survive_in_every_text_column(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: PostgreSQL's `text` refuses NUL, which JSON strings (`"\\u0000"`), JSON keys and raw
    legacy cells (`timestamp`, `session_key`, `last_seen`) can all hold."""
    source = snapshot_factory(
        [checkpoint_row(1, NUL_CHECKPOINT, timestamp="2025-06-20\x00T23")],
        [
            session_row(1, "agent\x00:conv", NUL_SESSION, last_seen="2025-06-20T23:17:27\x00"),
            session_row(2, "unreadable\x00", "{oops"),
        ],
    )
    assert round_trip_problems(source, target, tmp_path) == []


def test_sessions_are_found_by_keys_that_hold_nul(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: a key holding NUL is stored in another form on every engine, so a lookup must ask
    for that form (the unique key and `get_session` alike), also for a quarantined row."""
    source = snapshot_factory(
        [], [session_row(1, "agent\x00:conv", NUL_SESSION), session_row(2, "unreadable\x00", "{oops")]
    )
    assert round_trip_problems(source, target, tmp_path) == []
    with relational_store(target) as store:
        assert json_differences(json.loads(NUL_SESSION), store.get_session("agent\x00:conv")) == []
        assert store.get_session("agent") is None
        with pytest.raises(UnreadableRecord):  # found in quarantine, not missed
            store.get_session("unreadable\x00")
        store.save_session("new\x00key", {"agent_id": "b"}, "2025-06-21T10:00:00")
        store.save_session("new\x00key", {"agent_id": "c"}, "2025-06-21T11:00:00")  # replaces, not duplicates
        assert json_differences({"agent_id": "c"}, store.get_session("new\x00key")) == []
        assert McpSession.select().count() == 2  # the second save replaced the first


# --- long text and 4-byte characters -----------------------------------------------------------

LONG_TEXT = "x" * 70_000  # over the 65,535 bytes of a MySQL TEXT
ASTRAL_TEXT = "🙂𝄞" * 9_000  # 4-byte UTF-8 characters, 72,000 bytes: MySQL's `utf8` cannot hold them


def test_text_over_64_kib_and_four_byte_characters_survive(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: MySQL's TEXT holds 64 KiB, and its `utf8` is 3 bytes a character (`utf8mb4` is UTF-8)."""
    session = {"agent_id": ASTRAL_TEXT, "tools": [{"name": "🙂", "description": LONG_TEXT}], "note": LONG_TEXT}
    checkpoint = {"reason": ASTRAL_TEXT, "session_queues": {ASTRAL_TEXT: []}, "active_completions": {}}
    source = snapshot_factory([checkpoint_row(1, checkpoint)], [session_row(1, ASTRAL_TEXT, session)])
    assert round_trip_problems(source, target, tmp_path) == []
    assert column_values(target, McpSession.agent_id) == [ASTRAL_TEXT]  # in its typed column, in full
    assert column_values(target, McpSessionTool.description) == [LONG_TEXT]
    assert column_values(target, Checkpoint.reason) == [ASTRAL_TEXT]


# --- collations and unique keys ----------------------------------------------------------------

KEYS_ONLY_A_COLLATION_CONFUSES = ("a", "A", "a ", "á")


def test_unique_keys_tell_case_and_trailing_spaces_apart(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: MySQL's default collations fold case and accents, and its PAD SPACE collations
    (`utf8mb4_bin` among them) ignore trailing spaces: "a" = "A" = "a " in a unique key, a
    lookup, a GROUP BY."""
    queues: dict[str, list[Any]] = {key: [] for key in KEYS_ONLY_A_COLLATION_CONFUSES}
    completions = {key: {"status": key} for key in KEYS_ONLY_A_COLLATION_CONFUSES}
    sessions = [
        session_row(n, key, {"agent_id": key, "tools": [f"Read{key}"]})
        for n, key in enumerate(KEYS_ONLY_A_COLLATION_CONFUSES, start=1)
    ]
    source = snapshot_factory(
        [
            checkpoint_row(1, {"reason": "a", "session_queues": queues, "active_completions": completions}),
            checkpoint_row(2, {"reason": "a "}),
        ],
        sessions,
    )
    assert round_trip_problems(source, target, tmp_path) == []
    with relational_store(target) as store:
        for key in KEYS_ONLY_A_COLLATION_CONFUSES:
            assert json_differences({"agent_id": key, "tools": [f"Read{key}"]}, store.get_session(key)) == []
            assert list(store.sessions_for_agent(key)) == [key]
        assert list(store.checkpoints_by_reason("a")) == [1]
        assert store.tool_usage() == {f"Read{key}": 1 for key in sorted(KEYS_ONLY_A_COLLATION_CONFUSES)}


def test_tool_usage_counts_long_tool_names_that_share_a_prefix_apart(
    target: str, snapshot_factory: SnapshotFactory
) -> None:
    """Trap: MySQL sorts and groups TEXT by its first `max_sort_length` bytes (1,024 by default),
    so a GROUP BY merges long values that only differ after them."""
    shared = "x" * 2_000
    sessions = [session_row(n, f"s{n}", {"tools": [shared + str(min(n, 2))]}) for n in (1, 2, 3)]
    with target_database(target) as database, LegacySource(snapshot_factory([], sessions)) as source:
        backfill(source, database)
    with relational_store(target) as store:
        assert store.tool_usage() == {shared + "2": 2, shared + "1": 1}


def _incompressible(seed: int, length: int) -> str:
    generator = random.Random(seed)
    return "".join(chr(generator.randrange(0x4E00, 0x9FFF)) for _ in range(length))


def test_long_keys_that_share_a_prefix_stay_distinct_and_whole(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: MySQL indexes TEXT only up to a prefix (a unique prefix would call these keys equal,
    a VARCHAR would truncate them), and a PostgreSQL btree refuses entries over ~2.7 kB."""
    shared = _incompressible(1, 3_000)  # 9,000 bytes of UTF-8
    keys = [shared + "1", shared + "2"]
    checkpoint = {
        "reason": shared,
        "session_queues": {k: [] for k in keys},
        "active_completions": {k: {} for k in keys},
    }
    sessions = [session_row(n, key, {"agent_id": key, "tools": [key]}) for n, key in enumerate(keys, start=1)]
    source = snapshot_factory([checkpoint_row(1, checkpoint)], sessions)
    assert round_trip_problems(source, target, tmp_path) == []
    assert column_values(target, CheckpointQueue.session_id) == keys
    assert column_values(target, CheckpointRequest.request_id) == keys
    with relational_store(target) as store:
        for key in keys:
            assert json_differences({"agent_id": key, "tools": [key]}, store.get_session(key)) == []
            assert list(store.sessions_for_agent(key)) == [key]  # through the index on agent_id
        assert list(store.checkpoints_by_reason(shared)) == [1]
        assert store.sessions_for_agent(shared) == {}
        assert store.tool_usage() == dict.fromkeys(keys, 1)


# --- timestamps --------------------------------------------------------------------------------


def test_parsed_timestamps_keep_their_microseconds(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: MySQL's DATETIME without a fractional precision rounds the microseconds away."""
    session = {"agent_id": "a", "created_at": "2025-06-20T23:17:27.000001Z"}
    source = snapshot_factory([], [session_row(1, "a:c", session, last_seen="2025-06-20T23:17:27.832348")])
    assert round_trip_problems(source, target, tmp_path) == []
    assert column_values(target, McpSession.last_seen) == [datetime(2025, 6, 20, 23, 17, 27, 832348)]
    assert column_values(target, McpSession.created_at) == [datetime(2025, 6, 20, 23, 17, 27, 1)]


def test_an_engine_is_chosen_once_per_database_and_freed_with_it() -> None:
    # A long-lived process (a daemon's store, a test run) opens database after database.
    database = pw.SqliteDatabase(":memory:")
    assert engines.engine(database) is engines.engine(database)
    gone = weakref.ref(database)
    del database
    gc.collect()
    assert gone() is None, "the database outlived every reference to it"


def test_timestamps_outside_every_engines_range_stay_text_only(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: MySQL's DATETIME holds the years 1000 to 9999 only, and refuses the rest in strict
    mode: such a timestamp keeps its text, without a parsed copy, and stops nothing."""
    session = {"agent_id": "a", "created_at": "0999-12-31T23:59:59Z", "created": "0001-01-01T00:00:00+01:00"}
    source = snapshot_factory([], [session_row(1, "a:c", session, last_seen="0500-01-01T00:00:00")])
    assert round_trip_problems(source, target, tmp_path) == []
    assert column_values(target, McpSession.created_at_text) == ["0999-12-31T23:59:59Z"]
    assert column_values(target, McpSession.created_at) == [None]
    assert column_values(target, McpSession.last_seen) == [None]


# --- numbers -----------------------------------------------------------------------------------

BIG = 2**64 + 1


def test_integers_past_64_bits_stay_exact(target: str, snapshot_factory: SnapshotFactory, tmp_path: Path) -> None:
    """Trap: BIGINT overflows past 2**63; JSON integers of any size must stay exact, so they live
    in JSON text, and the 64-bit legacy ids and INTEGER cells at both ends of their range fit."""
    blob = {
        "reason": BIG,
        "n": -(2**63) - 1,
        "session_queues": {"s": {"items": [{"data": {"x": 10**400}}], "is_active": True, "active_request": BIG}},
        "active_completions": {"r": {"status": 2**100, "data": {"y": -(10**30)}}},
    }
    source = snapshot_factory(
        [checkpoint_row(2**63 - 1, blob), checkpoint_row(-(2**63), {"reason": "lowest id"})],
        [session_row(1, "a:c", {"agent_id": BIG}, last_seen=2**63 - 1), session_row(2, "b:c", {}, last_seen=-(2**63))],
    )
    assert round_trip_problems(source, target, tmp_path) == []
    assert str(BIG) in column_values(target, Checkpoint.extra)[1]  # as JSON text, not a number column


def test_real_cells_are_kept_as_their_repr_text(target: str, snapshot_factory: SnapshotFactory, tmp_path: Path) -> None:
    """Trap: a float does not survive a REAL/DOUBLE column read back through a text cast (and
    MySQL's DOUBLE has no infinity): legacy REAL cells are kept as `repr` text, on every engine."""
    reals = [0.1 + 0.2, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), -1.5e-7]
    source = snapshot_factory(
        [], [session_row(n, f"s{n}", {}, last_seen=value) for n, value in enumerate(reals, start=1)]
    )
    assert round_trip_problems(source, target, tmp_path) == []
    assert column_values(target, McpSession.last_seen_type) == ["real"] * len(reals)
    assert column_values(target, McpSession.last_seen_text) == [repr(value) for value in reals]


# --- the store, every command, and the engine's own schema and bulk path -------------------------


def test_the_store_writes_both_sides_with_its_relational_tables_on_any_engine(
    target: str, snapshot_factory: SnapshotFactory
) -> None:
    """`open_store(URL, legacy=FILE)`: each save writes the legacy row, then the relational rows;
    `relational` reads are served by the target without a fallback, and `verify` finds the two
    sides equal."""
    legacy = snapshot_factory()
    checkpoint = {"reason": "dev", "session_queues": {"s\x00": [], "S": []}, "active_completions": {"r": {}}}
    session = {"agent_id": "a", "tools": ["Read", "Read "], "n": 2**70}
    with open_store(target, legacy=legacy, mode="relational", create=True) as store:
        checkpoint_id = store.save_checkpoint(checkpoint)
        store.save_session("a\x00:c", session, "2025-06-21T10:00:00.5")
        store.save_session("A:c", {"agent_id": "A"}, "2025-06-21T10:00:00")
        assert store.delete_session("A:c")
        assert json_differences(checkpoint, store.load_checkpoint(checkpoint_id)) == []
        assert json_differences(session, store.get_session("a\x00:c")) == []
        assert store.get_session("A:c") is None
        report = store.report()
    assert (report.fallbacks, report.pending_repairs) == (0, [])
    with LegacySource(legacy) as source, target_database(target, must_exist=True) as database:
        assert verify(source, database).ok


def test_every_command_takes_the_target_as_a_url_or_path(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = snapshot_factory([checkpoint_row(1, {"reason": "dev"})], [session_row(1, "a:c", {"agent_id": "a"})])
    assert round_trip_problems(source, target, tmp_path) == []
    assert main(["export", "--target", target, "--out", str(tmp_path / "rows.jsonl")]) == 0
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 2
    assert main(["archive", "--source", str(source), "--out", str(tmp_path / "archive")]) == 0
    cleanup = ["cleanup", "--source", str(source), "--target", target, "--archive", str(tmp_path / "archive")]
    assert main([*cleanup, "--dry-run"]) == 0
    assert "dry run: every check passed" in capsys.readouterr().out
    assert main(cleanup) == 0  # drops the legacy tables, and records that in the target
    with target_database(target, must_exist=True) as database:
        recorded = recorded_cleanup(database)
        assert recorded is not None and recorded["tables"] == LEGACY_TABLES
    restored = tmp_path / "restored-after-cleanup.db"
    assert main(["restore", "--target", target, "--out", str(restored)]) == 0
    assert compare_legacy_files(tmp_path / "restored.db", restored, LEGACY_TABLES) == []


@pytest.fixture
def postgresql_target(engine_registry: EngineRegistry) -> Iterator[str]:
    with engine_registry.targets(engines.POSTGRESQL).fresh() as target:
        yield target


@pytest.fixture
def mysql_target(engine_registry: EngineRegistry) -> Iterator[str]:
    with engine_registry.targets(engines.MYSQL).fresh() as target:
        yield target


def mysql_columns(database: pw.Database, table: str) -> dict[str, tuple[str, str | None]]:
    """column -> (column type, collation), as MySQL describes them."""
    sql = (
        "SELECT column_name, column_type, collation_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = %s"
    )
    return {name: (kind, collation) for name, kind, collation in database.execute_sql(sql, (table,)).fetchall()}


def test_mysql_tables_hold_long_text_microseconds_and_4_byte_characters_and_tell_keys_apart(
    mysql_target: str,
) -> None:
    """Traps: MySQL's TEXT (64 KiB), DATETIME (no microseconds), `utf8` (3 bytes) and collations
    that fold case or trailing spaces: LONGTEXT, DATETIME(6), utf8mb4, a binary NO PAD collation."""
    with target_database(mysql_target) as database:
        create_schema(database)
        mysql = engines.engine(database)
        assert isinstance(mysql, engines.MySQLEngine)
        collation = mysql.collation()
        columns = mysql_columns(database, "mcp_session")
        table = database.execute_sql(
            "SELECT engine, table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = 'mcp_session'"
        ).fetchone()
    assert collation in engines.MYSQL_NO_PAD_BINARY_COLLATIONS
    assert columns["agent_id"] == ("longtext", collation)
    assert columns["session_key_digest"] == ("varchar(32)", collation)
    assert columns["last_seen"][0] == "datetime(6)"
    assert columns["id"][0] in ("bigint", "bigint(20)")  # MySQL 8 drops the display width
    assert table == ("InnoDB", collation)


def test_postgresql_tables_use_text_timestamp_and_bigint(postgresql_target: str) -> None:
    """PostgreSQL's own types need no change: TEXT has no length limit, TIMESTAMP keeps microseconds."""
    sql = (
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'mcp_session'"
    )
    with target_database(postgresql_target) as database:
        create_schema(database)
        columns = dict(database.execute_sql(sql).fetchall())
    assert columns["agent_id"] == "text"
    assert columns["last_seen"] == "timestamp without time zone"
    assert columns["id"] == "bigint"


def test_the_store_asks_for_text_values_through_their_indexes_on_postgresql(
    postgresql_target: str, snapshot_factory: SnapshotFactory
) -> None:
    """Trap: a PostgreSQL btree refuses entries over ~2.7 kB, so a text column's index holds a
    digest of the value (`engines.PostgreSQLEngine.index`); a lookup that compares only the
    column can use no index at all, and the planner reads the whole table."""
    sessions = [session_row(n, f"s{n}", {"agent_id": f"agent{n % 7}", "tools": ["Read"]}) for n in range(1, 50)]
    with target_database(postgresql_target) as database, LegacySource(snapshot_factory([], sessions)) as source:
        backfill(source, database)
        store = RelationalTables(database)
        lookups: dict[str, pw.ModelSelect[Any]] = {
            "mcp_session_agent_id": McpSession.select(McpSession.id).where(
                engines.engine(database).text_equals(McpSession.agent_id, "agent3")
            ),
            "checkpoint_reason": Checkpoint.select(Checkpoint.id).where(
                engines.engine(database).text_equals(Checkpoint.reason, "dev")
            ),
        }
        database.execute_sql("SET enable_seqscan = off")  # tiny tables: only a usable index avoids the scan
        for index_name, query in lookups.items():
            sql, params = query.sql()
            plan = "\n".join(row[0] for row in database.execute_sql(f"EXPLAIN {sql}", params).fetchall())
            assert re.search(rf"(Index Scan using|Bitmap Index Scan on) {index_name} ", plan), plan
        assert list(store.blobs_holding(sessions_kind, McpSession.agent_id, "agent_id", "agent3")) == [
            f"s{n}" for n in range(1, 50) if n % 7 == 3
        ]


def test_the_gate_finds_every_declared_index_on_every_engine(
    target: str, snapshot_factory: SnapshotFactory, tmp_path: Path
) -> None:
    """Trap: an index over an expression (PostgreSQL's digest of a text column) lists no plain
    column, so the schema check would call it missing."""
    source = snapshot_factory([checkpoint_row(1, {"reason": "dev"})], [session_row(1, "a:c", {"agent_id": "a"})])
    assert round_trip_problems(source, target, tmp_path) == []
    with target_database(target, must_exist=True) as database:
        result = check_schema(database)
    assert result.problems == []
    assert result.figures["indexes"] > 0


def test_postgresql_bulk_inserts_go_through_execute_values(
    postgresql_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL gets psycopg2's execute_values: one statement a page of rows, where a plain
    executemany sends one statement a row."""
    calls: list[int] = []
    original = engines.execute_values

    def counted(cursor: Any, sql: str, rows: Any, **kwargs: Any) -> Any:
        calls.append(len(rows))
        return original(cursor, sql, rows, **kwargs)

    monkeypatch.setattr(engines, "execute_values", counted)
    with target_database(postgresql_target) as database:
        create_schema(database)
        table = TableMap(McpSession, SESSION_COLUMNS, unmapped=OTHER_SESSION_COLUMNS)
        engines.engine(database).bulk_insert(insert_sql(database, table), session_rows(500))
        assert calls == [500]
        assert McpSession.select().count() == 500


def test_mysql_bulk_inserts_are_rewritten_into_multi_row_statements(mysql_target: str) -> None:
    """MySQL gets pymysql's executemany, which sends one multi-row INSERT when the statement has
    the plain `INSERT ... VALUES (%s, ...)` form that the models generate."""
    with target_database(mysql_target) as database:
        create_schema(database)
        table = TableMap(McpSession, SESSION_COLUMNS, unmapped=OTHER_SESSION_COLUMNS)
        before = inserts_run(database)
        engines.engine(database).bulk_insert(insert_sql(database, table), session_rows(500))
        assert inserts_run(database) - before == 1
        assert McpSession.select().count() == 500


def inserts_run(database: pw.Database) -> int:
    """INSERT statements this MySQL connection has run, as the server counts them."""
    return int(database.execute_sql("SHOW SESSION STATUS LIKE 'Com_insert'").fetchone()[1])


def test_a_sqlite_url_opens_the_target_as_a_path_does(tmp_path: Path) -> None:
    """A `sqlite:///` URL gets the pragmas of a path target: foreign keys enforced (so the
    cascades run), and WAL."""
    with target_database(f"sqlite:///{tmp_path / 'target.db'}") as database:
        assert database.execute_sql("PRAGMA foreign_keys").fetchone() == (1,)
        assert database.execute_sql("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_read_only_store_reads_every_session_and_the_engine_refuses_its_writes(
    target: str, snapshot_factory: SnapshotFactory
) -> None:
    """The gate's lookups read the target itself: SQLite opens it `mode=ro`, PostgreSQL sets
    `default_transaction_read_only` (beside the URL's own search_path), MySQL runs
    `SET SESSION TRANSACTION READ ONLY` on every connection."""
    blob = {"agent_id": "a", "tools": ["Read", {"name": "Bash"}], "n": 1.0}
    source = snapshot_factory([], [session_row(1, "a:c1", blob), session_row(2, "a:c2", {"agent_id": "a"})])
    assert main(["migrate", "--source", str(source), "--target", target]) == 0

    with open_store(target, mode="relational_only", read_only=True) as store:
        found = store.get_session("a:c1")
        with pytest.raises(ReadOnlyStore):
            store.save_session("a:c3", blob, "2025-06-21T10:00:00")
        with pytest.raises(pw.DatabaseError):  # the engine itself, below the store
            store.database.execute_sql(f"DELETE FROM {McpSession._meta.table_name}")

    assert json_differences(blob, found) == []
    with relational_store(target) as store:  # nothing was written
        assert store.get_session("a:c2") == {"agent_id": "a"}
        assert store.get_session("a:c3") is None


def test_a_read_only_store_serves_only_relational_only_reads(target: str, snapshot_factory: SnapshotFactory) -> None:
    source = snapshot_factory([], [session_row(1, "a:c1", {"agent_id": "a"})])
    assert main(["migrate", "--source", str(source), "--target", target]) == 0
    with pytest.raises(ReadOnlyStore, match="relational_only"):
        open_store(target, mode="dual_write", read_only=True)
