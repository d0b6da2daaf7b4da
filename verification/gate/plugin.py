"""The sign-off gate's pytest plugin: options, collection, fixtures, and the controller's sign-off.

How a run goes, with or without xdist:

1. `pytest_configure` reads and validates the options. On the controller (the only process
   without xdist) it hashes the snapshot before anything reads it, plans the shards, and
   registers `SignoffController`; on a worker it takes the target and those hashes from
   `config.workerinput`.
2. `SignoffController.pytest_sessionstart` migrates the snapshot into a scratch target once,
   before xdist starts its workers, and `pytest_configure_node` hands its path to each worker.
3. Each worker collects the same tests: one per shard of rows (`pytest_generate_tests`), per
   table, and per remaining check. Without `--ksi-snapshot` they are all deselected.
4. A test stores its `CheckResult`; `pytest_runtest_makereport` puts it on the report as JSON
   text, which xdist carries to the controller like any report attribute.
5. The controller tallies reports as they arrive (printing each shard's rows per second). At
   `pytest_sessionfinish` it adds up each table's counts and checksums from its shards' figures,
   writes signoff.json and signoff.md, reports one test case per verdict (before junitxml
   writes its file), and makes the exit status non-zero unless the sign-off is PASS.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from migrator.backfill import backfill
from migrator.errors import MigratorError
from migrator.legacy import UnmappedColumns
from migrator.parallel import default_jobs
from migrator.redaction import mask_secrets, mask_url, secrets_of
from migrator.sources import Snapshot, files_hashes, open_sources
from migrator.store import Mode, Store, open_store
from migrator.target import target_database
from verification.gate.artifacts import (
    JSON_NAME,
    RunFacts,
    migrator_source,
    remove_stale_signoff,
    signoff_document,
    verdict_reports,
    who_and_where,
    write_signoff,
)
from verification.gate.checks import (
    NO_ORPHANS,
    PERFORMANCE,
    SOURCE_UNTOUCHED,
    CheckResult,
    Shard,
    compare_source_hashes,
    plan_shards,
)
from verification.gate.ledger import PASS, Ledger
from verification.gate.next_steps import Invocation
from verification.gate.options import SNAPSHOT_OPTION, GateOptions, add_gate_options, read_gate_options
from verification.gate.privacy import PRIVACY_PLUGIN, GatePrivacy, mask_report

GATE_MARKER = "ksi_gate"
REPORT_ATTRIBUTE = "ksi_gate"  # JSON text {"check", "result"} on every report of a gate test
CONTROLLER_PLUGIN = "ksi-gate-signoff"
WORKER_TARGET = "ksi_gate_target"
WORKER_SOURCE_HASHES = "ksi_gate_source_hashes"


@dataclass
class GateRun:
    """One gate run as a process sees it; the controller fills in the target once migrated."""

    options: GateOptions
    hashes_at_start: dict[str, str | None]
    target: str | None = None
    migration: dict[str, Any] | None = None
    migration_error: str | None = None  # why the scratch migration could not be made
    scratch_dir: Path | None = None

    @cached_property
    def shards(self) -> list[Shard]:
        # Every process plans the same shards from the same read-only file, as xdist requires.
        with open_snapshot(self.options.snapshots) as source:
            options = self.options
            return plan_shards(source, options.rows_per_shard, options.read_sample, options.bytes_per_shard)


def open_snapshot(paths: Path | Sequence[Path]) -> Snapshot:
    """The snapshot as the gate reads it: a column the mapping does not carry is not refused here
    but reported, by its own check, so the sign-off names it."""
    return open_sources([paths] if isinstance(paths, Path) else paths, unmapped=UnmappedColumns.REPORT)


def indexed_rowids(source: Snapshot, table: str) -> Iterator[int]:
    """Every rowid of the table, from its rowid index, in increasing order (none: a table the snapshot lacks)."""
    held = {legacy.name: legacy for legacy in source.tables}
    if table not in held:
        return iter(())
    cursor = source.reader(held[table]).execute(f'SELECT rowid FROM "{table}" ORDER BY rowid')
    return (rowid for (rowid,) in cursor)


RUN_KEY = pytest.StashKey[GateRun]()
RESULT_KEY = pytest.StashKey[CheckResult]()


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def check_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(GATE_MARKER)
    return marker.args[0] if marker else None


# --- options and set-up ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    add_gate_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{GATE_MARKER}(check): a sign-off gate check, collected only with {SNAPSHOT_OPTION}"
    )
    options = read_gate_options(config)
    if options is None:
        return
    privacy = GatePrivacy(secrets_of([options.target]), json_attributes=(REPORT_ATTRIBUTE,))
    config.pluginmanager.register(privacy, PRIVACY_PLUGIN)
    if is_worker(config):
        workerinput = config.workerinput  # type: ignore[attr-defined]
        config.stash[RUN_KEY] = GateRun(options, workerinput[WORKER_SOURCE_HASHES], workerinput[WORKER_TARGET])
        return
    run = GateRun(options, files_hashes(options.snapshots), target=options.target)  # before anything reads it
    try:
        planned = run.shards
    except MigratorError as exc:
        raise pytest.UsageError(f"{SNAPSHOT_OPTION} {options.label}: {exc}") from exc
    config.stash[RUN_KEY] = run
    config.pluginmanager.register(SignoffController(config, run, planned), CONTROLLER_PLUGIN)


# --- collection --------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ksi_shard" in metafunc.fixturenames:
        run = metafunc.config.stash.get(RUN_KEY, None)
        shards = run.shards if run else []  # without a snapshot the test is deselected anyway
        metafunc.parametrize("ksi_shard", shards, ids=[shard.id for shard in shards])


GATE_FOLDER = Path(__file__).resolve().parent
RUN_ORDER = {PERFORMANCE: 0, NO_ORPHANS: 0, SOURCE_UNTOUCHED: 2}  # every other check: 1 (a stable sort)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # With a snapshot only the gate runs (see below), so the other test modules are not even
    # imported: every xdist worker would otherwise build the harness's strategies for nothing.
    if RUN_KEY in config.stash and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return True if GATE_FOLDER not in collection_path.resolve().parents else None
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without a snapshot, `pytest verification/` is the generative suite alone. With one, it is
    # the gate alone: the sign-off's exit status and latencies must not depend on other tests.
    gate_on = RUN_KEY in config.stash
    kept = [item for item in items if (check_of(item) is not None) == gate_on]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    # The long single tests first, so that under xdist no worker is left alone with one at the
    # end while the others idle; the many short shards fill in around them. The source is
    # compared with its hashes from the session's start as late as possible.
    items[:] = sorted(kept, key=lambda item: RUN_ORDER.get(check_of(item) or "", 1))


# --- results onto reports ----------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    check = check_of(item)
    if check is not None:
        result = item.stash.get(RESULT_KEY, None) if report.when == "call" else None
        payload = {"check": check, "result": asdict(result) if result else None}
        # A report attribute holding JSON text: xdist serialises it with the report, as it does hypothesis's.
        setattr(report, REPORT_ATTRIBUTE, json.dumps(payload))
    return report


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ksi_run(pytestconfig: pytest.Config) -> GateRun:
    run = pytestconfig.stash.get(RUN_KEY, None)
    if run is None:
        pytest.skip(f"the sign-off gate runs only with {SNAPSHOT_OPTION}")
    return run


@pytest.fixture(scope="session")
def ksi_source(ksi_run: GateRun) -> Iterator[Snapshot]:
    with open_snapshot(ksi_run.options.snapshots) as source:
        yield source


def target_of(run: GateRun) -> str:
    """The target the checks read; a test fails with the reason when there is none."""
    if run.target is None:
        pytest.fail(f"no target to check: {run.migration_error or 'the scratch migration did not run'}", pytrace=False)
    return run.target


@pytest.fixture
def ksi_target(ksi_run: GateRun) -> Iterator[pw.Database]:
    # Opened for each test: opening binds the models process-wide, so no test inherits another's binding.
    with target_database(target_of(ksi_run), must_exist=True) as database:
        yield database


@pytest.fixture
def ksi_store(ksi_run: GateRun) -> Iterator[Store]:
    """The target as the cut-over daemon reads it: the store, `relational_only`, read-only."""
    store = open_store(target_of(ksi_run), mode=Mode.RELATIONAL_ONLY, read_only=True)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def ksi_record(request: pytest.FixtureRequest) -> Callable[[CheckResult], CheckResult]:
    """Keeps a test's result for its report, so the controller can write it into the sign-off."""

    def record(result: CheckResult) -> CheckResult:
        request.node.stash[RESULT_KEY] = result
        return result

    return record


