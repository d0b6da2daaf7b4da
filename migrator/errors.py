"""Domain exceptions, each named for the situation it reports.

The CLI turns every `MigratorError` into one line on stderr and a non-zero exit, so the
message must make sense on its own, without a traceback.
"""

from __future__ import annotations


class MigratorError(Exception):
    """Base class of every error the CLI reports as a clean one-line message."""

    exit_code: int = 2


class SourceNotFound(MigratorError):
    """The legacy snapshot file does not exist."""


class NoLegacyTables(MigratorError):
    """The source database holds neither `checkpoints` nor `mcp_sessions`."""


class TargetUnreachable(MigratorError):
    """The target database cannot be opened or connected to."""


class IncompatibleSchema(MigratorError):
    """The target holds a relational schema of a version this migrator cannot use."""


class OutputExists(MigratorError):
    """A command that writes a new file was pointed at one that already exists."""


class NotMigrated(MigratorError):
    """The target has no relational schema, so there is nothing to rebuild."""


class RebuildError(MigratorError):
    """Relational rows cannot be turned back into a legacy row (they were changed or lost)."""
