"""The harness's profiles and the nightly run's time budget (`verification/fuzzing.py`), run the
way a nightly job runs them: pytest on small test files of its own (`pytester`).

Each file's examples are made slow on purpose, so that a budget of a second cuts them short;
nothing here judges how long anything took.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from verification.fuzzing import NIGHTLY_EXAMPLES_ENV, ci_settings

SLOW_TESTS = """
import time
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import rule
from verification.fuzzing import BudgetedMachine

EXAMPLES = 2000  # at 20 ms each, far more than fit in the budget
SLOW = settings(max_examples=EXAMPLES, deadline=None, database=None)

@SLOW
@given(st.integers())
def test_a_slow_property(x):
    time.sleep(0.02)

class SlowMachine(BudgetedMachine):
    @rule(x=st.integers())
    def step(self, x):
        time.sleep(0.005)

SlowMachine.TestCase.settings = settings(SLOW, stateful_step_count=4)
test_a_slow_machine = SlowMachine.TestCase

def test_after_the_budget():
    pass
"""

FAILING_TEST = """
import time
from hypothesis import Phase, given, settings, strategies as st

# Derandomised, every phase: the same examples and a shrink whatever profile the outer run loaded
# (`mutation` does not shrink). The first failing one comes within the budget (the second
# example); shrinking it runs a dozen failing examples of 100 ms each, well past the budget.
@settings(max_examples=2000, deadline=None, database=None, derandomize=True, phases=list(Phase))
@given(st.integers())
def test_fails_on_anything_but_zero(x):
    time.sleep(0.1 if x else 0.02)
    assert x == 0
"""


def examples_ran(result: pytest.RunResult, test: str) -> int:
    """The summary's count of examples for one test."""
    for line in result.outlines:
        match = re.match(rf"\s*([\d,]+)\s+\S*{re.escape(test)} \(", line)
        if match:
            return int(match.group(1).replace(",", ""))
    raise AssertionError(f"{test} is not in the ksi fuzzing summary")


# --- the budget --------------------------------------------------------------------------------


def test_the_budget_is_shared_between_the_fuzzing_tests_and_once_spent_no_test_starts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_slow=SLOW_TESTS)

    # Three seconds, not one: each test's share must outlast a busy machine's start-up of it
    # (a budget of 1 s once left the second test nothing at a load average of 9).
    result = pytester.runpytest_inprocess("--ksi-fuzz-budget", "3", "-rs")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*ksi fuzzing*",
            "budget 3 s, * s used; 3 tests: 2 cut short, 1 not started; * examples in all",
            "*test_slow.py::test_a_slow_property (cut short)",  # half the budget, not all of it
            "*test_slow.py::test_a_slow_machine::runTest (cut short)",  # the other half
            "*-  test_slow.py::test_after_the_budget (not started)",
        ]
    )
    result.stdout.fnmatch_lines(["*its share of the fuzz budget of 3 s was spent after * examples of this test*"])
    assert 0 < examples_ran(result, "test_a_slow_property") < 2000
    assert 0 < examples_ran(result, "test_a_slow_machine::runTest") < 2000


def test_a_state_machine_stops_between_two_of_its_examples(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TESTS)

    result = pytester.runpytest_inprocess("--ksi-fuzz-budget", "0.5", "-k", "machine")

    result.assert_outcomes(skipped=1, deselected=2)
    result.stdout.fnmatch_lines(["*test_slow.py::test_a_slow_machine::runTest (cut short)"])
    assert 0 < examples_ran(result, "test_a_slow_machine::runTest") < 2000


def test_a_failure_found_as_the_budget_runs_out_is_still_shrunk_and_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING_TEST)

    result = pytester.runpytest_inprocess("--ksi-fuzz-budget", "0.5")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*x=1,*", "*test_failing.py::test_fails_on_anything_but_zero (failed)"])


def test_without_a_budget_nothing_is_cut_and_no_summary_is_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING_TEST.replace("2000", "3").replace("== 0", "== x"))

    result = pytester.runpytest_inprocess()

    result.assert_outcomes(passed=1)
    assert "ksi fuzzing" not in result.stdout.str()


