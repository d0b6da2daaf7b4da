"""Verify: prove a target holds a legacy snapshot exactly, both ways, with `compare.compare_rows`.

Forward, the target holds exactly the relational rows the mapping makes of every source row
(every column of every table, derived columns included) and nothing else; backward, every legacy
row rebuilt from the target equals the source row, storage types included. The migration
metadata (the legacy DDL, AUTOINCREMENT counters, encoding) must be the source's, and every
source column must be one the mapping carries. Both sides are streamed in rowid order, so memory
holds one batch whatever the size of the snapshot.

With `jobs` above 1 (and a snapshot of `PARALLEL_FROM_ROWS` rows or more, which is not read from
a private copy), worker processes
compare rowid ranges that cost about the same to check (`migrator.shards`), each with its own
connections to the source and the target (`Reopen`), and their findings are added up in rowid
order: the same report as one process gives. Each worker reads the source in a read transaction
of its own, so against a file that a daemon is writing the ranges are read at moments a few
seconds apart, as the target is read anyway.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
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
from migrator.errors import WorkerFailed
from migrator.failures import retried_on_lost_connections
from migrator.kinds import KINDS
from migrator.legacy import LegacyRow, UnmappedColumns
from migrator.orphans import orphans
from migrator.parallel import worker_context
from migrator.relational import BlobKind
from migrator.shards import ranges_covering, rowid_spans, source_rows_between
from migrator.sources import Snapshot, open_sources
from migrator.target import open_target, require_schema

MAX_REPORTED_MISMATCHES = 100
PARALLEL_FROM_ROWS = 20_000
"""Below this many source rows `verify` compares in one process whatever `jobs` says: starting
the workers (a third of a second or more) would take longer than the comparison they share."""
RANGE_COST_BYTES = 16 << 20
"""What one worker's range costs to check, in `migrator.shards`' estimate: about a second's work,
so that a million sessions make some 300 ranges, which share out evenly between the workers."""
RANGE_ROWS = 20_000


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

    def add(self, other: TableVerification) -> None:
        """Count another range's rows of the same table in."""
        for counted in fields(self):
            if counted.type == "int":
                setattr(self, counted.name, getattr(self, counted.name) + getattr(other, counted.name))


@dataclass
class VerifyReport:
    tables: list[TableVerification] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)  # the first MAX_REPORTED_MISMATCHES
    kinds: Counter[str] = field(default_factory=Counter)  # every mismatch, counted by kind
    seconds: float = 0.0
    attempts: int = 1  # runs from the start, after a dropped server connection (`failures.RETRY_PAUSES`)

    def record(self, mismatch: Mismatch) -> None:
        self.kinds[mismatch.kind.value] += 1
        if len(self.mismatches) < MAX_REPORTED_MISMATCHES:
            self.mismatches.append(mismatch)

    def absorb(self, other: VerifyReport) -> None:
        """Another report's findings after this one's (a later rowid range's)."""
        self.kinds.update(other.kinds)
        self.mismatches += other.mismatches[: MAX_REPORTED_MISMATCHES - len(self.mismatches)]

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
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class Reopen:
    """Where a worker process opens the same source and target (`verify`'s `jobs`): the source's
    files and the target's path or URL, as the command was given them."""

    sources: tuple[str, ...]
    target: str


def verify(
    source: Snapshot,
    database: pw.Database,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    jobs: int = 1,
    reopen: Reopen | None = None,
) -> VerifyReport:
    """Compare the target with the source both ways; with `jobs` above 1 and `reopen`, in that
    many worker processes (from `PARALLEL_FROM_ROWS` source rows up). A server connection that
    drops is opened again and the comparison starts over, as `migrate` does: it only reads."""

    def attempt(progress: Progress | None) -> VerifyReport:
        return _verify_once(source, database, batch_size, progress, jobs, reopen)

    report, attempts = retried_on_lost_connections(database, attempt, progress)
    report.attempts = attempts
    return report


