"""Issue 18's save p99: a store's savepoint journal in memory (`engines.SAVE_PRAGMAS`), side by side.

    python -m benchmarks.results.issue18_save_pragmas SNAPSHOT OUT.json

`benchmarks.run.save_latency` (the benchmark's own measurement: 1,000 saves after 20 unmeasured
ones, on a target of 10,000 checkpoints with the daemon's legacy table beside them) of the
snapshot's largest checkpoint, in `dual_write` and `relational_only`, with the store's
connections left at SQLite's temporary-file default (before) and with `SAVE_PRAGMAS` (after):
the same code otherwise. Each measurement runs in a process of its own; the two take turns
within each round.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.results.issue18_wal_interval import saves_in_turns

VARIANTS = ("before", "after")
ROUNDS = 4

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


def main(snapshot: Path, out: Path) -> None:
    saves_in_turns(MEASURE, VARIANTS, snapshot, out, ROUNDS)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
