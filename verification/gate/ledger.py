"""The controller's tally: the gate's test reports, whichever worker ran them, folded into one
verdict per check.

A check passes only when it ran and every one of its tests passed. A check whose tests did not
all run (deselected with -k, stopped by -x, lost with a crashed worker) is not a pass: the
exactness check knows its planned shards, so a missing shard fails it by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from verification.gate.checks import CHECK_TITLES, MAX_PROBLEMS, ROWS_EXACT, CheckResult, Shard, table_counts
from verification.gate.coverage import check_coverage, compared_rowids

PASS, FAIL, SKIP, NOT_RUN = "PASS", "FAIL", "SKIP", "NOT RUN"
OUTCOME_WEIGHT = {"passed": 0, "skipped": 1, "failed": 2}  # a test's worst phase is its outcome


@dataclass
class TestRecord:
    test: str  # the test's name with its parameters, e.g. test_rows_exact[checkpoints-rowid-1-5]
    outcome: str = "passed"
    result: dict[str, Any] | None = None  # CheckResult's fields, as they crossed from the worker
    failure: str | None = None  # pytest's own message when the test broke or was skipped

    def note(self, outcome: str, failure: str | None) -> None:
        if OUTCOME_WEIGHT[outcome] > OUTCOME_WEIGHT[self.outcome]:
            self.outcome = outcome
        if failure:
            self.failure = failure

    @property
    def passed(self) -> bool:
        return self.outcome == "passed" and self.result is not None and self.result["passed"]

    def problems(self) -> list[str]:
        found = list(self.result["problems"]) if self.result else []
        if self.outcome == "failed" and not found:  # broke before it could say what was wrong
            found.append(f"{self.test}: {self.failure or 'failed'}")
        return found

    def describe(self) -> str:
        if self.result:
            return self.result["summary"]
        return f"{self.test} {self.outcome}" + (f": {self.failure}" if self.failure else "")


@dataclass
class CheckVerdict:
    name: str
    title: str
    verdict: str
    summary: str
    problems: list[str] = field(default_factory=list)
    tests: list[TestRecord] = field(default_factory=list)


class Ledger:
    def __init__(self, planned: list[Shard]) -> None:
        self.planned = planned
        self.planned_shards = [shard.id for shard in planned]
        self.records: dict[str, dict[str, TestRecord]] = {name: {} for name in CHECK_TITLES}

    def note_report(
        self, check: str, test: str, outcome: str, result: dict[str, Any] | None, failure: str | None
    ) -> None:
        """One phase's report (setup, call or teardown) of one of the gate's tests."""
        record = self.records[check].setdefault(test, TestRecord(test))
        record.note(outcome, failure)
        if result is not None:
            record.result = result

    def note_result(self, test: str, result: CheckResult) -> None:
        """A result the controller measured itself (the source's hashes once every worker is done)."""
        self.note_report(result.check, test, "passed", vars(result), None)

    def figures(self, check: str) -> list[dict[str, Any]]:
        return [record.result["figures"] for record in self.records[check].values() if record.result]

    def add_up_shards(self) -> None:
        """Each table's counts and checksums, added up from the figures its shards reported.

        Left not run when no shard ran at all (deselected, say): there is nothing to add up.
        """
        if not self.records[ROWS_EXACT]:
            return
        for table in dict.fromkeys(shard.table for shard in self.planned):
            result = table_counts(table, self.planned, self.figures(ROWS_EXACT))
            self.note_result(f"{table}, added up from its shards by the controller", result)

    def add_up_coverage(self, indexed: Callable[[str], Iterable[int]]) -> None:
        """Each table's rowid index (`indexed(table)`, read by the controller) against the rowids
        its shards reported comparing: each must be compared by exactly one shard.

        Left not run when no shard ran at all, as the counts are.
        """
        if not self.records[ROWS_EXACT]:
            return
        reported = compared_rowids(record.result for record in self.records[ROWS_EXACT].values() if record.result)
        for table in dict.fromkeys(shard.table for shard in self.planned):
            result = check_coverage(table, indexed(table), self.planned, reported.get(table, {}))
            self.note_result(f"{table}, its rowid index against its shards' rowids, by the controller", result)

    def verdicts(self) -> list[CheckVerdict]:
        return [self.verdict_of(name) for name in CHECK_TITLES]

    def verdict_of(self, name: str) -> CheckVerdict:
        records = list(self.records[name].values())
        problems = [line for record in records for line in record.problems()]
        if name == ROWS_EXACT:
            problems += self.unrun_shard_problems(records)
        verdict = self.judge(records, problems)
        summary = shards_summary(records, self.planned_shards) if name == ROWS_EXACT else joined_summary(records)
        return CheckVerdict(name, CHECK_TITLES[name], verdict, summary, cap(problems), records)

    @staticmethod
    def judge(records: list[TestRecord], problems: list[str]) -> str:
        if not records:
            return NOT_RUN
        if problems or any(record.outcome == "failed" for record in records):
            return FAIL
        if any(record.outcome == "skipped" for record in records):
            return SKIP
        return PASS if all(record.passed for record in records) else FAIL

    def unrun_shard_problems(self, records: list[TestRecord]) -> list[str]:
        ran = {record.result["figures"]["shard"] for record in records if record.result}
        unrun = [shard for shard in self.planned_shards if shard not in ran]
        if not unrun or not records:
            return []  # a check with no test at all is reported as NOT RUN instead
        return [f"{len(unrun)} of {len(self.planned_shards)} shards did not run: {', '.join(cap(unrun))}"]


def cap(lines: list[str], limit: int = MAX_PROBLEMS) -> list[str]:
    return lines if len(lines) <= limit else [*lines[:limit], f"... and {len(lines) - limit:,} more"]


def joined_summary(records: list[TestRecord]) -> str:
    # dict.fromkeys drops repeats (the controller's second hash comparison) and keeps the order
    return "; ".join(dict.fromkeys(record.describe() for record in records)) if records else "did not run"


def shards_summary(records: list[TestRecord], planned: list[str]) -> str:
    figures = [record.result["figures"] for record in records if record.result]
    rows = sum(shard["source_rows"] for shard in figures)
    wrong = sum(shard["different"] + shard["missing"] + shard["extra"] for shard in figures)
    failing = sum(not record.passed for record in records)
    if wrong or failing:
        return f"{wrong:,} of {rows:,} rows wrong, in {failing} of {len(planned)} shards"
    return f"{rows:,} rows identical in {len(figures)} of {len(planned)} shards"
