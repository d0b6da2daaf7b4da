"""The store in the phases after dual write, each against what the daemon itself would do.

A relational write that failed, in every layout of the legacy tables (with the relational ones, in
a file beside them, in the daemon's file per table). In `shadow` mode the daemon is served the
JSON, and the one read the relational rows would answer otherwise is reported by table and key, in
the report and in the log, while every other read is counted as a match; a catch-up settles the
repair. In `relational` mode the read falls back to the JSON, and a catch-up then brings the
relational row, so the read no longer needs the fallback. The expected answers are the values the
daemon saved, and the daemon's rows are read back from the file its layout puts them in.

After cutover (`relational_only`), the store numbers new rows as the daemon's SQLite would have:
checkpoint ids by AUTOINCREMENT (never one used before, pruned or not), session rowids after the
largest one held, the rows the migration quarantined included. The model is the daemon's own SQL
on a copy of its tables taken at cutover (`verification.daemon_sql`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from unittest.mock import patch

from hypothesis import given
from hypothesis import strategies as st

from migrator.legacy import MCP_SESSIONS
from migrator.store import Mode, Store, open_store
from migrator.store import core as store_core
from verification.harness import read_legacy_rows, restore_copy, scratch_folder
from verification.live import DAEMON_FILES
from verification.strategies import session_keys
from verification.test_store_model import (
    CHECKPOINT_STATES,
    SESSION_STATES,
    DaemonModel,
    differences,
    failing_write,
    session,
)

LAST_SEEN = "2025-06-20T09:00:00.832348"
STAMP = "2025-06-20T09:00:00Z"  # the model's checkpoint timestamps; the ids are compared, not the stamps
LAYOUTS = ("one file", "a file beside", "the daemon's files")
LegacyOption = Path | dict[str, Path] | None


def legacy_option(layout: str, folder: Path) -> LegacyOption:
    """`open_store`'s `legacy=` for the layout, with the daemon's files made as its first start does."""
    option: LegacyOption = {
        "one file": None,
        "a file beside": folder / "ksi.db",
        "the daemon's files": {name: folder / file for name, file in DAEMON_FILES.items()},
    }[layout]
    for path in option.values() if isinstance(option, dict) else [option or folder / "target.db"]:
        path.touch()
    return option


def sessions_file(option: LegacyOption, target: Path) -> Path:
    """The file that holds `mcp_sessions` in the layout."""
    if isinstance(option, dict):
        return option[MCP_SESSIONS.name]
    return option if option is not None else target


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def logged_warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("migrator")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@contextmanager
def opened(target: Path, legacy: LegacyOption, mode: Mode) -> Iterator[Store]:
    store = open_store(target, legacy=legacy, mode=mode, create=True)
    try:
        yield store
    finally:
        store.close()


@given(
    layout=st.sampled_from(LAYOUTS),
    sessions=st.dictionaries(session_keys(), SESSION_STATES, min_size=1, max_size=3),
    lost=st.tuples(session_keys(), SESSION_STATES),
    changed_state=SESSION_STATES,
)
def test_a_failed_relational_write_is_reported_by_key_in_shadow_mode_and_falls_back_in_relational_mode(
    layout: str, sessions: dict[str, dict], lost: tuple[str, dict], changed_state: dict
) -> None:
    lost_key, lost_state = lost
    saved = {key: state for key, state in sessions.items() if key != lost_key}
    with scratch_folder() as folder:
        target = folder / "target.db"
        legacy = legacy_option(layout, folder)
        with opened(target, legacy, Mode.DUAL_WRITE) as store:
            for key, state in saved.items():
                store.save_session(key, state, LAST_SEEN)
            store.catch_up(batch_size=2)  # records the legacy tables' schema, from each one's own file

        with logged_warnings() as warnings, opened(target, legacy, Mode.SHADOW) as store:
            with patch.object(store_core, "write_legacy_rows", failing_write):
                store.save_session(lost_key, lost_state, LAST_SEEN)  # the JSON is written; the relational row is not
            answers = {key: session(store.load_session(key)) for key in [*saved, lost_key]}
            store.wait_for_shadow_reads()
            store.catch_up(batch_size=2)  # brings the relational row: the repair is settled
            settled = store.report()
        report = store.report()  # every comparison decided: waited for before the catch-up
        expected = {**{key: (state, LAST_SEEN) for key, state in saved.items()}, lost_key: (lost_state, LAST_SEEN)}
        problems = differences("shadow mode served", expected, answers)
        counted = (report.shadow_reads, report.shadow_matches, report.shadow_mismatches)
        if counted != (len(saved) + 1, len(saved), 1):
            problems.append(f"(reads, matches, mismatches) {counted}, expected {(len(saved) + 1, len(saved), 1)}")
        # One difference: the legacy side's session where the relational side has nothing (null).
        found = [(m.table, m.key, len(m.differences), m.differences[-1][-14:]) for m in report.mismatches]
        if found != [("mcp_sessions", lost_key, 1, "!= null (null)")]:
            problems.append(f"reported mismatches {report.mismatches}, expected one of {lost_key!r}, against null")
        logged = [record.getMessage() for record in warnings.records]
        if not any("shadow read of mcp_sessions" in line and lost_key in line for line in logged):
            problems.append(f"no warning names mcp_sessions {lost_key!r}: {logged}")
        if settled.pending_repairs or settled.repaired != 1:
            problems.append(f"after a catch-up: pending {settled.pending_repairs}, {settled.repaired} repaired, not 1")
        held = [row[1] for row in read_legacy_rows(sessions_file(legacy, target), MCP_SESSIONS)]
        if sorted(held) != sorted(expected):
            problems.append(f"the daemon's sessions file holds {held}, expected {sorted(expected)}")
        assert not problems, f"{layout}:\n" + "\n".join(problems)

        with opened(target, legacy, Mode.RELATIONAL) as store:
            with patch.object(store_core, "write_legacy_rows", failing_write):
                store.save_session(lost_key, changed_state, LAST_SEEN)  # again the relational row is left behind
            never_saved = session(store.load_session(f"{lost_key} never saved"))  # in neither side: no fallback
            fallback = session(store.load_session(lost_key))
            fallbacks = store.report().fallbacks
            store.catch_up(batch_size=2)
            caught_up = session(store.load_session(lost_key))
            after = store.report().fallbacks
    problems = differences("relational mode served", (changed_state, LAST_SEEN), fallback)
    problems += differences("a session never saved", None, never_saved)
    problems += differences("after the catch-up", (changed_state, LAST_SEEN), caught_up)
    assert not problems, f"{layout}:\n" + "\n".join(problems)
    assert (fallbacks, after) == (1, 1), f"{layout}: fallbacks {fallbacks} before the catch-up, {after} after it"


@given(
    sessions=st.dictionaries(session_keys(), SESSION_STATES, max_size=3),
    states=st.lists(CHECKPOINT_STATES, max_size=3),
    unreadable=st.booleans(),
    later_sessions=st.lists(st.tuples(session_keys(), SESSION_STATES), min_size=1, max_size=4),
    later_states=st.lists(CHECKPOINT_STATES, min_size=1, max_size=7),
)
def test_after_cutover_the_store_numbers_new_rows_as_the_daemons_sqlite_would(
    sessions: dict[str, dict],
    states: list[dict],
    unreadable: bool,
    later_sessions: list[tuple[str, dict]],
    later_states: list[dict],
) -> None:
    with scratch_folder() as folder:
        target = folder / "target.db"
        with opened(target, None, Mode.DUAL_WRITE) as store:
            for key, state in sessions.items():
                store.save_session(key, state, LAST_SEEN)
            for state in states:
                store.save_checkpoint(state)
            if unreadable:  # the last session row, which the migration quarantines
                with closing(sqlite3.connect(target)) as daemon, daemon:
                    daemon.execute("INSERT INTO mcp_sessions VALUES ('unreadable', '{not json', ?)", (LAST_SEEN,))
            store.catch_up(batch_size=2)
        with closing(sqlite3.connect(target)) as cutover, closing(sqlite3.connect(":memory:")) as copy:
            cutover.backup(copy)  # the daemon's tables as the cutover finds them
            model = DaemonModel(copy)
            with opened(target, None, Mode.RELATIONAL_ONLY) as store:
                for key, state in later_sessions:
                    store.save_session(key, state, LAST_SEEN)
                    model.save_session(key, state, LAST_SEEN)
                ids = [store.save_checkpoint(state) for state in later_states]
                expected_ids = [model.save_checkpoint(STAMP, state) for state in later_states]
                listed = [row[0] for row in store.list_checkpoints()]
            restored = restore_copy(target, folder / "restored.db", 2)
            numbered = [row[:2] for row in read_legacy_rows(restored, MCP_SESSIONS)]
            expected_numbers = copy.execute("SELECT rowid, session_key FROM mcp_sessions ORDER BY rowid").fetchall()
            expected_listed = [row[0] for row in model.list_checkpoints()]
    assert ids == expected_ids, f"checkpoint ids {ids}, the daemon's {expected_ids}"
    assert listed == expected_listed, f"checkpoints listed {listed}, the daemon's {expected_listed}"
    assert numbered == expected_numbers, f"sessions (rowid, key) {numbered}, the daemon's {expected_numbers}"
