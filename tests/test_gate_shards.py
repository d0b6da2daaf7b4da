"""The gate's shards are balanced by what they cost to check: blob bytes and rows, not rows alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacySource
from migrator.shards import ROW_COST_BYTES, rowid_spans
from tests.conftest import SnapshotFactory
from verification.gate.checks import plan_shards
from verification.snapshots import checkpoint_row, session_row

BIG = 60_000  # blob bytes of a large checkpoint
SHARD_BYTES = 200_000


@pytest.fixture
def source(snapshot_factory: SnapshotFactory) -> Iterator[LegacySource]:
    # Ids with gaps, as pruning leaves them; every third checkpoint is large, the rest small.
    checkpoints = [checkpoint_row(n * 3, {"reason": "x" * (BIG if n % 3 == 0 else 10)}) for n in range(1, 31)]
    sessions = [session_row(n, f"agent:{n}", {"agent_id": "a"}) for n in range(1, 201)]
    with LegacySource(snapshot_factory(checkpoints, sessions)) as opened:
        yield opened


def cost(source: LegacySource, first: int, last: int, column: str, table: str) -> int:
    query = f'SELECT count(*), sum(length(CAST("{column}" AS BLOB))) FROM "{table}" WHERE rowid BETWEEN ? AND ?'
    rows, size = source.connection.execute(query, (first, last)).fetchone()
    return rows * ROW_COST_BYTES + size


def test_each_shard_costs_about_the_same_and_every_row_is_in_exactly_one(source: LegacySource) -> None:
    spans = rowid_spans(source, CHECKPOINTS, rows_per_shard=1000, shard_bytes=SHARD_BYTES)
    rowids = [rowid for (rowid,) in source.connection.execute("SELECT rowid FROM checkpoints ORDER BY rowid")]
    covered = [rowid for first, last, _ in spans for rowid in rowids if first <= rowid <= last]
    assert covered == rowids  # in order, each once
    assert [rows for *_, rows in spans] == [len([r for r in rowids if low <= r <= high]) for low, high, _ in spans]
    largest_row = ROW_COST_BYTES + BIG + 100
    for first, last, _ in spans:  # a shard ends at the first row that brings it to the budget
        assert cost(source, first, last, "checkpoint_data", "checkpoints") < SHARD_BYTES + largest_row
    assert len(spans) >= 30 * (BIG // 3) // SHARD_BYTES  # the large blobs, not the row count, set the number


def test_rows_still_cap_a_shard_and_small_rows_count_by_their_row_cost(source: LegacySource) -> None:
    capped = rowid_spans(source, MCP_SESSIONS, rows_per_shard=7, shard_bytes=10**9)
    assert {rows for *_, rows in capped[:-1]} == {7}
    by_cost = rowid_spans(source, MCP_SESSIONS, rows_per_shard=10**6, shard_bytes=20 * ROW_COST_BYTES)
    assert len(by_cost) == 10  # 200 small rows, about 20 a shard: their blobs are a fraction of their cost


def test_plan_shards_covers_both_tables(source: LegacySource) -> None:
    shards = plan_shards(source, rows_per_shard=1000, read_sample=10**6, shard_bytes=SHARD_BYTES)
    assert {shard.table for shard in shards} == {"checkpoints", "mcp_sessions"}
    assert sum(shard.rows for shard in shards if shard.table == "checkpoints") == 30
    assert sum(shard.rows for shard in shards if shard.table == "mcp_sessions") == 200
