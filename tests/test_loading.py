"""Loads into empty tables (`migrator/loading.py`): secondary indexes built after, and the servers'
native loaders (PostgreSQL `COPY`, MySQL `LOAD DATA LOCAL INFILE`), exact for every value shape.

The property tests write rows of every column type the mapping fills through the native loader
and through the INSERTs a catch-up uses, read both back with plain SQL, and hold each to the rows
given, by type and value. The whole mapping is held to the same on real snapshots by
`verification/test_server_engines.py` ("fresh-load-equals-catch-up", "migrate-then-restore").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import peewee as pw
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migrator import engines, loading, parallel, relational, sessions, staging
from migrator.codec import is_storable_text
from migrator.errors import BrokenReferences, DuplicateKeys
from migrator.kinds import KINDS
from migrator.models import BaseModel, McpSession, MigrationMeta, Reference, references
from migrator.relational import TableMap, insert_sql
from migrator.sessions import TOOL_TABLE
from migrator.target import create_schema, target_database
from tests.conftest import OTHER_SESSION_COLUMNS, SESSION_COLUMNS, SnapshotFactory, session_rows
from verification.engines import Targets
from verification.harness import migrate, verify_target
from verification.snapshots import checkpoint_row, session_row


class Shapes(BaseModel):
    """A table with a column of every field class the mapping fills (see the test below)."""

    id = pw.BigIntegerField(primary_key=True)
    text = pw.TextField(null=True)
    short = pw.CharField(max_length=32, null=True)
    number = pw.BigIntegerField(null=True)
    small = pw.IntegerField(null=True)
    flag = pw.BooleanField(null=True)
    moment = pw.DateTimeField(null=True)

    class Meta:
        table_name = "ksi_test_shapes"


SHAPES = TableMap(Shapes, tuple(Shapes._meta.columns))
FILLED_TYPES = {
    field.field_type
    for table in (*(table for kind in KINDS.values() for table in kind.tables), relational.QUARANTINE)
    for field in table.fields
}


def test_the_shapes_table_covers_every_column_type_the_mapping_fills() -> None:
    """Should a column of another type (a float, a blob) ever be mapped, the loaders' spellings
    and these tests must grow with it: until then `loading` refuses such a value."""
    assert {field.field_type for field in SHAPES.fields} == FILLED_TYPES


# Text with everything that could end a field or a line early, or read as NULL or an escape.
TRAPS = ["", "\\", "\\\\", "\t", "\n", "\r", "\r\n", "\\.", "\\.\n", "\\N", "N", "NULL", "null", "a\\tb",
         " a ", "\x0b\x0c\x1b\x7f", "\u2028\u2029\x85", "\U0001f642", "é", '"\'`', "%s", "{}", "-0.0", "NaN",
         "1e400"]  # fmt: skip
storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40) | (st.sampled_from(TRAPS))
moments = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))
shape_rows = st.lists(
    st.tuples(
        st.none() | storable_text,
        st.none() | st.text("0123456789abcdef\\\t", max_size=32),
        st.none() | st.integers(-(2**63), 2**63 - 1),
        st.none() | st.integers(-(2**31), 2**31 - 1),
        st.none() | st.booleans(),
        st.none() | moments,
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture
def shapes_on(any_engine: Targets) -> Iterator[pw.Database]:
    with any_engine.fresh() as target, target_database(target) as database:
        engines.create_tables(database, [Shapes])
        try:
            yield database
        finally:
            database.execute_sql(f"DROP TABLE {engines.engine(database).quoted('ksi_test_shapes')}")


def load(database: pw.Database, rows: list[tuple[Any, ...]], *, empty: bool) -> list[tuple[Any, ...]]:
    """The rows written into the empty table (`empty`: as a fresh load does, else as a catch-up
    does), read back with plain SQL as the forward check reads them, then removed. The forward
    check expects them as `stored_value_adapters` make them of the rows written."""
    engine = engines.engine(database)
    with engine.indexes_built_after([Shapes] if empty else []), database.atomic():
        relational.insert_rows(database, SHAPES, rows)
    read = database.execute_sql(f"SELECT * FROM {engine.quoted('ksi_test_shapes')} ORDER BY id").fetchall()
    database.execute_sql(f"DELETE FROM {engine.quoted('ksi_test_shapes')}")
    return read


def typed(rows: list[tuple[Any, ...]]) -> list[tuple[tuple[str, Any], ...]]:
    """Cells by type and value: `True` is not `1`, '' is not NULL."""
    return [tuple((type(cell).__name__, cell) for cell in row) for row in rows]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=shape_rows)
@example(values=[(t, None, 2**63 - 1, -(2**31), True, datetime(1000, 1, 1)) for t in TRAPS])
def test_every_value_shape_survives_the_native_loader_and_the_inserts_alike(
    shapes_on: pw.Database, values: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trap: a value with a backslash, a tab, a newline or a carriage return, `\\.` or `\\N`, the
    empty string beside NULL, the extremes of BIGINT, a boolean beside an integer, microseconds."""
    rows = [(rowid, *cells) for rowid, cells in enumerate(values, start=1)]
    adapters = engines.engine(shapes_on).stored_value_adapters(SHAPES.fields)
    expected = typed([tuple(v if a is None else a(v) for v, a in zip(row, adapters, strict=True)) for row in rows])
    with monkeypatch.context() as patch:
        loaded = spy_on_native_loads(patch)
        assert typed(load(shapes_on, rows, empty=True)) == expected
        natively = list(loaded)
        assert natively == ([] if engines.engine(shapes_on).name == engines.SQLITE else ["ksi_test_shapes"])
        assert typed(load(shapes_on, rows, empty=False)) == expected
        assert loaded == natively  # a catch-up's INSERTs


