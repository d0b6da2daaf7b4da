"""The benchmark suite: the product beside a hand-written reference, measured in one run.

    python -m benchmarks [--quick] [--sizes N ...] [--out bench-results] [--repeats N] [--no-servers]

Every figure is measured side by side on this machine in this run, so ratios mean something
even when absolute timings are noisy. Results go to `results.json`, `results.md` and `plot.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks import servers
from migrator import __version__
from migrator.fabricate import fabricate_snapshot
from migrator.fakes import fake_checkpoint_blob, make_faker
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacySource
from verification.latency import latency_figures

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
SESSIONS_PER_CHECKPOINT = 50
SAVE_TARGET_CHECKPOINTS = 10_000
SEED = 20261126
GATE_ALSO_AT = 100_000  # the gate is judged at the largest size, and also reported here
JUDGED_FROM = 100_000  # the gate's bars, and memory's, are judged from this size up (see verdicts)
GATE_BARS = ("gate_speedup_n2", "gate_n2_vs_backfill_throughput")
JOBS_BARS = ("jobs1_vs_minimal", "jobs2_vs_minimal")  # issue 18 sets them at 100k and 1M sessions
VERIFY_JOBS_BAR = "verify_j2_vs_backfill_j2_throughput"  # under 20,000 rows `verify --jobs 2` is one process
MET_WORDS = {True: "yes", False: "NO", None: f"not judged below {JUDGED_FROM:,} sessions"}
HIGHER_IS_BETTER = {
    "verify_vs_backfill_throughput",
    VERIFY_JOBS_BAR,
    "gate_n2_vs_backfill_throughput",
    "gate_speedup_n2",
}


def rule_of(verdict: str) -> str:
    return "at least" if verdict in HIGHER_IS_BETTER else "at most"


def meets(verdict: str, measured: float, bar: float) -> bool:
    return measured >= bar if verdict in HIGHER_IS_BETTER else measured <= bar


# The bar (issues 6 and 18), checked and reported, never asserted: benchmarks inform, the gate decides.
BAR = {
    "backfill_vs_reference": 2.0,
    "jobs1_vs_minimal": 2.0,  # migrate --jobs 1 against benchmarks/minimal_reference.py (issue 18)
    "jobs2_vs_minimal": 1.3,  # migrate --jobs 2 likewise, on a 2-core machine
    "lookup_p99_ms": 1.0,
    "save_p99_ms": 10.0,
    "largest_save_p99_ms": 5.0,  # the largest checkpoint of the snapshot, dual_write and relational_only
    "gate_speedup_n2": 1.6,
    "rss_ratio_10x": 1.2,
    "time_ratio_10x": 11.0,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- inputs -----------------------------------------------------------------------------------


def cached_snapshot(sessions: int, checkpoints: int) -> Path:
    """A fabricated snapshot, made once and reused by later runs (fabricate is deterministic)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"legacy-s{sessions}-c{checkpoints}-seed{SEED}-v{__version__}.db"
    if not path.exists():
        log(f"fabricating {path.name}")
        fabricate_snapshot(path, checkpoints=checkpoints, sessions=sessions, seed=SEED)
    return path


def percentiles(samples_ns: Sequence[int]) -> dict[str, Any]:
    """The gate's latency figures (`verification.latency`: nearest rank), from nanoseconds."""
    return latency_figures(sample / 1e6 for sample in samples_ns)


# --- measured in child processes --------------------------------------------------------------


def measure(operation: str, source: Path, target: Path | str, *, fresh: bool) -> dict[str, Any]:
    if fresh and isinstance(target, Path):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.child", operation, str(source), str(target)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{operation} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


BACKFILLS = ("migrate", "migrate-j2", "reference", "minimal")
VERIFIES = ("verify", "verify-j2")  # `verify` and `verify --jobs 2`


