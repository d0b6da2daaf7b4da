"""Backfill: bring the relational target in line with a legacy snapshot, as often as needed.

Every run is a catch-up. Rows are matched by their legacy rowid and a digest of their cells, so
a re-run writes only what was added or changed since the last one, and removes what the daemon
pruned or expired in the meantime. Each batch is one transaction, and memory holds one batch.

Each batch is planned, then written, so `dry_run` is the same run without the writes. `recheck`
plans by comparing the target's rows with what the mapping makes of each source row
(`compare.compare_rows`) instead of trusting the digests, which heals a target that drifted.
A snapshot that shares no row with a target that already holds rows (another daemon's file)
is refused before anything is written, unless `replace_all` says that is intended.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace

import peewee as pw

from migrator import engines, moves, parallel, sessions, staging
from migrator.backfill_report import BackfillReport, TableReport
from migrator.batching import DEFAULT_BATCH_SIZE, Progress
from migrator.codec import key_digest, stored_key
from migrator.compare import compare_rows
from migrator.ddl import refuse_unrestorable_schema
from migrator.errors import SnapshotMismatch
from migrator.failures import lost_race, retried_on_lost_connections
from migrator.kinds import KINDS
from migrator.legacy import CELLS, ROWID, LegacyRow, LegacyTable, row_digest
from migrator.models import McpSession, Quarantine
from migrator.orphans import delete_orphans, orphans
from migrator.relational import BlobKind, WritableRows, delete_identities, write_legacy_rows
from migrator.sources import LegacySources, Snapshot, files_hashes, source_files, source_label
from migrator.staging import LineStaging, Stager, staged_tables, staging_for
from migrator.status import record_last_migrate
from migrator.target import create_schema, save_legacy_schema, schema_version


@dataclass(frozen=True)
class Run:
    """How this run goes: what it compares by, and whether it writes."""

    batch_size: int
    progress: Progress | None
    recheck: bool
    dry_run: bool
    jobs: int = 1  # processes of a fresh load: this one and jobs - 1 workers that map (1: this one alone)
    pool: parallel.WorkerPool | None = None  # those workers, while the run has them
    staging: Stager | None = None  # how rows mapped away from the writer are staged for it


def backfill(
    source: Snapshot,
    database: pw.Database,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    recheck: bool = False,
    dry_run: bool = False,
    replace_all: bool = False,
    jobs: int = 1,
) -> BackfillReport:
    """Create the schema if needed, then catch the target up with every legacy table present.

    `dry_run` plans the same run and writes nothing, not even the schema. `recheck` compares
    every target row with the mapping of its source row and rewrites what differs. `replace_all`
    allows a catch-up from a snapshot that shares no row with the target. `jobs` above 1 loads
    tables that are empty in that many processes, `jobs - 1` of them workers that map rows
    (`migrator.parallel`); a script that asks for them starts its work under
    `if __name__ == "__main__":`, as every program whose workers are not forked must.

    A server connection that drops (a restart, a network blip) is opened again and the run
    starts over, after a pause that grows each time (`failures.RETRY_PAUSES`): every run is a catch-up,
    so what the first attempt committed is kept and found unchanged, and the result is exact.
    """
    run = Run(batch_size, progress, recheck, dry_run, jobs)

    def attempt(progress: Progress | None) -> BackfillReport:
        return _backfill_once(source, database, replace(run, progress=progress), replace_all)

    report, attempts = retried_on_lost_connections(database, attempt, progress)
    report.attempts = attempts
    return report


LARGEST_ROWID = 2**63 - 1  # SQLite's, and a BIGINT's on the servers


def _backfill_once(source: Snapshot, database: pw.Database, run: Run, replace_all: bool) -> BackfillReport:
    started = time.perf_counter()
    batch_size, dry_run, recheck = run.batch_size, run.dry_run, run.recheck
    refuse_unrestorable_schema(source, "migrate")  # now, not at the rollback that needs it
    has_schema = schema_version(database) is not None
    if not dry_run:
        create_schema(database)
        has_schema = True
    kinds = [KINDS[table.name] for table in source.tables]
    empty = {kind.legacy.name: not has_schema or not _has_rows(kind) for kind in kinds}
    if not replace_all:
        _refuse_disjoint_snapshot(source, kinds, empty, batch_size)
    if not dry_run:
        with engines.engine(database).write_transaction():
            # As the file holds it now when a daemon wrote meanwhile: its dual writes keep the
            # recorded counter in step, and a catch-up must not move it back to the snapshot's.
            save_legacy_schema(database, source.schema(now=source.written_since()))
    report = BackfillReport(dry_run=dry_run, recheck=recheck)
    fresh_models = [table.model for kind in kinds if empty[kind.legacy.name] for table in kind.tables]
    # Only a fresh load maps enough rows to be worth workers; a catch-up maps what changed.
    jobs = run.jobs if not dry_run and any(empty.values()) else 1
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ksi-hash") as hasher,
        # Made before the workers start and removed after they stop: they write there.
        staging_for(database, [] if dry_run else fresh_models, workers=jobs > 1) as staging_area,
        parallel.worker_pool(jobs) as pool,
    ):
        run = replace(run, pool=pool, staging=staging_area)
        # The snapshot's sha256 for the record of this run, taken on the other core meanwhile.
        hashes = None if dry_run else hasher.submit(files_hashes, source_files(source))
        loading = engines.engine(database)
        # Only a run that writes nothing but fresh tables may leave the per-row reference checks
        # to one check of each key at the end: a catch-up's rows must meet the daemon's as they go.
        unchecked = fresh_models if not dry_run and all(empty.values()) else []
        with (
            loading.bulk_load(),
            loading.references_checked_after(unchecked),
            loading.indexes_built_after([] if dry_run else fresh_models),
        ):
            for kind in kinds:
                report.tables.append(_backfill_table(source, database, kind, run, empty[kind.legacy.name]))
        report.seconds = time.perf_counter() - started
        if hashes is not None:
            record_last_migrate(database, source, hashes.result(), report.to_dict())
    return report


def _backfill_table(
    source: Snapshot, database: pw.Database, kind: BlobKind, run: Run, target_is_empty: bool
) -> TableReport:
    table = kind.legacy
    table_report = TableReport(table.name, source_rows=source.count(table))
    by_key = _by_key(kind, run, target_is_empty)
    if not target_is_empty and not by_key:
        table_report.deleted = _delete_vanished(source, database, kind, run)
        if run.recheck:
            table_report.orphans_removed = _remove_orphans(database, kind, run)
    claimed: set[int] = set()  # old rowids of sessions moved or replaced by key: not vanished
    # Closed on the way out, so that a write that fails stops the mapping thread (`--jobs 1` into
    # a server) at once, not when the exception's traceback, which holds this frame, is dropped.
    with closing(_read_batches(source, table, run, target_is_empty)) as batches:
        for batch, mapped in batches:
            _sync_batch(
                database,
                source,
                kind,
                batch,
                table_report,
                run,
                assume_new=target_is_empty,
                claimed=claimed,
                mapped=mapped,
            )
            if run.progress:
                run.progress(table.name, len(batch))
    if by_key:  # after the batches, so that a session saved again under a new rowid is moved, not removed
        table_report.deleted = _delete_vanished(source, database, kind, run, claimed)
    if target_is_empty and run.dry_run:
        return table_report  # there is no table to count in yet
    _count_totals(kind, table_report)
    return table_report


def _by_key(kind: BlobKind, run: Run, target_is_empty: bool) -> bool:
    """Whether sessions are matched by key as well as rowid (`migrator.moves`). A recheck trusts
    no digest, so it matches by rowid alone and removes what vanished first, as before."""
    return kind is sessions.KIND and not target_is_empty and not run.recheck


def _read_batches(
    source: Snapshot, table: LegacyTable, run: Run, target_is_empty: bool
) -> Generator[tuple[list[LegacyRow], parallel.MappedBatch | None], None, None]:
    """The source's batches in rowid order, each mapped already by a worker when the run has them
    and the table is loaded fresh (None: `_sync_batch` maps it here)."""
    batches = source.batches(table, run.batch_size)
    if target_is_empty and run.pool is not None and not run.dry_run:
        return parallel.mapped_batches(run.pool, table.name, batches, run.staging)
    if target_is_empty and isinstance(run.staging, LineStaging) and not run.dry_run:
        return parallel.mapped_on_a_thread(table.name, batches, run.staging)  # `--jobs 1` into a server
    return ((batch, None) for batch in batches)


def _has_rows(kind: BlobKind) -> bool:
    quarantined = Quarantine.select().where(Quarantine.legacy_table == kind.legacy.name)
    return kind.root.model.select().exists() or quarantined.exists()


# --- another daemon's file ------------------------------------------------------------------------


def _refuse_disjoint_snapshot(
    source: Snapshot, kinds: Sequence[BlobKind], empty: dict[str, bool], batch_size: int
) -> None:
    """A catch-up removes every target row the snapshot lacks. When the snapshot shares no row at
    all with a target that holds rows, that is the wrong file far more often than a daemon whose
    every row changed, so it is refused before anything is written."""
    held = [kind for kind in kinds if not empty[kind.legacy.name]]
    if not held or any(_shares_a_row(source, kind, batch_size) for kind in held):
        _refuse_another_sessions_file(source, held, batch_size)
        return
    tables = ", ".join(kind.legacy.name for kind in held)
    raise SnapshotMismatch(
        f"refusing to catch up: {source_label(source)} shares no row with the target's {tables} (no row with the same "
        "rowid and content, no session with the same key), so it looks like another daemon's database and "
        "catching up would replace every row; if every row really changed since the last run, pass --replace"
    )


def _refuse_another_sessions_file(source: Snapshot, held: Sequence[BlobKind], batch_size: int) -> None:
    """The daemon's two files can be mixed up one at a time, so a sessions file of its own is judged
    alone (a checkpoint file is not: the daemon keeps five, so a later copy often shares none)."""
    if sessions.KIND not in held or not isinstance(source, LegacySources):
        return
    member = source.member(table := sessions.KIND.legacy)
    if any(source.member(other) is member for other in source.tables if other is not table):
        return  # one file holds both tables, and the rule above judged it
    if not _shares_a_row(source, sessions.KIND, batch_size):
        raise SnapshotMismatch(
            f"refusing to catch up: {member.path} shares no session with the target's mcp_sessions (no row with the "
            "same rowid and content, no session with the same key), so it looks like another daemon's sessions file "
            "and catching up would replace every session; if every session really changed since the last run, "
            "pass --replace"
        )


def _shares_a_row(source: Snapshot, kind: BlobKind, batch_size: int) -> bool:
    """True at the first source row the target holds with the same rowid and content, or, for a
    session, under the same key (the daemon rewrites sessions in place, giving them new rowids)."""
    for batch in source.batches(kind.legacy, batch_size):
        known = _known_digests(kind, batch[0][ROWID], batch[-1][ROWID])
        if any(known.get(row[ROWID]) == row_digest(row[CELLS]) for row in batch):
            return True
        if kind is sessions.KIND:
            keys = [kind.legacy.key_of(row) for row in batch]
            digests = [key_digest(stored_key(key)) for key in keys if isinstance(key, str)]
            if digests and McpSession.select().where(McpSession.session_key_digest.in_(digests)).exists():
                return True
    return False


# --- removing what the source no longer holds -------------------------------------------------------


def _target_rowids(kind: BlobKind, batch_size: int) -> Iterator[list[int]]:
    """Every legacy rowid the target holds, relational or quarantined, a batch at a time."""
    for model, column, where in (
        (kind.root.model, kind.root.identity, None),
        (Quarantine, Quarantine.source_rowid, Quarantine.legacy_table == kind.legacy.name),
    ):
        after = None
        while True:
            query = model.select(column).order_by(column).limit(batch_size)
            if where is not None:
                query = query.where(where)
            if after is not None:
                query = query.where(column > after)
            rowids = [rowid for (rowid,) in query.tuples().iterator()]
            if not rowids:
                break
            yield rowids
            after = rowids[-1]


def _delete_vanished(
    source: Snapshot,
    database: pw.Database,
    kind: BlobKind,
    run: Run,
    claimed: set[int] | frozenset[int] = frozenset(),
) -> int:
    vanished: list[int] = []
    for rowids in _target_rowids(kind, run.batch_size):
        present = source.existing_rowids(kind.legacy, rowids)
        vanished.extend(rowid for rowid in rowids if rowid not in present and rowid not in claimed)
    if not run.dry_run:
        for start in range(0, len(vanished), run.batch_size):
            with engines.engine(database).write_transaction():
                batch = vanished[start : start + run.batch_size]
                if source.written_since():  # a row a daemon wrote again since the snapshot stays
                    back = source.rows_now(kind.legacy, batch)
                    batch = [rowid for rowid in batch if rowid not in back]
                delete_identities(database, kind, batch)
    return len(vanished)


def _remove_orphans(database: pw.Database, kind: BlobKind, run: Run) -> int:
    """Child rows whose legacy row is gone: a catch-up would otherwise trip over their keys."""
    if run.dry_run:
        return len(orphans(database, kind, limit=10**9))
    return delete_orphans(database, kind)


# --- writing what is new or changed -----------------------------------------------------------


def _known_digests(kind: BlobKind, low: int, high: int) -> dict[int, str]:
    root = kind.root.model
    known = {
        rowid: digest
        for rowid, digest in root.select(kind.root.identity, root.source_digest)
        .where(kind.root.identity.between(low, high))
        .tuples()
        .iterator()
    }
    quarantined = (
        Quarantine.select(Quarantine.source_rowid, Quarantine.source_digest)
        .where((Quarantine.legacy_table == kind.legacy.name) & Quarantine.source_rowid.between(low, high))
        .tuples()
        .iterator()
    )
    known.update(dict(quarantined))
    return known


def _above(rowid: int) -> int | None:
    """The bound just above a rowid, or none above SQLite's largest, whose + 1 no INTEGER holds."""
    return rowid + 1 if rowid < LARGEST_ROWID else None