# --- the controller ----------------------------------------------------------------------------


def failure_message(report: pytest.TestReport) -> str | None:
    if report.passed:
        return None
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0]
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        return report.longrepr[2]
    return str(report.longrepr).strip().splitlines()[-1] if report.longrepr else report.outcome


class SignoffController:
    """The controller's part: one migration before the workers start, one tally, one sign-off."""

    def __init__(self, config: pytest.Config, run: GateRun, planned: list[Shard]) -> None:
        self.config = config
        self.run = run
        self.ledger = Ledger(planned)
        self.verdict: str | None = None
        self.written: tuple[Path, Path] | None = None

    @property
    def runs_checks(self) -> bool:
        return not self.config.option.collectonly

    def say(self, line: str) -> None:
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None and self.config.get_verbosity() >= 0:
            terminal.write_line(f"ksi-gate: {line}")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Runs before xdist's own (trylast) pytest_sessionstart, which starts the workers.
        if not self.runs_checks:
            return
        remove_stale_signoff(self.run.options.signoff_dir)
        if self.run.target is None:
            self.migrate_into_scratch()

    def migrate_into_scratch(self) -> None:
        self.run.scratch_dir = Path(tempfile.mkdtemp(prefix="ksi-gate-"))
        target = self.run.scratch_dir / "target.db"
        self.say(f"migrating {self.run.options.label} into a scratch target")
        try:
            with open_sources(self.run.options.snapshots) as source, target_database(target) as database:
                report = backfill(source, database, jobs=default_jobs())  # alone before the workers: every core
        except MigratorError as exc:  # every check that needs the target fails with this reason
            self.run.migration_error = f"the snapshot cannot be migrated: {exc}"
            self.say(self.run.migration_error)
            return
        self.run.target = str(target)
        self.run.migration = report.to_dict()
        rows = sum(table.source_rows for table in report.tables)
        self.say(f"migrated {rows:,} rows in {report.seconds:.1f} s")

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        target = mask_url(self.run.options.target or "a scratch SQLite target migrated from it")
        return [
            f"ksi-gate: snapshot {self.run.options.label} (sha256 {self.run.hashes_at_start['db']})",
            f"ksi-gate: target {target}; {len(self.ledger.planned_shards)} shards; "
            f"sign-off in {self.run.options.signoff_dir}",
        ]

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKER_TARGET] = self.run.target
        node.workerinput[WORKER_SOURCE_HASHES] = self.run.hashes_at_start

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, REPORT_ATTRIBUTE, None)
        if payload is None:
            return
        entry = json.loads(payload)
        test = report.nodeid.rpartition("::")[2]
        self.ledger.note_report(entry["check"], test, report.outcome, entry["result"], failure_message(report))
        if entry["result"]:
            self.say(f"{test} {'ok' if entry['result']['passed'] else 'FAILED'}: {entry['result']['summary']}")

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file, so that it holds the verdicts
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.runs_checks:
            return
        # The test compared the hashes while other workers may still have been reading: compare
        # once more now that every worker is done.
        final = compare_source_hashes(self.run.options.snapshots, self.run.hashes_at_start)
        self.ledger.note_result("compared again by the controller after every test", final)
        self.ledger.add_up_shards()
        try:
            with open_snapshot(self.run.options.snapshots) as source:
                self.ledger.add_up_coverage(lambda table: indexed_rowids(source, table))
        except MigratorError as exc:  # the coverage check is left not run, which fails the sign-off
            self.say(f"the snapshot's rowid index cannot be read again to check coverage: {exc}")
        document = signoff_document(self.facts(), self.ledger.verdicts(), datetime.now(UTC))
        self.verdict = document["verdict"]
        self.written = write_signoff(self.run.options.signoff_dir, document)
        self.report_verdicts(document)
        if self.verdict != PASS and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def report_verdicts(self, document: dict[str, Any]) -> None:
        hook = self.config.hook
        secrets = secrets_of([self.run.options.target])
        for report in verdict_reports(document):
            mask_report(report, secrets)  # made here, they do not pass through the privacy plugin's makereport
            if report.when == "setup":
                hook.pytest_runtest_logstart(nodeid=report.nodeid, location=report.location)
            hook.pytest_runtest_logreport(report=report)
            if report.when == "teardown":
                hook.pytest_runtest_logfinish(nodeid=report.nodeid, location=report.location)

    def facts(self) -> RunFacts:
        options = self.run.options
        arguments = self.config.invocation_params.args
        secrets = secrets_of([options.target, *arguments])
        invocation = Invocation(
            folder=self.config.invocation_params.dir,
            python=sys.executable,
            args=tuple(mask_secrets(argument, secrets) for argument in arguments),
            snapshots=options.snapshots,
            target=mask_url(options.target) if options.target else None,
            signoff_json=options.signoff_dir / JSON_NAME,
            password_masked=bool(secrets),
        )
        return RunFacts(
            snapshots=options.snapshots,
            snapshot_hashes=self.run.hashes_at_start,
            target=mask_url(options.target) if options.target else None,
            migration=self.run.migration,
            thresholds={
                "checkpoint_save_p99_ms": options.max_checkpoint_save_ms,
                "session_lookup_p99_ms": options.max_session_lookup_ms,
            },
            accept_file=options.accept_file,
            accept_sha256=options.accept_sha256,
            invocation=invocation,
            signer=who_and_where(),
            migrator_source=migrator_source(),
        )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.written is None:
            return
        terminalreporter.section("ksi sign-off")
        for verdict in self.ledger.verdicts():
            terminalreporter.write_line(f"{verdict.verdict:<8} {verdict.title}: {verdict.summary}")
        json_path, markdown_path = self.written
        terminalreporter.write_line(f"{self.verdict}: wrote {json_path} and {markdown_path}", bold=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.run.scratch_dir is not None:
            shutil.rmtree(self.run.scratch_dir, ignore_errors=True)
