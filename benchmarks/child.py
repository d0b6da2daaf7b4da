"""One measured operation in its own process, so that its peak RSS is its own.

    python -m benchmarks.child migrate|migrate-j2|reference|minimal|verify|verify-j2 SOURCE TARGET

TARGET is a SQLite file, or for `migrate` and `verify` a server URL (`benchmarks/servers.py`).

Prints one JSON line: {"seconds": ..., "cpu_s": ..., "max_rss_mb": ..., "rows": ...}. `migrate`
maps in this process (`--jobs 1`); `migrate-j2` in two worker processes, whose memory and CPU
time are reported apart (`workers_rss_mb`: the largest sum of their resident sizes seen;
`workers_cpu_s`: their CPU seconds; both sampled every 0.1 s), as VmHWM and getrusage count
this process only. On a busy machine the CPU seconds say more than the wall time: with two
cores to itself, `--jobs 2` takes about the larger of `cpu_s` and half of all its CPU seconds.
`verify-j2` is `verify --jobs 2`: two worker processes compare rowid ranges, reported the same way.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import runpy
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.reference import reference_backfill
from migrator.backfill import backfill
from migrator.legacy import LegacySource
from migrator.target import target_database
from migrator.verify import Reopen, verify


def run_migrate(source: Path, target: Path | str, jobs: int = 1) -> int:
    with LegacySource(source) as legacy, target_database(target) as database:
        report = backfill(legacy, database, jobs=jobs)
    return sum(t.source_rows for t in report.tables)


def run_minimal(source: Path, target: Path) -> int:
    """`benchmarks/minimal_reference.py` as its author runs it (`python3 minimal_reference.py S T`)."""
    argv = sys.argv
    sys.argv = [str(MINIMAL), str(source), str(target)]
    try:
        runpy.run_path(str(MINIMAL), run_name="__main__")
    finally:
        sys.argv = argv
    with LegacySource(source) as legacy:
        return sum(legacy.count(table) for table in legacy.tables)


MINIMAL = Path(__file__).resolve().parent / "minimal_reference.py"


def run_verify(source: Path, target: Path | str, jobs: int = 1) -> int:
    with LegacySource(source) as legacy, target_database(target, must_exist=True) as database:
        report = verify(legacy, database, jobs=jobs, reopen=Reopen((str(source),), str(target)))
    if not report.ok:
        raise SystemExit(f"verify found {report.problems} problem(s); a benchmark of a wrong result is void")
    return sum(t.source_rows for t in report.tables)


OPERATIONS: dict[str, Callable[[Path, Any], int]] = {
    "migrate": run_migrate,
    "migrate-j2": lambda source, target: run_migrate(source, target, jobs=2),
    "reference": reference_backfill,
    "minimal": run_minimal,
    "verify": run_verify,
    "verify-j2": lambda source, target: run_verify(source, target, jobs=2),
}
WITH_WORKERS = ("migrate-j2", "verify-j2")


def main(argv: list[str]) -> None:
    operation, source, target = argv
    workers = WorkersMemory(enabled=operation in WITH_WORKERS)
    started = time.perf_counter()
    rows = OPERATIONS[operation](Path(source), target if "://" in target else Path(target))
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mb": peak_rss_mb(), "rows": rows}
    if workers.peak_mb:
        figures |= {"workers_rss_mb": workers.peak_mb, "workers_cpu_s": sum(workers.cpu_s.values())}
    print(json.dumps(figures))


class WorkersMemory(threading.Thread):
    """The largest sum of resident sizes of the worker processes seen while the operation runs.
    They are the forkserver's children, not this process's: they are found by their parent."""

    def __init__(self, *, enabled: bool) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self.cpu_s: dict[int, float] = {}  # each worker's CPU seconds, as last seen
        if enabled:
            self.start()

    def run(self) -> None:
        workers: list[int] = []
        for tick in itertools.count():
            if not workers or tick % 20 == 0:  # looking them up reads all of /proc: now and then only
                workers = descendants(os.getpid())
            self.peak_mb = max(self.peak_mb, sum(rss_mb(pid) for pid in workers))
            for pid in workers:
                self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), cpu_seconds(pid))
            time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            parents.setdefault(parent, []).append(int(entry.name))
    found, pending = [], list(parents.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending += parents.get(child, [])
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux carries `ru_maxrss` across exec, so a child started by
    a large parent would report the parent's size; VmHWM belongs to the new address space only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: the best there is


if __name__ == "__main__":
    main(sys.argv[1:])