def _changed_rows(
    database: pw.Database, kind: BlobKind, batch: Sequence[LegacyRow], run: Run, *, assume_new: bool
) -> tuple[list[tuple[LegacyRow, str]], set[int]]:
    """The rows of a batch that must be written, with their digests, and the rowids the target
    held before. Plain runs trust the digests; a recheck compares every row in full."""
    known = {} if assume_new else _known_digests(kind, batch[0][ROWID], batch[-1][ROWID])
    digests = [row_digest(row[CELLS]) for row in batch]
    if run.recheck and not assume_new:
        comparisons = compare_rows(
            kind, batch, database, batch_size=run.batch_size, low=batch[0][ROWID], high=_above(batch[-1][ROWID])
        )
        differing = {c.rowid for c in comparisons if c.source is not None and c.mismatches}
        # A row that is right but carries a stale digest is written too, so plain runs trust it again.
        changed = [
            (row, digest)
            for row, digest in zip(batch, digests, strict=True)
            if row[ROWID] in differing or known.get(row[ROWID]) != digest
        ]
    else:
        changed = [(row, digest) for row, digest in zip(batch, digests, strict=True) if known.get(row[ROWID]) != digest]
    return changed, set(known)


def _sync_batch(
    database: pw.Database,
    source: Snapshot,
    kind: BlobKind,
    batch: Sequence[LegacyRow],
    report: TableReport,
    run: Run,
    *,
    assume_new: bool,
    claimed: set[int],
    mapped: parallel.MappedBatch | None = None,
) -> None:
    held: set[int] = set()
    if mapped is not None:  # a fresh load's batch, mapped already (`parallel`): every row is new
        changed = list(zip(batch, mapped.digests, strict=True))
    else:
        changed, held = _changed_rows(database, kind, batch, run, assume_new=assume_new)
    plan = moves.KeyPlan([], changed, {})
    if _by_key(kind, run, assume_new):
        plan = moves.plan_by_key(database, kind, changed, held)
    report.unchanged += len(batch) - len(changed)
    moved = plan.moves
    if moved and not run.dry_run:
        moved = _move_as_read(database, source, kind, moved, report)
    report.moved += len(moved)
    changed = plan.rest
    if changed and not run.dry_run:
        premapped = mapped.mapped if mapped is not None else None
        changed = _write_as_read(
            database, source, kind, changed, report, assume_new=assume_new, displaced=plan.displaced, mapped=premapped
        )
    # The old rowids these sessions left are not vanished rows: the deletion after the batches
    # leaves them alone (a move not made, as a daemon changed the row meanwhile, claims nothing).
    claimed.update(move.old_rowid for move in moved)
    claimed.update(plan.displaced[row[ROWID]] for row, _ in changed if row[ROWID] in plan.displaced)
    report.written += len(changed)
    report.rewritten += sum(1 for row, _ in changed if row[ROWID] in held or row[ROWID] in plan.displaced)


