"""The one comparison engine: legacy rows against the target, both ways.

`compare_rows` takes the source's rows of one legacy table (all of them, or a rowid range) and
what the target holds for the same rowids, and proves two things about each row:

* **forward**: the target holds exactly the relational rows the mapping makes of the source row
  (`relational.map_legacy_row`): every column of every table, derived columns included (parsed
  timestamps, digests, flags, depths, shapes, positions, layouts, overlays, extras), or exactly
  its quarantine row, and nothing else. This is what the daemon and every query read after
  cutover.
* **backward**: the legacy row rebuilt from the target equals the source row, cell by cell, by
  SQLite storage type and value (floats bit for bit), the JSON cell explained with JSON-path
  differences. This is what a rollback writes.

`verify`, the sign-off gate's shards, `cleanup`'s precheck, `migrate --recheck` and the harness's
oracle all call it. Every problem comes back as a `Mismatch` with a `MismatchKind`, the legacy
table, the row's key and rowid, and `Difference`s (a path, the expected and the actual value), so
callers count and render them without matching any text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import peewee as pw

from migrator import engines
from migrator.codec import LegacyCell, cell_identity, keep_duplicate_keys, storage_type
from migrator.ddl import statements_by_table
from migrator.equivalence import Difference, json_differences, text_difference
from migrator.errors import RebuildError, SchemaRefused
from migrator.legacy import ROWID, LegacyRow, LegacySchema, LegacyTable, display_key
from migrator.relational import (
    QUARANTINE,
    BlobKind,
    Mapped,
    Row,
    TableMap,
    TargetRecord,
    map_legacy_row,
    target_records,
)
from migrator.target import LEGACY_SCHEMA_KEY, load_legacy_schema

CATCH_UP_DIGEST = "source_digest"
"""Not compared by the forward check: the digest only tells a catch-up which rows changed since
the last run. A wrong one changes neither a read, a query nor a rebuild; at worst the next
catch-up rewrites a row that was already right, or `migrate --recheck` compares it in full."""

MAX_DIFFERENCES = 20  # per row; a ruined row is named, not listed cell by cell


class MismatchKind(StrEnum):
    MISSING = "missing"  # a source row the target holds nothing for
    EXTRA = "extra"  # the target holds rows for a rowid the source lacks
    RELATIONAL = "relational"  # forward: the target's rows differ from what the mapping makes
    REBUILT = "rebuilt"  # backward: the legacy row rebuilt from the target differs from the source
    UNREBUILDABLE = "unrebuildable"  # the target's rows cannot be turned back into a legacy row
    ORPHAN = "orphan"  # child rows whose legacy row the target no longer holds
    METADATA = "metadata"  # the recorded legacy DDL, counters or encoding differ from the source's
    UNMAPPED_COLUMN = "unmapped_column"  # a source column the mapping does not carry
    READ = "read"  # a store read of the row does not return the source's value


DESCRIPTIONS = {
    MismatchKind.MISSING: "missing from the target",
    MismatchKind.EXTRA: "in the target but not in the source",
    MismatchKind.RELATIONAL: "relational rows differ from what the mapping makes of the source row",
    MismatchKind.REBUILT: "rebuilt legacy row differs from the source row",
    MismatchKind.UNREBUILDABLE: "cannot be rebuilt",
    MismatchKind.ORPHAN: "child rows without their legacy row",
    MismatchKind.METADATA: "migration metadata differs from the source",
    MismatchKind.UNMAPPED_COLUMN: "source column not carried by the mapping",
    MismatchKind.READ: "the store's read differs from the source's value",
}

LOSES_SOURCE_DATA = frozenset(
    {
        MismatchKind.MISSING,
        MismatchKind.RELATIONAL,
        MismatchKind.REBUILT,
        MismatchKind.UNREBUILDABLE,
        MismatchKind.METADATA,
        MismatchKind.UNMAPPED_COLUMN,
        MismatchKind.READ,
    }
)
"""Kinds that mean some of the source is not (or not exactly) in the target; EXTRA and ORPHAN
are rows the target holds beyond the source, which lose nothing of it."""


@dataclass(frozen=True)
class Mismatch:
    kind: MismatchKind
    table: str  # the legacy table, or the target table for whole-table findings
    key: str  # the row's `id` or `session_key` as a person reads it; "-" when there is none
    rowid: int | None
    differences: tuple[Difference, ...] = ()
    detail: str = ""  # why a row cannot be rebuilt, and the like

    def headline(self) -> str:
        where = f"{self.table} {self.key}" + (f" (rowid {self.rowid})" if self.rowid is not None else "")
        detail = f": {self.detail}" if self.detail else ""
        return f"{where}: {DESCRIPTIONS[self.kind]}{detail}"

    def __str__(self) -> str:
        return "\n".join([self.headline(), *(f"    {difference}" for difference in self.differences)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "table": self.table,
            "key": self.key,
            "rowid": self.rowid,
            "detail": self.detail,
            "differences": [vars(difference) for difference in self.differences],
        }


@dataclass
class RowComparison:
    """How one rowid came out, both ways."""

    rowid: int
    source: LegacyRow | None
    rebuilt: LegacyRow | None  # None when the target holds nothing for it, or it cannot be rebuilt
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.mismatches


# --- the engine ---------------------------------------------------------------------------------


def compare_rows(
    kind: BlobKind,
    source_rows: Iterable[LegacyRow],
    database: pw.Database,
    *,
    batch_size: int,
    low: int | None = None,
    high: int | None = None,
) -> Iterator[RowComparison]:
    """Every rowid of [low, high) that the source or the target holds, compared both ways, in
    rowid order. `source_rows` must be the source's rows of that range, in rowid order."""
    comparer = _Comparer(kind, database)
    records = target_records(database, kind, batch_size, low, high)
    for rowid, row, record in merged_by_rowid(source_rows, records, _source_rowid, _record_rowid):
        yield comparer.compare(rowid, row, record)


