"""The store's report: shadow comparisons, fallbacks and repairs, kept by every thread."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from migrator.store.common import (
    Mode,
)

logger = logging.getLogger(__name__)

MAX_RECORDED_MISMATCHES = 100  # shadow mismatches listed in full; the rest are counted


# --- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingRepair:
    table: str
    key: str
    rowids: tuple[int, ...]
    error: str


@dataclass(frozen=True)
class ShadowMismatch:
    table: str
    key: str
    differences: list[str]


@dataclass
class StoreReport:
    mode: str
    shadow_reads: int = 0  # reads served in shadow mode, each one compared, skipped, or still in flight
    shadow_matches: int = 0
    shadow_mismatches: int = 0
    shadow_stale: int = 0  # differed, then agreed when both sides were read again: a write raced the read
    shadow_errors: int = 0  # the relational path raised; swallowed, the caller got the JSON
    shadow_skipped: int = 0  # not compared, because the comparison backlog was full (logged as a warning)
    # compared / (compared + skipped): 1.0 when no read went uncompared; None before any was decided
    shadow_compared_share: float | None = None
    fallbacks: int = 0  # `relational` reads the JSON answered, the relational side lacking the key
    unreadable_skipped: int = 0  # rows left out of a session listing, their data not a JSON object
    repaired: int = 0  # pending repairs found settled by a catch-up
    pending_repairs: list[PendingRepair] = field(default_factory=list)
    mismatches: list[ShadowMismatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """The store's report, kept by every thread that reads and writes through the store."""

    def __init__(self, mode: Mode) -> None:
        self._lock = threading.Lock()
        self._report = StoreReport(mode.value)

    def tally(self, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                setattr(self._report, name, getattr(self._report, name) + amount)

    def record_mismatch(self, mismatch: ShadowMismatch) -> None:
        with self._lock:
            self._report.shadow_mismatches += 1
            if len(self._report.mismatches) < MAX_RECORDED_MISMATCHES:
                self._report.mismatches.append(mismatch)
        logger.warning("shadow read of %s %s differs: %s", mismatch.table, mismatch.key, mismatch.differences)

    def defer(self, repair: PendingRepair) -> None:
        with self._lock:
            self._report.pending_repairs.append(repair)
        logger.warning(
            "relational write of %s %s failed (%s); the legacy row is kept and the next catch-up repairs it",
            repair.table,
            repair.key,
            repair.error,
        )

    def pending(self, table: str | None = None) -> list[PendingRepair]:
        with self._lock:
            return [p for p in self._report.pending_repairs if table is None or p.table == table]

    def settle(self, settled: list[PendingRepair]) -> None:
        with self._lock:
            self._report.pending_repairs = [p for p in self._report.pending_repairs if p not in settled]
            self._report.repaired += len(settled)

    def snapshot(self) -> StoreReport:
        with self._lock:
            report = self._report
            compared = report.shadow_matches + report.shadow_mismatches + report.shadow_stale + report.shadow_errors
            decided = compared + report.shadow_skipped
            return replace(
                report,
                pending_repairs=list(report.pending_repairs),
                mismatches=list(report.mismatches),
                shadow_compared_share=compared / decided if decided else None,
            )
