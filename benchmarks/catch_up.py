"""The catch-up after the daemon's shutdown save, by rowid (before issue 16) and by key (after).

    python -m benchmarks.catch_up [--sessions 100000] [--out bench-results]

The daemon saves every cached session with `INSERT OR REPLACE` at shutdown, which gives each row
a new rowid even when nothing in it changed. This benchmark migrates a fabricated snapshot, saves
every session again that way, unchanged, and times the catch-up that follows, twice, from the
same migrated target, each in its own process:

- **by rowid**: the catch-up as it was before issue 16, sessions matched by rowid alone (the
  product's `_by_key` switched off in that process, nothing else changed): every old rowid is
  removed with its tools, and every session mapped and written again;
- **by key**: the product as it is: each session is found by its key and moved in place.

The session figures come from the catch-up's own report: sessions moved, written, removed, and
the tool rows written (mapped and inserted). `tool_rows_changed` and `session_rows_changed` do
not trust the report: they compare the target after the catch-up with the one before, row by row
in SQLite itself (its rowid and every column), and count the rows that are not there unchanged,
so a row updated in place (a tool pointed at a new rowid) counts as well as one written again.
Both targets are then verified against the snapshot; a catch-up with a wrong result voids the
benchmark. Run from an older checkout, the same script measures that release's catch-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from benchmarks.child import peak_rss_mb
from benchmarks.run import ROOT, cached_snapshot, log

MODES = ("by_rowid", "by_key")
FIGURES = ("moved", "written", "rewritten", "deleted", "unchanged", "child_rows_written")
COUNTED = ("tool_rows_changed", "session_rows_changed")


def save_all_again(snapshot: Path) -> None:
    """The daemon's shutdown save: every session, unchanged, with INSERT OR REPLACE, in one commit."""
    with closing(sqlite3.connect(snapshot)) as daemon, daemon:
        rows = daemon.execute("SELECT session_key, session_data, last_seen FROM mcp_sessions ORDER BY rowid")
        daemon.executemany("INSERT OR REPLACE INTO mcp_sessions VALUES (?, ?, ?)", rows.fetchall())


def child(mode: str, source: Path, target: Path) -> None:
    """One catch-up in this process; prints its seconds, peak RSS and session figures as JSON."""
    import importlib
    import time

    from migrator.legacy import LegacySource
    from migrator.target import target_database
    from migrator.verify import verify

    backfill_module: Any = importlib.import_module("migrator.backfill")  # the module: the package exports the function
    if mode == "by_rowid":
        backfill_module._by_key = lambda *_: False  # the catch-up before issue 16, nothing else changed
    with LegacySource(source) as legacy, target_database(target) as database:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        report = backfill_module.backfill(legacy, database)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
        rss = peak_rss_mb()
        ok = verify(legacy, database).ok
    (sessions,) = [t for t in report.tables if t.table == "mcp_sessions"]
    figures = {name: getattr(sessions, name) for name in FIGURES}
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "max_rss_mb": rss, "verified": ok, **figures}))


def cpu_seconds() -> float:
    """This process's user and system time: on a shared machine, steadier than the wall clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(mode: str, source: Path, target: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.catch_up", "--child", mode, str(source), str(target)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"catch-up {mode} failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    if not figures["verified"]:
        raise SystemExit(f"catch-up {mode} left a target that does not verify: the benchmark is void")
    return figures


def rows_changed(before: Path, after: Path) -> dict[str, int]:
    """Rows of `after` that `before` does not hold identically (same SQLite rowid, every column
    equal), for the tool and session tables: what a catch-up wrote or updated, counted by SQLite."""
    with closing(sqlite3.connect(f"file:{after}?mode=ro", uri=True)) as connection:
        connection.execute("ATTACH DATABASE ? AS before", (f"file:{before}?mode=ro",))
        return {
            f"{name}_rows_changed": connection.execute(
                f"SELECT count(*) FROM (SELECT rowid, * FROM main.{table} EXCEPT SELECT rowid, * FROM before.{table})"
            ).fetchone()[0]
            for name, table in (("tool", "mcp_session_tool"), ("session", "mcp_session"))
        }


def run(sessions: int, out: Path) -> dict[str, Any]:
    snapshot = cached_snapshot(sessions, 0)
    results: dict[str, Any] = {"sessions": sessions}
    with tempfile.TemporaryDirectory(prefix="ksi-bench-catch-up-") as scratch:
        work = Path(scratch)
        source, migrated = work / "legacy.db", work / "migrated.db"
        shutil.copy(snapshot, source)
        log(f"migrating {sessions:,} sessions")
        subprocess.run([sys.executable, "-m", "benchmarks.child", "migrate", str(source), str(migrated)], check=True)
        save_all_again(source)
        for mode in MODES:
            target = work / f"{mode}.db"
            shutil.copy(migrated, target)
            log(f"catch-up {mode}")
            results[mode] = measure(mode, source, target)
            results[mode] |= rows_changed(migrated, target)
    out.mkdir(parents=True, exist_ok=True)
    (out / "catch_up.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "catch_up.md").write_text(markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Catch-up after INSERT OR REPLACE of {results['sessions']:,} unchanged sessions",
        "",
        "| | " + " | ".join(MODES) + " |",
        "| --- | " + " | ".join("---" for _ in MODES) + " |",
    ]
    for name in ("seconds", "cpu_seconds", "max_rss_mb", *FIGURES, *COUNTED):
        cells = [results[mode][name] for mode in MODES]
        shown = [f"{cell:,.1f}" if isinstance(cell, float) else f"{cell:,}" for cell in cells]
        lines.append(f"| {name} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.catch_up", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions in the snapshot (default 100000)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for catch_up.json and .md")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SOURCE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, source, target = args.child
        child(mode, Path(source), Path(target))
        return 0
    print(markdown(run(args.sessions, args.out)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
