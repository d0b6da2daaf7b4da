"""The benchmark's own plumbing (`benchmarks/`), never its timings: those are figures, not tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import mutation
from benchmarks.run import gate_seconds
from migrator.backfill import backfill
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource
from migrator.target import target_database


def test_the_timed_gate_runs_to_the_end_when_every_save_and_lookup_is_over_the_plans_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy machine, made certain: pytest reads PYTEST_ADDOPTS before the command line, so these
    # limits hold unless the benchmark's command sets its own. With the plan's limits, the gate's
    # latency check fails and the benchmark stops with no result at all.
    monkeypatch.setenv("PYTEST_ADDOPTS", "--ksi-max-checkpoint-save-ms 0.0001 --ksi-max-session-lookup-ms 0.0001")
    snapshot, target = tmp_path / "legacy.db", tmp_path / "target.db"
    fabricate_snapshot(snapshot, checkpoints=5, sessions=20, seed=1)
    with LegacySource(snapshot) as source, target_database(target) as database:
        backfill(source, database)

    seconds = gate_seconds(snapshot, target, 0, tmp_path)

    assert seconds > 0
    assert (tmp_path / "signoff-n0" / "signoff.md").read_text().startswith("PASS")


def test_a_mutation_sample_takes_its_share_of_each_module_and_the_same_mutants_every_time() -> None:
    names = [f"migrator.{module}.x_f__mutmut_{n}" for module in ("codec", "records") for n in range(1, 2001)]

    chosen = [name for name in names if mutation.in_sample(name, 0.1, "ksi")]
    again = [name for name in reversed(names) if mutation.in_sample(name, 0.1, "ksi")]

    assert sorted(chosen) == sorted(again)  # a name's fate depends on the name alone, not on the others
    for module in ("codec", "records"):
        share = sum(1 for name in chosen if f".{module}." in name) / 2000
        assert 0.08 < share < 0.12
    other_seed = {name for name in names if mutation.in_sample(name, 0.1, "other")}
    assert 0 < len(other_seed & set(chosen)) < len(chosen) / 2
    assert all(mutation.in_sample(name, 1.0, "ksi") for name in names)


@pytest.mark.parametrize(
    ("part", "whole", "low", "high"),
    # Worked by hand from Wilson's formula with z = 1.96.
    [(95, 100, 0.8882, 0.9785), (20, 20, 0.8389, 1.0), (0, 10, 0.0, 0.2775), (1, 2, 0.0945, 0.9055)],
)
def test_a_sampled_score_has_wilsons_95_percent_interval(part: int, whole: int, low: float, high: float) -> None:
    assert mutation.wilson_interval(part, whole) == pytest.approx((low, high), abs=5e-5)


def test_the_mutation_summary_counts_the_sampled_mutants_against_their_modules_population(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = {f"migrator.codec.x_f__mutmut_{n}": n % 3 for n in range(1, 401)}  # killed 1, 2 (suspicious), 0
    meta = tmp_path / "mutants" / "migrator" / "codec.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": names}))
    monkeypatch.setattr(mutation, "diff", lambda mutant: f"- {mutant}")
    mutation.start_work_folder("all", {"rate": 0.25, "seed": "ksi"})
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": names}))  # a new sample starts the work folder afresh

    mutation.write_summary("all")

    summary = json.loads((tmp_path / "benchmarks" / "results" / "mutation-all.json").read_text())
    sampled = [name for name in names if mutation.in_sample(name, 0.25, "ksi")]
    assert summary["population"] == {"migrator.codec": 400}
    assert sum(summary["modules"]["migrator.codec"].values()) == len(sampled)
    assert set(summary["survivors"]) == {name for name in sampled if names[name] == 0}
    lines = mutation.table(summary, {})
    assert lines[2].startswith("| `migrator.codec` | 400 | ")
    assert "% (" in lines[-1]  # a sampled score comes with its interval