def compare_backfills(source: Path, work: Path, repeats: int) -> dict[str, Any]:
    """Product (`--jobs 1` and `--jobs 2`), reference and minimal reference take turns, each
    starting a round in its turn; then `verify` and `verify --jobs 2` of the `--jobs 1` target."""
    runs: dict[str, list[dict[str, Any]]] = {operation: [] for operation in (*BACKFILLS, *VERIFIES)}
    for round_number in range(repeats):
        shift = round_number % len(BACKFILLS)
        for operation in BACKFILLS[shift:] + BACKFILLS[:shift]:
            runs[operation].append(measure(operation, source, work / f"{operation}.db", fresh=True))
    for round_number in range(repeats):  # `verify` in one process and in two, in turns, of the same target
        for operation in VERIFIES if round_number % 2 == 0 else reversed(VERIFIES):
            runs[operation].append(measure(operation, source, work / "migrate.db", fresh=False))
    rows = runs["migrate"][0]["rows"]

    def summary(samples: list[dict[str, Any]]) -> dict[str, float]:
        seconds = statistics.median(s["seconds"] for s in samples)
        figures = {
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "max_rss_mb": max(s["max_rss_mb"] for s in samples),
        }
        workers = [s["workers_rss_mb"] for s in samples if "workers_rss_mb" in s]
        return figures | ({"workers_rss_mb": max(workers)} if workers else {})

    result: dict[str, Any] = {name: summary(samples) for name, samples in runs.items()}
    result["rows"] = rows
    result["backfill_vs_reference"] = result["migrate"]["seconds"] / result["reference"]["seconds"]
    result["jobs1_vs_minimal"] = result["migrate"]["seconds"] / result["minimal"]["seconds"]
    result["jobs2_vs_minimal"] = result["migrate-j2"]["seconds"] / result["minimal"]["seconds"]
    result["verify_vs_backfill_throughput"] = result["verify"]["rows_per_s"] / result["migrate"]["rows_per_s"]
    result[VERIFY_JOBS_BAR] = (
        result["verify-j2"]["rows_per_s"] / result["migrate-j2"]["rows_per_s"]  # both on two cores
    )
    return result


# --- latencies, in this process ----------------------------------------------------------------


def lookup_latency(target: Path, samples: int) -> dict[str, float]:
    """`store.get_session` in relational mode (full blob rebuilt) for random real session keys."""
    from migrator.store import open_store

    with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as connection:
        keys = [
            k
            for (k,) in connection.execute("SELECT session_key FROM mcp_session ORDER BY random() LIMIT ?", (samples,))
        ]
    store = open_store(target, mode="relational_only")
    try:
        for key in keys[:200]:  # warm the page cache and the statement caches first
            store.get_session(key)
        timings = []
        for key in keys:
            started = time.perf_counter_ns()
            blob = store.get_session(key)
            timings.append(time.perf_counter_ns() - started)
            assert blob is not None, f"lookup of {key!r} found nothing"
    finally:
        store.close()
    return percentiles(timings)


def save_blob(rng: random.Random) -> dict[str, Any]:
    """A checkpoint of the size the bar names: 20 session queues of 5 items, 50 completions."""
    fake = make_faker(SEED)
    blob = fake_checkpoint_blob(fake, rng)
    queue = {
        "items": [{"request_id": f"req_{i}", "data": {"prompt": fake.ksi_prompt()}} for i in range(5)],
        "is_active": True,
    }
    blob["session_queues"] = {f"sess_{s}": queue for s in range(20)}
    completion = next(iter(blob.get("active_completions", {}).values()), {"status": "processing"})
    blob["active_completions"] = {f"req_{r}": completion for r in range(50)}
    return blob


SAVE_MODES = ("dual_write", "relational_only")  # the daemon's two modes that write relational rows


