"""The gate's data checks as plain functions: exactness by shard, counts and checksums, quarantine
accounting, and the untouched source. Each returns a `CheckResult`; the tests assert on it and the
plugin carries it to the controller, which writes the sign-off.

Everything streams: a shard reads its rowid range from both sides a batch at a time, so memory
stays flat on any snapshot. Each shard also counts and checksums both sides of its range; the
controller adds those up per table (`table_counts`), so no test has to read a whole table again,
and the gate scales with its workers.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import peewee as pw

from migrator.archive import RowTally
from migrator.backfill import KINDS
from migrator.legacy import LegacyRow, LegacySource, LegacyTable, display_key, row_digest, snapshot_hashes
from migrator.models import Quarantine
from migrator.relational import orphans, rebuilt_rows_between
from migrator.verify import Mismatch, row_differences

ROWS_EXACT = "rows_exact"
COUNTS_CHECKSUMS = "counts_checksums"
NO_ORPHANS = "no_orphans"
QUARANTINE = "quarantine"
SOURCE_UNTOUCHED = "source_untouched"
PERFORMANCE = "performance"
SCHEMA = "schema"

CHECK_TITLES = {
    ROWS_EXACT: "Per-row exactness",
    COUNTS_CHECKSUMS: "Counts and checksums",
    NO_ORPHANS: "No orphaned rows",
    QUARANTINE: "Quarantine accepted",
    SOURCE_UNTOUCHED: "Source untouched",
    PERFORMANCE: "Performance",
    SCHEMA: "Schema complete",
}
"""Every check, in the order the sign-off lists them."""

BATCH_ROWS = 500
MAX_PROBLEMS = 20  # per test; the count of the rest is still given


@dataclass
class CheckResult:
    check: str  # a key of CHECK_TITLES
    passed: bool
    summary: str  # one line: the progress line, and the check's row in signoff.md
    figures: dict[str, Any]  # for signoff.json; JSON values only
    problems: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return "\n".join([self.summary, *self.problems])


@dataclass
class Problems:
    """Problem lines, kept up to a limit and counted beyond it, so a ruined target cannot fill memory."""

    limit: int = MAX_PROBLEMS
    shown: list[str] = field(default_factory=list)
    hidden: int = 0

    def add(self, line: str) -> None:
        if len(self.shown) < self.limit:
            self.shown.append(line)
        else:
            self.hidden += 1

    def __len__(self) -> int:
        return len(self.shown) + self.hidden

    def lines(self) -> list[str]:
        return self.shown + ([f"... and {self.hidden:,} more"] if self.hidden else [])


# --- reading the source by rowid range ---------------------------------------------------------


def _rowid_condition(low: int | None, high: int | None) -> tuple[str, list[int]]:
    conditions, params = [], []
    if low is not None:
        conditions.append("rowid >= ?")
        params.append(low)
    if high is not None:
        conditions.append("rowid < ?")
        params.append(high)
    return " AND ".join(conditions) or "1", params


def source_rows_between(
    source: LegacySource, table: LegacyTable, low: int | None, high: int | None, batch_size: int = BATCH_ROWS
) -> Iterator[LegacyRow]:
    """The source's rows with rowids in [low, high), in rowid order; None leaves a side open."""
    if table not in source.tables:
        return  # a snapshot may hold one table only: the other is empty, not an error
    columns = ", ".join(f'"{column}"' for column in table.columns)
    where, params = _rowid_condition(low, high)
    cursor = source.connection.execute(
        f'SELECT rowid, {columns} FROM "{table.name}" WHERE {where} ORDER BY rowid', params
    )
    while batch := cursor.fetchmany(batch_size):
        yield from batch


