"""The legacy DDL a restore may run: a CREATE TABLE of a legacy table, or a CREATE INDEX on one.

A restore recreates the legacy tables from statements it reads from an archive's manifest or a
target's metadata, both files an attacker may have edited. Those statements are data: each one is
run first in a scratch in-memory database under an SQLite authorizer that lets SQLite do only
what creating a legacy table or index takes (write its schema row, read the table to index it),
so an ATTACH, a trigger, a view, another table, a SELECT or a function call is refused by SQLite
itself, before any file is created. Python's sqlite3 refuses several statements in one string.
The restore then runs the statements under the same authorizer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing

from migrator.errors import SchemaRefused
from migrator.legacy import LEGACY_TABLES_BY_NAME, LegacySchema, LegacySource

ENCODINGS = ("UTF-8", "UTF-16le", "UTF-16be")  # what `PRAGMA encoding` reports
SCHEMA_TABLE = "sqlite_master"
SEQUENCE_TABLE = "sqlite_sequence"  # created by SQLite itself for an AUTOINCREMENT table
STATEMENT_SHOWN = 80  # characters of a refused statement quoted in the message
FIELD_TYPES = {"statements": list, "sequences": dict, "encoding": str, "tables": list}

_ACTIONS = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ")
    for name in dir(sqlite3)
    if name.startswith(("SQLITE_CREATE", "SQLITE_DROP", "SQLITE_ALTER"))
    or name
    in (
        "SQLITE_ATTACH",
        "SQLITE_DETACH",
        "SQLITE_DELETE",
        "SQLITE_FUNCTION",
        "SQLITE_INSERT",
        "SQLITE_PRAGMA",
        "SQLITE_READ",
        "SQLITE_SELECT",
        "SQLITE_TRANSACTION",
        "SQLITE_UPDATE",
        "SQLITE_ANALYZE",
        "SQLITE_REINDEX",
        "SQLITE_SAVEPOINT",
        "SQLITE_RECURSIVE",
    )
}
"""Authorizer action codes by name, for the message of a refusal."""


class LegacyDDLAuthorizer:
    """An SQLite authorizer that allows creating the legacy tables and their indexes, nothing else,
    and remembers the first thing it refused."""

    def __init__(self) -> None:
        self.refused: str | None = None
        self.indexes: set[str] = set()  # indexes this statement creates; SQLite also asks to REINDEX them

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, database: str | None, trigger: str | None
    ) -> int:
        if trigger is None and database == "main" and self._allowed(action, arg1, arg2):
            return sqlite3.SQLITE_OK
        if self.refused is None:
            name = _ACTIONS.get(action, f"action {action}")
            self.refused = " ".join([name, *(repr(arg) for arg in (arg1, arg2) if arg is not None)])
        return sqlite3.SQLITE_DENY

    def _allowed(self, action: int, arg1: str | None, arg2: str | None) -> bool:
        legacy = arg1 in LEGACY_TABLES_BY_NAME
        if action == sqlite3.SQLITE_CREATE_TABLE:
            return legacy or arg1 == SEQUENCE_TABLE
        if action == sqlite3.SQLITE_CREATE_INDEX and arg1 is not None and arg2 in LEGACY_TABLES_BY_NAME:
            self.indexes.add(arg1)  # arg1 the index, arg2 its table
            return True
        if action == sqlite3.SQLITE_REINDEX:
            return arg1 in self.indexes
        if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE):  # the new object's schema row
            return arg1 == SCHEMA_TABLE
        if action == sqlite3.SQLITE_READ:  # the schema, and a table's rows to build an index on them
            return legacy or arg1 == SCHEMA_TABLE
        return False


def run_legacy_ddl(connection: sqlite3.Connection, statements: Iterable[str]) -> dict[str, list[str]]:
    """Run the statements in order, each allowed only to create a legacy table or an index on one;
    returns them grouped under the table each created or indexes, in the order they ran."""
    groups: dict[str, list[str]] = {}
    for position, statement in enumerate(statements):
        try:
            table = _run_one(connection, statement)
        except _Refused as problem:
            raise SchemaRefused(f"statements[{position}] {_shown(statement)}: {problem}") from None
        groups.setdefault(table, []).append(statement)
    return groups


class _Refused(Exception):
    """Why one statement was not run, or did not create exactly one legacy table or index."""


def _run_one(connection: sqlite3.Connection, statement: object) -> str:
    """Run one statement under the authorizer; return the table it created, or the table of the index."""
    if not isinstance(statement, str):
        raise _Refused("not a string")
    authorizer = LegacyDDLAuthorizer()
    before = _objects(connection)
    connection.set_authorizer(authorizer)
    try:
        connection.execute(statement)
    except (sqlite3.Error, sqlite3.Warning) as exc:  # Warning: several statements, on older Pythons
        reason = f"SQLite was asked to {authorizer.refused}" if authorizer.refused else str(exc)
        raise _Refused(
            f"not run ({reason}): only a CREATE TABLE of {_legacy_names()}, or a CREATE INDEX on one, is run"
        ) from None
    finally:
        connection.set_authorizer(None)
    created = [(kind, name, table) for kind, name, table in _objects(connection) - before if not _implicit(kind, name)]
    if len(created) != 1:
        raise _Refused(f"created {[c[:2] for c in created] or 'nothing'}; one table or index a statement is expected")
    return created[0][2]


def statements_by_table(statements: Iterable[str]) -> dict[str, list[str]]:
    """Each statement under the table it creates or indexes, as SQLite itself says: they are run,
    under the authorizer, in a scratch in-memory database (`SchemaRefused` for anything else)."""
    with closing(sqlite3.connect(":memory:")) as scratch:
        return run_legacy_ddl(scratch, statements)


def updated_schema(recorded: LegacySchema, newer: LegacySchema) -> LegacySchema:
    """`recorded` with every table `newer` describes replaced by `newer`'s account of it.

    A snapshot may hold one table only (the daemon keeps each in its own file), so a table it
    lacks keeps what an earlier run recorded; a table it holds is recorded exactly as it is now,
    so a changed DDL never leaves its old statements behind.
    """
    kept = [table for table in recorded.tables if table not in newer.tables]
    groups = statements_by_table(recorded.statements) if kept else {}
    by_table = {**{table: groups.get(table, []) for table in kept}, **statements_by_table(newer.statements)}
    tables = [name for name in LEGACY_TABLES_BY_NAME if name in by_table or name in newer.tables]
    sequences = {table: seq for table, seq in recorded.sequences.items() if table in kept}
    sequences.update(newer.sequences)
    return LegacySchema(_creation_order(by_table, tables), sequences, newer.encoding, tables)


def _creation_order(by_table: dict[str, list[str]], tables: list[str]) -> list[str]:
    """Every table's CREATE TABLE first, then the statements on them, as a snapshot lists its own."""
    groups = [by_table.get(table, []) for table in tables]
    return [group[0] for group in groups if group] + [statement for group in groups for statement in group[1:]]


