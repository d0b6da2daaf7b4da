"""Issue 18's save p99: a store's savepoint journal in memory (`engines.SAVE_PRAGMAS`), side by side.

    python benchmarks/results/issue18_save_pragmas.py SNAPSHOT OUT.json

`benchmarks.run.save_latency` (the benchmark's own measurement: 1,000 saves after 20 unmeasured
ones, on a target of 10,000 checkpoints with the daemon's legacy table beside them) of the
snapshot's largest checkpoint, in `dual_write` and `relational_only`, with the store's
connections left at SQLite's temporary-file default (before) and with `SAVE_PRAGMAS` (after):
the same code otherwise. Each measurement runs in a process of its own; the two take turns
within each round.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("before", "after")
MODES = ("dual_write", "relational_only")
ROUNDS = 4
SAVES = 1000

MEASURE = """
import json, sys
from pathlib import Path
from benchmarks import run
from migrator import engines
variant, mode, snapshot, work = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
if variant == "before":
    engines.SAVE_PRAGMAS.clear()  # read when a store opens its connections
print(json.dumps(run.save_latency(work, int(sys.argv[5]), run.largest_checkpoint(snapshot), mode)))
"""


def measure(variant: str, mode: str, snapshot: Path) -> dict[str, float]:
    with TemporaryDirectory() as work:
        command = [sys.executable, "-c", MEASURE, variant, mode, str(snapshot), work, str(SAVES)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(snapshot: Path, out: Path) -> None:
    figures: dict[str, list[dict[str, float]]] = {}
    for round_number in range(ROUNDS):
        for mode in MODES:
            for variant in VARIANTS if round_number % 2 == 0 else reversed(VARIANTS):
                figures.setdefault(f"{mode} {variant}", []).append(measure(variant, mode, snapshot))
                print(mode, variant, figures[f"{mode} {variant}"][-1], file=sys.stderr, flush=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
