"""Issue 18: schema version 4 (no index on a child's parent reference alone), side by side in one run.

    python -m benchmarks.results.issue18_reference_indexes BASE_CHECKOUT SNAPSHOT[,SNAPSHOT...] OUT.json [LARGEST_OF]

BASE_CHECKOUT is the code before (`git worktree add BASE f59aef2`), whose child tables carry an
index on the parent reference beside the primary key that starts with it. Per snapshot and
round, in turns: `minimal_reference.py`, and `migrate --jobs 1` and `--jobs 2` before and after,
each in a process of its own (`benchmarks.child`); the after targets are verified exact.

Then each checkout saves the 1M snapshot's largest checkpoint (`benchmarks.run.save_latency`'s
target: 10,000 checkpoints with the daemon's legacy table beside them, made by that checkout) in
`dual_write` and `relational_only`: the WAL bytes one save writes (the WAL emptied before each
of 20 saves: the same every time, so a figure free of the machine's noise), then the wall and
thread-CPU time of 1,000 saves after 20 unmeasured ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.results.issue18_side_by_side import AFTER, rank
from benchmarks.results.issue18_staging import in_turns, verify

ROUNDS = 2
SAVES = 1000
MODES = ("dual_write", "relational_only")

SAVE_CODE = """
import json, os, sys, time
from pathlib import Path
from benchmarks.run import SAVE_TARGET_CHECKPOINTS, _add_newest_legacy_checkpoints, cached_snapshot, measure
from migrator.store import open_store
snapshot, work, mode, samples = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
blob = json.loads(Path(sys.argv[5]).read_text())
source, target = cached_snapshot(0, SAVE_TARGET_CHECKPOINTS), work / "save-target.db"
measure("migrate", source, target, fresh=True)
_add_newest_legacy_checkpoints(source, target, keep=5)
store = open_store(target, mode=mode)
for _ in range(20):
    store.save_checkpoint(blob)
wal, written = Path(f"{target}-wal"), []
for _ in range(20):
    store.database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.save_checkpoint(blob)
    written.append(wal.stat().st_size)
wall, cpu = [], []
for _ in range(samples):
    started, thread = time.perf_counter_ns(), time.thread_time_ns()
    store.save_checkpoint(blob)
    cpu.append(time.thread_time_ns() - thread)
    wall.append(time.perf_counter_ns() - started)
store.close()
print(json.dumps([written, wall, cpu]))
"""


def saves(root: Path, mode: str, blob_file: Path) -> dict[str, Any]:
    with TemporaryDirectory() as work:
        command = [sys.executable, "-c", SAVE_CODE, "-", work, mode, str(SAVES), str(blob_file)]
        environment = {**os.environ, "PYTHONPATH": str(root)}
        result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, check=True)
    written, wall, cpu = json.loads(result.stdout.strip().splitlines()[-1])
    figures = {"wal_bytes_per_save": sorted(set(written)), "samples": len(wall)}
    figures |= {f"p{int(q * 100)}_ms": rank(wall, q) for q in (0.5, 0.95, 0.99)}
    return figures | {"cpu_p50_ms": rank(cpu, 0.5), "cpu_p99_ms": rank(cpu, 0.99)}


def backfills(base: Path, snapshot: Path, work: Path) -> dict[str, list[dict[str, Any]]]:
    runs = [("minimal", AFTER, "minimal")]
    for label, operation in (("jobs1", "migrate"), ("jobs2", "migrate-j2")):
        runs += [(f"{label} {version}", root, operation) for version, root in (("before", base), ("after", AFTER))]
    measured = in_turns(runs, snapshot, work, ROUNDS)
    for label in ("jobs1 after", "jobs2 after"):
        measured[f"verify of {label}"] = [verify(snapshot, work / f"{label.replace(' ', '-')}.db")]
    return measured


def main(base: Path, snapshots: list[Path], out: Path, largest_of: Path) -> None:
    figures: dict[str, Any] = {}
    with TemporaryDirectory() as work:
        for snapshot in snapshots:
            figures[snapshot.name] = backfills(base, snapshot, Path(work))
            out.write_text(json.dumps(figures, indent=1) + "\n")
        blob_file = Path(work) / "largest.json"
        code = "import json, sys; from benchmarks.run import largest_checkpoint; from pathlib import Path; "
        code += "print(json.dumps(largest_checkpoint(Path(sys.argv[1]))))"
        command = [sys.executable, "-c", code, str(largest_of)]
        blob_file.write_text(subprocess.run(command, cwd=AFTER, capture_output=True, text=True, check=True).stdout)
        for mode in MODES:
            for round_number in range(ROUNDS):
                order = (("before", base), ("after", AFTER))
                for version, root in order if round_number % 2 == 0 else reversed(order):
                    figures.setdefault(f"save {mode} {version}", []).append(saves(root, mode, blob_file))
                    print(mode, version, figures[f"save {mode} {version}"][-1], file=sys.stderr, flush=True)
            out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    snapshot_paths = [Path(p).resolve() for p in sys.argv[2].split(",")]
    largest_from = Path(sys.argv[4]).resolve() if len(sys.argv) > 4 else snapshot_paths[-1]
    main(Path(sys.argv[1]), snapshot_paths, Path(sys.argv[3]), largest_from)