# --- 1. per-row exactness, by shard ------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """A run of consecutive source rowids, checked as one test.

    `low`/`high` bound the rowids the shard covers, [low, high); the first shard of a table is
    open below and the last open above, so a target row outside every source rowid still falls
    in a shard and is reported. `first`/`last` are the source rowids that name it.
    """

    table: str
    low: int | None
    high: int | None
    first: int | None
    last: int | None
    rows: int

    @property
    def id(self) -> str:
        if self.first is None:
            return f"{self.table}-empty"
        return f"{self.table}-rowid-{self.first}-{self.last}"


def plan_shards(source: LegacySource, rows_per_shard: int) -> list[Shard]:
    """Shards of every legacy table, from the rowid index alone (no blob is read)."""
    present = {table.name for table in source.tables}
    shards: list[Shard] = []
    for name, kind in KINDS.items():
        spans = rowid_spans(source, kind.legacy, rows_per_shard) if name in present else []
        shards += shards_covering(name, spans)
    return shards


def rowid_spans(source: LegacySource, table: LegacyTable, rows_per_shard: int) -> list[tuple[int, int, int]]:
    """(first rowid, last rowid, rows) of each run of `rows_per_shard` consecutive rows."""
    spans: list[tuple[int, int, int]] = []
    cursor = source.connection.execute(f'SELECT rowid FROM "{table.name}" ORDER BY rowid')
    for position, (rowid,) in enumerate(cursor):
        if position % rows_per_shard == 0:
            spans.append((rowid, rowid, 1))
        else:
            first, _, rows = spans[-1]
            spans[-1] = (first, rowid, rows + 1)
    return spans


def shards_covering(table: str, spans: Sequence[tuple[int, int, int]]) -> list[Shard]:
    if not spans:
        return [Shard(table, None, None, None, None, 0)]  # still checks that the target holds none
    shards = []
    for index, (first, last, rows) in enumerate(spans):
        low = first if index > 0 else None
        high = spans[index + 1][0] if index + 1 < len(spans) else None
        shards.append(Shard(table, low, high, first, last, rows))
    return shards


Rebuilt = LegacyRow | Exception


def pair_by_rowid(
    expected: Iterable[LegacyRow], rebuilt: Iterable[tuple[int, Rebuilt]]
) -> Iterator[tuple[int, LegacyRow | None, Rebuilt | None]]:
    """Source rows and rebuilt rows side by side, None where one side lacks the rowid.

    Both streams come in rowid order and hold a rowid at most once.
    """
    tagged = heapq.merge(
        ((row[0], 0, row) for row in expected),
        ((rowid, 1, row) for rowid, row in rebuilt),
        key=itemgetter(0, 1),
    )
    for rowid, entries in groupby(tagged, key=itemgetter(0)):
        sides = {side: row for _, side, row in entries}
        yield rowid, sides.get(0), sides.get(1)


def compare_pair(
    table: LegacyTable, rowid: int, expected: LegacyRow | None, rebuilt: Rebuilt | None
) -> tuple[str, Mismatch | None]:
    """How one rowid came out: identical, different, missing or extra, with what is wrong."""
    if expected is None:
        key = "-" if isinstance(rebuilt, Exception) or rebuilt is None else display_key(table.key_of(rebuilt))
        return "extra", Mismatch(table.name, key, rowid, "in the target but not in the source")
    key = display_key(table.key_of(expected))
    if rebuilt is None:
        return "missing", Mismatch(table.name, key, rowid, "missing from the target")
    if isinstance(rebuilt, Exception):
        return "different", Mismatch(table.name, key, rowid, f"cannot be rebuilt: {rebuilt}")
    differences = row_differences(table, expected, rebuilt)
    if differences:
        return "different", Mismatch(table.name, key, rowid, "differs", differences)
    return "identical", None


def verify_shard(source: LegacySource, database: pw.Database, shard: Shard) -> CheckResult:
    """Every row of the shard rebuilt from the target and compared with the source, cell by cell,
    and both sides counted and checksummed for the table's totals."""
    kind = KINDS[shard.table]
    started = time.perf_counter()
    outcomes: Counter[str] = Counter()
    problems = Problems()
    tallies = ShardTallies()
    pairs = pair_by_rowid(
        source_rows_between(source, kind.legacy, shard.low, shard.high),
        rebuilt_rows_between(database, kind, BATCH_ROWS, shard.low, shard.high),
    )
    for rowid, expected, rebuilt in pairs:
        outcome, mismatch = compare_pair(kind.legacy, rowid, expected, rebuilt)
        tallies.add(expected, rebuilt, identical=outcome == "identical")
        outcomes[outcome] += 1
        if mismatch is not None:
            problems.add(f"rowid {rowid}: {mismatch}")
    seconds = time.perf_counter() - started
    return shard_result(shard, outcomes, tallies, problems, seconds)


