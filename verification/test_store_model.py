"""The daemon's store (`open_store`) against a plain model of the legacy daemon, as a state machine.

The model is the KSI daemon's own SQL, statement for statement, on an in-memory SQLite database
(`DaemonModel`, from the daemon's `checkpoint.py` and `dynamic_server.py`): `INSERT` and the
prune to the newest five, the in-place `UPDATE` of the latest checkpoint, `INSERT OR REPLACE` of
a session, the text comparisons of `last_seen`. It shares no code with the migrator.

The machine opens the store in any mode and layout (one SQLite file or the relational tables
beside a legacy file; sync calls or `store.aio` from an asyncio loop), on a migrated daemon
database or on none (a first start, where the store creates the daemon's tables), runs the same operations
on the store and on the model, switches phase as the runbook does (a catch-up and `verify`
first; `relational_only` is the last phase), lets the legacy daemon of phase 1 change a row in
place (only `last_seen`, or only the blob, at the same rowid), and makes relational writes fail.
Phase 4 runs as the runbook has it, through the functions the CLI calls: `archive` (a catch-up
first, so target and source agree) at any point while the legacy tables exist, then `cleanup`
with one of the archives, then `restore --archive` from it, into one file or the daemon's two.

What must hold: after every step, every read the daemon makes (the latest checkpoint, each
checkpoint by id, the listing, each session with its `last_seen`, the sessions seen within the
day) equals the model's; wherever the relational rows are current, so do the plan's queries (by
agent, by reason, tool usage); in shadow mode every read is counted, decided, and alike; a save on
the store's own clock is stamped as the daemon stamps; a relational write that fails is recorded
as a pending repair; after a catch-up, `verify` passes against the legacy tables, counting every
row of the model, and no repair is pending; in `relational_only`, `restore` from the target gives
the model's tables as they are (the rollback). Cleanup drops the
legacy tables exactly when its archive holds the model's tables as they are (the daemon wrote
nothing since, or nothing that changed a row or the counter); with a stale archive it refuses,
naming both of its checks that compare the archive with the source, and the legacy tables still
hold the model's rows. After a cleanup the legacy side is gone: a store opened in a mode that
writes it is refused, and the daemon runs `relational_only`, its reads still the model's; and
`restore --archive` gives the model's tables as they were when that archive was written (rows
with their rowids, storage types and values through the comparison engine, the DDL, the
AUTOINCREMENT counter).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, MultipleResults, initialize, invariant, multiple, precondition, rule

from migrator.archive import restore_archive, write_archive
from migrator.cleanup import RESTORES, cleanup
from migrator.codec import cell_identity
from migrator.equivalence import json_differences
from migrator.errors import CleanupRefused, LegacyUnavailable
from migrator.legacy import CHECKPOINTS, LEGACY_TABLES, LEGACY_TABLES_BY_NAME, MCP_SESSIONS, UnmappedColumns
from migrator.legacy_copy import compare_legacy_files
from migrator.sources import open_sources
from migrator.store import Mode, SessionRecord, Store, StoreReport, open_store
from migrator.store import core as store_core
from migrator.target import target_database
from verification import daemon_sql
from verification.fuzzing import BudgetedMachine
from verification.harness import legacy_row_differences, read_legacy_rows, restore_copy, verify_target
from verification.oracle import JsonObject
from verification.strategies import session_keys, weighted
from verification.test_query_equivalence import expected_tool_usage, quarantined_rowids, readable

SESSION_LIFETIME = timedelta(hours=24)
DAEMON_STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"  # `timestamp_utc()`: no fraction when it is zero
START = datetime(2025, 6, 20, 9, 0, 0)
WITH_LEGACY_TABLES = (Mode.LEGACY, Mode.DUAL_WRITE, Mode.SHADOW, Mode.RELATIONAL)
DUAL_WRITING = (Mode.DUAL_WRITE, Mode.SHADOW, Mode.RELATIONAL)
SHADOW_OUTCOMES = ("shadow_matches", "shadow_mismatches", "shadow_stale", "shadow_errors", "shadow_skipped")
RELATIONAL_CURRENT = (*DUAL_WRITING, Mode.RELATIONAL_ONLY)  # the modes that keep the relational rows current

Blob = dict[str, Any]
Quarantined = dict[str, set[int]]  # the rowids of each legacy table the migration quarantined
ARCHIVE_MATCHES = "archive matches the source"  # cleanup's check (2); RESTORES is its check (5)
TARGET_HOLDS_SOURCE = "target holds every source row exactly"  # its check (4), `verify`
LEGACY_TABLE_NAMES = tuple(table.name for table in LEGACY_TABLES)


class DaemonModel:
    """The legacy daemon: its own statements on its own two tables, nothing else."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db  # in autocommit mode, as the daemon commits after each statement
        for statement in (daemon_sql.CHECKPOINTS_DDL, daemon_sql.SESSIONS_DDL):
            self.db.execute(statement)

    def adopt_tables(self, path: Path) -> None:
        """The empty tables as another created them, statement for statement: their `CREATE
        TABLE` text is what an archive keeps and a restore gives back."""
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as created:
            statements = created.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
        for name, sql in statements:
            if name in LEGACY_TABLE_NAMES:
                self.db.execute(f'DROP TABLE "{name}"')
                self.db.execute(sql)

    def save_checkpoint(self, timestamp: str, state: Blob) -> int:
        cursor = self.db.execute(daemon_sql.INSERT_CHECKPOINT, (timestamp, json.dumps(state)))
        self.db.execute(daemon_sql.PRUNE_CHECKPOINTS)
        return int(cursor.lastrowid or 0)

    def update_latest_checkpoint(self, state: Blob) -> int | None:
        found = self.db.execute(daemon_sql.LATEST_CHECKPOINT_ID).fetchone()
        if found is None:
            return None
        self.db.execute(daemon_sql.UPDATE_CHECKPOINT, (json.dumps(state), found[0]))
        return int(found[0])

    def update_checkpoint(self, checkpoint_id: int, state: Blob) -> bool:
        return self.db.execute(daemon_sql.UPDATE_CHECKPOINT, (json.dumps(state), checkpoint_id)).rowcount > 0

    def latest_checkpoint(self) -> Blob | None:
        found = self.db.execute(daemon_sql.LATEST_CHECKPOINT).fetchone()
        return None if found is None else json.loads(found[0])

    def load_checkpoint(self, checkpoint_id: int) -> Blob | None:
        found = self.db.execute("SELECT checkpoint_data FROM checkpoints WHERE id = ?", (checkpoint_id,)).fetchone()
        return None if found is None else json.loads(found[0])

    def list_checkpoints(self) -> list[tuple[int, Any]]:
        return self.db.execute("SELECT id, timestamp FROM checkpoints ORDER BY id DESC").fetchall()

    def save_session(self, key: str, data: Blob, last_seen: str) -> None:
        self.db.execute(daemon_sql.SAVE_SESSION, (key, json.dumps(data), last_seen))

    def delete_session(self, key: str) -> bool:
        return self.db.execute("DELETE FROM mcp_sessions WHERE session_key = ?", (key,)).rowcount > 0

    def expire_sessions(self, cutoff: str) -> int:
        return self.db.execute(daemon_sql.EXPIRE_SESSIONS, (cutoff,)).rowcount

    def load_session(self, key: str) -> tuple[Blob, Any] | None:
        sql = "SELECT session_data, last_seen FROM mcp_sessions WHERE session_key = ?"
        found = self.db.execute(sql, (key,)).fetchone()
        return None if found is None else (json.loads(found[0]), found[1])

    def sessions_seen_after(self, cutoff: str) -> list[tuple[str, Blob, Any]]:
        sql = daemon_sql.SESSIONS_SEEN_AFTER + " ORDER BY rowid"  # the order a table scan gives the daemon
        return [(key, json.loads(data), seen) for key, data, seen in self.db.execute(sql, (cutoff,))]

    # The plan's queries, as the daemon's reading of its blobs answers them; the relational rows
    # answer for every row but those the migration quarantined (`quarantined`: rowids by table).

    def sessions_for_agent(self, agent: str, quarantined: Quarantined) -> dict[str, Blob]:
        sessions = self.sessions(quarantined)
        return {row[1]: daemon_sql.loads(row[2]) for row, blob in sessions if blob.text("agent_id") == agent}

    def checkpoints_by_reason(self, reason: str, quarantined: Quarantined) -> list[tuple[int, Blob]]:
        checkpoints = self.checkpoints(quarantined)
        return [(row[0], daemon_sql.loads(row[2])) for row, blob in checkpoints if blob.text("reason") == reason]

    def tool_usage(self, quarantined: Quarantined) -> list[tuple[str, int]]:
        return expected_tool_usage(self.sessions(quarantined))

    def sessions(self, quarantined: Quarantined) -> list[tuple[tuple[Any, ...], JsonObject]]:
        """(rowid, session_key, session_data) rows, each with its blob read by first values."""
        rows = self.db.execute("SELECT rowid, session_key, session_data FROM mcp_sessions ORDER BY rowid").fetchall()
        return readable(rows, quarantined[MCP_SESSIONS.name])

    def checkpoints(self, quarantined: Quarantined) -> list[tuple[tuple[Any, ...], JsonObject]]:
        rows = self.db.execute("SELECT id, id, checkpoint_data FROM checkpoints ORDER BY id").fetchall()
        return readable(rows, quarantined[CHECKPOINTS.name])

    def row_ids(self) -> list[int]:
        return [checkpoint_id for (checkpoint_id,) in self.db.execute("SELECT id FROM checkpoints ORDER BY id")]

    def tables(self) -> ModelTables:
        """Every row of both tables with its rowid, and the AUTOINCREMENT counter, cell by storage
        type and value: what an archive of the daemon's tables must hold."""
        tables: ModelTables = {"sqlite_sequence": self.db.execute("SELECT name, seq FROM sqlite_sequence").fetchall()}
        for name in LEGACY_TABLE_NAMES:
            rows = self.db.execute(f'SELECT rowid, * FROM "{name}" ORDER BY rowid')
            tables[name] = [tuple(map(cell_identity, row)) for row in rows]
        return tables

    def copy_to(self, path: Path) -> Path:
        """The model's tables as they are now, in a file of their own (SQLite's backup)."""
        with closing(sqlite3.connect(path)) as copy:
            self.db.backup(copy)
        return path


