"""One measured operation in its own process, so that its peak RSS is its own.

    python -m benchmarks.child migrate|reference|verify SOURCE TARGET

TARGET is a SQLite file, or for `migrate` and `verify` a server URL (`benchmarks/servers.py`).

Prints one JSON line: {"seconds": ..., "max_rss_mb": ..., "rows": ...}.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.reference import reference_backfill
from migrator.backfill import backfill
from migrator.legacy import LegacySource
from migrator.target import target_database
from migrator.verify import verify


def run_migrate(source: Path, target: Path | str) -> int:
    with LegacySource(source) as legacy, target_database(target) as database:
        report = backfill(legacy, database)
    return sum(t.source_rows for t in report.tables)


def run_verify(source: Path, target: Path | str) -> int:
    with LegacySource(source) as legacy, target_database(target, must_exist=True) as database:
        report = verify(legacy, database)
    if not report.ok:
        raise SystemExit(f"verify found {report.problems} problem(s); a benchmark of a wrong result is void")
    return sum(t.source_rows for t in report.tables)


OPERATIONS: dict[str, Callable[[Path, Any], int]] = {
    "migrate": run_migrate,
    "reference": reference_backfill,
    "verify": run_verify,
}


def main(argv: list[str]) -> None:
    operation, source, target = argv
    started = time.perf_counter()
    rows = OPERATIONS[operation](Path(source), target if "://" in target else Path(target))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "max_rss_mb": peak_rss_mb(), "rows": rows}))


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux carries `ru_maxrss` across exec, so a child started by
    a large parent would report the parent's size; VmHWM belongs to the new address space only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the best there is


if __name__ == "__main__":
    main(sys.argv[1:])
