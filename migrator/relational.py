"""Bulk SQL generated from the peewee models, and the shape both blob kinds share.

The ORM builds every statement, but rows travel as plain tuples through `executemany` and raw
cursors: creating a model instance per row would cost more than the rest of a row's work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import InitVar, dataclass, field
from functools import cached_property, partial
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol

import peewee as pw

from migrator import engines
from migrator.codec import LegacyCell, UnreadableBlob, decode_cell, encode_cell, stored_key
from migrator.errors import RebuildError
from migrator.legacy import CELLS, ROWID, LegacyRow, LegacyTable, display_key
from migrator.models import Quarantine
from migrator.peewee_parts import exception_wrapper
from migrator.records import RecordSpec
from migrator.rows import RECORD, offsets, row_builder

Row = tuple[Any, ...]
Bundle = tuple[list[Row], ...]
"""The relational rows of one legacy row: the root table's row, then each child table's rows."""
ROOT = 0  # a Bundle's (and a BlobKind's) first table is the root table
IDENTITY = 0  # every TableMap's first column: the root's legacy rowid, or a child's parent key (`BlobKind.parent_key`)


@dataclass(frozen=True, eq=False)  # one object per table: compared and hashed by identity, in C
class TableMap:
    """Which columns of a model a blob kind fills, named once, in tuple order.

    `columns` lists the column names, with a `RecordSpec` standing for the run of columns its
    JSON object's record fills. Rows are built by name (`build(**cells)`, the record's columns as
    `record=...`) and read by name (`row[TABLE.at.layout]`, `row[TABLE.record]`), so this list
    is the only place the order lives. The first column is always the identity: the root's
    legacy rowid, or a child's reference to its root's primary key (the legacy rowid too, unless
    the root has an id of its own: `BlobKind.own_ids`), and `order` gives the order children
    come back in.

    A TableMap names every column of its model: the mapping states the value of each one (a plan
    column that legacy rows never fill is mapped to NULL), so that the forward check can hold
    every cell to it. The only exceptions are listed in `unmapped`, each with the reason no read,
    query or rebuild depends on it.
    """

    # Any, not type[pw.Model]: peewee's stubs know no model's fields, and the code reads them
    # (`root.model.source_digest`) for every kind alike.
    model: type[Any]
    declared: InitVar[tuple[str | RecordSpec, ...]]  # the columns, a record's as its RecordSpec
    order: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    key: tuple[str, ...] = ()  # the columns that name one row; the model's primary key by default
    columns: tuple[str, ...] = field(init=False)  # every column's name, in row order
    record: slice = field(init=False, repr=False)  # where the RecordSpec's columns sit in a row
    at: Any = field(init=False, repr=False)  # each column's offset by name
    build: Callable[..., Row] = field(init=False, repr=False, compare=False)

    def __post_init__(self, declared: tuple[str | RecordSpec, ...]) -> None:
        names = tuple(name for part in declared for name in (part.columns if isinstance(part, RecordSpec) else (part,)))
        object.__setattr__(self, "columns", names)
        known = self.model._meta.columns
        unknown = [c for c in (*self.columns, *self.unmapped) if c not in known]
        if unknown:
            raise TypeError(f"{self.model.__name__} has no column(s) {unknown}")
        forgotten = [c for c in known if c not in self.columns and c not in self.unmapped]
        if forgotten:
            raise TypeError(f"{self.model.__name__} column(s) {forgotten} are neither mapped nor declared unmapped")
        if not self.key:
            object.__setattr__(self, "key", _primary_key_columns(self.model))
        parts = [(RECORD, part.width) if isinstance(part, RecordSpec) else part for part in declared]
        specs = [part for part in declared if isinstance(part, RecordSpec)]
        start = names.index(specs[0].columns[0]) if specs and specs[0].columns else len(names)
        object.__setattr__(self, "record", slice(start, start + (specs[0].width if specs else 0)))
        object.__setattr__(self, "at", offsets(self.name, names))
        object.__setattr__(self, "build", row_builder(self.name, parts))

    @property
    def name(self) -> str:
        return self.model._meta.table_name

    def field(self, column: str) -> pw.Field:
        return self.model._meta.columns[column]

    @property
    def fields(self) -> list[pw.Field]:
        return [self.field(c) for c in self.columns]

    @property
    def identity(self) -> pw.Field:
        return self.field(self.columns[0])

    def position(self, column: str) -> int:
        return self.columns.index(column)


def _primary_key_columns(model: type[pw.Model]) -> tuple[str, ...]:
    primary_key = model._meta.primary_key
    if isinstance(primary_key, pw.CompositeKey):
        return tuple(model._meta.fields[name].column_name for name in primary_key.field_names)
    assert primary_key is not False, f"{model.__name__} has no primary key"  # every mapped model has one
    return (primary_key.column_name,)


@dataclass(frozen=True)
class BlobKind:
    """One legacy blob kind: its legacy table, its relational tables, and both directions."""

    legacy: LegacyTable
    tables: tuple[TableMap, ...]  # the root first, then children (parents before their children)
    to_rows: Callable[[LegacyRow, str], Bundle]  # raises codec.UnreadableBlob
    from_rows: Callable[[Bundle], LegacyRow]  # raises errors.RebuildError

    @property
    def root(self) -> TableMap:
        return self.tables[ROOT]

    @property
    def children(self) -> tuple[TableMap, ...]:
        return self.tables[ROOT + 1 :]

    # Worked out once per kind (a frozen dataclass still takes a cached_property): lookups and
    # the forward check ask for them on every row.
    @cached_property
    def parent_key(self) -> pw.Field:
        """The root's column that its children's first column holds: its primary key."""
        return self.root.field(self.root.key[0])

    @cached_property
    def parent_at(self) -> int:
        """Where a root row holds that key."""
        return self.root.position(self.root.key[0])

    @cached_property
    def own_ids(self) -> bool:
        """Whether root rows have an id of their own apart from the legacy rowid (sessions, whose
        rowid the daemon changes on every save), so that children are found through their root."""
        return self.parent_key is not self.root.identity


def with_parent_key(kind: BlobKind, tables: list[list[Row]], keys: dict[Any, Any]) -> list[list[Row]]:
    """Rows by table with each root's id, and its children's reference to it, changed as `keys`
    says (old id -> new id); rows of other ids are left as they are."""
    if not keys:
        return tables
    at = kind.parent_at
    roots = [(*row[:at], keys[row[at]], *row[at + 1 :]) if row[at] in keys else row for row in tables[ROOT]]
    children = [
        [(keys[row[IDENTITY]], *row[IDENTITY + 1 :]) if row[IDENTITY] in keys else row for row in rows]
        for rows in tables[ROOT + 1 :]
    ]
    return [roots, *children]


# --- writing ----------------------------------------------------------------------------------


_STATEMENTS = "_ksi_statements"  # the attribute of a database that holds its statement cache


def statement(database: pw.Database, key: Hashable, build: Callable[[], pw.Query]) -> str:
    """The SQL of a query peewee builds, made once per database and key, then reused.

    Building a query costs more than running a small one; the hot paths (a row's lookup, a
    checkpoint save) run the same few statements with new parameters each time. The cache lives
    on the database object, so it goes with it, and finding it costs one attribute lookup (a
    WeakKeyDictionary made a weak reference on every call).
    """
    cached: dict[Hashable, str] | None = getattr(database, _STATEMENTS, None)
    if cached is None:
        cached = {}
        setattr(database, _STATEMENTS, cached)
    sql = cached.get(key)
    if sql is None:
        sql = cached[key] = database.get_sql_context().sql(build()).query()[0]
    return sql


def insert_sql(database: pw.Database, table: TableMap) -> str:
    """The INSERT for a table's columns, in the TableMap's column order."""

    def build() -> pw.Query:
        # insert_many keeps the given column order (a dict insert would reorder to the model's).
        query = table.model.insert_many([(None,) * len(table.fields)], fields=table.fields)
        return query.returning() if database.returning_clause else query  # executemany returns nothing

    return statement(database, ("insert", table), build)


def insert_rows(database: pw.Database, table: TableMap, rows: Sequence[Row]) -> None:
    if rows:
        with exception_wrapper:  # the driver's errors as peewee's, as every other statement raises them
            engines.engine(database).bulk_insert(insert_sql(database, table), rows, table.fields)


def delete_identities(database: pw.Database, kind: BlobKind, rowids: Sequence[int]) -> None:
    """Remove every relational row of these legacy rows, children first."""
    if not rowids:
        return
    ids = list(rowids)
    parents = _parents_of_rowids(database, kind, ids) if kind.own_ids else ids
    for table in reversed(kind.tables):
        keys = ids if table is kind.root else parents
        if keys:
            build = lambda t=table, k=keys: t.model.delete().where(t.identity.in_(k))  # noqa: E731
            database.execute_sql(statement(database, ("delete", table, len(keys)), build), keys)
    sql = statement(
        database,
        ("delete quarantine", kind.legacy.name, len(ids)),
        lambda: quarantine_of(kind).where(Quarantine.source_rowid.in_(ids)),
    )
    database.execute_sql(sql, [kind.legacy.name, *ids])


def _parents_of_rowids(database: pw.Database, kind: BlobKind, ids: list[int]) -> list[int]:
    """The ids that children of these legacy rowids hold: those of the root rows at the rowids,
    and each rowid that no root row holds as its id, as children a root row no longer holds may
    (what a new row written there is given first: `free_parent_keys`), so that they never trip
    the new row's keys. Read first, so that each delete is a plain list on every engine."""
    root, key = kind.root, kind.parent_key

    def held(column: pw.Field) -> set[int]:
        sql = statement(database, ("ids", column, len(ids)), lambda: root.model.select(key).where(column.in_(ids)))
        return {value for (value,) in database.execute_sql(sql, ids).fetchall()}

    return sorted(held(root.identity) | (set(ids) - held(key)))


