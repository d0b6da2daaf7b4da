"""Failures an operator can act on: what the system or a database said, in one line with what to do.

The tool runs next to a live daemon, against servers that restart and disks that fill. Those are
not bugs: each is reported as one line that says what happened and what to do, with exit status
2, like a domain error (`MigratorError`). Anything `explain` does not recognise is a bug in this
tool: the CLI shows its traceback and exits 3.

A run that fails leaves nothing half-written behind: new files are written under a temporary
name and moved into place when complete, and a target is written a batch a transaction, so a
re-run carries on exactly. A dropped server connection is not even that: `migrate` and `verify`
connect again and start over themselves (`retried_on_lost_connections`).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import peewee as pw

from migrator.batching import AcrossAttempts, Progress
from migrator.redaction import PASSWORD_KEYS, mask_secrets

logger = logging.getLogger(__name__)
T = TypeVar("T")

ADVICE_RERUN = "run the command again once that is fixed; a re-run carries on exactly"

_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a folder in the path is a file",
    errno.EISDIR: "is a folder, not a file",
}

_SQLITE_MESSAGES = (
    (
        "database is locked",
        "the SQLite file stayed locked by another writer past the busy timeout; if the daemon uses it, "
        "make sure the file is in WAL mode (`sqlite3 FILE 'PRAGMA journal_mode=wal'`; `open_store` sets it), "
        "then " + ADVICE_RERUN,
    ),
    ("database or disk is full", "the disk is full (SQLite could not write); free some space, then " + ADVICE_RERUN),
    ("disk i/o error", "the disk reported an I/O error; check the device, then " + ADVICE_RERUN),
    (
        "unable to open database file",
        "SQLite cannot open the file: its folder is missing, or not writable; " + ADVICE_RERUN,
    ),
    ("readonly database", "the SQLite file is read-only for this user; " + ADVICE_RERUN),
)

_CONNECTION_MARKERS = (
    "server closed the connection",
    "connection already closed",
    "terminating connection",
    "connection refused",
    "could not connect",
    "lost connection",
    "gone away",
    "can't connect",
    "broken pipe",
    "connection reset",
    "the database system is shutting down",
    "the database system is starting up",
)


def explain(exc: BaseException) -> str | None:
    """One line an operator can act on for a failure of the system or a database, else None.

    The first cause is often hidden by a second failure (SQLite rolls a transaction back itself
    when the disk fills, and the ROLLBACK that follows fails): the whole chain is read, and the
    most telling account wins.
    """
    accounts = [account for account in map(_explain_one, _chain(exc)) if account is not None]
    specific = [account for account in accounts if not account.startswith(GENERIC)]
    return next(iter(specific or accounts), None)


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


GENERIC = "the database refused the operation"


def _explain_one(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        folder = Path(os.fsdecode(exc.filename)).parent if exc.filename else None
        if exc.errno == errno.ENOENT and folder is not None and not folder.is_dir():
            # A file named in a folder that is not there (a typo): name the folder, not the
            # temporary file the command was writing first.
            advice = "create it, or name a file in a folder that exists"
            return f"{_OS_ERRORS[errno.ENOENT]}: {folder} does not exist; {advice}"
        what = _OS_ERRORS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
        where = f": {exc.filename}" if exc.filename else ""
        return f"{what}{where}; {ADVICE_RERUN}"
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if _from_a_database(exc):
        for marker, advice in _SQLITE_MESSAGES:
            if marker in lowered:
                return f"{advice} ({text})"
        if connection_lost(exc):
            return f"the database server connection failed ({text}); check that the server is up, then {ADVICE_RERUN}"
        if type(exc).__name__ == "OperationalError":
            return f"{GENERIC} ({text}); {ADVICE_RERUN}"
    return None


DRIVER_MODULES = ("psycopg2", "psycopg", "pymysql")


def _from_a_database(exc: BaseException) -> bool:
    """A database's own error: SQLite's, peewee's wrapping of a driver's, or a driver's raw one
    (a bulk path such as `execute_values` works on the driver's cursor, past peewee)."""
    if isinstance(exc, sqlite3.Error | pw.PeeweeException | ConnectionError):
        return True
    return type(exc).__module__.split(".")[0] in DRIVER_MODULES


_LOST_RACE_CODES = (1213, 1205)  # MySQL/MariaDB: a deadlock; a lock wait that timed out
# PostgreSQL: class 40 (a deadlock, a serialization failure) and 55P03 (a lock not available).
_LOST_RACE_CLASSES = ("TransactionRollbackError", "LockNotAvailable")


def lost_race(exc: BaseException) -> bool:
    """Whether a server rolled a transaction back because another writer held what it needed (a
    deadlock, a serialization failure, a lock wait that timed out) or took a unique key it was
    about to write: nothing is wrong with the transaction, and running it again succeeds."""
    for current in _chain(exc):
        if isinstance(current, pw.IntegrityError):
            return True
        if type(current).__module__.split(".")[0] not in DRIVER_MODULES:
            continue
        names = {cls.__name__ for cls in type(current).__mro__}
        if "IntegrityError" in names or names & set(_LOST_RACE_CLASSES):
            return True
        if current.args and current.args[0] in _LOST_RACE_CODES:
            return True
    return False


RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0)
"""Seconds before each new attempt of a run whose server connection dropped: five attempts in all,
some 15 seconds, about as long as a server takes to restart."""


def retried_on_lost_connections(
    database: pw.Database, attempt: Callable[[Progress | None], T], progress: Progress | None
) -> tuple[T, int]:
    """`attempt(progress)`, run again from the start when the server connection drops (a restart,
    a network blip), after each of `RETRY_PAUSES` in turn; a server still starting, which refuses
    the new connection, counts as a drop too. Returns its result and the attempts it took. Only a
    run that a new start finishes exactly may be retried: a catch-up, or a read."""
    reported = AcrossAttempts(progress)
    for number, pause in enumerate((*RETRY_PAUSES, None), start=1):
        try:
            if number > 1:  # inside the retries: a server that restarts refuses connections for a while
                reconnect(database)
            return attempt(reported.next_attempt()), number
        except Exception as exc:
            if pause is None or not connection_lost(exc):
                raise
            # The driver's words may echo the connection's password (a libpq DSN): masked.
            said = mask_secrets(" ".join(str(exc).split()), _passwords(database))
            tries = len(RETRY_PAUSES) + 1
            logger.warning(
                "the target's connection dropped (%s); attempt %d of %d in %g s", said, number + 1, tries, pause
            )
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _passwords(database: pw.Database) -> set[str]:
    return {str(value) for key in PASSWORD_KEYS if (value := database.connect_params.get(key))}


def reconnect(database: pw.Database) -> None:
    """A fresh connection in place of one the server dropped (it cannot even roll back)."""
    try:
        database.close()
    except Exception:  # noqa: BLE001 - a dead connection, or a transaction left open on it
        database._state.reset()  # type: ignore[attr-defined]  # peewee's own way to forget a connection
    database.connect(reuse_if_open=True)


def connection_lost(exc: BaseException) -> bool:
    """Whether a database error says the connection to a server dropped (or never came up)."""
    if isinstance(exc, ConnectionError):
        return True
    name = type(exc).__name__
    if not _from_a_database(exc) or name not in ("OperationalError", "InterfaceError"):
        return False
    lowered = str(exc).lower()
    return name == "InterfaceError" or any(marker in lowered for marker in _CONNECTION_MARKERS)
