"""Query equivalence: every read the store offers, answered by the relational rows, equals the
answer of the daemon's legacy SQL on the same rows (`verification.daemon_sql`), on generated
snapshots with mixed timestamp spellings and quarantined rows.

The reads by key (a session, with and without its `last_seen`; a checkpoint; the latest; the list
of checkpoints) must answer exactly what the legacy SQL answers, quarantined rows included. The
sessions seen after a cutoff, and those an expiry removes, must be exactly the rows the legacy
SQL selects wherever `last_seen` is spelled as the daemon writes it (`datetime.isoformat()`,
naive), and the rows whose time is after (before) the cutoff's for every other spelling (the
README's choice); cutoffs are drawn at stored values and one microsecond either side. The plan's
queries (by agent, by reason, tool usage) must answer what the daemon's reading of the blobs the
legacy SQL returns gives, for every row that is not quarantined, and never name a quarantined one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.equivalence import json_differences
from migrator.errors import UnreadableRecord
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacyRow
from migrator.models import bound_to
from migrator.store import Mode, Store, open_store
from migrator.store.relational_side import RelationalTables
from verification import daemon_sql
from verification.engines import SQLITE_TARGETS, Targets
from verification.fuzzing import honour_budget
from verification.harness import migrate, scratch_folder
from verification.oracle import JsonObject, column_text, first_values
from verification.snapshots import checkpoint_row, session_row
from verification.strategies import DAEMON_SCHEMA, LegacySnapshot, legacy_snapshots, session_tables
from verification.test_server_engines import server_settings

Answer = Any
UNREADABLE = "unreadable"  # what a read of a row that is not a JSON object answers, on both sides


def daemon_reading(data: Any) -> Answer:
    """The daemon's `json.loads` of a data cell: the object, or UNREADABLE (the store raises)."""
    value = first_values(data) if isinstance(data, str) else None
    return UNREADABLE if value is None else daemon_sql.loads(data)


def stored(read: Callable[..., Any], *arguments: Any) -> Answer:
    """A store read, UNREADABLE where it raised `UnreadableRecord` (the row is no JSON object)."""
    try:
        return read(*arguments)
    except UnreadableRecord:
        return UNREADABLE


# --- the meaning of "seen after" -----------------------------------------------------------------


def named_time(cell: Any) -> datetime | None:
    """The time a `last_seen` cell names, as the README says the relational modes read it: UTC
    when it has an offset, as written when naive, none for a number or text that names no time."""
    if not isinstance(cell, str):
        return None
    try:
        moment = datetime.fromisoformat(cell)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            return None
    return moment if 1000 <= moment.year <= 9999 else None


def daemon_spelled(cell: Any) -> bool:
    """`last_seen` as the daemon writes it: `datetime.isoformat()` of a naive time."""
    moment = named_time(cell)
    return moment is not None and isinstance(cell, str) and moment.isoformat() == cell


def expected_selection(rows: list[LegacyRow], by_sql: set[int], cutoff: str, *, after: bool) -> list[int]:
    """Rowids the relational side must select: the legacy SQL's choice for the daemon's spelling,
    the time named for every other spelling."""
    moment = datetime.fromisoformat(cutoff)
    chosen = []
    for rowid, _, _, last_seen in rows:
        named = named_time(last_seen)
        if daemon_spelled(last_seen):
            selected = rowid in by_sql
        else:
            selected = named is not None and (named > moment if after else named < moment)
        if selected:
            chosen.append(rowid)
    return chosen


def cutoffs(sessions: tuple[LegacyRow, ...]) -> st.SearchStrategy[str]:
    """Cutoffs as the daemon passes them (`isoformat()`): stored values, one microsecond either
    side, and times anywhere."""
    stored_times = [datetime.fromisoformat(row[3]) for row in sessions if daemon_spelled(row[3])]
    near = [moment + timedelta(microseconds=shift) for moment in stored_times for shift in (-1, 0, 1)]
    anywhere = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30))
    return (st.sampled_from(near) | anywhere if near else anywhere).map(datetime.isoformat)


# --- the plan's queries, by the daemon's reading ---------------------------------------------------


def readable(rows: list[tuple[Any, ...]], quarantined: set[int]) -> list[tuple[tuple[Any, ...], JsonObject]]:
    """(rowid, key, data) rows that are not quarantined, each with its blob read by first values
    (the columns' rule for a repeated key)."""
    found = []
    for row in rows:
        blob = first_values(row[2]) if isinstance(row[2], str) else None
        if row[0] not in quarantined and blob is not None:
            found.append((row, blob))
    return found


