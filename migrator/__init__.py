"""Migrate the KSI daemon's JSON blobs to relational tables, and prove nothing was lost.

The public API is small; the CLI (`ksi-migrate`) is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from migrator.backfill import BackfillReport, backfill
from migrator.equivalence import Difference, json_differences, json_equal
from migrator.errors import (
    IncompatibleSchema,
    MigratorError,
    NoLegacyTables,
    NotMigrated,
    OutputExists,
    RebuildError,
    SourceNotFound,
    TargetUnreachable,
)
from migrator.legacy import LegacySource
from migrator.rollback import export, restore
from migrator.target import open_target
from migrator.verify import VerifyReport, verify

__all__ = [
    "BackfillReport",
    "Difference",
    "IncompatibleSchema",
    "LegacySource",
    "MigratorError",
    "NoLegacyTables",
    "NotMigrated",
    "OutputExists",
    "RebuildError",
    "SourceNotFound",
    "TargetUnreachable",
    "VerifyReport",
    "__version__",
    "backfill",
    "export",
    "json_differences",
    "json_equal",
    "open_target",
    "restore",
    "verify",
]
