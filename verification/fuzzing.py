"""The harness's hypothesis profiles and the nightly run's time budget, as a pytest plugin.

Loaded through the package's `pytest11` entry point (`verification.pytest_plugin`), so the
profiles exist wherever the package is installed and are chosen with hypothesis's own
`--hypothesis-profile`:

* `dev`: fast, for local runs. The suite's own conftest files make it the default
  (`load_default_profile`); installing the package changes no other project's settings.
* `ci`: derandomised and bounded, so the suite is reproducible and stays inside CI's time. When
  the nightly example database exists (`.hypothesis/nightly/`, or `$KSI_NIGHTLY_DB`), `ci`
  replays it read-only first, so a failure found at night fails CI until it is fixed.
* `mutation`: `ci` with 10 examples a test, for mutation testing (one run of the tests per mutant).
* `nightly`: thousands of examples a test, no deadline, every phase, and that database, which
  it writes.

`--ksi-fuzz-budget SECONDS` bounds a run in time: each fuzzing test gets a share of what is left
when it starts, and starts no new example once its share is spent; once the whole budget is spent
no new test starts (a test already failing still shrinks and reports its failure). The run ends
with the usual pytest summary and a `ksi fuzzing` section listing the examples each test ran.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, is_hypothesis_test, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase
from hypothesis.errors import UnsatisfiedAssumption
from hypothesis.stateful import RuleBasedStateMachine

from verification.gate.options import positive_number

DEFAULT_PROFILE = "dev"
PROFILE_ENV = "HYPOTHESIS_PROFILE"  # the default profile's name when --hypothesis-profile is not given
NIGHTLY_DATABASE_ENV = "KSI_NIGHTLY_DB"
NIGHTLY_EXAMPLES_ENV = "KSI_NIGHTLY_EXAMPLES"
FUZZ_BUDGET_OPTION = "--ksi-fuzz-budget"
REPORT_ATTRIBUTE = "ksi_fuzz"  # JSON text {"examples", "cut", "started"} on each test's teardown report
WORKER_DEADLINE = "ksi_fuzz_deadline"

NIGHTLY_DATABASE = Path(os.environ.get(NIGHTLY_DATABASE_ENV) or Path(".hypothesis") / "nightly").resolve()
SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]


# --- the profiles ------------------------------------------------------------------------------


def ci_settings(nightly_database: Path) -> settings:
    derandomised = settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=SLOW_IS_FINE,
    )
    if not nightly_database.is_dir():
        return derandomised
    # `derandomize=True` refuses a database beside it, because a database the run writes makes
    # each run depend on the last. One it only reads keeps a CI run a function of the code and
    # of that database; set on a child of the derandomised settings, hypothesis replays its
    # examples first, then generates the same examples as ever.
    return settings(derandomised, database=ReadOnlyDatabase(DirectoryBasedExampleDatabase(nightly_database)))


settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=SLOW_IS_FINE)
settings.register_profile("ci", ci_settings(NIGHTLY_DATABASE))
# Mutation testing (`python -m benchmarks.mutation`) runs the tests once per mutant: derandomised,
# so a kill is the same on every run, a sixth of `ci`'s examples, and no shrinking (a kill needs
# a failure, not its smallest example, which can take minutes), so a run fits in a night.
MUTATION_PROFILE = "mutation"
settings.register_profile(
    MUTATION_PROFILE,
    ci_settings(NIGHTLY_DATABASE),
    max_examples=10,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.register_profile(
    "nightly",
    max_examples=int(os.environ.get(NIGHTLY_EXAMPLES_ENV, "5000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(NIGHTLY_DATABASE),
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=SLOW_IS_FINE,
)


def load_default_profile(config: pytest.Config) -> None:
    """The suite's default profile, unless `--hypothesis-profile` chose one (called by its conftest files)."""
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile(os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE)


# --- the time budget ---------------------------------------------------------------------------


@dataclass
class TestTally:
    deadline: float = 0.0  # time.time() after which this test starts no new example: its share's end
    examples: int = 0
    failed: bool = False  # an example raised: the test is never cut, so that its failure is shrunk and reported
    cut: bool = False
    started: bool = False


