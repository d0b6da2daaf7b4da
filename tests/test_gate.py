"""The sign-off gate run the way a signer runs it: pytest in a subprocess (`pytester`), on tiny
snapshots, under xdist where it matters, judged by its exit status and the artifacts it writes.

Latency limits are set far out of reach except where a latency failure is the point: tests here
never judge wall-clock time (tests/README.md).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
import sqlite3
import subprocess
import xml.etree.ElementTree as ElementTree
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import migrator
from migrator import engines
from migrator.archive import RowTally
from migrator.backfill import backfill
from migrator.fabricate import fabricate_snapshot
from migrator.legacy import LegacySource
from migrator.models import Checkpoint
from migrator.target import target_database
from verification.engines import Targets
from verification.gate.checks import (
    CHECK_TITLES,
    COUNTS_CHECKSUMS,
    NO_ORPHANS,
    PERFORMANCE,
    QUARANTINE,
    ROWS_COVERED,
    ROWS_EXACT,
    SCHEMA,
    Shard,
    shards_covering,
    table_counts,
)
from verification.gate.coverage import check_coverage
from verification.gate.rowids import RowidRuns, decode_runs
from verification.snapshots import checkpoint_row, session_row, write_snapshot

REPOSITORY = Path(__file__).resolve().parents[1]
GATE_TESTS = REPOSITORY / "verification" / "gate" / "test_signoff.py"
LIMITS_OUT_OF_REACH = ("--ksi-max-checkpoint-save-ms", "60000", "--ksi-max-session-lookup-ms", "60000")
WITHOUT_FAKER = ("-p", "no:faker")  # the gate uses none of faker's fixtures; each process starts faster

BLOB = {
    "timestamp": "2025-06-20T23:17:27Z",
    "session_queues": {"s1": [{"request_id": "r1", "data": {"n": 1}}]},
    "active_completions": {"r1": {"status": "queued"}},
}
SESSION = {"agent_id": "agent", "tools": ["Read", "Write", {"name": "Bash"}], "thin_handshake": True}
CHECKPOINTS = [checkpoint_row(1, BLOB), checkpoint_row(2, {**BLOB, "reason": "manual"}), checkpoint_row(4, BLOB)]
SESSIONS = [session_row(rowid, f"agent:conv-{rowid}", SESSION) for rowid in range(1, 7)]
UNREADABLE_CHECKPOINTS = [checkpoint_row(9, "[truncated")]
UNREADABLE_SESSIONS = [session_row(7, "agent:broken", "not json"), session_row(8, "agent:listed", [1, 2])]
UNREADABLE_KEYS = {("checkpoints", "9"), ("mcp_sessions", "agent:broken"), ("mcp_sessions", "agent:listed")}


@pytest.fixture(scope="module")
def clean_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("clean") / "legacy.db", CHECKPOINTS, SESSIONS)


@pytest.fixture(scope="module")
def snapshot_with_unreadable_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("unreadable") / "legacy.db"
    return write_snapshot(path, CHECKPOINTS + UNREADABLE_CHECKPOINTS, SESSIONS + UNREADABLE_SESSIONS)


@pytest.fixture(scope="module")
def fabricated_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fabricated") / "legacy.db"
    fabricate_snapshot(path, checkpoints=5, sessions=10, seed=4)  # five: the most the daemon keeps
    return path


def run_gate(pytester: pytest.Pytester, snapshot: Path, *args: str) -> pytest.RunResult:
    """The gate on `snapshot` in a subprocess (it binds the models process-wide), four rows a shard
    so that even a tiny snapshot has several shards."""
    return pytester.runpytest_subprocess(
        str(GATE_TESTS),
        *WITHOUT_FAKER,
        "--ksi-snapshot",
        str(snapshot),
        "--ksi-shard-rows",
        "4",
        *LIMITS_OUT_OF_REACH,
        *args,
    )


def run_gate_in_process(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """For runs that stop before the gate opens a database: no subprocess to start."""
    return pytester.runpytest_inprocess(str(GATE_TESTS), *WITHOUT_FAKER, *args)


def read_signoff(pytester: pytest.Pytester) -> dict[str, Any]:
    return json.loads((pytester.path / "signoff" / "signoff.json").read_text(encoding="utf-8"))


def checks_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in document["checks"]}


def verdicts(document: dict[str, Any]) -> dict[str, str]:
    return {name: check["verdict"] for name, check in checks_by_name(document).items()}


# --- a passing sign-off ------------------------------------------------------------------------


def test_a_fabricated_snapshot_passes_under_xdist_and_both_artifacts_say_so(
    pytester: pytest.Pytester, fabricated_snapshot: Path
) -> None:
    junit = pytester.path / "junit.xml"
    result = run_gate(pytester, fabricated_snapshot, "-n", "2", f"--junitxml={junit}")

    assert result.ret == pytest.ExitCode.OK
    document = read_signoff(pytester)
    assert document["verdict"] == "PASS"
    assert verdicts(document) == dict.fromkeys(CHECK_TITLES, "PASS")
    assert document["counts"] == {
        "checkpoints": {"source_rows": 5, "rebuilt_rows": 5},
        "mcp_sessions": {"source_rows": 10, "rebuilt_rows": 10},
    }
    assert all(sums["source"] == sums["rebuilt"] for sums in document["checksums"].values())
    assert document["snapshot"]["sha256"] == hashlib.sha256(fabricated_snapshot.read_bytes()).hexdigest()
    assert document["tool"]["version"] == migrator.__version__
    assert document["quarantine"] == []
    assert set(document["latencies"]) == {"checkpoint_save", "session_lookup"}
    saves = document["latencies"]["checkpoint_save"]
    assert saves["samples"] >= 200 and saves["distinct"] == 5  # the five checkpoints, each saved again
    markdown = (pytester.path / "signoff" / "signoff.md").read_text(encoding="utf-8")
    assert f"over {saves['samples']} samples of 5 distinct rows" in markdown
    assert markdown.startswith("PASS")
    assert "| Per-row exactness, both ways, and reads | PASS |" in markdown
    # progress: each shard's rows per second, printed by the controller
    result.stdout.re_match_lines([r".*test_rows_exact\[mcp_sessions-rowid-1-4\] ok: 4 rows, 0 wrong, .* rows/s\)"])
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    verdict_cases = len(CHECK_TITLES) + 1  # one junit test case per check's verdict, and the sign-off's
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (str(14 + verdict_cases), "0", "0")


# --- quarantine --------------------------------------------------------------------------------


@pytest.mark.slow  # 13 s in the suite on a slow day (2026-12-01)
def test_unreadable_rows_fail_the_gate_until_the_signer_accepts_exactly_them(
    pytester: pytest.Pytester, snapshot_with_unreadable_rows: Path
) -> None:
    refused = run_gate(pytester, snapshot_with_unreadable_rows, "-n", "2")

    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    document = read_signoff(pytester)
    assert document["verdict"] == "FAIL"
    assert verdicts(document)[QUARANTINE] == "FAIL"
    assert verdicts(document)[ROWS_EXACT] == "PASS"  # quarantined rows still come back verbatim
    assert {(entry["table"], entry["key"]) for entry in document["quarantine"]} == UNREADABLE_KEYS
    assert all(entry["reason"] for entry in document["quarantine"])

    accept_file = pytester.path / "accepted.json"
    accept_file.write_text(json.dumps(document["quarantine"]), encoding="utf-8")  # the signer's reviewed list
    accepted = run_gate(pytester, snapshot_with_unreadable_rows, "--ksi-accept-quarantine", str(accept_file))

    assert accepted.ret == pytest.ExitCode.OK
    assert read_signoff(pytester)["verdict"] == "PASS"

    document["quarantine"][0]["reason"] = "a reason nobody reviewed"
    accept_file.write_text(json.dumps(document["quarantine"]), encoding="utf-8")
    rereviewed = run_gate(pytester, snapshot_with_unreadable_rows, "--ksi-accept-quarantine", str(accept_file))
    assert rereviewed.ret == pytest.ExitCode.TESTS_FAILED  # accepted for another reason is not accepted


def test_an_accepted_row_that_is_not_quarantined_fails_the_gate_as_a_stale_list(
    pytester: pytest.Pytester, clean_snapshot: Path
) -> None:
    accept_file = pytester.path / "accepted.json"
    accept_file.write_text(json.dumps([{"table": "mcp_sessions", "key": "agent:conv-1", "reason": "x"}]))

    result = run_gate(pytester, clean_snapshot, "--ksi-accept-quarantine", str(accept_file))

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    quarantine = checks_by_name(read_signoff(pytester))[QUARANTINE]
    assert quarantine["verdict"] == "FAIL"
    assert quarantine["problems"] == [
        "mcp_sessions agent:conv-1 is accepted but not quarantined for that reason: the accept list is stale"
    ]


# --- a server target ---------------------------------------------------------------------------


def scratch_namespaces(target: str) -> list[str]:
    """The gate's scratch schemas (PostgreSQL) or databases (MySQL) on the target's server."""
    with closing(engines.connect(target)) as server:
        query = "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s"
        return [name for (name,) in server.execute_sql(query, (r"ksi\_gate\_%",)).fetchall()]


def test_a_server_target_signs_off_with_latencies_measured_on_a_scratch_copy_beside_it(
    pytester: pytest.Pytester, fabricated_snapshot: Path, server_engine: Targets
) -> None:
    with server_engine.fresh() as target:
        with LegacySource(fabricated_snapshot) as source, target_database(target) as database:
            backfill(source, database)

        result = run_gate(pytester, fabricated_snapshot, "--ksi-target", target, "-n", "2")

        assert result.ret == pytest.ExitCode.OK
        document = read_signoff(pytester)
        assert verdicts(document) == dict.fromkeys(CHECK_TITLES, "PASS")
        assert {name: figures["samples"] for name, figures in document["latencies"].items()} == {
            "checkpoint_save": 200,
            "session_lookup": 200,
        }
        with target_database(target) as database:  # the saves went to the copy, not the target
            assert Checkpoint.select().count() == 5
        assert scratch_namespaces(target) == []  # and the copy is gone


# --- a damaged target --------------------------------------------------------------------------


def damaged_target(pytester: pytest.Pytester, snapshot: Path, damage: str) -> Path:
    """The snapshot migrated, then one row removed behind the migrator's back (foreign keys are
    off on a plain sqlite3 connection, so nothing cascades)."""
    target = pytester.path / "target.db"
    with LegacySource(snapshot) as source, target_database(target) as database:
        backfill(source, database)
    with closing(sqlite3.connect(target)) as connection, connection:
        assert connection.execute(damage).rowcount == 1
    return target


def test_a_relational_row_deleted_from_the_target_fails_the_gate_naming_its_legacy_row(
    pytester: pytest.Pytester, clean_snapshot: Path
) -> None:
    one_tool = "DELETE FROM mcp_session_tool WHERE session_id = 2 AND position = 1"
    target = damaged_target(pytester, clean_snapshot, one_tool)

    result = run_gate(pytester, clean_snapshot, "--ksi-target", str(target))

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.re_match_lines([r"FAILED .*test_rows_exact\[mcp_sessions-rowid-1-4\]"])
    rows_exact = checks_by_name(read_signoff(pytester))[ROWS_EXACT]
    assert rows_exact["verdict"] == "FAIL"
    forward, backward, read = rows_exact["problems"][:3]
    assert forward.startswith("mcp_sessions agent:conv-2 (rowid 2): relational rows differ from what the mapping makes")
    assert "mcp_session_tool[session_id=2, position=1]" in forward
    assert backward.startswith("mcp_sessions agent:conv-2 (rowid 2): rebuilt legacy row differs")
    assert "session_data $.tools[1]" in backward
    assert read.startswith("mcp_sessions agent:conv-2 (rowid 2): the store's read differs") and "read $.tools" in read
    counts = checks_by_name(read_signoff(pytester))[COUNTS_CHECKSUMS]  # added up from the shards
    assert counts["verdict"] == "FAIL"
    assert len(counts["problems"]) == 1
    assert counts["problems"][0].startswith("mcp_sessions: checksum of the source ")


def test_a_wrong_parsed_time_fails_the_gate_though_every_legacy_row_rebuilds_exactly(
    pytester: pytest.Pytester, clean_snapshot: Path
) -> None:
    """The parsed `last_seen` is what every "seen since" query reads, and no rebuild reads it."""
    damage = "UPDATE mcp_session SET last_seen = '1999-01-01 00:00:00' WHERE id = 2"
    target = damaged_target(pytester, clean_snapshot, damage)

    result = run_gate(pytester, clean_snapshot, "--ksi-target", str(target))

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    checks = checks_by_name(read_signoff(pytester))
    assert checks[ROWS_EXACT]["verdict"] == "FAIL"
    [problem] = checks[ROWS_EXACT]["problems"]  # forward only: the rebuilt row is the source's
    assert problem.startswith("mcp_sessions agent:conv-2 (rowid 2): relational rows differ")
    assert "mcp_session[id=2].last_seen: " in problem and "'1999-01-01 00:00:00'" in problem
    assert checks[COUNTS_CHECKSUMS]["verdict"] == "PASS"  # the checksums of rebuilt rows cannot see it


def test_child_rows_left_without_their_legacy_row_fail_the_gate_as_orphans(
    pytester: pytest.Pytester, clean_snapshot: Path
) -> None:
    target = damaged_target(pytester, clean_snapshot, "DELETE FROM mcp_session WHERE id = 3")

    result = run_gate(pytester, clean_snapshot, "--ksi-target", str(target))

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = read_signoff(pytester)
    assert checks_by_name(document)[NO_ORPHANS]["problems"] == [
        "mcp_session_tool rows for missing mcp_sessions id 3"  # the session's own id: its rowid until it moves
    ]
    assert document["counts"]["mcp_sessions"] == {"source_rows": 6, "rebuilt_rows": 5}
    assert verdicts(document)[ROWS_EXACT] == "FAIL"  # the shard misses the row; the orphans are its leftovers


# --- counts added up from shard figures --------------------------------------------------------


def shard_figures(shard: Shard, rows: list[tuple[Any, ...]], rebuilt: list[tuple[Any, ...]]) -> dict[str, Any]:
    source_tally, rebuilt_tally = RowTally(), RowTally()
    for row in rows:
        source_tally.add(row)
    for row in rebuilt:
        rebuilt_tally.add(row)
    return {
        "shard": shard.id,
        "table": shard.table,
        "source_rows": source_tally.rows,
        "source_checksum": source_tally.checksum,
        "rebuilt_rows": rebuilt_tally.rows,
        "rebuilt_checksum": rebuilt_tally.checksum,
    }


ROWS = [(1, "a", "{}"), (2, "b", "{}"), (3, "c", "[]")]
TWO_SHARDS = shards_covering("mcp_sessions", [(1, 2, 2), (3, 3, 1)])


def test_counts_added_up_from_shards_equal_the_whole_tables_tally() -> None:
    reported = [shard_figures(TWO_SHARDS[0], ROWS[:2], ROWS[:2]), shard_figures(TWO_SHARDS[1], ROWS[2:], ROWS[2:])]

    result = table_counts("mcp_sessions", TWO_SHARDS, reported)

    whole = RowTally()
    for row in ROWS:
        whole.add(row)
    assert result.passed, result.problems
    assert (result.figures["source_rows"], result.figures["source_checksum"]) == (3, whole.checksum)
    assert result.figures["rebuilt_checksum"] == whole.checksum


def test_counts_fail_when_a_row_moved_between_rowids_or_a_shard_did_not_report() -> None:
    moved = (4, *ROWS[2][1:])  # the same cells under another rowid: not the same row
    reported = [shard_figures(TWO_SHARDS[0], ROWS[:2], ROWS[:2]), shard_figures(TWO_SHARDS[1], ROWS[2:], [moved])]

    different = table_counts("mcp_sessions", TWO_SHARDS, reported)
    unreported = table_counts("mcp_sessions", TWO_SHARDS, reported[:1])

    assert not different.passed
    assert different.problems[0].startswith("mcp_sessions: checksum of the source ")
    assert unreported.problems == ["mcp_sessions: not known, 1 of 2 shards reported no figures"]


def test_counts_fail_when_the_shards_read_fewer_rows_than_the_plan_indexed() -> None:
    planned = shards_covering("mcp_sessions", [(1, 3, 3)])  # the plan counted 3 rows
    result = table_counts("mcp_sessions", planned, [shard_figures(planned[0], ROWS[:2], ROWS[:2])])

    assert result.problems == ["mcp_sessions: the rowid index counted 3 source rows but the shards read 2"]


# --- the gate's own coverage: every source rowid compared by exactly one shard ------------------


def runs(*rowids: int) -> list[int]:
    encoded = RowidRuns()
    for rowid in rowids:
        encoded.add(rowid)
    return encoded.encoded


def test_rowid_runs_are_two_numbers_a_run_and_decode_to_the_rowids() -> None:
    assert runs(3, 4, 5, 9, 10, 12) == [3, 3, 3, 2, 1, 1]
    assert list(decode_runs(runs(3, 4, 5, 9, 10, 12))) == [(3, 6), (9, 11), (12, 13)]
    assert list(decode_runs(runs(-5, 2**62))) == [(-5, -4), (2**62, 2**62 + 1)]


GAPPY = [1, 2, 3, 5, 8, 9, 10, 14]
PLANNED = shards_covering("checkpoints", [(1, 3, 3), (5, 9, 3), (10, 14, 2)])


def test_coverage_passes_when_each_rowid_is_compared_by_exactly_one_shard() -> None:
    compared = {PLANNED[0].id: runs(1, 2, 3), PLANNED[1].id: runs(5, 8, 9), PLANNED[2].id: runs(10, 14)}

    result = check_coverage("checkpoints", GAPPY, PLANNED, compared)

    assert result.passed, result.problems
    assert result.summary == "checkpoints: each of 8 source rowids compared by exactly one of 3 shards"
    assert (result.figures["compared_once"], result.figures["compared_by_no_shard"]) == (8, 0)


def test_coverage_names_each_rowid_no_shard_compared_and_says_why() -> None:
    off_by_one = [replace(shard, high=shard.last) for shard in PLANNED]  # a half-open range ending at its last rowid
    compared = {off_by_one[0].id: runs(1, 2), off_by_one[1].id: runs(5, 8), off_by_one[2].id: runs(10)}

    result = check_coverage("checkpoints", GAPPY, off_by_one, compared)

    assert not result.passed
    assert result.problems == [
        "checkpoints rowid 3: compared by no shard (it is within no shard's rowid bounds)",
        "checkpoints rowid 9: compared by no shard (it is within no shard's rowid bounds)",
        "checkpoints rowid 14: compared by no shard (it is within no shard's rowid bounds)",
    ]
    assert result.summary == "checkpoints: 3 of 8 source rowids compared by no shard, 0 by more than one"


def test_coverage_names_rowids_compared_twice_and_the_shards_that_did_not_run() -> None:
    overlapping = {PLANNED[0].id: runs(1, 2, 3, 5), PLANNED[1].id: runs(5, 8, 9)}  # the last shard did not run

    result = check_coverage("checkpoints", [*GAPPY, 20], PLANNED, overlapping)

    assert result.problems == [
        f"checkpoints rowid 5: compared by 2 shards ({PLANNED[0].id}, {PLANNED[1].id})",
        f"checkpoints rowids 10 to 20 (3 rows): compared by no shard (its shard {PLANNED[2].id} did not run)",
    ]
    assert result.figures["compared_more_than_once"] == 1


def test_coverage_counts_rowids_a_shard_compared_that_the_index_lacks() -> None:
    compared = {PLANNED[0].id: runs(1, 2, 3, 4), PLANNED[1].id: runs(5, 8, 9), PLANNED[2].id: runs(10, 14)}

    result = check_coverage("checkpoints", GAPPY, PLANNED, compared)

    assert result.problems == [f"checkpoints: shard {PLANNED[0].id} compared 1 rowid(s) the source's rowid index lacks"]


OFF_BY_ONE_PLUGIN = """
from dataclasses import replace