def merged_by_rowid(
    left: Iterable[Any], right: Iterable[Any], left_rowid: Callable[[Any], int], right_rowid: Callable[[Any], int]
) -> Iterator[tuple[int, Any, Any]]:
    """Two streams in rowid order side by side: (rowid, left item or None, right item or None)."""
    lefts, rights = iter(left), iter(right)
    a, b = next(lefts, None), next(rights, None)
    while a is not None or b is not None:
        if b is None or (a is not None and left_rowid(a) < right_rowid(b)):
            yield left_rowid(a), a, None
            a = next(lefts, None)
        elif a is None or right_rowid(b) < left_rowid(a):
            yield right_rowid(b), None, b
            b = next(rights, None)
        else:
            yield left_rowid(a), a, b
            a, b = next(lefts, None), next(rights, None)


def _source_rowid(row: LegacyRow) -> int:
    return row[ROWID]


def _record_rowid(record: TargetRecord) -> int:
    return record.rowid


class _Comparer:
    """The per-table facts a comparison needs, worked out once per run, not once per row."""

    def __init__(self, kind: BlobKind, database: pw.Database) -> None:
        self.kind = kind
        self.tables = (*kind.tables, QUARANTINE)
        self.layouts = [_TableLayout(table, database) for table in self.tables]
        self.digest_positions = (kind.root.position(CATCH_UP_DIGEST), QUARANTINE.position(CATCH_UP_DIGEST))

    def compare(self, rowid: int, row: LegacyRow | None, record: TargetRecord | None) -> RowComparison:
        table = self.kind.legacy
        if record is None:
            return RowComparison(rowid, row, None, [self.mismatch(MismatchKind.MISSING, rowid, row)])
        try:
            rebuilt: LegacyRow | None = record.rebuild(self.kind)
            failure = None
        except Exception as exc:  # noqa: BLE001 - reported as this row's mismatch
            rebuilt, failure = None, exc
        if row is None:
            key_row = rebuilt if rebuilt is not None else None
            return RowComparison(rowid, None, rebuilt, [self.mismatch(MismatchKind.EXTRA, rowid, key_row)])
        mismatches = []
        forward = self.forward_differences(map_legacy_row(self.kind, row, self.digest_held(record)), record)
        if forward:
            mismatches.append(self.mismatch(MismatchKind.RELATIONAL, rowid, row, forward))
        if failure is not None:
            mismatches.append(self.mismatch(MismatchKind.UNREBUILDABLE, rowid, row, detail=str(failure)))
        else:
            backward = legacy_row_differences(table, row, rebuilt)  # type: ignore[arg-type]
            if backward:
                mismatches.append(self.mismatch(MismatchKind.REBUILT, rowid, row, backward))
        return RowComparison(rowid, row, rebuilt, mismatches)

    def digest_held(self, record: TargetRecord) -> str:
        """The catch-up digest the target holds for the row, given to the mapping so that the
        rows it makes carry the same one: the digest is not compared (see CATCH_UP_DIGEST)."""
        if record.root is not None:
            return record.root[self.digest_positions[0]]
        return next((row[self.digest_positions[1]] for row in record.quarantined), "")

    def forward_differences(self, mapped: Mapped, record: TargetRecord) -> list[Difference]:
        expected_tables = [*(mapped.bundle or [[] for _ in self.kind.tables]), _listed(mapped.quarantined)]
        actual_tables = [*record.tables, record.quarantined]
        differences: list[Difference] = []
        for layout, expected, actual in zip(self.layouts, expected_tables, actual_tables, strict=True):
            differences += layout.differences(expected, actual)
            if len(differences) >= MAX_DIFFERENCES:
                break
        return differences[:MAX_DIFFERENCES]

    def mismatch(
        self,
        kind: MismatchKind,
        rowid: int,
        row: LegacyRow | None,
        differences: Sequence[Difference] = (),
        detail: str = "",
    ) -> Mismatch:
        key = display_key(self.kind.legacy.key_of(row)) if row is not None else "-"
        return Mismatch(kind, self.kind.legacy.name, key, rowid, tuple(differences), detail)


