"""`ksi-migrate`: each command opens what it needs, calls one library function, and reports.

Exit status: 0 success, 1 differences found (`verify`, a `cleanup` plan that refuses), 2 a usage
or operational error (a domain error, a full disk, a missing folder, a server gone, a lock that
did not clear: one line on stderr saying what happened and what to do; `migrator.failures`), 3 an
internal error, a bug of this tool (its traceback, then one line). `-v` shows the traceback of
every error. Whatever is printed shows database URLs with their passwords masked, and whatever a
command creates is its owner's alone (umask 077; `migrator.private`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from collections.abc import Callable, Collection, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

from migrator import __version__
from migrator.archive import archived_row_count, restore_archive, write_archive
from migrator.backfill import BackfillReport, backfill
from migrator.batching import DEFAULT_BATCH_SIZE
from migrator.cleanup import CleanupPlan, cleanup, cleanup_row_reads
from migrator.errors import MigratorError, RestoreLayoutError
from migrator.failures import explain
from migrator.legacy import UnmappedColumns
from migrator.legacy_copy import Outputs
from migrator.parallel import MAX_DEFAULT_JOBS, default_jobs
from migrator.private import private_umask, write_new_text
from migrator.progress import progress_bar
from migrator.redaction import mask_secrets, mask_url, secrets_of
from migrator.rollback import export, restore, rows_to_rebuild
from migrator.sources import Snapshot, open_sources
from migrator.status import Status, target_status
from migrator.target import in_wal_mode_if_one_file, local_path, planning_database, target_database
from migrator.verify import PARALLEL_FROM_ROWS, Reopen, VerifyReport, verify

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace], int]


def _source_total(source: Snapshot) -> int:
    return sum(source.count(table) for table in source.tables)


# --- commands ---------------------------------------------------------------------------------


def cmd_fabricate(args: argparse.Namespace) -> int:
    from migrator.fabricate import fabricate_snapshot

    with progress_bar(args.checkpoints + args.sessions + args.unreadable, "fabricate") as advance:
        summary = fabricate_snapshot(
            args.out,
            checkpoints=args.checkpoints,
            sessions=args.sessions,
            seed=args.seed,
            unreadable=args.unreadable,
            progress=lambda rows: advance("rows", rows),
        )
    print(
        f"wrote {args.out}: {summary['checkpoints']} checkpoints, {summary['sessions']} sessions, "
        f"{summary['noncanonical']} non-canonical, {summary['unreadable']} unreadable (seed {args.seed})"
    )
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    if not args.dry_run:
        for path in args.source:
            in_wal_mode_if_one_file(path, args.target)
    opened = planning_database(args.target) if args.dry_run else target_database(args.target)
    with open_sources(args.source) as source, opened as database:
        with progress_bar(_source_total(source), "migrate") as advance:
            report = backfill(
                source,
                database,
                batch_size=args.batch_size,
                progress=advance,
                recheck=args.recheck,
                dry_run=args.dry_run,
                replace_all=args.replace,
                jobs=args.jobs,
            )
    print(json.dumps(report.to_dict()) if args.json else format_backfill(report))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    for path in args.source:
        in_wal_mode_if_one_file(path, args.target)
    source_opened = open_sources(args.source, unmapped=UnmappedColumns.REPORT)
    with source_opened as source, target_database(args.target, must_exist=True) as database:
        with progress_bar(_source_total(source), "verify") as advance:
            reopen = Reopen(tuple(str(path) for path in args.source), str(args.target))
            report = verify(
                source, database, batch_size=args.batch_size, progress=advance, jobs=args.jobs, reopen=reopen
            )
    if args.report:
        write_new_text(args.report, json.dumps(report.to_dict(), indent=2) + "\n")
    print(json.dumps(report.to_dict()) if args.json else format_verify(report))
    return EXIT_OK if report.ok else EXIT_MISMATCH


def restore_outputs(args: argparse.Namespace) -> Outputs:
    """`--out FILE` for every table, or `--checkpoints-out` and `--sessions-out`: the daemon's two files."""
    per_table = {
        table: path
        for table, path in (("checkpoints", args.checkpoints_out), ("mcp_sessions", args.sessions_out))
        if path
    }
    if bool(args.out) == bool(per_table):
        raise RestoreLayoutError(
            "say where the tables go: --out FILE for one file, or --checkpoints-out FILE and --sessions-out FILE "
            "for the daemon's two files (not both)"
        )
    return args.out or per_table