@dataclass
class FuzzBudget:
    """The run's budget, shared out between the fuzzing tests as they start.

    Each gets the time left divided by the fuzzing tests this process has still to start (the
    collected hypothesis tests over the xdist workers), so the first test cannot take the whole
    night, and what a quick test leaves goes to the ones after it.
    """

    seconds: float
    deadline: float  # time.time() after which nothing new starts
    fuzz_tests_left: int = 0  # in this process
    current: TestTally = field(default_factory=TestTally)

    def start_test(self, fuzzes: bool) -> None:
        now = time.time()
        self.current = TestTally(deadline=self.deadline)
        if now >= self.deadline:
            pytest.skip(f"the fuzz budget of {self.seconds:g} s was spent before this test started")
        self.current.started = True
        if fuzzes:
            self.current.deadline = min(self.deadline, now + (self.deadline - now) / max(1, self.fuzz_tests_left))
            self.fuzz_tests_left = max(0, self.fuzz_tests_left - 1)

    def stop_if_spent(self) -> None:
        """Skips the rest of the test once its share is spent, unless an example of it failed."""
        if time.time() >= self.current.deadline and not self.current.failed:
            self.current.cut = True
            # A skip: hypothesis lets it through at once, without shrinking or reporting anything.
            pytest.skip(
                f"its share of the fuzz budget of {self.seconds:g} s was spent after {self.current.examples:,} "
                "examples of this test, none of them failing"
            )

    def example_raised(self, exc: BaseException) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, UnsatisfiedAssumption):
            self.current.failed = True


_active: FuzzBudget | None = None  # set while a run with a budget is configured


def budgeted(inner_test: Callable[..., Any]) -> Callable[..., Any]:
    """A @given test's body (its `hypothesis.inner_test`), which starts no example once the budget is spent.

    It stops after the example's arguments are drawn, as hypothesis requires of a test that ends
    early: a choice sequence it has seen run on must run on the same way again.
    """

    @functools.wraps(inner_test)
    def run_example(*args: Any, **kwargs: Any) -> Any:
        budget = _active
        if budget is None:
            return inner_test(*args, **kwargs)
        budget.stop_if_spent()
        budget.current.examples += 1
        try:
            return inner_test(*args, **kwargs)
        except BaseException as exc:
            budget.example_raised(exc)
            raise

    run_example.ksi_budgeted = True  # type: ignore[attr-defined]
    return run_example


def honour_budget(test: Any) -> Any:
    """A @given test whose examples honour the budget. The plugin does this for every collected
    test; a test that builds a hypothesis test while it runs calls it on what it built."""
    handle = test.hypothesis
    if not getattr(handle.inner_test, "ksi_budgeted", False):  # parametrised items share one test
        handle.inner_test = budgeted(handle.inner_test)
    return test


class BudgetedMachine(RuleBasedStateMachine):
    """A hypothesis state machine whose run ends once the budget is spent.

    Each example is a new machine. It draws its steps as it runs, so the budget is looked at when
    an example ends, in `teardown`, which hypothesis calls in a `finally`: an example that failed
    is still the exception in flight there.
    """

    def __init__(self) -> None:
        super().__init__()
        if _active is not None:
            _active.current.examples += 1

    def teardown(self) -> None:
        if _active is None:
            return
        failure = sys.exc_info()[1]
        if failure is not None:
            _active.example_raised(failure)
        else:
            _active.stop_if_spent()


