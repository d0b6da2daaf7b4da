"""The gate's data checks as plain functions: exactness by shard, counts and checksums, quarantine
accounting, and the untouched source. Each returns a `CheckResult`; the tests assert on it and the
plugin carries it to the controller, which writes the sign-off.

Everything streams: a shard reads its rowid range from both sides a batch at a time, so memory
stays flat on any snapshot. Each shard also counts and checksums both sides of its range; the
controller adds those up per table (`table_counts`), so no test has to read a whole table again,
and the gate scales with its workers.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import peewee as pw

from migrator.archive import RowTally
from migrator.compare import (
    Mismatch,
    MismatchKind,
    RowComparison,
    compare_rows,
    metadata_mismatches,
    unmapped_column_mismatches,
)
from migrator.equivalence import Difference, json_differences
from migrator.errors import UnreadableRecord
from migrator.kinds import KINDS
from migrator.legacy import LegacyRow, row_digest
from migrator.models import Quarantine
from migrator.orphans import orphans
from migrator.relational import BlobKind
from migrator.shards import Span, ranges_covering, rowid_spans, source_rows_between
from migrator.sources import Snapshot, files_hashes
from migrator.store import Blob, Store, blob_of
from verification.gate.rowids import RowidRuns

ROWS_EXACT = "rows_exact"
COUNTS_CHECKSUMS = "counts_checksums"
ROWS_COVERED = "rows_covered"
NO_ORPHANS = "no_orphans"
QUARANTINE = "quarantine"
SOURCE_UNTOUCHED = "source_untouched"
PERFORMANCE = "performance"
SCHEMA = "schema"
METADATA = "metadata"
SOURCE_COLUMNS = "source_columns"

CHECK_TITLES = {
    SOURCE_COLUMNS: "Every source column carried",
    ROWS_EXACT: "Per-row exactness, both ways, and reads",
    METADATA: "Migration metadata",
    COUNTS_CHECKSUMS: "Counts and checksums",
    ROWS_COVERED: "Every source row compared once",
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
    # A shard's compared source rowids, as `rowids.RowidRuns` encodes them: carried to the
    # controller on the test's report for the coverage check, never written to the sign-off.
    rowids: list[int] | None = None

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
    read_every: int = 1  # every n-th source row is also read through the store (a sample on huge tables)

    @property
    def id(self) -> str:
        if self.first is None:
            return f"{self.table}-empty"
        return f"{self.table}-rowid-{self.first}-{self.last}"


def plan_shards(source: Snapshot, rows_per_shard: int, read_sample: int, shard_bytes: int) -> list[Shard]:
    """Shards of every legacy table, balanced by what checking them costs (`rowid_spans`), from
    the rowid index and the blobs' lengths (no blob is read). Every row is also read through the
    store, or every n-th row of a table larger than `read_sample`."""
    present = {table.name for table in source.tables}
    shards: list[Shard] = []
    for name, kind in KINDS.items():
        spans = rowid_spans(source, kind.legacy, rows_per_shard, shard_bytes) if name in present else []
        rows = sum(count for _, _, count in spans)
        read_every = max(1, math.ceil(rows / read_sample))
        shards += [replace(shard, read_every=read_every) for shard in shards_covering(name, spans)]
    return shards


def shards_covering(table: str, spans: Sequence[Span]) -> list[Shard]:
    if not spans:
        return [Shard(table, None, None, None, None, 0)]  # still checks that the target holds none
    return [
        Shard(table, low, high, first, last, rows)
        for (low, high), (first, last, rows) in zip(ranges_covering(spans), spans, strict=True)
    ]


def verify_shard(source: Snapshot, store: Store, shard: Shard) -> CheckResult:
    """Every row of the shard compared with the target both ways (`compare.compare_rows`), every
    `read_every`-th one also read through the store as the daemon would, and both sides counted
    and checksummed for the table's totals."""
    kind = KINDS[shard.table]
    started = time.perf_counter()
    outcomes: Counter[str] = Counter()
    problems = Problems()
    tallies = ShardTallies()
    reads = Counter[str]()
    compared = RowidRuns()
    comparisons = compare_rows(
        kind,
        source_rows_between(source, kind.legacy, shard.low, shard.high, BATCH_ROWS),
        store.database,
        batch_size=BATCH_ROWS,
        low=shard.low,
        high=shard.high,
    )
    for position, comparison in enumerate(comparisons):
        mismatches = list(comparison.mismatches)
        if comparison.source is not None:
            compared.add(comparison.rowid)
        if comparison.source is not None and position % shard.read_every == 0:
            read = read_mismatch(kind, store, comparison.source)
            reads["skipped" if read is SKIPPED_READ else "checked"] += 1
            if isinstance(read, Mismatch):
                mismatches.append(read)
        outcome = outcome_of(comparison, mismatches)
        tallies.add(comparison.source, comparison.rebuilt, identical=outcome == "identical")
        outcomes[outcome] += 1
        for mismatch in mismatches:
            problems.add(str(mismatch))
    seconds = time.perf_counter() - started
    result = shard_result(shard, outcomes, tallies, problems, reads, seconds)
    result.rowids = compared.encoded
    return result


