"""The store: each daemon operation, written to the sides its mode writes and read from the side it reads."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw

from migrator import checkpoints, engines, sessions
from migrator.backfill import BackfillReport, backfill
from migrator.batching import DEFAULT_BATCH_SIZE
from migrator.codec import LegacyCell, encoded_blob
from migrator.errors import (
    LegacyUnavailable,
    ReadOnlyStore,
    UnreadableRecord,
)
from migrator.failures import lost_race
from migrator.legacy import (
    CELLS,
    CHECKPOINTS,
    LegacyRow,
    LegacyTable,
    row_digest,
)
from migrator.models import Checkpoint, McpSession, bind, unbind
from migrator.relational import BlobKind, write_legacy_rows
from migrator.sources import open_sources
from migrator.store.aio import AsyncStore
from migrator.store.common import (
    Blob,
    LegacyChange,
    Mode,
    SessionRecord,
    session_record,
    timestamp_utc,
)
from migrator.store.legacy_side import DaemonTables
from migrator.store.relational_side import RelationalTables
from migrator.store.report import Ledger, PendingRepair, StoreReport
from migrator.store.shadow import Read, ShadowReads
from migrator.target import (
    load_legacy_schema,
    record_legacy_schema,
    save_legacy_schema,
)
from migrator.wal import wal_checkpointer

logger = logging.getLogger(__name__)
MIRROR_RETRY_PAUSES = (0.01, 0.05, 0.2)
"""Seconds before each new attempt of a relational write a server rolled back for a race with a
catch-up in another process (`failures.lost_race`); after the last one it is left to a catch-up."""
T = TypeVar("T")


# --- the store --------------------------------------------------------------------------------

# A write on one side: the legacy change it made, or None when it changed nothing.
LegacyWrite = Callable[[DaemonTables], LegacyChange | None]
RelationalWrite = Callable[[RelationalTables], LegacyChange | None]


def _cutoff_text(cutoff: str | datetime) -> str:
    """A cutoff as the daemon passes it: `datetime.isoformat()` text."""
    return cutoff.isoformat() if isinstance(cutoff, datetime) else cutoff


def _on_its_target(method: Callable[..., T]) -> Callable[..., T]:
    """Run a store method with the models bound to this store's target, whichever thread calls it."""

    @functools.wraps(method)
    def bound(self: Store, *args: Any, **kwargs: Any) -> T:
        token = bind(self.database)  # `models.bound_to`, unrolled: every store call runs this
        try:
            return method(self, *args, **kwargs)
        finally:
            unbind(token)

    return bound


