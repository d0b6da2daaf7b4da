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


class UnsupportedSource(MigratorError):
    """A legacy table is declared in a way the mapping cannot carry exactly (named in the message)."""


class UnmappedColumn(UnsupportedSource):
    """A legacy table has a column the mapping does not carry: migrating it would lose that column."""


class TargetUnreachable(MigratorError):
    """The target database cannot be opened or connected to."""


class UnsupportedEngine(MigratorError):
    """The target's database server lacks something exact storage needs (named in the message)."""


class IncompatibleSchema(MigratorError):
    """The target holds a relational schema of a version this migrator cannot use."""


class OutputExists(MigratorError):
    """A command that writes a new file was pointed at one that already exists."""


class NotMigrated(MigratorError):
    """The target has no relational schema, so there is nothing to rebuild."""


class RebuildError(MigratorError):
    """Relational rows cannot be turned back into a legacy row (they were changed or lost)."""


class UnknownMode(MigratorError):
    """The store was asked for a read/write mode that does not exist."""


class LegacyUnavailable(MigratorError):
    """The store's mode needs the legacy tables, and they are absent or cannot be reached."""


class UnreadableRecord(MigratorError):
    """A stored blob is not a JSON object, so the store cannot hand it out (it stays stored verbatim)."""


class ArchiveIncomplete(MigratorError):
    """An archive lacks its manifest, a table file or rows, or cannot be read to the end."""


class ArchiveCorrupt(MigratorError):
    """An archive's files or rows do not match the sha256 values and checksums of its manifest."""


class CleanupRefused(MigratorError):
    """`cleanup` found a check that did not pass, so it dropped nothing."""


class ReadOnlyStore(MigratorError):
    """A write through a store opened read-only, or a read-only store in a mode that writes."""


class StoreNotConfigured(MigratorError):
    """The daemon's drop-in (`migrator.ksi`) was given no store, and the environment names none."""


class SnapshotMismatch(MigratorError):
    """A catch-up from a snapshot that shares no row with the target, which would replace it all."""


class InvalidCutoff(MigratorError, ValueError):
    """A cutoff for `last_seen` that names no time, so the relational rows cannot be compared with it."""


class DuplicateKeys(MigratorError):
    """Rows that must have distinct keys share one, so a unique index cannot be built."""


class BrokenReferences(MigratorError):
    """Rows of a fresh load refer to a parent row that does not exist: a foreign key does not hold."""


class SchemaRefused(MigratorError):
    """Legacy DDL (from an archive, a target, or a source) holds something other than a CREATE TABLE
    of a legacy table or a CREATE INDEX on one: an ATTACH, a trigger, a view, another table, several
    statements in one string. It is never run."""


class ArchiveRefused(MigratorError):
    """An archive's manifest names a file outside the archive folder, or holds DDL that is not the
    legacy tables' (`SchemaRefused`): nothing of it is read or run."""


class RestoreLayoutError(MigratorError):
    """A restore into a file per table that does not say where one of the tables goes."""


class WorkerFailed(MigratorError):
    """A worker process that parses blobs (`--jobs`) stopped before it finished its batch."""


class StagingFailed(MigratorError):
    """A worker could not write a batch's rows to its staging file (`staging`): a full disk, mostly."""