def cmd_restore(args: argparse.Namespace) -> int:
    outs = restore_outputs(args)
    if args.archive:
        # Every row is read twice: to check the archive whole, then to write it.
        with progress_bar(2 * archived_row_count(args.archive), "restore") as advance:
            report = restore_archive(args.archive, outs, batch_size=args.batch_size, progress=advance)
    else:
        with target_database(args.target, must_exist=True) as database:
            with progress_bar(rows_to_rebuild(database), "restore") as advance:
                report = restore(database, outs, batch_size=args.batch_size, progress=advance)
    rows = ", ".join(f"{count} {table}" for table, count in report.rows.items())
    print(f"restored {rows} to {report.out} in {report.seconds:.1f}s")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    with target_database(args.target, must_exist=True) as database:
        with progress_bar(rows_to_rebuild(database), "export") as advance:
            counts = export(database, args.out, batch_size=args.batch_size, progress=advance)
    rows = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"exported {rows} to {args.out}")
    return EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    with open_sources(args.source, unmapped=UnmappedColumns.REPORT) as source:  # every column is archived
        with progress_bar(_source_total(source), "archive") as advance:
            manifest = write_archive(source, args.out, progress=advance)
    rows = ", ".join(f"{entry.rows} {table}" for table, entry in manifest.tables.items())
    print(f"archived {rows} to {args.out} (manifest.json holds the counts, sha256 values and row checksums)")
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace) -> int:
    with target_database(args.target, must_exist=True) as database:
        with progress_bar(cleanup_row_reads(args.source, args.archive), "cleanup") as advance:
            plan = cleanup(args.source, database, args.archive, dry_run=args.dry_run, progress=advance)
    print(json.dumps(plan.to_dict()) if args.json else format_cleanup(plan))
    return EXIT_OK if plan.ready else EXIT_MISMATCH


def cmd_status(args: argparse.Namespace) -> int:
    source = open_sources(args.source, unmapped=UnmappedColumns.REPORT) if args.source else nullcontext()
    with source as legacy, target_database(args.target, must_exist=True, read_only=True) as database:
        report = target_status(database, legacy)
    print(json.dumps(report.to_dict()) if args.json else format_status(args.target, report))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from migrator.demo import run_demo

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ksi-demo-"))
    passed = run_demo(folder, checkpoints=args.checkpoints, sessions=args.sessions, seed=args.seed)
    print(f"the demo's files are in {folder} (snapshot, target, restored copy); remove it when done: rm -r {folder}")
    return EXIT_OK if passed else EXIT_MISMATCH


# --- report formatting ------------------------------------------------------------------------


def format_backfill(report: BackfillReport) -> str:
    lines = []
    for t in report.tables:
        if report.dry_run:
            lines.append(
                f"{t.table}: {t.source_rows} source rows; a run would write {t.written - t.rewritten} new, "
                f"rewrite {t.rewritten}, move {t.moved}, keep {t.unchanged} unchanged, remove {t.deleted}"
                + (f" and {t.orphans_removed} orphaned child rows" if report.recheck else "")
            )
            continue
        lines.append(
            f"{t.table}: {t.source_rows} source rows; {t.migrated} migrated, {t.quarantined} quarantined, "
            f"{t.noncanonical} non-canonical; this run wrote {t.written - t.rewritten} new, rewrote {t.rewritten}, "
            f"moved {t.moved}, kept {t.unchanged} unchanged, removed {t.deleted}"
            + (f" and {t.orphans_removed} orphaned child rows" if report.recheck else "")
        )
    lines.append(
        f"dry run: nothing was written ({report.seconds:.1f}s)" if report.dry_run else f"done in {report.seconds:.1f}s"
    )
    return "\n".join(lines)


def format_verify(report: VerifyReport) -> str:
    lines = [str(m) for m in report.mismatches]
    if report.problems > len(report.mismatches):
        lines.append(f"... and {report.problems - len(report.mismatches)} more problem(s); --report FILE lists counts")
    for t in report.tables:
        lines.append(
            f"{t.table}: {t.matched}/{t.source_rows} rows held exactly both ways; {t.mismatched} differ, "
            f"{t.missing} missing from the target, {t.extra} extra in the target"
        )
    verdict = (
        "OK: the target holds every legacy row exactly, and rebuilds each one exactly"
        if report.ok
        else f"FAILED: {report.problems} problem(s)"
    )
    lines.append(f"{verdict} ({report.seconds:.1f}s)")
    return "\n".join(lines)


def format_cleanup(plan: CleanupPlan) -> str:
    lines = [f"cleanup of {plan.label} with archive {plan.archive}:"]
    lines += [f"  [{'ok' if c.passed else 'FAILED'}] {c.name}: {c.detail}" for c in plan.checks]
    lines += [f"  {'ran' if plan.executed else 'would run'}: {statement}" for statement in plan.statements]
    if plan.executed:
        outs = (
            "--out COPY.db" if len(plan.files) < 2 else "--checkpoints-out checkpoint.db --sessions-out mcp_sessions.db"
        )
        restore_hint = f"`ksi-migrate restore --archive {plan.archive} {outs}`"
        lines.append(f"dropped {', '.join(plan.tables)}; {restore_hint} brings them back")
    elif plan.ready:
        lines.append("dry run: every check passed; nothing was changed")
    else:
        lines.append(f"dry run: {plan.refusal()}")
    return "\n".join(lines)


