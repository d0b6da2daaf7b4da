"""A check that cannot see a wrong cell is not a check: change one cell of one relational table at
a time (every column of every table, the migration metadata included) and show that `verify`
exits 1 naming the table, the row and the column, and that the sign-off gate's checks fail."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import main
from migrator.compare import CATCH_UP_DIGEST
from migrator.kinds import KINDS
from migrator.models import SCHEMA_VERSION
from migrator.relational import QUARANTINE, TableMap
from migrator.store import Mode, open_store
from verification.gate.checks import check_metadata, plan_shards, verify_shard
from verification.gate.options import DEFAULT_SHARD_BYTES
from verification.gate.plugin import open_snapshot
from verification.snapshots import checkpoint_row, session_row, write_snapshot

FULL_CHECKPOINT = {
    "timestamp": "2025-06-20T23:17:27.5Z",
    "reason": "manual",
    "session_queues": {
        "s1": {
            "items": [{"request_id": "r1", "timestamp": "2025-06-20T23:00:00Z", "data": {"n": 1}, "later": 1}],
            "is_active": True,
            "active_request": "r1",
            "depth_hint": 2,
        },
        "s2": [{"request_id": "r2", "data": {"prompt": "hi"}}],
    },
    "active_completions": {
        "r1": {
            "session_id": "s1",
            "agent_id": "agent_1",
            "status": "processing",
            "queued_at": "2025-06-20T23:00:00Z",
            "started_at": "2025-06-20T23:00:01Z",
            "completed_at": "2025-06-20T23:00:02+00:00",
            "error": "boom",
            "data": {"model": "m", "priority": 1},
            "original_event": {"event": "completion:async"},
            "retry_count": 2,
        }
    },
    "components": {"queue": True},
}
PLAN_SESSION = {
    "agent_id": "agent_1",
    "tools": ["Read", {"name": "Bash", "description": "run", "inputSchema": {"type": "object"}, "x": 1}, 5],
    "thin_handshake": True,
    "created_at": "2025-06-20T10:00:00Z",
    "note": "kept in extra",
}
DAEMON_SESSION = {
    "agent_id": "agent_2",
    "conversation_id": "c:2",
    "agent_info": {"profile": "base", "allowed_events": ["a"]},
    "tools": [{"name": "ksi_system_health"}],
    "created": "2025-06-20T10:00:00.123456",
}
CHECKPOINTS = [
    checkpoint_row(3, FULL_CHECKPOINT, timestamp=b"\x01binary timestamp"),
    checkpoint_row(4, '{"timestamp":"2025-06-20T23:17:27Z","session_queues":{},"n":1E5}'),  # non-canonical
    checkpoint_row(5, "[truncated"),  # quarantined
]
SESSIONS = [
    session_row(1, "agent_1:c1", PLAN_SESSION),
    session_row(2, "agent_2:c:2", DAEMON_SESSION, last_seen=1750461447),
    session_row(3, "agent_3:c3", '{"agent_id":"agent_3","tools":[]}'),  # non-canonical
    session_row(4, "agent_4:c4", '{"oops'),  # quarantined
]

UNCHECKED = {CATCH_UP_DIGEST, "id"}  # the catch-up digest, and the quarantine's surrogate id (see QUARANTINE)


@dataclass(frozen=True)
class Cell:
    table: TableMap
    column: str

    @property
    def identifies_the_row(self) -> bool:
        """A key column: changing it moves the row, so the row is named rather than the column."""
        return self.column in self.table.key or self.column == self.table.columns[0]

    def __str__(self) -> str:
        return f"{self.table.name}.{self.column}"


def every_checked_cell() -> list[Cell]:
    tables = [table for kind in KINDS.values() for table in kind.tables] + [QUARANTINE]
    cells = []
    for table in tables:
        for column in table.model._meta.columns:
            if column in UNCHECKED and (column == CATCH_UP_DIGEST or table is QUARANTINE):
                continue
            cells.append(Cell(table, column))
    return cells


CELLS = every_checked_cell()


def test_only_the_catch_up_digest_and_the_quarantines_surrogate_id_go_unchecked() -> None:
    tables = [table for kind in KINDS.values() for table in kind.tables] + [QUARANTINE]
    every = {f"{t.name}.{c}" for t in tables for c in t.model._meta.columns}
    assert every - {str(cell) for cell in CELLS} == {
        "checkpoint.source_digest",
        "mcp_session.source_digest",
        "ksi_quarantine.source_digest",
        "ksi_quarantine.id",
    }


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tamper")
    source = write_snapshot(folder / "legacy.db", CHECKPOINTS, SESSIONS)
    target = folder / "target.db"
    assert main(["migrate", "--source", str(source), "--target", str(target)]) == 0
    assert main(["verify", "--source", str(source), "--target", str(target)]) == 0
    return source, target


def tampered_value(value: Any) -> Any:
    """Another value in the same column, as a careless edit or a faulty writer would leave it."""
    if value is None:
        return "tampered"
    if isinstance(value, int):
        return value + 1000  # far enough not to collide with another row's key
    if isinstance(value, bytes):
        return value + b"\x00"
    return value + " "  # still valid JSON where it was JSON: only the forward check can tell


@contextmanager
def one_cell_changed(target: Path, cell: Cell) -> Iterator[str]:
    """Change one cell of the first row of the table (with foreign keys off, as a hand edit could),
    and put it back afterwards; yields a description of the change."""
    with closing(sqlite3.connect(target)) as connection:
        table = cell.table.name
        rowid, value = connection.execute(
            f'SELECT rowid, "{cell.column}" FROM "{table}" ORDER BY "{cell.column}" IS NULL, rowid LIMIT 1'
        ).fetchone()
        with connection:  # RETURNING: an INTEGER PRIMARY KEY is the rowid, which the change moves
            update = f'UPDATE "{table}" SET "{cell.column}" = ? WHERE rowid = ? RETURNING rowid'
            (moved,) = connection.execute(update, (tampered_value(value), rowid)).fetchone()
        try:
            yield f"{cell}: {value!r} -> {tampered_value(value)!r}"
        finally:
            with connection:
                connection.execute(f'UPDATE "{table}" SET "{cell.column}" = ? WHERE rowid = ?', (value, moved))


def gate_fails(source: Path, target: Path) -> bool:
    with open_snapshot(source) as snapshot:
        store = open_store(target, mode=Mode.RELATIONAL_ONLY, read_only=True)
        try:
            results = [
                verify_shard(snapshot, store, shard) for shard in plan_shards(snapshot, 2, 100, DEFAULT_SHARD_BYTES)
            ]
            results.append(check_metadata(snapshot, store.database))
        finally:
            store.close()
    return not all(result.passed for result in results)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_a_changed_cell_fails_verify_naming_table_row_and_column_and_fails_the_gate(
    migrated: tuple[Path, Path], cell: Cell, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = migrated
    capsys.readouterr()
    with one_cell_changed(target, cell) as change:
        status = main(["verify", "--source", str(source), "--target", str(target)])
        out = capsys.readouterr().out
        assert status == 1, f"verify passed after {change}:\n{out}"
        if cell.identifies_the_row:
            assert f"{cell.table.name}[" in out or "(rowid " in out, f"{change} is not named:\n{out}"
        else:
            assert f"{cell.table.name}[" in out and f"].{cell.column}:" in out, f"{change} is not named:\n{out}"
        assert gate_fails(source, target), f"the gate passed after {change}"
    assert main(["verify", "--source", str(source), "--target", str(target)]) == 0  # put back: exact again


def legacy_schema_changes() -> dict[str, Any]:
    def statement(record: dict) -> None:
        record["statements"][0] += " "

    def sequence(record: dict) -> None:
        record["sequences"]["checkpoints"] = record["sequences"].get("checkpoints", 0) + 1

    def encoding(record: dict) -> None:
        record["encoding"] = "UTF-16le"

    def table(record: dict) -> None:
        record["tables"].remove("mcp_sessions")

    def unreadable(record: dict) -> None:
        record.clear()

    return {
        "statement": statement,
        "sequence": sequence,
        "encoding": encoding,
        "table": table,
        "unreadable": unreadable,
    }


@pytest.mark.parametrize("change", list(legacy_schema_changes()))
def test_a_changed_migration_record_fails_verify_and_the_gate(
    migrated: tuple[Path, Path], change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = migrated
    with closing(sqlite3.connect(target)) as connection:
        (original,) = connection.execute("SELECT value FROM ksi_migration_meta WHERE key = 'legacy_schema'").fetchone()
        record = json.loads(original)
        legacy_schema_changes()[change](record)
        with connection:
            connection.execute(
                "UPDATE ksi_migration_meta SET value = ? WHERE key = 'legacy_schema'", (json.dumps(record),)
            )
        try:
            capsys.readouterr()
            assert main(["verify", "--source", str(source), "--target", str(target)]) == 1
            assert "ksi_migration_meta legacy_schema" in capsys.readouterr().out
            assert gate_fails(source, target)
        finally:
            with connection:
                connection.execute("UPDATE ksi_migration_meta SET value = ? WHERE key = 'legacy_schema'", (original,))


def test_a_changed_schema_version_is_refused_by_name(
    migrated: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The version says how to read everything else: a wrong one cannot be compared, only refused."""
    source, target = migrated
    with closing(sqlite3.connect(target)) as connection, connection:
        connection.execute("UPDATE ksi_migration_meta SET value = '99' WHERE key = 'schema_version'")
    try:
        assert main(["verify", "--source", str(source), "--target", str(target)]) == 2
        assert "schema version 99" in capsys.readouterr().err
    finally:
        with closing(sqlite3.connect(target)) as connection, connection:
            version = str(SCHEMA_VERSION)
            connection.execute("UPDATE ksi_migration_meta SET value = ? WHERE key = 'schema_version'", (version,))
