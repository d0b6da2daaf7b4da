"""What every part of the store shares: its modes, the blob a read hands out, and a write's change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from migrator import sessions
from migrator.codec import LegacyCell
from migrator.errors import (
    UnreadableRecord,
)
from migrator.legacy import (
    MCP_SESSIONS,
    ROWID,
    LegacyRow,
)
from migrator.relational import BlobKind


class Mode(StrEnum):
    """The store's one switch: which side it writes, and which it serves reads from."""

    LEGACY = "legacy"  # phase 1: the daemon as it was; backfill catches the target up beside it
    DUAL_WRITE = "dual_write"  # phase 2: write both sides, serve the JSON
    SHADOW = "shadow"  # phase 3: write both, serve the JSON, compare the relational rebuild off the read path
    RELATIONAL = "relational"  # phase 3: write both, serve relational rows; JSON when they lack the key
    RELATIONAL_ONLY = "relational_only"  # phase 4: the legacy tables are gone

    @property
    def writes_legacy(self) -> bool:
        return self is not Mode.RELATIONAL_ONLY

    @property
    def writes_relational(self) -> bool:
        return self is not Mode.LEGACY


MODE_VARIABLE = "KSI_STORE_MODE"
KEPT_CHECKPOINTS = 5  # the daemon keeps the newest five checkpoints

Blob = dict[str, Any]


def timestamp_utc() -> str:
    """The daemon's `timestamp_utc()`: `2025-06-20T23:17:27.832348Z`, no fraction when it is zero."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def blob_of(kind: BlobKind, row: LegacyRow) -> Blob:
    """The JSON object a legacy row holds, as the daemon reads it (`json.loads`)."""
    data = kind.legacy.data_of(row)
    try:
        value = json.loads(data) if isinstance(data, str) else None
    except (ValueError, RecursionError) as exc:
        raise UnreadableRecord(f"{_where(kind, row)} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UnreadableRecord(f"{_where(kind, row)} is not a JSON object")
    return value


def _where(kind: BlobKind, row: LegacyRow) -> str:
    # Only made for an error: every read of every blob passes through `blob_of`.
    return f"{kind.legacy.name} rowid {row[ROWID]}: {kind.legacy.data_column}"


def maybe_blob(kind: BlobKind, row: LegacyRow | None) -> Blob | None:
    return None if row is None else blob_of(kind, row)


@dataclass(frozen=True)
class LegacyChange:
    """What one write did to a legacy table, as the relational side must mirror it."""

    kind: BlobKind
    key: str  # the row's id or session key, for reports
    row: LegacyRow | None  # the row as the legacy table now holds it; None when only removed
    removed: tuple[int, ...] = ()  # rowids that left the table (pruned, replaced or deleted)
    sequence: int | None = None  # the table's AUTOINCREMENT counter after the write, when it has one

    @property
    def rowids(self) -> tuple[int, ...]:
        return (*self.removed, *((self.row[ROWID],) if self.row is not None else ()))


@dataclass(frozen=True)
class SessionRecord:
    """A session as the daemon reads it back: its key, its blob, and `last_seen` as stored."""

    key: str
    blob: Blob
    last_seen: LegacyCell


def session_record(row: LegacyRow) -> SessionRecord:
    """The record of a legacy `mcp_sessions` row; raises `UnreadableRecord` when its data is not a JSON object."""
    return SessionRecord(row[MCP_SESSIONS.at.session_key], blob_of(sessions.KIND, row), row[MCP_SESSIONS.at.last_seen])
