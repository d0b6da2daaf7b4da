"""The benchmark's own plumbing (`benchmarks/`), never its timings: those are figures, not tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.run import gate_seconds
from migrator.backfill import backfill
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource
from migrator.target import target_database


def test_the_timed_gate_runs_to_the_end_when_every_save_and_lookup_is_over_the_plans_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy machine, made certain: pytest reads PYTEST_ADDOPTS before the command line, so these
    # limits hold unless the benchmark's command sets its own. With the plan's limits, the gate's
    # latency check fails and the benchmark stops with no result at all.
    monkeypatch.setenv("PYTEST_ADDOPTS", "--ksi-max-checkpoint-save-ms 0.0001 --ksi-max-session-lookup-ms 0.0001")
    snapshot, target = tmp_path / "legacy.db", tmp_path / "target.db"
    fabricate_snapshot(snapshot, checkpoints=5, sessions=20, seed=1)
    with LegacySource(snapshot) as source, target_database(target) as database:
        backfill(source, database)

    seconds = gate_seconds(snapshot, target, 0, tmp_path)

    assert seconds > 0
    assert (tmp_path / "signoff-n0" / "signoff.md").read_text().startswith("PASS")
