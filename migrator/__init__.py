"""Migrate the KSI daemon's JSON blobs to relational tables, and prove nothing was lost.

The public API is small; the CLI (`ksi-migrate`) is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from migrator.backfill import BackfillReport, backfill
from migrator.equivalence import Difference, json_differences, json_equal
from migrator.errors import (
    ArchiveCorrupt,
    ArchiveIncomplete,
    ArchiveRefused,
    BrokenReferences,
    CleanupRefused,
    DuplicateKeys,
    IncompatibleSchema,
    LegacyUnavailable,
    MigratorError,
    NoLegacyTables,
    NotMigrated,
    OutputExists,
    ReadOnlyStore,
    RebuildError,
    SchemaRefused,
    SourceNotFound,
    TargetUnreachable,
    UnknownMode,
    UnreadableRecord,
)
from migrator.legacy import LegacySource
from migrator.redaction import mask_url
from migrator.rollback import export, restore
from migrator.store import AsyncStore, Mode, Store, open_store
from migrator.target import open_target
from migrator.verify import VerifyReport, verify

__all__ = [
    "ArchiveCorrupt",
    "ArchiveIncomplete",
    "ArchiveRefused",
    "AsyncStore",
    "BackfillReport",
    "BrokenReferences",
    "CleanupRefused",
    "Difference",
    "DuplicateKeys",
    "IncompatibleSchema",
    "LegacySource",
    "LegacyUnavailable",
    "MigratorError",
    "Mode",
    "NoLegacyTables",
    "NotMigrated",
    "OutputExists",
    "ReadOnlyStore",
    "RebuildError",
    "SchemaRefused",
    "SourceNotFound",
    "Store",
    "TargetUnreachable",
    "UnknownMode",
    "UnreadableRecord",
    "VerifyReport",
    "__version__",
    "backfill",
    "export",
    "json_differences",
    "json_equal",
    "mask_url",
    "open_store",
    "open_target",
    "restore",
    "verify",
]
