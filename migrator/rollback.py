"""The way back: rebuild the legacy tables exactly from the target (restore), or as JSONL (export)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import peewee as pw

from migrator.batching import DEFAULT_BATCH_SIZE, Progress, reported
from migrator.codec import LegacyCell, encode_cell
from migrator.errors import OutputExists, RebuildError
from migrator.kinds import KINDS
from migrator.legacy import CELLS, LegacyRow, LegacySchema
from migrator.legacy_copy import Outputs, default_schema, outputs_label, write_legacy_copies
from migrator.private import open_new
from migrator.relational import BlobKind, held_rows, rebuilt_rows
from migrator.target import load_legacy_schema, require_schema


@dataclass
class RestoreReport:
    out: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HEAL_TARGET = (
    "`ksi-migrate verify` names every such row, and `ksi-migrate migrate --recheck` from the source "
    "rewrites them and removes child rows left without their legacy row"
)
"""What to do about a damaged target row (an orphaned child row, a hand-edited column): the
rollback cannot guess the legacy row, but a recheck from the source heals it."""


def legacy_rows(database: pw.Database, kind: BlobKind, batch_size: int) -> Iterator[LegacyRow]:
    """Every legacy row of one table rebuilt from the target; the first damaged row stops it."""
    for rowid, row in rebuilt_rows(database, kind, batch_size):
        if isinstance(row, Exception):
            raise RebuildError(f"{kind.legacy.name} rowid {rowid} cannot be rebuilt: {row}; {HEAL_TARGET}")
        yield row


def _recorded_tables(database: pw.Database) -> tuple[list[BlobKind], LegacySchema]:
    """The legacy tables the target holds, and the schema that recreates them (read once)."""
    schema = load_legacy_schema(database)
    names = schema.tables if schema else [k.legacy.name for k in KINDS.values()]
    kinds = [KINDS[name] for name in names if name in KINDS]
    return kinds, schema or default_schema(k.legacy for k in kinds)


def rows_to_rebuild(database: pw.Database) -> int:
    """How many legacy rows a `restore` or an `export` of this target writes: one per root row and
    per quarantined row of each table it holds (what a run's progress counts up to)."""
    require_schema(database)
    return sum(sum(held_rows(database, kind)) for kind in _recorded_tables(database)[0])


def restore(
    database: pw.Database,
    out: Outputs,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> RestoreReport:
    """Write a new SQLite file holding the legacy tables as they were, quarantined rows included;
    or, with a file per table, the daemon's own files (`legacy_copy.write_legacy_copies`)."""
    require_schema(database)
    started = time.perf_counter()
    kinds, schema = _recorded_tables(database)
    tables = [(kind.legacy, legacy_rows(database, kind, batch_size)) for kind in kinds]
    report = RestoreReport(out=outputs_label(out))
    report.rows = write_legacy_copies(out, schema, tables, batch_size=batch_size, progress=progress)
    report.seconds = time.perf_counter() - started
    return report


# --- JSONL export -----------------------------------------------------------------------------


def export_cell(value: LegacyCell) -> Any:
    """A cell as a JSON value: TEXT and INTEGER as themselves, any other storage type tagged."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    tag, text = encode_cell(value)
    return {"$sqlite": tag, "value": text}


def export_line(kind: BlobKind, row: LegacyRow) -> str:
    record: dict[str, Any] = {"table": kind.legacy.name}
    for column, cell in zip(kind.legacy.columns, row[CELLS], strict=True):
        record[column] = export_cell(cell)
    return json.dumps(record)


def export(
    database: pw.Database,
    out: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """One legacy row a line, every table, quarantined rows included."""
    require_schema(database)
    path = Path(out)
    if path.exists():
        raise OutputExists(f"refusing to overwrite existing file: {path}")
    counts: dict[str, int] = {}
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # left by a run that broke
    try:
        with open_new(partial, "w", encoding="utf-8") as handle:
            for kind in _recorded_tables(database)[0]:
                counts[kind.legacy.name] = 0
                rows = reported(legacy_rows(database, kind, batch_size), kind.legacy.name, progress, batch_size)
                for row in rows:
                    handle.write(export_line(kind, row) + "\n")
                    counts[kind.legacy.name] += 1
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return counts
