"""Bulk SQL generated from the peewee models, and the shape both blob kinds share.

The ORM builds every statement, but rows travel as plain tuples through `executemany` and raw
cursors: creating a model instance per row would cost more than the rest of a row's work.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

import peewee as pw

from migrator import engines
from migrator.codec import LegacyCell, UnreadableBlob, decode_cell, encode_cell, stored_key
from migrator.legacy import LegacyRow, LegacyTable, display_key
from migrator.models import Quarantine

Row = tuple[Any, ...]
Bundle = tuple[list[Row], ...]
"""The relational rows of one legacy row: the root table's row, then each child table's rows."""


@dataclass(frozen=True)
class TableMap:
    """Which columns of a model a blob kind fills, in tuple order.

    The first column is always the legacy identity (the root's id, or a child's parent id), and
    `order` gives the order children come back in.
    """

    model: type[pw.Model]
    columns: tuple[str, ...]
    order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [c for c in self.columns if c not in self.model._meta.columns]
        if unknown:
            raise TypeError(f"{self.model.__name__} has no column(s) {unknown}")

    def field(self, column: str) -> pw.Field:
        return self.model._meta.columns[column]

    @property
    def fields(self) -> list[pw.Field]:
        return [self.field(c) for c in self.columns]

    @property
    def identity(self) -> pw.Field:
        return self.field(self.columns[0])


@dataclass(frozen=True)
class BlobKind:
    """One legacy blob kind: its legacy table, its relational tables, and both directions."""

    legacy: LegacyTable
    tables: tuple[TableMap, ...]  # the root first, then children (parents before their children)
    to_rows: Callable[[LegacyRow, str], Bundle]  # raises codec.UnreadableBlob
    from_rows: Callable[[Bundle], LegacyRow]  # raises errors.RebuildError

    @property
    def root(self) -> TableMap:
        return self.tables[0]


# --- writing ----------------------------------------------------------------------------------


_STATEMENTS: WeakKeyDictionary[pw.Database, dict[Hashable, str]] = WeakKeyDictionary()


def statement(database: pw.Database, key: Hashable, build: Callable[[], pw.Query]) -> str:
    """The SQL of a query peewee builds, made once per database and key, then reused.

    Building a query costs more than running a small one; the hot paths (a row's lookup, a
    checkpoint save) run the same few statements with new parameters each time.
    """
    cached = _STATEMENTS.setdefault(database, {})
    if key not in cached:
        cached[key] = database.get_sql_context().sql(build()).query()[0]
    return cached[key]


def insert_sql(database: pw.Database, table: TableMap) -> str:
    """The INSERT for a table's columns, in the TableMap's column order."""

    def build() -> pw.Query:
        # insert_many keeps the given column order (a dict insert would reorder to the model's).
        query = table.model.insert_many([(None,) * len(table.fields)], fields=table.fields)
        return query.returning() if database.returning_clause else query  # executemany returns nothing

    return statement(database, ("insert", table), build)


def insert_rows(database: pw.Database, table: TableMap, rows: Sequence[Row]) -> None:
    if rows:
        engines.bulk_insert(database, insert_sql(database, table), rows)


def delete_identities(database: pw.Database, kind: BlobKind, rowids: Sequence[int]) -> None:
    """Remove every relational row of these legacy rows, children first."""
    if not rowids:
        return
    ids = list(rowids)
    for table in reversed(kind.tables):
        build = lambda t=table: t.model.delete().where(t.identity.in_(ids))  # noqa: E731
        sql = statement(database, ("delete", table, len(ids)), build)
        database.execute_sql(sql, ids)
    sql = statement(
        database,
        ("delete quarantine", kind.legacy.name, len(ids)),
        lambda: quarantine_of(kind).where(Quarantine.source_rowid.in_(ids)),
    )
    database.execute_sql(sql, [kind.legacy.name, *ids])


def quarantine_of(kind: BlobKind) -> pw.Delete:
    return Quarantine.delete().where(Quarantine.legacy_table == kind.legacy.name)


# --- quarantine -------------------------------------------------------------------------------


QUARANTINE_COLUMNS = ("legacy_table", "source_rowid", "source_digest", "row_key", "reason", "cells")
QUARANTINE = TableMap(Quarantine, QUARANTINE_COLUMNS)


def quarantine_row(kind: BlobKind, row: LegacyRow, digest: str, reason: str) -> Row:
    cells = json.dumps([list(encode_cell(cell)) for cell in row[1:]])
    key = stored_key(display_key(kind.legacy.key_of(row)))  # a key holding NUL is stored escaped
    return (kind.legacy.name, row[0], digest, key, reason, cells)


def unquarantine_row(source_rowid: int, cells: str) -> LegacyRow:
    decoded: list[LegacyCell] = [decode_cell(tag, text) for tag, text in json.loads(cells)]
    return (source_rowid, *decoded)


def write_legacy_rows(
    database: pw.Database, kind: BlobKind, rows: Sequence[tuple[LegacyRow, str]], *, replace: Sequence[int] = ()
) -> tuple[int, int]:
    """Map (legacy row, digest) pairs to relational rows and write them in one transaction.

    A row that cannot be read goes to quarantine, never lost and never fatal. `replace` names
    rowids whose previous relational rows are removed first. Returns (migrated, quarantined).
    """
    tables: list[list[Row]] = [[] for _ in kind.tables]
    quarantined: list[Row] = []
    for row, digest in rows:
        try:
            bundle = kind.to_rows(row, digest)
        except UnreadableBlob as exc:
            quarantined.append(quarantine_row(kind, row, digest, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad row must never stop a backfill
            quarantined.append(quarantine_row(kind, row, digest, f"cannot be mapped: {exc!r}"))
            continue
        for produced, bucket in zip(bundle, tables, strict=True):
            bucket.extend(produced)
    with database.atomic():
        if replace:
            delete_identities(database, kind, replace)
        for table, bucket in zip(kind.tables, tables, strict=True):
            insert_rows(database, table, bucket)
        insert_rows(database, QUARANTINE, quarantined)
    return len(rows) - len(quarantined), len(quarantined)


# --- reading ----------------------------------------------------------------------------------


def _select(table: TableMap, where: pw.Expression, *, limit: int | None = None) -> pw.Select:
    order = [table.identity, *(table.field(c) for c in table.order)]
    query = table.model.select(*table.fields).where(where).order_by(*order)
    return query.limit(limit) if limit else query


def _fetch(database: pw.Database, query: pw.Select) -> list[Row]:
    sql, params = database.get_sql_context().sql(query).query()
    return database.execute_sql(sql, params).fetchall()


def read_bundles(database: pw.Database, kind: BlobKind, batch_size: int) -> Iterator[tuple[int, Bundle]]:
    """(legacy rowid, bundle) of every migrated row, in rowid order, a batch at a time."""
    yield from read_bundles_between(database, kind, batch_size, None, None)


def _rowid_range(identity: pw.Field, low: int | None, high: int | None) -> pw.Expression:
    """Legacy rowids in [low, high); None leaves that side open."""
    condition: pw.Expression = pw.SQL("1 = 1")
    if low is not None:
        condition &= identity >= low
    if high is not None:
        condition &= identity < high
    return condition


def read_bundles_between(
    database: pw.Database, kind: BlobKind, batch_size: int, low: int | None, high: int | None
) -> Iterator[tuple[int, Bundle]]:
    """`read_bundles` restricted to legacy rowids in [low, high), so one range is read on its own."""
    root = kind.root
    in_range = _rowid_range(root.identity, low, high)
    after: int | None = None
    limit = min(batch_size, FIRST_BUNDLE_BATCH)
    while True:
        where = in_range & (root.identity > after) if after is not None else in_range
        roots = _fetch(database, _select(root, where, limit=limit))
        if not roots:
            return
        first, last = roots[0][0], roots[-1][0]
        children = [_fetch(database, _select(child, child.identity.between(first, last))) for child in kind.tables[1:]]
        groups = [{key: list(rows) for key, rows in groupby(fetched, key=itemgetter(0))} for fetched in children]
        for root_row in roots:
            rowid = root_row[0]
            yield rowid, ([root_row], *(group.get(rowid, []) for group in groups))
        after = last
        fetched_rows = len(roots) + sum(len(rows) for rows in children)
        limit = max(1, min(batch_size, len(roots) * MAX_BATCH_RELATIONAL_ROWS // fetched_rows))
        del roots, children, groups  # before the next fetch, so two batches are never held at once


FIRST_BUNDLE_BATCH = 100
MAX_BATCH_RELATIONAL_ROWS = 20_000
"""Bundles are read by legacy rowid range, and one legacy row may own hundreds of child rows (a
checkpoint's queue items and completions). The first range is small; each next one is sized
from the rows per legacy row just seen, so a batch holds about this many relational rows."""


def read_bundle(database: pw.Database, kind: BlobKind, column: pw.Field, value: Any) -> Bundle | None:
    """The bundle of the one legacy row whose root row has `column == value` (an indexed,
    unique column: the id, or a session key's digest), in one query per table."""
    root_sql = statement(database, ("bundle", kind.root, column), lambda: _select(kind.root, column == value, limit=1))
    roots = database.execute_sql(root_sql, [value, 1]).fetchall()  # the value, then LIMIT 1
    if not roots:
        return None
    rowid = roots[0][0]
    children = []
    for child in kind.tables[1:]:
        sql = statement(database, ("children", child), lambda c=child: _select(c, c.identity == rowid))
        children.append(database.execute_sql(sql, [rowid]).fetchall())
    return (roots, *children)


def read_quarantine(database: pw.Database, kind: BlobKind, batch_size: int) -> Iterator[tuple[int, Quarantine]]:
    yield from read_quarantine_between(database, kind, batch_size, None, None)


def read_quarantine_between(
    database: pw.Database, kind: BlobKind, batch_size: int, low: int | None, high: int | None
) -> Iterator[tuple[int, Quarantine]]:
    """`read_quarantine` restricted to legacy rowids in [low, high)."""
    in_range = _rowid_range(Quarantine.source_rowid, low, high)
    query = (
        Quarantine.select()
        .where((Quarantine.legacy_table == kind.legacy.name) & in_range)
        .order_by(Quarantine.source_rowid)
    )
    for record in query.iterator():
        yield record.source_rowid, record


def rebuilt_rows(database: pw.Database, kind: BlobKind, batch_size: int) -> Iterator[tuple[int, LegacyRow | Exception]]:
    """Every legacy row rebuilt from the target, quarantined rows included, in rowid order.

    A row that cannot be rebuilt comes back as its exception, so one damaged row is reported
    without hiding the rest.
    """
    return rebuilt_rows_between(database, kind, batch_size, None, None)


def rebuilt_rows_between(
    database: pw.Database, kind: BlobKind, batch_size: int, low: int | None, high: int | None
) -> Iterator[tuple[int, LegacyRow | Exception]]:
    """`rebuilt_rows` restricted to legacy rowids in [low, high); None leaves that side open."""

    def rebuild(item: tuple[int, Bundle]) -> tuple[int, LegacyRow | Exception]:
        rowid, bundle = item
        try:
            return rowid, kind.from_rows(bundle)
        except Exception as exc:  # noqa: BLE001 - reported per row by the caller
            return rowid, exc

    def restore(item: tuple[int, Quarantine]) -> tuple[int, LegacyRow | Exception]:
        rowid, record = item
        try:
            return rowid, unquarantine_row(rowid, record.cells)
        except Exception as exc:  # noqa: BLE001
            return rowid, exc

    migrated = map(rebuild, read_bundles_between(database, kind, batch_size, low, high))
    quarantined = map(restore, read_quarantine_between(database, kind, batch_size, low, high))
    return heapq.merge(migrated, quarantined, key=itemgetter(0))


def orphans(database: pw.Database, kind: BlobKind, limit: int = 20) -> list[str]:
    """Child rows whose legacy row is gone: the target must hold nothing a source row lacks.

    NOT EXISTS probes the parent's primary key per child row; NOT IN would first gather every
    parent id into a temporary structure, which grows with the table (and so would memory).
    """
    found: list[str] = []
    root = kind.root
    for child in kind.tables[1:]:
        parent = root.model.select(pw.SQL("1")).where(root.identity == child.identity)
        query = child.model.select(child.identity).where(~pw.fn.EXISTS(parent)).distinct().limit(limit)
        for (rowid,) in _fetch(database, query):
            found.append(f"{child.model._meta.table_name} rows for missing {kind.legacy.name} rowid {rowid}")
    return found
