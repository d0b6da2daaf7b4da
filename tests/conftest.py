"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from migrator.legacy import LegacyRow
from verification.snapshots import write_snapshot

SnapshotFactory = Callable[..., Path]


@pytest.fixture
def snapshot_factory(tmp_path: Path) -> SnapshotFactory:
    """Writes a new legacy snapshot in tmp_path from explicit rows each time it is called."""
    numbers = count()

    def make(checkpoints: Sequence[LegacyRow] = (), sessions: Sequence[LegacyRow] = (), **kwargs: Any) -> Path:
        return write_snapshot(tmp_path / f"legacy-{next(numbers)}.db", checkpoints, sessions, **kwargs)

    return make