import verification.gate.checks as checks

planned = checks.shards_covering


def shards_covering(table, spans):
    # The fault: each shard's upper bound is its own last rowid, in a half-open range.
    return [replace(shard, high=shard.last) if shard.high is not None else shard for shard in planned(table, spans)]


checks.shards_covering = shards_covering
"""


def test_shard_bounds_off_by_one_fail_the_sign_off_naming_each_rowid_never_compared(
    pytester: pytest.Pytester, clean_snapshot: Path
) -> None:
    """Every per-row test passes (each shard is exact about the rows it reads): only the coverage
    check, added up by the controller from what the workers' shards reported, sees the rows left out."""
    pytester.makepyfile(ksi_off_by_one=OFF_BY_ONE_PLUGIN)
    pytester.syspathinsert()
    junit = pytester.path / "junit.xml"

    # In one process; that the shards' rowids cross from xdist workers is shown by the test of a
    # failing sign-off below, whose deselected shard leaves rowids no shard compared.
    result = run_gate(pytester, clean_snapshot, "-p", "ksi_off_by_one", f"--junitxml={junit}")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = read_signoff(pytester)
    assert verdicts(document)[ROWS_EXACT] == "PASS"
    covered = checks_by_name(document)[ROWS_COVERED]
    assert covered["verdict"] == "FAIL"
    assert covered["problems"] == ["mcp_sessions rowid 4: compared by no shard (it is within no shard's rowid bounds)"]
    assert "mcp_sessions rowid 4: compared by no shard" in (pytester.path / "signoff" / "signoff.md").read_text()
    cases = {case.get("name"): case for case in ElementTree.parse(junit).getroot().iter("testcase")}
    failure = cases[ROWS_COVERED].find("failure")  # the junit test case signoff::rows_covered
    assert failure is not None and "mcp_sessions rowid 4: compared by no shard" in (failure.text or "")