def tool_names(blob: JsonObject) -> set[str]:
    tools = blob.get("tools", [])
    names = set()
    for tool in tools if isinstance(tools, list) else []:
        name = tool if column_text(tool) is not None else tool.text("name") if isinstance(tool, JsonObject) else None
        if name is not None:
            names.add(name)
    return names


def expected_tool_usage(sessions: list[tuple[LegacyRow, JsonObject]]) -> list[tuple[str, int]]:
    counts = Counter(name for _, blob in sessions for name in tool_names(blob))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def quarantined_rowids(store: Store) -> dict[str, set[int]]:
    """The rowids of each legacy table that the migration quarantined."""
    found: dict[str, set[int]] = {CHECKPOINTS.name: set(), MCP_SESSIONS.name: set()}
    for table, rowid in store.database.execute_sql("SELECT legacy_table, source_rowid FROM ksi_quarantine"):
        found[table].add(rowid)
    return found


# --- the property ----------------------------------------------------------------------------------


def answers_alike(expected: Answer, actual: Answer) -> list[str]:
    return [str(difference) for difference in json_differences(expected, actual)]


def check_session_reads(store: Store, legacy: Path) -> list[str]:
    problems = []
    for row in daemon_sql.session_rows(legacy):
        key = row[1]
        if not isinstance(key, str):
            continue  # the store is asked by text keys; a row with another key is found by none
        found = daemon_sql.session(legacy, key)
        blob = None if found is None else daemon_reading(found[0])
        problems += answers_alike(blob, stored(store.get_session, key))
        record = stored(store.load_session, key)
        as_read = record if record in (None, UNREADABLE) else [record.key, record.blob, record.last_seen]
        legacy_record = None if found is None else UNREADABLE if blob == UNREADABLE else [key, blob, found[1]]
        problems += answers_alike(legacy_record, as_read)
    return [*problems, *answers_alike(None, store.get_session("no such session"))]


def check_checkpoint_reads(store: Store, legacy: Path) -> list[str]:
    problems = []
    ids = [checkpoint_id for checkpoint_id, _ in daemon_sql.checkpoint_list(legacy)]
    missing = next(candidate for candidate in itertools.count(1) if candidate not in ids)
    for checkpoint_id in [*ids, missing]:
        row = daemon_sql.checkpoint(legacy, checkpoint_id)
        expected = None if row is None else daemon_reading(row[0])
        problems += answers_alike(expected, stored(store.load_checkpoint, checkpoint_id))
    latest = daemon_sql.latest_checkpoint(legacy)
    problems += answers_alike(None if latest is None else daemon_reading(latest[0]), stored(store.latest_checkpoint))
    problems += answers_alike(daemon_sql.checkpoint_list(legacy), store.list_checkpoints())
    return problems


def check_seen_after_and_expiry(store: Store, legacy: Path, cutoff: str) -> list[str]:
    rows = daemon_sql.session_rows_with_last_seen(legacy)
    by_rowid = {row[0]: row for row in rows}
    after = expected_selection(rows, set(daemon_sql.seen_after(legacy, cutoff)), cutoff, after=True)
    expected = [
        [by_rowid[rowid][1], daemon_reading(by_rowid[rowid][2]), by_rowid[rowid][3]]
        for rowid in after
        if daemon_reading(by_rowid[rowid][2]) != UNREADABLE  # left out of the listing, and counted
    ]
    actual = [[record.key, record.blob, record.last_seen] for record in store.sessions_seen_after(cutoff)]
    before = expected_selection(rows, set(daemon_sql.seen_before(legacy, cutoff)), cutoff, after=False)
    with bound_to(store.database):
        expired = list(RelationalTables(store.database).expired_rowids(cutoff))
    return answers_alike(expected, actual) + answers_alike(before, expired)


def check_plan_queries(
    store: Store, legacy: Path, quarantined: dict[str, set[int]], agent: str, reason: str
) -> list[str]:
    sessions = readable(daemon_sql.session_rows(legacy), quarantined[MCP_SESSIONS.name])
    checkpoints = readable(daemon_sql.checkpoint_rows(legacy), quarantined[CHECKPOINTS.name])
    problems = []
    for wanted in {agent, *(blob.text("agent_id") for _, blob in sessions)} - {None}:
        expected = {row[1]: daemon_sql.loads(row[2]) for row, blob in sessions if blob.text("agent_id") == wanted}
        problems += answers_alike(expected, store.sessions_for_agent(wanted))
    for wanted in {reason, *(blob.text("reason") for _, blob in checkpoints)} - {None}:
        expected_checkpoints = {
            row[0]: daemon_sql.loads(row[2]) for row, blob in checkpoints if blob.text("reason") == wanted
        }
        problems += answers_alike(list(expected_checkpoints.items()), list(store.checkpoints_by_reason(wanted).items()))
    problems += answers_alike(expected_tool_usage(sessions), list(store.tool_usage().items()))
    return problems


