"""The daemon's real layout: each legacy table in a file of its own, read as one snapshot.

The daemon keeps `checkpoints` in `checkpoint.db` and `mcp_sessions` in `mcp_sessions.db`.
`LegacySources` reads several files as one source: each file is a `LegacySource` (opened
read-only and inspected as ever), each table is read from the file that holds it, and the
schema is the files' schemas together. `open_sources` gives a plain `LegacySource` for one
file, so every command reads one file exactly as before.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

from migrator.errors import UnsupportedSource
from migrator.legacy import (
    LEGACY_TABLES,
    LegacyRow,
    LegacySchema,
    LegacySource,
    LegacyTable,
    UnmappedColumns,
    snapshot_hashes,
)

Paths = Sequence[str | os.PathLike[str]]


class LegacySources:
    """Several legacy files read as one snapshot, each table from the one file that holds it.

    A table found in two files is refused (which one is the daemon's is not ours to guess), and
    so are files of different text encodings: the target records one encoding for the rollback.
    """

    def __init__(self, paths: Paths, *, unmapped: UnmappedColumns = UnmappedColumns.REFUSE) -> None:
        with ExitStack() as opening:
            self.members = [opening.enter_context(LegacySource(path, unmapped=unmapped)) for path in paths]
            self._by_table = self._assign_tables()
            self._check_encodings()
            opening.pop_all()  # opened and accepted: closed by `close`
        self.paths = [member.path for member in self.members]
        self.tables = [table for table in LEGACY_TABLES if table.name in self._by_table]
        self.unmapped = [entry for member in self.members for entry in member.unmapped]

    def _assign_tables(self) -> dict[str, LegacySource]:
        by_table: dict[str, LegacySource] = {}
        for member in self.members:
            for table in member.tables:
                if table.name in by_table:
                    raise UnsupportedSource(
                        f"source table {table.name} is in both {by_table[table.name].path} and {member.path}: "
                        "give each legacy table's file once"
                    )
                by_table[table.name] = member
        return by_table

    def _check_encodings(self) -> None:
        encodings = {member.path: member.schema().encoding for member in self.members}
        if len(set(encodings.values())) > 1:
            named = ", ".join(f"{path} is {encoding}" for path, encoding in encodings.items())
            raise UnsupportedSource(f"the source files differ in text encoding ({named}); migrate each on its own")

    @property
    def path(self) -> Path:
        """The first file, where one path is asked for (a log line); `paths` names them all."""
        return self.paths[0]

    @property
    def label(self) -> str:
        return " + ".join(str(path) for path in self.paths)

    def member(self, table: LegacyTable) -> LegacySource:
        """The file that holds this table."""
        return self._by_table[table.name]

    def reader(self, table: LegacyTable) -> sqlite3.Connection:
        """The read-only connection, in the snapshot's read transaction, that reads this table."""
        return self.member(table).connection

    def stored_table(self, table: LegacyTable) -> LegacyTable:
        return self.member(table).stored_table(table)

    def count(self, table: LegacyTable) -> int:
        return self.member(table).count(table)

    def batches(self, table: LegacyTable, batch_size: int, *args: int) -> Iterator[list[LegacyRow]]:
        return self.member(table).batches(table, batch_size, *args)

    def existing_rowids(self, table: LegacyTable, rowids: Sequence[int]) -> set[int]:
        return self.member(table).existing_rowids(table, rowids)

    def rows_now(self, table: LegacyTable, rowids: Sequence[int]) -> dict[int, LegacyRow]:
        return self.member(table).rows_now(table, rowids)

    @property
    def reads_a_copy(self) -> bool:
        return any(member.reads_a_copy for member in self.members)

    def written_since(self) -> bool:
        return any(member.written_since() for member in self.members)

    def schema(self, *, now: bool = False) -> LegacySchema:
        """The files' legacy tables together: each table's statements in the daemon's table order,
        and their counters (the encodings are equal)."""
        parts = {member.path: member.schema(now=now) for member in self.members}
        ordered = [self.member(table) for table in self.tables]
        statements = [statement for member in dict.fromkeys(ordered) for statement in parts[member.path].statements]
        sequences = {name: seq for part in parts.values() for name, seq in part.sequences.items()}
        encoding = next(iter(parts.values())).encoding
        return LegacySchema(statements, sequences, encoding, [table.name for table in self.tables])

    def close(self) -> None:
        for member in self.members:
            member.close()

    def __enter__(self) -> LegacySources:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


Snapshot = LegacySource | LegacySources
"""What every command reads: one legacy file, or the daemon's files together."""


def open_sources(paths: Paths, *, unmapped: UnmappedColumns = UnmappedColumns.REFUSE) -> Snapshot:
    """One file as a `LegacySource`, as ever; several as `LegacySources`."""
    if len(paths) == 1:
        return LegacySource(paths[0], unmapped=unmapped)
    return LegacySources(paths, unmapped=unmapped)


def source_files(source: Snapshot) -> list[Path]:
    return source.paths if isinstance(source, LegacySources) else [source.path]


def table_file(source: Snapshot, table: LegacyTable) -> Path:
    """The file that holds this table."""
    return source.member(table).path if isinstance(source, LegacySources) else source.path


def source_label(source: Snapshot, *, resolve: bool = False) -> str:
    """The source's file, or its files joined with ` + `, as reports and records name it."""
    return " + ".join(str(path.resolve() if resolve else path) for path in source_files(source))


def files_hashes(paths: Sequence[Path]) -> dict[str, str | None]:
    """The sha256 of a snapshot and of its WAL file, as `legacy.snapshot_hashes` gives them for one
    file; for several, one sha256 over each file's name and its two values, so that a change to
    any of them changes it (`files_listing` gives each file's own)."""
    if len(paths) == 1:
        return snapshot_hashes(paths[0])
    digests = {"db": hashlib.sha256(), "wal": hashlib.sha256()}
    wal_seen = False
    for path in paths:
        hashes = snapshot_hashes(path)
        wal_seen = wal_seen or hashes["wal"] is not None
        for kind, digest in digests.items():
            digest.update(f"{Path(path).name}\0{hashes[kind]}\n".encode())
    return {"db": digests["db"].hexdigest(), "wal": digests["wal"].hexdigest() if wal_seen else None}


def files_listing(paths: Sequence[Path]) -> list[dict[str, str | None]]:
    """Each file's path, sha256 and WAL sha256."""
    listing: list[dict[str, str | None]] = []
    for path in paths:
        hashes = snapshot_hashes(path)
        listing.append({"path": str(Path(path).resolve()), "sha256": hashes["db"], "wal_sha256": hashes["wal"]})
    return listing
