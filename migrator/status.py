"""`ksi-migrate status`: what a target holds and how it got there, for people and for scripts.

Everything comes from the target itself (its rows and `ksi_migration_meta`), read without writing:
the schema version, rows per legacy table (relational, quarantined, non-canonical), the last
migrate (when, from which snapshot and its sha256, what it wrote), and whether cleanup dropped
the legacy tables and from which archive. With a source it also says whether that snapshot is the
one the last migrate read, and how many rows it holds.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import peewee as pw

from migrator import __version__
from migrator.kinds import KINDS
from migrator.relational import BlobKind, held_rows
from migrator.sources import Snapshot, files_hashes, files_listing, source_files, source_label
from migrator.target import CLEANUP_META_KEY, get_meta, schema_version, set_meta

LAST_MIGRATE_KEY = "last_migrate"
"""A log of the last run, for people and scripts: no read, query or rebuild depends on it, so the
proofs leave it out, as they leave out the catch-up digests."""


@dataclass
class Status:
    schema_version: int | None
    tables: dict[str, dict[str, int]]  # legacy table -> relational, quarantined, noncanonical rows
    last_migrate: dict[str, Any] | None
    cleanup: dict[str, Any] | None
    source: dict[str, Any] | None = None  # with --source: its path, sha256, rows, and whether it was the last read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_status(database: pw.Database, source: Snapshot | None = None) -> Status:
    """The status of a target, read only; `source` is compared with what the last migrate read."""
    version = schema_version(database)
    tables = {name: _table_counts(database, kind) for name, kind in KINDS.items()} if version is not None else {}
    last = _meta_record(database, LAST_MIGRATE_KEY) if version is not None else None
    status = Status(version, tables, last, _meta_record(database, CLEANUP_META_KEY) if version is not None else None)
    if source is not None:
        hashes = files_hashes(source_files(source))
        status.source = {
            "path": source_label(source, resolve=True),
            "sha256": hashes["db"],
            "wal_sha256": hashes["wal"],
            "rows": {table.name: source.count(table) for table in source.tables},
            "is_last_migrated": last is not None
            and (last["source_sha256"], last["source_wal_sha256"]) == (hashes["db"], hashes["wal"]),
        }
    return status


def _table_counts(database: pw.Database, kind: BlobKind) -> dict[str, int]:
    root = kind.root.model
    relational, quarantined = held_rows(database, kind)
    noncanonical = root.select().where(root.text_overlay.is_null(False)).count(database)
    return {"relational": relational, "quarantined": quarantined, "noncanonical": noncanonical}


def _meta_record(database: pw.Database, key: str) -> dict[str, Any] | None:
    text = get_meta(database, key)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}
    return record if isinstance(record, dict) else {"unreadable": text[:200]}


def record_last_migrate(
    database: pw.Database, source: Snapshot, hashes: dict[str, str | None], report: dict[str, Any]
) -> None:
    """Remember the run that just finished: when, from which snapshot (and its sha256), what it did.
    A snapshot of several files is named `a.db + b.db`, its sha256 is over the files' own
    (`sources.files_hashes`), and `source_files` lists each file's."""
    files = source_files(source)
    record = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source_label(source, resolve=True),
        **({"source_files": files_listing(files)} if len(files) > 1 else {}),
        "source_sha256": hashes["db"],
        "source_wal_sha256": hashes["wal"],
        "tool_version": __version__,
        **report,
    }
    set_meta(database, LAST_MIGRATE_KEY, json.dumps(record))
