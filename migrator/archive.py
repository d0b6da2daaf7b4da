"""The legacy tables as a compressed archive: written before cleanup, checked, and restorable.

An archive is a folder:

    manifest.json          counts, sha256 of every file, a checksum of the rows, the legacy DDL
    checkpoints.jsonl.gz   one legacy row a line: {"rowid": 7, "id": 7, "timestamp": ..., ...}
    mcp_sessions.jsonl.gz

Cells keep their SQLite storage type: TEXT and INTEGER are written as themselves, anything else
tagged as `rollback.export` does (`{"$sqlite": "real", "value": "17.25"}`). With the DDL and the
AUTOINCREMENT counters from the manifest, `restore_archive` recreates the tables exactly.

The row checksum is the sum, mod 2**128, of every row's `row_digest` (rowid and cells, storage
types included). A sum does not depend on row order, so the source and the archive can be
compared however each is read, and any changed, missing or extra row changes it.

A manifest is data, never code (`load_manifest`): every file it names is a plain name inside the
archive folder, and its DDL only creates the legacy tables and their indexes (`migrator.ddl`).
Anything else refuses the whole archive before a file is read or a statement run.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from migrator import __version__
from migrator.batching import DEFAULT_BATCH_SIZE, Progress, in_phase, reported
from migrator.codec import LegacyCell, decode_cell
from migrator.ddl import check_legacy_schema, refuse_unrestorable_schema
from migrator.errors import (
    ArchiveCorrupt,
    ArchiveIncomplete,
    ArchiveRefused,
    OutputExists,
    RebuildError,
    SchemaRefused,
)
from migrator.legacy import (
    CELLS,
    LEGACY_TABLES_BY_NAME,
    ROWID,
    LegacyRow,
    LegacySchema,
    LegacyTable,
    file_sha256,
    row_digest,
)
from migrator.legacy_copy import Outputs, outputs_label, write_legacy_copies
from migrator.private import make_folder, open_new, write_new_text
from migrator.rollback import RestoreReport, export_cell
from migrator.sources import Snapshot, source_label

FORMAT = "ksi-legacy-archive"
FORMAT_VERSION = 2  # 2: each table lists its columns (a column the mapping does not read is kept too)
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
CHECKSUM_MODULUS = 2**128  # row digests are 128-bit blake2b values


# --- rows as lines ----------------------------------------------------------------------------


def archive_line(table: LegacyTable, row: LegacyRow) -> str:
    record: dict[str, Any] = {"rowid": row[ROWID]}
    for column, cell in zip(table.columns, row[CELLS], strict=True):
        record[column] = export_cell(cell)
    return json.dumps(record)


def import_cell(value: Any) -> LegacyCell:
    """Inverse of `rollback.export_cell`."""
    if isinstance(value, dict) and set(value) == {"$sqlite", "value"}:
        try:
            return decode_cell(value["$sqlite"], value["value"])
        except (RebuildError, ValueError, TypeError) as exc:
            raise ArchiveCorrupt(f"cell {value!r} cannot be decoded: {exc}") from exc
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ArchiveCorrupt(f"cell {value!r} is neither TEXT, INTEGER nor a tagged cell")


def parse_line(table: LegacyTable, line: str) -> LegacyRow:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ArchiveCorrupt(f"{table.name}: a line is not JSON: {exc}") from exc
    expected = ["rowid", *table.columns]
    if not isinstance(record, dict) or list(record) != expected or type(record["rowid"]) is not int:
        raise ArchiveCorrupt(f"{table.name}: a line is not a row of {', '.join(expected)}: {line[:80]!r}")
    return (record["rowid"], *(import_cell(record[column]) for column in table.columns))


# --- checksums --------------------------------------------------------------------------------


@dataclass
class RowTally:
    """Count and order-independent checksum of a table's rows."""

    rows: int = 0
    total: int = 0

    def add(self, row: LegacyRow) -> None:
        # The rowid is digested with the cells: a row moved to another rowid is not the same row.
        self.add_digest(int(row_digest(row), 16))

    def add_digest(self, digest: int) -> None:
        """A row whose digest is already known."""
        self.rows += 1
        self.total = (self.total + digest) % CHECKSUM_MODULUS

    def __add__(self, other: RowTally) -> RowTally:
        """The tally of two disjoint sets of rows: a sum, so parts counted apart combine exactly."""
        return RowTally(self.rows + other.rows, (self.total + other.total) % CHECKSUM_MODULUS)

    @classmethod
    def of(cls, rows: int, checksum: str) -> RowTally:
        """A tally read back from its figures (the count and the hex checksum)."""
        return cls(rows, int(checksum, 16))

    @property
    def checksum(self) -> str:
        return f"{self.total:032x}"


