"""Verify: prove a target holds a legacy snapshot exactly, both ways, with `compare.compare_rows`.

Forward, the target holds exactly the relational rows the mapping makes of every source row
(every column of every table, derived columns included) and nothing else; backward, every legacy
row rebuilt from the target equals the source row, storage types included. The migration
metadata (the legacy DDL, AUTOINCREMENT counters, encoding) must be the source's, and every
source column must be one the mapping carries. Both sides are streamed in rowid order, so memory
holds one batch whatever the size of the snapshot.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import peewee as pw

from migrator.batching import DEFAULT_BATCH_SIZE, Progress
from migrator.compare import (
    Mismatch,
    MismatchKind,
    RowComparison,
    compare_rows,
    metadata_mismatches,
    unmapped_column_mismatches,
)
from migrator.kinds import KINDS
from migrator.legacy import LegacyRow
from migrator.orphans import orphans
from migrator.relational import BlobKind
from migrator.sources import Snapshot
from migrator.target import require_schema

MAX_REPORTED_MISMATCHES = 100


@dataclass
class TableVerification:
    table: str
    source_rows: int = 0
    rebuilt_rows: int = 0
    matched: int = 0  # source rows the target holds exactly, both ways
    mismatched: int = 0  # source rows whose relational rows or rebuilt row differ, or cannot be rebuilt
    missing: int = 0  # source rows the target lacks
    extra: int = 0  # rowids the target holds rows for and the source lacks

    def count(self, comparison: RowComparison) -> None:
        if comparison.source is not None:
            self.source_rows += 1
        if comparison.rebuilt is not None:
            self.rebuilt_rows += 1
        kinds = {mismatch.kind for mismatch in comparison.mismatches}
        if not kinds:
            self.matched += 1
        elif MismatchKind.MISSING in kinds:
            self.missing += 1
        elif MismatchKind.EXTRA in kinds:
            self.extra += 1
        else:
            self.mismatched += 1


@dataclass
class VerifyReport:
    tables: list[TableVerification] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)  # the first MAX_REPORTED_MISMATCHES
    kinds: Counter[str] = field(default_factory=Counter)  # every mismatch, counted by kind
    seconds: float = 0.0

    def record(self, mismatch: Mismatch) -> None:
        self.kinds[mismatch.kind.value] += 1
        if len(self.mismatches) < MAX_REPORTED_MISMATCHES:
            self.mismatches.append(mismatch)

    @property
    def problems(self) -> int:
        return self.kinds.total()

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tables": [asdict(t) for t in self.tables],
            "mismatch_kinds": dict(self.kinds),
            "mismatches": [m.to_dict() for m in self.mismatches],
            "seconds": round(self.seconds, 3),
        }


def verify(
    source: Snapshot,
    database: pw.Database,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> VerifyReport:
    require_schema(database)
    started = time.perf_counter()
    report = VerifyReport()
    for mismatch in [*unmapped_column_mismatches(source.unmapped), *metadata_mismatches(source.schema(), database)]:
        report.record(mismatch)
    present = {table.name for table in source.tables}
    for kind in KINDS.values():
        batches = source.batches(kind.legacy, batch_size) if kind.legacy.name in present else iter(())
        table_report = verify_table(kind, batches, database, report, batch_size, progress)
        if kind.own_ids:  # their children are read through their roots: orphans are looked for apart
            for mismatch in orphan_mismatches(database, kind):
                report.record(mismatch)
        if kind.legacy.name in present or table_report.rebuilt_rows or table_report.extra:
            report.tables.append(table_report)
    report.seconds = time.perf_counter() - started
    return report


def orphan_mismatches(database: pw.Database, kind: BlobKind) -> list[Mismatch]:
    """Child rows whose root row is gone, for a kind whose children hold their root's own id
    rather than a legacy rowid: no rowid's comparison sees them."""
    return [
        Mismatch(MismatchKind.ORPHAN, kind.legacy.name, "-", None, (), f"{child} rows of {kind.root.name} id {parent}")
        for child, parent in orphans(database, kind, limit=MAX_REPORTED_MISMATCHES)
    ]


def verify_table(
    kind: BlobKind,
    source_batches: Iterator[list[LegacyRow]],
    database: pw.Database,
    report: VerifyReport,
    batch_size: int,
    progress: Progress | None = None,
) -> TableVerification:
    result = TableVerification(kind.legacy.name)

    def source_rows() -> Iterator[LegacyRow]:
        for batch in source_batches:
            yield from batch
            if progress:
                progress(kind.legacy.name, len(batch))

    for comparison in compare_rows(kind, source_rows(), database, batch_size=batch_size):
        result.count(comparison)
        for mismatch in comparison.mismatches:
            report.record(mismatch)
    return result