def check_query_equivalence(
    snapshot: LegacySnapshot, cutoff: str, agent: str, reason: str, targets: Targets = SQLITE_TARGETS
) -> None:
    with scratch_folder() as folder, targets.fresh() as target:
        legacy = snapshot.write(folder / "legacy.db")
        migrate(legacy, target, batch_size=3)
        with open_store(target, mode=Mode.RELATIONAL_ONLY, read_only=True) as store:
            problems = check_session_reads(store, legacy) + check_checkpoint_reads(store, legacy)
            problems += check_seen_after_and_expiry(store, legacy, cutoff)
            problems += check_plan_queries(store, legacy, quarantined_rowids(store), agent, reason)
    assert problems == []


SNAPSHOTS = legacy_snapshots(sessions=session_tables(max_size=8))


def check_drawn(snapshot: LegacySnapshot, data: st.DataObject, targets: Targets = SQLITE_TARGETS) -> None:
    cutoff = data.draw(cutoffs(snapshot.sessions), label="cutoff")
    agent, reason = data.draw(st.text(max_size=3), label="agent"), data.draw(st.text(max_size=3), label="reason")
    check_query_equivalence(snapshot, cutoff, agent, reason, targets)


@given(snapshot=SNAPSHOTS, data=st.data())
def test_every_read_answers_as_the_legacy_sql(snapshot: LegacySnapshot, data: st.DataObject) -> None:
    check_drawn(snapshot, data)


@pytest.mark.hypothesis  # a hypothesis test, built as it runs: a fuzz budget gives it its share
def test_every_read_answers_as_the_legacy_sql_on_a_server_engine(server_engine: Targets) -> None:
    def holds(snapshot: LegacySnapshot, data: st.DataObject) -> None:
        check_drawn(snapshot, data, server_engine)

    holds.__name__ = f"query_equivalence_on_{server_engine.engine}"  # failures saved per engine
    test = settings(server_settings())(given(snapshot=SNAPSHOTS, data=st.data())(holds))
    honour_budget(test)()


CUTOFF = "2025-06-20T10:00:00"
EDGES = LegacySnapshot(
    DAEMON_SCHEMA,
    (
        checkpoint_row(3, {"reason": "manual", "session_queues": {}, "active_completions": {}}, "2025-06-20T10:00:00Z"),
        checkpoint_row(5, "[truncated"),  # quarantined: listed, the latest, in no plan query
        checkpoint_row(4, '{"reason": "manual", "session_queues": {"s": []}, "session_queues": {"s": []}}'),
    ),
    (
        session_row(1, "at:c", {"agent_id": "a", "tools": ["Read"]}, CUTOFF),  # neither after nor before
        session_row(2, "after:c", {"agent_id": "a", "tools": [{"name": "Read"}, "Bash"]}, f"{CUTOFF}.000001"),
        session_row(3, "broken:c", "not json", "2025-06-21T00:00:00"),  # quarantined, after
        session_row(4, "list:c", [1], "2025-06-19T00:00:00"),  # quarantined, before
        session_row(5, "space:c", {"agent_id": "b", "tools": []}, "2025-06-20 11:00:00"),  # by time: after
        session_row(6, "zulu:c", {"tools": ["Read"]}, f"{CUTOFF}Z"),  # by time: at the cutoff
        session_row(7, "number:c", {"tools": []}, 1750413600),  # names no time
        session_row(8, "before:c", {"agent_id": "a", "tools": ["Read", "Read"]}, "2025-06-20T09:59:59.999999"),
    ),
)


@pytest.mark.parametrize("cutoff", [CUTOFF, "2025-06-20T09:59:59.999999", f"{CUTOFF}.000001", "2025-06-20T11:00:00"])
def test_the_edges_answer_as_the_legacy_sql(any_engine: Targets, cutoff: str) -> None:
    """Cutoffs at stored values, quarantined rows on both sides of them, every spelling the README names."""
    check_query_equivalence(EDGES, cutoff, "a", "manual", any_engine)
