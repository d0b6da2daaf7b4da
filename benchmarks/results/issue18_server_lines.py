"""Issue 18's server backfills at `--jobs 1`: rows mapped and staged as lines on a thread, side by side.

    python benchmarks/results/issue18_server_lines.py BEFORE_CHECKOUT AFTER_CHECKOUT OUT.json SNAPSHOT...

For each snapshot and round, in turns: `migrate` (`--jobs 1`, `benchmarks.child`) into SQLite with
the after code, and into each server (a new empty schema or database each time) with the before
and the after code, each in a process of its own, with the server's own CPU seconds (its process's
utime and stime in /proc) beside the run's. The after targets of the last round are then checked
both ways with `verify`, which fails this script at the first row that differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.servers import empty_namespace  # noqa: E402 - after the path above
from verification.engines import SERVER_URLS  # noqa: E402

SERVER_PROCESSES = {"postgresql": "postgres", "mysql": "mariadbd"}
ROUNDS = {100_000: 3, 1_000_000: 2}


def server_cpu_seconds(name: str) -> float:
    """CPU seconds of every process of a server (PostgreSQL runs one per connection)."""
    pids = subprocess.run(["pgrep", "-x", SERVER_PROCESSES[name]], capture_output=True, text=True).stdout.split()
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def child(checkout: Path, operation: str, snapshot: Path, target: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.child", operation, str(snapshot), target]
    result = subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def into_server(checkout: Path, name: str, snapshot: Path, check: bool) -> dict[str, Any]:
    with empty_namespace(SERVER_URLS[name]) as url:
        before = server_cpu_seconds(name)
        figures = child(checkout, "migrate", snapshot, url)
        figures["server_cpu_s"] = server_cpu_seconds(name) - before
        if check:
            figures["verified_rows"] = child(checkout, "verify", snapshot, url)["rows"]
    return figures


def main(before: Path, after: Path, out: Path, snapshots: list[Path]) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    for snapshot in snapshots:
        size = int(snapshot.name.split("-s")[1].split("-")[0])
        rounds = ROUNDS.get(size, 2)
        for number in range(rounds):
            with tempfile.TemporaryDirectory() as work:
                figures = child(after, "migrate", snapshot, str(Path(work) / "t.db"))
            results.setdefault(f"{size} sqlite", []).append(figures)
            print(size, "sqlite", figures, file=sys.stderr, flush=True)
            for name in SERVER_URLS:
                order = [("before", before), ("after", after)]
                for label, checkout in order if number % 2 == 0 else reversed(order):
                    check = label == "after" and number == rounds - 1
                    figures = into_server(checkout, name, snapshot, check)
                    results.setdefault(f"{size} {name} {label}", []).append(figures)
                    print(size, name, label, figures, file=sys.stderr, flush=True)
            out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), [Path(p) for p in sys.argv[4:]])
