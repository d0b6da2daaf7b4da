"""Issue 18's save p99 in `dual_write`: which saves are slow, and how far apart.

    python benchmarks/results/issue18_save_stalls.py SNAPSHOT OUT.json

The benchmark's own save measurement (`benchmarks.run.save_latency`'s target: 10,000 checkpoints
with the daemon's legacy table beside them; 20 unmeasured saves, then 1,000) of the snapshot's
largest checkpoint, back to back, with each save's time kept in order. The slowest 1% are listed
with the gaps between them, once with the writer's own WAL checkpoint at `wal.BACKSTOP_PAGES` and
once at twice that: if the slow saves are the writer's backstop checkpoints, the gaps double.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[2]
SAVES = 1000

MEASURE = """
import json, sys, time
from pathlib import Path
from benchmarks import run
from migrator import wal
from migrator.store import open_store
factor, snapshot, work = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
wal.BACKSTOP_PAGES *= factor  # read when the store opens
blob = run.largest_checkpoint(snapshot)
target = work / "save-target.db"
run.measure("migrate", run.cached_snapshot(0, run.SAVE_TARGET_CHECKPOINTS), target, fresh=True)
run._add_newest_legacy_checkpoints(run.cached_snapshot(0, run.SAVE_TARGET_CHECKPOINTS), target, keep=5)
store = open_store(target, mode="dual_write")
for _ in range(20):
    store.save_checkpoint(blob)
times = []
for _ in range(int(sys.argv[4])):
    started = time.perf_counter_ns()
    store.save_checkpoint(blob)
    times.append((time.perf_counter_ns() - started) / 1e6)
store.close()
print(json.dumps({"backstop_pages": wal.BACKSTOP_PAGES, "times_ms": times}))
"""


def measure(factor: int, snapshot: Path) -> dict[str, object]:
    with TemporaryDirectory() as work:
        command = [sys.executable, "-c", MEASURE, str(factor), str(snapshot), work, str(SAVES)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    times = figures.pop("times_ms")
    ranked = sorted(times)
    slowest = sorted(i for i, t in enumerate(times) if t >= ranked[-(SAVES // 100)])
    figures.update(
        p50_ms=ranked[SAVES // 2 - 1],
        p99_ms=ranked[SAVES * 99 // 100 - 1],
        slowest_1pct_at=slowest,
        gaps=[b - a for a, b in itertools.pairwise(slowest)],
    )
    return figures


def main(snapshot: Path, out: Path) -> None:
    figures = [measure(factor, snapshot) for factor in (1, 2, 1, 2)]
    for each in figures:
        print(json.dumps(each), file=sys.stderr, flush=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
