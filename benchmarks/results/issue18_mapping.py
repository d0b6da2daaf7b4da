"""Issue 18: a cheaper mapping (record splits written out, `{"name": ...}` tools mapped on their
own), side by side with the code before in one run.

    python -m benchmarks.results.issue18_mapping BASE_CHECKOUT SNAPSHOT[,SNAPSHOT...] SAVE_SNAPSHOT OUT.json

BASE_CHECKOUT is the code before (`git worktree add BASE 72e7840`). Per snapshot, `ROUNDS`
rounds of `minimal_reference.py`, `migrate --jobs 1` and `--jobs 2`, before and after, taking
turns, each in a process of its own (`benchmarks.child`); then both after targets are verified
exact. Then `SAVE_ROUNDS` rounds of the largest checkpoint of SAVE_SNAPSHOT saved 1,000 times in
`dual_write` and in `relational_only` (`benchmarks.run.save_latency`), before and after in turns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.results.issue18_side_by_side import AFTER
from benchmarks.results.issue18_staging import in_turns, verify

ROUNDS = {"legacy-s100000-": 3}  # by snapshot name prefix (100k sessions); others take DEFAULT_ROUNDS
DEFAULT_ROUNDS = 2
SAVE_ROUNDS = 3
SAVES = 1000
MODES = ("dual_write", "relational_only")

MEASURE_SAVE = """
import json, sys
from pathlib import Path
from benchmarks import run
mode, snapshot, work, saves = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
print(json.dumps(run.save_latency(work, saves, run.largest_checkpoint(snapshot), mode)))
"""


def save(root: Path, mode: str, snapshot: Path) -> dict[str, Any]:
    with TemporaryDirectory() as work:
        command = [sys.executable, "-c", MEASURE_SAVE, mode, str(snapshot), work, str(SAVES)]
        environment = {**os.environ, "PYTHONPATH": str(root)}
        result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def saves_in_turns(base: Path, snapshot: Path) -> dict[str, list[dict[str, Any]]]:
    measured: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(SAVE_ROUNDS):
        sides = (("before", base), ("after", AFTER))
        for mode in MODES:
            for side, root in sides if round_number % 2 == 0 else reversed(sides):
                label = f"save {mode} {side}"
                measured.setdefault(label, []).append(save(root, mode, snapshot))
                print(label, measured[label][-1], file=sys.stderr, flush=True)
    return measured


def main(base: Path, snapshots: list[Path], save_snapshot: Path, out: Path) -> None:
    figures: dict[str, dict[str, list[dict[str, Any]]]] = {}
    runs = (
        ("minimal", AFTER, "minimal"),
        ("jobs1 before", base, "migrate"),
        ("jobs1 after", AFTER, "migrate"),
        ("jobs2 before", base, "migrate-j2"),
        ("jobs2 after", AFTER, "migrate-j2"),
    )
    with TemporaryDirectory() as work:
        for snapshot in snapshots:
            rounds = next((n for prefix, n in ROUNDS.items() if snapshot.name.startswith(prefix)), DEFAULT_ROUNDS)
            measured = figures[snapshot.name] = in_turns(runs, snapshot, Path(work), rounds)
            for label in ("jobs1 after", "jobs2 after"):
                measured[f"verify of {label}"] = [verify(snapshot, Path(work) / f"{label.replace(' ', '-')}.db")]
            out.write_text(json.dumps(figures, indent=1) + "\n")
    figures["saves"] = saves_in_turns(base, save_snapshot)
    out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        [Path(p).resolve() for p in sys.argv[2].split(",")],
        Path(sys.argv[3]).resolve(),
        Path(sys.argv[4]),
    )