def _listed(row: Row | None) -> list[Row]:
    return [] if row is None else [row]


class _TableLayout:
    """How one target table's rows are compared with the rows the mapping makes: by their key,
    every column but the catch-up digest, each value in the form the engine stores it."""

    def __init__(self, table: TableMap, database: pw.Database) -> None:
        self.table = table
        self.adapters = [
            (index, adapt)
            for index, adapt in enumerate(engines.engine(database).stored_value_adapters(table.fields))
            if adapt is not None
        ]
        self.key_positions = [table.position(column) for column in table.key]
        self.skipped = [index for index, column in enumerate(table.columns) if column == CATCH_UP_DIGEST]

    def stored(self, row: Row) -> Row:
        if not self.adapters:
            return row
        cells = list(row)
        for index, adapt in self.adapters:
            cells[index] = adapt(cells[index])
        return tuple(cells)

    def key_of(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(row[index] for index in self.key_positions)

    def differences(self, expected_rows: list[Row], actual_rows: list[Row]) -> list[Difference]:
        expected = [self.stored(row) for row in expected_rows]
        actual = list(actual_rows)
        if len(expected) == len(actual) and all(map(_same_row, expected, actual)):
            return []  # the usual case: the same rows in the same order (the digest given is the target's)
        actual_by_key = {_identity(self.key_of(row)): row for row in actual}
        unmatched_expected = []
        differences: list[Difference] = []
        for row in expected:
            partner = actual_by_key.pop(_identity(self.key_of(row)), None)
            if partner is None:
                unmatched_expected.append(row)
            else:
                differences += self.cell_differences(row, partner)
        unmatched_actual = [row for row in actual if _identity(self.key_of(row)) in actual_by_key]
        # A row whose key column itself changed is still one row: compare it with the row it
        # replaces, so its table, row and column are named instead of a missing and an extra row.
        for row, partner in zip(unmatched_expected, unmatched_actual, strict=False):
            differences += self.cell_differences(row, partner, compare_key=True)
        for row in unmatched_expected[len(unmatched_actual) :]:
            differences.append(Difference(self.row_path(row), _render_row(row), "<missing>"))
        for row in unmatched_actual[len(unmatched_expected) :]:
            differences.append(Difference(self.row_path(row), "<none>", _render_row(row)))
        return differences

    def cell_differences(
        self, expected: list[Any], actual: list[Any], *, compare_key: bool = False
    ) -> list[Difference]:
        path = self.row_path(expected)
        differences = []
        for index, column in enumerate(self.table.columns):
            if index in self.skipped or (not compare_key and index in self.key_positions):
                continue
            if not _same_cell(expected[index], actual[index]):
                differences.append(
                    Difference(f"{path}.{column}", _render_cell(expected[index]), _render_cell(actual[index]))
                )
        return differences

    def row_path(self, row: Sequence[Any]) -> str:
        pairs = zip(self.table.key, self.key_positions, strict=True)
        key = ", ".join(f"{column}={_render_key(row[index])}" for column, index in pairs)
        return f"{self.table.name}[{key}]"


def _same_row(expected: Row, actual: Row) -> bool:
    """Equal by value and by type, cell by cell (`1 == True == 1.0` in Python, not here)."""
    return expected == actual and list(map(type, expected)) == list(map(type, actual))


def _identity(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A key by type and value: a tampered `1.0` position is not the row at position `1`."""
    return tuple((type(value).__name__, value) for value in values)


def _same_cell(expected: Any, actual: Any) -> bool:
    return type(expected) is type(actual) and expected == actual


CELL_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "integer", float: "real", str: "text", bytes: "blob"}


def _render_cell(value: Any) -> str:
    kind = "datetime" if isinstance(value, datetime) else CELL_TYPE_NAMES.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{text[:77] + '...' if len(text) > 80 else text} ({kind})"


def _render_key(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _render_row(row: Sequence[Any]) -> str:
    text = repr(tuple(row))
    return text if len(text) <= 120 else text[:117] + "..."


# --- the backward half: two legacy rows, cell by cell -------------------------------------------


def legacy_row_differences(table: LegacyTable, expected: LegacyRow, actual: LegacyRow) -> list[Difference]:
    """How two legacy rows differ, by storage type and value; empty when they are identical."""
    if expected == actual and all(
        type(a) is type(b) and not isinstance(a, float) for a, b in zip(expected, actual, strict=True)
    ):
        return []  # the fast path: same values, same storage types, no float sign to check
    differences: list[Difference] = []
    for column, left, right in zip(("rowid", *table.columns), expected, actual, strict=True):
        if cell_identity(left) != cell_identity(right):
            differences += legacy_cell_differences(column, left, right, json_cell=column == table.data_column)
    return differences


def legacy_cell_differences(
    column: str, expected: LegacyCell, actual: LegacyCell, *, json_cell: bool
) -> list[Difference]:
    if json_cell and isinstance(expected, str) and isinstance(actual, str):
        try:
            left = json.loads(expected, object_pairs_hook=keep_duplicate_keys)
            right = json.loads(actual, object_pairs_hook=keep_duplicate_keys)
        except (ValueError, RecursionError):
            return [difference for difference in [text_difference(column, expected, actual)] if difference]
        found = json_differences(left, right)
        if found:
            return [Difference(f"{column} {d.path}", d.expected, d.actual) for d in found]
        spelling = text_difference(f"{column}, the same JSON value,", expected, actual)
        return [spelling] if spelling else []
    return [Difference(column, _render_legacy(expected), _render_legacy(actual))]


def _render_legacy(value: LegacyCell) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({storage_type(value)})"


def compare_legacy_rows(
    table: LegacyTable, expected: Iterable[LegacyRow], actual: Iterable[LegacyRow]
) -> Iterator[Mismatch]:
    """Two versions of a legacy table, row by row (each in rowid order): rows one side lacks, and
    rows that differ. Used where both sides are legacy rows already (a restored copy, an archive)."""
    for rowid, left, right in merged_by_rowid(expected, actual, _source_rowid, _source_rowid):
        if right is None:
            yield Mismatch(MismatchKind.MISSING, table.name, display_key(table.key_of(left)), rowid)
        elif left is None:
            yield Mismatch(MismatchKind.EXTRA, table.name, display_key(table.key_of(right)), rowid)
        else:
            differences = legacy_row_differences(table, left, right)
            if differences:
                key = display_key(table.key_of(left))
                yield Mismatch(MismatchKind.REBUILT, table.name, key, rowid, tuple(differences))


# --- the migration metadata ---------------------------------------------------------------------

META_TABLE = "ksi_migration_meta"


def metadata_mismatches(source: LegacySchema, database: pw.Database) -> list[Mismatch]:
    """The target's recorded legacy schema against the source's; a record that cannot be read is one."""
    try:
        return compare_metadata(source, load_legacy_schema(database))
    except (RebuildError, SchemaRefused) as exc:  # a record that cannot be read, or runs what it must not
        return [Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, detail=str(exc))]


def compare_metadata(source: LegacySchema, recorded: LegacySchema | None) -> list[Mismatch]:
    """The legacy DDL, AUTOINCREMENT counters and encoding the target recorded, against the
    source's own, for every table the source holds: the rollback recreates the tables from them."""
    if recorded is None:
        return [Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, detail="nothing is recorded")]
    source_groups, recorded_groups = statements_by_table(source.statements), statements_by_table(recorded.statements)
    mismatches = []
    for table in source.tables:
        path = f"{META_TABLE}.{LEGACY_SCHEMA_KEY}[{table}]"
        differences = []
        if table not in recorded.tables:
            differences.append(Difference(f"{path}.tables", repr(table), "<missing>"))
        expected, actual = source_groups.get(table, []), recorded_groups.get(table, [])
        for index in range(max(len(expected), len(actual))):
            left = expected[index] if index < len(expected) else None
            right = actual[index] if index < len(actual) else None
            if left != right:
                differences.append(Difference(f"{path}.statements[{index}]", _render_cell(left), _render_cell(right)))
        if source.sequences.get(table) != recorded.sequences.get(table):
            differences.append(
                Difference(
                    f"{path}.sequence",
                    _render_cell(source.sequences.get(table)),
                    _render_cell(recorded.sequences.get(table)),
                )
            )
        if differences:
            mismatches.append(Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, tuple(differences)))
    if source.encoding != recorded.encoding:
        difference = Difference(
            f"{META_TABLE}.{LEGACY_SCHEMA_KEY}.encoding", repr(source.encoding), repr(recorded.encoding)
        )
        mismatches.append(Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, (difference,)))
    return mismatches


def unmapped_column_mismatches(unmapped: Sequence[tuple[str, str]]) -> list[Mismatch]:
    """A source column the mapping does not carry: the target cannot hold it, so it would be lost."""
    return [
        Mismatch(MismatchKind.UNMAPPED_COLUMN, table, "-", None, detail=f"{table}.{column} is in no target table")
        for table, column in unmapped
    ]
