"""The cleanup of phase 4: the plan that drops the legacy tables, and the checks before it.

Phase 4 drops the legacy tables. `cleanup` is the one command that writes to a legacy database,
so it plans first and acts only when every check passes:

1. the archive is complete and readable (every file present, its sha256, every row parsed);
2. the archive matches the source: same tables, DDL, AUTOINCREMENT counters, row counts and
   row checksums;
3. every column of the legacy tables is one the target carries (a column the mapping does not
   read would be lost with the drop);
4. the target holds every source row exactly, both ways (`verify`; rows the target holds
   beyond the source are allowed, as nothing of the source is lost by them);
5. the archive restores the source exactly: it is restored into a scratch file, which is compared
   with the source row by row by the comparison engine (`compare_legacy_rows`), every cell by
   storage type and value. This is defence in depth: the checksums of (1) and (2) prove the
   archive equal to the source only as long as every one of those comparisons is right, while
   the rollback after cleanup is this very restore, so it is proved by doing it once.

The scratch file is private (a 0700 folder, a 0600 file), next to a SQLite target (a disk known
to hold the data once more) or in the system's temporary folder for a server target, and it is
removed afterwards. When it cannot be written (a full disk), the check fails with one line that
says so, and nothing is dropped.

The drop runs in one `BEGIN IMMEDIATE` transaction that first counts and checksums the source
again: a daemon that wrote between the checks and the drop makes it refuse, not lose that row.
With the daemon's two files, each file's transaction is begun and checked before any drops a
table, and they commit one after the other.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import peewee as pw

from migrator.archive import (
    MANIFEST,
    ArchivedTable,
    Manifest,
    RowTally,
    archived_row_count,
    check_archive,
    source_tally,
    tally,
    write_archived_tables,
)
from migrator.batching import DEFAULT_BATCH_SIZE, Progress, in_phase, reported
from migrator.codec import decode_sqlite_text
from migrator.compare import LOSES_SOURCE_DATA, Mismatch, MismatchKind, compare_legacy_rows
from migrator.ddl import statements_by_table
from migrator.errors import ArchiveCorrupt, ArchiveIncomplete, ArchiveRefused, CleanupRefused, MigratorError
from migrator.failures import explain
from migrator.legacy import LegacySchema, LegacySource, UnmappedColumns, file_sha256
from migrator.sources import Paths, Snapshot, open_sources, table_file
from migrator.target import CLEANUP_META_KEY, set_meta
from migrator.verify import verify

REFUSED = "cleanup refused, nothing was changed"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class CleanupPlan:
    source: Path  # the first source file (`files` names each with its tables)
    archive: Path
    checks: list[Check]
    tables: list[str]  # the legacy tables to drop
    manifest: Manifest | None
    executed: bool = False
    files: dict[Path, list[str]] = field(default_factory=dict)  # each source file and the tables it holds

    @property
    def statements(self) -> list[str]:
        """What the run executes, in this order: one transaction a file."""
        return [statement for path in self.files for statement in self.file_statements(path)]

    def file_statements(self, path: Path) -> list[str]:
        return [f'DROP TABLE "{name}"' for name in self.files[path]]

    @property
    def label(self) -> str:
        return " + ".join(str(path) for path in self.files) or str(self.source)

    @property
    def ready(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.label,
            "files": {str(path): tables for path, tables in self.files.items()},
            "archive": str(self.archive),
            "ready": self.ready,
            "executed": self.executed,
            "checks": [asdict(check) for check in self.checks],
            "tables": self.tables,
            "statements": self.statements,
        }

    def refusal(self) -> str:
        failed = "; ".join(f"{check.name}: {check.detail}" for check in self.checks if not check.passed)
        return f"{REFUSED}: {failed}"


def cleanup(
    source: str | os.PathLike[str] | Paths,
    database: pw.Database,
    archive: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> CleanupPlan:
    """Plan the drop of the legacy tables; unless `dry_run`, run it (or raise `CleanupRefused`).
    `progress` hears of every row each check reads (`cleanup_row_reads`), named by the check."""
    plan = plan_cleanup(source, database, archive, batch_size=batch_size, progress=progress)
    return plan if dry_run else execute_cleanup(plan, database)


def cleanup_row_reads(source: str | os.PathLike[str] | Paths, archive: str | os.PathLike[str]) -> int:
    """The rows the checks of a cleanup read, for its progress: the archive's twice (checked whole,
    then restored into a scratch copy) and the source's three times (tallied against the archive,
    verified against the target, compared with the restored copy). An archive without a readable
    manifest counts none: its checks fail without reading rows."""
    with open_sources(_paths(source), unmapped=UnmappedColumns.REPORT) as legacy:
        source_rows = sum(legacy.count(table) for table in legacy.tables)
    try:
        archived = archived_row_count(archive)
    except MigratorError:
        archived = 0
    return 3 * source_rows + 2 * archived


def _paths(source: str | os.PathLike[str] | Paths) -> list[str | os.PathLike[str]]:
    """The legacy files a cleanup is given: one, or the daemon's."""
    return [source] if isinstance(source, str | os.PathLike) else list(source)


