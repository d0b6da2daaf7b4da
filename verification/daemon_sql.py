"""The model: the KSI daemon's own persistence code on its own two files, written once.

Each statement is the daemon's, as its code runs it (`ksi_daemon/core/checkpoint.py` at 8a0bb1b
and bf15176, `ksi_daemon/mcp/dynamic_server.py` at ee6e4bc and 775e9c9), through `sqlite3`
instead of `aiosqlite` (the same SQLite, one connection a call, as the daemon opened one). The
drop-in (`migrator.ksi`) and the store's reads are compared with what this answers on the same
rows. It shares nothing with the migrator but the clock it is given (and, for reads, how TEXT that
is not UTF-8 is kept).
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

from verification.harness import text_or_invalid

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

# The daemon's statements, as its code spells them; `DaemonCheckpoints` and `DaemonSessions` run
# them as the daemon does, and `verification/test_store_model.py`'s model runs the same strings.
INSERT_CHECKPOINT = "INSERT INTO checkpoints (timestamp, checkpoint_data) VALUES (?, ?)"
PRUNE_CHECKPOINTS = """
                DELETE FROM checkpoints
                WHERE id NOT IN (
                    SELECT id FROM checkpoints
                    ORDER BY id DESC LIMIT 5
                )
            """
LATEST_CHECKPOINT = "SELECT checkpoint_data FROM checkpoints ORDER BY id DESC LIMIT 1"
LATEST_CHECKPOINT_ID = "SELECT id FROM checkpoints ORDER BY id DESC LIMIT 1"
UPDATE_CHECKPOINT = "UPDATE checkpoints SET checkpoint_data = ? WHERE id = ?"
SESSIONS_SEEN_AFTER = "SELECT session_key, session_data, last_seen FROM mcp_sessions WHERE last_seen > ?"
SAVE_SESSION = "INSERT OR REPLACE INTO mcp_sessions (session_key, session_data, last_seen) VALUES (?, ?, ?)"
EXPIRE_SESSIONS = "DELETE FROM mcp_sessions WHERE last_seen < ?"


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
                db.execute(INSERT_CHECKPOINT, (self.timestamp_utc(), json.dumps(checkpoint_data)))
                db.commit()
                db.execute(PRUNE_CHECKPOINTS)
                db.commit()
            return True
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to save checkpoint: {e}")
            return False

    async def load_latest_checkpoint(self) -> Any:
        try:
            with connected(self.path) as db:
                row = db.execute(LATEST_CHECKPOINT).fetchone()
                if row:
                    return json.loads(row[0])
            return None
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to load checkpoint: {e}")
            return None

    async def update_checkpoint(self, modified_data: dict[str, Any]) -> bool:
        try:
            with connected(self.path) as db:
                row = db.execute(LATEST_CHECKPOINT_ID).fetchone()
                if not row:
                    return False
                checkpoint_id = row[0]
                db.execute(UPDATE_CHECKPOINT, (json.dumps(modified_data), checkpoint_id))
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
                cursor = db.execute(SESSIONS_SEEN_AFTER, (cutoff,))
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
                    db.execute(SAVE_SESSION, (session_key, json.dumps(save_data), last_seen.isoformat()))
                cutoff = (self.now() - timedelta(hours=24)).isoformat()
                db.execute(EXPIRE_SESSIONS, (cutoff,))
                db.commit()
        except Exception as e:  # noqa: BLE001 - the daemon's own handling
            logger.error(f"Failed to save MCP sessions: {e}")

    async def expire(self) -> int:
        """The expiry alone, as `_save_sessions` ends: `DELETE ... WHERE last_seen < ?`; how many went."""
        with connected(self.path) as db:
            cutoff = (self.now() - timedelta(hours=24)).isoformat()
            removed = db.execute(EXPIRE_SESSIONS, (cutoff,)).rowcount
            db.commit()
        return removed


# --- the reads the store offers, as legacy SQL ------------------------------------------------
# The store's reads, as the legacy SQL answers them: the daemon's statements where it has one,
# and plain reads of the rows for the others. Cells come back with their storage types; TEXT
# that is not UTF-8 as `InvalidText`, as the store reads it (the daemon's driver would fail).


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        connection.text_factory = text_or_invalid
        yield connection


def loads(data: str) -> Any:
    """The daemon's reading of a data cell."""
    return json.loads(data)


def session(path: Path, session_key: str) -> tuple[Any, Any] | None:
    """(session_data, last_seen) of a session, as the daemon's columns hold them."""
    with reading(path) as db:
        return db.execute(
            "SELECT session_data, last_seen FROM mcp_sessions WHERE session_key = ?", (session_key,)
        ).fetchone()


def session_rows(path: Path) -> list[tuple[Any, ...]]:
    """(rowid, session_key, session_data) of every session, in rowid order."""
    with reading(path) as db:
        return db.execute("SELECT rowid, session_key, session_data FROM mcp_sessions ORDER BY rowid").fetchall()


def session_rows_with_last_seen(path: Path) -> list[tuple[Any, ...]]:
    with reading(path) as db:
        return db.execute(
            "SELECT rowid, session_key, session_data, last_seen FROM mcp_sessions ORDER BY rowid"
        ).fetchall()


def seen_after(path: Path, cutoff: str) -> list[int]:
    """The rows the daemon's start-up load selects (`WHERE last_seen > ?`), by rowid."""
    with reading(path) as db:
        return [rowid for (rowid,) in db.execute("SELECT rowid FROM mcp_sessions WHERE last_seen > ?", (cutoff,))]


def seen_before(path: Path, cutoff: str) -> list[int]:
    """The rows the daemon's expiry deletes (`DELETE ... WHERE last_seen < ?`), by rowid."""
    with reading(path) as db:
        return [rowid for (rowid,) in db.execute("SELECT rowid FROM mcp_sessions WHERE last_seen < ?", (cutoff,))]


def checkpoint(path: Path, checkpoint_id: int) -> tuple[Any] | None:
    """(checkpoint_data,) of a checkpoint, or None when there is none (not a NULL cell)."""
    with reading(path) as db:
        return db.execute("SELECT checkpoint_data FROM checkpoints WHERE id = ?", (checkpoint_id,)).fetchone()


def latest_checkpoint(path: Path) -> tuple[Any] | None:
    """The daemon's `SELECT checkpoint_data FROM checkpoints ORDER BY id DESC LIMIT 1`: its row."""
    with reading(path) as db:
        return db.execute("SELECT checkpoint_data FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()


def checkpoint_list(path: Path) -> list[tuple[Any, Any]]:
    """(id, timestamp) of every checkpoint, newest first."""
    with reading(path) as db:
        return db.execute("SELECT id, timestamp FROM checkpoints ORDER BY id DESC").fetchall()


def checkpoint_rows(path: Path) -> list[tuple[Any, ...]]:
    """(id, id, checkpoint_data) of every checkpoint, in id order: shaped like `session_rows`."""
    with reading(path) as db:
        return db.execute("SELECT id, id, checkpoint_data FROM checkpoints ORDER BY id").fetchall()