def format_status(target: str, status: Status) -> str:
    if status.schema_version is None:
        return f"{mask_url(target)}: no migrated data (no ksi_migration_meta table); run `ksi-migrate migrate` first"
    lines = [f"{mask_url(target)}: relational schema version {status.schema_version}"]
    for table, counts in status.tables.items():
        lines.append(
            f"  {table}: {counts['relational']} relational, {counts['quarantined']} quarantined, "
            f"{counts['noncanonical']} non-canonical"
        )
    last = status.last_migrate
    if last is None:
        lines.append("last migrate: none recorded")
    else:
        lines.append(
            f"last migrate: {last.get('finished_at')} from {last.get('source')} "
            f"(sha256 {last.get('source_sha256')}), ksi-migrator {last.get('tool_version')}"
        )
    cleaned = status.cleanup
    lines.append(
        "cleanup: not run, the legacy tables are in place"
        if cleaned is None
        else f"cleanup: dropped {', '.join(cleaned.get('tables', []))}; archive {cleaned.get('archive')} "
        f"(manifest sha256 {cleaned.get('manifest_sha256')})"
    )
    if status.source is not None:
        same = (
            "the snapshot the last migrate read"
            if status.source["is_last_migrated"]
            else "changed since the last migrate (or another file)"
        )
        rows = ", ".join(f"{count} {table}" for table, count in status.source["rows"].items())
        lines.append(f"source {status.source['path']}: {rows}; sha256 {status.source['sha256']}: {same}")
    return "\n".join(lines)


