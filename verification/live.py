"""A live daemon and catch-ups at the same time: the store's writers and `ksi-migrate migrate` in
another process, on one target, for as long as you like.

    python -m verification.live --seconds 600 --layout two-files
    python -m verification.live --seconds 120 --layout postgresql --target postgresql://postgres@127.0.0.1/test

Four writer threads save checkpoints, save sessions (`INSERT OR REPLACE`, a new rowid each
time) and delete them through one store in `dual_write` mode, while a second process runs
`migrate` from the legacy tables into the same target again and again. Every catch-up must exit
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
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from migrator.legacy import LegacySource
from migrator.store import Store, open_store
from migrator.target import target_database
from migrator.verify import verify

LAYOUTS = ("one-file", "two-files", "postgresql", "mysql")
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
        p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else None
        figures = {k: v for k, v in asdict(self).items() if k != "save_ms"}
        return {**figures, "ok": self.ok, "save_p99_ms": p99, "saves": len(ordered)}


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


def run_catch_ups(legacy: Path, target: str, stop: threading.Event, result: LiveResult) -> None:
    """`ksi-migrate migrate` in another process, over and over, until told to stop."""
    while not stop.is_set():
        done = subprocess.run(
            [sys.executable, "-m", "migrator", "migrate", "--source", str(legacy), "--target", target],
            capture_output=True,
            text=True,
            check=False,
        )
        result.catch_ups += 1
        if done.returncode != 0:
            result.failed_catch_ups.append(f"exit {done.returncode}: {done.stderr.strip()[-500:]}")


def exercise(layout: str, folder: Path, seconds: float, target: str | None = None, seed: int = 0) -> LiveResult:
    """Writers and catch-ups together for `seconds`, then the checks. `target` is the server's
    URL for the server layouts (an empty namespace)."""
    legacy = folder / "ksi.db"
    if layout == "one-file":
        target = str(legacy)
        store = open_store(legacy, mode="dual_write", create=True)
    else:
        target = target or str(folder / "relational.db")
        with open_store(legacy, mode="legacy", create=True):
            pass  # the daemon's own file, with its tables, as it exists before any migration
        store = open_store(target, legacy=legacy, mode="dual_write", create=True)
    result = LiveResult(layout, seconds)
    stop = threading.Event()
    catching_up = threading.Thread(target=run_catch_ups, args=(legacy, target, stop, result))
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
    with LegacySource(legacy) as source, target_database(target, must_exist=True) as database:
        report = verify(source, database)
    result.verify_problems = [str(mismatch) for mismatch in report.mismatches]
    return result


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=LAYOUTS, default="two-files")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--target", help="the server URL (an empty database or schema) for a server layout")
    args = parser.parse_args(argv)
    if args.layout in ("postgresql", "mysql") and not args.target:
        parser.error(f"--layout {args.layout} needs --target URL")
    with tempfile.TemporaryDirectory(prefix="ksi-live-") as folder:
        result = exercise(args.layout, Path(folder), args.seconds, args.target)
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
