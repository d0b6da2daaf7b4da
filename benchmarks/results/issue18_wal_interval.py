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


def measure(code: str, variant: object, mode: str, snapshot: Path) -> dict[str, float]:
    """`code` run in a process of its own with (variant, mode, snapshot, scratch folder, saves);
    the JSON object it prints last."""
    with TemporaryDirectory() as work:
        command = [sys.executable, "-c", code, str(variant), mode, str(snapshot), work, str(SAVES)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def saves_in_turns(code: str, variants: tuple[object, ...], snapshot: Path, out: Path, rounds: int = ROUNDS) -> None:
    """Each mode and variant measured `rounds` times, the variants taking turns within a round."""
    figures: dict[str, list[dict[str, float]]] = {}
    for round_number in range(rounds):
        for mode in MODES:
            for variant in variants if round_number % 2 == 0 else reversed(variants):
                figures.setdefault(f"{mode} {variant}", []).append(measure(code, variant, mode, snapshot))
                print(mode, variant, figures[f"{mode} {variant}"][-1], file=sys.stderr, flush=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")


def main(snapshot: Path, out: Path) -> None:
    saves_in_turns(MEASURE, INTERVALS, snapshot, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
