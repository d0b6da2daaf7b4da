"""Rowid ranges of a legacy table that cost about the same to check, and reading one of them.

Checking a row costs about its blob's length plus a fixed amount, so ranges are cut by that
estimate, from the rowid index and the blobs' lengths (no blob is read). The gate runs each range
as a test of its own; `verify --jobs` hands them to worker processes. The first range of a table
is open below and the last open above, so a target row outside every source rowid still falls in
a range and is reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from migrator.legacy import LegacyRow, LegacyTable
from migrator.sources import Snapshot

ROW_COST_BYTES = 4096
"""What checking a row costs besides its blob, in blob bytes: reading it from both sides, the
comparison, the store's read. Measured on a 100k-session snapshot: a shard of 2,000 sessions
(1.6 MB of blob) took 1.6 s, one of 2,000 checkpoints (14 MB) 3.7 s, so about 0.7 ms a row and
0.17 us a byte. Ranges cut by rows alone would make a checkpoint range many session ranges long."""

Span = tuple[int, int, int]  # (first rowid, last rowid, rows)
RowidRange = tuple[int | None, int | None]  # [low, high); None leaves that side open


def rowid_spans(source: Snapshot, table: LegacyTable, rows_per_shard: int, shard_bytes: int) -> list[Span]:
    """(first rowid, last rowid, rows) of runs of consecutive rows that each cost about
    `shard_bytes` to check (a row's blob bytes plus `ROW_COST_BYTES`), and hold at most
    `rows_per_shard` rows. A blob's length comes from its record header: SQLite reads no blob."""
    spans: list[Span] = []
    cost = 0
    lengths = f'SELECT rowid, length(CAST("{table.data_column}" AS BLOB)) FROM "{table.name}" ORDER BY rowid'
    for rowid, length in source.reader(table).execute(lengths):
        if not spans or spans[-1][2] == rows_per_shard or cost >= shard_bytes:
            spans.append((rowid, rowid, 0))
            cost = 0
        first, _, rows = spans[-1]
        spans[-1] = (first, rowid, rows + 1)
        cost += ROW_COST_BYTES + (length or 0)
    return spans


def ranges_covering(spans: Sequence[Span]) -> list[RowidRange]:
    """The [low, high) of each span, the first open below and the last above; one open range
    when there are no spans (a table with no row: the target must still hold none)."""
    if not spans:
        return [(None, None)]
    lows: list[int | None] = [None, *(first for first, _, _ in spans[1:])]
    highs: list[int | None] = [*(first for first, _, _ in spans[1:]), None]
    return list(zip(lows, highs, strict=True))


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
    source: Snapshot, table: LegacyTable, low: int | None, high: int | None, batch_size: int
) -> Iterator[LegacyRow]:
    """The source's rows with rowids in [low, high), in rowid order; None leaves a side open."""
    if table not in source.tables:
        return  # a snapshot may hold one table only: the other is empty, not an error
    columns = ", ".join(f'"{column}"' for column in table.columns)
    where, params = _rowid_condition(low, high)
    cursor = source.reader(table).execute(
        f'SELECT rowid, {columns} FROM "{table.name}" WHERE {where} ORDER BY rowid', params
    )
    while batch := cursor.fetchmany(batch_size):
        yield from batch
