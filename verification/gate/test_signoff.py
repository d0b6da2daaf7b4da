"""The sign-off gate's checks, one visible test each (per shard of rows, per legacy table).

Collected only with `--ksi-snapshot`; the plugin (`verification.gate.plugin`) deselects them
otherwise. Each test records its `CheckResult` before judging it, so a failing check still
brings its figures to signoff.json.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw
import pytest

from migrator.kinds import KINDS
from migrator.sources import Snapshot
from migrator.store import Store
from verification.gate.checks import (
    METADATA,
    NO_ORPHANS,
    PERFORMANCE,
    QUARANTINE,
    ROWS_EXACT,
    SCHEMA,
    SOURCE_COLUMNS,
    SOURCE_UNTOUCHED,
    CheckResult,
    Shard,
    account_for_quarantine,
    check_metadata,
    check_source_columns,
    compare_source_hashes,
    find_orphans,
    quarantined_rows,
    verify_shard,
)
from verification.gate.performance import checkpoint_save_latency, session_lookup_latency
from verification.gate.plugin import GateRun, target_of
from verification.gate.schema import check_schema

Record = Callable[[CheckResult], CheckResult]


def require_passed(result: CheckResult) -> None:
    """Fail with the check's own account of what is wrong; a traceback would tell the signer nothing."""
    if not result.passed:
        pytest.fail(result.explain(), pytrace=False)


@pytest.mark.ksi_gate(SOURCE_COLUMNS)
def test_source_columns_carried(ksi_source: Snapshot, ksi_record: Record) -> None:
    """Every column of the legacy tables is one the mapping carries: none is lost at cleanup."""
    result = ksi_record(check_source_columns(ksi_source))
    require_passed(result)


@pytest.mark.ksi_gate(ROWS_EXACT)
def test_rows_exact(ksi_shard: Shard, ksi_source: Snapshot, ksi_store: Store, ksi_record: Record) -> None:
    """Every legacy row of the shard is held exactly both ways: the target's rows are what the
    mapping makes of it (every column), the row rebuilt from them is the source's (values and
    storage types), and the store's read of it returns the source's value."""
    result = ksi_record(verify_shard(ksi_source, ksi_store, ksi_shard))
    require_passed(result)


@pytest.mark.ksi_gate(METADATA)
def test_migration_metadata(ksi_source: Snapshot, ksi_target: pw.Database, ksi_record: Record) -> None:
    """The legacy DDL, AUTOINCREMENT counters and encoding the target recorded are the source's."""
    result = ksi_record(check_metadata(ksi_source, ksi_target))
    require_passed(result)


@pytest.mark.ksi_gate(NO_ORPHANS)
@pytest.mark.parametrize("table", list(KINDS))
def test_no_orphaned_rows(table: str, ksi_target: pw.Database, ksi_record: Record) -> None:
    """The target holds no child row whose legacy row is gone (rebuilding by shard cannot see one).

    Counts and checksums have no test of their own: every shard counts and checksums both sides
    of its rows, and the controller adds them up per table, so no test reads a table twice.
    """
    result = ksi_record(find_orphans(ksi_target, table))
    require_passed(result)


@pytest.mark.ksi_gate(QUARANTINE)
def test_quarantine_accepted(ksi_run: GateRun, ksi_target: pw.Database, ksi_record: Record) -> None:
    """Every quarantined row is in the signer's accept list, and the list names no other row."""
    result = ksi_record(account_for_quarantine(quarantined_rows(ksi_target), ksi_run.options.accepted))
    require_passed(result)


@pytest.mark.ksi_gate(SCHEMA)
def test_schema_complete(ksi_target: pw.Database, ksi_record: Record) -> None:
    """Every table, foreign key, unique constraint and index the models declare exists in the target."""
    result = ksi_record(check_schema(ksi_target))
    require_passed(result)


@pytest.mark.ksi_gate(PERFORMANCE)
def test_checkpoint_save_latency(ksi_run: GateRun, ksi_source: Snapshot, ksi_record: Record) -> None:
    """p99 of the daemon's save of the snapshot's real checkpoints, on a copy of the target, is under the limit."""
    limit = ksi_run.options.max_checkpoint_save_ms
    result = ksi_record(checkpoint_save_latency(ksi_source, target_of(ksi_run), limit))
    require_passed(result)


@pytest.mark.ksi_gate(PERFORMANCE)
def test_session_lookup_latency(ksi_run: GateRun, ksi_source: Snapshot, ksi_record: Record) -> None:
    """p99 of the daemon's lookup of real session keys, each rebuilt to its whole blob, is under the limit."""
    limit = ksi_run.options.max_session_lookup_ms
    result = ksi_record(session_lookup_latency(ksi_source, target_of(ksi_run), limit))
    require_passed(result)


@pytest.mark.ksi_gate(SOURCE_UNTOUCHED)
def test_source_untouched(ksi_run: GateRun, ksi_record: Record) -> None:
    """The snapshot and its WAL file hash as they did when the session started (run last)."""
    result = ksi_record(compare_source_hashes(ksi_run.options.snapshots, ksi_run.hashes_at_start))
    require_passed(result)
