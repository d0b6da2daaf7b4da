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


# Session rows built by hand, for the tests of bulk inserts: they give the columns a row must
# have (NOT NULL), in the model's order, and leave the others NULL.
SESSION_COLUMNS = tuple(field.column_name for field in McpSession._meta.sorted_fields if not field.null)
OTHER_SESSION_COLUMNS = tuple(c for c in McpSession._meta.columns if c not in SESSION_COLUMNS)


def session_rows(count: int, start: int = 1) -> list[tuple[Any, ...]]:
    return [tuple(_session_row(n)[column] for column in SESSION_COLUMNS) for n in range(start, start + count)]


def _session_row(n: int) -> dict[str, Any]:
    return {
        "legacy_rowid": n,
        "id": n,
        "source_digest": "d",
        "session_key": f"key{n}",
        "session_key_digest": key_digest(f"key{n}"),
        "shape": "other",
        "layout": "[]",
        "is_active": True,
    }
