"""Check 6: every table, column, primary key, foreign key, unique constraint and index that the
models declare exists in the target.

What the models declare is read the same way as the target: peewee renders the models into an
in-memory SQLite database and the same introspection calls read both. That covers what plain
field metadata would miss, such as the composite foreign key written as a table constraint.
Objects are compared by what they do (columns, uniqueness, referenced columns), not by name, and
the target may hold more than the models declare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import peewee as pw

from migrator.engines import engine
from migrator.models import ALL_MODELS, SCHEMA_VERSION
from migrator.target import schema_version
from verification.gate.checks import SCHEMA, CheckResult

ForeignKey = tuple[str, str, str]  # (column, referenced table, referenced column)
Index = tuple[tuple[str, ...], bool]  # (columns, unique)


@dataclass(frozen=True)
class TableShape:
    columns: frozenset[str]
    primary_key: tuple[str, ...]
    foreign_keys: frozenset[ForeignKey]
    indexes: frozenset[Index]


def table_shape(database: pw.Database, table: str) -> TableShape:
    return TableShape(
        columns=frozenset(column.name for column in database.get_columns(table)),
        primary_key=tuple(database.get_primary_keys(table)),
        foreign_keys=frozenset(
            (key.column, key.dest_table, key.dest_column) for key in database.get_foreign_keys(table)
        ),
        indexes=frozenset(
            (tuple(engine(database).index_columns(index)), bool(index.unique)) for index in database.get_indexes(table)
        ),
    )


def declared_shapes() -> dict[str, TableShape]:
    """The schema as peewee creates it from the models."""
    reference = pw.SqliteDatabase(":memory:")
    with reference.bind_ctx(ALL_MODELS):  # restores the models' own binding on exit
        reference.create_tables(ALL_MODELS)
        return {model._meta.table_name: table_shape(reference, model._meta.table_name) for model in ALL_MODELS}


def _columns(columns: Iterable[str]) -> str:
    return ", ".join(columns)


def table_problems(table: str, declared: TableShape, found: TableShape | None) -> list[str]:
    if found is None:
        return [f"table {table} is missing"]
    problems = []
    missing_columns = sorted(declared.columns - found.columns)
    if missing_columns:
        problems.append(f"{table} lacks column(s) {_columns(missing_columns)}")
    if declared.primary_key != found.primary_key:
        problems.append(
            f"{table}'s primary key is ({_columns(found.primary_key)}), "
            f"the models declare ({_columns(declared.primary_key)})"
        )
    for column, parent, parent_column in sorted(declared.foreign_keys - found.foreign_keys):
        problems.append(f"{table} lacks the foreign key {table}.{column} -> {parent}.{parent_column}")
    for columns, unique in sorted(declared.indexes - found.indexes):
        kind = "unique constraint" if unique else "index"
        problems.append(f"{table} lacks the {kind} on ({_columns(columns)})")
    return problems


def check_schema(database: pw.Database) -> CheckResult:
    declared = declared_shapes()
    present = set(database.get_tables())
    problems: list[str] = []
    for table, shape in declared.items():
        found = table_shape(database, table) if table in present else None
        problems += table_problems(table, shape, found)
    version = schema_version(database)
    if version != SCHEMA_VERSION:
        problems.append(f"the target records schema version {version}, the models are version {SCHEMA_VERSION}")
    figures = {
        "schema_version": version,
        "tables": len(declared),
        "foreign_keys": sum(len(shape.foreign_keys) for shape in declared.values()),
        "unique_constraints": sum(unique for shape in declared.values() for _, unique in shape.indexes),
        "indexes": sum(not unique for shape in declared.values() for _, unique in shape.indexes),
        "missing": len(problems),
    }
    summary = (
        f"{figures['tables']} tables, {figures['foreign_keys']} foreign key columns, "
        f"{figures['unique_constraints']} unique constraints, {figures['indexes']} indexes: "
        + (f"{len(problems)} problems" if problems else "all present")
    )
    return CheckResult(SCHEMA, not problems, summary, figures, problems)