def free_parent_keys(database: pw.Database, kind: BlobKind, tables: list[list[Row]]) -> list[list[Row]]:
    """Root rows about to be written with an id another root row holds (a session that moved
    away from this rowid keeps its id) are given fresh ids, above every id in use, and so are
    their children's references. Called after the rows' own old rows are deleted."""
    if not kind.own_ids or not tables[ROOT]:
        return tables
    at = kind.parent_at
    wanted = [row[at] for row in tables[ROOT]]
    key = kind.parent_key
    build = lambda: kind.root.model.select(key).where(key.in_(wanted))  # noqa: E731
    sql = statement(database, ("ids taken", kind.root, len(wanted)), build)
    taken = [value for (value,) in database.execute_sql(sql, wanted).fetchall()]
    if not taken:
        return tables
    highest = [kind.root.model.select(pw.fn.MAX(key)).scalar(database) or 0, max(wanted)]
    highest += [child.model.select(pw.fn.MAX(child.identity)).scalar(database) or 0 for child in kind.children]
    fresh = range(max(highest) + 1, max(highest) + 1 + len(taken))
    return with_parent_key(kind, tables, dict(zip(sorted(taken), fresh, strict=True)))


def quarantine_of(kind: BlobKind) -> pw.Delete:
    return Quarantine.delete().where(Quarantine.legacy_table == kind.legacy.name)