def _objects(connection: sqlite3.Connection) -> set[tuple[str, str, str]]:
    return set(connection.execute(f"SELECT type, name, tbl_name FROM {SCHEMA_TABLE}"))


def _implicit(kind: str, name: str) -> bool:
    """Objects SQLite creates along with a table: the AUTOINCREMENT counters, a key's index."""
    return (kind, name) == ("table", SEQUENCE_TABLE) or (kind == "index" and name.startswith("sqlite_autoindex_"))


def check_legacy_schema(schema: LegacySchema) -> dict[str, list[str]]:
    """Raise `SchemaRefused`, naming the entry, unless `schema` only creates legacy tables and
    their indexes, one statement a string, and its other fields are what a restore expects.
    Returns the columns each table it creates has, in their order."""
    problem = _field_problem(schema)
    if problem:
        raise SchemaRefused(problem)
    with closing(sqlite3.connect(":memory:")) as scratch:
        scratch.execute(f"PRAGMA encoding = '{schema.encoding}'")
        run_legacy_ddl(scratch, schema.statements)
        problem = _tables_problem(scratch, schema.tables)
        if problem:
            raise SchemaRefused(problem)
        return {name: [row[1] for row in scratch.execute(f'PRAGMA table_info("{name}")')] for name in schema.tables}


def refuse_unrestorable_schema(source: LegacySource, command: str) -> None:
    """Refuse, before `command` starts, a source whose schema a restore could not recreate (a trigger
    on a legacy table): the archive or target would keep what a restore refuses to run."""
    try:
        check_legacy_schema(source.schema())
    except SchemaRefused as exc:
        raise SchemaRefused(
            f"cannot {command} {source.path}: its schema.{exc}. A restore recreates the legacy tables and their "
            "indexes only: keep the SQL of anything else, drop it from the source, and recreate it after a restore"
        ) from None


def _field_problem(schema: LegacySchema) -> str | None:
    for name, expected in FIELD_TYPES.items():
        if not isinstance(getattr(schema, name), expected):
            return f"{name}: {type(getattr(schema, name)).__name__}, not a {expected.__name__}"
    if schema.encoding not in ENCODINGS:
        return f"encoding {_shown(schema.encoding)}: not one of {', '.join(ENCODINGS)}"
    for table in schema.tables:
        if not isinstance(table, str) or table not in LEGACY_TABLES_BY_NAME:
            return f"tables: {_shown(table)} is not a legacy table ({_legacy_names()})"
    if len(set(schema.tables)) != len(schema.tables):
        return f"tables: {schema.tables} names a table twice"
    for table, value in schema.sequences.items():
        if table not in schema.tables:
            return f"sequences: {_shown(table)} is not one of the tables {schema.tables}"
        if type(value) is not int:
            return f"sequences.{table}: {_shown(value)} is not an integer"
    return None


def _tables_problem(connection: sqlite3.Connection, tables: list[str]) -> str | None:
    created = {name for (name,) in connection.execute(f"SELECT name FROM {SCHEMA_TABLE} WHERE type = 'table'")}
    created.discard(SEQUENCE_TABLE)
    if created != set(tables):
        return f"statements create the tables {sorted(created)}; tables lists {sorted(tables)}"
    for name in tables:
        columns = {row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')}
        missing = [column for column in LEGACY_TABLES_BY_NAME[name].columns if column not in columns]
        if missing:
            return f"statements: table {name} lacks column(s) {', '.join(missing)}"
    return None


def _legacy_names() -> str:
    return " or ".join(LEGACY_TABLES_BY_NAME)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= STATEMENT_SHOWN else text[: STATEMENT_SHOWN - 3] + "..."
