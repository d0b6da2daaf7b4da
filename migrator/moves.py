"""Catch-up by identity for sessions: a session the daemon saved again unchanged keeps its rows.

The daemon saves every cached session with `INSERT OR REPLACE`, which deletes the row and inserts
it again under a new rowid, changed or not. Matched by rowid alone, every such session would look
new and be rewritten with all its tools. A session is known by its key: when the target holds the
key under another rowid with the same digest, the session is *moved*, its relational identity
changed in place to the new rowid (and its tools pointed at it), and nothing is mapped or
rewritten. When the target holds the key with other content, that old rowid is *displaced*: the
write replaces it, so the key's unique index never sees the session twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from weakref import WeakKeyDictionary

import peewee as pw

from migrator.codec import key_digest, stored_key
from migrator.legacy import ROWID, LegacyRow
from migrator.models import McpSession, McpSessionTool
from migrator.relational import BlobKind, delete_identities, statement

Changed = tuple[LegacyRow, str]
"""A source row that must reach the target, with its digest."""


@dataclass(frozen=True)
class Move:
    """A source row the target holds unchanged under an older rowid."""

    row: LegacyRow
    digest: str
    old_rowid: int
    key_digest: str

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
            plan.moves.append(Move(row, digest, old[0], keyed[rowid]))
        else:
            plan.rest.append((row, digest))
            plan.displaced[rowid] = old[0]
    return plan


def _held_under_keys(database: pw.Database, digests: list[str]) -> dict[str, tuple[int, str]]:
    """key digest -> (rowid, source digest) of the target's sessions with these keys."""
    if not digests:
        return {}
    columns = (McpSession.session_key_digest, McpSession.id, McpSession.source_digest)
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
        query = McpSession.select(McpSession.id, McpSession.source_digest).where(McpSession.id.in_(old_ids))
        # SQLite's write transaction already holds the only write lock; a server locks the rows.
        return query.for_update() if database.for_update else query

    sql = statement(database, ("sessions to move", len(old_ids)), build)
    current: dict[int, str] = dict(database.execute_sql(sql, old_ids).fetchall())
    return [move for move in moves if current.get(move.old_rowid) == move.digest]


MOVES_A_STATEMENT = 250
"""Each move takes a few parameters in each statement; this many keep far under SQLite's limit."""


def apply_moves(database: pw.Database, kind: BlobKind, moves: Sequence[Move]) -> int:
    """Give each session its new rowid in place, inside the caller's transaction; returns the tool
    rows pointed at the new rowids (none is written or mapped again).

    The foreign key from tools to sessions is checked at once on every engine, so the session
    row is copied to its new rowid (under a placeholder key digest, the unique index still holding
    the old row), the tools are pointed at it, the old row is deleted, and the copy takes its
    key digest back: four statements for each `MOVES_A_STATEMENT` moves.
    """
    return sum(
        _move_chunk(database, kind, moves[start : start + MOVES_A_STATEMENT])
        for start in range(0, len(moves), MOVES_A_STATEMENT)
    )


def _move_chunk(database: pw.Database, kind: BlobKind, moves: Sequence[Move]) -> int:
    delete_identities(database, kind, [move.new_rowid for move in moves])  # child rows a failure left there
    tools = 0
    for name in STATEMENTS:
        sql, sources = _template(database, name, len(moves))
        cursor = database.execute_sql(sql, [_parameter(moves[index], part) for part, index in sources])
        if name == "point tools":
            tools = cursor.rowcount
    return int(tools)


class _Sentinel(NamedTuple):
    old_rowid: int
    new_rowid: int
    key_digest: str


def _placeholder(move: Move | _Sentinel) -> str:
    """A session's key digest while its copy and its old row are both there: never a real digest
    (those are 32 hexadecimal digits), and unique, as its old rowid is."""
    return f"moving {move.old_rowid}"


def _copy(moves: Sequence[Move | _Sentinel]) -> pw.Query:
    to_new = pw.Case(McpSession.id, [(move.old_rowid, move.new_rowid) for move in moves])
    placeholder = pw.Case(McpSession.id, [(move.old_rowid, _placeholder(move)) for move in moves])
    fields = McpSession._meta.sorted_fields
    copied = [
        to_new if field is McpSession.id else placeholder if field is McpSession.session_key_digest else field
        for field in fields
    ]
    old_ids = [move.old_rowid for move in moves]
    return McpSession.insert_from(McpSession.select(*copied).where(McpSession.id.in_(old_ids)), fields)


def _point_tools(moves: Sequence[Move | _Sentinel]) -> pw.Query:
    to_new = pw.Case(McpSessionTool.session, [(move.old_rowid, move.new_rowid) for move in moves])
    old_ids = [move.old_rowid for move in moves]
    return McpSessionTool.update(session=to_new).where(McpSessionTool.session.in_(old_ids))


def _delete_old(moves: Sequence[Move | _Sentinel]) -> pw.Query:
    return McpSession.delete().where(McpSession.id.in_([move.old_rowid for move in moves]))


def _restore_keys(moves: Sequence[Move | _Sentinel]) -> pw.Query:
    real = pw.Case(McpSession.id, [(move.new_rowid, move.key_digest) for move in moves])
    return McpSession.update(session_key_digest=real).where(McpSession.id.in_([move.new_rowid for move in moves]))


STATEMENTS: dict[str, Callable[[Sequence[Move | _Sentinel]], pw.Query]] = {
    "copy sessions": _copy,
    "point tools": _point_tools,
    "delete old rows": _delete_old,
    "restore keys": _restore_keys,
}
"""The four statements of a move, in order, each built from a list of moves."""

Source = tuple[str, int]
"""Where a parameter of a statement comes from: which value (old, new, key, placeholder) of which move."""

_TEMPLATES: WeakKeyDictionary[pw.Database, dict[tuple[str, int], tuple[str, list[Source]]]] = WeakKeyDictionary()


def _template(database: pw.Database, name: str, count: int) -> tuple[str, list[Source]]:
    """A statement's SQL for `count` moves, and where each of its parameters comes from.

    peewee takes longer to build a statement of hundreds of CASE branches than the database
    takes to run it, so each statement is built once per engine and size, from sentinel moves
    whose values each say what they stand for, then run with the real values in their places."""
    cached = _TEMPLATES.setdefault(database, {})
    if (name, count) not in cached:
        sentinels = [_Sentinel(index, count + index, f"key {index}") for index in range(count)]
        sources: dict[object, Source] = {}
        for index, sentinel in enumerate(sentinels):
            sources |= {sentinel.old_rowid: ("old", index), sentinel.new_rowid: ("new", index)}
            sources |= {sentinel.key_digest: ("key", index), _placeholder(sentinel): ("placeholder", index)}
        sql, parameters = database.get_sql_context().sql(STATEMENTS[name](sentinels)).query()
        cached[(name, count)] = (sql, [sources[value] for value in parameters])
    return cached[(name, count)]


def _parameter(move: Move, part: str) -> object:
    if part == "old":
        return move.old_rowid
    if part == "new":
        return move.new_rowid
    return move.key_digest if part == "key" else _placeholder(move)
