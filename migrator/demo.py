"""`ksi-migrate demo`: the whole journey on a fabricated snapshot, with a readable summary."""

from __future__ import annotations

from pathlib import Path

from migrator.backfill import backfill
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource, snapshot_hashes
from migrator.legacy_copy import compare_legacy_files
from migrator.models import Quarantine
from migrator.private import make_folder
from migrator.rollback import restore
from migrator.target import target_database
from migrator.verify import verify

DEMO_UNREADABLE_ROWS = 3  # a few broken rows, to show that they are kept and reported


def run_demo(folder: Path, *, checkpoints: int, sessions: int, seed: int) -> bool:
    """Fabricate, migrate, verify, restore and compare; True when everything round-tripped."""
    make_folder(folder, exist_ok=True)
    snapshot, target, restored = folder / "legacy.db", folder / "relational.db", folder / "restored.db"
    for path in (snapshot, target, restored):
        path.unlink(missing_ok=True)
    say = print
    say(f"KSI migration demo in {folder}")
    summary = fabricate_snapshot(
        snapshot, checkpoints=checkpoints, sessions=sessions, seed=seed, unreadable=DEMO_UNREADABLE_ROWS
    )
    say(
        f"1. fabricated {snapshot.name}: {summary['checkpoints']} checkpoints, {summary['sessions']} sessions, "
        f"{summary['noncanonical']} rows in non-default JSON formatting, {summary['unreadable']} unreadable rows"
    )
    before = snapshot_hashes(snapshot)
    with LegacySource(snapshot) as source, target_database(target) as database:
        migrated = backfill(source, database)
        for t in migrated.tables:
            say(
                f"2. migrated {t.table}: {t.migrated} rows to relational tables, {t.quarantined} quarantined "
                f"verbatim, {t.noncanonical} non-canonical kept exactly ({migrated.seconds:.1f}s)"
            )
        for record in Quarantine.select().order_by(Quarantine.legacy_table, Quarantine.source_rowid):
            say(f"   quarantined {record.legacy_table} {record.row_key}: {record.reason}")
        checked = verify(source, database)
        say(f"3. verify: {'every row rebuilt exactly' if checked.ok else f'{checked.problems} problem(s)'}")
        for mismatch in checked.mismatches[:5]:
            say(f"   {mismatch}")
        restore(database, restored)
    tables = [t.table for t in migrated.tables]
    differences = compare_legacy_files(snapshot, restored, tables)
    say(
        f"4. restored {restored.name}; sqlite typeof()/quote() comparison with the source: "
        f"{'identical' if not differences else f'{len(differences)} difference(s)'}"
    )
    for difference in differences[:5]:
        say(f"   {difference}")
    untouched = snapshot_hashes(snapshot) == before
    say(f"5. source snapshot sha256 {'unchanged' if untouched else 'CHANGED'}: {before['db']}")
    passed = checked.ok and not differences and untouched
    say("PASS" if passed else "FAIL")
    return passed
