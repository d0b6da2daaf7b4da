"""SQLite WAL checkpoints moved off the store's write path.

In WAL mode SQLite appends each commit to the `-wal` file; once that holds `wal_autocheckpoint`
pages (1,000 by default), the commit that crossed the line copies them back into the database
file and syncs it before it returns. With the daemon's large checkpoint saves that happens every
few saves, and those saves take two to three times as long as the others: it is what a save's
p99 latency is made of.

`WalCheckpointer` runs those checkpoints on a thread of its own, with its own connection, soon
after a write commits. A PASSIVE checkpoint takes no lock a writer needs, so saves go on while it
runs. The writers' own automatic checkpoint stays, at `BACKSTOP_PAGES`: if the thread ever falls
behind (a long-lived reader can stop a checkpoint from finishing), the WAL is still bounded.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import peewee as pw

BACKSTOP_PAGES = 10_000  # 40 MB of 4 KiB pages: the writer checkpoints itself only past this
MIN_INTERVAL_SECONDS = 0.01
"""The pause between two checkpoints: the writes of a burst share one. Short, so that each
checkpoint copies and syncs a few MB, not tens: a long one's writeback slows the saves that run
beside it in the kernel (measured on back-to-back saves of a 172 KB checkpoint, `dual_write`:
p99 9.4 to 11.7 ms with 0.05 s, 5.6 to 6.5 ms with 0.01 s, the median 2.8 ms with both;
`benchmarks/results/issue18-wal-interval.md`)."""


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL in the background after each write."""

    def __init__(self, database: pw.SqliteDatabase) -> None:
        self.path = Path(database.database)
        database.pragma("wal_autocheckpoint", BACKSTOP_PAGES, permanent=True)  # every connection, from now on
        self._wake = threading.Event()
        self._stopping = False
        # Opened here, so a file the thread could not open fails the store's opening, not the thread.
        uri = f"file:{quote(str(self.path.resolve()))}?mode=rw"
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name=f"ksi-wal-checkpoint:{self.path.name}", daemon=True
        )
        self._thread.start()

    def written(self) -> None:
        """A write committed: checkpoint soon, off the writer's thread."""
        self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while True:
                self._wake.wait()
                if self._stopping:
                    return
                self._wake.clear()
                checkpoint(connection)
                time.sleep(MIN_INTERVAL_SECONDS)
        finally:
            connection.close()


def checkpoint(connection: sqlite3.Connection) -> None:
    # Busy or interrupted: the next write wakes the thread again, and the backstop bounds the WAL.
    with suppress(sqlite3.Error):
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def wal_checkpointer(database: pw.Database) -> WalCheckpointer | None:
    """A background checkpointer for a SQLite file in WAL mode; None for anything else."""
    if not isinstance(database, pw.SqliteDatabase) or database.database == ":memory:":
        return None
    mode = database.execute_sql("PRAGMA journal_mode").fetchone()[0]
    return WalCheckpointer(database) if str(mode).lower() == "wal" else None
