"""The backward half: two legacy rows compared cell by cell, by storage type and value, and the
JSON cell by JSON path."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from migrator.codec import LegacyCell, cell_identity, keep_duplicate_keys, storage_type
from migrator.compare.mismatch import Mismatch, MismatchKind, merged_by_rowid, source_rowid
from migrator.equivalence import Difference, json_differences, text_difference
from migrator.legacy import LegacyRow, LegacyTable, display_key

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
    for rowid, left, right in merged_by_rowid(expected, actual, source_rowid, source_rowid):
        if right is None:
            yield Mismatch(MismatchKind.MISSING, table.name, display_key(table.key_of(left)), rowid)
        elif left is None:
            yield Mismatch(MismatchKind.EXTRA, table.name, display_key(table.key_of(right)), rowid)
        else:
            differences = legacy_row_differences(table, left, right)
            if differences:
                key = display_key(table.key_of(left))
                yield Mismatch(MismatchKind.REBUILT, table.name, key, rowid, tuple(differences))
