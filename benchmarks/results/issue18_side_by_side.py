"""Issue 18, before and after, side by side in one run (the figures in issue18-small-runs.md).

    python benchmarks/results/issue18_side_by_side.py BASE_CHECKOUT SNAPSHOT[,SNAPSHOT...] OUT.json

BASE_CHECKOUT is the code before (`git archive 2c4bacb | tar -x -C BASE_CHECKOUT`); this
checkout is the code after. Every measured operation runs in a process of its own through
`benchmarks.child` (before: that checkout's own), the operations taking turns within each
round, so that a busy machine weighs on all of them alike. Each backfill reports its wall time
and CPU seconds; saves report nearest-rank percentiles of wall and thread CPU time.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

AFTER = Path(__file__).resolve().parents[2]
ROUNDS = 2
SAVES = 300


def child(root: Path, operation: str, source: Path, target: Path) -> dict[str, Any]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.child", operation, str(source), str(target)]
    environment = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


SAVE_CODE = """
import json, random, sqlite3, sys, time
from pathlib import Path
from benchmarks.run import SEED, save_blob
from migrator.store import open_store
base, target, mode, blob_file, samples = sys.argv[1:]
for suffix in ("", "-wal", "-shm"):
    Path(f"{target}{suffix}").unlink(missing_ok=True)
with sqlite3.connect(base) as source, sqlite3.connect(target) as copy:
    source.backup(copy)
blob = json.loads(Path(blob_file).read_text()) if blob_file != "-" else save_blob(random.Random(SEED))
store = open_store(target, mode=mode)
for _ in range(20):
    store.save_checkpoint(blob)
wall, cpu = [], []
for _ in range(int(samples)):
    started, thread = time.perf_counter_ns(), time.thread_time_ns()
    store.save_checkpoint(blob)
    cpu.append(time.thread_time_ns() - thread)
    wall.append(time.perf_counter_ns() - started)
store.close()
print(json.dumps([wall, cpu]))
"""


def saves(root: Path, base: Path, mode: str, blob_file: str) -> tuple[list[int], list[int]]:
    command = [sys.executable, "-c", SAVE_CODE, str(base), str(base.with_name("save-copy.db")), mode, blob_file]
    environment = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [*command, str(SAVES)], cwd=root, env=environment, capture_output=True, text=True, check=True
    )
    wall, cpu = json.loads(result.stdout)
    return wall, cpu


def rank(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1e6


def gate_seconds(root: Path, source: Path, target: Path, workers: int) -> float:
    command = [
        sys.executable, "-m", "pytest", "verification/", "-q", "-p", "no:cacheprovider", "--ksi-snapshot",
        str(source), "--ksi-target", str(target), "--ksi-signoff-dir", str(target.with_name(f"so-{workers}")),
        "-n", str(workers), "--ksi-max-checkpoint-save-ms", "60000", "--ksi-max-session-lookup-ms", "60000",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    subprocess.run(command, cwd=root, env=environment, capture_output=True, check=True)
    return time.perf_counter() - started


def main(base: Path, snapshots: list[Path], out: Path) -> None:
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "load": os.getloadavg()}
    operations = [("before migrate", base, "migrate"), ("after --jobs 1", AFTER, "migrate")]
    operations += [("after --jobs 2", AFTER, "migrate-j2"), ("minimal reference", AFTER, "minimal")]
    for snapshot in snapshots:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in operations}
        for round_number in range(ROUNDS):
            shift = round_number % len(operations)
            for name, root, operation in operations[shift:] + operations[:shift]:
                runs[name].append(child(root, operation, snapshot, snapshot.with_name(f"side-{operation}.db")))
                print(snapshot.name, name, runs[name][-1], flush=True)
        results[f"backfill {snapshot.name}"] = runs
    largest = snapshots[-1].with_name("largest-checkpoint.json")
    with sqlite3.connect(f"file:{snapshots[-1]}?mode=ro", uri=True) as connection:
        query = "SELECT checkpoint_data FROM checkpoints ORDER BY length(CAST(checkpoint_data AS BLOB)) DESC LIMIT 1"
        largest.write_text(connection.execute(query).fetchone()[0])
    save_target = snapshots[-1].with_name("side-save-base.db")
    child(AFTER, "migrate", snapshots[0], save_target)  # a target of checkpoints and sessions, legacy tables added
    with sqlite3.connect(save_target) as connection, sqlite3.connect(f"file:{snapshots[0]}?mode=ro", uri=True) as src:
        connection.execute(src.execute("SELECT sql FROM sqlite_master WHERE name = 'checkpoints'").fetchone()[0])
        connection.execute(src.execute("SELECT sql FROM sqlite_master WHERE name = 'mcp_sessions'").fetchone()[0])
        newest = src.execute("SELECT id, timestamp, checkpoint_data FROM checkpoints ORDER BY id DESC LIMIT 5")
        connection.executemany("INSERT INTO checkpoints VALUES (?, ?, ?)", newest.fetchall())
    for blob_name, blob_file in (("the bar's checkpoint", "-"), ("largest real-shaped", str(largest))):
        for mode in ("dual_write", "relational_only"):
            samples: dict[str, tuple[list[int], list[int]]] = {"before": ([], []), "after": ([], [])}
            for round_number in range(ROUNDS):
                order = ("before", "after") if round_number % 2 == 0 else ("after", "before")
                for version in order:
                    wall, cpu = saves(base if version == "before" else AFTER, save_target, mode, blob_file)
                    samples[version][0].extend(wall)
                    samples[version][1].extend(cpu)
            for version, (wall, cpu) in samples.items():
                figures = {f"p{int(q * 100)}_ms": rank(wall, q) for q in (0.5, 0.95, 0.99)}
                figures |= {"cpu_p50_ms": rank(cpu, 0.5), "cpu_p99_ms": rank(cpu, 0.99), "samples": len(wall)}
                results[f"save {blob_name} {mode} {version}"] = figures
                print(blob_name, mode, version, figures, flush=True)
    gate_target = snapshots[-1].with_name("side-gate-target.db")
    child(AFTER, "migrate", snapshots[-1], gate_target)
    for version, root in (("before", base), ("after", AFTER)):
        for workers in (0, 2):
            seconds = gate_seconds(root, snapshots[-1], gate_target, workers)
            results[f"gate {version} -n {workers}"] = seconds
            print("gate", version, workers, round(seconds, 1), flush=True)
    results["load_after"] = os.getloadavg()
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2].split(",")], Path(sys.argv[3]))
