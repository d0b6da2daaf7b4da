"""A drop-in for the KSI daemon's own persistence code: the same async functions, signatures,
return values and failure behaviour, served by the store in whatever mode it runs.

The daemon's `ksi_daemon/core/checkpoint.py` (8a0bb1b, bf15176) defines `initialize_checkpoint_db`,
`save_checkpoint`, `load_latest_checkpoint` and `_update_checkpoint`; its change is one line that
imports them from here instead:

    from migrator.ksi import initialize_checkpoint_db, save_checkpoint, load_latest_checkpoint, _update_checkpoint

`ksi_daemon/mcp/dynamic_server.py` (ee6e4bc, 775e9c9) keeps its sessions in `session_cache` and
`session_last_seen`; `SessionPersistence` loads them at start-up and saves them at shutdown with
the daemon's meaning (`PersistedSessions` gives the server its `_load_sessions`/`_save_sessions`).

Each is configured with a store (`configure(open_store(...))`, `SessionPersistence(store)`); when
none is given, one is opened from the environment on first use: `$KSI_STORE_TARGET` (the target),
`$KSI_CHECKPOINT_DB` and `$KSI_MCP_SESSIONS_DB` (the daemon's two legacy files), `$KSI_STORE_MODE`.

Like the daemon's functions, these never raise: a failure is logged and answered with `False` or
`None`, as the daemon's `except Exception` did.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from migrator.errors import MigratorError, StoreNotConfigured
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS
from migrator.store import Blob, Store, open_store

logger = logging.getLogger(__name__)

TARGET_VARIABLE = "KSI_STORE_TARGET"
CHECKPOINT_DB_VARIABLE = "KSI_CHECKPOINT_DB"
SESSIONS_DB_VARIABLE = "KSI_MCP_SESSIONS_DB"
SESSION_LIFETIME = timedelta(hours=24)  # the daemon loads, and keeps, sessions seen in the last 24 hours


_environment_store: Store | None = None


def store_from_environment() -> Store:
    """The one store the environment names, shared by the checkpoint and session halves:
    `$KSI_STORE_TARGET`, over the daemon's legacy files `$KSI_CHECKPOINT_DB` and
    `$KSI_MCP_SESSIONS_DB` (one of them, or neither, for one file or none)."""
    global _environment_store
    if _environment_store is None:
        target = os.environ.get(TARGET_VARIABLE)
        if not target:
            raise StoreNotConfigured(
                f"migrator.ksi has no store: call migrator.ksi.configure(open_store(...)) or set ${TARGET_VARIABLE}"
            )
        files = {CHECKPOINTS.name: CHECKPOINT_DB_VARIABLE, MCP_SESSIONS.name: SESSIONS_DB_VARIABLE}
        named = {table: os.environ[variable] for table, variable in files.items() if os.environ.get(variable)}
        legacy = named if len(named) == len(files) else next(iter(named.values()), None)
        _environment_store = open_store(target, legacy=legacy)
    return _environment_store


def _unexpected(exc: Exception) -> bool:
    """A traceback is logged for what the store did not foresee; its own errors are one line."""
    return not isinstance(exc, MigratorError)


# --- checkpoints: ksi_daemon/core/checkpoint.py -------------------------------------------------


class CheckpointPersistence:
    """The daemon's checkpoint functions over one store."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store

    def _store(self) -> Store:
        if self.store is None:
            self.store = store_from_environment()
        return self.store

    async def initialize_checkpoint_db(self) -> bool:
        """The daemon creates its table here; the store has its tables once it is open."""
        try:
            await asyncio.to_thread(self._store)
        except Exception as exc:  # noqa: BLE001 - the daemon answers False, its start-up goes on
            logger.error("Failed to open the checkpoint store: %s", exc)
            return False
        return True

    async def save_checkpoint(self, checkpoint_data: Blob) -> bool:
        """Insert the checkpoint and keep the newest five (the store does both in one transaction)."""
        try:
            await self._store().aio.save_checkpoint(checkpoint_data)
        except Exception as exc:
            logger.error("Failed to save checkpoint: %s", exc, exc_info=_unexpected(exc))
            return False
        return True

    async def load_latest_checkpoint(self) -> Blob | None:
        """The newest checkpoint's blob, or None when there is none (or it cannot be read)."""
        try:
            return await self._store().aio.latest_checkpoint()
        except Exception as exc:
            logger.error("Failed to load checkpoint: %s", exc, exc_info=_unexpected(exc))
            return None

    async def update_checkpoint(self, modified_data: Blob) -> bool:
        """Rewrite the newest checkpoint in place, its `timestamp` kept; False when there is none."""
        try:
            return await self._store().aio.update_latest_checkpoint(modified_data) is not None
        except Exception as exc:
            logger.error("Failed to update checkpoint: %s", exc, exc_info=_unexpected(exc))
            return False


_checkpoints = CheckpointPersistence()