def largest_checkpoint(source: Path) -> dict[str, Any]:
    """The snapshot's largest checkpoint blob, as the daemon would hand it to a save."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as connection:
        (text,) = connection.execute(
            "SELECT checkpoint_data FROM checkpoints ORDER BY length(CAST(checkpoint_data AS BLOB)) DESC LIMIT 1"
        ).fetchone()
    return json.loads(text)


def save_latency(
    work: Path, samples: int, blob: dict[str, Any] | None = None, mode: str = "dual_write"
) -> dict[str, Any]:
    """`store.save_checkpoint` on a target holding 10,000 checkpoints: by default in dual_write
    mode, of the checkpoint the bar names (`save_blob`).

    One SQLite file, as the runbook recommends: the relational rows of a long-kept snapshot
    (10,000 checkpoints) beside the daemon's legacy table, which holds what the daemon keeps
    (the newest 5). Each save writes both sides in one transaction and prunes one checkpoint
    from both, so the relational side keeps its 10,000 rows throughout.
    """
    from migrator.store import open_store

    snapshot = cached_snapshot(0, SAVE_TARGET_CHECKPOINTS)
    target = work / "save-target.db"
    measure("migrate", snapshot, target, fresh=True)
    _add_newest_legacy_checkpoints(snapshot, target, keep=5)
    blob = blob if blob is not None else save_blob(random.Random(SEED))
    store = open_store(target, mode=mode)
    try:
        for _ in range(20):  # warm-up, not measured
            store.save_checkpoint(blob)
        timings = []
        for _ in range(samples):
            started = time.perf_counter_ns()
            store.save_checkpoint(blob)
            timings.append(time.perf_counter_ns() - started)
        pending = len(store.report().pending_repairs)
    finally:
        store.close()
    result: dict[str, Any] = percentiles(timings)
    result["pending_repairs"] = pending
    result["blob_bytes"] = len(json.dumps(blob))
    return result


def _add_newest_legacy_checkpoints(snapshot: Path, target: Path, keep: int) -> None:
    """Give the target the daemon's legacy tables, `checkpoints` holding its newest rows."""
    with LegacySource(snapshot) as source:
        newest = [row for batch in source.batches(CHECKPOINTS, 10_000) for row in batch][-keep:]
    with sqlite3.connect(target) as connection:
        connection.execute(CHECKPOINTS.ddl)
        connection.execute(MCP_SESSIONS.ddl)  # the daemon's database has both tables
        connection.executemany("INSERT INTO checkpoints (id, timestamp, checkpoint_data) VALUES (?, ?, ?)",
                               [row[1:] for row in newest])  # fmt: skip


# --- the gate on -n 0 and -n 2 ------------------------------------------------------------------


GATE_LATENCY_LIMIT_MS = "3600000"
"""The gate's latency limits while it is timed here: an hour, which no save or lookup reaches.
This run times the gate and measures the store's latencies itself (lookups and saves above);
with the plan's limits, one busy moment on a shared machine failed the gate's latency check,
which ended the whole run without a result, and a p99 over its limit is measured twice, which
skews the gate's time."""


