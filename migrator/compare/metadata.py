"""The migration record (legacy DDL, AUTOINCREMENT counters, encoding) against the source, and the
source columns the mapping does not carry."""

from __future__ import annotations

from collections.abc import Sequence

import peewee as pw

from migrator.compare.mismatch import Mismatch, MismatchKind, render_cell
from migrator.ddl import statements_by_table
from migrator.equivalence import Difference
from migrator.errors import RebuildError, SchemaRefused
from migrator.legacy import LegacySchema
from migrator.target import LEGACY_SCHEMA_KEY, load_legacy_schema

# --- the migration metadata ---------------------------------------------------------------------

META_TABLE = "ksi_migration_meta"
# Of its rows, `legacy_schema` is compared here, and a `schema_version` this package does not
# know is refused before anything is read (`target.create_schema`, `verify`). The others are logs
# of runs (`last_migrate`, `legacy_cleanup`: when, from where, what was written) that `status`
# shows: a wrong one changes neither a read, a query nor a rebuild, so they are not compared.


def metadata_mismatches(source: LegacySchema, database: pw.Database) -> list[Mismatch]:
    """The target's recorded legacy schema against the source's; a record that cannot be read is one."""
    try:
        return compare_metadata(source, load_legacy_schema(database))
    except (RebuildError, SchemaRefused) as exc:  # a record that cannot be read, or runs what it must not
        return [Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, detail=str(exc))]


def compare_metadata(source: LegacySchema, recorded: LegacySchema | None) -> list[Mismatch]:
    """The legacy DDL, AUTOINCREMENT counters and encoding the target recorded, against the
    source's own, for every table the source holds: the rollback recreates the tables from them."""
    if recorded is None:
        return [Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, detail="nothing is recorded")]
    source_groups, recorded_groups = statements_by_table(source.statements), statements_by_table(recorded.statements)
    mismatches = []
    for table in source.tables:
        path = f"{META_TABLE}.{LEGACY_SCHEMA_KEY}[{table}]"
        differences = []
        if table not in recorded.tables:
            differences.append(Difference(f"{path}.tables", repr(table), "<missing>"))
        expected, actual = source_groups.get(table, []), recorded_groups.get(table, [])
        for index in range(max(len(expected), len(actual))):
            left = expected[index] if index < len(expected) else None
            right = actual[index] if index < len(actual) else None
            if left != right:
                differences.append(Difference(f"{path}.statements[{index}]", render_cell(left), render_cell(right)))
        if source.sequences.get(table) != recorded.sequences.get(table):
            differences.append(
                Difference(
                    f"{path}.sequence",
                    render_cell(source.sequences.get(table)),
                    render_cell(recorded.sequences.get(table)),
                )
            )
        if differences:
            mismatches.append(Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, tuple(differences)))
    if source.encoding != recorded.encoding:
        difference = Difference(
            f"{META_TABLE}.{LEGACY_SCHEMA_KEY}.encoding", repr(source.encoding), repr(recorded.encoding)
        )
        mismatches.append(Mismatch(MismatchKind.METADATA, META_TABLE, LEGACY_SCHEMA_KEY, None, (difference,)))
    return mismatches


def unmapped_column_mismatches(unmapped: Sequence[tuple[str, str]]) -> list[Mismatch]:
    """A source column the mapping does not carry: the target cannot hold it, so it would be lost."""
    return [
        Mismatch(MismatchKind.UNMAPPED_COLUMN, table, "-", None, detail=f"{table}.{column} is in no target table")
        for table, column in unmapped
    ]