# --- quarantine -------------------------------------------------------------------------------


QUARANTINE = TableMap(
    Quarantine,
    ("legacy_table", "source_rowid", "source_digest", "row_key", "reason", "cells"),
    # The surrogate id only numbers rows for the database: every read, query and rebuild finds a
    # quarantined row by (legacy_table, source_rowid), which is its key here.
    unmapped=("id",),
    key=("legacy_table", "source_rowid"),
)


def quarantine_row(kind: BlobKind, row: LegacyRow, digest: str, reason: str) -> Row:
    cells = json.dumps([list(encode_cell(cell)) for cell in row[CELLS]])
    key = stored_key(display_key(kind.legacy.key_of(row)))  # a key holding NUL is stored escaped
    return QUARANTINE.build(
        legacy_table=kind.legacy.name,
        source_rowid=row[ROWID],
        source_digest=digest,
        row_key=key,
        reason=reason,
        cells=cells,
    )


def unquarantine_row(source_rowid: int, cells: str) -> LegacyRow:
    decoded: list[LegacyCell] = [decode_cell(tag, text) for tag, text in json.loads(cells)]
    return (source_rowid, *decoded)


@dataclass(frozen=True)
class Mapped:
    """What the mapping makes of one legacy row: its relational rows, or its quarantine row."""

    bundle: Bundle | None
    quarantined: Row | None


