"""Backfill: bring the relational target in line with a legacy snapshot, as often as needed.

Every run is a catch-up. Rows are matched by their legacy rowid and a digest of their cells, so
a re-run writes only what was added or changed since the last one, and removes what the daemon
pruned or expired in the meantime. Each batch is one transaction, and memory holds one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import peewee as pw

from migrator import checkpoints, engines, sessions
from migrator.ddl import refuse_unrestorable_schema
from migrator.legacy import LegacyRow, LegacySource, row_digest
from migrator.models import Quarantine
from migrator.relational import BlobKind, delete_identities, write_legacy_rows
from migrator.target import create_schema, save_legacy_schema

KINDS: dict[str, BlobKind] = {kind.legacy.name: kind for kind in (checkpoints.KIND, sessions.KIND)}
DEFAULT_BATCH_SIZE = 2000

Progress = Callable[[str, int], None]
"""Called with (legacy table name, rows just handled)."""


@dataclass
class TableReport:
    table: str
    source_rows: int = 0
    written: int = 0  # rows new or changed since the last run, written by this one
    unchanged: int = 0
    deleted: int = 0  # rows gone from the source, removed from the target
    migrated: int = 0  # rows now held relationally (after the run)
    quarantined: int = 0  # rows now held verbatim in quarantine
    noncanonical: int = 0  # migrated rows whose JSON is not in json.dumps' default format


@dataclass
class BackfillReport:
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"tables": [asdict(t) for t in self.tables], "seconds": round(self.seconds, 3)}


def backfill(
    source: LegacySource,
    database: pw.Database,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> BackfillReport:
    """Create the schema if needed, then catch the target up with every legacy table present."""
    started = time.perf_counter()
    refuse_unrestorable_schema(source, "migrate")  # now, not at the rollback that needs it
    create_schema(database)
    save_legacy_schema(database, source.schema())
    report = BackfillReport()
    kinds = [KINDS[table.name] for table in source.tables]
    empty = {kind.legacy.name: not _has_rows(kind) for kind in kinds}  # a first load: nothing to compare with
    fresh_models = [table.model for kind in kinds if empty[kind.legacy.name] for table in kind.tables]
    with engines.bulk_load(database), engines.indexes_built_after(database, fresh_models):
        for kind in kinds:
            table_report = _backfill_table(source, database, kind, batch_size, progress, empty[kind.legacy.name])
            report.tables.append(table_report)
    report.seconds = time.perf_counter() - started
    return report


def _backfill_table(
    source: LegacySource,
    database: pw.Database,
    kind: BlobKind,
    batch_size: int,
    progress: Progress | None,
    target_is_empty: bool,
) -> TableReport:
    table = kind.legacy
    table_report = TableReport(table.name, source_rows=source.count(table))
    if not target_is_empty:
        table_report.deleted = _delete_vanished(source, database, kind, batch_size)
    for batch in source.batches(table, batch_size):
        _sync_batch(database, kind, batch, table_report, assume_new=target_is_empty)
        if progress:
            progress(table.name, len(batch))
    _count_totals(kind, table_report)
    return table_report


def _has_rows(kind: BlobKind) -> bool:
    quarantined = Quarantine.select().where(Quarantine.legacy_table == kind.legacy.name)
    return kind.root.model.select().exists() or quarantined.exists()


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
            rowids = [row[0] for row in query.tuples()]
            if not rowids:
                break
            yield rowids
            after = rowids[-1]


def _delete_vanished(source: LegacySource, database: pw.Database, kind: BlobKind, batch_size: int) -> int:
    vanished: list[int] = []
    for rowids in _target_rowids(kind, batch_size):
        present = source.existing_rowids(kind.legacy, rowids)
        vanished.extend(rowid for rowid in rowids if rowid not in present)
    for start in range(0, len(vanished), batch_size):
        with database.atomic():
            delete_identities(database, kind, vanished[start : start + batch_size])
    return len(vanished)


def _known_digests(kind: BlobKind, low: int, high: int) -> dict[int, str]:
    root = kind.root.model
    known = {
        rowid: digest
        for rowid, digest in root.select(kind.root.identity, root.source_digest)
        .where(kind.root.identity.between(low, high))
        .tuples()
    }
    quarantined = (
        Quarantine.select(Quarantine.source_rowid, Quarantine.source_digest)
        .where((Quarantine.legacy_table == kind.legacy.name) & Quarantine.source_rowid.between(low, high))
        .tuples()
    )
    known.update(dict(quarantined))
    return known


def _sync_batch(
    database: pw.Database,
    kind: BlobKind,
    batch: Sequence[LegacyRow],
    report: TableReport,
    *,
    assume_new: bool,
) -> None:
    known = {} if assume_new else _known_digests(kind, batch[0][0], batch[-1][0])
    changed = []
    for row in batch:
        digest = row_digest(row[1:])
        if known.get(row[0]) == digest:
            report.unchanged += 1
        else:
            changed.append((row, digest))
    if changed:
        stale = [row[0] for row, _ in changed if row[0] in known]
        write_legacy_rows(database, kind, changed, replace=stale)
    report.written += len(changed)


def _count_totals(kind: BlobKind, report: TableReport) -> None:
    root = kind.root.model
    report.migrated = root.select().count()
    report.quarantined = Quarantine.select().where(Quarantine.legacy_table == kind.legacy.name).count()
    report.noncanonical = root.select().where(root.text_overlay.is_null(False)).count()