# --- planning ---------------------------------------------------------------------------------


def plan_cleanup(
    source: str | os.PathLike[str] | Paths,
    database: pw.Database,
    archive: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> CleanupPlan:
    """The checks, and the drop they allow; `source` is a legacy file, or the daemon's files."""
    paths = _paths(source)
    manifest, readable = _check_archive_readable(Path(archive), batch_size, in_phase(progress, "checking"))
    with open_sources(paths, unmapped=UnmappedColumns.REPORT) as legacy:
        checks = [
            readable,
            _check_archive_matches_source(legacy, manifest, batch_size, in_phase(progress, "tallying")),
            _check_columns_carried(legacy),
            _check_target_rebuilds_source(legacy, database, batch_size, in_phase(progress, "verifying")),
            _check_archive_restores_source(
                legacy, Path(archive), manifest, scratch_parent(database), batch_size, progress
            ),
        ]
        tables = [table.name for table in legacy.tables]
        files: dict[Path, list[str]] = {}
        for table in legacy.tables:
            files.setdefault(table_file(legacy, table), []).append(table.name)
    return CleanupPlan(Path(paths[0]), Path(archive), checks, tables, manifest, files=files)


def _check_archive_readable(archive: Path, batch_size: int, progress: Progress | None) -> tuple[Manifest | None, Check]:
    name = "archive complete and readable"
    try:
        manifest = check_archive(archive, batch_size=batch_size, progress=progress)
    except (ArchiveIncomplete, ArchiveCorrupt, ArchiveRefused) as exc:
        return None, Check(name, False, str(exc))
    rows = sum(entry.rows for entry in manifest.tables.values())
    detail = f"{len(manifest.tables)} table file(s), {rows} rows, sha256 and row checksums as the manifest says"
    return manifest, Check(name, True, detail)


def _check_archive_matches_source(
    source: Snapshot, manifest: Manifest | None, batch_size: int, progress: Progress | None
) -> Check:
    name = "archive matches the source"
    if manifest is None:
        return Check(name, False, "not checked, as the archive cannot be read")
    problems: list[str] = []
    present = sorted(table.name for table in source.tables)
    if present != sorted(manifest.tables):
        problems.append(f"the source holds tables {present}, the archive {sorted(manifest.tables)}")
    schema = source.schema()
    if schema.statements != manifest.schema.statements or schema.sequences != manifest.schema.sequences:
        problems.append("the source's DDL or AUTOINCREMENT counters differ from the archived ones")
    for table in map(source.stored_table, source.tables):
        archived = manifest.tables.get(table.name)
        if archived is None:
            continue
        if archived.table(table.name).columns != table.columns:
            columns = ", ".join(archived.table(table.name).columns)
            problems.append(f"{table.name}: the source has columns {', '.join(table.columns)}, the archive {columns}")
            continue
        problems += tally_differences(table.name, source_tally(source, table, batch_size, progress), archived)
    if problems:
        return Check(name, False, "; ".join(problems))
    counts = ", ".join(f"{entry.rows} {table}" for table, entry in manifest.tables.items())
    return Check(name, True, f"{counts}; row checksums equal")


def tally_differences(table: str, found: RowTally, archived: ArchivedTable) -> list[str]:
    problems = []
    if found.rows != archived.rows:
        problems.append(f"{table}: the source has {found.rows} rows, the archive {archived.rows}")
    if found.checksum != archived.checksum:
        problems.append(f"{table}: row checksum differs (source {found.checksum}, archive {archived.checksum})")
    return problems


def _check_columns_carried(source: Snapshot) -> Check:
    name = "every source column carried"
    if source.unmapped:
        named = ", ".join(f"{table}.{column}" for table, column in source.unmapped)
        return Check(name, False, f"{named}: in no target table, so dropping the legacy tables would lose it")
    return Check(name, True, "every column of the legacy tables is carried by the target")


def _check_target_rebuilds_source(
    source: Snapshot, database: pw.Database, batch_size: int, progress: Progress | None
) -> Check:
    name = "target holds every source row exactly"
    try:
        report = verify(source, database, batch_size=batch_size, progress=progress)
    except MigratorError as exc:
        return Check(name, False, str(exc))
    present = {table.name for table in source.tables}
    tables = [t for t in report.tables if t.table in present]
    rows = sum(t.mismatched + t.missing for t in tables)
    metadata, unmapped = report.kinds[MismatchKind.METADATA], report.kinds[MismatchKind.UNMAPPED_COLUMN]
    losses = [
        f"{rows} source row(s) not held exactly" if rows else "",
        f"{metadata} migration record(s) not the source's" if metadata else "",
        f"{unmapped} source column(s) not carried" if unmapped else "",
    ]
    if any(losses):
        examples = [m.headline() for m in report.mismatches if m.kind in LOSES_SOURCE_DATA][:3]
        return Check(name, False, f"{'; '.join(filter(None, losses))}, e.g. {' | '.join(examples)}")
    detail = f"{sum(t.matched for t in tables)} source rows rebuilt exactly"
    extra = sum(t.extra for t in tables)
    return Check(name, True, detail + (f"; the target also holds {extra} row(s) the source lacks" if extra else ""))


RESTORES = "archive restores the source exactly"
SCRATCH_PREFIX = ".ksi-cleanup-scratch-"


def _check_archive_restores_source(
    source: Snapshot,
    archive: Path,
    manifest: Manifest | None,
    parent: Path | None,
    batch_size: int,
    progress: Progress | None,
) -> Check:
    """Restore the archive into a scratch file, as a rollback would, and compare it with the source."""
    if manifest is None:
        return Check(RESTORES, False, "not checked, as the archive cannot be read")
    where = parent if parent is not None else Path(tempfile.gettempdir())
    try:
        with scratch_folder(parent) as folder:
            copy = folder / "restored.db"
            restoring = in_phase(progress, "restoring")
            rows = sum(
                write_archived_tables(archive, manifest, copy, batch_size=batch_size, progress=restoring).values()
            )
            with LegacySource(copy, unmapped=UnmappedColumns.REPORT) as restored:
                differing, examples, problems = restored_differences(
                    source, restored, batch_size, progress=in_phase(progress, "comparing")
                )
    except (OSError, sqlite3.Error, MigratorError) as exc:
        reason = explain(exc) or " ".join(str(exc).split())
        return Check(RESTORES, False, f"the archive could not be restored into a scratch copy in {where}: {reason}")
    if differing:
        shown = " | ".join(mismatch.headline() for mismatch in examples)
        problems.insert(0, f"{differing} row(s) of the restored copy differ from the source, e.g. {shown}")
    if problems:
        return Check(RESTORES, False, "; ".join(problems))
    return Check(RESTORES, True, f"{rows} rows restored into a scratch copy in {where} and compared: identical")


def restored_differences(
    source: Snapshot, restored: LegacySource, batch_size: int, shown: int = 3, progress: Progress | None = None
) -> tuple[int, list[Mismatch], list[str]]:
    """Every row of every source table against the restored copy's, by the comparison engine:
    how many differ, the first `shown` of them, and what differs in the tables themselves (the
    DDL, AUTOINCREMENT counters and encoding the copy was created with)."""
    problems = []
    if not same_schema(source.schema(), restored.schema()):
        problems.append("the restored copy's tables, DDL, counters or encoding differ from the source's")
    differing, examples = 0, list[Mismatch]()
    held = {table.name: table for table in restored.tables}
    for table in map(source.stored_table, source.tables):
        if table.name not in held or restored.stored_table(held[table.name]).columns != table.columns:
            problems.append(f"{table.name}: the restored copy lacks the table or some of its columns")
            continue
        expected = reported(
            (row for batch in source.batches(table, batch_size) for row in batch), table.name, progress, batch_size
        )
        actual = (row for batch in restored.batches(table, batch_size) for row in batch)
        for mismatch in compare_legacy_rows(table, expected, actual):
            differing += 1
            if len(examples) < shown:
                examples.append(mismatch)
    return differing, examples, problems


def same_schema(source: LegacySchema, restored: LegacySchema) -> bool:
    """The same tables with the same statements, counters and encoding, whichever order they are
    listed in (the daemon's two files are restored into one scratch file)."""
    return (
        sorted(source.tables) == sorted(restored.tables)
        and statements_by_table(source.statements) == statements_by_table(restored.statements)
        and source.sequences == restored.sequences
        and source.encoding == restored.encoding
    )


def scratch_parent(database: pw.Database) -> Path | None:
    """Where the scratch copy goes: beside a SQLite target, else (a server) the system's temporary folder."""
    if isinstance(database, pw.SqliteDatabase) and database.database not in ("", ":memory:"):
        return Path(database.database).resolve().parent
    return None


@contextmanager
def scratch_folder(parent: Path | None) -> Iterator[Path]:
    """A private folder (0700, as `mkdtemp` makes it) removed with everything in it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- running ----------------------------------------------------------------------------------


def execute_cleanup(plan: CleanupPlan, database: pw.Database) -> CleanupPlan:
    """Drop the legacy tables of a ready plan, after counting and checksumming them once more."""
    if not plan.ready or plan.manifest is None:
        raise CleanupRefused(plan.refusal())
    with ExitStack() as files:
        # Every file's write lock first, and every file checked, before any table is dropped.
        connections = {path: files.enter_context(_locked(path)) for path in plan.files}
        drift = [
            problem for path, c in connections.items() for problem in _source_drift(c, plan.manifest, plan.files[path])
        ]
        if drift:
            raise CleanupRefused(f"{REFUSED}: the source changed since the checks: {'; '.join(drift)}")
        for path, connection in connections.items():
            for statement in plan.file_statements(path):
                connection.execute(statement)
        for connection in connections.values():
            connection.execute("COMMIT")
    _record_cleanup(database, plan)
    plan.executed = True
    return plan


@contextmanager
def _locked(path: Path) -> Iterator[sqlite3.Connection]:
    """A source file opened for writing in a `BEGIN IMMEDIATE` transaction, rolled back unless committed."""
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"  # rw, never create: the file must be the checked one
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)) as connection:
        connection.text_factory = decode_sqlite_text
        connection.execute("BEGIN IMMEDIATE")  # from here on no other writer can change the tables
        try:
            yield connection
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")


def _source_drift(connection: sqlite3.Connection, manifest: Manifest, names: Sequence[str]) -> list[str]:
    problems: list[str] = []
    for name in names:
        archived = manifest.tables[name]
        table = archived.table(name)
        present = {row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')}
        if present != set(table.columns):
            problems.append(f"{name}: its columns are now {sorted(present)}, the archive holds {list(table.columns)}")
            continue
        columns = ", ".join(f'"{column}"' for column in table.columns)
        try:
            rows = connection.execute(f'SELECT rowid, {columns} FROM "{name}"')
        except sqlite3.OperationalError as exc:
            problems.append(f"{name}: {exc}")
            continue
        problems += tally_differences(name, tally(rows), archived)
    return problems


def _record_cleanup(database: pw.Database, plan: CleanupPlan) -> None:
    record = {
        "source": " + ".join(str(path.resolve()) for path in plan.files) or str(plan.source.resolve()),
        "archive": str(plan.archive.resolve()),
        "manifest_sha256": file_sha256(plan.archive / MANIFEST),
        "tables": plan.tables,
        "archived_at": plan.manifest.created_at if plan.manifest else None,
    }
    set_meta(database, CLEANUP_META_KEY, json.dumps(record))