def _verify_once(
    source: Snapshot,
    database: pw.Database,
    batch_size: int,
    progress: Progress | None,
    jobs: int,
    reopen: Reopen | None,
) -> VerifyReport:
    require_schema(database)
    started = time.perf_counter()
    report = VerifyReport()
    for mismatch in [*unmapped_column_mismatches(source.unmapped), *metadata_mismatches(source.schema(), database)]:
        report.record(mismatch)
    present = {table.name for table in source.tables}
    # A source read from a private copy stays in this process: each worker would copy it again
    # (and a worker process ends without removing what it made).
    shared = reopen is not None and jobs > 1 and not source.reads_a_copy
    shared = shared and sum(map(source.count, source.tables)) >= PARALLEL_FROM_ROWS
    with _range_workers(jobs, reopen) if shared and reopen is not None else nullcontext() as workers:
        for kind in KINDS.values():
            if workers is None:
                batches = source.batches(kind.legacy, batch_size) if kind.legacy.name in present else iter(())
                table_report = verify_table(kind, batches, database, report, batch_size, progress)
            else:
                table_report = _verify_in_ranges(workers, source, kind, report, batch_size, progress)
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

    _compare_into(result, report, kind, source_rows(), database, batch_size)
    return result


def _compare_into(
    result: TableVerification,
    report: VerifyReport,
    kind: BlobKind,
    source_rows: Iterable[LegacyRow],
    database: pw.Database,
    batch_size: int,
    low: int | None = None,
    high: int | None = None,
) -> None:
    """Compare the rowids of [low, high) both ways, counting into `result` and `report`."""
    for comparison in compare_rows(kind, source_rows, database, batch_size=batch_size, low=low, high=high):
        result.count(comparison)
        for mismatch in comparison.mismatches:
            report.record(mismatch)


# --- rowid ranges in worker processes ----------------------------------------------------------


@dataclass
class _RangeWorkers:
    pool: ProcessPoolExecutor
    reopen: Reopen

    def compare(self, kind: BlobKind, low: int | None, high: int | None, batch_size: int) -> Future[RangeFindings]:
        return self.pool.submit(_verify_range, self.reopen, kind.legacy.name, low, high, batch_size)


RangeFindings = tuple[TableVerification, VerifyReport]  # what a worker found in one rowid range


@contextmanager
def _range_workers(jobs: int, reopen: Reopen) -> Iterator[_RangeWorkers]:
    with ProcessPoolExecutor(max_workers=jobs, mp_context=worker_context()) as pool:
        try:
            yield _RangeWorkers(pool, reopen)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # a failing run does not wait for the rest
            raise


def _verify_in_ranges(
    workers: _RangeWorkers,
    source: Snapshot,
    kind: BlobKind,
    report: VerifyReport,
    batch_size: int,
    progress: Progress | None,
) -> TableVerification:
    """`verify_table` by rowid ranges, each compared by a worker; findings added up in rowid order."""
    table = kind.legacy
    spans = rowid_spans(source, table, RANGE_ROWS, RANGE_COST_BYTES) if table in source.tables else []
    ranges = ranges_covering(spans)
    futures = {workers.compare(kind, low, high, batch_size): index for index, (low, high) in enumerate(ranges)}
    result = TableVerification(table.name)
    in_order = _InOrder(result, report)
    try:
        for done in as_completed(futures):
            part, findings = done.result()
            if progress:
                progress(table.name, part.source_rows)
            in_order.add(futures[done], part, findings)
    except BrokenProcessPool as exc:
        raise WorkerFailed(f"a verify worker process stopped before it finished its rows ({exc})") from exc
    return result


@dataclass
class _InOrder:
    """Ranges' findings added up in rowid order as they come in: one done before an earlier one
    waits for it, so the first mismatches reported are the first in rowid order."""

    result: TableVerification
    report: VerifyReport
    next: int = 0
    waiting: dict[int, RangeFindings] = field(default_factory=dict)

    def add(self, index: int, part: TableVerification, findings: VerifyReport) -> None:
        self.waiting[index] = (part, findings)
        while self.next in self.waiting:
            part, findings = self.waiting.pop(self.next)
            self.result.add(part)
            self.report.absorb(findings)
            self.next += 1


_OPENED: dict[Reopen, tuple[Snapshot, pw.Database]] = {}
"""A worker's source and target, opened on its first range and kept for the rest."""


def _verify_range(reopen: Reopen, kind_name: str, low: int | None, high: int | None, batch_size: int) -> RangeFindings:
    """Run in a worker: the comparison of the rowids of [low, high) of one kind."""
    if reopen not in _OPENED:
        source = open_sources(list(reopen.sources), unmapped=UnmappedColumns.REPORT)
        _OPENED[reopen] = (source, open_target(reopen.target, must_exist=True, read_only=True))
    source, database = _OPENED[reopen]
    kind = KINDS[kind_name]
    result, findings = TableVerification(kind.legacy.name), VerifyReport()
    rows = source_rows_between(source, kind.legacy, low, high, batch_size)
    _compare_into(result, findings, kind, rows, database, batch_size, low, high)
    return result, findings