@pytest.mark.parametrize("value", ["0", "-1", "an hour", "nan"])
def test_a_budget_that_is_not_a_positive_number_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest_inprocess(f"--ksi-fuzz-budget={value}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ksi-fuzz-budget*"])


# --- the profiles ------------------------------------------------------------------------------


def test_the_profiles_are_there_to_choose_but_another_project_keeps_its_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hypothesis itself loads a profile named "ci" when $CI is set; that choice is not ours to test.
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_profile="""
        from hypothesis import settings
        def test_profile():
            print("PROFILE", settings.get_current_profile_name(), settings.default.max_examples)
        """
    )

    left_alone = pytester.runpytest_subprocess("-s")  # a fresh process: the profile loaded is global

    left_alone.stdout.fnmatch_lines(["*PROFILE default 100*"])  # installing the package changed nothing
    assert settings.get_profile("nightly").max_examples == int(os.environ.get(NIGHTLY_EXAMPLES_ENV, "5000"))
    assert settings.get_profile("ci").derandomize


DRAWS = """
from hypothesis import given, strategies as st
import helper  # the code under test, its literals all that changes between the runs

@given(st.lists(st.integers() | st.text(max_size=3), min_size=30, max_size=30))
def test_draws(x):
    print("DRAWN", repr(x))
"""


def drawn(pytester: pytest.Pytester, profile: str, literals: list[object]) -> list[str]:
    pytester.makepyfile(helper="\n".join(f"C{n} = {literal!r}" for n, literal in enumerate(literals)), test_draws=DRAWS)
    result = pytester.runpytest_subprocess("-s", f"--hypothesis-profile={profile}")  # a fresh process each
    result.assert_outcomes(passed=1)
    return [line for line in result.outlines if line.startswith("DRAWN")]


@pytest.mark.slow  # 20 s in the suite on a slow day (2026-12-01)
def test_the_mutation_profile_draws_the_same_examples_whatever_literals_the_code_holds(
    pytester: pytest.Pytester,
) -> None:
    # Under mutmut the code holds every mutant's literals; by hand, only the checkout's.
    checkout: list[object] = ["text", 0, "migrate"]
    mutants = checkout + [f"XX{n}XX" for n in range(300)] + list(range(1000, 1300))
    assert drawn(pytester, "mutation", checkout) == drawn(pytester, "mutation", mutants)
    # Without the mutation profile hypothesis mixes the literals in: the check above can fail.
    assert drawn(pytester, "ci", checkout) != drawn(pytester, "ci", mutants)


def database_files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_ci_replays_what_the_nightly_run_found_and_never_writes_its_database(tmp_path: Path) -> None:
    run = {"as": "nightly"}

    def large_numbers(x: int) -> None:
        # One test function (its source is its key in the example database), three behaviours.
        if run["as"] == "nightly":
            assert x < 10**9  # found at night, shrunk to exactly 10**9 and saved
        elif run["as"] == "ci":
            assert x != 10**9  # CI's derandomised examples never hit it; only a replay does
        # "fixed": passes, so a database that could be written would lose the example

    def under(profile: settings) -> Callable[[], None]:
        return settings(profile)(given(st.integers())(large_numbers))

    database = tmp_path / "nightly"
    # Every phase, whatever profile loaded the defaults (`mutation` does not shrink).
    night = settings(
        max_examples=300, database=DirectoryBasedExampleDatabase(database), deadline=None, phases=list(Phase)
    )
    with pytest.raises(AssertionError, match="1000000000 < "):
        under(night)()
    saved = database_files(database)
    assert saved, "the nightly run saved nothing"

    run["as"] = "ci"
    under(ci_settings(tmp_path / "no-nightly-run-yet"))()  # derandomised generation alone never finds it
    with pytest.raises(AssertionError, match="1000000000 != "):
        under(ci_settings(database))()

    run["as"] = "fixed"
    under(ci_settings(database))()
    assert database_files(database) == saved  # replayed, never written: not even pruned once it passes