# --- argument parsing -------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse echoes a value it refuses (`unrecognized arguments: postgresql://u:pw@...`): its
    usage errors mask the passwords of the URLs on the command line, as every other message does."""

    def __init__(self, *args: Any, secrets: Collection[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secrets = secrets

    def error(self, message: str) -> NoReturn:
        super().error(mask_secrets(message, self.secrets))


COMMANDS: dict[str, tuple[Handler, str]] = {
    "fabricate": (cmd_fabricate, "write a realistic legacy snapshot with faker (deterministic per seed)"),
    "migrate": (cmd_migrate, "create the relational schema and backfill (or catch up) from a snapshot"),
    "verify": (cmd_verify, "rebuild every legacy row from the target and compare it with the source"),
    "restore": (cmd_restore, "rollback: write a new SQLite file with the legacy tables rebuilt exactly"),
    "export": (cmd_export, "write every rebuilt legacy row as one JSON line"),
    "archive": (cmd_archive, "write the legacy tables as gzip JSONL with a manifest of counts and sha256 values"),
    "cleanup": (cmd_cleanup, "drop the legacy tables once the archive and the target are proven complete"),
    "status": (cmd_status, "what a target holds, when and from which snapshot it was migrated, whether cleanup ran"),
    "demo": (cmd_demo, "fabricate, migrate, verify and restore in a scratch folder, then summarise"),
}


def build_parser(secrets: Collection[str] = ()) -> argparse.ArgumentParser:
    """The command line; `secrets` are masked in its usage errors."""
    parser = _Parser(
        secrets=secrets,
        prog="ksi-migrate",
        description="Migrate KSI's JSON blobs to relational tables, and prove nothing was lost.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    # -v is also accepted after the command name; SUPPRESS keeps a -v given before it.
    anywhere = _Parser(add_help=False, secrets=secrets)
    anywhere.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = {
        name: commands.add_parser(name, help=text, description=text, parents=[anywhere], secrets=secrets)
        for name, (_, text) in COMMANDS.items()
    }

    sub["fabricate"].add_argument("out", type=local_path, help="the new snapshot file (never overwritten)")
    sub["fabricate"].add_argument("--checkpoints", type=_count, default=2000, help="checkpoint rows (default 2000)")
    sub["fabricate"].add_argument("--sessions", type=_count, default=50000, help="session rows (default 50000)")
    sub["fabricate"].add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sub["fabricate"].add_argument("--unreadable", type=_count, default=0, help="extra rows that must be quarantined")

    for name in ("migrate", "verify", "archive"):
        sub[name].add_argument(
            "--source",
            required=True,
            action="append",
            type=local_path,
            help="the legacy SQLite snapshot (read only); once per file for the daemon's two files",
        )
    for name in ("migrate", "verify", "export", "cleanup", "status"):
        sub[name].add_argument("--target", required=True, help="SQLite file or database URL")
    for name in ("migrate", "verify", "cleanup", "status"):
        sub[name].add_argument("--json", action="store_true", help="print one JSON document instead of text")
    sub["status"].add_argument(
        "--source",
        action="append",
        type=local_path,
        help="also compare this snapshot (each of its files) with the last one migrated",
    )
    for name in ("migrate", "verify", "restore", "export"):
        sub[name].add_argument(
            "--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, help="rows per batch (default: %(default)s)"
        )
    sub["migrate"].add_argument(
        "--recheck",
        action="store_true",
        help="compare every target row with the mapping of its source row, not only digests, and rewrite what differs",
    )
    sub["migrate"].add_argument(
        "--dry-run", action="store_true", help="print what a run would write, keep, rewrite and remove; change nothing"
    )
    sub["migrate"].add_argument(
        "--jobs",
        type=_positive,
        default=default_jobs(),
        help="processes of a fresh load: this one writes, the others parse blobs; 1 starts none (into a "
        "server it parses on a second thread) (default: the cores, at most "
        f"{MAX_DEFAULT_JOBS}, here %(default)s)",
    )
    sub["migrate"].add_argument(
        "--replace",
        action="store_true",
        help="allow a catch-up from a snapshot that shares no row with the target (it replaces every row)",
    )
    restore_from = sub["restore"].add_mutually_exclusive_group(required=True)
    restore_from.add_argument("--target", help="rebuild from this SQLite file or database URL")
    restore_from.add_argument("--archive", type=local_path, help="bring back the tables of this archive folder")
    sub["archive"].add_argument("--out", required=True, type=local_path, help="the new archive folder")
    sub["cleanup"].add_argument(
        "--source",
        required=True,
        action="append",
        type=local_path,
        help="the legacy database whose tables are dropped; once per file",
    )
    sub["cleanup"].add_argument(
        "--archive", required=True, type=local_path, help="the archive folder written by `archive`"
    )
    sub["cleanup"].add_argument("--dry-run", action="store_true", help="check and print the plan; change nothing")
    sub["verify"].add_argument("--report", type=local_path, help="also write the full result as JSON to this file")
    sub["verify"].add_argument(
        "--jobs",
        type=_positive,
        default=default_jobs(),
        help=f"processes that compare rowid ranges, from {PARALLEL_FROM_ROWS:,} source rows up; 1 compares in "
        f"this one (default: the cores, at most {MAX_DEFAULT_JOBS}, here %(default)s)",
    )
    sub["restore"].add_argument("--out", type=local_path, help="the new legacy SQLite file, holding every table")
    sub["restore"].add_argument(
        "--checkpoints-out", type=local_path, help="the new file for checkpoints (the daemon's checkpoint.db)"
    )
    sub["restore"].add_argument(
        "--sessions-out", type=local_path, help="the new file for mcp_sessions (the daemon's mcp_sessions.db)"
    )
    sub["export"].add_argument("--out", required=True, type=local_path, help="the new JSONL file")

    sub["demo"].add_argument("--dir", type=local_path, help="scratch folder (default: a new temporary folder)")
    sub["demo"].add_argument("--checkpoints", type=_count, default=200)
    sub["demo"].add_argument("--sessions", type=_count, default=5000)
    sub["demo"].add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = [str(argument) for argument in (sys.argv[1:] if argv is None else argv)]
    # The passwords of the URLs given, read from the words as typed (a `--source` is a list, a path
    # folds `//`), and masked wherever they show: usage errors, messages, tracebacks.
    secrets = secrets_of(given)
    parser = build_parser(secrets)
    args = parser.parse_args(argv)
    handler = COMMANDS[args.command][0]
    with private_umask():
        try:
            return handler(args)
        except BrokenPipeError:  # `ksi-migrate verify ... | head` is not an error
            sys.stderr.close()
            return EXIT_OK
        except MigratorError as exc:
            return _report(args, exc, str(exc), exc.exit_code, secrets)
        except KeyboardInterrupt:
            print("ksi-migrate: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - sorted below: the system's failure, or a bug of ours
            explained = explain(exc)
            if explained is not None:
                return _report(args, exc, explained, EXIT_ERROR, secrets)
            print(mask_secrets(traceback.format_exc(), secrets), end="", file=sys.stderr)
            print(f"ksi-migrate: internal error: {mask_secrets(_one_line(exc), secrets)}", file=sys.stderr)
            return EXIT_INTERNAL


def _report(args: argparse.Namespace, exc: BaseException, message: str, status: int, secrets: Collection[str]) -> int:
    """One line on stderr (and the traceback before it with -v), passwords masked; with `--json`,
    also one JSON document on stdout, so a script that reads it learns why there is no report."""
    if args.verbose:
        print(mask_secrets("".join(traceback.format_exception(exc)), secrets), end="", file=sys.stderr)
    masked = mask_secrets(message, secrets)
    print(f"ksi-migrate: error: {masked}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": masked, "error_type": type(exc).__name__, "exit_code": status}))
    return status


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def run() -> None:
    sys.exit(main())