class Store:
    """Checkpoints and MCP sessions, read and written according to `mode` (see `open_store`)."""

    def __init__(
        self,
        database: pw.Database,
        mode: Mode,
        legacy: DaemonTables | None = None,
        legacy_path: Path | Sequence[Path] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.database = database
        self.mode = mode
        self.read_only = read_only
        self._legacy = legacy
        # The legacy file, or the daemon's two files: what a catch-up reads.
        self._legacy_paths = [legacy_path] if isinstance(legacy_path, Path) else list(legacy_path or [])
        self._relational = RelationalTables(database)
        self._write_lock = threading.Lock()
        self._ledger = Ledger(mode)
        written = [database, *(d for d in (legacy.databases if legacy else []) if d is not database)]
        if not read_only:
            for each in written:
                engines.engine(each).tune_for_saves()
        self._checkpointers = [] if read_only else [c for c in map(wal_checkpointer, written) if c is not None]
        self._shadow = ShadowReads(self._ledger, self._write_lock)
        self.aio = AsyncStore(self)

    @property
    def one_file(self) -> bool:
        """True when the legacy tables live in the target itself: both sides commit together."""
        return self._legacy is not None and self._legacy.databases == [self.database]

    # --- writes ---

    @_on_its_target
    def save_checkpoint(self, blob: Blob) -> int:
        timestamp = timestamp_utc()
        # The daemon's encoding (default arguments, keys in the caller's order), mapped without a second parse.
        with encoded_blob(blob) as data:
            change = self._write(
                lambda legacy: legacy.insert_checkpoint(timestamp, data),
                lambda relational: relational.insert_checkpoint(timestamp, data),
            )
        assert change is not None  # an insert always changes a row
        return int(change.key)

    @_on_its_target
    def save_session(self, session_key: str, blob: Blob, last_seen: str | datetime) -> None:
        seen = last_seen.isoformat() if isinstance(last_seen, datetime) else last_seen  # the daemon's text
        with encoded_blob(blob) as data:
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
        return change is not None and bool(change.removed)

    def _write(self, on_legacy: LegacyWrite, on_relational: RelationalWrite) -> LegacyChange | None:
        if self.read_only:
            raise ReadOnlyStore("this store was opened read-only; open it without read_only to write")
        try:
            return self._write_both(on_legacy, on_relational)
        finally:
            for checkpointer in self._checkpointers:
                checkpointer.written()  # the WAL is checkpointed on another thread, not in this save

    def _write_both(self, on_legacy: LegacyWrite, on_relational: RelationalWrite) -> LegacyChange | None:
        """The write on each side the mode writes; None when it changed nothing (an update of a
        checkpoint that is not there)."""
        with self._write_lock:
            if self._legacy is None:
                with engines.engine(self.database).write_transaction():
                    change = on_relational(self._relational)
                    if change is not None:
                        self._mirror(change)
                return change
            with self._legacy.write_transaction():
                change = on_legacy(self._legacy)
                if change is not None and self.mode.writes_relational and self.one_file:
                    self._mirror_or_defer(change)  # a savepoint inside the legacy write's transaction
            if change is not None and self.mode.writes_relational and not self.one_file:
                self._mirror_or_defer(change)
            return change

    def _mirror(self, change: LegacyChange) -> None:
        """Make the relational rows of the changed legacy rowids equal the legacy table's."""
        rows = [(change.row, row_digest(change.row[CELLS]))] if change.row is not None else []
        # Rows of the same session key under another rowid can only be a divergence; the unique
        # key would refuse the insert, so they are replaced too (a catch-up would remove them).
        saved_session = change.kind is sessions.KIND and change.row is not None
        same_key = self._relational.session_rowids(change.key) if saved_session else ()
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
            assert recorded is not None  # just saved
        record_legacy_schema(self.database, replace(recorded, sequences={**recorded.sequences, table.name: sequence}))

    def _mirror_or_defer(self, change: LegacyChange) -> None:
        for pause in (*MIRROR_RETRY_PAUSES, None):
            try:
                self._mirror(change)
                return
            except Exception as exc:  # noqa: BLE001 - the legacy row is committed; a catch-up repairs the rest
                # A server that rolled the write back for a catch-up writing the same rows in another
                # process (a deadlock, a unique key) lost a race, not the write: it is run again.
                if pause is not None and not self.one_file and lost_race(exc):
                    time.sleep(pause)
                    continue
                self._ledger.defer(PendingRepair(change.kind.legacy.name, change.key, change.rowids, repr(exc)))
                return

    @_on_its_target
    def update_latest_checkpoint(self, blob: Blob) -> int | None:
        """The daemon's in-place update of its newest checkpoint (`timestamp` is kept); the id
        updated, or None when there is no checkpoint."""
        with encoded_blob(blob) as data:
            change = self._write(
                lambda legacy: legacy.update_checkpoint(legacy.latest_checkpoint_id(), data),
                lambda relational: relational.update_checkpoint(relational.latest_checkpoint_id(), data),
            )
        return int(change.key) if change is not None else None

    @_on_its_target
    def update_checkpoint(self, checkpoint_id: int, blob: Blob) -> bool:
        """Update one checkpoint in place (`timestamp` is kept); False when there is no such id."""
        with encoded_blob(blob) as data:
            change = self._write(
                lambda legacy: legacy.update_checkpoint(checkpoint_id, data),
                lambda relational: relational.update_checkpoint(checkpoint_id, data),
            )
        return change is not None

    @_on_its_target
    def expire_sessions(self, before: str | datetime) -> int:
        """The daemon's expiry, `DELETE ... WHERE last_seen < ?`: the sessions seen before the
        cutoff are removed; returns how many. See `sessions_seen_after` for what "before" means."""
        cutoff = _cutoff_text(before)
        change = self._write(
            lambda legacy: legacy.expire_sessions(cutoff), lambda relational: relational.expire_sessions(cutoff)
        )
        return len(change.removed) if change is not None else 0

    # --- reads ---

    @_on_its_target
    def list_checkpoints(self) -> list[tuple[int, LegacyCell]]:
        """(id, timestamp) of every checkpoint, newest first, the timestamp as the table holds it."""
        return self._read(
            Read(
                checkpoints.KIND,
                "list",
                lambda: self._legacy_tables().checkpoint_list(),
                self._relational.checkpoint_list,
                present=list,
                listing=True,
            )
        )

    @_on_its_target
    def load_session(self, session_key: str) -> SessionRecord | None:
        """A session as the daemon reads it back at start-up: its blob and `last_seen` as stored."""
        return self._read(
            self._session_read(session_key, present=lambda row: None if row is None else session_record(row))
        )

    @_on_its_target
    def sessions_seen_after(self, cutoff: str | datetime) -> list[SessionRecord]:
        """The daemon's start-up load, `WHERE last_seen > ?`, in rowid order. The legacy tables
        answer as the daemon's SQL does (SQLite compares the cells); the relational rows answer by
        time, through the index on the parsed `last_seen`. For every spelling the daemon writes
        (`datetime.isoformat()`, naive, with or without a fraction) the two select the same rows;
        the README says where other spellings differ. Rows that are not JSON objects are left out
        and counted (`report().unreadable_skipped`)."""
        text = _cutoff_text(cutoff)
        return self._read(
            Read(
                sessions.KIND,
                f"seen after {text}",
                lambda: self._legacy_tables().sessions_seen_after(text),
                lambda: self._relational.sessions_seen_after(text),
                present=self._readable_sessions,
                listing=True,
            )
        )

    def _readable_sessions(self, rows: list[LegacyRow]) -> list[SessionRecord]:
        records = []
        for row in rows:
            try:
                records.append(session_record(row))
            except UnreadableRecord as exc:
                logger.warning("left out of a session listing: %s", exc)
                self._ledger.tally(unreadable_skipped=1)
        return records

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
        return self._read(self._session_read(session_key))

    def _session_read(self, session_key: str, present: Callable[[Any], Any] | None = None) -> Read:
        """One session's row read on each side; `present` makes the answer (the blob by default)."""
        return Read(
            sessions.KIND,
            session_key,
            lambda: self._legacy_tables().session(session_key),
            lambda: self._relational.session(session_key),
            present=present,
        )

    def _read(self, read: Read) -> Any:
        if self.mode in (Mode.LEGACY, Mode.DUAL_WRITE):
            return read.view(read.legacy())
        if self.mode is Mode.SHADOW:
            return self._shadow.run(read)
        if self.mode is Mode.RELATIONAL_ONLY:
            return read.view(read.relational())
        return self._relational_or_fallback(read)

    def _relational_or_fallback(self, read: Read) -> Any:
        # While a write of this table waits for repair, its relational rows may be stale.
        if not self._repair_pending(read.kind):
            row = read.relational()
            if read.listing or row is not None:
                return read.view(row)
        row = read.legacy()
        if row is not None and not read.listing:
            self._ledger.tally(fallbacks=1)
        return read.view(row)

    def _legacy_tables(self) -> DaemonTables:
        if self._legacy is None:
            raise LegacyUnavailable(f"the store runs in {self.mode.value} mode, without legacy tables")
        return self._legacy

    # --- the plan's queries, always answered by the relational rows ---

    @_on_its_target
    def sessions_for_agent(self, agent_id: str) -> dict[str, Blob]:
        """session key -> session blob, for every session of this agent."""
        return self._relational.blobs_holding(sessions.KIND, McpSession.agent_id, "agent_id", agent_id)

    @_on_its_target
    def checkpoints_by_reason(self, reason: str) -> dict[int, Blob]:
        """checkpoint id -> checkpoint blob, for every checkpoint with this `reason`."""
        return self._relational.blobs_holding(checkpoints.KIND, Checkpoint.reason, "reason", reason)

    @_on_its_target
    def tool_usage(self) -> dict[str, int]:
        """tool name -> how many sessions list it, most used first."""
        return self._relational.tool_usage()

    # --- catch-up and the report ---

    @_on_its_target
    def catch_up(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> BackfillReport:
        """Backfill from the legacy tables while this store's writes wait, then settle repairs."""
        if not self._legacy_paths:
            raise LegacyUnavailable(f"the store runs in {self.mode.value} mode, without legacy tables")
        with self._write_lock, open_sources(self._legacy_paths) as source:
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
        for legacy in self._legacy.databases if self._legacy is not None else []:
            if legacy is not self.database:
                legacy.close()
        self.database.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
