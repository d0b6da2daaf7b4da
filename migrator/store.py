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

Reads follow the mode (`phases.Mode`). Every read hands out the JSON object the legacy table
would hold, `json.loads` of the blob.

Threads. Each thread gets its own SQLite connection (peewee's default); writes are serialised by
one lock per store and take SQLite's write lock up front (`BEGIN IMMEDIATE`). The models are
bound to one target per process (`models.database_proxy`), so a process holds one store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import peewee as pw

from migrator import checkpoints, engines, sessions
from migrator.backfill import DEFAULT_BATCH_SIZE, BackfillReport, backfill
from migrator.codec import LegacyCell, decode_sqlite_text, stored_key
from migrator.equivalence import json_differences
from migrator.errors import (
    LegacyUnavailable,
    ReadOnlyStore,
    RebuildError,
    SourceNotFound,
    UnknownMode,
    UnreadableRecord,
)
from migrator.legacy import (
    CELLS,
    CHECKPOINTS,
    LEGACY_TABLES,
    MCP_SESSIONS,
    ROWID,
    LegacyRow,
    LegacySchema,
    LegacySource,
    LegacyTable,
    default_schema,
    read_legacy_schema,
    row_digest,
)
from migrator.models import Checkpoint, McpSession, McpSessionTool, Quarantine
from migrator.phases import Mode, recorded_cleanup
from migrator.redaction import mask_url
from migrator.relational import BlobKind, Bundle, read_bundle, unquarantine_row, write_legacy_rows
from migrator.target import (
    create_schema,
    is_url,
    load_legacy_schema,
    open_target,
    record_legacy_schema,
    require_schema,
    save_legacy_schema,
    schema_version,
)
from migrator.wal import wal_checkpointer

logger = logging.getLogger(__name__)

MODE_VARIABLE = "KSI_STORE_MODE"
KEPT_CHECKPOINTS = 5  # the daemon keeps the newest five checkpoints
SHADOW_BACKLOG = 1000  # comparisons waiting beyond this are skipped (and counted), never queued unbounded
MAX_RECORDED_MISMATCHES = 100

Blob = dict[str, Any]


def timestamp_utc() -> str:
    """The daemon's `timestamp_utc()`: `2025-06-20T23:17:27.832348Z`, no fraction when it is zero."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def blob_of(kind: BlobKind, row: LegacyRow) -> Blob:
    """The JSON object a legacy row holds, as the daemon reads it (`json.loads`)."""
    data = kind.legacy.data_of(row)
    where = f"{kind.legacy.name} rowid {row[ROWID]}: {kind.legacy.data_column}"
    try:
        value = json.loads(data) if isinstance(data, str) else None
    except (ValueError, RecursionError) as exc:
        raise UnreadableRecord(f"{where} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UnreadableRecord(f"{where} is not a JSON object")
    return value


def maybe_blob(kind: BlobKind, row: LegacyRow | None) -> Blob | None:
    return None if row is None else blob_of(kind, row)


@dataclass(frozen=True)
class LegacyChange:
    """What one write did to a legacy table, as the relational side must mirror it."""

    kind: BlobKind
    key: str  # the row's id or session key, for reports
    row: LegacyRow | None  # the row as the legacy table now holds it; None when only removed
    removed: tuple[int, ...] = ()  # rowids that left the table (pruned, replaced or deleted)
    sequence: int | None = None  # the table's AUTOINCREMENT counter after the write, when it has one

    @property
    def rowids(self) -> tuple[int, ...]:
        return (*self.removed, *((self.row[ROWID],) if self.row is not None else ()))


# --- the legacy side --------------------------------------------------------------------------


def _typed_select(table: LegacyTable) -> str:
    # TEXT comes back as bytes and is decoded here, so text that is not valid UTF-8 (kept in
    # quarantine) is read as `InvalidText` instead of failing the whole read.
    cells = ", ".join(
        f'typeof("{c}"), CASE WHEN typeof("{c}") = \'text\' THEN CAST("{c}" AS BLOB) ELSE "{c}" END'
        for c in table.columns
    )
    return f'SELECT rowid, {cells} FROM "{table.name}"'


def _typed_row(raw: tuple[Any, ...]) -> LegacyRow:
    rowid, *pairs = raw
    types, values = pairs[::2], pairs[1::2]
    cells = [decode_sqlite_text(v) if t == "text" else v for t, v in zip(types, values, strict=True)]
    return (rowid, *cells)


class DaemonTables:
    """The legacy tables, written and read with the KSI daemon's own statements."""

    def __init__(self, database: pw.Database) -> None:  # always SQLite: the daemon's own database
        self.database = database

    def schema(self) -> LegacySchema:
        present = [table.name for table in LEGACY_TABLES if table.name not in self.missing()]
        return read_legacy_schema(self.database.execute_sql, present)

    def missing(self) -> list[str]:
        cursor = self.database.execute_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {name for (name,) in cursor.fetchall()}
        return [table.name for table in LEGACY_TABLES if table.name not in names]

    def create(self) -> None:
        for table in LEGACY_TABLES:
            self.database.execute_sql(table.ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))

    def insert_checkpoint(self, timestamp: str, data: str) -> LegacyChange:
        cursor = self.database.execute_sql(
            "INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES (?, ?)", (timestamp, data)
        )
        checkpoint_id = cursor.lastrowid
        kept = f"id NOT IN (SELECT id FROM checkpoints ORDER BY id DESC LIMIT {KEPT_CHECKPOINTS})"
        pruned = self._rowids(f"SELECT id FROM checkpoints WHERE {kept}")
        self.database.execute_sql(f"DELETE FROM checkpoints WHERE {kept}")
        counter = self.database.execute_sql("SELECT seq FROM sqlite_sequence WHERE name = 'checkpoints'").fetchone()
        row = self.row(CHECKPOINTS, checkpoint_id)
        return LegacyChange(checkpoints.KIND, str(checkpoint_id), row, pruned, counter[0] if counter else None)

    def put_session(self, session_key: str, data: str, last_seen: LegacyCell) -> LegacyChange:
        replaced = self._rowids("SELECT rowid FROM mcp_sessions WHERE session_key = ?", (session_key,))
        cursor = self.database.execute_sql(
            "INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", (session_key, data, last_seen)
        )
        # Read back rather than assume: the column affinities decide the stored types.
        return LegacyChange(sessions.KIND, session_key, self.row(MCP_SESSIONS, cursor.lastrowid), replaced)

    def delete_session(self, session_key: str) -> LegacyChange:
        removed = self._rowids("SELECT rowid FROM mcp_sessions WHERE session_key = ?", (session_key,))
        self.database.execute_sql("DELETE FROM mcp_sessions WHERE session_key = ?", (session_key,))
        return LegacyChange(sessions.KIND, session_key, None, removed)

    def row(self, table: LegacyTable, rowid: int) -> LegacyRow | None:
        return self._first(table, "rowid = ?", (rowid,))

    def checkpoint(self, checkpoint_id: int) -> LegacyRow | None:
        return self._first(CHECKPOINTS, "id = ?", (checkpoint_id,))

    def latest_checkpoint(self) -> LegacyRow | None:
        return self._first(CHECKPOINTS, "id = (SELECT max(id) FROM checkpoints)", ())

    def session(self, session_key: str) -> LegacyRow | None:
        return self._first(MCP_SESSIONS, "session_key = ?", (session_key,))

    def _first(self, table: LegacyTable, where: str, params: tuple[Any, ...]) -> LegacyRow | None:
        raw = self.database.execute_sql(f"{_typed_select(table)} WHERE {where} LIMIT 1", params).fetchone()
        return _typed_row(raw) if raw is not None else None

    def _rowids(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[int, ...]:
        return tuple(rowid for (rowid,) in self.database.execute_sql(sql, params).fetchall())


def stored_form(table: LegacyTable, row: LegacyRow) -> LegacyRow:
    """A row as the legacy table would store it: its column affinities decide the storage types
    (a TIMESTAMP column turns `1.0` into `1`). Used when there is no legacy table to ask."""
    names = list(table.columns) if table.rowid_alias else ["rowid", *table.columns]
    values = row[CELLS] if table.rowid_alias else row
    marks = ", ".join("?" * len(names))
    with closing(sqlite3.connect(":memory:")) as scratch:
        scratch.execute(table.ddl)
        scratch.execute(f'INSERT INTO "{table.name}" ({", ".join(names)}) VALUES ({marks})', values)
        return _typed_row(scratch.execute(_typed_select(table)).fetchone())


# --- the relational side ----------------------------------------------------------------------


class RelationalTables:
    """The relational rows seen as legacy rows: read back exactly, and changed the way the legacy
    table would change when there is no legacy table any more (`relational_only`)."""

    def __init__(self, database: pw.Database) -> None:
        self.database = database

    # reads, each in one transaction so that a concurrent rewrite never tears a bundle apart

    def checkpoint(self, checkpoint_id: int) -> LegacyRow | None:
        with self.database.atomic():
            bundle = read_bundle(self.database, checkpoints.KIND, Checkpoint.id, checkpoint_id)
            if bundle is not None:
                return checkpoints.KIND.from_rows(bundle)
            record = self._quarantined(CHECKPOINTS).where(Quarantine.source_rowid == checkpoint_id).first()
            return unquarantine_row(record.source_rowid, record.cells) if record else None

    def latest_checkpoint(self) -> LegacyRow | None:
        with self.database.atomic():
            ids = self.checkpoint_ids()
            return self.checkpoint(ids[-1]) if ids else None

    def session(self, session_key: str) -> LegacyRow | None:
        with self.database.atomic():
            bundle = read_bundle(self.database, sessions.KIND, *sessions.session_key_lookup(session_key))
            if bundle is not None:
                return sessions.KIND.from_rows(bundle)
            return next(iter(self._quarantined_sessions(session_key)), None)

    def blobs(self, kind: BlobKind, where: pw.Expression) -> dict[Any, Blob]:
        """key -> blob of every relational row matching `where` on the kind's root table, in rowid order."""
        root = kind.root
        with self.database.atomic():
            matching = root.model.select(root.identity).where(where).order_by(root.identity)
            rows = [kind.from_rows(self._bundle(kind, rowid)) for (rowid,) in matching.tuples()]
        return {kind.legacy.key_of(row): blob_of(kind, row) for row in rows}

    def _bundle(self, kind: BlobKind, rowid: int) -> Bundle:
        bundle = read_bundle(self.database, kind, kind.root.identity, rowid)
        if bundle is None:
            raise RebuildError(f"{kind.legacy.name} rowid {rowid} vanished while it was read")
        return bundle

    def tool_usage(self) -> dict[str, int]:
        sessions_using = pw.fn.COUNT(pw.fn.DISTINCT(McpSessionTool.session))
        name = pw.fn.MIN(McpSessionTool.tool_name)  # every name in a group is the same name
        query = (
            McpSessionTool.select(name, sessions_using)
            .where(McpSessionTool.tool_name.is_null(False))
            .group_by(engines.exact_group_key(self.database, McpSessionTool.tool_name))
            .order_by(sessions_using.desc(), name)
        )
        return dict(query.tuples())

    def digest(self, kind: BlobKind, rowid: int) -> str | None:
        root = kind.root
        found = root.model.select(root.model.source_digest).where(root.identity == rowid).scalar()
        if found is None:
            found = (
                self._quarantined(kind.legacy)
                .where(Quarantine.source_rowid == rowid)
                .select(Quarantine.source_digest)
                .scalar()
            )
        return found

    def checkpoint_ids(self) -> list[int]:
        relational = [i for (i,) in Checkpoint.select(Checkpoint.id).tuples()]
        quarantined = [i for (i,) in self._quarantined(CHECKPOINTS).select(Quarantine.source_rowid).tuples()]
        return sorted(relational + quarantined)

    def session_rowids(self, session_key: str) -> tuple[int, ...]:
        column, digest = sessions.session_key_lookup(session_key)
        query = McpSession.select(McpSession.id).where(column == digest)
        relational = [rowid for (rowid,) in query.tuples()]
        return (*relational, *(row[ROWID] for row in self._quarantined_sessions(session_key)))

    # changes the legacy table would make, for `relational_only`

    def insert_checkpoint(self, timestamp: str, data: str) -> LegacyChange:
        checkpoint_id = self._allocate_checkpoint_id()
        row = stored_form(
            CHECKPOINTS,
            CHECKPOINTS.build(rowid=checkpoint_id, id=checkpoint_id, timestamp=timestamp, checkpoint_data=data),
        )
        newest_last = [*self.checkpoint_ids(), checkpoint_id]
        pruned = tuple(newest_last[:-KEPT_CHECKPOINTS])
        return LegacyChange(checkpoints.KIND, str(checkpoint_id), row, pruned)

    def put_session(self, session_key: str, data: str, last_seen: LegacyCell) -> LegacyChange:
        replaced = self.session_rowids(session_key)
        rowid = self._next_rowid(sessions.KIND)  # INSERT OR REPLACE gives the row a new rowid
        row = stored_form(
            MCP_SESSIONS,
            MCP_SESSIONS.build(rowid=rowid, session_key=session_key, session_data=data, last_seen=last_seen),
        )
        return LegacyChange(sessions.KIND, session_key, row, replaced)

    def delete_session(self, session_key: str) -> LegacyChange:
        return LegacyChange(sessions.KIND, session_key, None, self.session_rowids(session_key))

    def _allocate_checkpoint_id(self) -> int:
        # AUTOINCREMENT never reuses an id, even a pruned one: the counter lives on in the
        # recorded legacy schema, so a later `restore` writes it to sqlite_sequence as well.
        schema = load_legacy_schema(self.database) or default_schema(LEGACY_TABLES)
        ids = self.checkpoint_ids()
        allocated = max([schema.sequences.get(CHECKPOINTS.name, 0), *ids[-1:]]) + 1
        record_legacy_schema(
            self.database, replace(schema, sequences={**schema.sequences, CHECKPOINTS.name: allocated})
        )
        return allocated

    def _next_rowid(self, kind: BlobKind) -> int:
        root = kind.root
        relational = root.model.select(pw.fn.MAX(root.identity)).scalar() or 0
        quarantined = self._quarantined(kind.legacy).select(pw.fn.MAX(Quarantine.source_rowid)).scalar() or 0
        return max(relational, quarantined) + 1

    @staticmethod
    def _quarantined(table: LegacyTable) -> pw.ModelSelect:
        return Quarantine.select().where(Quarantine.legacy_table == table.name)

    def _quarantined_sessions(self, session_key: str) -> Iterator[LegacyRow]:
        # row_key is a display form ("NULL" for a NULL key), so the key cell itself is compared.
        for record in self._quarantined(MCP_SESSIONS).where(Quarantine.row_key == stored_key(session_key)):
            row = unquarantine_row(record.source_rowid, record.cells)
            if MCP_SESSIONS.key_of(row) == session_key:  # a BLOB key never equals text in Python either
                yield row


# --- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingRepair:
    table: str
    key: str
    rowids: tuple[int, ...]
    error: str


@dataclass(frozen=True)
class ShadowMismatch:
    table: str
    key: str
    differences: list[str]


@dataclass
class StoreReport:
    mode: str
    shadow_matches: int = 0
    shadow_mismatches: int = 0
    shadow_stale: int = 0  # differed, then agreed when both sides were read again: a write raced the read
    shadow_errors: int = 0  # the relational path raised; swallowed, the caller got the JSON
    shadow_skipped: int = 0  # not compared, because the comparison backlog was full
    fallbacks: int = 0  # `relational` reads the JSON answered, the relational side lacking the key
    repaired: int = 0  # pending repairs found settled by a catch-up
    pending_repairs: list[PendingRepair] = field(default_factory=list)
    mismatches: list[ShadowMismatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """The store's report, kept by every thread that reads and writes through the store."""

    def __init__(self, mode: Mode) -> None:
        self._lock = threading.Lock()
        self._report = StoreReport(mode.value)

    def tally(self, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                setattr(self._report, name, getattr(self._report, name) + amount)

    def record_mismatch(self, mismatch: ShadowMismatch) -> None:
        with self._lock:
            self._report.shadow_mismatches += 1
            if len(self._report.mismatches) < MAX_RECORDED_MISMATCHES:
                self._report.mismatches.append(mismatch)
        logger.warning("shadow read of %s %s differs: %s", mismatch.table, mismatch.key, mismatch.differences)

    def defer(self, repair: PendingRepair) -> None:
        with self._lock:
            self._report.pending_repairs.append(repair)
        logger.warning(
            "relational write of %s %s failed (%s); the legacy row is kept and the next catch-up repairs it",
            repair.table,
            repair.key,
            repair.error,
        )

    def pending(self, table: str | None = None) -> list[PendingRepair]:
        with self._lock:
            return [p for p in self._report.pending_repairs if table is None or p.table == table]

    def settle(self, settled: list[PendingRepair]) -> None:
        with self._lock:
            self._report.pending_repairs = [p for p in self._report.pending_repairs if p not in settled]
            self._report.repaired += len(settled)

    def snapshot(self) -> StoreReport:
        with self._lock:
            report = self._report
            return replace(report, pending_repairs=list(report.pending_repairs), mismatches=list(report.mismatches))


# --- shadow reads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """One read as each side would serve it; both callables return the legacy row or None."""

    kind: BlobKind
    key: str
    legacy: Callable[[], LegacyRow | None]
    relational: Callable[[], LegacyRow | None]


@dataclass(frozen=True)
class Observation:
    value: Blob | None = None
    error: Exception | None = None


def observe(kind: BlobKind, read_row: Callable[[], LegacyRow | None]) -> Observation:
    try:
        return Observation(value=maybe_blob(kind, read_row()))
    except Exception as exc:  # noqa: BLE001 - in an experiment, an exception is a result to compare
        return Observation(error=exc)


def observation_differences(control: Observation, candidate: Observation) -> list[str]:
    if control.error is None and candidate.error is None:
        return [str(difference) for difference in json_differences(control.value, candidate.value)]
    if type(control.error) is type(candidate.error) and str(control.error) == str(candidate.error):
        return []
    return [f"legacy {_outcome(control)} != relational {_outcome(candidate)}"]


def _outcome(observation: Observation) -> str:
    if observation.error is not None:
        return f"raised {observation.error!r}"
    return "found nothing" if observation.value is None else "returned a blob"


class ShadowReads:
    """GitHub Scientist's experiment for reads: the JSON (control) is served, and the relational
    rebuild (candidate) is compared with it on a background thread, off the caller's path."""

    def __init__(self, ledger: Ledger, write_lock: threading.Lock) -> None:
        self._ledger = ledger
        self._write_lock = write_lock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ksi-shadow")  # threads start on first use
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()

    def run(self, read: Read) -> Blob | None:
        row = read.legacy()
        self._submit(read, row)
        return maybe_blob(read.kind, row)

    def _submit(self, read: Read, legacy_row: LegacyRow | None) -> None:
        with self._lock:
            if len(self._in_flight) >= SHADOW_BACKLOG:
                self._ledger.tally(shadow_skipped=1)
                return
            future = self._pool.submit(self._compare, read, legacy_row)
            self._in_flight.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def _compare(self, read: Read, legacy_row: LegacyRow | None) -> None:
        # The control is parsed again from the row, so a caller changing the dict it was handed
        # cannot make a difference appear.
        control = observe(read.kind, lambda: legacy_row)
        candidate = observe(read.kind, read.relational)
        if candidate.error is not None and control.error is None:
            self._ledger.tally(shadow_errors=1)
            table = read.kind.legacy.name
            logger.warning("shadow read of %s %s: the relational path raised %r", table, read.key, candidate.error)
        elif not observation_differences(control, candidate):
            self._ledger.tally(shadow_matches=1)
        else:
            self._confirm_mismatch(read)

    def _confirm_mismatch(self, read: Read) -> None:
        # A write may have changed the row between the two reads. Reading both sides again while
        # no write of this store can run tells such a race from a real divergence.
        with self._write_lock:
            control = observe(read.kind, read.legacy)
            candidate = observe(read.kind, read.relational)
        differences = observation_differences(control, candidate)
        if differences:
            self._ledger.record_mismatch(ShadowMismatch(read.kind.legacy.name, read.key, differences))
        else:
            self._ledger.tally(shadow_stale=1)

    def wait(self, timeout: float | None = None) -> None:
        with self._lock:
            in_flight = set(self._in_flight)
        wait(in_flight, timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# --- the store --------------------------------------------------------------------------------

LegacyWrite = Callable[[DaemonTables], LegacyChange]
RelationalWrite = Callable[[RelationalTables], LegacyChange]


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

    def save_checkpoint(self, blob: Blob) -> int:
        data = json.dumps(blob)  # the daemon's encoding: default arguments, keys in the caller's order
        timestamp = timestamp_utc()
        change = self._write(
            lambda legacy: legacy.insert_checkpoint(timestamp, data),
            lambda relational: relational.insert_checkpoint(timestamp, data),
        )
        return int(change.key)

    def save_session(self, session_key: str, blob: Blob, last_seen: str | datetime) -> None:
        data = json.dumps(blob)
        seen = last_seen.isoformat() if isinstance(last_seen, datetime) else last_seen  # the daemon's text
        self._write(
            lambda legacy: legacy.put_session(session_key, data, seen),
            lambda relational: relational.put_session(session_key, data, seen),
        )

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
                with engines.write_transaction(self.database):
                    change = on_relational(self._relational)
                    self._mirror(change)
                return change
            with engines.write_transaction(self._legacy.database):
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

    def load_checkpoint(self, checkpoint_id: int) -> Blob | None:
        return self._read(
            Read(
                checkpoints.KIND,
                str(checkpoint_id),
                lambda: self._legacy_tables().checkpoint(checkpoint_id),
                lambda: self._relational.checkpoint(checkpoint_id),
            )
        )

    def latest_checkpoint(self) -> Blob | None:
        return self._read(
            Read(
                checkpoints.KIND,
                "latest",
                lambda: self._legacy_tables().latest_checkpoint(),
                self._relational.latest_checkpoint,
            )
        )

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

    def sessions_for_agent(self, agent_id: str) -> dict[str, Blob]:
        """session key -> session blob, for every session of this agent."""
        return self._relational.blobs(sessions.KIND, McpSession.agent_id == agent_id)

    def checkpoints_by_reason(self, reason: str) -> dict[int, Blob]:
        """checkpoint id -> checkpoint blob, for every checkpoint with this `reason`."""
        return self._relational.blobs(checkpoints.KIND, Checkpoint.reason == reason)

    def tool_usage(self) -> dict[str, int]:
        """tool name -> how many sessions list it, most used first."""
        return self._relational.tool_usage()

    # --- catch-up and the report ---

    def catch_up(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> BackfillReport:
        """Backfill from the legacy tables while this store's writes wait, then settle repairs."""
        if self._legacy_path is None:
            raise LegacyUnavailable(f"the store runs in {self.mode.value} mode, without legacy tables")
        with self._write_lock, LegacySource(self._legacy_path) as source:
            # The store's own legacy tables are the daemon's: a catch-up from them is never another daemon's file.
            report = backfill(source, self.database, batch_size=batch_size, replace_all=True)
        self.settle_repairs()
        return report

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
) -> Store:
    """Open the store on TARGET (a SQLite file or a database URL).

    `legacy` is the SQLite file of the legacy tables; by default they live in TARGET itself,
    beside the relational tables. `mode` defaults to $KSI_STORE_MODE, then `dual_write`.
    `read_only` serves `relational_only` reads from a migrated target without writing anything,
    not even the schema version: the engine itself refuses writes, and so does the store.
    """
    chosen = _mode(mode)
    if read_only:
        return _open_read_only(target, chosen)
    database = open_target(target)
    try:
        if chosen.writes_relational:
            create_schema(database)
        if not chosen.writes_legacy:
            return Store(database, chosen)
        legacy_tables, legacy_path = _legacy_side(target, legacy, database)
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


def _legacy_side(
    target: str | os.PathLike[str], legacy: str | os.PathLike[str] | None, database: pw.Database
) -> tuple[DaemonTables, Path]:
    if legacy is None and is_url(str(target)):
        beside = mask_url(str(target))
        raise LegacyUnavailable(f"the legacy tables need a SQLite file: pass legacy=PATH beside {beside}")
    path = Path(legacy if legacy is not None else target)
    if not is_url(str(target)) and path.resolve() == Path(target).resolve():
        tables = DaemonTables(database)  # one file: both sides commit together
    elif path.is_file():
        tables = DaemonTables(pw.SqliteDatabase(path))
    else:
        raise SourceNotFound(f"legacy database not found: {path}")
    missing = tables.missing()
    if missing:
        _refuse_missing_legacy(database, path, missing)
        tables.create()
        if schema_version(database) is not None and load_legacy_schema(database) is None:
            save_legacy_schema(database, tables.schema())  # as the first catch-up would record it
    return tables, path


def _refuse_missing_legacy(database: pw.Database, path: Path, missing: list[str]) -> None:
    """New legacy tables are created only on a fresh start: next to migrated rows, an empty legacy
    table would be mirrored by the next catch-up, which would delete every relational row."""
    if schema_version(database) is None:
        return
    cleaned = recorded_cleanup(database)
    if cleaned is not None:
        raise LegacyUnavailable(
            f"cleanup dropped the legacy tables {cleaned['tables']} (archive {cleaned['archive']}); open the store "
            "in relational_only mode, or restore the legacy tables before writing them again"
        )
    holds_rows = Checkpoint.select().exists() or McpSession.select().exists() or Quarantine.select().exists()
    if holds_rows:
        raise LegacyUnavailable(
            f"{path} lacks the legacy table(s) {', '.join(missing)} while the target holds migrated rows; "
            "point legacy= at the daemon's database, or open the store in relational_only mode"
        )
