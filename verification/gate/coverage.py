"""The gate proves its own coverage: every source rowid compared by exactly one shard.

Shards are planned as rowid ranges, and a per-row test that passes says nothing about a row no
shard read: an off-by-one in the bounds leaves rows out, an overlap compares some twice, and the
counts alone only say how many. So each shard reports which source rowids it compared, and the
controller holds them against the source's rowid index, read again at the end, naming every
rowid compared by no shard or by more than one.

A shard's rowids cross from its worker on the test's report (`CheckResult.rowids`, never written
to the sign-off), as runs of consecutive rowids (`verification.gate.rowids`): a table whose rowids
have no holes is two numbers a shard. The controller sweeps every shard's runs beside the index in
one pass, reading the index a row at a time.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from verification.gate.checks import ROWS_COVERED, CheckResult, Problems, Shard
from verification.gate.rowids import decode_runs


@dataclass
class Span:
    """Consecutive source rowids (in the index's order) with the same finding."""

    first: int
    last: int
    rows: int
    finding: str

    def line(self, table: str) -> str:
        rowids = f"rowid {self.first}" if self.rows == 1 else f"rowids {self.first} to {self.last} ({self.rows:,} rows)"
        return f"{table} {rowids}: {self.finding}"


@dataclass
class Sweep:
    """What one pass over a table's rowid index found."""

    indexed: int = 0
    once: int = 0
    never: int = 0
    repeated: int = 0
    spans: list[Span] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)  # shard -> its compared rowids the index holds
    previous: int | None = None  # the rowid the index held before the one being noted

    def note(self, rowid: int, finding: str | None) -> None:
        """A rowid's finding (None: compared once); a finding like the previous rowid's extends its span."""
        self.indexed += 1
        last = self.spans[-1] if self.spans else None
        if finding is None:
            self.once += 1
        elif last is not None and last.finding == finding and last.last == self.previous:
            last.last, last.rows = rowid, last.rows + 1
        else:
            self.spans.append(Span(rowid, rowid, 1, finding))
        self.previous = rowid


def check_coverage(
    table: str, indexed: Iterable[int], planned: Sequence[Shard], compared: Mapping[str, Sequence[int]]
) -> CheckResult:
    """Every rowid of the table's rowid index (`indexed`, in increasing order) against the rowids
    each shard that ran reported comparing (`compared`: shard id -> encoded runs)."""
    shards = [shard for shard in planned if shard.table == table]
    sweep = _sweep(indexed, shards, compared)
    problems = Problems()
    for span in sweep.spans:
        problems.add(span.line(table))
    compared_total = {shard: sum(length for length in runs[1::2]) for shard, runs in compared.items()}
    for shard, total in compared_total.items():
        strangers = total - sweep.hits.get(shard, 0)
        if strangers:
            problems.add(f"{table}: shard {shard} compared {strangers:,} rowid(s) the source's rowid index lacks")
    figures = {
        "table": table,
        "indexed_rows": sweep.indexed,
        "compared_once": sweep.once,
        "compared_by_no_shard": sweep.never,
        "compared_more_than_once": sweep.repeated,
        "shards": len(shards),
        "shards_reporting": len(compared),
    }
    if problems:
        summary = (
            f"{table}: {sweep.never:,} of {sweep.indexed:,} source rowids compared by no shard, "
            f"{sweep.repeated:,} by more than one"
        )
    else:
        summary = f"{table}: each of {sweep.indexed:,} source rowids compared by exactly one of {len(shards)} shards"
    return CheckResult(ROWS_COVERED, not problems, summary, figures, problems.lines())


def _sweep(indexed: Iterable[int], shards: Sequence[Shard], compared: Mapping[str, Sequence[int]]) -> Sweep:
    """One pass over the index, beside every shard's runs sorted by their first rowid: the runs
    that hold a rowid are those started at or before it and not yet ended."""
    runs = heapq.merge(*(_runs_of(shard, encoded) for shard, encoded in compared.items()))
    upcoming = next(runs, None)
    open_runs: list[tuple[int, str]] = []  # (end, shard), a heap by end
    sweep = Sweep()
    bounds = _Bounds(shards, set(compared))
    for rowid in indexed:
        while upcoming is not None and upcoming[0] <= rowid:
            heapq.heappush(open_runs, (upcoming[1], upcoming[2]))
            upcoming = next(runs, None)
        while open_runs and open_runs[0][0] <= rowid:
            heapq.heappop(open_runs)
        holders = sorted(shard for _, shard in open_runs)
        for shard in holders:
            sweep.hits[shard] = sweep.hits.get(shard, 0) + 1
        if len(holders) == 1:
            sweep.note(rowid, None)
        elif not holders:
            sweep.never += 1
            sweep.note(rowid, f"compared by no shard ({bounds.why_not(rowid)})")
        else:
            sweep.repeated += 1
            sweep.note(rowid, f"compared by {len(holders)} shards ({', '.join(holders)})")
    return sweep


def _runs_of(shard: str, encoded: Sequence[int]) -> Iterator[tuple[int, int, str]]:
    return ((start, end, shard) for start, end in sorted(decode_runs(encoded)))


class _Bounds:
    """Which planned shard's bounds hold a rowid, to say why no shard compared it."""

    def __init__(self, shards: Sequence[Shard], reported: set[str]) -> None:
        self.shards = sorted(shards, key=lambda shard: -(2**63) if shard.low is None else shard.low)
        self.lows = [-(2**63) if shard.low is None else shard.low for shard in self.shards]
        self.reported = reported

    def why_not(self, rowid: int) -> str:
        index = bisect.bisect_right(self.lows, rowid) - 1
        holder = self.shards[index] if index >= 0 else None
        if holder is None or (holder.high is not None and rowid >= holder.high):
            return "it is within no shard's rowid bounds"
        if holder.id not in self.reported:
            return f"its shard {holder.id} did not run"
        return f"its shard {holder.id} ran but did not compare it"


def compared_rowids(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, Sequence[int]]]:
    """table -> shard -> encoded runs, from the results the shards' reports carried."""
    by_table: dict[str, dict[str, Sequence[int]]] = {}
    for result in results:
        if result.get("rowids") is not None:
            figures = result["figures"]
            by_table.setdefault(figures["table"], {})[figures["shard"]] = result["rowids"]
    return by_table
