"""The daemon's store (`open_store`) against a plain model of the legacy daemon, as a state machine.

The model is the KSI daemon's own SQL, statement for statement, on an in-memory SQLite database
(`DaemonModel`, from the daemon's `checkpoint.py` and `dynamic_server.py`): `INSERT` and the
prune to the newest five, the in-place `UPDATE` of the latest checkpoint, `INSERT OR REPLACE` of
a session, the text comparisons of `last_seen`. It shares no code with the migrator.

The machine opens the store in any mode and layout (one SQLite file or the relational tables
beside a legacy file; sync calls or `store.aio` from an asyncio loop), runs the same operations
on the store and on the model, switches phase as the runbook does (a catch-up and `verify`
first; `relational_only` is the last phase), lets the legacy daemon of phase 1 change a row in
place (only `last_seen`, or only the blob, at the same rowid), and makes relational writes fail.

What must hold: after every step, every read the daemon makes (the latest checkpoint, each
checkpoint by id, the listing, each session with its `last_seen`, the sessions seen within the
day) equals the model's; a relational write that fails is recorded as a pending repair; after a
catch-up, `verify` passes against the legacy tables and no repair is pending.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, MultipleResults, initialize, invariant, multiple, precondition, rule

from migrator.equivalence import json_differences
from migrator.store import Mode, SessionRecord, Store, open_store
from migrator.store import core as store_core
from verification import daemon_sql
from verification.fuzzing import BudgetedMachine
from verification.harness import verify_target
from verification.strategies import session_keys

SESSION_LIFETIME = timedelta(hours=24)
START = datetime(2025, 6, 20, 9, 0, 0)
WITH_LEGACY_TABLES = (Mode.LEGACY, Mode.DUAL_WRITE, Mode.SHADOW, Mode.RELATIONAL)
DUAL_WRITING = (Mode.DUAL_WRITE, Mode.SHADOW, Mode.RELATIONAL)

Blob = dict[str, Any]


class DaemonModel:
    """The legacy daemon: its own statements on its own two tables, nothing else."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db  # in autocommit mode, as the daemon commits after each statement
        for statement in (daemon_sql.CHECKPOINTS_DDL, daemon_sql.SESSIONS_DDL):
            self.db.execute(statement)

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

    def row_ids(self) -> list[int]:
        return [checkpoint_id for (checkpoint_id,) in self.db.execute("SELECT id FROM checkpoints ORDER BY id")]


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
        first=st.sampled_from((Mode.LEGACY, Mode.DUAL_WRITE)),
        two_files=st.booleans(),
        aio=st.booleans(),
        sessions=st.lists(
            st.tuples(session_keys(), SESSION_STATES), min_size=1, max_size=3, unique_by=lambda pair: pair[0]
        ),
        states=st.lists(CHECKPOINT_STATES, max_size=3),
    )
    def a_migrated_daemon_database(
        self, first: Mode, two_files: bool, aio: bool, sessions: list[tuple[str, Blob]], states: list[Blob]
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
        assert not self.store.report().pending_repairs, "a catch-up left repairs pending"

    # --- what the daemon reads ------------------------------------------------------------------

    @invariant()
    def every_read_equals_the_models(self) -> None:
        if self.store is None:
            return
        problems = self.read_differences(self.call)
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
test_the_store_against_the_daemon = StoreAgainstTheDaemon.TestCase
