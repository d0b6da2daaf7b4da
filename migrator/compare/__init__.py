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

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import peewee as pw

from migrator import engines
from migrator.compare.legacy_rows import compare_legacy_rows, legacy_row_differences
from migrator.compare.metadata import compare_metadata, metadata_mismatches, unmapped_column_mismatches
from migrator.compare.mismatch import (
    CATCH_UP_DIGEST,
    DESCRIPTIONS,
    LOSES_SOURCE_DATA,
    MAX_DIFFERENCES,
    Mismatch,
    MismatchKind,
    RowComparison,
    merged_by_rowid,
    render_cell,
    source_rowid,
)
from migrator.equivalence import Difference
from migrator.legacy import LegacyRow, display_key
from migrator.relational import (
    QUARANTINE,
    ROOT,
    BlobKind,
    Mapped,
    Row,
    TableMap,
    TargetRecord,
    map_legacy_row,
    target_records,
    with_parent_key,
)

__all__ = [
    "CATCH_UP_DIGEST",
    "DESCRIPTIONS",
    "LOSES_SOURCE_DATA",
    "Mismatch",
    "MismatchKind",
    "RowComparison",
    "compare_legacy_rows",
    "compare_metadata",
    "compare_rows",
    "legacy_row_differences",
    "merged_by_rowid",
    "metadata_mismatches",
    "unmapped_column_mismatches",
]

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
    for rowid, row, record in merged_by_rowid(source_rows, records, source_rowid, _record_rowid):
        yield comparer.compare(rowid, row, record)


def _record_rowid(record: TargetRecord) -> int:
    return record.rowid


class _Comparer:
    """The per-table facts a comparison needs, worked out once per run, not once per row."""

    def __init__(self, kind: BlobKind, database: pw.Database) -> None:
        self.kind = kind
        self.tables = (*kind.tables, QUARANTINE)
        self.layouts = [_TableLayout(table, database) for table in self.tables]
        self.digest_positions = (kind.root.position(CATCH_UP_DIGEST), QUARANTINE.position(CATCH_UP_DIGEST))
        self.parent_at = kind.parent_at

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
        forward = self.forward_differences(self.mapped(row, record), record)
        if forward:
            mismatches.append(self.mismatch(MismatchKind.RELATIONAL, rowid, row, forward))
        if failure is not None:
            mismatches.append(self.mismatch(MismatchKind.UNREBUILDABLE, rowid, row, detail=str(failure)))
        else:
            backward = legacy_row_differences(table, row, rebuilt)  # type: ignore[arg-type]
            if backward:
                mismatches.append(self.mismatch(MismatchKind.REBUILT, rowid, row, backward))
        return RowComparison(rowid, row, rebuilt, mismatches)

    def mapped(self, row: LegacyRow, record: TargetRecord) -> Mapped:
        """What the mapping makes of the source row, with the target's own digest, and the root's
        own id where the kind has one (a session's, `models.McpSession`): an id carries nothing of
        the legacy row, so the root's is taken as given and its children are held to it."""
        mapped = map_legacy_row(self.kind, row, self.digest_held(record))
        if not self.kind.own_ids or mapped.bundle is None or record.root is None:
            return mapped
        mapped_id, held_id = mapped.bundle[ROOT][0][self.parent_at], record.root[self.parent_at]
        if mapped_id == held_id:
            return mapped
        return Mapped(tuple(with_parent_key(self.kind, list(mapped.bundle), {mapped_id: held_id})), None)

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
        self, expected: Sequence[Any], actual: Sequence[Any], *, compare_key: bool = False
    ) -> list[Difference]:
        path = self.row_path(expected)
        differences = []
        for index, column in enumerate(self.table.columns):
            if index in self.skipped or (not compare_key and index in self.key_positions):
                continue
            if not _same_cell(expected[index], actual[index]):
                differences.append(
                    Difference(f"{path}.{column}", render_cell(expected[index]), render_cell(actual[index]))
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


def _render_key(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _render_row(row: Sequence[Any]) -> str:
    text = repr(tuple(row))
    return text if len(text) <= 120 else text[:117] + "..."
