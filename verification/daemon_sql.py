"""The model: the KSI daemon's own persistence code on its own two files, written once.

Each statement is the daemon's, as its code runs it (`ksi_daemon/core/checkpoint.py` at 8a0bb1b
and bf15176, `ksi_daemon/mcp/dynamic_server.py` at ee6e4bc and 775e9c9), through `sqlite3`
instead of `aiosqlite` (the same SQLite, one connection a call, as the daemon opened one). The
drop-in (`migrator.ksi`) and the store's reads are compared with what this answers on the same
rows. It shares nothing with the migrator but the clock it is given.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHECKPOINTS_DDL = """
            CREATE TABLE IF NOT EXISTS checkpoints (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                timestamp TEXT NOT NULL,
                checkpoint_data TEXT NOT NULL
            )
        """
SESSIONS_DDL = """
                    CREATE TABLE IF NOT EXISTS mcp_sessions (
                        session_key TEXT PRIMARY KEY,
                        session_data TEXT NOT NULL,
                        last_seen TIMESTAMP NOT NULL
                    )
                """


@contextmanager
def connected(path: Path) -> Iterator[sqlite3.Connection]:
    """One connection, closed without a commit: what was not committed is rolled back, as when
    the daemon's `async with aiosqlite.connect(...)` left on an exception."""
    with closing(sqlite3.connect(path)) as connection:
        yield connection


class DaemonCheckpoints:
    """`checkpoint.py`: the module's four persistence functions on `checkpoint.db`."""

    def __init__(self, path: Path, timestamp_utc: Callable[[], str]) -> None:
        self.path = path
        self.timestamp_utc = timestamp_utc

    async def initialize_checkpoint_db(self) -> bool:
        with connected(self.path) as db:
            db.execute(CHECKPOINTS_DDL)
            db.commit()
        return True

    async def save_checkpoint(self, checkpoint_data: dict[str, Any]) -> bool:
        try:
            with connected(self.path) as db:
                db.execute(
                    "INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES (?, ?)",
                    (self.timestamp_utc(), json.dumps(checkpoint_data)),
                )
                db.commit()
                db.execute("""
                DELETE FROM checkpoints
                WHERE id NOT IN (
                    SELECT id FROM checkpoints
                    ORDER BY id DESC LIMIT 5
                )
            """)
                db.commit()
            return True
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to save checkpoint: {e}")
            return False

    async def load_latest_checkpoint(self) -> Any:
        try:
            with connected(self.path) as db:
                row = db.execute("SELECT checkpoint_data FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
                if row:
                    return json.loads(row[0])
            return None
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to load checkpoint: {e}")
            return None

    async def update_checkpoint(self, modified_data: dict[str, Any]) -> bool:
        try:
            with connected(self.path) as db:
                row = db.execute("SELECT id FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
                if not row:
                    return False
                checkpoint_id = row[0]
                db.execute(
                    "UPDATE checkpoints SET checkpoint_data = ? WHERE id = ?",
                    (json.dumps(modified_data), checkpoint_id),
                )
                db.commit()
                return True
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to update checkpoint: {e}")
            return False


class DaemonSessions:
    """`dynamic_server.py`: `_load_sessions` and `_save_sessions` on `mcp_sessions.db`, filling and
    reading the server's `session_cache` and `session_last_seen`."""

    def __init__(self, path: Path, now: Callable[[], datetime]) -> None:
        self.path = path
        self.now = now

    async def load(self, session_cache: dict[str, Any], session_last_seen: dict[str, datetime]) -> None:
        try:
            with connected(self.path) as db:
                db.execute(SESSIONS_DDL)
                db.commit()
                cutoff = (self.now() - timedelta(hours=24)).isoformat()
                cursor = db.execute(
                    "SELECT session_key, session_data, last_seen FROM mcp_sessions WHERE last_seen > ?", (cutoff,)
                )
                for row in cursor:
                    session_key, session_data_json, last_seen_str = row
                    try:
                        session_data = json.loads(session_data_json)
                        session_cache[session_key] = session_data
                        session_last_seen[session_key] = datetime.fromisoformat(last_seen_str)
                    except Exception as e:  # noqa: BLE001 - the daemon's own handling
                        logger.warning(f"Failed to load session {session_key}: {e}")
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to load MCP sessions: {e}")

    async def save(self, session_cache: dict[str, Any], session_last_seen: dict[str, datetime]) -> None:
        if not session_cache:
            return
        try:
            with connected(self.path) as db:
                for session_key, session_data in session_cache.items():
                    last_seen = session_last_seen.get(session_key, self.now())
                    save_data = session_data.copy()
                    if "tools" in save_data:
                        save_data["tools"] = [
                            {"name": t.get("name")} if isinstance(t, dict) else t for t in save_data["tools"]
                        ]
                    db.execute(
                        "INSERT OR REPLACE INTO mcp_sessions (session_key, session_data, last_seen) VALUES (?, ?, ?)",
                        (session_key, json.dumps(save_data), last_seen.isoformat()),
                    )
                cutoff = (self.now() - timedelta(hours=24)).isoformat()
                db.execute("DELETE FROM mcp_sessions WHERE last_seen < ?", (cutoff,))
                db.commit()
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to save MCP sessions: {e}")


# --- the reads the store offers, as legacy SQL ------------------------------------------------