# --- what the signer cannot miss ---------------------------------------------------------------


def test_a_latency_over_its_limit_fails_the_gate_with_its_percentiles(
    pytester: pytest.Pytester, clean_snapshot: Path
) -> None:
    result = run_gate(pytester, clean_snapshot, "--ksi-max-session-lookup-ms", "1e-9")  # the last value wins

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = read_signoff(pytester)
    assert verdicts(document)[PERFORMANCE] == "FAIL"
    lookup = document["latencies"]["session_lookup"]
    assert (lookup["samples"], lookup["distinct"], lookup["p99_limit_ms"]) == (200, len(SESSIONS), 1e-9)
    assert lookup["max_ms"] >= lookup["p99_ms"] >= lookup["p95_ms"] >= lookup["p50_ms"] > 0
    result.stdout.fnmatch_lines(["*session lookup: p50 * ms, p95 * ms, p99 * ms, max * ms over 200 samples of 6*"])


def test_a_check_that_did_not_run_makes_the_sign_off_fail(pytester: pytest.Pytester, clean_snapshot: Path) -> None:
    result = run_gate(pytester, clean_snapshot, "-k", "not test_schema_complete")

    # Every test that ran passed, as did the verdicts of the checks that ran: only the schema
    # check's verdict (NOT RUN) and the sign-off's fail, and the run with them.
    result.assert_outcomes(passed=11 + len(CHECK_TITLES) - 1, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = read_signoff(pytester)
    assert (document["verdict"], verdicts(document)[SCHEMA]) == ("FAIL", "NOT RUN")
    assert (pytester.path / "signoff" / "signoff.md").read_text(encoding="utf-8").startswith("FAIL")


def test_without_a_snapshot_the_gate_collects_nothing_and_signs_nothing(pytester: pytest.Pytester) -> None:
    result = run_gate_in_process(pytester)

    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.assert_outcomes(deselected=10)
    assert not (pytester.path / "signoff").exists()


# --- usage errors ------------------------------------------------------------------------------


def test_a_target_without_a_snapshot_is_a_usage_error(pytester: pytest.Pytester) -> None:
    target = pytester.path / "target.db"
    target.touch()

    result = run_gate_in_process(pytester, "--ksi-target", str(target))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --ksi-target needs --ksi-snapshot*"])


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--ksi-max-session-lookup-ms", "0", "*--ksi-max-session-lookup-ms: must be more than 0 ms*"),
        ("--ksi-max-checkpoint-save-ms", "fast", "*--ksi-max-checkpoint-save-ms: not a number of milliseconds*"),
        ("--ksi-accept-quarantine", "accept.json", "*--ksi-accept-quarantine *accept.json: entry 0: lacks reason*"),
    ],
)
def test_a_bad_option_value_is_a_usage_error(
    pytester: pytest.Pytester, clean_snapshot: Path, option: str, value: str, complaint: str
) -> None:
    (pytester.path / "accept.json").write_text(json.dumps([{"table": "checkpoints", "key": 1}]))

    result = run_gate_in_process(pytester, "--ksi-snapshot", str(clean_snapshot), option, value)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([complaint])
    assert not (pytester.path / "signoff").exists()