def map_legacy_row(kind: BlobKind, row: LegacyRow, digest: str) -> Mapped:
    """The relational rows of a legacy row; a row that cannot be read goes to quarantine, never
    lost and never fatal. The backfill writes this, and the forward check compares with it."""
    try:
        return Mapped(kind.to_rows(row, digest), None)
    except UnreadableBlob as exc:
        return Mapped(None, quarantine_row(kind, row, digest, str(exc)))
    except Exception as exc:  # noqa: BLE001 - one bad row must never stop a backfill
        return Mapped(None, quarantine_row(kind, row, digest, f"cannot be mapped: {exc!r}"))


Pairs = Sequence[tuple[LegacyRow, str]]  # (legacy row, digest of its cells)
MappedRows = tuple[list[list[Row]], list[Row]]  # relational rows by table, in the kind's order; quarantine rows


class CopiedRows(Protocol):
    """Relational rows a worker put where the target copies them from (`staging.StagedTables`)."""

    @property
    def counts(self) -> list[int]:
        """How many rows each table of the kind gets, in the kind's order."""

    def insert_into(self, database: pw.Database, tables: Sequence[TableMap]) -> None: ...


WritableRows = tuple[list[list[Row]] | CopiedRows, list[Row]]  # MappedRows, or the same rows staged


def map_legacy_rows(kind: BlobKind, rows: Pairs) -> MappedRows:
    """The relational rows of (legacy row, digest) pairs, gathered by table, in the rows' order."""
    tables: list[list[Row]] = [[] for _ in kind.tables]
    quarantined: list[Row] = []
    for row, digest in rows:
        mapped = map_legacy_row(kind, row, digest)
        if mapped.bundle is None:
            quarantined.append(mapped.quarantined)  # type: ignore[arg-type]
            continue
        for produced, bucket in zip(mapped.bundle, tables, strict=True):
            bucket.extend(produced)
    return tables, quarantined


def write_legacy_rows(
    database: pw.Database,
    kind: BlobKind,
    rows: Pairs,
    *,
    replace: Sequence[int] = (),
    mapped: WritableRows | None = None,
) -> tuple[int, int, int]:
    """Map (legacy row, digest) pairs to relational rows and write them in one transaction.

    `replace` names rowids whose previous relational rows (and quarantine rows) are removed first.
    `mapped` is `map_legacy_rows` of these rows made beforehand (by a worker process), or the
    same rows staged for a copy (`staging`), which only a load into empty tables uses.
    Returns (migrated, quarantined, child rows written)."""
    tables, quarantined = map_legacy_rows(kind, rows) if mapped is None else mapped
    # It reads before it writes (the ids in use: `delete_identities`, `free_parent_keys`), so
    # SQLite takes the write lock first, as a read snapshot cannot become a write once another
    # connection has committed; inside a caller's transaction, this is a savepoint.
    with engines.engine(database).write_transaction():
        if replace:
            delete_identities(database, kind, replace)
        if isinstance(tables, list):
            if not engines.engine(database).loading_empty(kind.root.model):  # an empty table holds no id
                tables = free_parent_keys(database, kind, tables)
            for table, bucket in zip(kind.tables, tables, strict=True):
                insert_rows(database, table, bucket)
            counts = [len(bucket) for bucket in tables]
        else:  # staged: only for tables this run loads empty, where no id is taken yet
            tables.insert_into(database, kind.tables)
            counts = tables.counts
        insert_rows(database, QUARANTINE, quarantined)
    return len(rows) - len(quarantined), len(quarantined), sum(counts[ROOT + 1 :])


# --- reading ----------------------------------------------------------------------------------


def _select(table: TableMap, where: pw.ColumnBase, *, limit: int | None = None) -> pw.Select:
    order = [table.identity, *(table.field(c) for c in table.order)]
    query = table.model.select(*table.fields).where(where).order_by(*order)
    return query.limit(limit) if limit else query


