"""Verify: rebuild every legacy row from the target and compare it with the source, exactly.

Both sides are streamed in rowid order and merged, so memory holds one batch whatever the size
of the snapshot. A row matches only when every cell has the same SQLite storage type and the
same value; a JSON cell that differs is explained with JSON-path differences.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import peewee as pw

from migrator.backfill import KINDS
from migrator.codec import LegacyCell, cell_identity, keep_duplicate_keys, storage_type
from migrator.equivalence import describe_text_difference, json_differences
from migrator.legacy import LegacyRow, LegacySource, LegacyTable, display_key
from migrator.relational import BlobKind, orphans, rebuilt_rows
from migrator.target import require_schema

MAX_REPORTED_MISMATCHES = 100

Progress = Callable[[str, int], None]


@dataclass
class Mismatch:
    table: str
    key: str  # the row's `id` or `session_key`, as a person reads it
    rowid: int | None
    problem: str
    differences: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.table} {self.key}: {self.problem}"]
        lines += [f"    {difference}" for difference in self.differences]
        return "\n".join(lines)


@dataclass
class TableVerification:
    table: str
    source_rows: int = 0
    rebuilt_rows: int = 0
    matched: int = 0
    mismatched: int = 0  # rows that differ or cannot be rebuilt
    missing: int = 0  # source rows the target lacks
    extra: int = 0  # target rows the source lacks


@dataclass
class VerifyReport:
    tables: list[TableVerification] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> int:
        return sum(t.mismatched + t.missing + t.extra for t in self.tables)

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tables": [asdict(t) for t in self.tables],
            "mismatches": [asdict(m) for m in self.mismatches],
            "seconds": round(self.seconds, 3),
        }


def verify(
    source: LegacySource,
    database: pw.Database,
    *,
    batch_size: int = 2000,
    progress: Progress | None = None,
) -> VerifyReport:
    require_schema(database)
    started = time.perf_counter()
    report = VerifyReport()
    present = {table.name for table in source.tables}
    for kind in KINDS.values():
        source_batches = source.batches(kind.legacy, batch_size) if kind.legacy.name in present else iter(())
        table_report = verify_table(kind, source_batches, database, report, batch_size, progress)
        if kind.legacy.name in present or table_report.rebuilt_rows:
            report.tables.append(table_report)
    report.seconds = time.perf_counter() - started
    return report


def verify_table(
    kind: BlobKind,
    source_batches: Iterator[list[LegacyRow]],
    database: pw.Database,
    report: VerifyReport,
    batch_size: int,
    progress: Progress | None = None,
) -> TableVerification:
    table = kind.legacy
    result = TableVerification(table.name)

    def record(problem: Mismatch) -> None:
        if len(report.mismatches) < MAX_REPORTED_MISMATCHES:
            report.mismatches.append(problem)

    def source_rows() -> Iterator[LegacyRow]:
        for batch in source_batches:
            yield from batch
            if progress:
                progress(table.name, len(batch))

    for rowid, expected, rebuilt in _merge(source_rows(), rebuilt_rows(database, kind, batch_size)):
        if expected is not None:
            result.source_rows += 1
        if rebuilt is not None:
            result.rebuilt_rows += 1
        if rebuilt is None:
            result.missing += 1
            record(Mismatch(table.name, display_key(table.key_of(expected)), rowid, "missing from the target"))
        elif expected is None:
            result.extra += 1
            key = rebuilt if isinstance(rebuilt, Exception) else table.key_of(rebuilt)
            record(Mismatch(table.name, display_key(key), rowid, "in the target but not in the source"))
        elif isinstance(rebuilt, Exception):
            result.mismatched += 1
            record(Mismatch(table.name, display_key(table.key_of(expected)), rowid, f"cannot be rebuilt: {rebuilt}"))
        else:
            differences = row_differences(table, expected, rebuilt)
            if differences:
                result.mismatched += 1
                record(Mismatch(table.name, display_key(table.key_of(expected)), rowid, "differs", differences))
            else:
                result.matched += 1
    for orphan in orphans(database, kind):
        result.extra += 1
        record(Mismatch(table.name, "-", None, orphan))
    return result


def _merge(
    expected: Iterator[LegacyRow], rebuilt: Iterator[tuple[int, LegacyRow | Exception]]
) -> Iterator[tuple[int, LegacyRow | None, LegacyRow | Exception | None]]:
    """Pair source rows and rebuilt rows by rowid; both streams come in rowid order."""
    left = next(expected, None)
    right = next(rebuilt, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[0] < right[0]):
            yield left[0], left, None  # type: ignore[index]
            left = next(expected, None)
        elif left is None or right[0] < left[0]:
            yield right[0], None, right[1]
            right = next(rebuilt, None)
        else:
            yield left[0], left, right[1]
            left, right = next(expected, None), next(rebuilt, None)


def row_differences(table: LegacyTable, expected: LegacyRow, actual: LegacyRow) -> list[str]:
    """Readable differences between two legacy rows; empty when they are identical."""
    if expected == actual and all(
        type(a) is type(b) and not isinstance(a, float) for a, b in zip(expected, actual, strict=True)
    ):
        return []  # the fast path: same values, same storage types, no float sign to check
    differences: list[str] = []
    for column, left, right in zip(("rowid", *table.columns), expected, actual, strict=True):
        if cell_identity(left) != cell_identity(right):
            differences.extend(cell_differences(column, left, right, json_cell=column == table.data_column))
    return differences


def cell_differences(column: str, expected: LegacyCell, actual: LegacyCell, *, json_cell: bool) -> list[str]:
    if json_cell and isinstance(expected, str) and isinstance(actual, str):
        try:
            left = json.loads(expected, object_pairs_hook=keep_duplicate_keys)
            right = json.loads(actual, object_pairs_hook=keep_duplicate_keys)
        except (ValueError, RecursionError):
            return [f"{column}: {describe_text_difference(expected, actual)}"]
        found = json_differences(left, right)
        if found:
            return [f"{column} {difference}" for difference in found]
        return [f"{column}: same JSON value, but {describe_text_difference(expected, actual)}"]
    return [f"{column}: {_render(expected)} != {_render(actual)}"]


def _render(value: LegacyCell) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({storage_type(value)})"


def verify_rows(kind: BlobKind, rows: Sequence[LegacyRow]) -> list[str]:
    """Differences between legacy rows and their round trip through the mapping, in memory."""
    problems = []
    for row in rows:
        rebuilt = kind.from_rows(kind.to_rows(row, ""))
        problems += row_differences(kind.legacy, row, rebuilt)
    return problems
