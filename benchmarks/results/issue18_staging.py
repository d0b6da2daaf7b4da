"""Issue 18's `--jobs 2` bar: workers that stage rows for the writer, side by side in one run.

    python -m benchmarks.results.issue18_staging BASE_CHECKOUT SNAPSHOT[,SNAPSHOT...] OUT.json

BASE_CHECKOUT is the code before (`git worktree add BASE d063c02`): its workers send mapped
rows back through a pipe and the writer binds them with `executemany`. This checkout's workers
write them into staging files that the writer copies with `INSERT ... SELECT` (`migrator.staging`).
Per snapshot and round, in turns: `minimal_reference.py`, `migrate --jobs 1`, and `--jobs 2`
before and after, each in a process of its own (`benchmarks.child`). After the last round the
`--jobs 2` target of this checkout is verified against the snapshot (`verify`, exact).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.results.issue18_side_by_side import AFTER, child

ROUNDS = 2
RUNS = (("minimal", AFTER, "minimal"), ("jobs1", AFTER, "migrate"), ("jobs2 before", None, "migrate-j2"))
RUNS_AFTER = (("jobs2 after", AFTER, "migrate-j2"),)


def verify(snapshot: Path, target: Path) -> dict[str, Any]:
    """`benchmarks.child verify`, which fails unless the target restores the snapshot exactly
    (`child` would remove the target first: it is made for operations that write one)."""
    command = [sys.executable, "-m", "benchmarks.child", "verify", str(snapshot), str(target)]
    result = subprocess.run(command, cwd=AFTER, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def in_turns(
    runs: Sequence[tuple[str, Path, str]], snapshot: Path, work: Path, rounds: int = ROUNDS
) -> dict[str, list[dict[str, Any]]]:
    """Each (label, checkout, operation) run `rounds` times on the snapshot, in turns, every other
    round in reverse order, each in a process of its own; its target is `work`/LABEL.db."""
    measured: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(rounds):
        for label, root, operation in runs if round_number % 2 == 0 else reversed(runs):
            target = work / f"{label.replace(' ', '-')}.db"
            measured.setdefault(label, []).append(child(root, operation, snapshot, target))
            print(snapshot.name, label, measured[label][-1], file=sys.stderr, flush=True)
    return measured


def main(base: Path, snapshots: list[Path], out: Path) -> None:
    figures: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with TemporaryDirectory() as work:
        for snapshot in snapshots:
            runs = [(label, root or base, operation) for label, root, operation in (*RUNS, *RUNS_AFTER)]
            measured = figures[snapshot.name] = in_turns(runs, snapshot, Path(work))
            measured["verify of jobs2 after"] = [verify(snapshot, Path(work) / "jobs2-after.db")]
            out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p).resolve() for p in sys.argv[2].split(",")], Path(sys.argv[3]))
