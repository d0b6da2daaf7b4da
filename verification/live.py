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
import itertools
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
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
KEEP_CHECKPOINTS = 5  # the daemon's pruning: the newest five checkpoints are kept


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
    stale_rows: list[str] = field(default_factory=list)
    audited_catch_ups: int = 0
    save_ms: list[float] = field(default_factory=list, repr=False)
    ledger: Ledger = field(default_factory=lambda: Ledger(), repr=False)

    @property
    def ok(self) -> bool:
        failures = (self.writer_errors, self.failed_catch_ups, self.pending_repairs, self.verify_problems)
        return not (any(failures) or self.stale_rows)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.save_ms)
        named = ("layout", "seconds", "catch_ups", "audited_catch_ups", "pending_repairs")
        figures = {name: getattr(self, name) for name in named}
        return {
            **figures,
            "writes": dict(self.writes),  # a Counter through asdict() would count its items instead
            "writer_errors": self.writer_errors,
            "failed_catch_ups": self.failed_catch_ups,
            "verify_problems": self.verify_problems,
            "stale_rows": self.stale_rows,
            "ok": self.ok,
            # The gate's and the benchmarks' own rule (nearest rank), so a p99 means the same here.
            "save_p50_ms": percentile(ordered, 0.50) if ordered else None,
            "save_p99_ms": percentile(ordered, 0.99) if ordered else None,
            "save_max_ms": ordered[-1] if ordered else None,  # a save held out by a lock would show here
            "saves": len(ordered),
        }


@dataclass
class Op:
    """One write of a session key as its writer saw it: when it began and ended (monotonic
    seconds; infinity while it runs, or when it failed), and the version saved (None for a delete)."""

    started: float
    version: int | None
    ended: float = math.inf


@dataclass
class Ledger:
    """Every write the writers completed, for the stale-row audit after each catch-up. Each
    writer owns its session keys, so the writes of one key never overlap and their order is
    the order they committed in."""

    sessions: dict[str, list[Op]] = field(default_factory=dict)
    checkpoints: list[tuple[float, int]] = field(default_factory=list)  # (ended, id)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_version(self) -> int:
        with self._lock:
            return next(self._versions)

    def session_writing(self, key: str, version: int | None) -> Op:
        """A write about to begin, listed before it can be seen: a read may see it before it ends."""
        op = Op(time.monotonic(), version)
        with self._lock:
            self.sessions.setdefault(key, []).append(op)
        return op

    def session_ops(self, key: str) -> list[Op]:
        with self._lock:
            return [replace(op) for op in self.sessions.get(key, [])]

    def session_keys(self) -> list[str]:
        with self._lock:
            return list(self.sessions)

    def checkpoint_saved(self, ended: float, checkpoint_id: int) -> None:
        with self._lock:
            self.checkpoints.append((ended, checkpoint_id))


def stale_session(key: str, ops: list[Op], began: float, read_ended: float, found: int | None) -> str | None:
    """Why the target's version of this session (`found`, None when absent), read after a
    catch-up that began at `began`, is older than the legacy row it must hold, or None when it
    is not. It may hold what the last write finished before the catch-up began left, or what
    any later write that had begun before the read ended left; anything else was undone."""
    before = [op for op in ops if op.ended < began]
    possible = ([before[-1].version] if before else [None]) + [
        op.version for op in ops[len(before) :] if op.started < read_ended
    ]
    if found in possible:
        return None
    expected = " or ".join("absent" if version is None else f"version {version}" for version in possible)
    held = "absent" if found is None else f"version {found}"
    return f"session {key}: the target holds {held} after a catch-up, where the source held {expected}"


def stale_checkpoints(saved: list[tuple[float, int]], began: float, held: list[int]) -> str | None:
    """Why the checkpoint ids the target holds after a catch-up that began at `began` are older
    than the legacy table's, or None. Ids are handed out in commit order, so once checkpoint N
    was saved the legacy table never again holds an id at or below N - 5 (pruned), and holds N
    until five newer ones are saved."""
    done = [checkpoint_id for ended, checkpoint_id in saved if ended < began]
    if not done:
        return None
    newest = max(done)
    pruned = [checkpoint_id for checkpoint_id in held if checkpoint_id <= newest - KEEP_CHECKPOINTS]
    if pruned:
        return f"checkpoints {pruned}: pruned before a catch-up began (checkpoint {newest} saved), held after it"
    if newest not in held and not any(checkpoint_id >= newest + KEEP_CHECKPOINTS for checkpoint_id in held):
        return f"checkpoint {newest}: saved before a catch-up began, missing after it (held: {sorted(held)})"
    return None