@dataclass
class ShardTallies:
    """The count and checksum of a shard's source rows and, apart, of the rows rebuilt from the target."""

    source: RowTally = field(default_factory=RowTally)
    rebuilt: RowTally = field(default_factory=RowTally)

    def add(self, expected: LegacyRow | None, rebuilt: Rebuilt | None, *, identical: bool) -> None:
        digest = int(row_digest(expected), 16) if expected is not None else None
        if digest is not None:
            self.source.add_digest(digest)
        if rebuilt is None or isinstance(rebuilt, Exception):
            return
        if identical and digest is not None:
            self.rebuilt.add_digest(digest)  # the same cells and storage types digest alike: hash once
        else:
            self.rebuilt.add(rebuilt)


def shard_result(
    shard: Shard, outcomes: Counter[str], tallies: ShardTallies, problems: Problems, seconds: float
) -> CheckResult:
    rows = outcomes["identical"] + outcomes["different"] + outcomes["missing"]  # the source's rows
    wrong = outcomes.total() - outcomes["identical"]
    rate = round(rows / seconds) if seconds > 0 else None
    figures = {
        "shard": shard.id,
        "table": shard.table,
        "first_rowid": shard.first,
        "last_rowid": shard.last,
        "source_rows": rows,
        "identical": outcomes["identical"],
        "different": outcomes["different"],
        "missing": outcomes["missing"],
        "extra": outcomes["extra"],
        "source_checksum": tallies.source.checksum,
        "rebuilt_rows": tallies.rebuilt.rows,
        "rebuilt_checksum": tallies.rebuilt.checksum,
        "seconds": round(seconds, 3),
        "rows_per_second": rate,
    }
    speed = f"{rate:,} rows/s" if rate is not None else "instant"
    summary = f"{rows:,} rows, {wrong:,} wrong, in {seconds:.2f} s ({speed})"
    return CheckResult(ROWS_EXACT, wrong == 0, summary, figures, problems.lines())


# --- 2. counts and checksums, added up from the shards -----------------------------------------


def table_counts(table: str, planned: Sequence[Shard], reported: Sequence[dict[str, Any]]) -> CheckResult:
    """A table's source and rebuilt rows, counted and checksummed, from its shards' figures.

    The plan counted the source's rows from its rowid index before any shard ran; the shards
    read them again with their blobs. All three counts must agree, and both checksums.
    """
    planned_ids = [shard.id for shard in planned if shard.table == table]
    figures_by_shard = {figures["shard"]: figures for figures in reported if figures["table"] == table}
    source, rebuilt = RowTally(), RowTally()
    for figures in figures_by_shard.values():
        source += RowTally.of(figures["source_rows"], figures["source_checksum"])
        rebuilt += RowTally.of(figures["rebuilt_rows"], figures["rebuilt_checksum"])
    indexed = sum(shard.rows for shard in planned if shard.table == table)
    problems = []
    unreported = [shard for shard in planned_ids if shard not in figures_by_shard]
    if unreported:
        problems.append(f"{table}: not known, {len(unreported)} of {len(planned_ids)} shards reported no figures")
    else:
        problems += count_problems(table, indexed, source, rebuilt)
    figures = {
        "table": table,
        "indexed_rows": indexed,
        "source_rows": source.rows,
        "rebuilt_rows": rebuilt.rows,
        "source_checksum": source.checksum,
        "rebuilt_checksum": rebuilt.checksum,
        "shards": len(planned_ids),
    }
    same = "checksums equal" if source.total == rebuilt.total else "checksums differ"
    summary = f"{table}: {source.rows:,} source rows, {rebuilt.rows:,} rebuilt, {same}"
    return CheckResult(COUNTS_CHECKSUMS, not problems, summary, figures, problems)