# --- a sign-off to act on ----------------------------------------------------------------------


def next_commands(check: dict[str, Any]) -> list[str]:
    """The commands in a check's next steps, in order."""
    return [
        command for step in check["next_steps"] for command in re.findall(r"`([^`]*(?:pytest|python3)[^`]*)`", step)
    ]


def junit_outcomes(junit: Path) -> dict[str, dict[str, str]]:
    """Each junit test case's outcome, by class name and test name."""
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    outcomes: dict[str, dict[str, str]] = {}
    for case in suite.iter("testcase"):
        outcome = "failed" if case.find("failure") is not None else "passed"
        outcomes.setdefault(case.get("classname") or "", {})[case.get("name") or ""] = outcome
    return outcomes


@pytest.mark.slow  # 15 s in the suite on a slow day (2026-12-01)
def test_a_failing_sign_off_says_what_to_do_next_for_each_check_and_junit_sees_every_verdict(
    pytester: pytest.Pytester, snapshot_with_unreadable_rows: Path
) -> None:
    """One run that fails every way a signer meets: unaccepted rows, a latency over its limit, a
    check left out with -k, and a shard deselected, so that every test that ran may pass while the
    counts cannot be added up (a verdict only the controller reaches, which junit must carry)."""
    junit = pytester.path / "junit.xml"
    left_out = "not test_schema_complete and not mcp_sessions-rowid-1-4"
    failed = run_gate(
        pytester, snapshot_with_unreadable_rows, "-n", "2", f"--junitxml={junit}", "-k", left_out,
        "--ksi-max-session-lookup-ms", "1e-9",
    )  # fmt: skip

    assert failed.ret == pytest.ExitCode.TESTS_FAILED
    document = read_signoff(pytester)
    checks = checks_by_name(document)
    not_passed = {QUARANTINE, PERFORMANCE, SCHEMA, ROWS_EXACT, COUNTS_CHECKSUMS, ROWS_COVERED}
    assert {name for name, check in checks.items() if check["next_steps"]} == not_passed
    assert checks[ROWS_COVERED]["problems"] == [
        "mcp_sessions rowids 1 to 4 (4 rows): compared by no shard (its shard mcp_sessions-rowid-1-4 did not run)"
    ]
    markdown = (pytester.path / "signoff" / "signoff.md").read_text(encoding="utf-8")
    for name in not_passed:
        assert f"**{CHECK_TITLES[name]}** ({checks[name]['verdict']}):" in markdown
        assert all(step in markdown for step in checks[name]["next_steps"])
    assert "-k" not in document["rerun"]["command"].split()  # the whole gate, as it was run otherwise
    assert any(command.endswith(" -k latency") for command in next_commands(checks[PERFORMANCE]))
    assert len(document["latencies"]["session_lookup"]["measurements"]) == 2  # measured again before failing
    assert document["signed"] == {
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "at": document["generated_at"],
    }
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True)
    assert document["tool"]["commit"] == head.stdout.strip()  # the tests run from a checkout
    assert f"git commit `{document['tool']['commit']}`" in markdown

    signoff_cases = junit_outcomes(junit)["signoff"]
    assert set(signoff_cases) == {*CHECK_TITLES, "verdict"}
    assert {name for name, outcome in signoff_cases.items() if outcome == "failed"} == {*not_passed, "verdict"}
    gate_cases = junit_outcomes(junit)["verification.gate.test_signoff"]
    assert gate_cases["test_rows_exact[mcp_sessions-rowid-5-8]"] == "passed"  # every shard that ran passed

    save, accept = next_commands(checks[QUARANTINE])
    assert subprocess.run(save, shell=True, cwd=pytester.path, check=False).returncode == 0
    assert "--ksi-accept-quarantine accepted.json" in accept
    subprocess.run(accept, shell=True, cwd=pytester.path, capture_output=True, check=False)

    accepted = read_signoff(pytester)
    assert verdicts(accepted)[QUARANTINE] == "PASS"  # the signer ran the two commands, as told
    assert verdicts(accepted)[COUNTS_CHECKSUMS] == "PASS"  # and the whole gate ran, -k dropped
    accept_file = pytester.path / "accepted.json"
    assert accepted["accepted_quarantine_file"] == str(accept_file)
    assert accepted["accepted_quarantine_sha256"] == hashlib.sha256(accept_file.read_bytes()).hexdigest()
    markdown = (pytester.path / "signoff" / "signoff.md").read_text(encoding="utf-8")
    assert f"sha256 `{accepted['accepted_quarantine_sha256']}`" in markdown
