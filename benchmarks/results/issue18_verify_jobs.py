"""`verify --jobs 2` beside `verify` and the backfill it checks, side by side in one run.

    python -m benchmarks.results.issue18_verify_jobs SNAPSHOT[,SNAPSHOT...] OUT.json

Per snapshot: one `migrate --jobs 1` makes the target; then `ROUNDS` rounds of `migrate --jobs 1`
(into a target of its own, for the backfill's rows per second), `verify` and `verify --jobs 2` of
the first target, taking turns (every other round in reverse order), each in a process of its
own (`benchmarks.child`, which fails unless the target verifies exact). The issue 6 bar: verify
rows/s at least the backfill's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.results.issue18_side_by_side import AFTER, child

ROUNDS = 2


def measured_in_place(operation: str, snapshot: Path, target: Path) -> dict[str, Any]:
    """An operation that reads the target, which `child` would remove first."""
    command = [sys.executable, "-m", "benchmarks.child", operation, str(snapshot), str(target)]
    environment = {**os.environ, "PYTHONPATH": str(AFTER)}
    result = subprocess.run(command, cwd=AFTER, env=environment, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def in_turns(snapshot: Path, work: Path) -> dict[str, list[dict[str, Any]]]:
    target, again = work / "verified.db", work / "migrated.db"
    measured: dict[str, list[dict[str, Any]]] = {"first migrate": [child(AFTER, "migrate", snapshot, target)]}
    runs = (
        ("migrate", lambda: child(AFTER, "migrate", snapshot, again)),
        ("verify", lambda: measured_in_place("verify", snapshot, target)),
        ("verify-j2", lambda: measured_in_place("verify-j2", snapshot, target)),
    )
    for round_number in range(ROUNDS):
        for label, run in runs if round_number % 2 == 0 else reversed(runs):
            measured.setdefault(label, []).append(run())
            print(snapshot.name, label, measured[label][-1], file=sys.stderr, flush=True)
    return measured


def main(snapshots: list[Path], out: Path) -> None:
    figures: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with TemporaryDirectory() as work:
        for snapshot in snapshots:
            figures[snapshot.name] = in_turns(snapshot, Path(work))
            out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main([Path(p).resolve() for p in sys.argv[1].split(",")], Path(sys.argv[2]))
