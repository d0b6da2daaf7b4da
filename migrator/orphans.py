"""Child rows whose legacy row is gone: the target must hold nothing a source row lacks.
`orphans` names them (verify, the gate); `delete_orphans` removes them (a `--recheck` repair)."""

from __future__ import annotations

import peewee as pw

from migrator.relational import BlobKind, TableMap, fetch


def orphans(database: pw.Database, kind: BlobKind, limit: int = 20) -> list[tuple[str, int]]:
    """(table, parent key) of child rows whose legacy row is gone: the target must hold nothing a
    source row lacks. The parent key is the legacy rowid, or the root's own id where the kind has
    one (`BlobKind.own_ids`: a session's), which no longer names a rowid once its root is gone.

    NOT EXISTS probes the parent's primary key per child row; NOT IN would first gather every
    parent id into a temporary structure, which grows with the table (and so would memory).
    """
    found: list[tuple[str, int]] = []
    for child in kind.children:
        query = child.model.select(child.identity).where(_orphaned(kind, child)).distinct().limit(limit)
        found += [(child.name, rowid) for (rowid,) in fetch(database, query)]
    return found


def delete_orphans(database: pw.Database, kind: BlobKind) -> int:
    """Remove every child row whose legacy row is gone (a repair): children first, as they cascade."""
    removed = 0
    with database.atomic():
        for child in reversed(kind.children):
            removed += child.model.delete().where(_orphaned(kind, child)).execute(database)
    return removed


def _orphaned(kind: BlobKind, child: TableMap) -> pw.ColumnBase:
    """The child row's legacy row is gone: no root row holds its parent key."""
    parent = kind.root.model.select(pw.SQL("1")).where(kind.parent_key == child.identity)
    return ~pw.fn.EXISTS(parent)