def configure(store: Store | None) -> None:
    """The store the module's checkpoint functions use (None: open one from the environment)."""
    global _environment_store
    _checkpoints.store = store
    if store is None:
        _environment_store = None  # the next use opens it again, as the environment says then


async def initialize_checkpoint_db() -> bool:
    return await _checkpoints.initialize_checkpoint_db()


async def save_checkpoint(checkpoint_data: Blob) -> bool:
    return await _checkpoints.save_checkpoint(checkpoint_data)


async def load_latest_checkpoint() -> Blob | None:
    return await _checkpoints.load_latest_checkpoint()


async def update_checkpoint(modified_data: Blob) -> bool:
    return await _checkpoints.update_checkpoint(modified_data)


_update_checkpoint = update_checkpoint  # the daemon's own (private) name


# --- MCP sessions: ksi_daemon/mcp/dynamic_server.py --------------------------------------------

SessionCache = dict[str, dict[str, Any]]
LastSeen = dict[str, datetime]


def saved_form(session_data: dict[str, Any]) -> dict[str, Any]:
    """What the daemon saves of a cached session: its tools by name only."""
    save_data = session_data.copy()
    if "tools" in save_data:
        save_data["tools"] = [{"name": t.get("name")} if isinstance(t, dict) else t for t in save_data["tools"]]
    return save_data


class SessionPersistence:
    """The daemon's session persistence: the start-up load of the sessions seen in the last 24
    hours, the shutdown save (`INSERT OR REPLACE` of every cached session, then the expiry of
    those seen more than 24 hours ago), on the daemon's clock (`datetime.now()`, naive)."""

    def __init__(self, store: Store | None = None, *, now: Callable[[], datetime] = datetime.now) -> None:
        self.store = store
        self.now = now

    def _store(self) -> Store:
        if self.store is None:
            self.store = store_from_environment()
        return self.store

    def cutoff(self) -> str:
        return (self.now() - SESSION_LIFETIME).isoformat()

    async def load(self, session_cache: SessionCache, session_last_seen: LastSeen) -> None:
        """Fill the daemon's two maps as its `_load_sessions` did: in the table's order, the blob
        first, then `last_seen` parsed with `datetime.fromisoformat` (a session whose `last_seen`
        does not parse keeps its blob and has no `last_seen`, as in the daemon)."""
        try:
            records = await self._store().aio.sessions_seen_after(self.cutoff())
        except Exception as exc:  # noqa: BLE001 - the daemon starts without its sessions
            logger.error("Failed to load MCP sessions: %s", exc)
            return
        for record in records:
            try:
                session_cache[record.key] = record.blob
                session_last_seen[record.key] = datetime.fromisoformat(record.last_seen)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the daemon's own per-session warning
                logger.warning("Failed to load session %s: %s", record.key, exc)
        logger.info("Loaded %d MCP sessions from persistence", len(session_cache))

    async def save(self, session_cache: SessionCache, session_last_seen: LastSeen) -> None:
        """Save every cached session and expire the old ones, as the daemon's `_save_sessions`.

        The daemon wrote them all in one transaction, so a session `json.dumps` cannot encode
        saved none of them; every session is encoded before the first is written, to the same
        effect. Each session then commits on its own (its legacy and relational rows together).
        """
        if not session_cache:
            return
        try:
            rows = [
                (key, saved_form(data), session_last_seen.get(key, self.now()).isoformat())
                for key, data in session_cache.items()
            ]
            for _, save_data, _ in rows:
                json.dumps(save_data)  # fails here, before anything is written, as the daemon's save did
            await asyncio.to_thread(self._save_all, rows, self.cutoff())
        except Exception as exc:  # noqa: BLE001 - the daemon's contract: logged, shutdown goes on
            logger.error("Failed to save MCP sessions: %s", exc)

    def _save_all(self, rows: list[tuple[str, dict[str, Any], str]], cutoff: str) -> None:
        store = self._store()
        for key, save_data, seen in rows:
            store.save_session(key, save_data, seen)
        store.expire_sessions(cutoff)

    async def expire(self) -> int:
        """The daemon's `DELETE FROM mcp_sessions WHERE last_seen < ?` (24 hours ago); how many went."""
        return await self._store().aio.expire_sessions(self.cutoff())


class PersistedSessions:
    """The daemon's `_load_sessions` and `_save_sessions` for its MCP server class, on the server's
    own `session_cache` and `session_last_seen` (list it before `FastMCP` among the bases)."""

    session_cache: SessionCache
    session_last_seen: LastSeen
    session_persistence: SessionPersistence | None = None

    def _persistence(self) -> SessionPersistence:
        if self.session_persistence is None:
            self.session_persistence = SessionPersistence()
        return self.session_persistence

    async def _load_sessions(self) -> None:
        await self._persistence().load(self.session_cache, self.session_last_seen)

    async def _save_sessions(self) -> None:
        await self._persistence().save(self.session_cache, self.session_last_seen)
