"""Catch-up by identity for sessions: a session the daemon saved again unchanged keeps its rows.

The daemon saves every cached session with `INSERT OR REPLACE`, which deletes the row and inserts
it again under a new rowid, changed or not. Matched by rowid alone, every such session would look
new and be rewritten with all its tools. A session is known by its key: when the target holds the
key under another rowid with the same digest, the session is *moved*: its `legacy_rowid` is
changed in place to the new rowid, and nothing else, its tools included, is mapped, written or
updated (they reference the session's own id, which stays). When the target holds the key with
other content, that old rowid is *displaced*: the write replaces it, so the key's unique index
never sees the session twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from weakref import WeakKeyDictionary

import peewee as pw

from migrator.codec import key_digest, stored_key
from migrator.legacy import ROWID, LegacyRow
from migrator.models import McpSession
from migrator.relational import BlobKind, delete_identities, statement

Changed = tuple[LegacyRow, str]
"""A source row that must reach the target, with its digest."""


@dataclass(frozen=True)
class Move:
    """A source row the target holds unchanged under an older rowid."""

    row: LegacyRow
    digest: str
    old_rowid: int

    @property
    def new_rowid(self) -> int:
        return int(self.row[ROWID])


@dataclass
class KeyPlan:
    """What the keys say about a batch's changed session rows."""

    moves: list[Move]  # held unchanged under another rowid: moved in place
    rest: list[Changed]  # written as before
    displaced: dict[int, int]  # new rowid -> the other rowid the target holds its key under, with other content


def plan_by_key(database: pw.Database, kind: BlobKind, changed: Sequence[Changed], held: set[int]) -> KeyPlan:
    """Sort a batch's changed session rows by what the target holds under their keys. `held` are
    the rowids of the batch's range the target holds rows for: a row whose new rowid is taken is
    never moved there (the occupant's rows are replaced, as any rewrite does)."""
    keyed = {
        row[ROWID]: key_digest(stored_key(key)) for row, _ in changed if isinstance(key := kind.legacy.key_of(row), str)
    }
    found = _held_under_keys(database, list(keyed.values()))
    plan = KeyPlan([], [], {})
    for row, digest in changed:
        rowid = row[ROWID]
        old = found.get(keyed.get(rowid, ""))
        if old is None or old[0] == rowid:
            plan.rest.append((row, digest))
        elif old[1] == digest and rowid not in held:
            plan.moves.append(Move(row, digest, old[0]))
        else:
            plan.rest.append((row, digest))
            plan.displaced[rowid] = old[0]
    return plan


def _held_under_keys(database: pw.Database, digests: list[str]) -> dict[str, tuple[int, str]]:
    """key digest -> (rowid, source digest) of the target's sessions with these keys."""
    if not digests:
        return {}
    columns = (McpSession.session_key_digest, McpSession.legacy_rowid, McpSession.source_digest)
    sql = statement(  # built once per batch size: peewee takes longer to build an IN list than to run it
        database,
        ("sessions by key", len(digests)),
        lambda: McpSession.select(*columns).where(McpSession.session_key_digest.in_(digests)),
    )
    return {key: (rowid, digest) for key, rowid, digest in database.execute_sql(sql, digests).fetchall()}


def still_held(database: pw.Database, moves: Sequence[Move]) -> list[Move]:
    """The moves whose old rows the target still holds as planned, locked where the engine can
    (a dual write may have replaced the session since the plan was read)."""
    if not moves:
        return []
    old_ids = [move.old_rowid for move in moves]

    def build() -> pw.Query:
        rowid = McpSession.legacy_rowid
        query = McpSession.select(rowid, McpSession.source_digest).where(rowid.in_(old_ids))
        # SQLite's write transaction already holds the only write lock; a server locks the rows.
        return query.for_update() if database.for_update else query

    sql = statement(database, ("sessions to move", len(old_ids)), build)
    current: dict[int, str] = dict(database.execute_sql(sql, old_ids).fetchall())
    return [move for move in moves if current.get(move.old_rowid) == move.digest]


MOVES_A_STATEMENT = 250
"""Each move takes a few parameters in each statement; this many keep far under SQLite's limit."""


def apply_moves(database: pw.Database, kind: BlobKind, moves: Sequence[Move]) -> int:
    """Give each session its new rowid in place, inside the caller's transaction; returns the
    session rows moved. A session's tools reference its own id, which a move keeps
    (`models.McpSession`), so no tool row is written, mapped or updated: one UPDATE of the
    sessions' `legacy_rowid` for each `MOVES_A_STATEMENT` moves, after clearing what a failure
    may have left at the new rowids (the plan found none there)."""
    return sum(
        _move_chunk(database, kind, moves[start : start + MOVES_A_STATEMENT])
        for start in range(0, len(moves), MOVES_A_STATEMENT)
    )


def _move_chunk(database: pw.Database, kind: BlobKind, moves: Sequence[Move]) -> int:
    delete_identities(database, kind, [move.new_rowid for move in moves])
    sql, sources = _template(database, len(moves))
    cursor = database.execute_sql(sql, [_parameter(moves[index], part) for part, index in sources])
    return int(cursor.rowcount)


class _Sentinel(NamedTuple):
    old_rowid: int
    new_rowid: int


def _move(moves: Sequence[Move | _Sentinel]) -> pw.Query:
    """The new rowid of each session, set in one statement. No new rowid is a rowid the target
    holds (`plan_by_key`), so the unique index on it never sees one twice, row by row or not."""
    rowid = McpSession.legacy_rowid
    to_new = pw.Case(rowid, [(move.old_rowid, move.new_rowid) for move in moves])
    return McpSession.update(legacy_rowid=to_new).where(rowid.in_([move.old_rowid for move in moves]))


Source = tuple[str, int]
"""Where a parameter of the statement comes from: which value (old or new rowid) of which move."""

_TEMPLATES: WeakKeyDictionary[pw.Database, dict[int, tuple[str, list[Source]]]] = WeakKeyDictionary()


def _template(database: pw.Database, count: int) -> tuple[str, list[Source]]:
    """The statement's SQL for `count` moves, and where each of its parameters comes from.

    peewee takes longer to build a statement of hundreds of CASE branches than the database
    takes to run it, so it is built once per engine and size, from sentinel moves whose values
    each say what they stand for, then run with the real values in their places."""
    cached = _TEMPLATES.setdefault(database, {})
    if count not in cached:
        sentinels = [_Sentinel(index, count + index) for index in range(count)]
        sources: dict[object, Source] = {}
        for index, sentinel in enumerate(sentinels):
            sources |= {sentinel.old_rowid: ("old", index), sentinel.new_rowid: ("new", index)}
        sql, parameters = database.get_sql_context().sql(_move(sentinels)).query()
        cached[count] = (sql, [sources[value] for value in parameters])
    return cached[count]


def _parameter(move: Move, part: str) -> object:
    return move.old_rowid if part == "old" else move.new_rowid
