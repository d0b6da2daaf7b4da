"""The backfill into PostgreSQL and MariaDB beside SQLite, on the same snapshot in the same run.

Each engine's `migrate` runs in a fresh child process into an empty target (a SQLite file, a new
PostgreSQL schema, a new MySQL database), the engines taking turns in a rotating order, and the
median per engine is compared with SQLite's. Then the exactness check: `verify` over each
server target the timed runs left, both ways, so a fast but wrong load cannot pass. A server that
cannot be reached is left out of the run and named in its log.
"""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from migrator import engines
from verification.engines import SERVER_URLS

BAR_VS_SQLITE = 1.3  # issue 18: a server's backfill at most 1.3x SQLite's, same snapshot, same run
Measure = Callable[[str, Path, str], dict[str, Any]]


def reachable_servers(log: Callable[[str], None]) -> dict[str, str]:
    """The servers of the test set-up ($KSI_TEST_POSTGRESQL_URL, $KSI_TEST_MYSQL_URL) that answer."""
    found = {}
    for name, url in SERVER_URLS.items():
        try:
            with closing(engines.connect(url)) as database:
                database.connect()
        except Exception as exc:  # noqa: BLE001 - a missing driver or a refused connection alike
            log(f"{name} left out of the server benchmark: {type(exc).__name__}")
            continue
        found[name] = url
    return found


@contextmanager
def empty_namespace(url: str) -> Iterator[str]:
    """The URL of a new, empty schema (PostgreSQL) or database (MySQL) of this server, dropped after."""
    name = f"ksi_bench_{uuid.uuid4().hex[:10]}"
    kind = engines.engine_for_url(url)
    with closing(engines.connect(url)) as server:
        engines.engine(server).create_namespace(name)
    try:
        yield kind.namespace_url(url, name)
    finally:
        with closing(engines.connect(url)) as server:
            engines.engine(server).drop_namespace(name)