def held_rows(database: pw.Database, kind: BlobKind) -> tuple[int, int]:
    """The root rows and the quarantined rows a target holds for one legacy table: one each per
    legacy row it rebuilds."""
    quarantined = Quarantine.select().where(Quarantine.legacy_table == kind.legacy.name)
    return kind.root.model.select().count(database), quarantined.count(database)


def fetch(database: pw.Database, query: pw.Select) -> list[Row]:
    """A query's rows as the driver returns them: plain tuples, no model instances."""
    sql, params = database.get_sql_context().sql(query).query()
    return database.execute_sql(sql, params).fetchall()


def _rowid_range(identity: pw.Field, low: int | None, high: int | None) -> pw.ColumnBase:
    """Legacy rowids in [low, high); None leaves that side open."""
    condition: pw.ColumnBase = pw.SQL("1 = 1")
    if low is not None:
        condition &= identity >= low
    if high is not None:
        condition &= identity < high
    return condition


@dataclass
class TargetRecord:
    """Everything the target holds for one legacy rowid: the rows of each of the kind's tables
    (the root's list is empty when there is no root row; children may still be there, orphaned),
    and the quarantine row, if any."""

    rowid: int
    tables: list[list[Row]]
    quarantined: list[Row]

    @property
    def root(self) -> Row | None:
        return next(iter(self.tables[ROOT]), None)

    def rebuild(self, kind: BlobKind) -> LegacyRow:
        """The legacy row these rows stand for, as the store's reads serve it: the relational rows
        when there is a root row, else the quarantined cells (raises when neither can be read)."""
        if self.root is not None:
            return kind.from_rows(tuple(self.tables))
        if self.quarantined:
            quarantined = next(iter(self.quarantined))
            return unquarantine_row(self.rowid, quarantined[QUARANTINE.at.cells])
        raise RebuildError(f"{kind.legacy.name} rowid {self.rowid} has child rows but no {kind.root.name} row")


FIRST_BUNDLE_BATCH = 100
MAX_BATCH_RELATIONAL_ROWS = 20_000
"""Records are read by legacy rowid range, and one legacy row may own hundreds of child rows (a
checkpoint's queue items and completions). The first range is small; each next one is sized
from the rows per legacy row just seen, so a batch holds about this many relational rows."""