# --- the plugin --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ksi-fuzzing", "KSI generative harness")
    group.addoption(
        FUZZ_BUDGET_OPTION,
        type=positive_number("seconds", "s"),
        metavar="SECONDS",
        help="start no new test or example once this many seconds have passed, and list the examples "
        "each test ran (for the nightly run)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _active
    seconds: float | None = config.getoption(FUZZ_BUDGET_OPTION)
    if seconds is None:
        return
    workerinput = getattr(config, "workerinput", None)
    deadline = workerinput[WORKER_DEADLINE] if workerinput else time.time() + seconds
    _active = FuzzBudget(seconds, deadline)
    config.pluginmanager.register(BudgetPlugin(_active, is_controller=workerinput is None), "ksi-fuzz-budget")


def pytest_sessionstart(session: pytest.Session) -> None:
    # After hypothesis's own plugin has loaded the profile chosen (`--hypothesis-profile`, or ours).
    if settings.get_current_profile_name() == MUTATION_PROFILE:
        draw_without_local_constants()


def draw_without_local_constants() -> None:
    """Hypothesis now and then draws a constant it found in the code under test (a literal of a
    local module). Under mutmut that code holds every mutant's literals ("XXtextXX"), so a
    derandomised test draws other examples there than in the checkout, and a mutant killed by hand
    survives mutmut's run, or the other way round. The `mutation` profile draws without them, in
    both places. Hypothesis has no setting for it: its provider's one function is replaced."""
    from hypothesis.internal.conjecture import providers

    providers._get_local_constants = providers.Constants  # an empty set of constants


def pytest_unconfigure(config: pytest.Config) -> None:
    global _active
    plugin = config.pluginmanager.get_plugin("ksi-fuzz-budget")
    if plugin is not None and plugin.budget is _active:
        _active = None


@dataclass
class BudgetPlugin:
    """The budget's hooks: each test starts through it, and the controller sums up what ran."""

    budget: FuzzBudget
    is_controller: bool
    started_at: float = field(default_factory=time.time)
    tallies: dict[str, dict[str, Any]] = field(default_factory=dict)  # by node id, on the controller
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # each phase's, by node id

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        fuzzing = [item for item in items if fuzzes(item)]
        for item in fuzzing:
            # A state machine's TestCase is a hypothesis test without a handle: BudgetedMachine covers it.
            if hasattr(item.obj, "hypothesis"):  # type: ignore[attr-defined]
                honour_budget(item.obj)  # type: ignore[attr-defined]
        workers = getattr(config, "workerinput", {}).get("workercount", 1)
        self.budget.fuzz_tests_left = -(-len(fuzzing) // workers)  # xdist shares them out about evenly

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.budget.start_test(fuzzes(item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.when == "teardown":
            tally = self.budget.current
            payload = {"examples": tally.examples, "cut": tally.cut, "started": tally.started}
            setattr(report, REPORT_ATTRIBUTE, json.dumps(payload))  # xdist carries it to the controller
        return report

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_DEADLINE] = self.budget.deadline

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.is_controller:
            return
        outcomes = self.outcomes.setdefault(report.nodeid, [])
        outcomes.append(report.outcome)
        payload = getattr(report, REPORT_ATTRIBUTE, None)
        if payload is not None:
            self.tallies[report.nodeid] = {**json.loads(payload), "state": final_state(json.loads(payload), outcomes)}

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.is_controller:
            return
        terminalreporter.section("ksi fuzzing")
        for line in budget_summary(self.budget.seconds, time.time() - self.started_at, self.tallies):
            terminalreporter.write_line(line)


def fuzzes(item: pytest.Item) -> bool:
    """A @given test or a state machine, or a test that builds one as it runs and says so with
    hypothesis's own marker, `@pytest.mark.hypothesis`."""
    return is_hypothesis_test(getattr(item, "obj", None)) or item.get_closest_marker("hypothesis") is not None


def final_state(tally: dict[str, Any], outcomes: list[str]) -> str:
    """How a test ended, in the words of the summary."""
    if "failed" in outcomes:
        return "failed"
    if tally["cut"]:
        return "cut short"
    if not tally["started"]:
        return "not started"
    return "skipped" if "skipped" in outcomes else "ran all its examples"


STATES = ("ran all its examples", "failed", "cut short", "not started", "skipped")


def budget_summary(seconds: float, elapsed: float, tallies: dict[str, dict[str, Any]]) -> list[str]:
    """What ran within the budget: one line in all, then one line a test."""
    counts = Counter(tally["state"] for tally in tallies.values())
    examples = sum(tally["examples"] for tally in tallies.values())
    states = ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])
    lines = [
        f"budget {seconds:g} s, {elapsed:.0f} s used; {len(tallies)} tests: {states}; {examples:,} examples in all",
        f"{'examples':>10}  test",
    ]
    # Each test that ran examples, was cut short or never started; the others (no hypothesis) are in the count above.
    for test, tally in tallies.items():
        if tally["examples"] or tally["state"] in ("cut short", "not started", "failed"):
            count = "-" if tally["state"] == "not started" else f"{tally['examples']:,}"
            lines.append(f"{count:>10}  {test} ({tally['state']})")
    return lines
