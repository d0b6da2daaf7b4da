"""The sign-off gate's checks, one visible test each (per shard of rows, per legacy table).

Collected only with `--ksi-snapshot`; the plugin (`verification.gate.plugin`) deselects them
otherwise. Each test records its `CheckResult` before judging it, so a failing check still
brings its figures to signoff.json.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw
import pytest

from migrator.backfill import KINDS
from migrator.legacy import LegacySource
from verification.gate.checks import (
    NO_ORPHANS,
    PERFORMANCE,
    QUARANTINE,
    ROWS_EXACT,
    SCHEMA,
    SOURCE_UNTOUCHED,
    CheckResult,
    Shard,
    account_for_quarantine,
    compare_source_hashes,
    find_orphans,
    quarantined_rows,
    verify_shard,
)
from verification.gate.performance import checkpoint_save_latency, session_lookup_latency
from verification.gate.plugin import GateRun
from verification.gate.schema import check_schema

Record = Callable[[CheckResult], CheckResult]


def require_passed(result: CheckResult) -> None:
    """Fail with the check's own account of what is wrong; a traceback would tell the signer nothing."""
    if not result.passed:
        pytest.fail(result.explain(), pytrace=False)


@pytest.mark.ksi_gate(ROWS_EXACT)
def test_rows_exact(ksi_shard: Shard, ksi_source: LegacySource, ksi_target: pw.Database, ksi_record: Record) -> None:
    """Every legacy row of the shard is rebuilt from the target with the same values and storage types."""
    result = ksi_record(verify_shard(ksi_source, ksi_target, ksi_shard))
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
def test_checkpoint_save_latency(ksi_run: GateRun, ksi_source: LegacySource, ksi_record: Record) -> None:
    """p99 of the daemon's save of the snapshot's real checkpoints, on a copy of the target, is under the limit."""
    limit = ksi_run.options.max_checkpoint_save_ms
    result = ksi_record(checkpoint_save_latency(ksi_source, ksi_run.target or "", limit))
    require_passed(result)


@pytest.mark.ksi_gate(PERFORMANCE)
def test_session_lookup_latency(ksi_run: GateRun, ksi_source: LegacySource, ksi_record: Record) -> None:
    """p99 of the daemon's lookup of real session keys, each rebuilt to its whole blob, is under the limit."""
    limit = ksi_run.options.max_session_lookup_ms
    result = ksi_record(session_lookup_latency(ksi_source, ksi_run.target or "", limit))
    require_passed(result)


@pytest.mark.ksi_gate(SOURCE_UNTOUCHED)
def test_source_untouched(ksi_run: GateRun, ksi_record: Record) -> None:
    """The snapshot and its WAL file hash as they did when the session started (run last)."""
    result = ksi_record(compare_source_hashes(ksi_run.options.snapshot, ksi_run.hashes_at_start))
    require_passed(result)
