"""Opening the store: its mode, its target, and its legacy tables."""

from __future__ import annotations

import os

from migrator.errors import (
    ReadOnlyStore,
    UnknownMode,
)
from migrator.store.common import (
    MODE_VARIABLE,
    Mode,
)
from migrator.store.core import Store
from migrator.store.legacy_side import LegacyFiles, open_legacy_side
from migrator.target import (
    create_schema,
    open_target,
    require_schema,
)

# --- opening ----------------------------------------------------------------------------------


def open_store(
    target: str | os.PathLike[str],
    *,
    legacy: LegacyFiles | None = None,
    mode: str | Mode | None = None,
    read_only: bool = False,
    create: bool = False,
) -> Store:
    """Open the store on TARGET (a SQLite file or a database URL).

    `legacy` is the SQLite file of the legacy tables; by default they live in TARGET itself,
    beside the relational tables. The daemon's own layout, a file per table, is
    `legacy={"checkpoints": "checkpoint.db", "mcp_sessions": "mcp_sessions.db"}`.
    `mode` defaults to $KSI_STORE_MODE, then `dual_write`.
    `read_only` serves `relational_only` reads from a migrated target without writing anything,
    not even the schema version: the engine itself refuses writes, and so does the store.
    A SQLite file that does not exist is refused (a typo must not start an empty database)
    unless `create` asks for a new one.
    """
    chosen = _mode(mode)
    if read_only:
        return _open_read_only(target, chosen)
    database = open_target(target, must_exist=not create)
    try:
        if chosen.writes_relational:
            create_schema(database)
        if not chosen.writes_legacy:
            return Store(database, chosen)
        legacy_tables, legacy_paths = open_legacy_side(target, legacy, database)
    except BaseException:
        database.close()
        raise
    return Store(database, chosen, legacy_tables, legacy_paths)


def _open_read_only(target: str | os.PathLike[str], mode: Mode) -> Store:
    if mode is not Mode.RELATIONAL_ONLY:
        raise ReadOnlyStore(f"a read-only store serves {Mode.RELATIONAL_ONLY.value} reads; {mode.value} writes")
    database = open_target(target, read_only=True)
    try:
        require_schema(database)
    except BaseException:
        database.close()
        raise
    return Store(database, mode, read_only=True)


def _mode(mode: str | Mode | None) -> Mode:
    text = mode if mode is not None else os.environ.get(MODE_VARIABLE, Mode.DUAL_WRITE.value)
    try:
        return Mode(text)
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise UnknownMode(f"unknown store mode {text!r}; choose one of {choices}") from None
