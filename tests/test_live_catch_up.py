"""Catch-ups beside a live daemon: the store's writers and `ksi-migrate migrate` in another
process on one target, on every layout and engine (`verification.live`). Every catch-up exits 0,
no writer sees an error, and once they stop the target is exact both ways without one more run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from verification.engines import EngineRegistry
from verification.live import exercise

SECONDS = float(os.environ.get("KSI_LIVE_SECONDS", "6"))  # `python -m verification.live` runs for minutes


@pytest.mark.parametrize("layout", ["one-file", "two-files", "daemon-files", "postgresql", "mysql"])
def test_catch_ups_beside_live_dual_writes_never_crash_and_never_undo_a_write(
    layout: str, tmp_path: Path, engine_registry: EngineRegistry
) -> None:
    if layout in ("postgresql", "mysql"):
        with engine_registry.targets(layout).fresh() as url:
            result = exercise(layout, tmp_path, SECONDS, target=url)
    else:
        result = exercise(layout, tmp_path, SECONDS)
    summary = result.summary()
    assert result.catch_ups >= 2 and sum(result.writes.values()) > 50, summary
    assert result.failed_catch_ups == [], summary
    assert result.writer_errors == [], summary
    assert result.pending_repairs == 0, summary
    assert result.verify_problems == [], summary
