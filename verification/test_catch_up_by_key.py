"""Catch-up by identity, as a property: whatever the sessions hold, the daemon's shutdown save of
every session unchanged (INSERT OR REPLACE, a new rowid for each) is caught up by moving the
sessions in place: no child row is written or updated, the target is exact, and the next run does
nothing."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from migrator.backfill import TableReport
from verification.harness import migrate, scratch_folder, verify_target
from verification.strategies import LegacySnapshot, legacy_snapshots

BATCH_SIZES = st.integers(min_value=1, max_value=4)


def save_every_session_again(source: Path) -> None:
    """The daemon's shutdown save of every cached session, unchanged, in one transaction: what
    `INSERT OR REPLACE` does to each row (deleted, and inserted under a new rowid above every
    other), with the rowids given, so that SQLite's own choice (random ones once the largest rowid
    is taken) does not decide what the property sees."""
    with closing(sqlite3.connect(source)) as daemon, daemon:
        top, count = daemon.execute("SELECT coalesce(max(rowid), 0), count(*) FROM mcp_sessions").fetchone()
        assume(top + count < 2**63)
        # In SQL, so that every cell keeps its storage type (text that is not UTF-8 included).
        daemon.execute(
            "INSERT OR REPLACE INTO mcp_sessions (rowid, session_key, session_data, last_seen) "
            "SELECT ? + row_number() OVER (ORDER BY rowid), session_key, session_data, last_seen "
            "FROM mcp_sessions ORDER BY rowid",
            (top,),
        )
        daemon.execute("DELETE FROM mcp_sessions WHERE rowid <= ?", (top,))  # a NULL key replaces nothing


def tool_rows(target: Path) -> list[tuple[object, ...]]:
    """Every tool row as SQLite holds it, its own rowid and every column (its session's id too)."""
    with closing(sqlite3.connect(target)) as connection:
        return connection.execute("SELECT rowid, * FROM mcp_session_tool ORDER BY rowid").fetchall()


def sessions_of(tables: list[TableReport]) -> TableReport:
    (report,) = [table for table in tables if table.table == "mcp_sessions"]
    return report


@pytest.mark.slow  # 11 s in the suite on a slow day (2026-12-01)
@given(snapshot=legacy_snapshots(), batch_size=BATCH_SIZES)
def test_a_shutdown_save_of_unchanged_sessions_is_caught_up_by_moves(snapshot: LegacySnapshot, batch_size: int) -> None:
    with scratch_folder() as folder:
        source, target = snapshot.write(folder / "legacy.db"), folder / "target.db"
        first = sessions_of(migrate(source, target, batch_size).tables)
        tools = tool_rows(target)
        save_every_session_again(source)
        # Same daemon: every row may have a new rowid (its quarantined sessions have no key to be known by).
        caught_up = sessions_of(migrate(source, target, batch_size, same_daemon=True).tables)
        report = verify_target(source, target, batch_size)
        assert report.ok, "verify after the catch-up:\n" + "\n".join(map(str, report.mismatches))
        tools_after = tool_rows(target)
        quiet = sessions_of(migrate(source, target, batch_size).tables)
    assert tools_after == tools, "no tool row is written, updated or removed"
    assert caught_up.moved == first.migrated, f"every readable session is moved: {caught_up}"
    # A quarantined row has no relational key to be found by: it is written again (it has no tools)
    # and its old rowid removed.
    assert (caught_up.written, caught_up.deleted) == (first.quarantined, first.quarantined), caught_up
    assert caught_up.child_rows_written == 0, f"no tool is written again: {caught_up}"
    assert (quiet.written, quiet.moved, quiet.deleted) == (0, 0, 0), f"the next run changes nothing: {quiet}"
