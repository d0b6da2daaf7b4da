"""The life of a legacy database while the migration runs beside it, as a hypothesis state machine."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import ExitStack, closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, invariant, precondition, rule

from migrator.codec import InvalidText
from migrator.kinds import KINDS
from migrator.legacy import CHECKPOINTS, LEGACY_TABLES, MCP_SESSIONS, LegacyRow
from migrator.relational import rebuilt_rows
from migrator.target import target_database
from verification.engines import SQLITE_TARGETS, Targets
from verification.fuzzing import BudgetedMachine
from verification.harness import (
    legacy_file_differences,
    legacy_row_differences,
    migrate,
    read_legacy_rows,
    restore_copy,
    verify_target,
)
from verification.strategies import (
    checkpoint_data_cells,
    session_data_cells,
    session_keys,
    sqlite_texts,
    timestamps,
    weighted,
)

KEPT_CHECKPOINTS = 5  # the daemon keeps the newest five checkpoints
SESSION_LIFETIME = timedelta(hours=24)  # and deletes sessions not seen for a day
START = datetime(2025, 6, 20, 9, 0, 0)

LegacyState = dict[str, dict[int, LegacyRow]]
"""Every legacy table's rows by rowid, at one moment."""


class BackfillInterrupted(Exception):
    """Raised from the progress callback to stop a backfill between two batches, like a crash."""


def _bound(cell: Any) -> tuple[str, Any]:
    """SQL placeholder and parameter for a cell: non-UTF-8 TEXT is bound as bytes and cast back."""
    if isinstance(cell, InvalidText):
        return "CAST(? AS TEXT)", bytes(cell)
    return "?", cell


