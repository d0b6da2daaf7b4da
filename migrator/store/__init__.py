"""The daemon's store through the migration: one API over the legacy JSON and the relational rows.

    store = open_store("ksi.db", mode="shadow")   # or KSI_STORE_MODE=shadow in the environment
    checkpoint_id = store.save_checkpoint(blob)
    store.get_session("agent:conv")
    await store.aio.load_checkpoint(checkpoint_id)   # from the daemon's asyncio loop

Writes. While the legacy tables exist they are written exactly as the daemon wrote them, and
they stay the record the catch-up backfill reads. The relational rows of the same legacy row are
written through `relational.write_legacy_rows`, keyed by the legacy rowid and digest, so the
backfill sees them as up to date. When both sides live in one SQLite file they commit in one
transaction; when the relational write fails the legacy write still commits, and the failure is
recorded as a pending repair (with a log warning) until a catch-up makes the sides equal again.

Reads follow the mode (`Mode`). Every read hands out the JSON object the legacy table
would hold, `json.loads` of the blob.

Threads. Each thread gets its own SQLite connection (peewee's default); writes are serialised by
one lock per store and take SQLite's write lock up front (`BEGIN IMMEDIATE`). The models are
bound to the store's own target in each of its calls (`models.bound_to`), so stores on
different targets can share a process, and opening another target redirects none of them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw

from migrator import checkpoints, engines, sessions
from migrator.backfill import BackfillReport, backfill
from migrator.batching import DEFAULT_BATCH_SIZE
from migrator.errors import (
    LegacyUnavailable,
    ReadOnlyStore,
    UnknownMode,
)
from migrator.legacy import (
    CELLS,
    CHECKPOINTS,
    LegacySource,
    LegacyTable,
    row_digest,
)
from migrator.models import Checkpoint, McpSession, bound_to
from migrator.relational import BlobKind, write_legacy_rows
from migrator.store.common import (
    KEPT_CHECKPOINTS,
    MODE_VARIABLE,
    Blob,
    LegacyChange,
    Mode,
    blob_of,
    maybe_blob,
    timestamp_utc,
)
from migrator.store.legacy_side import DaemonTables, open_legacy_side
from migrator.store.relational_side import RelationalTables
from migrator.store.report import Ledger, PendingRepair, ShadowMismatch, StoreReport
from migrator.store.shadow import Read, ShadowReads
from migrator.target import (
    create_schema,
    load_legacy_schema,
    open_target,
    record_legacy_schema,
    require_schema,
    save_legacy_schema,
)
from migrator.wal import wal_checkpointer

logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "KEPT_CHECKPOINTS",
    "MODE_VARIABLE",
    "AsyncStore",
    "Blob",
    "Mode",
    "PendingRepair",
    "ShadowMismatch",
    "Store",
    "StoreReport",
    "blob_of",
    "open_store",
    "timestamp_utc",
]

# --- the store --------------------------------------------------------------------------------

LegacyWrite = Callable[[DaemonTables], LegacyChange]
RelationalWrite = Callable[[RelationalTables], LegacyChange]


def _on_its_target(method: Callable[..., T]) -> Callable[..., T]:
    """Run a store method with the models bound to this store's target, whichever thread calls it."""

    @functools.wraps(method)
    def bound(self: Store, *args: Any, **kwargs: Any) -> T:
        with bound_to(self.database):
            return method(self, *args, **kwargs)

    return bound