ModelTables = dict[str, list[tuple[Any, ...]]]


class Archived:
    """An archive the machine wrote, and the model's tables as they were when it was written."""

    def __init__(self, folder: Path, model_copy: Path, tables: ModelTables) -> None:
        self.folder = folder
        self.model_copy = model_copy
        self.tables = tables


# Small blobs: the mapping's exactness on every shape is the other properties' subject; this
# machine is about the store's operations, and building whole catalogue blobs would take most of
# its time. Values of every JSON type, `1` beside `1.0` and `true` included, in the daemon's keys.
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=6)
)
JSON_VALUES = st.one_of(
    JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=2)
)
CHECKPOINT_STATES = st.dictionaries(
    st.sampled_from(("timestamp", "session_queues", "active_completions", "components", "reason", "extra")),
    JSON_VALUES,
    max_size=4,
)
SESSION_STATES = st.dictionaries(
    st.sampled_from(("agent_id", "conversation_id", "tools", "thin_handshake", "created", "agent_info", "x")),
    JSON_VALUES,
    max_size=4,
)


class RelationalWriteFailed(sqlite3.OperationalError):
    """Injected: the relational side of a dual write fails (a full disk, a lost server)."""


def failing_write(*args: Any, **kwargs: Any) -> None:
    raise RelationalWriteFailed("disk I/O error (injected into the relational write)")


