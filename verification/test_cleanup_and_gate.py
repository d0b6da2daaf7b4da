"""Properties of the two guards before cutover: `cleanup`, the one command that drops data, and the
sign-off gate, whose per-row tests prove only the rows its shards read.

* `cleanup-drops-only-what-the-archive-restores`: on any migrated snapshot, cleanup is ready, drops
  the legacy tables, and `restore --archive` gives them back exactly; an archive changed in one
  cell and resealed (its file's sha256 and its row checksum rewritten to agree with it) is refused
  by *each* of the checks that compare it with the source (the row checksums, and the scratch
  restore compared row by row), and nothing is dropped. Each must catch it alone: that is what
  defence in depth means, so a fault that blinds one of them fails this property.
* `gate-compares-every-row-once`: on any migrated snapshot and any shard size, every shard of the
  gate passes, and the controller's tally (`Ledger`, as `SignoffController` runs it) finds every
  source rowid compared by exactly one shard, and the counts and checksums equal.

Each property is a `Property` (`test_properties.py`), so `test_seeded_faults.py` searches them too.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.archive import archive_line, archived_rows, check_archive, restore_archive, tally, write_archive
from migrator.cleanup import RESTORES, execute_cleanup, plan_cleanup
from migrator.codec import cell_identity
from migrator.errors import CleanupRefused, MigratorError
from migrator.legacy import CELLS, ROWID, LegacySource, file_sha256, snapshot_hashes
from migrator.store import Mode, open_store
from migrator.target import target_database
from verification.gate.checks import COUNTS_CHECKSUMS, ROWS_COVERED, ROWS_EXACT, plan_shards, verify_shard
from verification.gate.ledger import PASS, Ledger
from verification.gate.options import DEFAULT_SHARD_BYTES
from verification.gate.plugin import indexed_rowids
from verification.harness import legacy_file_differences, migrate, scratch_folder
from verification.strategies import LegacySnapshot, legacy_snapshots, sqlite_cells
from verification.test_properties import BATCH_SIZES, Property

READABLE = "archive complete and readable"
MATCHES = "archive matches the source"

# --- cleanup ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tampering:
    """Which archived row (a table, a position among its rows) gets which cell in which column."""

    table: str
    position: int
    column: int  # an index into the row's cells, never the key column
    cell: Any


NONEMPTY_SNAPSHOTS = legacy_snapshots().filter(lambda snapshot: bool(snapshot.checkpoints or snapshot.sessions))


@st.composite
def tamperings(draw: st.DrawFn, snapshot: LegacySnapshot) -> Tampering:
    tables = [
        name for name, rows in (("checkpoints", snapshot.checkpoints), ("mcp_sessions", snapshot.sessions)) if rows
    ]
    table = draw(st.sampled_from(tables))
    rows = snapshot.checkpoints if table == "checkpoints" else snapshot.sessions
    key_column = 0  # `id` of a checkpoint, `session_key` of a session: the row's identity, not its content
    column = draw(st.integers(min_value=0, max_value=1)) + key_column + 1
    return Tampering(table, draw(st.integers(min_value=0, max_value=len(rows) - 1)), column, draw(sqlite_cells()))


@st.composite
def cleanup_cases(draw: st.DrawFn) -> tuple[LegacySnapshot, Tampering]:
    snapshot = draw(NONEMPTY_SNAPSHOTS)
    return snapshot, draw(tamperings(snapshot))


def reseal(archive: Path, tampering: Tampering) -> bool:
    """Change one archived cell and rewrite the manifest to agree; False when the cell was already that."""
    manifest = check_archive(archive)
    entry = manifest.tables[tampering.table]
    table = entry.table(tampering.table)
    rows = list(archived_rows(archive, table, entry))
    row = rows[tampering.position]
    cells = list(row[CELLS])
    if cell_identity(cells[tampering.column]) == cell_identity(tampering.cell):
        return False
    cells[tampering.column] = tampering.cell
    rows[tampering.position] = (row[ROWID], *cells)
    text = "".join(archive_line(table, changed) + "\n" for changed in rows)
    (archive / entry.file).write_bytes(gzip.compress(text.encode("ascii"), mtime=0))
    entry.sha256, entry.checksum = file_sha256(archive / entry.file) or "", tally(rows).checksum
    (archive / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return True


def check_cleanup_drops_only_what_the_archive_restores(case: tuple[LegacySnapshot, Tampering], batch_size: int) -> None:
    snapshot, tampering = case
    with scratch_folder() as folder:
        source, target = snapshot.write(folder / "legacy.db"), folder / "target.db"
        migrate(source, target, batch_size)
        with LegacySource(source) as legacy:
            write_archive(legacy, folder / "archive", batch_size=batch_size)
        shutil.copytree(folder / "archive", folder / "resealed")
        if reseal(folder / "resealed", tampering):
            # A cell the table's column affinity turns back into the source's (text "5" in a
            # NUMERIC column) changes the archive, not what it restores: only the checksums see it.
            restores_differently = _restores_differently(source, folder / "resealed", folder / "resealed.db")
            seeing = (MATCHES, RESTORES) if restores_differently else (MATCHES,)
            _refused(source, target, folder / "resealed", tampering, seeing, batch_size)
        kept = shutil.copyfile(source, folder / "as-it-was.db")
        with target_database(target, must_exist=True) as database:
            plan = plan_cleanup(source, database, folder / "archive", batch_size=batch_size)
            assert plan.ready, f"cleanup refuses an exact migration and its own archive: {plan.refusal()}"
            execute_cleanup(plan, database)
        with closing(sqlite3.connect(source)) as dropped:
            left = dropped.execute("SELECT name FROM sqlite_master WHERE name IN ('checkpoints', 'mcp_sessions')")
            assert not left.fetchall(), "cleanup left a legacy table in place"
        restore_archive(folder / "archive", folder / "restored.db", batch_size=batch_size)
        problems = legacy_file_differences(kept, folder / "restored.db")
        assert not problems, "restore --archive after cleanup differs from the tables dropped:\n" + "\n".join(problems)


def _restores_differently(source: Path, archive: Path, out: Path) -> bool:
    try:
        restore_archive(archive, out)
    except (MigratorError, sqlite3.Error):  # a NULL in a NOT NULL column, say: nothing restores
        return True
    return bool(legacy_file_differences(source, out))


def _refused(
    source: Path, target: Path, archive: Path, tampering: Tampering, seeing: tuple[str, ...], batch_size: int
) -> None:
    before = snapshot_hashes(source)
    with target_database(target, must_exist=True) as database:
        plan = plan_cleanup(source, database, archive, batch_size=batch_size)
        checks = {check.name: check for check in plan.checks}
        assert checks[READABLE].passed, f"a resealed archive should read as whole: {checks[READABLE].detail}"
        blind = [name for name in seeing if checks[name].passed]
        assert not blind, f"{blind} passed an archive whose {tampering.table} row differs from the source: {tampering}"
        try:
            execute_cleanup(plan, database)
        except CleanupRefused:
            pass
        else:
            raise AssertionError("cleanup dropped the legacy tables beside an archive that differs from them")
    assert snapshot_hashes(source) == before, "a refused cleanup changed the source"


# --- the gate ---------------------------------------------------------------------------------


def check_gate_compares_every_row_once(snapshot: LegacySnapshot, rows_per_shard: int) -> None:
    with scratch_folder() as folder:
        source, target = snapshot.write(folder / "legacy.db"), folder / "target.db"
        migrate(source, target, batch_size=2)
        store = open_store(target, mode=Mode.RELATIONAL_ONLY, read_only=True)
        try:
            with LegacySource(source) as legacy:
                planned = plan_shards(legacy, rows_per_shard, read_sample=10**6, shard_bytes=DEFAULT_SHARD_BYTES)
                ledger = Ledger(planned)
                for shard in planned:
                    result = verify_shard(legacy, store, shard)
                    ledger.note_report(ROWS_EXACT, shard.id, "passed", asdict(result), None)
                ledger.add_up_shards()
                ledger.add_up_coverage(lambda table: indexed_rowids(legacy, table))
        finally:
            store.close()
    verdicts = {verdict.name: verdict for verdict in ledger.verdicts()}
    problems = [
        f"{name}: {verdicts[name].verdict}: {line}"
        for name in (ROWS_EXACT, COUNTS_CHECKSUMS, ROWS_COVERED)
        if verdicts[name].verdict != PASS
        for line in verdicts[name].problems or [verdicts[name].summary]
    ]
    assert not problems, f"the gate does not sign off an exact migration in {len(planned)} shards:\n" + "\n".join(
        problems
    )


# --- the registry and the tests ---------------------------------------------------------------

PROPERTIES: dict[str, Property] = {
    prop.name: prop
    for prop in (
        Property(
            "cleanup-drops-only-what-the-archive-restores",
            {"case": cleanup_cases(), "batch_size": BATCH_SIZES},
            check_cleanup_drops_only_what_the_archive_restores,
        ),
        Property(
            "gate-compares-every-row-once",
            {"snapshot": legacy_snapshots(), "rows_per_shard": st.integers(min_value=1, max_value=3)},
            check_gate_compares_every_row_once,
        ),
    )
}


# Each example migrates, archives, plans cleanup twice (each plan verifies the target and restores
# the archive) and drops: a third of the profile's examples (20 under `ci`), as the server
# engines' properties take a share. The seeded faults still search it with all of `ci`'s.
CLEANUP_SHARE = 3


def share_of_the_profile(share: int) -> settings:
    profile = settings.default
    assert profile is not None  # loaded before the suite's modules are collected
    return settings(profile, max_examples=max(10, profile.max_examples // share))


@share_of_the_profile(CLEANUP_SHARE)
@given(**PROPERTIES["cleanup-drops-only-what-the-archive-restores"].arguments)
def test_cleanup_drops_only_what_the_archive_restores(case: tuple[LegacySnapshot, Tampering], batch_size: int) -> None:
    check_cleanup_drops_only_what_the_archive_restores(case, batch_size)


@given(**PROPERTIES["gate-compares-every-row-once"].arguments)
def test_the_gate_compares_every_row_once(snapshot: LegacySnapshot, rows_per_shard: int) -> None:
    check_gate_compares_every_row_once(snapshot, rows_per_shard)