def count_problems(table: str, indexed: int, source: RowTally, rebuilt: RowTally) -> list[str]:
    problems = []
    if indexed != source.rows:
        problems.append(f"{table}: the rowid index counted {indexed:,} source rows but the shards read {source.rows:,}")
    if source.rows != rebuilt.rows:
        problems.append(f"{table}: {source.rows:,} source rows but {rebuilt.rows:,} rebuilt from the target")
    if source.total != rebuilt.total:
        problems.append(f"{table}: checksum of the source {source.checksum} != of the rebuilt rows {rebuilt.checksum}")
    return problems


def find_orphans(database: pw.Database, table: str) -> CheckResult:
    """Relational child rows whose parent row is gone: no shard rebuilds them, so they are looked for apart."""
    found = orphans(database, KINDS[table], limit=MAX_PROBLEMS)
    summary = f"{table}: {'orphaned rows found' if found else 'no orphaned rows'}"
    return CheckResult(NO_ORPHANS, not found, summary, {"table": table, "orphans_shown": len(found)}, found)


# --- 3. quarantine accounting ------------------------------------------------------------------


def quarantined_rows(database: pw.Database) -> list[dict[str, Any]]:
    """Every quarantined row, in the form of signoff.json's `quarantine` list (and the accept file)."""
    query = (
        Quarantine.select(Quarantine.legacy_table, Quarantine.row_key, Quarantine.source_rowid, Quarantine.reason)
        .order_by(Quarantine.legacy_table, Quarantine.source_rowid)
        .tuples()
    )
    return [
        {"table": table, "key": key, "rowid": rowid, "reason": reason}
        for table, key, rowid, reason in database.execute(query)
    ]


def quarantine_identity(entry: dict[str, Any]) -> tuple[str, str, str]:
    # A key may be written as a number in a hand-edited accept file; the target keeps its text.
    # The reason is part of what the signer reviewed: a row now quarantined for another reason
    # needs a new review, so it no longer counts as accepted.
    return entry["table"], str(entry["key"]), entry["reason"]


def account_for_quarantine(quarantined: list[dict[str, Any]], accepted: list[dict[str, Any]]) -> CheckResult:
    """Every quarantined row must be accepted, and every accepted row still quarantined."""
    accepted_ids = {quarantine_identity(entry) for entry in accepted}
    quarantined_ids = {quarantine_identity(entry) for entry in quarantined}
    unaccepted = [entry for entry in quarantined if quarantine_identity(entry) not in accepted_ids]
    stale = [entry for entry in accepted if quarantine_identity(entry) not in quarantined_ids]
    problems = [
        f"{entry['table']} {entry['key']} (rowid {entry['rowid']}) is quarantined, not accepted: {entry['reason']}"
        for entry in unaccepted
    ]
    problems += [
        f"{entry['table']} {entry['key']} is accepted but not quarantined for that reason: the accept list is stale"
        for entry in stale
    ]
    figures = {
        "quarantined": len(quarantined),
        "accepted": len(accepted),
        "unaccepted": len(unaccepted),
        "stale": len(stale),
    }
    summary = f"{len(quarantined)} quarantined, {len(quarantined) - len(unaccepted)} of them accepted"
    if stale:
        summary += f"; {len(stale)} accepted rows are not quarantined"
    return CheckResult(QUARANTINE, not problems, summary, {**figures, "rows": quarantined}, problems)


# --- 4. source untouched -----------------------------------------------------------------------

HASHED_FILES = {"db": "snapshot", "wal": "WAL file"}


def compare_source_hashes(snapshot: Path, at_start: dict[str, str | None]) -> CheckResult:
    """The snapshot's and its WAL file's sha256 now, against those taken when the session started."""
    now = snapshot_hashes(snapshot)
    problems = [
        f"the {label}'s sha256 was {at_start[name]} at session start and is {now[name]} now"
        for name, label in HASHED_FILES.items()
        if at_start[name] != now[name]
    ]
    wal = "no WAL file" if now["wal"] is None else f"WAL sha256 {now['wal'][:12]}"
    summary = f"sha256 {(now['db'] or '')[:12]} ({wal}) {'changed' if problems else 'unchanged'}"
    figures = {"at_start": at_start, "at_end": now}
    return CheckResult(SOURCE_UNTOUCHED, not problems, summary, figures, problems)