class StoreAgainstTheDaemon(BudgetedMachine):
    """See the module docstring."""

    keys = Bundle("session_keys")

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="ksi-store-model-")
        self.model = DaemonModel(sqlite3.connect(":memory:", isolation_level=None))
        self.store: Store | None = None
        self.cutover: Store | None = None  # the relational rows read alone, opened when first needed
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clock = START
        self.known_keys: list[str] = []
        self.archives: list[Archived] = []
        self.dropped_with: Archived | None = None  # the archive cleanup dropped the legacy tables with

    def teardown(self) -> None:
        try:
            for store in (self.store, self.cutover):
                if store is not None:
                    store.close()
            if self.loop is not None:
                self.loop.close()
            self.model.db.close()
            self.folder.cleanup()
        finally:
            super().teardown()

    # --- opening and phases ---------------------------------------------------------------------

    @initialize(
        target=keys,
        first=st.sampled_from(list(Mode)),
        fresh=weighted((3, st.just(False)), (1, st.just(True))),
        two_files=st.booleans(),
        aio=st.booleans(),
        sessions=st.lists(
            st.tuples(session_keys(), SESSION_STATES), min_size=1, max_size=3, unique_by=lambda pair: pair[0]
        ),
        states=st.lists(CHECKPOINT_STATES, max_size=3),
    )
    def a_migrated_daemon_database(
        self,
        first: Mode,
        fresh: bool,
        two_files: bool,
        aio: bool,
        sessions: list[tuple[str, Blob]],
        states: list[Blob],
    ) -> MultipleResults[str]:
        """The daemon's database as the migration finds it, backfilled once, with the relational
        tables in the same file or in one beside it; the daemon goes on in phase 1 (`legacy`) or
        phase 2 (`dual_write`, `open_store`'s default), and `the_phase_changes` takes it through
        the others."""
        folder = Path(self.folder.name)
        self.target = folder / "target.db"
        self.legacy = folder / "ksi.db" if two_files else self.target
        self.two_files = two_files
        self.loop = asyncio.new_event_loop() if aio else None
        if fresh:  # a first start: the store creates the daemon's tables, as the daemon would
            sqlite3.connect(self.legacy).close()  # the daemon's file, which its first connect makes, empty
            self.open(Mode.LEGACY)
            problems = [p for table in LEGACY_TABLE_NAMES for p in self.created_differences(table)]
            assert not problems, "the store created the legacy tables otherwise:\n" + "\n".join(problems)
            assert self.store is not None
            self.store.close()
            self.model.adopt_tables(self.legacy)
        with closing(sqlite3.connect(self.legacy, isolation_level=None)) as connection:
            daemon = DaemonModel(connection)  # the daemon's own file, written by its own statements
            for state in states:
                stamp = self.stamp()
                assert daemon.save_checkpoint(stamp, state) == self.model.save_checkpoint(stamp, state)
            for key, state in sessions:
                daemon.save_session(key, state, self.clock.isoformat())
                self.model.save_session(key, state, self.clock.isoformat())
        self.open(Mode.LEGACY)
        assert self.store is not None
        self.store.catch_up(batch_size=2)  # the backfill of phase 1 (the store puts both files in WAL mode)
        if first is not Mode.LEGACY:
            self.store.close()
            self.open(first)
        self.known_keys += [key for key, _ in sessions]
        return multiple(*(key for key, _ in sessions))

    def created_differences(self, name: str) -> list[str]:
        """A legacy table as the store created it against the daemon's own: its `CREATE TABLE`, but
        for the line breaks and indentation SQLite keeps from the statement's source text."""
        made = created(self.legacy, name)
        wanted = self.model.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        made_words, wanted_words = [[sql.split() for (sql,) in rows] for rows in (made, wanted.fetchall())]
        return [] if made_words == wanted_words else [f"{name}: {made!r} is not the daemon's {wanted_words!r}"]

    def open(self, mode: Mode) -> None:
        legacy = self.legacy if self.two_files else None
        self.store = open_store(self.target, legacy=legacy, mode=mode, create=True)
        self.mode = mode

    @rule(mode=st.sampled_from(list(Mode)), batch_size=st.integers(min_value=1, max_value=3))
    @precondition(lambda self: self.mode in WITH_LEGACY_TABLES)
    def the_phase_changes(self, mode: Mode, batch_size: int) -> None:
        """The runbook: stop the daemon, catch up, verify, start it in the next mode."""
        self.catch_up(batch_size)
        assert self.store is not None
        self.store.close()
        self.store = None
        self.open(mode)

    # --- the daemon's operations ----------------------------------------------------------------

    def call(self, operation: str, *args: Any) -> Any:
        """One store operation, through `store.aio` on the daemon's loop when the machine runs that way."""
        assert self.store is not None
        if self.loop is not None:
            return self.loop.run_until_complete(getattr(self.store.aio, operation)(*args))
        return getattr(self.store, operation)(*args)

    def stamp(self) -> str:
        self.clock += timedelta(seconds=1, microseconds=250_000)
        return self.clock.isoformat() + "Z"

    @rule(state=CHECKPOINT_STATES)
    def a_checkpoint_is_saved_on_the_daemons_clock(self, state: Blob) -> None:
        """The store's own clock, unpatched: the daemon's `timestamp_utc()` spelling, now, in UTC."""
        before = datetime.now(UTC)
        saved = self.call("save_checkpoint", state)
        stamp = dict(self.call("list_checkpoints"))[saved]
        assert re.fullmatch(DAEMON_STAMP, stamp), f"checkpoint {saved} is stamped {stamp!r}, not as the daemon stamps"
        assert before <= datetime.fromisoformat(stamp) <= datetime.now(UTC), f"{stamp} is not the time of the save"
        assert saved == self.model.save_checkpoint(stamp, state), "the checkpoint got another id"

    @rule(states=st.lists(CHECKPOINT_STATES, min_size=1, max_size=7))
    def checkpoints_are_saved_and_pruned(self, states: list[Blob]) -> None:
        for state in states:
            stamp = self.stamp()
            with patch.object(store_core, "timestamp_utc", return_value=stamp):  # the model's clock
                saved = self.call("save_checkpoint", state)
            assert saved == self.model.save_checkpoint(stamp, state), "the checkpoint got another id"

    @rule(state=CHECKPOINT_STATES)
    def the_latest_checkpoint_is_updated_in_place(self, state: Blob) -> None:
        assert self.call("update_latest_checkpoint", state) == self.model.update_latest_checkpoint(state)

    @rule(back=st.integers(min_value=0, max_value=6), state=CHECKPOINT_STATES)
    def a_checkpoint_is_updated_by_id(self, back: int, state: Blob) -> None:
        ids = self.model.row_ids()
        checkpoint_id = (ids[-1] if ids else 1) - back  # pruned ids too
        assert self.call("update_checkpoint", checkpoint_id, state) == self.model.update_checkpoint(
            checkpoint_id, state
        )

    @rule(target=keys, key=session_keys())
    def a_session_key(self, key: str) -> str:
        self.known_keys.append(key)
        return key

    @rule(key=keys, state=SESSION_STATES)
    def a_session_is_saved(self, key: str, state: Blob) -> None:
        seen = self.clock.isoformat()
        self.call("save_session", key, state, seen)
        self.model.save_session(key, state, seen)

    @rule(key=keys)
    def a_session_is_deleted(self, key: str) -> None:
        assert self.call("delete_session", key) == self.model.delete_session(key)

    @rule(hours=st.integers(min_value=0, max_value=30), microseconds=st.sampled_from((0, 1, 832_348)))
    def time_passes_and_old_sessions_expire(self, hours: int, microseconds: int) -> None:
        self.clock += timedelta(hours=hours, microseconds=microseconds)
        cutoff = (self.clock - SESSION_LIFETIME).isoformat()
        assert self.call("expire_sessions", cutoff) == self.model.expire_sessions(cutoff)

    # --- the legacy daemon of phase 1 changes a row in place, at the same rowid -------------------

    def in_place(self, sql: str, *params: Any) -> None:
        """The same statement on the legacy file (another connection, as the daemon's own) and the model."""
        with closing(sqlite3.connect(self.legacy, timeout=30)) as daemon, daemon:
            daemon.execute(sql, params)
        self.model.db.execute(sql, params)

    @rule(key=keys, hours=st.integers(min_value=0, max_value=2))
    @precondition(lambda self: self.mode is Mode.LEGACY)
    def only_last_seen_changes_in_place(self, key: str, hours: int) -> None:
        self.clock += timedelta(hours=hours, seconds=1)  # a later time than any the row holds
        self.in_place("UPDATE mcp_sessions SET last_seen = ? WHERE session_key = ?", self.clock.isoformat(), key)

    @rule(key=keys, state=SESSION_STATES)
    @precondition(lambda self: self.mode is Mode.LEGACY)
    def only_the_blob_changes_in_place(self, key: str, state: Blob) -> None:
        self.in_place("UPDATE mcp_sessions SET session_data = ? WHERE session_key = ?", json.dumps(state), key)

    # --- failures and catch-ups -----------------------------------------------------------------

    @rule(key=keys, state=SESSION_STATES, delete=st.booleans())
    @precondition(lambda self: self.mode in DUAL_WRITING)
    def the_relational_write_fails(self, key: str, state: Blob, delete: bool) -> None:
        with patch.object(store_core, "write_legacy_rows", failing_write):
            if delete:
                changed = self.call("delete_session", key)
                assert changed == self.model.delete_session(key)
            else:
                self.call("save_session", key, state, self.clock.isoformat())
                self.model.save_session(key, state, self.clock.isoformat())
                changed = True
        assert self.store is not None
        pending = {(repair.table, repair.key) for repair in self.store.report().pending_repairs}
        if changed:
            assert ("mcp_sessions", key) in pending, f"the failed relational write of {key!r} is not pending repair"

    @rule(batch_size=st.integers(min_value=1, max_value=3))
    @precondition(lambda self: self.mode in WITH_LEGACY_TABLES)
    def a_catch_up_runs(self, batch_size: int) -> None:
        self.catch_up(batch_size)

    def catch_up(self, batch_size: int) -> None:
        assert self.store is not None
        self.store.catch_up(batch_size=batch_size)
        report = verify_target(self.legacy, self.target, batch_size)
        assert report.ok, "verify after a catch-up:\n" + "\n".join(map(str, report.mismatches[:5]))
        counted = {table.table: (table.source_rows, table.rebuilt_rows, table.matched) for table in report.tables}
        for name in LEGACY_TABLE_NAMES:
            held = self.model.db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            assert counted.get(name) == (held, held, held), f"verify counted {name} as {counted.get(name)}, held {held}"
        assert not self.store.report().pending_repairs, "a catch-up left repairs pending"

    # --- phase 4: archive, cleanup, restore from the archive ----------------------------------------

    @rule(batch_size=st.integers(min_value=1, max_value=3))
    @precondition(lambda self: self.mode in WITH_LEGACY_TABLES)
    def the_legacy_tables_are_archived(self, batch_size: int) -> None:
        """`ksi-migrate archive`, after a catch-up and `verify`; the daemon goes on writing, and
        whatever it changes from here on makes this archive stale."""
        self.catch_up(batch_size)
        folder = Path(self.folder.name) / f"archive-{len(self.archives)}"
        with open_sources([self.legacy], unmapped=UnmappedColumns.REPORT) as source:  # as `cmd_archive` opens it
            write_archive(source, folder, batch_size=batch_size)
        model_copy = self.model.copy_to(folder.with_name(f"{folder.name}-model.db"))
        self.archives.append(Archived(folder, model_copy, self.model.tables()))

    @rule(
        back=weighted((2, st.just(-1)), (1, st.integers(min_value=0, max_value=2))),  # -1: a new archive
        written_after=weighted(  # in half the cleanups the daemon writes nothing past the archive
            (2, st.none()),
            (1, st.tuples(st.just("checkpoint"), CHECKPOINT_STATES)),
            (1, st.tuples(st.just("session"), SESSION_STATES)),
        ),
        key=keys,
        batch_size=st.integers(min_value=1, max_value=3),
        restart=st.sampled_from(WITH_LEGACY_TABLES),
        daemon_files=st.booleans(),
    )
    @precondition(lambda self: self.mode in WITH_LEGACY_TABLES)
    def cleanup_runs(
        self,
        back: int,
        written_after: tuple[str, Blob] | None,
        key: str,
        batch_size: int,
        restart: Mode,
        daemon_files: bool,
    ) -> None:
        """The runbook's phase 4: stop the daemon, catch up, verify, `ksi-migrate cleanup` with
        an archive: one written now (`back` -1, or when there is none yet), the newest, or an
        older one. `written_after`: the daemon saves a checkpoint, or the session `key` (most
        often one it holds: the same rows counted, one of them changed), after the archive was written.

        Cleanup drops the legacy tables exactly when that archive holds the model's tables as
        they are now; then the daemon may only start `relational_only` (starting it in `restart`
        is refused), and `restore --archive` gives the tables back. Otherwise it refuses, drops
        nothing, and the daemon starts again in `restart`."""
        if back < 0 or not self.archives:
            self.the_legacy_tables_are_archived(batch_size)
        if written_after is not None:
            what, state = written_after
            if what == "checkpoint":
                self.checkpoints_are_saved_and_pruned([state])
            else:
                self.a_session_is_saved(key, state)
        archived = self.archives[max(0, len(self.archives) - 1 - max(back, 0))]
        stale = archived.tables != self.model.tables()
        assert self.store is not None
        self.store.catch_up(batch_size=batch_size)  # and `verify`: cleanup's own check (4), held below
        assert not self.store.report().pending_repairs, "a catch-up left repairs pending"
        self.store.close()
        self.store = None
        with target_database(self.target, must_exist=True) as database:
            try:
                cleanup(self.legacy, database, archived.folder, batch_size=batch_size)  # as `cmd_cleanup` calls it
            except CleanupRefused as exc:
                refusal: str | None = str(exc)
            else:
                refusal = None
        assert refusal is None or f"{TARGET_HOLDS_SOURCE}:" not in refusal, f"verify after a catch-up: {refusal}"
        if stale:
            assert refusal is not None, "cleanup dropped the legacy tables with an archive the daemon wrote past"
            blind = [check for check in (ARCHIVE_MATCHES, RESTORES) if f"{check}:" not in refusal]
            assert not blind, f"cleanup's checks {blind} passed an archive the daemon wrote past: {refusal}"
            problems = self.legacy_differences()
            assert not problems, "a refused cleanup changed the legacy tables:\n" + "\n".join(problems)
            self.open(restart)
            return
        assert refusal is None, f"cleanup refused an archive of the tables as they are: {refusal}"
        left = self.legacy_tables_left()
        assert not left, f"cleanup left the legacy tables {left} in place"
        self.dropped_with = archived
        self.restored_differences(archived, daemon_files)
        self.a_legacy_mode_is_refused(restart)
        self.open(Mode.RELATIONAL_ONLY)

    @rule(batch_size=st.integers(min_value=1, max_value=3))
    @precondition(lambda self: self.mode is Mode.RELATIONAL_ONLY)
    def the_target_is_restored(self, batch_size: int) -> None:
        """`ksi-migrate restore` from the target, the rollback of `relational_only`: the legacy
        tables the daemon would hold now, had it never been migrated (rowids, counter, DDL)."""
        restored = Path(tempfile.mkdtemp(prefix="rollback-", dir=self.folder.name))
        restore_copy(self.target, restored / "ksi.db", batch_size)
        model_copy = self.model.copy_to(restored / "model.db")
        problems = [p for name in LEGACY_TABLE_NAMES for p in table_differences(model_copy, restored / "ksi.db", name)]
        assert not problems, "restore from the target differs from the daemon's tables:\n" + "\n".join(problems)

    @rule(daemon_files=st.booleans())
    @precondition(lambda self: self.dropped_with is not None)
    def the_archive_is_restored(self, daemon_files: bool) -> None:
        """`ksi-migrate restore --archive`, at any later time: the tables as the archive holds them,
        whatever the daemon wrote since, into one file or the daemon's two."""
        assert self.dropped_with is not None
        self.restored_differences(self.dropped_with, daemon_files)

    def restored_differences(self, archived: Archived, daemon_files: bool) -> None:
        """Restore `archived` into new files, and compare each table with the model's at archive time."""
        restored = Path(tempfile.mkdtemp(prefix="restored-", dir=self.folder.name))
        if daemon_files:
            outs = {"checkpoints": restored / "checkpoint.db", "mcp_sessions": restored / "mcp_sessions.db"}
            restore_archive(archived.folder, outs)
        else:
            restore_archive(archived.folder, restored / "ksi.db")
            outs = dict.fromkeys(LEGACY_TABLE_NAMES, restored / "ksi.db")
        problems = [
            problem for name, out in outs.items() for problem in table_differences(archived.model_copy, out, name)
        ]
        assert not problems, "restore --archive differs from the model's tables at archive time:\n" + "\n".join(
            problems
        )

    def a_legacy_mode_is_refused(self, mode: Mode) -> None:
        """After cleanup, a store that would write the legacy tables must not create them anew:
        the next catch-up would mirror the empty tables and delete every relational row."""
        try:
            opened = open_store(self.target, legacy=self.legacy if self.two_files else None, mode=mode)
        except LegacyUnavailable:
            pass
        else:
            opened.close()
            raise AssertionError(f"after cleanup, the store opened in {mode.value} mode beside no legacy tables")
        left = self.legacy_tables_left()
        assert not left, f"a store refused after cleanup created the legacy tables {left}"

    def legacy_tables_left(self) -> list[str]:
        with closing(sqlite3.connect(f"{self.legacy.resolve().as_uri()}?mode=ro", uri=True)) as legacy:
            found = legacy.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)", LEGACY_TABLE_NAMES
            )
            return [name for (name,) in found]

    def legacy_differences(self) -> list[str]:
        """The legacy tables against the model's, row by row (rowid, storage type, value)."""
        return [
            problem
            for table in LEGACY_TABLES
            for problem in legacy_row_differences(
                table,
                read_legacy_rows(self.legacy, table),
                self.model.db.execute(f'SELECT rowid, * FROM "{table.name}" ORDER BY rowid').fetchall(),
            )
        ]

    # --- what the daemon reads ------------------------------------------------------------------

    @invariant()
    def every_read_equals_the_models(self) -> None:
        if self.store is None:
            return
        if self.mode is Mode.SHADOW:
            self.store.wait_for_shadow_reads()  # those of the last rule, decided before counting this read
        before = self.store.report()
        problems = self.read_differences(self.call)
        if self.mode in RELATIONAL_CURRENT and not self.store.report().pending_repairs:
            problems += self.plan_query_differences(self.call)
        if self.mode is Mode.SHADOW:
            problems += self.shadow_differences(before)
        assert not problems, f"in {self.mode.value} mode, reads differ from the daemon's:\n" + "\n".join(problems)

    @invariant()
    def the_relational_rows_answer_as_the_daemon_would(self) -> None:
        """While both sides are written, the relational rows alone (the store the daemon will
        read after cutover: `relational_only`, read-only) answer every read as the daemon's
        tables do, unless a repair is pending."""
        if self.store is None or self.mode not in DUAL_WRITING or self.store.report().pending_repairs:
            return
        if self.cutover is None:
            self.cutover = open_store(self.target, mode=Mode.RELATIONAL_ONLY, read_only=True)
        cutover = self.cutover
        problems = self.read_differences(lambda operation, *args: getattr(cutover, operation)(*args))
        problems += self.plan_query_differences(lambda operation, *args: getattr(cutover, operation)(*args))
        assert not problems, f"in {self.mode.value} mode, the relational rows answer otherwise:\n" + "\n".join(problems)

    def read_differences(self, call: Callable[..., Any]) -> list[str]:
        """Every read the daemon makes, through `call(operation, *args)`, against the model's."""
        problems = differences("latest checkpoint", self.model.latest_checkpoint(), call("latest_checkpoint"))
        listed = call("list_checkpoints")
        if listed != self.model.list_checkpoints():
            problems.append(f"list_checkpoints: {listed} != the daemon's {self.model.list_checkpoints()}")
        ids = self.model.row_ids()
        for checkpoint_id in range(min(ids, default=1) - 1, max(ids, default=0) + 2):
            expected = self.model.load_checkpoint(checkpoint_id)
            problems += differences(f"checkpoint {checkpoint_id}", expected, call("load_checkpoint", checkpoint_id))
        for key in dict.fromkeys(self.known_keys):
            problems += differences(
                f"session {key!r}", self.model.load_session(key), session(call("load_session", key))
            )
        cutoff = (self.clock - SESSION_LIFETIME).isoformat()
        seen = [(r.key, r.blob, r.last_seen) for r in call("sessions_seen_after", cutoff)]
        problems += differences(f"sessions seen after {cutoff}", self.model.sessions_seen_after(cutoff), seen)
        return problems

    def shadow_differences(self, before: StoreReport) -> list[str]:
        """In shadow mode every read is compared off the caller's path: each one is counted, each
        decided, and none differs while no relational write is pending repair."""
        assert self.store is not None
        self.store.wait_for_shadow_reads()
        after = self.store.report()
        reads = after.shadow_reads - before.shadow_reads
        decided = sum(getattr(after, name) - getattr(before, name) for name in SHADOW_OUTCOMES)
        problems = [] if reads > 0 else ["no read was compared in shadow mode"]
        if decided != reads:
            problems.append(f"{reads} shadow reads, {decided} of them decided")
        differed = (after.shadow_mismatches - before.shadow_mismatches, after.shadow_errors - before.shadow_errors)
        if not after.pending_repairs and differed != (0, 0):
            problems.append(f"shadow reads of alike rows: {differed} mismatches and errors: {after.mismatches[-1:]}")
        return problems

    def plan_query_differences(self, call: Callable[..., Any]) -> list[str]:
        """The plan's queries, which the relational rows alone answer (by agent, by reason, tool
        usage), against the daemon's reading of the model's blobs: every agent and reason held,
        and one held by none."""
        assert self.store is not None
        quarantined = quarantined_rowids(self.store)
        agents = {blob.text("agent_id") for _, blob in self.model.sessions(quarantined)} | {"no such agent"}
        reasons = {blob.text("reason") for _, blob in self.model.checkpoints(quarantined)} | {"no such reason"}
        problems = []
        for agent in sorted(agent for agent in agents if agent is not None):
            expected: Any = self.model.sessions_for_agent(agent, quarantined)
            problems += differences(f"sessions of agent {agent!r}", expected, call("sessions_for_agent", agent))
        for reason in sorted(reason for reason in reasons if reason is not None):
            expected = self.model.checkpoints_by_reason(reason, quarantined)
            found = list(call("checkpoints_by_reason", reason).items())
            problems += differences(f"checkpoints of reason {reason!r}", expected, found)
        usage = list(call("tool_usage").items())
        return problems + differences("tool usage", self.model.tool_usage(quarantined), usage)


