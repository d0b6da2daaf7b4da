"""A live daemon and catch-ups at the same time: the store's writers and `ksi-migrate migrate` in
another process, on one target, for as long as you like.

    python -m verification.live --seconds 600 --layout two-files
    python -m verification.live --seconds 600 --layout daemon-files
    python -m verification.live --seconds 120 --layout postgresql --target postgresql://postgres@127.0.0.1/test

Four writer threads save checkpoints, save sessions (`INSERT OR REPLACE`, a new rowid each
time) and delete them through one store in `dual_write` mode, while a second process runs
`migrate` from the legacy tables into the same target again and again. `daemon-files` keeps the
legacy tables as the daemon does, each in its own file (`checkpoint.db`, `mcp_sessions.db`). Every catch-up must exit
0, no writer may see an error, no relational write may be left pending, and once the writers
stop, `verify` (both ways) must pass without one more catch-up: a catch-up that had written an
older row over a newer one would be seen there.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from migrator.sources import open_sources
from migrator.store import Store, open_store
from migrator.target import target_database
from migrator.verify import verify
from verification.latency import percentile

LAYOUTS = ("one-file", "two-files", "daemon-files", "postgresql", "mysql")
DAEMON_FILES = {"checkpoints": "checkpoint.db", "mcp_sessions": "mcp_sessions.db"}
"""The daemon's own layout: each legacy table in a file of its own (the `daemon-files` layout)."""
WRITERS = 4
SESSION_KEYS = 40  # a small pool, so saves replace and deletes find sessions


@dataclass
class LiveResult:
    layout: str
    seconds: float
    writes: Counter[str] = field(default_factory=Counter)
    writer_errors: list[str] = field(default_factory=list)
    catch_ups: int = 0
    failed_catch_ups: list[str] = field(default_factory=list)
    pending_repairs: int = 0
    verify_problems: list[str] = field(default_factory=list)
    save_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not (self.writer_errors or self.failed_catch_ups or self.pending_repairs or self.verify_problems)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.save_ms)
        figures = {name: getattr(self, name) for name in ("layout", "seconds", "catch_ups", "pending_repairs")}
        return {
            **figures,
            "writes": dict(self.writes),  # a Counter through asdict() would count its items instead
            "writer_errors": self.writer_errors,
            "failed_catch_ups": self.failed_catch_ups,
            "verify_problems": self.verify_problems,
            "ok": self.ok,
            # The gate's and the benchmarks' own rule (nearest rank), so a p99 means the same here.
            "save_p50_ms": percentile(ordered, 0.50) if ordered else None,
            "save_p99_ms": percentile(ordered, 0.99) if ordered else None,
            "saves": len(ordered),
        }