def tally(rows: Iterable[LegacyRow]) -> RowTally:
    counted = RowTally()
    for row in rows:
        counted.add(row)
    return counted


def source_tally(
    source: Snapshot, table: LegacyTable, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
) -> RowTally:
    rows = (row for batch in source.batches(table, batch_size) for row in batch)
    return tally(reported(rows, table.name, progress, batch_size))


# --- the manifest -----------------------------------------------------------------------------


@dataclass
class ArchivedTable:
    file: str
    rows: int
    sha256: str
    checksum: str
    columns: list[str] = field(default_factory=list)  # every column, the mapped ones first; [] in version 1

    def table(self, name: str) -> LegacyTable:
        """The legacy table with the columns this file holds (version 1 files: the mapped ones)."""
        legacy = LEGACY_TABLES_BY_NAME[name]
        return replace(legacy, columns=tuple(self.columns)) if self.columns else legacy


@dataclass
class Manifest:
    tables: dict[str, ArchivedTable]
    schema: LegacySchema
    source: str
    created_at: str
    tool_version: str = __version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    row_checksum: str = "sum of row_digest(rowid and cells) mod 2**128, as 32 hex digits"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        record = json.loads(text)
        if record.get("format") != FORMAT or record.get("format_version") not in READABLE_VERSIONS:
            raise ArchiveIncomplete(
                f"manifest is not a {FORMAT} manifest of version {' or '.join(map(str, READABLE_VERSIONS))} "
                f"(format {record.get('format')!r}, version {record.get('format_version')!r})"
            )
        tables = {name: ArchivedTable(**entry) for name, entry in record["tables"].items()}
        schema = LegacySchema(**record["schema"])
        version = record["format_version"]
        return cls(
            tables, schema, record["source"], record["created_at"], record["tool_version"], format_version=version
        )


def load_manifest(directory: Path) -> Manifest:
    """The manifest of the archive in `directory`, refused (`ArchiveRefused`) unless every file it
    names is a plain name inside the folder and its DDL only creates the legacy tables."""
    path = directory / MANIFEST
    problem = file_name_problem(directory, MANIFEST)
    if problem:
        raise ArchiveRefused(f"{path}: {problem}")
    if not path.is_file():
        raise ArchiveIncomplete(f"archive has no {MANIFEST}: {directory}")
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveIncomplete(f"{path} cannot be read: {exc!r}") from exc
    for name, entry in manifest.tables.items():
        problem = file_name_problem(directory, entry.file)
        if problem:
            raise ArchiveRefused(f"{path} refused: tables.{name}.file {entry.file!r}: {problem}")
    try:
        created = check_legacy_schema(manifest.schema)
    except SchemaRefused as exc:
        raise ArchiveRefused(f"{path} refused: schema.{exc}") from None
    unknown = [name for name in manifest.tables if name not in LEGACY_TABLES_BY_NAME]
    if unknown or sorted(manifest.tables) != sorted(manifest.schema.tables):
        raise ArchiveIncomplete(
            f"manifest lists files for {sorted(manifest.tables)} but the legacy tables {manifest.schema.tables}"
        )
    for name, entry in manifest.tables.items():
        problem = columns_problem(entry.columns, LEGACY_TABLES_BY_NAME[name], created[name])
        if problem:
            raise ArchiveRefused(f"{path} refused: tables.{name}.columns: {problem}")
    return manifest


def columns_problem(columns: object, table: LegacyTable, created: list[str]) -> str | None:
    """Why a file's column list is not its table's (the mapped columns first, then every other
    column its DDL creates, each once), or None. Version 1 manifests list none: the mapped columns."""
    if columns == []:
        return None
    if not isinstance(columns, list) or not all(isinstance(column, str) for column in columns):
        return "not a list of column names"
    if tuple(columns[: len(table.columns)]) != table.columns or len(set(columns)) != len(columns):
        return f"{columns!r:.80} does not start with {', '.join(table.columns)} or names a column twice"
    strangers = [column for column in columns if column not in created]
    if strangers:
        return f"{strangers} are not columns of the archived table"
    left_out = [column for column in created if column not in columns]
    return f"the archived table also has {left_out}, which no line holds" if left_out else None


def file_name_problem(directory: Path, name: object) -> str | None:
    """Why `name` is not the plain name of a file inside the archive folder, or None when it is."""
    if not isinstance(name, str) or not name:
        return "not a file name"
    if os.path.isabs(name):
        return "an absolute path; an archive names its files by their plain names inside its folder"
    if name in (".", "..") or any(separator in name for separator in ("/", "\\", os.sep, "\0")):
        return "not a plain file name (a path separator or '..'); an archive's files are inside its folder"
    path = directory / name
    if path.is_symlink() and path.resolve().parent != directory.resolve():
        return "a symbolic link to a file outside the archive folder"
    return None


