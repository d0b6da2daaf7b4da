"""The store for the daemon's asyncio loop: every call runs in a worker thread."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

from migrator.backfill import BackfillReport
from migrator.codec import LegacyCell
from migrator.store.common import Blob, SessionRecord

if TYPE_CHECKING:  # the store makes its own AsyncStore: no import cycle at run time
    from migrator.store.core import Store


class AsyncStore:
    """The store for the daemon's asyncio loop: every call runs in a worker thread
    (`asyncio.to_thread`), so the loop never waits on SQLite."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save_checkpoint(self, blob: Blob) -> int:
        return await asyncio.to_thread(self._store.save_checkpoint, blob)

    async def load_checkpoint(self, checkpoint_id: int) -> Blob | None:
        return await asyncio.to_thread(self._store.load_checkpoint, checkpoint_id)

    async def latest_checkpoint(self) -> Blob | None:
        return await asyncio.to_thread(self._store.latest_checkpoint)

    async def save_session(self, session_key: str, blob: Blob, last_seen: str | datetime) -> None:
        await asyncio.to_thread(self._store.save_session, session_key, blob, last_seen)

    async def get_session(self, session_key: str) -> Blob | None:
        return await asyncio.to_thread(self._store.get_session, session_key)

    async def delete_session(self, session_key: str) -> bool:
        return await asyncio.to_thread(self._store.delete_session, session_key)

    async def sessions_for_agent(self, agent_id: str) -> dict[str, Blob]:
        return await asyncio.to_thread(self._store.sessions_for_agent, agent_id)

    async def checkpoints_by_reason(self, reason: str) -> dict[int, Blob]:
        return await asyncio.to_thread(self._store.checkpoints_by_reason, reason)

    async def tool_usage(self) -> dict[str, int]:
        return await asyncio.to_thread(self._store.tool_usage)

    async def catch_up(self) -> BackfillReport:
        return await asyncio.to_thread(self._store.catch_up)

    async def update_latest_checkpoint(self, blob: Blob) -> int | None:
        return await asyncio.to_thread(self._store.update_latest_checkpoint, blob)

    async def update_checkpoint(self, checkpoint_id: int, blob: Blob) -> bool:
        return await asyncio.to_thread(self._store.update_checkpoint, checkpoint_id, blob)

    async def list_checkpoints(self) -> list[tuple[int, LegacyCell]]:
        return await asyncio.to_thread(self._store.list_checkpoints)

    async def load_session(self, session_key: str) -> SessionRecord | None:
        return await asyncio.to_thread(self._store.load_session, session_key)

    async def sessions_seen_after(self, cutoff: str | datetime) -> list[SessionRecord]:
        return await asyncio.to_thread(self._store.sessions_seen_after, cutoff)

    async def expire_sessions(self, before: str | datetime) -> int:
        return await asyncio.to_thread(self._store.expire_sessions, before)