class Store:
    """Checkpoints and MCP sessions, read and written according to `mode` (see `open_store`)."""

    def __init__(
        self,
        database: pw.Database,
        mode: Mode,
        legacy: DaemonTables | None = None,
        legacy_path: Path | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.database = database
        self.mode = mode
        self.read_only = read_only
        self._legacy = legacy
        self._legacy_path = legacy_path
        self._relational = RelationalTables(database)
        self._write_lock = threading.Lock()
        self._ledger = Ledger(mode)
        written = [database] if legacy is None or legacy.database is database else [database, legacy.database]
        self._checkpointers = [] if read_only else [c for c in map(wal_checkpointer, written) if c is not None]
        self._shadow = ShadowReads(self._ledger, self._write_lock)
        self.aio = AsyncStore(self)

    @property
    def one_file(self) -> bool:
        """True when the legacy tables live in the target itself: both sides commit together."""
        return self._legacy is not None and self._legacy.database is self.database

    # --- writes ---

    @_on_its_target
    def save_checkpoint(self, blob: Blob) -> int:
        data = json.dumps(blob)  # the daemon's encoding: default arguments, keys in the caller's order
        timestamp = timestamp_utc()
        change = self._write(
            lambda legacy: legacy.insert_checkpoint(timestamp, data),
            lambda relational: relational.insert_checkpoint(timestamp, data),
        )
        return int(change.key)

    @_on_its_target
    def save_session(self, session_key: str, blob: Blob, last_seen: str | datetime) -> None:
        data = json.dumps(blob)
        seen = last_seen.isoformat() if isinstance(last_seen, datetime) else last_seen  # the daemon's text
        self._write(
            lambda legacy: legacy.put_session(session_key, data, seen),
            lambda relational: relational.put_session(session_key, data, seen),
        )

    @_on_its_target
    def delete_session(self, session_key: str) -> bool:
        """Remove a session (the daemon's expiry); True when there was one."""
        change = self._write(
            lambda legacy: legacy.delete_session(session_key),
            lambda relational: relational.delete_session(session_key),
        )
        return bool(change.removed)

    def _write(self, on_legacy: LegacyWrite, on_relational: RelationalWrite) -> LegacyChange:
        if self.read_only:
            raise ReadOnlyStore("this store was opened read-only; open it without read_only to write")
        try:
            return self._write_both(on_legacy, on_relational)
        finally:
            for checkpointer in self._checkpointers:
                checkpointer.written()  # the WAL is checkpointed on another thread, not in this save

    def _write_both(self, on_legacy: LegacyWrite, on_relational: RelationalWrite) -> LegacyChange:
        with self._write_lock:
            if self._legacy is None:
                with engines.engine(self.database).write_transaction():
                    change = on_relational(self._relational)
                    self._mirror(change)
                return change
            with engines.engine(self._legacy.database).write_transaction():
                change = on_legacy(self._legacy)
                if self.mode.writes_relational and self.one_file:
                    self._mirror_or_defer(change)  # a savepoint inside the legacy write's transaction
            if self.mode.writes_relational and not self.one_file:
                self._mirror_or_defer(change)
            return change

    def _mirror(self, change: LegacyChange) -> None:
        """Make the relational rows of the changed legacy rowids equal the legacy table's."""
        rows = [(change.row, row_digest(change.row[CELLS]))] if change.row is not None else []
        # Rows of the same session key under another rowid can only be a divergence; the unique
        # key would refuse the insert, so they are replaced too (a catch-up would remove them).
        same_key = self._relational.session_rowids(change.key) if change.kind is sessions.KIND else ()
        write_legacy_rows(self.database, change.kind, rows, replace=sorted({*change.rowids, *same_key}))
        if change.sequence is not None:
            self._record_sequence(change.kind.legacy, change.sequence)

    def _record_sequence(self, table: LegacyTable, sequence: int) -> None:
        """Keep the recorded AUTOINCREMENT counter in step with the legacy table's, so that the
        target stays exactly what a catch-up would make of the legacy file (verify checks it)."""
        recorded = load_legacy_schema(self.database)
        if recorded is not None and recorded.sequences.get(table.name) == sequence:
            return
        if recorded is None:  # nothing recorded yet: the legacy side's own schema, as a catch-up records it
            save_legacy_schema(self.database, self._legacy_tables().schema())
            recorded = load_legacy_schema(self.database)
        record_legacy_schema(self.database, replace(recorded, sequences={**recorded.sequences, table.name: sequence}))

    def _mirror_or_defer(self, change: LegacyChange) -> None:
        try:
            self._mirror(change)
        except Exception as exc:  # noqa: BLE001 - the legacy row is committed; a catch-up repairs the rest
            self._ledger.defer(PendingRepair(change.kind.legacy.name, change.key, change.rowids, repr(exc)))

    # --- reads ---

    @_on_its_target
    def load_checkpoint(self, checkpoint_id: int) -> Blob | None:
        return self._read(
            Read(
                checkpoints.KIND,
                str(checkpoint_id),
                lambda: self._legacy_tables().checkpoint(checkpoint_id),
                lambda: self._relational.checkpoint(checkpoint_id),
            )
        )

    @_on_its_target
    def latest_checkpoint(self) -> Blob | None:
        return self._read(
            Read(
                checkpoints.KIND,
                "latest",
                lambda: self._legacy_tables().latest_checkpoint(),
                self._relational.latest_checkpoint,
            )
        )

    @_on_its_target
    def get_session(self, session_key: str) -> Blob | None:
        return self._read(
            Read(
                sessions.KIND,
                session_key,
                lambda: self._legacy_tables().session(session_key),
                lambda: self._relational.session(session_key),
            )
        )

    def _read(self, read: Read) -> Blob | None:
        if self.mode in (Mode.LEGACY, Mode.DUAL_WRITE):
            return maybe_blob(read.kind, read.legacy())
        if self.mode is Mode.SHADOW:
            return self._shadow.run(read)
        if self.mode is Mode.RELATIONAL_ONLY:
            return maybe_blob(read.kind, read.relational())
        return self._relational_or_fallback(read)

    def _relational_or_fallback(self, read: Read) -> Blob | None:
        # While a write of this table waits for repair, its relational rows may be stale.
        if not self._repair_pending(read.kind):
            row = read.relational()
            if row is not None:
                return blob_of(read.kind, row)
        row = read.legacy()
        if row is not None:
            self._ledger.tally(fallbacks=1)
        return maybe_blob(read.kind, row)

    def _legacy_tables(self) -> DaemonTables:
        if self._legacy is None:
            raise LegacyUnavailable(f"the store runs in {self.mode.value} mode, without legacy tables")
        return self._legacy

    # --- the plan's queries, always answered by the relational rows ---

    @_on_its_target
    def sessions_for_agent(self, agent_id: str) -> dict[str, Blob]:
        """session key -> session blob, for every session of this agent."""
        return self._relational.blobs(sessions.KIND, McpSession.agent_id == agent_id)

    @_on_its_target
    def checkpoints_by_reason(self, reason: str) -> dict[int, Blob]:
        """checkpoint id -> checkpoint blob, for every checkpoint with this `reason`."""
        return self._relational.blobs(checkpoints.KIND, Checkpoint.reason == reason)

    @_on_its_target
    def tool_usage(self) -> dict[str, int]:
        """tool name -> how many sessions list it, most used first."""
        return self._relational.tool_usage()

    # --- catch-up and the report ---

    @_on_its_target
    def catch_up(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> BackfillReport:
        """Backfill from the legacy tables while this store's writes wait, then settle repairs."""
        if self._legacy_path is None:
            raise LegacyUnavailable(f"the store runs in {self.mode.value} mode, without legacy tables")
        with self._write_lock, LegacySource(self._legacy_path) as source:
            # The store's own legacy tables are the daemon's: a catch-up from them is never another daemon's file.
            report = backfill(source, self.database, batch_size=batch_size, replace_all=True)
        self.settle_repairs()
        return report

    @_on_its_target
    def settle_repairs(self) -> int:
        """Forget pending repairs whose rows now agree on both sides (after any catch-up, also one
        run by `ksi-migrate migrate`); returns how many settled."""
        settled = [repair for repair in self._ledger.pending() if self._in_step(repair)]
        self._ledger.settle(settled)
        return len(settled)

    def _in_step(self, repair: PendingRepair) -> bool:
        kind = checkpoints.KIND if repair.table == CHECKPOINTS.name else sessions.KIND
        legacy = self._legacy_tables()
        for rowid in repair.rowids:
            row = legacy.row(kind.legacy, rowid)
            if (row_digest(row[CELLS]) if row is not None else None) != self._relational.digest(kind, rowid):
                return False
        return True

    def _repair_pending(self, kind: BlobKind) -> bool:
        if not self._ledger.pending(kind.legacy.name):
            return False
        self.settle_repairs()
        return bool(self._ledger.pending(kind.legacy.name))

    def report(self) -> StoreReport:
        """A copy of the counters: shadow comparisons, fallbacks, pending and settled repairs."""
        return self._ledger.snapshot()

    def wait_for_shadow_reads(self, timeout: float | None = None) -> None:
        """Return once every shadow comparison started so far is counted."""
        self._shadow.wait(timeout)

    def close(self) -> None:
        self._shadow.close()
        for checkpointer in self._checkpointers:
            checkpointer.close()
        if self._legacy is not None and not self.one_file:
            self._legacy.database.close()
        self.database.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStore:
    """The store for the daemon's asyncio loop: every call runs in a worker thread
    (`asyncio.to_thread`), so the loop never waits on SQLite."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save_checkpoint(self, blob: Blob) -> int:
        return await asyncio.to_thread(self._store.save_checkpoint, blob)

    async def load_checkpoint(self, checkpoint_id: int) -> Blob | None:
        return await asyncio.to_thread(self._store.load_checkpoint, checkpoint_id)

    async def latest_checkpoint(self) -> Blob | None:
        return await asyncio.to_thread(self._store.latest_checkpoint)

    async def save_session(self, session_key: str, blob: Blob, last_seen: str | datetime) -> None:
        await asyncio.to_thread(self._store.save_session, session_key, blob, last_seen)

    async def get_session(self, session_key: str) -> Blob | None:
        return await asyncio.to_thread(self._store.get_session, session_key)

    async def delete_session(self, session_key: str) -> bool:
        return await asyncio.to_thread(self._store.delete_session, session_key)

    async def sessions_for_agent(self, agent_id: str) -> dict[str, Blob]:
        return await asyncio.to_thread(self._store.sessions_for_agent, agent_id)

    async def checkpoints_by_reason(self, reason: str) -> dict[int, Blob]:
        return await asyncio.to_thread(self._store.checkpoints_by_reason, reason)

    async def tool_usage(self) -> dict[str, int]:
        return await asyncio.to_thread(self._store.tool_usage)

    async def catch_up(self) -> BackfillReport:
        return await asyncio.to_thread(self._store.catch_up)


# --- opening ----------------------------------------------------------------------------------


def open_store(
    target: str | os.PathLike[str],
    *,
    legacy: str | os.PathLike[str] | None = None,
    mode: str | Mode | None = None,
    read_only: bool = False,
    create: bool = False,
) -> Store:
    """Open the store on TARGET (a SQLite file or a database URL).

    `legacy` is the SQLite file of the legacy tables; by default they live in TARGET itself,
    beside the relational tables. `mode` defaults to $KSI_STORE_MODE, then `dual_write`.
    `read_only` serves `relational_only` reads from a migrated target without writing anything,
    not even the schema version: the engine itself refuses writes, and so does the store.
    A SQLite file that does not exist is refused (a typo must not start an empty database)
    unless `create` asks for a new one.
    """
    chosen = _mode(mode)
    if read_only:
        return _open_read_only(target, chosen)
    database = open_target(target, must_exist=not create)
    try:
        if chosen.writes_relational:
            create_schema(database)
        if not chosen.writes_legacy:
            return Store(database, chosen)
        legacy_tables, legacy_path = open_legacy_side(target, legacy, database)
    except BaseException:
        database.close()
        raise
    return Store(database, chosen, legacy_tables, legacy_path)


def _open_read_only(target: str | os.PathLike[str], mode: Mode) -> Store:
    if mode is not Mode.RELATIONAL_ONLY:
        raise ReadOnlyStore(f"a read-only store serves {Mode.RELATIONAL_ONLY.value} reads; {mode.value} writes")
    database = open_target(target, read_only=True)
    try:
        require_schema(database)
    except BaseException:
        database.close()
        raise
    return Store(database, mode, read_only=True)


def _mode(mode: str | Mode | None) -> Mode:
    text = mode if mode is not None else os.environ.get(MODE_VARIABLE, Mode.DUAL_WRITE.value)
    try:
        return Mode(text)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise UnknownMode(f"unknown store mode {text!r}; choose one of {choices}") from None
