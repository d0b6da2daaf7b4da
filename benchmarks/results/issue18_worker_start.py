"""Issue 18: `--jobs 2` whose writer maps batches while its worker starts, side by side in one run.

    python -m benchmarks.results.issue18_worker_start BASE_CHECKOUT SNAPSHOT[,SNAPSHOT...] OUT.json

BASE_CHECKOUT is the code before (`git worktree add BASE 914e4cb`), whose main process waits
for its worker to start (a third of a second or more) before the load begins. Per snapshot,
`ROUNDS` rounds of `minimal_reference.py` and `migrate --jobs 2` before and after, taking turns,
each in a process of its own (`benchmarks.child`); then the after target is verified exact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.results.issue18_side_by_side import AFTER
from benchmarks.results.issue18_staging import in_turns, verify

ROUNDS = 4


def main(base: Path, snapshots: list[Path], out: Path) -> None:
    figures: dict[str, dict[str, list[dict[str, Any]]]] = {}
    runs = (("minimal", AFTER, "minimal"), ("jobs2 before", base, "migrate-j2"), ("jobs2 after", AFTER, "migrate-j2"))
    with TemporaryDirectory() as work:
        for snapshot in snapshots:
            measured = figures[snapshot.name] = in_turns(runs, snapshot, Path(work), ROUNDS)
            measured["verify of jobs2 after"] = [verify(snapshot, Path(work) / "jobs2-after.db")]
            out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p).resolve() for p in sys.argv[2].split(",")], Path(sys.argv[3]))