WRITE_ATTEMPTS = 3
"""A batch whose keys collide with rows a daemon committed meanwhile (a server's unique index
notices only at commit), or that a server rolled back for a deadlock or a lock wait with the
daemon's writes (`failures.lost_race`), is checked and written again, this many times in all."""


def _write_as_read(
    database: pw.Database,
    source: Snapshot,
    kind: BlobKind,
    rows: list[tuple[LegacyRow, str]],
    report: TableReport,
    *,
    assume_new: bool,
    displaced: dict[int, int],
    mapped: WritableRows | None = None,
) -> list[tuple[LegacyRow, str]]:
    """Write the relational rows of these snapshot rows, in one transaction that first makes sure
    the legacy file still holds each row as the snapshot read it: a row a daemon changed or
    removed since is never written back over the newer one (its dual write has mirrored it, or
    the next catch-up will). `mapped` is `rows` mapped already (`parallel`). Returns the rows written."""
    with staging.attached(database, staged_tables(mapped)):  # the batch's staging file, if any
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with engines.engine(database).write_transaction():  # SQLite: the write lock first
                    current = _still_as_read(source, kind, rows)
                    # Every rowid about to be written is cleared first, not only those with a known digest:
                    # child rows left behind under a new rowid (an orphan) would otherwise collide with its keys.
                    # A session's key held under another rowid is replaced too (the legacy file now holds
                    # the key only here), or the unique key would refuse the new row.
                    replace = [] if assume_new else [row[ROWID] for row, _ in current]
                    replace += [displaced[rowid] for rowid in replace if rowid in displaced]
                    # Every row read was mapped already; when some changed meanwhile, the rest are mapped again.
                    # (`current` holds the rows still as read, in order: all of them when as many.)
                    premapped = mapped if len(current) == len(rows) else None
                    _, _, child_rows = write_legacy_rows(database, kind, current, replace=replace, mapped=premapped)
            except Exception as exc:
                if attempt == WRITE_ATTEMPTS or not lost_race(exc):
                    raise
                continue
            report.changed_meanwhile += len(rows) - len(current)
            report.child_rows_written += child_rows
            return current
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _move_as_read(
    database: pw.Database, source: Snapshot, kind: BlobKind, planned: list[moves.Move], report: TableReport
) -> list[moves.Move]:
    """Move sessions to their new rowids in one transaction, as `_write_as_read` writes: only
    those the legacy file still holds as the snapshot read them, and the target still holds as
    planned (a dual write since then has mirrored the newer row itself). Returns the moves made."""
    with engines.engine(database).write_transaction():
        as_read = {row[ROWID] for row, _ in _still_as_read(source, kind, [(m.row, m.digest) for m in planned])}
        current = moves.still_held(database, [move for move in planned if move.new_rowid in as_read])
        moves.apply_moves(database, kind, current)
    report.changed_meanwhile += len(planned) - len(current)
    return current


def _still_as_read(source: Snapshot, kind: BlobKind, rows: list[tuple[LegacyRow, str]]) -> list[tuple[LegacyRow, str]]:
    """The rows the legacy file still holds as the snapshot read them (all, when nobody wrote)."""
    if not source.written_since():
        return rows
    now = source.rows_now(kind.legacy, [row[ROWID] for row, _ in rows])
    return [(row, digest) for row, digest in rows if row[ROWID] in now and row_digest(now[row[ROWID]][CELLS]) == digest]


def _count_totals(kind: BlobKind, report: TableReport) -> None:
    root = kind.root.model
    report.migrated = root.select().count()
    report.quarantined = Quarantine.select().where(Quarantine.legacy_table == kind.legacy.name).count()
    report.noncanonical = root.select().where(root.text_overlay.is_null(False)).count()
