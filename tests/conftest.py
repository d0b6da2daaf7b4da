"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from migrator.codec import key_digest
from migrator.legacy import LegacyRow
from migrator.models import McpSession
from verification.snapshots import write_snapshot

SnapshotFactory = Callable[..., Path]


@pytest.fixture
def snapshot_factory(tmp_path: Path) -> SnapshotFactory:
    """Writes a new legacy snapshot in tmp_path from explicit rows each time it is called."""
    numbers = count()

    def make(checkpoints: Sequence[LegacyRow] = (), sessions: Sequence[LegacyRow] = (), **kwargs: Any) -> Path:
        return write_snapshot(tmp_path / f"legacy-{next(numbers)}.db", checkpoints, sessions, **kwargs)

    return make


# Session rows built by hand, for the tests of bulk inserts: the columns a row gives, in order.
SESSION_COLUMNS = (
    "legacy_rowid",
    "id",
    "source_digest",
    "session_key",
    "session_key_digest",
    "shape",
    "layout",
    "is_active",
)
OTHER_SESSION_COLUMNS = tuple(c for c in McpSession._meta.columns if c not in SESSION_COLUMNS)  # left NULL


def session_rows(count: int, start: int = 1) -> list[tuple[Any, ...]]:
    return [(n, n, "d", f"key{n}", key_digest(f"key{n}"), "other", "[]", True) for n in range(start, start + count)]
