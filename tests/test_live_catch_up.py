"""Catch-ups beside a live daemon: the store's writers and `ksi-migrate migrate` in another
process on one target, on every layout and engine (`verification.live`). Every catch-up exits 0,
no writer sees an error, no row in the target is older after a catch-up than the legacy row as
it was when the catch-up began, and once they stop the target is exact both ways without one
more run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from verification.engines import EngineRegistry
from verification.live import Op, exercise, stale_checkpoints, stale_session

SECONDS = float(os.environ.get("KSI_LIVE_SECONDS", "6"))  # `python -m verification.live` runs for minutes


# One layout in the quick suite; the other four run for as long each, so CI runs them with `-m slow`.
LAYOUTS = ["one-file"] + [
    pytest.param(layout, marks=pytest.mark.slow) for layout in ("two-files", "daemon-files", "postgresql", "mysql")
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_catch_ups_beside_live_dual_writes_never_crash_and_never_undo_a_write(
    layout: str, tmp_path: Path, engine_registry: EngineRegistry
) -> None:
    # Two audited catch-ups at least, however long a busy machine takes to start them: the run
    # goes on past SECONDS until then, so no figure here depends on the machine's speed.
    if layout in ("postgresql", "mysql"):
        with engine_registry.targets(layout).fresh() as url:
            result = exercise(layout, tmp_path, SECONDS, target=url, min_audited=2)
    else:
        result = exercise(layout, tmp_path, SECONDS, min_audited=2)
    summary = result.summary()
    assert result.audited_catch_ups >= 2 and sum(result.writes.values()) > 50, summary
    assert result.failed_catch_ups == [], summary
    assert result.writer_errors == [], summary
    assert result.pending_repairs == 0, summary
    assert result.verify_problems == [], summary
    assert result.stale_rows == [], summary


# --- the stale-row audit itself: it must see a write undone --------------------------------------

WRITES = [Op(1.0, 7, 2.0), Op(3.0, None, 4.0), Op(5.0, 9, 6.0), Op(8.0, 10)]  # saved 7, deleted, saved 9, saving 10


@pytest.mark.parametrize(
    ("began", "read_ended", "found", "stale"),
    [
        (2.5, 2.6, 7, False),  # what the last write before the catch-up left
        (2.5, 2.6, None, True),  # a save undone: the session gone again
        (4.5, 4.6, 7, True),  # a delete undone: the older row written back
        (4.5, 4.6, None, False),
        (4.5, 5.5, 9, False),  # a save that began before the read ended may be seen
        (6.5, 7.0, 9, False),
        (6.5, 7.0, 7, True),  # an older version written over the newer one
        (6.5, 7.0, None, True),
        (0.5, 0.6, None, False),  # nothing written yet
        (6.5, 8.5, 10, False),  # a save still running, seen by a read that ended after it began
        (6.5, 7.0, 10, True),  # a version no write had begun to save before the read ended
    ],
)
def test_the_audit_finds_a_session_older_than_the_write_before_the_catch_up(
    began: float, read_ended: float, found: int | None, stale: bool
) -> None:
    problem = stale_session("k", WRITES, began, read_ended, found)
    assert (problem is not None) == stale, problem
    if problem is not None:
        assert problem.startswith("session k: the target holds")


@pytest.mark.parametrize(
    ("held", "stale"),
    [
        ([6, 7, 8, 9, 10], False),
        ([7, 8, 9, 10, 11], False),  # one saved since the catch-up began, 6 pruned since
        ([12, 13, 14, 15, 16], False),  # five newer ones: 10 pruned since
        ([5, 6, 7, 8, 9, 10], True),  # 5 was pruned when 10 was saved: written back
        ([6, 7, 8, 9], True),  # 10 saved before the catch-up, missing after it
    ],
)
def test_the_audit_finds_checkpoints_pruned_or_missing_after_a_catch_up(held: list[int], stale: bool) -> None:
    saved = [(float(checkpoint_id), checkpoint_id) for checkpoint_id in range(1, 11)] + [(20.0, 11)]
    problem = stale_checkpoints(saved, 15.0, held)
    assert (problem is not None) == stale, problem