def test_a_value_of_a_type_no_column_takes_is_refused() -> None:
    for value in (1.5, float("nan"), b"\x00", bytearray(b"x")):
        for field in (loading.POSTGRESQL_FIELD, loading.MYSQL_FIELD):
            with pytest.raises(TypeError, match="no bulk-load spelling"):
                field(value)


def test_a_lone_surrogate_is_refused_before_anything_is_sent() -> None:
    assert not is_storable_text("\ud800")  # the mapping keeps such text escaped in JSON
    with pytest.raises(UnicodeEncodeError):
        loading.lines([("\ud800",)], loading.POSTGRESQL_FIELD)


# --- which path a load takes ----------------------------------------------------------------------


def test_a_migrate_into_empty_server_tables_takes_the_native_loader_and_a_catch_up_the_inserts(
    server_engine: Targets, snapshot_factory: SnapshotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = spy_on_native_loads(monkeypatch)
    checkpoint, session = checkpoint_row(1, {"reason": "a\\tb\n"}), session_row(1, "k\t1", {"tools": ["R\\."]})
    source = snapshot_factory([checkpoint], [session])
    with server_engine.fresh() as target:
        migrate(source, target, batch_size=10)
        assert sorted(loaded) == ["checkpoint", "mcp_session", "mcp_session_tool"]
        assert verify_target(source, target, batch_size=10).ok
        loaded.clear()
        more = snapshot_factory([checkpoint, checkpoint_row(2, {"reason": "\r"})], [session])
        migrate(more, target, batch_size=10)
        assert loaded == []  # the tables held rows: the catch-up's INSERTs, indexes in place
        assert verify_target(more, target, batch_size=10).ok


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_fresh_server_load_is_sent_as_lines_staged_where_the_rows_are_mapped_and_is_exact(
    server_engine: Targets, snapshot_factory: SnapshotFactory, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """`--jobs 1`: a thread maps and stages; `--jobs 2`: the workers do (and this process, while
    they start, maps some batches itself, which it loads from rows)."""
    staged_on: list[str] = []
    stage = staging.LineStaging.stage

    def spied(self: staging.LineStaging, tables: Any, rows: Any) -> staging.StagedLines:
        staged_on.append(threading.current_thread().name)
        return stage(self, tables, rows)

    monkeypatch.setattr(staging.LineStaging, "stage", spied)  # this process only, not the workers
    sent: list[int] = []
    insert_into = staging.StagedLines.insert_into

    def sent_as_lines(lines: staging.StagedLines, *args: Any) -> None:
        sent.append(sum(lines.counts))
        insert_into(lines, *args)

    monkeypatch.setattr(staging.StagedLines, "insert_into", sent_as_lines)
    start = parallel.WorkerPool.start

    def started(pool: parallel.WorkerPool, *args: Any) -> None:
        start(pool, *args)
        pool.wait_started()  # so that the workers take batches even from a load this small

    monkeypatch.setattr(parallel.WorkerPool, "start", started)
    checkpoints = [checkpoint_row(n, {"reason": f"r\\{n}\t", "session_queues": {f"s{n}": []}}) for n in range(1, 9)]
    sessions_ = [session_row(n, f"k\t{n}", {"tools": [{"name": f"R\\.{n}"}], "n": n}) for n in range(1, 300)]
    source = snapshot_factory(checkpoints, sessions_)
    with server_engine.fresh() as target:
        migrate(source, target, batch_size=10, jobs=jobs)
        assert verify_target(source, target, batch_size=100).ok
    assert sent, "no batch was sent as staged lines"
    if jobs == 1:
        assert set(staged_on) == {"ksi-map"} and sum(sent) > 0
    else:
        assert staged_on == []  # the workers staged every batch that was sent as lines


def test_a_load_that_fails_stops_its_mapping_thread_before_the_error_is_handled(
    server_engine: Targets, snapshot_factory: SnapshotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(lines: staging.StagedLines, *args: Any) -> None:
        raise pw.DataError("the server refused the batch")

    monkeypatch.setattr(staging.StagedLines, "insert_into", refused)
    source = snapshot_factory([], [session_row(n, f"k{n}", {"n": n}) for n in range(1, 200)])
    with server_engine.fresh() as target, pytest.raises(pw.DataError, match="refused the batch") as failure:
        migrate(source, target, batch_size=5, jobs=1)
    # Its traceback, held here, keeps the run's frames alive: the thread was stopped all the same.
    assert failure.traceback
    assert not any(thread.name == "ksi-map" for thread in threading.enumerate())


def spy_on_native_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables each COPY or LOAD DATA statement made from now on loads."""
    loaded: list[str] = []
    for name in ("copy_statement", "load_data_statement"):
        original = getattr(loading, name)

        def spied(table: str, columns: Any, original: Any = original) -> str:
            loaded.append(table.strip('"`'))
            return original(table, columns)

        monkeypatch.setattr(loading, name, spied)
    return loaded


def test_mysql_without_local_infile_loads_with_inserts_and_says_so(
    engine_registry: Any, snapshot_factory: SnapshotFactory, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A server with local_infile OFF refuses LOAD DATA LOCAL: the load falls back, with a warning."""
    monkeypatch.setattr(loading, "server_allows_local_files", lambda database: False)
    loaded = spy_on_native_loads(monkeypatch)
    source = snapshot_factory([checkpoint_row(1, {"reason": "\\"})], [session_row(1, "k", {"tools": ["\t"]})])
    with engine_registry.targets(engines.MYSQL).fresh() as target, caplog.at_level(logging.WARNING):
        migrate(source, target, batch_size=10)
        assert verify_target(source, target, batch_size=10).ok
    assert loaded == []
    assert "local_infile is OFF" in caplog.text


def test_a_mysql_load_sends_its_own_lines_from_memory_in_packets_and_never_a_file(
    engine_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server may ask the client for any file, and pymysql sends it while `_local_infile` is on.
    It never is: the load answers the request with the batch's lines, in packets of at most
    `LOAD_PACKET_BYTES`, then one empty packet, as the protocol ends the data."""
    monkeypatch.setattr(loading, "LOAD_PACKET_BYTES", 200)
    rows = session_rows(40)
    with engine_registry.targets(engines.MYSQL).fresh() as target, target_database(target) as database:
        create_schema(database)
        connection = database.connection()
        sent: list[bytes] = []
        write_packet = connection.write_packet

        def recorded(payload: bytes) -> None:
            sent.append(payload)
            write_packet(payload)

        monkeypatch.setattr(connection, "write_packet", recorded)
        table = TableMap(McpSession, SESSION_COLUMNS, unmapped=OTHER_SESSION_COLUMNS)
        engine = engines.engine(database)
        with engine.indexes_built_after([McpSession]), database.atomic():
            engine.bulk_insert(insert_sql(database, table), rows, table.fields)
        assert connection._local_infile is False
        assert b"".join(sent) == loading.lines(rows, loading.MYSQL_FIELD)
        assert [len(payload) for payload in sent[:-1]] == [200] * (len(sent) - 2) + [len(sent[-2])]
        assert sent[-1] == b"" and len(sent) > 3
        stored = McpSession.select(McpSession.id, McpSession.session_key).order_by(McpSession.id).tuples()
        assert list(stored) == [(n, f"key{n}") for n in range(1, 41)]


def test_a_duplicate_primary_key_in_a_native_load_fails_the_batch(target: str) -> None:
    """Trap: MySQL's LOAD DATA LOCAL turns a duplicate key into a warning and skips the row."""
    table = TableMap(McpSession, SESSION_COLUMNS, unmapped=OTHER_SESSION_COLUMNS)
    with target_database(target) as database:
        create_schema(database)
        engine = engines.engine(database)
        with engine.indexes_built_after([McpSession]), pytest.raises(pw.IntegrityError):
            with database.atomic():
                relational.insert_rows(database, table, session_rows(2) + session_rows(1))
        assert McpSession.select().count() == 0  # the batch rolled back


# --- secondary indexes built after, on every engine ---------------------------------------------


def index_names(database: pw.Database) -> set[str]:
    engine = engines.engine(database)
    return {name for model in relational_models() for name in engine._index_names(model)}


def relational_models() -> list[type[pw.Model]]:
    return [table.model for kind in KINDS.values() for table in kind.tables]


def test_an_index_a_stopped_load_left_unbuilt_is_built_by_the_next_run(
    target: str, snapshot_factory: SnapshotFactory
) -> None:
    source = snapshot_factory([checkpoint_row(1, {"reason": "r"})], [session_row(1, "k", {"agent_id": "a"})])
    migrate(source, target, batch_size=10)
    with target_database(target) as database:
        complete = index_names(database)
        index = next(i for i in McpSession._meta.fields_to_index() if i._name == "mcp_session_agent_id")
        engines.engine(database)._drop_index(index)  # as a kill -9 mid-load leaves it
        assert complete - index_names(database) == {"mcp_session_agent_id"}
    assert verify_target(source, target, batch_size=10).ok  # reads need no index ...
    migrate(source, target, batch_size=10)  # ... and the next run builds it
    with target_database(target) as database:
        assert index_names(database) == complete


def test_two_rows_with_one_session_key_fail_the_unique_index_by_name_on_every_engine(target: str) -> None:
    row = session_row(1, "a:c1", {"agent_id": "a"})
    with target_database(target) as database:
        create_schema(database)
        with pytest.raises(DuplicateKeys) as refused, engines.engine(database).indexes_built_after([McpSession]):
            relational.write_legacy_rows(database, sessions.KIND, [(row, "d1"), ((2, *row[1:]), "d2")])
        assert "mcp_session_session_key_digest: the snapshot holds two rows" in str(refused.value)


# --- PostgreSQL's foreign keys, added after ---------------------------------------------------------


def foreign_keys(database: pw.Database) -> list[tuple[str, str, str]]:
    tables = [model._meta.table_name for model in relational_models()]
    return sorted(database.execute_sql(loading.FOREIGN_KEYS_SQL, (tables,)).fetchall())


def test_postgresql_adds_the_foreign_keys_back_after_a_load_and_after_a_stopped_one(
    engine_registry: Any, snapshot_factory: SnapshotFactory
) -> None:
    """A foreign key checks each row with a trigger: dropped for the load, added back (checking
    every row once), the same as the schema creates them; a load stopped half way leaves their
    definitions recorded, and the next run adds them."""
    source = snapshot_factory(
        [checkpoint_row(1, {"session_queues": {"s": [{"request_id": "r"}]}})],
        [session_row(1, "k", {"tools": ["Read"]})],
    )
    with engine_registry.targets(engines.POSTGRESQL).fresh() as target:
        with target_database(target) as database:
            create_schema(database)
            created = foreign_keys(database)
        assert len(created) == 5  # every child's key to its parent, a queue item's to its queue too
        migrate(source, target, batch_size=10)
        with target_database(target) as database:
            assert foreign_keys(database) == created
            engines.engine(database)._drop_foreign_keys([table for table, _, _ in created])  # as a kill -9 leaves it
            assert foreign_keys(database) == []
        assert verify_target(source, target, batch_size=10).ok
        migrate(source, target, batch_size=10)
        with target_database(target) as database:
            assert foreign_keys(database) == created
            assert database.execute_sql("SELECT count(*) FROM ksi_migration_meta WHERE key = %s",
                                        (loading.FOREIGN_KEYS_KEY,)).fetchone() == (0,)  # fmt: skip


# --- references checked once after a fresh load ------------------------------------------------------


def insert_orphan_tool(database: pw.Database) -> str:
    """A tool row of a session that does not exist: what a broken mapping would write."""
    row = TOOL_TABLE.build(session_id=77, position=0, form="name", record=("Read", None, None), added_at=None,
                           layout=None, extra=None)  # fmt: skip
    relational.insert_rows(database, TOOL_TABLE, [row])
    return "mcp_session_tool (session_id = 77) names no row of mcp_session:"


def insert_orphan_queue_item(database: pw.Database) -> str:
    """A queue item of a queue its checkpoint does not hold: the key of two columns."""
    database.execute_sql(
        "INSERT INTO checkpoint_queue_item (checkpoint_id, queue_position, position, layout)"
        " SELECT checkpoint_id, 9, position, layout FROM checkpoint_queue_item"
    )
    return "checkpoint_queue_item (checkpoint_id = 1, queue_position = 9) names no row of checkpoint_queue:"


@pytest.fixture
def one_queue(target: str, snapshot_factory: SnapshotFactory) -> str:
    """A target holding one checkpoint with one queue of one item."""
    migrate(
        snapshot_factory([checkpoint_row(1, {"session_queues": {"s": [{"request_id": "r"}]}})], []),
        target,
        batch_size=10,
    )
    return target


@pytest.mark.parametrize("insert_orphan", [insert_orphan_tool, insert_orphan_queue_item])
def test_a_fresh_load_checks_each_reference_once_at_the_end_and_names_a_broken_one(
    one_queue: str, insert_orphan: Callable[[pw.Database], str]
) -> None:
    """SQLite and MySQL look a parent up for every child row inserted; a fresh load leaves that to
    one join per key at the end (PostgreSQL drops its keys for the load instead: above). The
    join must see what the per-row check would have, and the per-row check must come back after."""
    with target_database(one_queue) as database:
        engine = engines.engine(database)
        defers = engine._defers_reference_checks()
        assert defers is (engine.name != engines.POSTGRESQL)
        with pytest.raises(BrokenReferences if defers else pw.IntegrityError) as refused:
            with engine.references_checked_after(relational_models()), database.atomic():
                expected = insert_orphan(database)  # the per-row check would refuse it here
        if defers:
            assert str(refused.value).startswith(expected)
            with database.atomic():
                for table in ("mcp_session_tool", "checkpoint_queue_item"):
                    database.execute_sql(f"DELETE FROM {engine.quoted(table)}")
        with pytest.raises(pw.IntegrityError), database.atomic():  # per row again, as before the load
            insert_orphan_tool(database)


class Stopped(Exception):
    """A load stopped half way (a kill, a dropped server) after some batches committed."""


def test_references_a_stopped_load_left_unchecked_are_checked_by_the_next_run(one_queue: str) -> None:
    with target_database(one_queue) as database:
        engine = engines.engine(database)
        defers = engine._defers_reference_checks()
        with (
            pytest.raises(Stopped if defers else pw.IntegrityError),
            engine.references_checked_after(relational_models()),
        ):
            with database.atomic():
                expected = insert_orphan_queue_item(database)  # a committed batch ...
            raise Stopped  # ... and the run stops before its check
        recorded = MigrationMeta.select().where(MigrationMeta.key == loading.REFERENCES_KEY)
        assert recorded.count(database) == int(defers)  # PostgreSQL refused the row at once: nothing to record
    if not defers:
        return
    with target_database(one_queue) as database, pytest.raises(BrokenReferences) as refused:
        create_schema(database)  # what the next migrate, verify or store opening does first
    assert str(refused.value).startswith(expected)
    with target_database(one_queue) as database:
        engine = engines.engine(database)
        database.execute_sql(f"DELETE FROM {engine.quoted('checkpoint_queue_item')} WHERE queue_position = 9")
        create_schema(database)  # the references hold now: checked, and forgotten
        assert MigrationMeta.select().where(MigrationMeta.key == loading.REFERENCES_KEY).count(database) == 0


def test_only_a_run_of_fresh_tables_alone_leaves_the_references_to_the_end(
    target: str, snapshot_factory: SnapshotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first migrate checks each of the five keys once; a catch-up, or a run that loads one
    kind fresh beside another it catches up, checks every row as it goes."""
    checked: list[str] = []
    check = loading.EmptyTableLoads._refuse_broken_references

    def spy(self: loading.EmptyTableLoads, reference: Reference) -> None:
        checked.append(f"{reference.table}.{'+'.join(reference.columns)}")
        check(self, reference)

    monkeypatch.setattr(loading.EmptyTableLoads, "_refuse_broken_references", spy)
    sessions_only = snapshot_factory([], [session_row(1, "k", {"tools": ["Read", {"name": "Grep"}]})])
    both = snapshot_factory(
        [checkpoint_row(1, {"session_queues": {"s": [{"request_id": "r"}]}, "active_completions": {"r": {}}})],
        [session_row(1, "k", {"tools": ["Read", {"name": "Grep"}]})],
    )
    migrate(sessions_only, target, batch_size=10)
    keys = [f"{ref.table}.{'+'.join(ref.columns)}" for model in relational_models() for ref in references(model)]
    assert len(keys) == 5
    with target_database(target) as database:
        defers = engines.engine(database).name != engines.POSTGRESQL
    assert checked == (keys if defers else [])
    checked.clear()
    migrate(both, target, batch_size=10)  # checkpoints fresh (there were none), sessions caught up
    assert checked == []
    assert verify_target(both, target, batch_size=10).ok