def gate_seconds(source: Path, target: Path, workers: int, work: Path) -> float:
    command = [
        sys.executable, "-m", "pytest", "verification/", "-q", "-p", "no:cacheprovider",
        "--ksi-snapshot", str(source), "--ksi-target", str(target),
        "--ksi-signoff-dir", str(work / f"signoff-n{workers}"), "-n", str(workers),
        "-p", "no:faker", "--assert=plain",  # the start-up the README recommends for the gate
        "--ksi-max-checkpoint-save-ms", GATE_LATENCY_LIMIT_MS, "--ksi-max-session-lookup-ms", GATE_LATENCY_LIMIT_MS,
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the gate failed on a clean target:\n{result.stdout[-3000:]}")
    return seconds


def gate_scaling(source: Path, target: Path, work: Path, rows: int) -> dict[str, float]:
    serial = gate_seconds(source, target, 0, work)
    parallel = gate_seconds(source, target, 2, work)
    return {
        "n0_seconds": serial,
        "n2_seconds": parallel,
        "speedup": serial / parallel,
        "n0_rows_per_s": rows / serial,
        "n2_rows_per_s": rows / parallel,
    }


# --- report -----------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by_size = results["sizes"]
    largest_size = max(by_size, key=int)
    largest = by_size[largest_size]
    gate = results["gate"][largest_size]
    checks: dict[str, tuple[float, float]] = {
        "backfill_vs_reference": (largest["backfill_vs_reference"], BAR["backfill_vs_reference"]),
        "verify_vs_backfill_throughput": (largest["verify_vs_backfill_throughput"], 1.0),
        "gate_n2_vs_backfill_throughput": (gate["n2_rows_per_s"] / largest["migrate"]["rows_per_s"], 1.0),
        "lookup_p99_ms": (results["lookup"]["p99_ms"], BAR["lookup_p99_ms"]),
        "save_p99_ms": (results["save"]["p99_ms"], BAR["save_p99_ms"]),
        "jobs1_vs_minimal": (largest["jobs1_vs_minimal"], BAR["jobs1_vs_minimal"]),
        "jobs2_vs_minimal": (largest["jobs2_vs_minimal"], BAR["jobs2_vs_minimal"]),
        "gate_speedup_n2": (gate["speedup"], BAR["gate_speedup_n2"]),
    }
    if VERIFY_JOBS_BAR in largest:  # a results.json from before has none
        checks[VERIFY_JOBS_BAR] = (largest[VERIFY_JOBS_BAR], 1.0)
    if all(f"save_largest_{mode}" in results for mode in SAVE_MODES):  # a results.json from before has none
        p99 = max(results[f"save_largest_{mode}"]["p99_ms"] for mode in SAVE_MODES)
        checks["largest_save_p99_ms"] = (p99, BAR["largest_save_p99_ms"])
    for name, figures in results.get("servers", {}).get(largest_size, {}).items():
        if "vs_sqlite" in figures:
            checks[f"{name}_vs_sqlite"] = (figures["vs_sqlite"], servers.BAR_VS_SQLITE)
    sizes = sorted(by_size, key=int)
    for small, large in pairwise(sizes):
        if int(large) == 10 * int(small):
            for step in ("migrate", "verify"):
                rss = by_size[large][step]["max_rss_mb"] / by_size[small][step]["max_rss_mb"]
                checks[f"{step}_rss_{large}_vs_{small}"] = (rss, BAR["rss_ratio_10x"])
            seconds = by_size[large]["migrate"]["seconds"] / by_size[small]["migrate"]["seconds"]
            checks[f"migrate_time_{large}_vs_{small}"] = (seconds, BAR["time_ratio_10x"])
    judged = {
        name: {"measured": round(value, 3), "bar": bar, "rule": rule_of(name), "met": meets(name, value, bar)}
        for name, (value, bar) in checks.items()
    }
    if int(largest_size) < JUDGED_FROM:
        # A gate run on a small snapshot is mostly pytest and xdist start-up (about a second per
        # process): its scaling is reported, but the bar is about production-size snapshots.
        for name in (*GATE_BARS, *JOBS_BARS, VERIFY_JOBS_BAR):  # workers' start-up weighs on small runs too
            if name in judged:  # a results.json from before `verify --jobs` has no VERIFY_JOBS_BAR
                judged[name]["met"] = None
    for small, large in pairwise(sizes):
        if int(small) < JUDGED_FROM and f"migrate_rss_{large}_vs_{small}" in judged:
            # Below 100k sessions the bounded caches (SQLite's 64 MiB during a backfill) are not
            # yet full, so memory still grows; the bar (issue 6) is 1M against 100k.
            for step in ("migrate", "verify"):
                judged[f"{step}_rss_{large}_vs_{small}"]["met"] = None
    return judged


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [f"# Benchmark results ({results['when']}, {results['machine']})", ""]
    columns = ["size (sessions)", "rows", "migrate s", "reference s", "ratio", "verify s", "migrate rows/s",
               "verify rows/s", "migrate RSS MB", "verify RSS MB"]  # fmt: skip
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for size, r in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        lines.append(
            f"| {int(size):,} | {r['rows']:,} | {r['migrate']['seconds']:.2f} | {r['reference']['seconds']:.2f} | "
            f"{r['backfill_vs_reference']:.2f}x | {r['verify']['seconds']:.2f} | {r['migrate']['rows_per_s']:,.0f} | "
            f"{r['verify']['rows_per_s']:,.0f} | {r['migrate']['max_rss_mb']:.0f} | {r['verify']['max_rss_mb']:.0f} |"
        )
    both_cores = both_cores_table(results)
    lines += ["", *both_cores] if both_cores else []
    lines += ["", "| latency | p50 ms | p95 ms | p99 ms | max ms | samples |", "| --- | --- | --- | --- | --- | --- |"]
    for name in ("lookup", "save", *(f"save_largest_{mode}" for mode in SAVE_MODES)):
        if name not in results:
            continue
        r = results[name]
        figures = " | ".join(f"{r[figure]:.3f}" for figure in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
        lines.append(f"| {LATENCY_TITLES.get(name, name)} | {figures} | {r['samples']} |")
    lines += ["", "| gate on (sessions) | -n 0 s | -n 2 s | speedup | -n 0 rows/s | -n 2 rows/s |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for size, gate in sorted(results["gate"].items(), key=lambda item: int(item[0])):
        lines.append(
            f"| {int(size):,} | {gate['n0_seconds']:.1f} | {gate['n2_seconds']:.1f} | {gate['speedup']:.2f}x | "
            f"{gate['n0_rows_per_s']:,.0f} | {gate['n2_rows_per_s']:,.0f} |"
        )
    lines.append("")
    if results.get("servers"):
        lines += ["Backfill by engine, same snapshot, same run:", "", *servers.markdown(results["servers"]), ""]
    lines += ["| bar | measured | target | met |", "| --- | --- | --- | --- |"]
    for name, verdict in results["verdicts"].items():
        target = f"{verdict['rule']} {verdict['bar']}"
        lines.append(f"| {bar_title(name)} | {verdict['measured']} | {target} | {MET_WORDS[verdict['met']]} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


LATENCY_TITLES = {
    "save": "save, the bar's checkpoint (dual_write)",
    **{f"save_largest_{mode}": f"save, the largest checkpoint ({mode})" for mode in SAVE_MODES},
}


def both_cores_table(results: dict[str, Any]) -> list[str]:
    """`migrate --jobs 1` and `--jobs 2` beside the minimal reference (issue 18), where measured."""
    if not any("minimal" in figures for figures in results["sizes"].values()):
        return []  # a results.json from before issue 18
    lines = [
        "| size (sessions) | --jobs 1 s | --jobs 2 s | minimal s | --jobs 1 / minimal | --jobs 2 / minimal | "
        "--jobs 2 RSS MB (main + workers) | verify --jobs 2 s | verify --jobs 2 RSS MB (main + workers) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, r in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        if "minimal" not in r:
            continue
        j2, verify_j2 = r["migrate-j2"], r.get("verify-j2")
        verify_cells = (
            f"{verify_j2['seconds']:.2f} | {verify_j2['max_rss_mb']:.0f} + {verify_j2.get('workers_rss_mb', 0):.0f}"
            if verify_j2
            else "- | -"  # a results.json from before `verify --jobs`
        )
        lines.append(
            f"| {int(size):,} | {r['migrate']['seconds']:.2f} | {j2['seconds']:.2f} | {r['minimal']['seconds']:.2f} | "
            f"{r['jobs1_vs_minimal']:.2f}x | {r['jobs2_vs_minimal']:.2f}x | "
            f"{j2['max_rss_mb']:.0f} + {j2.get('workers_rss_mb', 0):.0f} | {verify_cells} |"
        )
    return lines


def bar_title(name: str) -> str:
    """A verdict's name in words: `migrate_rss_1000000_vs_100000` is "migrate peak RSS, 1M / 100k"."""
    if name in BAR_TITLES:
        return BAR_TITLES[name]
    if name.endswith("_vs_sqlite"):
        return f"{name.removesuffix('_vs_sqlite')} backfill time / SQLite's"
    step, measure, large, _, small = name.split("_")
    return f"{step} {'peak RSS' if measure == 'rss' else 'time'}, {short_size(large)} / {short_size(small)}"


BAR_TITLES = {
    "backfill_vs_reference": "backfill time / reference time",
    "verify_vs_backfill_throughput": "verify rows/s / backfill rows/s",
    VERIFY_JOBS_BAR: "verify -j2 rows/s / migrate -j2 rows/s",
    "gate_n2_vs_backfill_throughput": "gate -n 2 rows/s / backfill rows/s",
    "lookup_p99_ms": "session lookup p99, ms",
    "save_p99_ms": "checkpoint save p99, ms",
    "largest_save_p99_ms": "largest checkpoint save p99, ms",
    "jobs1_vs_minimal": "migrate --jobs 1 / minimal",
    "jobs2_vs_minimal": "migrate --jobs 2 / minimal",
    "gate_speedup_n2": "gate -n 0 time / -n 2 time",
}
MET_COLOURS = {True: "tab:green", False: "tab:red", None: "tab:gray"}
LABEL_STYLE: dict[str, Any] = {"padding": 3, "zorder": 4, "bbox": {"facecolor": "white", "edgecolor": "none", "pad": 1}}
"""A value's label over the dashed bar line, so a value close to its bar is not struck through."""
VERDICTS_PER_ROW = 6
THROUGHPUT_STEPS = ("migrate", "migrate-j2", "reference", "minimal", "verify", "verify-j2")


def short_size(sessions: str | int) -> str:
    count = int(sessions)
    return f"{count // 1_000_000}M" if count >= 1_000_000 else f"{count // 1000}k"


def write_plot(results: dict[str, Any], path: Path) -> None:
    """Latencies with their bars, throughput by size, and every verdict against its bar.

    Each bar (threshold) is a dashed line; every measured value is a bar of its own, labelled,
    on a linear axis, so one size (`--quick`) reads as well as three.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verdicts = results["verdicts"]
    verdict_rows = -(-len(verdicts) // VERDICTS_PER_ROW)
    with_servers = bool(results.get("servers"))
    figure = plt.figure(figsize=(20 if with_servers else 15, 4.6 + 2.6 * verdict_rows), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[4.6, 2.6 * verdict_rows], squeeze=False)[:, 0]
    panels: Any = top.subplots(1, 4 if with_servers else 3, width_ratios=[1, 1, 1.6, 1.4][: 4 if with_servers else 3])
    lookup, save, throughput = panels[:3]
    draw_latency(lookup, results["lookup"], BAR["lookup_p99_ms"], "store.get_session (relational_only)")
    draw_latency(save, results["save"], BAR["save_p99_ms"], "store.save_checkpoint (dual_write)")
    draw_throughput(throughput, results)
    if with_servers:
        servers.draw(panels[3], results["servers"])
    axes = bottom.subplots(verdict_rows, VERDICTS_PER_ROW, squeeze=False).flatten()
    for axis, (name, verdict) in zip(axes, verdicts.items(), strict=False):
        draw_verdict(axis, bar_title(name), verdict)
    for axis in axes[len(verdicts) :]:
        axis.set_visible(False)
    bottom.suptitle("Each figure against its bar (dashed): green met, red missed, grey not judged at this size")
    figure.suptitle(f"ksi-migrator {results['version']} benchmarks, {results['when']} ({results['machine']})")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_latency(axis: Any, figures: dict[str, Any], bar_ms: float, title: str) -> None:
    labels = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    values = [figures[label] for label in labels]
    colours = ["tab:blue", "tab:blue", "tab:orange", "tab:gray"]
    drawn = axis.bar([label.removesuffix("_ms") for label in labels], values, color=colours)
    axis.bar_label(drawn, fmt="%.3g", **LABEL_STYLE)
    axis.axhline(bar_ms, color="tab:red", linestyle="--", linewidth=1.5, label=f"bar: p99 at most {bar_ms:g} ms")
    axis.set_ylim(0, max(*values, bar_ms) * 1.18)
    axis.set_ylabel("milliseconds")
    axis.set_title(f"{title}\n{figures.get('samples', figures.get('n'))} samples")
    axis.legend(loc="upper left")


def draw_throughput(axis: Any, results: dict[str, Any]) -> None:
    sizes = sorted(results["sizes"], key=int)
    series = {
        step: [results["sizes"][size].get(step, {}).get("rows_per_s", 0) for size in sizes] for step in THROUGHPUT_STEPS
    }
    for workers in (0, 2):
        gate = [results["gate"].get(size, {}) for size in sizes]
        series[f"gate -n {workers}"] = [figures.get(f"n{workers}_rows_per_s", 0) for figures in gate]
    width = 0.8 / len(series)
    for number, (label, values) in enumerate(series.items()):
        positions = [index + (number - (len(series) - 1) / 2) * width for index in range(len(sizes))]
        drawn = axis.bar(positions, values, width=width, label=label)
        axis.bar_label(drawn, labels=[f"{value / 1000:.0f}k" if value else "" for value in values], fontsize=8)
    axis.set_xticks(range(len(sizes)), [f"{short_size(size)} sessions" for size in sizes])
    axis.set_ylabel("legacy rows per second")
    axis.set_title("throughput by snapshot size\n(gate: where it was measured)")
    axis.legend(ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8)


def draw_verdict(axis: Any, title: str, verdict: dict[str, Any]) -> None:
    measured, bar = verdict["measured"], verdict["bar"]
    drawn = axis.bar([0], [measured], width=0.5, color=MET_COLOURS[verdict["met"]])
    axis.bar_label(drawn, fmt="%.3g", **LABEL_STYLE)
    axis.axhline(bar, color="black", linestyle="--", linewidth=1.5)
    axis.set_xlim(-0.6, 0.6)
    axis.set_ylim(0, max(measured, bar) * 1.25)
    axis.set_xticks([])
    axis.set_title(f"{title}\nbar: {verdict['rule']} {bar:g}", fontsize=9)


# --- main -------------------------------------------------------------------------------------


def run(
    sizes: Sequence[int], repeats: int, out: Path, lookup_samples: int, save_samples: int, *, with_servers: bool = True
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "version": __version__,
        "sizes": {},
        "gate": {},
    }
    reachable = servers.reachable_servers(log) if with_servers else {}
    if reachable:
        results["servers"] = {}
    with tempfile.TemporaryDirectory(prefix="ksi-bench-") as scratch:
        work = Path(scratch)
        for sessions in sizes:
            source = cached_snapshot(sessions, sessions // SESSIONS_PER_CHECKPOINT)
            log(f"backfill and verify, {sessions:,} sessions, {repeats} rounds")
            results["sizes"][str(sessions)] = compare_backfills(source, work, repeats)
            if reachable:
                log(f"backfill into SQLite, {', '.join(reachable)}, {sessions:,} sessions, then verify each server")
                results["servers"][str(sessions)] = servers.compare_engines(
                    source, work, reachable, repeats, lambda op, src, target: measure(op, src, target, fresh=False)
                )
            if sessions == sizes[-1]:
                log(f"session lookups on {sessions:,} sessions")
                results["lookup"] = lookup_latency(work / "migrate.db", lookup_samples)
            if sessions == sizes[-1] or sessions == GATE_ALSO_AT:
                log(f"the gate on -n 0 and -n 2, {sessions:,} sessions")
                rows = results["sizes"][str(sessions)]["rows"]
                results["gate"][str(sessions)] = gate_scaling(source, work / "migrate.db", work, rows)
        log(f"checkpoint saves on {SAVE_TARGET_CHECKPOINTS:,} checkpoints")
        results["save"] = save_latency(work, save_samples)
        largest = largest_checkpoint(cached_snapshot(sizes[-1], sizes[-1] // SESSIONS_PER_CHECKPOINT))
        for mode in SAVE_MODES:
            log(f"saves of the snapshot's largest checkpoint, {mode}")
            results[f"save_largest_{mode}"] = save_latency(work, save_samples, largest, mode)
    results["verdicts"] = verdicts(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_markdown(results, out / "results.md")
    write_plot(results, out / "plot.png")
    return results


def replot(results_file: Path, out: Path) -> None:
    """Draws plot.png and results.md again from a results.json, without measuring anything."""
    results = json.loads(results_file.read_text(encoding="utf-8"))
    for name, verdict in results["verdicts"].items():  # a results.json written before verdicts named their rule
        verdict.setdefault("rule", rule_of(name))
    for name in ("lookup", "save"):
        results[name].setdefault("samples", results[name].get("n"))
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(results, out / "results.md")
    write_plot(results, out / "plot.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k sessions only, fewer samples (under 2 minutes)")
    parser.add_argument("--out", default=str(ROOT / "bench-results"), help="where results go")
    parser.add_argument("--repeats", type=int, help="rounds of product/reference alternation (default 3, quick 2)")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N", help="snapshot sizes in sessions instead")
    parser.add_argument("--no-servers", action="store_true", help="leave out the PostgreSQL and MariaDB backfills")
    parser.add_argument("--replot", metavar="RESULTS.json", help="draw plot.png and results.md again from results")
    args = parser.parse_args(argv)
    if args.replot:
        replot(Path(args.replot), Path(args.out))
        return 0
    sizes = tuple(args.sizes) if args.sizes else QUICK_SIZES if args.quick else FULL_SIZES
    repeats = args.repeats or (2 if args.quick else 3)
    results = run(sizes, repeats, Path(args.out), lookup_samples=2000 if args.quick else 20000,
                  save_samples=500 if args.quick else 1000, with_servers=not args.no_servers)  # fmt: skip
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"))
    return 0 if all(v["met"] is not False for v in results["verdicts"].values()) else 1