# --- writing ----------------------------------------------------------------------------------


def write_archive(
    source: Snapshot,
    out: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> Manifest:
    """Archive every legacy table of `source` into the new folder `out`; returns its manifest."""
    folder = Path(out)
    if folder.exists():
        raise OutputExists(f"refusing to overwrite existing archive folder: {folder}")
    refuse_unrestorable_schema(source, "archive")
    # Written under a temporary name, so a crash never leaves a folder that looks like an archive.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_folder(partial)
    try:
        # Every column of every row, the ones the mapping does not read too: nothing is left behind.
        stored = [source.stored_table(table) for table in source.tables]
        entries = {table.name: _write_table(source, table, partial, batch_size, progress) for table in stored}
        manifest = Manifest(entries, source.schema(), source_label(source, resolve=True), _utc_now())
        write_new_text(partial / MANIFEST, manifest.to_json())
        os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _write_table(
    source: Snapshot, table: LegacyTable, folder: Path, batch_size: int, progress: Progress | None
) -> ArchivedTable:
    name = f"{table.name}.jsonl.gz"
    counted = RowTally()
    # mtime=0 and no file name in the gzip header: the same rows always give the same bytes.
    with open_new(folder / name, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        for batch in source.batches(table, batch_size):
            packed.write("".join(archive_line(table, row) + "\n" for row in batch).encode("ascii"))
            for row in batch:
                counted.add(row)
            if progress:
                progress(table.name, len(batch))
    return ArchivedTable(name, counted.rows, file_sha256(folder / name) or "", counted.checksum, list(table.columns))


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- reading and checking ---------------------------------------------------------------------


def archived_rows(directory: Path, table: LegacyTable, entry: ArchivedTable) -> Iterator[LegacyRow]:
    try:
        with gzip.open(directory / entry.file, "rt", encoding="ascii", newline="\n") as lines:
            for line in lines:
                yield parse_line(table, line.rstrip("\n"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise ArchiveIncomplete(f"{entry.file} cannot be read to the end: {exc}") from exc


def check_archive(
    directory: str | os.PathLike[str], *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
) -> Manifest:
    """Prove the archive complete and readable: every file present, hashed and parsed to its end,
    with the counts and row checksums its manifest promises. Returns the manifest."""
    folder = Path(directory)
    manifest = load_manifest(folder)
    for name, entry in manifest.tables.items():
        table = entry.table(name)
        if not (folder / entry.file).is_file():
            raise ArchiveIncomplete(f"archive lacks {entry.file}, the file of table {name}")
        if file_sha256(folder / entry.file) != entry.sha256:
            raise ArchiveCorrupt(f"{entry.file}: sha256 differs from the manifest's")
        found = tally(reported(archived_rows(folder, table, entry), name, progress, batch_size))
        if found.rows != entry.rows:
            raise ArchiveIncomplete(f"{entry.file} holds {found.rows} rows; the manifest counts {entry.rows}")
        if found.checksum != entry.checksum:
            raise ArchiveCorrupt(f"{entry.file}: row checksum {found.checksum}, the manifest says {entry.checksum}")
    return manifest


# --- restoring --------------------------------------------------------------------------------


def archived_row_count(directory: str | os.PathLike[str]) -> int:
    """The rows an archive's manifest counts, in all its tables (what a restore's progress counts
    up to, twice: `restore_archive` reads every row to check it, then again to write it)."""
    return sum(entry.rows for entry in load_manifest(Path(directory)).tables.values())


def restore_archive(
    directory: str | os.PathLike[str],
    out: Outputs,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> RestoreReport:
    """Write a new SQLite file holding the archived legacy tables exactly (DDL, rows, counters), or
    a file per table (`legacy_copy.write_legacy_copies`)."""
    started = time.perf_counter()
    folder = Path(directory)
    # Never restore half an archive: every row is read to check it whole first.
    manifest = check_archive(folder, batch_size=batch_size, progress=in_phase(progress, "checking"))
    report = RestoreReport(out=outputs_label(out))
    report.rows = write_archived_tables(folder, manifest, out, batch_size=batch_size, progress=progress)
    report.seconds = time.perf_counter() - started
    return report


def write_archived_tables(
    folder: Path,
    manifest: Manifest,
    out: Outputs,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """The legacy tables an archive holds, written to the new file `out` (or a file per table):
    their DDL, rows and counters. `manifest` must be the one `check_archive` proved for `folder`.
    Returns rows written per table."""
    tables = [
        (
            manifest.tables[name].table(name),
            archived_rows(folder, manifest.tables[name].table(name), manifest.tables[name]),
        )
        for name in manifest.schema.tables
    ]
    return write_legacy_copies(out, manifest.schema, tables, batch_size=batch_size, progress=progress)
