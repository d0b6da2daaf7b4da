"""`verify` by rowid ranges in worker processes (`jobs`) reports exactly what one process reports:
the same counts, the same mismatches in the same order, the rows beyond either end included."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from migrator.backfill import backfill
from migrator.cli import main
from migrator.errors import TargetUnreachable
from migrator.legacy import LegacySource, UnmappedColumns
from migrator.models import CheckpointQueueItem, McpSessionTool
from migrator.target import target_database
from migrator.verify import Reopen, verify
from tests.conftest import SnapshotFactory
from verification.snapshots import checkpoint_row, hot_wal_copy, session_row

QUEUE = {"items": [{"request_id": "r1", "data": {"n": 1}}, {"request_id": "r2", "data": {"n": 1.0}}]}
CHECKPOINTS = [checkpoint_row(rowid, {"session_queues": {"s": QUEUE}, "reason": f"r{rowid}"}) for rowid in range(1, 9)]
# `migrator.verify` the module, not the function `migrator.verify` that the package exports.
verify_module = importlib.import_module("migrator.verify")

SESSIONS = [
    session_row(rowid, f"a:c{rowid}", {"agent_id": "a", "tools": ["Read", {"name": "Bash"}]}) for rowid in range(1, 13)
]


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers for any snapshot, and ranges of two rows: every table is cut in several."""
    monkeypatch.setattr(verify_module, "PARALLEL_FROM_ROWS", 0)
    monkeypatch.setattr(verify_module, "RANGE_ROWS", 2)


@pytest.fixture
def damaged(snapshot_factory: SnapshotFactory, tmp_path: Path) -> tuple[Path, Path]:
    """A target migrated from every row, then changed in two ranges, and a source that lacks its
    first and last rows of each table: mismatches inside, and target rows beyond both ends."""
    full = snapshot_factory(CHECKPOINTS, SESSIONS)
    target = tmp_path / "target.db"
    with LegacySource(full) as legacy, target_database(target) as database:
        backfill(legacy, database, jobs=1)
    with target_database(target):
        McpSessionTool.delete().where((McpSessionTool.session == 5) & (McpSessionTool.position == 1)).execute()
        CheckpointQueueItem.update(request_data='{"n": 1}').where(CheckpointQueueItem.checkpoint == 4).execute()
    return snapshot_factory(CHECKPOINTS[1:-1], SESSIONS[1:-1]), target


def _report(source: Path, target: Path, **options: Any) -> dict[str, Any]:
    with LegacySource(source, unmapped=UnmappedColumns.REPORT) as legacy:
        with target_database(target, must_exist=True) as database:
            found = verify(legacy, database, batch_size=3, **options).to_dict()
    del found["seconds"]
    return found


def test_ranges_in_workers_report_what_one_process_reports(damaged: tuple[Path, Path], small_ranges: None) -> None:
    source, target = damaged
    alone = _report(source, target)
    shared = _report(source, target, jobs=2, reopen=Reopen((str(source),), str(target)))
    # the damage, the rows beyond both ends, and the counters of a source that lacks its last rows
    assert set(alone["mismatch_kinds"]) == {"extra", "relational", "rebuilt", "metadata"}
    assert shared == alone


def test_the_reported_mismatches_are_the_first_in_rowid_order(
    damaged: tuple[Path, Path], small_ranges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "MAX_REPORTED_MISMATCHES", 3)
    source, target = damaged
    shared = _report(source, target, jobs=2, reopen=Reopen((str(source),), str(target)))
    assert len(shared["mismatches"]) == 3 and sum(shared["mismatch_kinds"].values()) > 3
    assert shared == _report(source, target)


def test_a_small_snapshot_is_compared_in_this_process(
    damaged: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_workers(*args: Any) -> None:
        raise AssertionError("workers started for a snapshot under PARALLEL_FROM_ROWS rows")

    monkeypatch.setattr(verify_module, "_range_workers", no_workers)
    source, target = damaged
    assert _report(source, target, jobs=2, reopen=Reopen((str(source),), str(target)))["tables"]


def test_a_target_a_worker_cannot_open_is_the_error_of_the_run(
    damaged: tuple[Path, Path], small_ranges: None, tmp_path: Path
) -> None:
    source, target = damaged
    with pytest.raises(TargetUnreachable, match="target database not found"):
        _report(source, target, jobs=2, reopen=Reopen((str(source),), str(tmp_path / "gone.db")))


def test_verify_jobs_from_the_command_line(
    damaged: tuple[Path, Path], small_ranges: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = damaged
    outputs = []
    for jobs in ("1", "2"):
        assert main(["verify", "--source", str(source), "--target", str(target), "--jobs", jobs, "--json"]) == 1
        found = json.loads(capsys.readouterr().out)
        del found["seconds"]
        outputs.append(found)
    assert outputs[0] == outputs[1] and outputs[0]["mismatch_kinds"]["relational"] == 2


def test_a_snapshot_read_from_a_private_copy_is_compared_in_this_process(
    snapshot_factory: SnapshotFactory, tmp_path: Path, small_ranges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WAL copied beside no index of it is read from a private copy, which each worker would
    make again and, ending, leave behind."""
    snapshot = hot_wal_copy(snapshot_factory(CHECKPOINTS, SESSIONS), tmp_path / "copy")
    target = tmp_path / "target.db"
    with LegacySource(snapshot) as legacy, target_database(target) as database:
        assert legacy.reads_a_copy
        backfill(legacy, database, jobs=1)

    def no_workers(*args: Any) -> None:
        raise AssertionError("workers started for a source read from a private copy")

    monkeypatch.setattr(verify_module, "_range_workers", no_workers)
    found = _report(snapshot, target, jobs=2, reopen=Reopen((str(snapshot),), str(target)))
    assert found["ok"] and [table["matched"] for table in found["tables"]] == [len(CHECKPOINTS), len(SESSIONS)]
