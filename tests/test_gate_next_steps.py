"""The sign-off's advice (`verification/gate/next_steps.py`) and its latency rule
(`verification/gate/performance.py`): pure functions, checked without running the gate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from verification.gate.checks import CHECK_TITLES, METADATA, PERFORMANCE, QUARANTINE, ROWS_EXACT, SOURCE_COLUMNS
from verification.gate.ledger import FAIL, NOT_RUN, PASS, CheckVerdict
from verification.gate.next_steps import STEPS_FOR_FAILED, Invocation, next_steps, without
from verification.gate.performance import latency_result, measure_until_judged, repeated

ARGS = ("--pyargs", "verification", "--ksi-snapshot", "/data/legacy.db", "-n", "auto")


def invocation(target: str | None = None, args: tuple[str, ...] = ARGS) -> Invocation:
    return Invocation(
        Path("/work"), "/venv/bin/python", args, (Path("/data/legacy.db"),), target, Path("/s/signoff.json")
    )


def verdict(name: str, outcome: str) -> CheckVerdict:
    return CheckVerdict(name, name, outcome, "summary")


@pytest.mark.parametrize(
    "narrowed",
    [("-k", "latency"), ("-klatency",), ("-k=latency",), ("--deselect", "x::y"), ("-x",), ("--maxfail=1",)],
)
def test_the_whole_gate_is_the_run_without_what_narrowed_or_stopped_it(narrowed: tuple[str, ...]) -> None:
    run = invocation(args=(*ARGS[:2], *narrowed, *ARGS[2:]))

    assert run.whole_gate() == list(ARGS)
    assert run.rerun() == "cd /work && /venv/bin/python -m pytest " + " ".join(ARGS)


def test_accepting_replaces_an_earlier_accept_file_and_keeps_everything_else() -> None:
    run = invocation(args=(*ARGS, "--ksi-accept-quarantine", "old.json"))

    assert run.rerun_accepting("accepted.json").endswith(" ".join(ARGS) + " --ksi-accept-quarantine accepted.json")
    assert without(["-p", "x", "--ksi-accept-quarantine=old.json"], ("--ksi-accept-quarantine",), ()) == ["-p", "x"]


def test_a_pass_needs_nothing_and_a_check_that_did_not_run_is_run_again_whole() -> None:
    run = invocation(args=(*ARGS, "-k", "not schema"))

    assert next_steps(verdict(QUARANTINE, PASS), run) == []
    (step,) = next_steps(verdict(QUARANTINE, NOT_RUN), run)
    assert step.endswith(f"`{invocation().rerun()}`")


def test_a_database_url_never_appears_in_the_advice() -> None:
    url = "postgresql://signer:s3cret@db.internal:5432/ksi"

    steps = next_steps(verdict(ROWS_EXACT, FAIL), invocation(target=url))

    assert "s3cret" not in "".join(steps)
    assert "`/venv/bin/python -m migrator migrate --source /data/legacy.db --target TARGET`" in steps[0]


def test_a_scratch_target_that_fails_is_a_defect_to_report_not_to_patch() -> None:
    (step,) = next_steps(verdict(ROWS_EXACT, FAIL), invocation())

    assert "defect" in step and "-m migrator" not in step


def test_every_check_that_fails_has_advice_of_its_own() -> None:
    # The generic advice (see the problems, run again) would fail again: each check says what mends it.
    assert set(STEPS_FOR_FAILED) == set(CHECK_TITLES)


def test_metadata_recorded_from_an_older_snapshot_is_caught_up_by_migrate() -> None:
    # A target migrated before the daemon's DDL or counter changed: a catch-up records them anew.
    steps = next_steps(verdict(METADATA, FAIL), invocation(target="/data/target.db"))

    assert "`/venv/bin/python -m migrator migrate --source /data/legacy.db --target /data/target.db`" in steps[0]
    assert steps[-1].startswith(f"Sign off again: `{invocation().rerun()}`")


def test_a_column_the_migrator_does_not_carry_stops_the_cutover() -> None:
    steps = next_steps(verdict(SOURCE_COLUMNS, FAIL), invocation())

    assert "does not carry" in steps[0] and "Do not cut over" in steps[0]
    assert steps[-1].endswith(f"`{invocation().rerun()}`")


# --- latency: measured again before failing ----------------------------------------------------


def rounds(*measurements: list[float]) -> Callable[[], list[float]]:
    """A measurement that hands out one of these rounds each time it is taken."""
    remaining = list(measurements)
    return lambda: remaining.pop(0)


def test_a_latency_under_its_limit_is_measured_once() -> None:
    measurements = measure_until_judged(rounds([1.0, 2.0], [50.0]), limit_ms=10)

    assert measurements == [[1.0, 2.0]]
    assert latency_result("session_lookup", measurements, 10, [], min_samples=2).passed


def test_a_slow_round_is_measured_again_and_passes_when_the_second_is_under_the_limit() -> None:
    measurements = measure_until_judged(rounds([1.0, 50.0], [1.0, 2.0]), limit_ms=10)
    result = latency_result("session_lookup", measurements, 10, [], min_samples=2)

    assert result.passed
    assert [figures["p99_ms"] for figures in result.figures["measurements"]] == [50.0, 2.0]
    assert result.figures["p99_ms"] == 2.0
    assert "the first p99 50.0 ms was over the limit" in result.summary


def test_a_latency_over_its_limit_twice_fails_with_both_rounds_recorded() -> None:
    measurements = measure_until_judged(rounds([20.0], [30.0]), limit_ms=10)
    result = latency_result("checkpoint_save", measurements, 10, [], min_samples=1)

    assert not result.passed
    assert [figures["p99_ms"] for figures in result.figures["measurements"]] == [20.0, 30.0]
    assert result.problems == ["checkpoint save p99 30.0 ms is not under the 10 ms limit"]
    assert result.check == PERFORMANCE


def test_a_latency_under_its_limit_over_too_few_samples_fails_as_insufficient() -> None:
    """Five saves (a real checkpoint table) give a p99 that is only the slowest of them."""
    result = latency_result("checkpoint_save", [[1.0] * 5], 10, [], distinct=5)

    assert not result.passed
    assert result.problems == ["checkpoint save: insufficient samples, 5 measured where a p99 needs at least 200"]
    assert (result.figures["samples"], result.figures["min_samples"], result.figures["distinct"]) == (5, 200, 5)
    assert latency_result("checkpoint_save", [[1.0] * 200], 10, [], distinct=5).passed


def test_a_few_rows_are_drawn_again_in_turn_until_there_are_enough_samples() -> None:
    assert repeated(["a", "b", "c"], 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert repeated(["a", "b", "c"], 2) == ["a", "b", "c"]
    assert repeated([], 200) == []


def test_a_masked_password_is_named_so_that_the_commands_can_be_run() -> None:
    masked = "postgresql://signer:***@db.internal:5432/ksi"
    run = Invocation(
        Path("/work"), "/venv/bin/python", (*ARGS, "--ksi-target", masked), (Path("/data/legacy.db"),), masked,
        Path("/s/signoff.json"), password_masked=True,
    )  # fmt: skip

    steps = next_steps(verdict(QUARANTINE, NOT_RUN), run)

    assert masked in steps[0]
    assert steps[-1].startswith("The target's password is shown as ***")