def outcome_of(comparison: RowComparison, mismatches: list[Mismatch]) -> str:
    kinds = {mismatch.kind for mismatch in mismatches}
    if not kinds:
        return "identical"
    if MismatchKind.MISSING in kinds:
        return "missing"
    return "extra" if MismatchKind.EXTRA in kinds else "different"


SKIPPED_READ = object()  # a row no read can ask for: a session key that is not text


def read_mismatch(kind: BlobKind, store: Store, row: LegacyRow) -> Mismatch | object | None:
    """The store's read of a source row (`load_checkpoint(id)`, `get_session(key)`) against the
    value the daemon read from the legacy table, `json.loads` of the blob; None when equal."""
    key = kind.legacy.key_of(row)
    checkpoint = kind.legacy.name == "checkpoints"
    # The daemon asks for a checkpoint by its integer id and a session by its text key; an
    # untyped table may hold another type there (an integer session key), which no read asks for.
    if not isinstance(key, int if checkpoint else str) or isinstance(key, bool):
        return SKIPPED_READ
    read = store.load_checkpoint if checkpoint else store.get_session
    expected, actual = _observe(lambda: blob_of(kind, row)), _observe(lambda: read(key))
    if expected[0] != actual[0]:
        differences = [Difference("read", expected[0], actual[0])]
    else:
        found = json_differences(expected[1], actual[1])
        differences = [Difference(f"read {d.path}", d.expected, d.actual) for d in found]
    if not differences:
        return None
    return Mismatch(MismatchKind.READ, kind.legacy.name, str(key), row[0], tuple(differences))


def _observe(read: Callable[[], Blob | None]) -> tuple[str, Blob | None]:
    """What a read gave: "a blob" with its value, "nothing", or what it raised. Both sides raise
    `UnreadableRecord` for a quarantined row, and that is a match; anything else raised by the
    store (a row that cannot be rebuilt) is a difference to report, not a crash of the check."""
    try:
        value = read()
    except UnreadableRecord:
        return "not a JSON object", None
    except Exception as exc:  # noqa: BLE001 - the daemon would get this exception: report it
        return f"raised {type(exc).__name__}: {exc}", None
    return ("nothing", None) if value is None else ("a blob", value)


@dataclass
class ShardTallies:
    """The count and checksum of a shard's source rows and, apart, of the rows rebuilt from the target."""

    source: RowTally = field(default_factory=RowTally)
    rebuilt: RowTally = field(default_factory=RowTally)

    def add(self, expected: LegacyRow | None, rebuilt: LegacyRow | None, *, identical: bool) -> None:
        digest = int(row_digest(expected), 16) if expected is not None else None
        if digest is not None:
            self.source.add_digest(digest)
        if rebuilt is None:
            return
        if identical and digest is not None:
            self.rebuilt.add_digest(digest)  # the same cells and storage types digest alike: hash once
        else:
            self.rebuilt.add(rebuilt)


