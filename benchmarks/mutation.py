"""Mutation testing of the mapping core with mutmut: `python -m benchmarks.mutation run|summary|report`.

`run --tests all` mutates the modules `[tool.mutmut]` lists (pyproject.toml) and runs, for each
mutant, the tests of `tests/` and `verification/` that reach the mutated function; `run --tests
verification` does the same with `verification/` alone. `--sample R` runs a fixed random share R of
the mutants instead of all (chosen by a hash of each mutant's name, so the same mutants every night
and a resumed run carries on), and the report gives each score with its 95% interval. Each run
ends by writing its figures to `benchmarks/results/mutation-<tests>.json`; `report` joins both
with the reviewed survivors (`benchmarks/mutation_review.json`: each one killed by a named test,
or equivalent and why) into `benchmarks/results/mutation.md`.

The server engines are pointed at a closed port, so their tests skip (outside CI) instead of
leaving schemas behind on a shared server each time a mutant times out; the SQLite tests carry the
mapping. mutmut keeps its work in `mutants/` (not committed); a run with another `--tests` starts it
afresh, since which tests reach which function differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path("benchmarks/results")
# Verdicts of the review that take a survivor out of the score: it changes nothing the tests could
# see, or mutmut cannot make it active (a function run once at import, before a mutant is chosen).
EXCLUDED = ("equivalent", "not activatable")
REVIEW = Path("benchmarks/mutation_review.json")
WORK = Path("mutants")
SELECTION_FILE = WORK / "ksi-tests-selection"
SAMPLE_FILE = WORK / "ksi-sample"  # {"rate", "seed"} of the run in mutants/
EVERY_MUTANT: dict[str, Any] = {"rate": 1.0}  # no sample: the whole population
CLOSED_PORT = {  # nothing listens there: connecting fails at once and the server tests skip
    "KSI_TEST_POSTGRESQL_URL": "postgresql://postgres@127.0.0.1:9/test",
    "KSI_TEST_MYSQL_URL": "mysql://root@127.0.0.1:9/test",
}
# The gate's own plumbing, run in a child pytest from the checkout: its reports name the checkout's
# git commit, which mutmut's copy (`mutants/`) is not. It checks the gate's reporting, not the mapping,
# whose rows the gate compares through `migrator.compare`, reached in-process by verification/.
OUT_OF_MUTMUT = ["tests/test_gate.py", "tests/test_gate_next_steps.py", "tests/test_gate_privacy.py"]
OUT_OF_MUTMUT += ["tests/test_pytest_plugin.py"]
# Counts the catch-ups that fit in a few seconds of live writes: mutmut's trampolines on a busy
# machine fit fewer than it asks for, on the unchanged code.
LIVE = "tests/test_live_catch_up.py::test_catch_ups_beside_live_dual_writes_never_crash_and_never_undo_a_write"
OUT_OF_MUTMUT += [LIVE]
# The slow tests run too (`-m ''`): under the `mutation` profile the state machines that drive the
# store and the legacy lifecycle take seconds, and without them nothing in verification/ reaches
# most of the store. Left out: tests of the harness's own power, which apply faults of their own
# (a mutant adds nothing to what they measure), and a shrinking test of the strategies.
OUT_OF_MUTMUT += ["verification/test_seeded_faults.py", "verification/test_strategies.py::test_a_failure_shrinks"]
# mutmut's exit codes (mutmut.stats.status_by_exit_code, 3.x), folded into the summary's columns.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}
STATUS.update({24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "killed"})
COLUMNS = ["killed", "timeout", "survived", "no tests", "skipped", "suspicious", "not checked"]


def status(exit_code: int | None) -> str:
    if exit_code is None:
        return "not checked"
    return STATUS.get(exit_code, "suspicious")


def module_of(mutant: str) -> str:
    """`migrator.store.core.xǁStoreǁsave__mutmut_3` -> `migrator.store.core`."""
    return mutant.split(".x", 1)[0] if ".x" in mutant else mutant.rsplit(".", 1)[0]


def in_sample(mutant: str, rate: float, seed: str) -> bool:
    """Whether a mutant is in the share `rate` chosen by `seed`: a hash of its name, not a draw, so a
    mutant's fate does not depend on which others exist, and a resumed run picks the same ones."""
    digest = hashlib.sha256(f"{seed}:{mutant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def generate_mutants() -> None:
    """mutmut's own first step of `run` (copy, then mutate the listed modules), to learn every
    mutant's name before choosing the sample; `run` does it again, finding nothing changed."""
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths

    set_mutant_under_test("mutant_generation")
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    create_mutants(os.cpu_count() or 2)


def sampled(results: dict[str, int | None], sample: dict[str, Any]) -> dict[str, int | None]:
    return {m: code for m, code in results.items() if in_sample(m, sample["rate"], sample["seed"])}


def sample_to_run(sample: dict[str, Any]) -> list[str]:
    """The sample's mutants that have no result yet: explicitly named mutants always run again."""
    generate_mutants()
    pending = sampled(mutant_results(), sample)
    return [mutant for mutant, code in pending.items() if code is None]


def recorded_sample() -> dict[str, Any]:
    """The sample the run in mutants/ was asked for."""
    return json.loads(SAMPLE_FILE.read_text()) if SAMPLE_FILE.exists() else EVERY_MUTANT


def start_work_folder(tests: str, sample: dict[str, Any]) -> None:
    """mutants/ as this selection left it, or afresh: another selection's stats would send each
    mutant to the wrong tests, and another sample's results would be counted in this one."""
    same_tests = SELECTION_FILE.exists() and SELECTION_FILE.read_text() == tests
    same_sample = recorded_sample() == sample
    if WORK.exists() and not (same_tests and same_sample):
        shutil.rmtree(WORK)
    WORK.mkdir(exist_ok=True)
    SELECTION_FILE.write_text(tests)
    SAMPLE_FILE.write_text(json.dumps(sample))


def run(tests: str, profile: str, max_children: int, patterns: list[str], rate: float = 1.0, seed: str = "") -> int:
    sample = {"rate": rate, "seed": seed} if rate < 1 else EVERY_MUTANT
    start_work_folder(tests, sample)
    if rate < 1 and not patterns:
        patterns = sample_to_run(sample)
        if not patterns:  # the whole sample has its results: only the summary is left to write
            write_summary(tests)
            return 0
    env = {key: value for key, value in os.environ.items() if key != "CI"}  # outside CI a missing server skips
    options = [env.get("PYTEST_ADDOPTS", ""), "-m ''", f"--hypothesis-profile={profile}"]
    options += [f"--deselect={path}" for path in OUT_OF_MUTMUT]
    if tests == "verification":
        options.append("--deselect=tests/")
    env.update(CLOSED_PORT, PYTEST_ADDOPTS=" ".join(options).strip())
    site = str(Path(__file__).resolve().parent / "mutation_site")  # children of the tests: see its sitecustomize
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
    env["KSI_MUTATION_ROOT"] = str(Path.cwd())
    mutmut = str(Path(sys.executable).parent / "mutmut")
    command = ["nice", "-n", "10", mutmut, "run", "--max-children", str(max_children), *patterns]
    started = datetime.now(UTC)
    code = subprocess.run(command, env=env, check=False).returncode
    write_summary(tests, started)
    return code


def mutant_results() -> dict[str, int | None]:
    results: dict[str, int | None] = {}
    for meta in sorted(WORK.glob("migrator/**/*.py.meta")):
        results.update(json.loads(meta.read_text())["exit_code_by_key"])
    return results


def diff(mutant: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # mutmut only where the extra is installed

    path = Path(*module_of(mutant).split(".")).with_suffix(".py")
    lines = get_diff_for_mutant(mutant, path=path).splitlines()[2:]  # without the ---/+++ header
    return "\n".join(line for line in lines if line[:1] in "+-")


def write_summary(tests: str, started: datetime | None = None) -> None:
    results = mutant_results()
    population = Counter(module_of(m) for m in results)
    sample = recorded_sample()
    if sample["rate"] < 1:
        results = sampled(results, sample)
    modules: dict[str, Counter[str]] = {}
    for mutant, code in results.items():
        modules.setdefault(module_of(mutant), Counter())[status(code)] += 1
    survivors = {m: diff(m) for m, code in sorted(results.items()) if status(code) in ("survived", "no tests")}
    summary = {
        "tests": tests,
        "date": (started or datetime.now(UTC)).strftime("%Y-%m-%d"),
        "sample": sample,
        "population": dict(sorted(population.items())),
        "modules": {name: dict(counts) for name, counts in sorted(modules.items())},
        "survivors": survivors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"mutation-{tests}.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")


def score(counts: dict[str, int], equivalent: int) -> tuple[int, int]:
    """(killed, non-equivalent mutants tested): a timeout is a kill, an excluded survivor is left out."""
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    tested = killed + counts.get("survived", 0) + counts.get("no tests", 0) - equivalent
    return killed, tested


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def wilson_interval(part: int, whole: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval of a share measured on a random sample (Wilson's score interval, which
    stays inside [0, 1] and holds near 100%, where a sample's kills mostly are)."""
    if not whole:
        return 0.0, 1.0
    share = part / whole
    middle = (share + z * z / (2 * whole)) / (1 + z * z / whole)
    spread = z * math.sqrt(share * (1 - share) / whole + z * z / (4 * whole * whole)) / (1 + z * z / whole)
    return max(0.0, middle - spread), min(1.0, middle + spread)


def score_cell(part: int, whole: int, sample: dict[str, Any]) -> str:
    if sample["rate"] >= 1 or not whole:
        return percent(part, whole)
    low, high = wilson_interval(part, whole)
    return f"{percent(part, whole)} ({100 * low:.1f} to {100 * high:.1f})"


def table(summary: dict[str, Any], review: dict[str, dict[str, str]]) -> list[str]:
    sample = summary.get("sample", EVERY_MUTANT)
    population = summary.get("population", {})
    header = ["module", "mutants", *COLUMNS, "excluded", "score"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    total: Counter[str] = Counter()
    total_equivalent = 0
    for name, counts in summary["modules"].items():
        equivalent = sum(
            1 for m in summary["survivors"] if module_of(m) == name and review.get(m, {}).get("verdict") in EXCLUDED
        )
        total.update(counts)
        total_equivalent += equivalent
        killed, tested = score(counts, equivalent)
        cells = " | ".join(str(counts.get(c, 0)) for c in COLUMNS)
        mutants = population.get(name, sum(counts.values()))
        lines.append(f"| `{name}` | {mutants} | {cells} | {equivalent} | {score_cell(killed, tested, sample)} |")
    killed, tested = score(dict(total), total_equivalent)
    cells = " | ".join(str(total.get(c, 0)) for c in COLUMNS)
    mutants = sum(population.values()) or sum(total.values())
    overall = score_cell(killed, tested, sample)
    lines.append(f"| **all** | {mutants} | {cells} | {total_equivalent} | **{overall}** ({killed}/{tested}) |")
    return lines


def sample_sentence(summary: dict[str, Any]) -> list[str]:
    sample = summary.get("sample", EVERY_MUTANT)
    if sample["rate"] >= 1:
        return []
    return [
        "",
        f"A sample of {100 * sample['rate']:g}% of the mutants (seed `{sample['seed']}`, chosen by a hash of each",
        "name): the columns count the sampled mutants, `mutants` the module's whole population, and each score",
        "is followed by its 95% interval (Wilson).",
    ]


def report() -> None:
    review: dict[str, dict[str, str]] = json.loads(REVIEW.read_text()) if REVIEW.exists() else {}
    out = ["# Mutation testing of the mapping core", "", "Written by `python -m benchmarks.mutation report`."]
    survivors: dict[str, tuple[str, list[str]]] = {}  # mutant -> (its change, the runs it survived)
    for tests, title in (("all", "tests/ and verification/"), ("verification", "verification/ alone")):
        path = RESULTS / f"mutation-{tests}.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        out += ["", f"## Killed by {title} ({summary['date']})", *sample_sentence(summary), ""]
        out += table(summary, review)
        for mutant, change in summary["survivors"].items():
            survivors.setdefault(mutant, (change, []))[1].append(title)
    out += ["", "## Survivors, reviewed", ""]
    out += ["| mutant | survived | change | review |", "|---|---|---|---|"]
    for mutant, (change, runs) in sorted(survivors.items()):
        entry = review.get(mutant, {"verdict": "not reviewed", "why": ""})
        cell = change.replace("|", "\\|").replace("\n", "<br>")
        out.append(f"| `{mutant}` | {', '.join(runs)} | <code>{cell}</code> | {entry['verdict']}: {entry['why']} |")
    earlier = {mutant: entry for mutant, entry in review.items() if mutant not in survivors}
    out += ["", "## Survivors of earlier runs, reviewed", "", "| mutant | review |", "|---|---|"]
    out += [f"| `{mutant}` | {entry['verdict']}: {entry['why']} |" for mutant, entry in sorted(earlier.items())]
    (RESULTS / "mutation.md").write_text("\n".join(out) + "\n")


def share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a share is more than 0 and at most 1, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="mutate the core and run the tests against each mutant")
    run_parser.add_argument("--tests", choices=["all", "verification"], default="all")
    run_parser.add_argument("--max-children", type=int, default=2)
    run_parser.add_argument("--profile", default="mutation", help="the hypothesis profile (default: mutation)")
    run_parser.add_argument("--sample", type=share, default=1.0, help="run this share of the mutants, e.g. 0.1")
    run_parser.add_argument("--seed", default="ksi", help="which sample --sample takes (default: ksi)")
    run_parser.add_argument("patterns", nargs="*", help="mutant names or globs, e.g. 'migrator.codec.*'")
    summary_parser = commands.add_parser("summary", help="write the figures of the last run in mutants/")
    summary_parser.add_argument("--tests", choices=["all", "verification"], default="all")
    commands.add_parser("report", help="join both runs' figures and the review into mutation.md")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.tests, args.profile, args.max_children, args.patterns, args.sample, args.seed)
    if args.command == "summary":
        write_summary(args.tests)
    else:
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
