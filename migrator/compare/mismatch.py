"""What a comparison finds: a kind, the legacy table, the row, and path/expected/actual differences."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from migrator.equivalence import Difference
from migrator.legacy import ROWID, LegacyRow

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


def source_rowid(row: LegacyRow) -> int:
    return row[ROWID]


CELL_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "integer", float: "real", str: "text", bytes: "blob"}


def render_cell(value: Any) -> str:
    kind = "datetime" if isinstance(value, datetime) else CELL_TYPE_NAMES.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{text[:77] + '...' if len(text) > 80 else text} ({kind})"