def shard_result(
    shard: Shard, outcomes: Counter[str], tallies: ShardTallies, problems: Problems, reads: Counter[str], seconds: float
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
        "reads_checked": reads["checked"],
        "reads_skipped": reads["skipped"],
        "read_every": shard.read_every,
        "seconds": round(seconds, 3),
        "rows_per_second": rate,
    }
    speed = f"{rate:,} rows/s" if rate is not None else "instant"
    read = f"{reads['checked']:,} read through the store"
    summary = f"{rows:,} rows, {wrong:,} wrong, {read}, in {seconds:.2f} s ({speed})"
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
    reads = sum(figures.get("reads_checked", 0) for figures in figures_by_shard.values())
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
        "reads_checked": reads,
    }
    same = "checksums equal" if source.total == rebuilt.total else "checksums differ"
    summary = (
        f"{table}: {source.rows:,} source rows, {rebuilt.rows:,} rebuilt, {same}, {reads:,} read through the store"
    )
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
    kind = KINDS[table]
    parent = "id" if kind.own_ids else "rowid"  # a session's own id: its rowid is gone with its row
    found = [
        f"{child} rows for missing {table} {parent} {value}"
        for child, value in orphans(database, kind, limit=MAX_PROBLEMS)
    ]
    summary = f"{table}: {'orphaned rows found' if found else 'no orphaned rows'}"
    return CheckResult(NO_ORPHANS, not found, summary, {"table": table, "orphans_shown": len(found)}, found)


# --- the migration metadata, and the source's columns ------------------------------------------


def check_metadata(source: Snapshot, database: pw.Database) -> CheckResult:
    """The legacy DDL, AUTOINCREMENT counters and encoding the target recorded are the source's."""
    problems = [str(mismatch) for mismatch in metadata_mismatches(source.schema(), database)]
    tables = ", ".join(table.name for table in source.tables)
    summary = f"legacy DDL, counters and encoding of {tables}: " + ("differ" if problems else "as in the source")
    return CheckResult(
        METADATA, not problems, summary, {"tables": len(source.tables), "differences": len(problems)}, problems
    )


def check_source_columns(source: Snapshot) -> CheckResult:
    """Every column of the legacy tables is one the mapping carries: a column it does not read
    would be lost at cleanup, however exact every other cell is."""
    problems = [str(mismatch) for mismatch in unmapped_column_mismatches(source.unmapped)]
    columns = sum(len(source.stored_table(table).columns) for table in source.tables)
    summary = (
        f"{len(source.unmapped)} of {columns} source columns not carried"
        if problems
        else f"all {columns} source columns carried"
    )
    figures = {"unmapped": [f"{table}.{column}" for table, column in source.unmapped]}
    return CheckResult(SOURCE_COLUMNS, not problems, summary, figures, problems)


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


def compare_source_hashes(snapshots: Sequence[Path], at_start: dict[str, str | None]) -> CheckResult:
    """The snapshot's and its WAL file's sha256 now, against those taken when the session started
    (for the daemon's two files, one sha256 over both files' own: `sources.files_hashes`)."""
    now = files_hashes(snapshots)
    problems = [
        f"the {label}'s sha256 was {at_start[name]} at session start and is {now[name]} now"
        for name, label in HASHED_FILES.items()
        if at_start[name] != now[name]
    ]
    wal = "no WAL file" if now["wal"] is None else f"WAL sha256 {now['wal'][:12]}"
    summary = f"sha256 {(now['db'] or '')[:12]} ({wal}) {'changed' if problems else 'unchanged'}"
    figures = {"at_start": at_start, "at_end": now}
    return CheckResult(SOURCE_UNTOUCHED, not problems, summary, figures, problems)