def table_differences(expected: Path, actual: Path, name: str) -> list[str]:
    """One legacy table of two files: its rows by SQLite's `typeof()`/`quote()` and by the
    comparison engine, its `CREATE TABLE` and its AUTOINCREMENT counter."""
    table = LEGACY_TABLES_BY_NAME[name]
    problems = compare_legacy_files(expected, actual, [name])
    problems += legacy_row_differences(table, read_legacy_rows(expected, table), read_legacy_rows(actual, table))
    for what, found in (("CREATE TABLE", created), ("AUTOINCREMENT counter", counter)):
        if found(expected, name) != found(actual, name):
            problems.append(f"{name}: {what} {found(actual, name)!r} != the model's {found(expected, name)!r}")
    return problems


def created(path: Path, name: str) -> Any:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchall()


def counter(path: Path, name: str) -> Any:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchall():
            return []  # no AUTOINCREMENT table in the file, so no counter
        return db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).fetchall()


def session(record: SessionRecord | None) -> tuple[Blob, Any] | None:
    return None if record is None else (record.blob, record.last_seen)


def differences(what: str, expected: Any, actual: Any) -> list[str]:
    """Exact: JSON by `json_differences` (key order, `1` is not `1.0` nor `true`), cells by type."""
    found = json_differences(_comparable(expected), _comparable(actual))
    return [f"{what}: {difference}" for difference in found]


def _comparable(value: Any) -> Any:
    # tuples become lists, so a (blob, last_seen) pair compares as JSON
    if isinstance(value, tuple | list):
        return [_comparable(item) for item in value]
    return value


StoreAgainstTheDaemon.TestCase.settings = settings(stateful_step_count=12)
# 15 s and more: CI runs it with `-m slow`, beside the seeded faults it catches.
test_the_store_against_the_daemon = pytest.mark.slow(StoreAgainstTheDaemon.TestCase)
