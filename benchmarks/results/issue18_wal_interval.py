"""Issue 18's save p99: the background WAL checkpoint's interval, side by side in one run.

    python benchmarks/results/issue18_wal_interval.py SNAPSHOT OUT.json

`benchmarks.run.save_latency` (the benchmark's own measurement: 1,000 saves after 20 unmeasured
ones, on a target of 10,000 checkpoints with the daemon's legacy table beside them) of the
snapshot's largest checkpoint, in `dual_write` and `relational_only`, with the checkpointer
thread waiting 0.05 s (before) and 0.01 s (after) between two checkpoints. Each measurement runs
in a process of its own; the intervals take turns within each round.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[2]
INTERVALS = (0.05, 0.01)
MODES = ("dual_write", "relational_only")
ROUNDS = 3
SAVES = 1000

MEASURE = """
import json, sys
from pathlib import Path
from benchmarks import run
from migrator import wal
interval, mode, snapshot, work = float(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
wal.MIN_INTERVAL_SECONDS = interval  # read by the checkpointer thread on each of its rounds
print(json.dumps(run.save_latency(work, int(sys.argv[5]), run.largest_checkpoint(snapshot), mode)))
"""


def measure(interval: float, mode: str, snapshot: Path) -> dict[str, float]:
    with TemporaryDirectory() as work:
        command = [sys.executable, "-c", MEASURE, str(interval), mode, str(snapshot), work, str(SAVES)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(snapshot: Path, out: Path) -> None:
    figures: dict[str, list[dict[str, float]]] = {}
    for round_number in range(ROUNDS):
        for mode in MODES:
            for interval in INTERVALS if round_number % 2 == 0 else reversed(INTERVALS):
                figures.setdefault(f"{mode} {interval}", []).append(measure(interval, mode, snapshot))
                print(mode, interval, figures[f"{mode} {interval}"][-1], file=sys.stderr, flush=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