def run_writers(store: Store, stop: threading.Event, result: LiveResult, seed: int) -> None:
    lock = threading.Lock()

    def work(number: int) -> None:
        rng = random.Random(seed * 100 + number)
        while not stop.is_set():
            action = rng.choice(("checkpoint", "session", "session", "delete"))
            key = f"agent_{rng.randrange(SESSION_KEYS)}:conversation"
            started = time.perf_counter()
            try:
                if action == "checkpoint":
                    store.save_checkpoint({"session_queues": {}, "active_completions": {}, "n": rng.random()})
                elif action == "session":
                    blob = {"agent_id": key.split(":")[0], "tools": [{"name": "ksi_system_health"}]}
                    store.save_session(key, blob, datetime.now())
                else:
                    store.delete_session(key)
            except Exception as exc:  # noqa: BLE001 - every error a writer sees is a finding
                with lock:
                    result.writer_errors.append(f"{action}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                result.writes[action] += 1
                if action != "delete":
                    result.save_ms.append((time.perf_counter() - started) * 1000)

    threads = [
        threading.Thread(target=work, args=(number,), name=f"ksi-live-writer-{number}") for number in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def sources(legacy: list[Path]) -> list[str]:
    return [word for path in legacy for word in ("--source", str(path))]


def run_catch_ups(legacy: list[Path], target: str, stop: threading.Event, result: LiveResult) -> None:
    """`ksi-migrate migrate` in another process, over and over, until told to stop."""
    while not stop.is_set():
        done = subprocess.run(
            [sys.executable, "-m", "migrator", "migrate", *sources(legacy), "--target", target],
            capture_output=True,
            text=True,
            check=False,
        )
        result.catch_ups += 1
        if done.returncode != 0:
            result.failed_catch_ups.append(f"exit {done.returncode}: {done.stderr.strip()[-500:]}")


def run_readers(legacy: list[Path], target: str, stop: threading.Event, result: LiveResult) -> None:
    """`verify` and `archive` of the legacy file in other processes, one after the other, until
    told to stop: long reads that must never hold the daemon's writes out."""
    archives = 0
    while not stop.is_set():
        for argv in (
            ["verify", *sources(legacy), "--target", target],
            ["archive", *sources(legacy), "--out", f"{target}.archive-{archives}"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "migrator", *argv], capture_output=True, text=True, check=False
            )
            result.catch_ups += 1
            if done.returncode not in (0, 1):  # verify finds rows the writers changed since: that is 1, not a failure
                result.failed_catch_ups.append(f"{argv[0]}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
        archives += 1


def exercise(
    layout: str,
    folder: Path,
    seconds: float,
    target: str | None = None,
    seed: int = 0,
    *,
    readers: bool = False,
    sessions: int = 0,
    alone: bool = False,
) -> LiveResult:
    """Writers and catch-ups together for `seconds`, then the checks. `target` is the server's
    URL for the server layouts (an empty namespace). With `readers`, `verify` and `archive` read
    the legacy file instead of catch-ups running, over a legacy file of `sessions` fabricated
    sessions (migrated first). `alone`: the writers only, for the figures to compare with."""
    legacy = folder / "ksi.db"
    if sessions:
        from migrator.fabricate import fabricate_snapshot

        fabricate_snapshot(legacy, checkpoints=5, sessions=sessions, seed=seed)
    files = [legacy]
    if layout == "one-file":
        target = str(legacy)
        store = open_store(legacy, mode="dual_write", create=True)
    elif layout == "daemon-files":
        target = target or str(folder / "relational.db")
        daemon = {table: folder / name for table, name in DAEMON_FILES.items()}
        for path in daemon.values():
            path.touch()  # the daemon's empty files: the store creates each table in its own
        store = open_store(target, legacy=daemon, mode="dual_write", create=True)
        files = list(daemon.values())
    else:
        target = target or str(folder / "relational.db")
        with open_store(legacy, mode="legacy", create=True):
            pass  # the daemon's own file, with its tables, as it exists before any migration
        if sessions:
            subprocess.run(
                [sys.executable, "-m", "migrator", "migrate", "--source", str(legacy), "--target", target], check=True
            )
        store = open_store(target, legacy=legacy, mode="dual_write", create=True)
    result = LiveResult(layout, seconds)
    stop = threading.Event()
    alongside = (lambda *_: None) if alone else run_readers if readers else run_catch_ups
    catching_up = threading.Thread(target=alongside, args=(files, target, stop, result))
    try:
        catching_up.start()
        timer = threading.Timer(seconds, stop.set)
        timer.start()
        run_writers(store, stop, result, seed)
        catching_up.join()
        result.pending_repairs = len(store.report().pending_repairs)
    finally:
        stop.set()
        store.close()
    if not readers:  # readers leave catching up to the writers' own dual writes
        with open_sources(files) as source, target_database(target, must_exist=True) as database:
            report = verify(source, database)
        result.verify_problems = [str(mismatch) for mismatch in report.mismatches]
    return result


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=LAYOUTS, default="two-files")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--target", help="the server URL (an empty database or schema) for a server layout")
    parser.add_argument("--readers", action="store_true", help="run verify and archive beside the writers, not migrate")
    parser.add_argument("--sessions", type=int, default=0, help="fabricate and migrate this many sessions first")
    parser.add_argument("--alone", action="store_true", help="the writers only: the figures to compare with")
    args = parser.parse_args(argv)
    if args.layout in ("postgresql", "mysql") and not args.target:
        parser.error(f"--layout {args.layout} needs --target URL")
    if args.layout == "daemon-files" and args.sessions:
        parser.error("--sessions fabricates one legacy file; use another layout")
    with tempfile.TemporaryDirectory(prefix="ksi-live-") as folder:
        result = exercise(
            args.layout,
            Path(folder),
            args.seconds,
            args.target,
            readers=args.readers,
            sessions=args.sessions,
            alone=args.alone,
        )
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