def compare_engines(
    source: Path, work: Path, servers: dict[str, str], repeats: int, measure: Measure
) -> dict[str, Any]:
    """Backfill seconds per engine (medians), each server's ratio to SQLite, and its exactness check."""
    names = [engines.SQLITE, *servers]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    checks: dict[str, dict[str, Any]] = {}
    for round_number in range(repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            if name == engines.SQLITE:
                target = work / "engines-sqlite.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
                seconds[name].append(measure("migrate", source, str(target))["seconds"])
                continue
            with empty_namespace(servers[name]) as url:
                seconds[name].append(measure("migrate", source, url)["seconds"])
                if round_number == repeats - 1:
                    # The exactness check on the target a timed run left: `verify` both ways, which
                    # fails the benchmark (SystemExit) at the first row that differs.
                    verified = measure("verify", source, url)
                    checks[name] = {"verify_seconds": verified["seconds"], "verified_rows": verified["rows"]}
    result: dict[str, Any] = {
        name: {"seconds": statistics.median(runs), "runs": runs} for name, runs in seconds.items()
    }
    sqlite = result[engines.SQLITE]["seconds"]
    for name in servers:
        result[name].update(checks[name], exact=True, vs_sqlite=result[name]["seconds"] / sqlite)
    return result


def markdown(by_size: dict[str, dict[str, Any]]) -> list[str]:
    """The table of results.md: backfill seconds per engine and size, each server against SQLite."""
    servers = _servers(by_size)
    columns = ["size (sessions)", "SQLite s", *(f"{n} s" for n in servers), *(f"{n} / SQLite" for n in servers)]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for size, figures in sorted(by_size.items(), key=lambda item: int(item[0])):
        cells = [f"{int(size):,}", f"{figures[engines.SQLITE]['seconds']:.2f}"]
        cells += [f"{figures[n]['seconds']:.2f}" if n in figures else "-" for n in servers]
        cells += [_ratio(figures.get(n)) for n in servers]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Each server target is then checked by `verify` (both ways): " + _checked(by_size)]
    return lines


def _servers(by_size: dict[str, dict[str, Any]]) -> list[str]:
    """The servers measured, in the order of the test set-up (PostgreSQL, then MySQL)."""
    return [name for name in SERVER_URLS if any(name in figures for figures in by_size.values())]


def _ratio(figures: dict[str, Any] | None) -> str:
    return "-" if figures is None else f"{figures['vs_sqlite']:.2f}x"


def _checked(by_size: dict[str, dict[str, Any]]) -> str:
    checked = [
        f"{name} at {int(size):,} sessions {f['verified_rows']:,} rows exact ({f['verify_seconds']:.1f} s)"
        for size, figures in sorted(by_size.items(), key=lambda item: int(item[0]))
        for name, f in figures.items()
        if name != engines.SQLITE
    ]
    return "; ".join(checked) + "."


def draw(axis: Any, by_size: dict[str, dict[str, Any]]) -> None:
    """Backfill seconds per engine, by size, each server bar labelled with its ratio to SQLite."""
    sizes = sorted(by_size, key=int)
    names = [engines.SQLITE, *_servers(by_size)]
    width = 0.8 / len(names)
    for number, name in enumerate(names):
        values = [by_size[size].get(name, {}).get("seconds", 0) for size in sizes]
        positions = [index + (number - (len(names) - 1) / 2) * width for index in range(len(sizes))]
        drawn = axis.bar(positions, values, width=width, label=name)
        labels = [
            f"{by_size[size][name]['seconds']:.1f}s"
            + (f"\n{by_size[size][name]['vs_sqlite']:.2f}x" if name != engines.SQLITE else "")
            if name in by_size[size]
            else ""
            for size in sizes
        ]
        axis.bar_label(drawn, labels=labels, fontsize=8)
    for index, size in enumerate(sizes):  # the bar: a server's time at most 1.3x SQLite's
        bar = BAR_VS_SQLITE * by_size[size][engines.SQLITE]["seconds"]
        label = f"{BAR_VS_SQLITE}x SQLite" if index == 0 else None
        axis.hlines(bar, index - 0.4, index + 0.4, colors="tab:red", linestyles="--", label=label)
    axis.set_ylim(0, max(f["seconds"] for figures in by_size.values() for f in figures.values()) * 1.25)
    axis.set_xticks(range(len(sizes)), [f"{int(size):,} sessions" for size in sizes])
    axis.set_ylabel("backfill seconds (lower is better)")
    axis.set_title(f"backfill by engine, same snapshot, same run\n(bar: servers at most {BAR_VS_SQLITE}x SQLite)")
    axis.legend(loc="upper left", fontsize=8)


def main(argv: list[str] | None = None) -> int:
    """The engine comparison alone, without the rest of the suite (`python -m benchmarks.servers`)."""
    import argparse
    import json
    import tempfile
    import time

    from benchmarks.run import SESSIONS_PER_CHECKPOINT, cached_snapshot, log, measure

    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers", description=main.__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000], metavar="N", help="sessions (100000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, each engine once a round (3)")
    parser.add_argument("--out", default="bench-results", help="where servers.md, .json and .png go")
    parser.add_argument("--replot", metavar="SERVERS.json", help="write servers.md and .png again from results")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        results = json.loads(Path(args.replot).read_text(encoding="utf-8"))
    else:
        results = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": {}}
        reachable = reachable_servers(log)
        with tempfile.TemporaryDirectory(prefix="ksi-bench-") as scratch:
            for sessions in args.sizes:
                source = cached_snapshot(sessions, sessions // SESSIONS_PER_CHECKPOINT)
                log(f"backfill into SQLite, {', '.join(reachable)}, {sessions:,} sessions, then verify each server")
                results["sizes"][str(sessions)] = compare_engines(
                    source, Path(scratch), reachable, args.repeats, lambda op, src, t: measure(op, src, t, fresh=False)
                )
        results["load_average"] = round(os.getloadavg()[0], 1)
        (out / "servers.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    load = f", load average {results['load_average']}" if "load_average" in results else ""
    title = f"# Backfill by engine ({results['when']}, {os.cpu_count()} cores{load})"
    (out / "servers.md").write_text("\n".join([title, "", *markdown(results["sizes"])]) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5), layout="constrained")
    draw(axis, results["sizes"])
    figure.savefig(out / "servers.png", dpi=100)
    print((out / "servers.md").read_text(encoding="utf-8"))
    largest = results["sizes"][max(results["sizes"], key=int)]
    return 0 if all(f.get("vs_sqlite", 0) <= BAR_VS_SQLITE for f in largest.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
