"""Issue 11, plain `migrate` before and after, side by side in one run (issue11-plain-migrate.md).

    python benchmarks/results/issue11_side_by_side.py BASE_CHECKOUT SNAPSHOT CHANGED_SNAPSHOT ROUNDS OUT.json

BASE_CHECKOUT is the code before (`git archive e008f16^ | tar -x -C BASE_CHECKOUT`); this
checkout is the code after, run with `--jobs 1` (the code before has no workers). Each round runs
both sides in turn (the order flips every round, so a busy machine weighs on both alike): a fresh
load of SNAPSHOT into an empty target, a catch-up from the same SNAPSHOT (nothing changed), and a
catch-up from CHANGED_SNAPSHOT. Every run is the CLI in a process of its own; its wall time and
CPU seconds (user + system, this process's children) are recorded.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

AFTER = Path(__file__).resolve().parents[2]
PHASES = ("fresh", "unchanged catch-up", "changed catch-up")


def run_migrate(root: Path, source: Path, target: Path, extra: list[str]) -> tuple[float, float]:
    """One `migrate` run of the code in `root`: (wall seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "migrator", "migrate", "--source", str(source), "--target", str(target), *extra]
    subprocess.run(command, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(base: Path, snapshot: Path, changed: Path, rounds: int, out: Path) -> None:
    sides: dict[str, tuple[Path, list[str]]] = {"before": (base, []), "after": (AFTER, ["--jobs", "1"])}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(rounds):
            names = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            for name in names:
                root, extra = sides[name]
                target = Path(folder) / f"{name}.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
                load = os.getloadavg()[0]
                for phase, source in zip(PHASES, (snapshot, snapshot, changed), strict=True):
                    wall, cpu = run_migrate(root, source, target, extra)
                    row = {"round": round_number, "side": name, "phase": phase, "wall": wall, "cpu": cpu, "load": load}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