def target_records(
    database: pw.Database, kind: BlobKind, batch_size: int, low: int | None = None, high: int | None = None
) -> Iterator[TargetRecord]:
    """Every rowid in [low, high) the target holds anything for, in rowid order, with all of it:
    root rows, child rows (orphans included) and quarantine rows, every column of each.

    Each batch is a window (after, upper] of rowids: up to `limit` root rows and `limit`
    quarantine rows decide where it ends, and every child row inside it is read with them, so a
    child whose root row is gone is seen too.
    """
    root = kind.root
    quarantine_rowid = Quarantine.source_rowid
    of_kind = Quarantine.legacy_table == kind.legacy.name
    after: int | None = None
    limit = min(batch_size, FIRST_BUNDLE_BATCH)
    while True:
        roots = fetch(database, _select(root, _window(root.identity, low, high, after, None), limit=limit))
        quarantined = fetch(
            database,
            QUARANTINE.model.select(*QUARANTINE.fields)
            .where(of_kind & _window(quarantine_rowid, low, high, after, None))
            .order_by(quarantine_rowid)
            .limit(limit),
        )
        at = QUARANTINE.at.source_rowid
        full = [rows[-1][index] for rows, index in ((roots, IDENTITY), (quarantined, at)) if len(rows) == limit]
        upper = min(full) if full else None  # None: this window reaches `high`
        if upper is not None:
            roots = [row for row in roots if row[IDENTITY] <= upper]
            quarantined = [row for row in quarantined if row[at] <= upper]
        children = [_children_in(database, kind, child, _window_of(low, high, after, upper)) for child in kind.children]
        yield from _records(roots, children, quarantined)
        if upper is None:
            return
        after = upper
        fetched_rows = len(roots) + len(quarantined) + sum(len(rows) for group in children for rows in group.values())
        limit = max(1, min(batch_size, (len(roots) + len(quarantined)) * MAX_BATCH_RELATIONAL_ROWS // fetched_rows))
        del roots, children, quarantined  # before the next fetch, so two batches are never held at once


def _window(
    identity: pw.Field, low: int | None, high: int | None, after: int | None, upper: int | None
) -> pw.ColumnBase:
    """Rowids in [low, high) and in (after, upper]; None leaves a bound open."""
    condition = _rowid_range(identity, low, high)
    if after is not None:
        condition &= identity > after
    if upper is not None:
        condition &= identity <= upper
    return condition


def _window_of(
    low: int | None, high: int | None, after: int | None, upper: int | None
) -> Callable[[pw.Field], pw.ColumnBase]:
    return lambda identity: _window(identity, low, high, after, upper)


def _children_in(
    database: pw.Database, kind: BlobKind, child: TableMap, window: Callable[[pw.Field], pw.ColumnBase]
) -> dict[int, list[Row]]:
    """A child table's rows of the legacy rowids in a window, by legacy rowid. Children that hold
    the legacy rowid are read by it, orphans included; children that hold their root's own id
    are read through their root (an orphan of those is found by `orphans`, as it has no rowid)."""
    if not kind.own_ids:
        return _by_identity(fetch(database, _select(child, window(child.identity))), IDENTITY)
    rowid = kind.root.identity
    query = (
        child.model.select(*child.fields, rowid)
        .join(kind.root.model, on=(kind.parent_key == child.identity))
        .where(window(rowid))
        .order_by(rowid, *(child.field(c) for c in child.order))
    )
    return {key: [row[:-1] for row in group] for key, group in groupby(fetch(database, query), key=itemgetter(-1))}


def _records(roots: list[Row], children: list[dict[int, list[Row]]], quarantined: list[Row]) -> Iterator[TargetRecord]:
    groups = [
        _by_identity(roots, IDENTITY),
        *children,
        _by_identity(quarantined, QUARANTINE.at.source_rowid),
    ]
    rowids = sorted(set().union(*groups))
    for rowid in rowids:
        tables = [group.get(rowid, []) for group in groups[:-1]]
        yield TargetRecord(rowid, tables, groups[-1].get(rowid, []))


def _by_identity(rows: list[Row], index: int) -> dict[int, list[Row]]:
    return {key: list(group) for key, group in groupby(rows, key=itemgetter(index))}


def _children_of(child: TableMap, rowid: int) -> pw.Query:
    return _select(child, child.identity == rowid)


def read_bundle(database: pw.Database, kind: BlobKind, column: pw.Field, value: Any) -> Bundle | None:
    """The bundle of the one legacy row whose root row has `column == value` (an indexed,
    unique column: the id, or a session key's digest), in one query per table."""
    # Keyed by the column's name: a peewee field hashes in Python (`(model, name)`), and the
    # column is always one of the root table's.
    root_sql = statement(
        database, ("bundle", kind.root, column.name), lambda: _select(kind.root, column == value, limit=1)
    )
    roots = database.execute_sql(root_sql, [value, 1]).fetchall()  # the value, then LIMIT 1
    if not roots:
        return None
    (root,) = roots
    parent = root[kind.parent_at]  # the legacy rowid, or the root's own id
    children = []
    for child in kind.children:
        sql = statement(database, ("children", child), partial(_children_of, child, parent))
        children.append(database.execute_sql(sql, [parent]).fetchall())
    return (roots, *children)


def rebuilt_rows(
    database: pw.Database, kind: BlobKind, batch_size: int, low: int | None = None, high: int | None = None
) -> Iterator[tuple[int, LegacyRow | Exception]]:
    """Every legacy row in [low, high) rebuilt from the target, quarantined rows included, in
    rowid order. A row that cannot be rebuilt comes back as its exception, so one damaged row is
    reported without hiding the rest."""
    for record in target_records(database, kind, batch_size, low, high):
        try:
            yield record.rowid, record.rebuild(kind)
        except Exception as exc:  # noqa: BLE001 - reported per row by the caller
            yield record.rowid, exc