def audit(reader: Store, ledger: Ledger, began: float) -> list[str]:
    """The stale rows of the target, read through a read-only store, after a catch-up that
    began at `began` (monotonic seconds)."""
    found = []
    held = [checkpoint_id for checkpoint_id, _ in reader.list_checkpoints()]
    problem = stale_checkpoints(list(ledger.checkpoints), began, held)
    if problem:
        found.append(problem)
    for key in ledger.session_keys():
        blob = reader.get_session(key)
        read_ended = time.monotonic()
        ops = ledger.session_ops(key)  # after the read: every write it could have seen is listed
        problem = stale_session(key, ops, began, read_ended, None if blob is None else blob["version"])
        if problem:
            found.append(problem)
    return found


def run_writers(store: Store, stop: threading.Event, result: LiveResult, seed: int) -> None:
    lock = threading.Lock()
    ledger = result.ledger

    def work(number: int) -> None:
        rng = random.Random(seed * 100 + number)
        while not stop.is_set():
            action = rng.choice(("checkpoint", "session", "session", "delete"))
            # Each writer owns its keys, so that the writes of a key are in the order they committed.
            key = f"agent_{number}_{rng.randrange(SESSION_KEYS // WRITERS)}:conversation"
            version = ledger.next_version() if action == "session" else None
            op = ledger.session_writing(key, version) if action != "checkpoint" else None
            started = time.perf_counter()
            try:
                if action == "checkpoint":
                    saved = store.save_checkpoint({"session_queues": {}, "active_completions": {}, "n": rng.random()})
                    ledger.checkpoint_saved(time.monotonic(), saved)
                elif action == "session":
                    blob = {"agent_id": key.split(":")[0], "tools": [{"name": "ksi_system_health"}], "version": version}
                    store.save_session(key, blob, datetime.now())
                else:
                    store.delete_session(key)
                if op is not None:
                    op.ended = time.monotonic()
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
    """`ksi-migrate migrate` in another process, over and over, until told to stop. After each
    one that succeeded, the target is read back: no row may be older than the legacy row it had
    to hold once the catch-up began (`audit`)."""
    reader: Store | None = None
    try:
        while not stop.is_set():
            began = time.monotonic()
            if run_catch_up(legacy, target, result):
                reader = reader or open_store(target, mode="relational_only", read_only=True)
                result.stale_rows += audit(reader, result.ledger, began)
                result.audited_catch_ups += 1
    finally:
        if reader is not None:
            reader.close()


def run_catch_up(legacy: list[Path], target: str, result: LiveResult) -> bool:
    """One `ksi-migrate migrate` in another process; whether it succeeded."""
    done = subprocess.run(
        [sys.executable, "-m", "migrator", "migrate", *sources(legacy), "--target", target],
        capture_output=True,
        text=True,
        check=False,
    )
    result.catch_ups += 1
    if done.returncode != 0:
        result.failed_catch_ups.append(f"exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.returncode == 0


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


MIN_AUDITED_WAIT = 300.0  # seconds past the run's own for `min_audited` catch-ups, then stop anyway


def stop_when_done(stop: threading.Event, result: LiveResult, seconds: float, min_audited: int) -> None:
    """Sets `stop` once `seconds` have passed and `min_audited` catch-ups were audited."""
    deadline = time.monotonic() + seconds
    while not stop.wait(0.1):
        now = time.monotonic()
        if now >= deadline and (result.audited_catch_ups >= min_audited or now >= deadline + MIN_AUDITED_WAIT):
            stop.set()


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
    min_audited: int = 0,
) -> LiveResult:
    """Writers and catch-ups together for `seconds`, then the checks. `target` is the server's
    URL for the server layouts (an empty namespace). With `readers`, `verify` and `archive` read
    the legacy file instead of catch-ups running, over a legacy file of `sessions` fabricated
    sessions (migrated first). `alone`: the writers only, for the figures to compare with.
    `min_audited`: past `seconds`, go on until that many catch-ups were audited (a busy machine
    starts fewer in the time), for at most `MIN_AUDITED_WAIT` seconds more."""
    legacy = folder / "ksi.db"
    if sessions:
        from migrator.fabricate import fabricate_snapshot

        fabricate_snapshot(legacy, checkpoints=5, sessions=sessions, seed=seed)
    files = [legacy]
    if layout == "one-file":
        target = str(legacy)
        if sessions:  # the relational tables beside the fabricated ones, as the runbook's phase 1 leaves them
            subprocess.run(
                [sys.executable, "-m", "migrator", "migrate", "--source", target, "--target", target], check=True
            )
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
        stopping = threading.Thread(target=stop_when_done, args=(stop, result, seconds, min_audited), daemon=True)
        stopping.start()
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