class LegacyDatabaseLifecycle(BudgetedMachine):
    """The daemon keeps writing its legacy tables while backfills run now and then.

    Rules: the daemon saves a checkpoint and prunes to the newest five; it rewrites a session
    with `INSERT OR REPLACE`, which moves `last_seen` (and gives the row a new rowid); time
    passes and sessions unseen for 24 hours are deleted; a backfill runs with a small batch size
    (every run is a catch-up of what changed since the last one); a backfill stops part-way, as
    if the process died between two batches.

    What the invariant can honestly claim. A backfill reads the legacy tables in one read
    transaction, so a completed run brings the target to the legacy tables *as they were when it
    ran*. What the daemon writes afterwards is not in the target until the next run, so between
    runs the claim is: rebuilding from the relational side gives exactly the legacy tables as of
    the last completed backfill, not as they are now. A run that stops part-way has committed
    whole batches only; until the next completed run, the claim weakens to: every rebuilt row is
    exactly a row the legacy table held at one of the runs since the last completed one (no row is
    invented or half-written). Right after each completed run, `verify` also passes against the
    live source and a restored copy equals it, AUTOINCREMENT counter included.

    The daemon's steps cannot change the target, so the invariant is checked after each step
    that ran a backfill; checking it after the others would only repeat the same comparison.
    """

    known_session_keys = Bundle("session_keys")
    targets: ClassVar[Targets] = SQLITE_TARGETS  # the target's engine; `lifecycle_on` picks another

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="ksi-lifecycle-")
        self.source = Path(self.folder.name) / "legacy.db"
        self.resources = ExitStack()
        self.target = self.resources.enter_context(self.targets.fresh())
        self.daemon = sqlite3.connect(self.source, isolation_level=None)
        for table in LEGACY_TABLES:
            self.daemon.execute(table.ddl)
        self.clock = START
        self.runs = 0
        # The legacy states the target may reflect: one after a completed run, more after stops.
        self.claims: list[LegacyState] = []
        self.last_run_completed = False
        self.target_changed = False  # only a backfill changes the target, so only then re-check

    def teardown(self) -> None:
        super().teardown()
        self.daemon.close()
        self.resources.close()
        self.folder.cleanup()

    # --- the daemon ---------------------------------------------------------------------------

    @rule(data=checkpoint_data_cells(nullable=False), stamp=timestamps())
    def daemon_saves_a_checkpoint_and_prunes(self, data: Any, stamp: str) -> None:
        placeholder, value = _bound(data)
        insert = f"INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES (?, {placeholder})"
        self.daemon.execute(insert, (stamp, value))
        self.daemon.execute(
            "DELETE FROM checkpoints WHERE id NOT IN (SELECT id FROM checkpoints ORDER BY id DESC LIMIT ?)",
            (KEPT_CHECKPOINTS,),
        )

    @rule(target=known_session_keys, key=weighted((4, session_keys()), (1, sqlite_texts())))
    def a_new_session_key(self, key: str) -> str:
        return key

    @rule(key=known_session_keys, data=session_data_cells(nullable=False))
    def daemon_writes_a_session(self, key: str, data: Any) -> None:
        placeholder, value = _bound(data)
        self.daemon.execute(
            f"INSERT OR REPLACE INTO mcp_sessions (session_key, session_data, last_seen) VALUES (?, {placeholder}, ?)",
            (key, value, self.clock.isoformat()),
        )

    @rule(
        hours=st.integers(min_value=0, max_value=30),
        microseconds=st.sampled_from((0, 1, 832_348)),  # isoformat() leaves out zero microseconds
    )
    def time_passes_and_old_sessions_are_deleted(self, hours: int, microseconds: int) -> None:
        self.clock += timedelta(hours=hours, microseconds=microseconds)
        cutoff = (self.clock - SESSION_LIFETIME).isoformat()
        self.daemon.execute("DELETE FROM mcp_sessions WHERE last_seen < ?", (cutoff,))

    # --- the migration ------------------------------------------------------------------------

    @rule(batch_size=st.integers(min_value=1, max_value=3))
    def backfill_runs(self, batch_size: int) -> None:
        # The daemon may have pruned and expired every row since the last run: it is its own file.
        migrate(self.source, self.target, batch_size, same_daemon=True)
        self.completed(self.legacy_state())
        report = verify_target(self.source, self.target, batch_size)
        assert report.ok, "verify after a completed backfill:\n" + "\n".join(map(str, report.mismatches))
        again = migrate(self.source, self.target, batch_size)  # nothing changed since: nothing to write
        changed = {t.table: (t.written, t.deleted) for t in again.tables if t.written or t.deleted}
        assert not changed, f"a catch-up right after a catch-up changed (written, deleted) rows: {changed}"
        self.runs += 1
        restored = restore_copy(self.target, Path(self.folder.name) / f"restored-{self.runs}.db", batch_size)
        problems = legacy_file_differences(self.source, restored) + self.sequence_differences(restored)
        assert not problems, "the restored copy differs from the legacy tables:\n" + "\n".join(problems)

    @rule(batch_size=st.integers(min_value=1, max_value=2), batches=st.integers(min_value=1, max_value=3))
    def backfill_stops_part_way(self, batch_size: int, batches: int) -> None:
        done: list[int] = []

        def stop_after_some_batches(table: str, rows: int) -> None:
            done.append(rows)
            if len(done) >= batches:
                raise BackfillInterrupted

        state = self.legacy_state()
        try:
            migrate(self.source, self.target, batch_size, progress=stop_after_some_batches, same_daemon=True)
        except BackfillInterrupted:
            self.claims.append(state)
            self.last_run_completed = False
            self.target_changed = True
        else:
            self.completed(state)  # too few batches to stop at: the run completed

    # --- what must hold -----------------------------------------------------------------------

    @invariant()
    @precondition(lambda self: self.target_changed)
    def rebuilding_gives_the_legacy_tables_as_of_the_last_backfill(self) -> None:
        self.target_changed = False
        rebuilt = self.rebuilt_state()
        if self.last_run_completed:
            claimed = self.claims[0]
            problems = [
                problem
                for table in LEGACY_TABLES
                for problem in legacy_row_differences(
                    table, list(claimed[table.name].values()), list(rebuilt[table.name].values())
                )
            ]
            assert not problems, "rebuilt tables differ from the last backfill's view:\n" + "\n".join(problems)
        else:
            invented = [
                f"{table} rowid {rowid}: {row!r:.160}"
                for table, rows in rebuilt.items()
                for rowid, row in rows.items()
                if not any(self.held(claim, table, row) for claim in self.claims)
            ]
            assert not invented, "rebuilt rows no backfill ever saw:\n" + "\n".join(invented)

    # --- helpers ------------------------------------------------------------------------------

    def completed(self, state: LegacyState) -> None:
        self.claims = [state]
        self.last_run_completed = True
        self.target_changed = True

    def legacy_state(self) -> LegacyState:
        return {table.name: {row[0]: row for row in read_legacy_rows(self.source, table)} for table in LEGACY_TABLES}

    def rebuilt_state(self) -> LegacyState:
        state: LegacyState = {}
        with target_database(self.target, must_exist=True) as database:
            for table in LEGACY_TABLES:
                rows = list(rebuilt_rows(database, KINDS[table.name], batch_size=2))
                failures = [f"rowid {rowid}: {row}" for rowid, row in rows if isinstance(row, Exception)]
                assert not failures, f"{table.name} rows cannot be rebuilt: {failures}"
                state[table.name] = {rowid: row for rowid, row in rows if not isinstance(row, Exception)}
        return state

    @staticmethod
    def held(claim: LegacyState, table_name: str, row: LegacyRow) -> bool:
        table = CHECKPOINTS if table_name == CHECKPOINTS.name else MCP_SESSIONS
        original = claim[table_name].get(row[0])
        return original is not None and not legacy_row_differences(table, [original], [row])

    def sequence_differences(self, restored: Path) -> list[str]:
        """The restored copy must go on numbering checkpoints where the daemon would."""
        query = "SELECT name, seq FROM sqlite_sequence ORDER BY name"
        with closing(sqlite3.connect(restored)) as copy:
            restored_sequences = copy.execute(query).fetchall()
        legacy_sequences = self.daemon.execute(query).fetchall()
        if restored_sequences == legacy_sequences:
            return []
        return [f"sqlite_sequence {restored_sequences} != legacy {legacy_sequences}"]


def lifecycle_on(targets: Targets) -> type[LegacyDatabaseLifecycle]:
    """The same lifecycle with its target on another engine."""
    name = f"LegacyDatabaseLifecycleOn{targets.engine.title()}"
    return type(name, (LegacyDatabaseLifecycle,), {"targets": targets})


LegacyDatabaseLifecycle.TestCase.settings = settings(stateful_step_count=20)
# Long (60 examples of 20 steps, each backfill verified and restored): CI runs it with `-m slow`.
test_legacy_database_lifecycle = pytest.mark.slow(LegacyDatabaseLifecycle.TestCase)
