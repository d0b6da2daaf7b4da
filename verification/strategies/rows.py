"""Whole legacy rows (the JSON cell and the cells around it) and whole snapshots of them.

A legacy row is `(rowid, *cells)`: checkpoints `(id, id, timestamp, checkpoint_data)`, sessions
`(rowid, session_key, session_data, last_seen)`. The JSON cell is a blob rendered in some
formatting most of the time, and otherwise something that must be quarantined: text that is not
JSON, JSON of the wrong shape, or a cell of another SQLite storage type.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from migrator.codec import InvalidText
from migrator.formats import UNREADABLE_KINDS, Spoiled, UnreadableKind
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacyRow, LegacySchema
from migrator.legacy_copy import LegacyWriter, default_schema
from verification.strategies import blobs, content
from verification.strategies.adversarial import (
    json_values,
    non_text_cells,
    not_json_texts,
    object_from_pairs,
    sqlite_cells,
    sqlite_texts,
    weighted,
)
from verification.strategies.rendering import CANONICAL, Formatting, RawJson, render

__all__ = [
    "DAEMON_SCHEMA",
    "UNTYPED_SCHEMA",
    "LegacySnapshot",
    "checkpoint_data_cells",
    "checkpoint_rows",
    "checkpoint_tables",
    "formattings",
    "legacy_snapshots",
    "primary_key_identity",
    "rendered",
    "session_data_cells",
    "session_rows",
    "session_tables",
    "spoiled",
    "unreadable_checkpoint_data",
    "unreadable_checkpoint_rows",
    "unreadable_session_data",
    "unreadable_session_rows",
]

# --- formatting -------------------------------------------------------------------------------

_WHITESPACE = st.text(st.sampled_from(" \t\n\r"), min_size=1, max_size=3)


@cache
def noncanonical_formattings() -> SearchStrategy[Formatting]:
    """Separators, indentation, `ensure_ascii=False`, respelt tokens and stray whitespace."""
    return st.builds(
        Formatting,
        item_separator=st.sampled_from((", ", ",", " ,  ", ",\n")),
        key_separator=st.sampled_from((": ", ":", " :\t")),
        indent=st.one_of(st.none(), st.integers(0, 3), st.just("\t")),
        ensure_ascii=st.booleans(),
        respellings=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 3)), max_size=4).map(tuple),
        inserted_spaces=st.lists(st.tuples(st.integers(0, 63), _WHITESPACE), max_size=2).map(tuple),
        leading=st.one_of(st.just(""), _WHITESPACE),
        trailing=st.one_of(st.just(""), _WHITESPACE),
    )


@cache
def formattings() -> SearchStrategy[Formatting]:
    """Mostly the daemon's own `json.dumps(value)`; a third of the time anything else."""
    return weighted((2, st.just(CANONICAL)), (1, noncanonical_formattings()))


@cache
def rendered(values: SearchStrategy[Any], formatting: SearchStrategy[Formatting] | None = None) -> SearchStrategy[str]:
    """JSON texts of `values` in some formatting."""
    return st.builds(render, values, formatting if formatting is not None else formattings())


# --- JSON cells that must be quarantined ------------------------------------------------------


# A `RawJson` is left out of these: its text may well be the object or array excluded here.


@cache
def _not_objects() -> SearchStrategy[Any]:
    return json_values(6).filter(lambda value: not isinstance(value, dict | RawJson))


@cache
def _not_arrays() -> SearchStrategy[Any]:
    return json_values(6).filter(lambda value: not isinstance(value, list | RawJson))


@cache
def _neither_array_nor_object() -> SearchStrategy[Any]:
    return json_values(6).filter(lambda value: not isinstance(value, dict | list | RawJson))


@st.composite
def _maps_repeating_a_key(draw: st.DrawFn, ids: SearchStrategy[str], values: SearchStrategy[Any]) -> dict:
    """A map whose keys are identities (session ids, request ids) but with one key twice."""
    pairs = draw(st.lists(st.tuples(ids, values), min_size=1, max_size=3))
    repeated = draw(st.sampled_from(pairs))[0]
    pairs.insert(draw(st.integers(0, len(pairs))), (repeated, draw(values)))
    return object_from_pairs(pairs)


@cache
def _too_deep() -> SearchStrategy[RawJson]:
    """Nesting past what Python's recursive parser reads (its limit is about 1000 levels)."""
    return st.sampled_from((RawJson("[" * 5_000 + "]" * 5_000), RawJson('{"a":' * 5_000 + "0" + "}" * 5_000)))


def _spoil(kind: UnreadableKind, table: str, blob: Any, rng: random.Random, formatting: Formatting) -> Spoiled:
    return kind.spoil(table, blob, rng, lambda value: render(value, formatting))


@cache
def spoiled(table: str) -> SearchStrategy[Spoiled]:
    """A blob of `table` made unreadable by one of the catalogue's kinds (`migrator.formats`)."""
    kinds = st.sampled_from([kind for kind in UNREADABLE_KINDS if table in kind.tables])
    blob = blobs.checkpoint_blobs() if table == CHECKPOINTS.name else blobs.session_blobs()
    return st.builds(_spoil, kinds, st.just(table), blob, st.randoms(use_true_random=False), formattings())


@cache
def unreadable_checkpoint_data(*, nullable: bool = True) -> SearchStrategy[Any]:
    """`checkpoint_data` cells no reader can map: each must be quarantined verbatim."""
    ids = content.session_ids()
    queues_without_item_arrays = blobs.object_queues(items=_not_arrays())
    wrong_shapes = st.one_of(
        _not_objects(),
        blobs.checkpoint_blobs(session_queues=_not_objects()),
        blobs.checkpoint_blobs(active_completions=_not_objects()),
        blobs.checkpoint_blobs(session_queues=st.dictionaries(ids, _neither_array_nor_object(), min_size=1)),
        blobs.checkpoint_blobs(session_queues=st.dictionaries(ids, st.lists(_not_objects(), min_size=1), min_size=1)),
        blobs.checkpoint_blobs(session_queues=st.dictionaries(ids, queues_without_item_arrays, min_size=1)),
        blobs.checkpoint_blobs(active_completions=st.dictionaries(ids, _not_objects(), min_size=1)),
        blobs.checkpoint_blobs(session_queues=_maps_repeating_a_key(ids, blobs.list_queues())),
        blobs.checkpoint_blobs(active_completions=_maps_repeating_a_key(content.request_ids(), blobs.completions())),
        blobs.checkpoint_blobs(extra_keys=st.tuples(st.just("deep"), _too_deep()).map(lambda pair: [pair])),
    )
    return weighted(
        (3, spoiled(CHECKPOINTS.name).map(_data_cell)),
        (2, rendered(wrong_shapes)),
        (2, not_json_texts()),
        (1, non_text_cells(nullable=nullable)),
    )


@cache
def unreadable_session_data(*, nullable: bool = True) -> SearchStrategy[Any]:
    """`session_data` cells no reader can map: each must be quarantined verbatim."""
    wrong_shapes = st.one_of(
        _not_objects(),
        blobs.session_blobs(tools=_not_arrays()),
        blobs.session_blobs(agent_info=_too_deep()),
    )
    return weighted(
        (3, spoiled(MCP_SESSIONS.name).filter(_keeps_key).map(_data_cell)),
        (2, rendered(wrong_shapes)),
        (2, not_json_texts()),
        (1, non_text_cells(nullable=nullable)),
    )


def _data_cell(spoilt: Spoiled) -> Any:
    return spoilt.data


def _keeps_key(spoilt: Spoiled) -> bool:
    return spoilt.key is None


# --- the JSON cell ----------------------------------------------------------------------------


# The faker-built whole blobs (`content.faker_checkpoint_blobs`) are not mixed in here: a seed
# shrinks only to another seed, so one failing example would stay a page of faker text. The
# blobs here take their realism from the faker pools instead, and shrink to a handful of keys.


@cache
def checkpoint_data_cells(*, nullable: bool = True, blob: SearchStrategy[Any] | None = None) -> SearchStrategy[Any]:
    """A `checkpoint_data` cell: a blob rendered in some formatting, or one to quarantine."""
    if blob is not None:
        return rendered(blob)
    return weighted((7, rendered(blobs.checkpoint_blobs())), (3, unreadable_checkpoint_data(nullable=nullable)))


@cache
def session_data_cells(*, nullable: bool = True, blob: SearchStrategy[Any] | None = None) -> SearchStrategy[Any]:
    """A `session_data` cell: a blob rendered in some formatting, or one to quarantine."""
    if blob is not None:
        return rendered(blob)
    return weighted((7, rendered(blobs.session_blobs())), (3, unreadable_session_data(nullable=nullable)))


# --- the other cells --------------------------------------------------------------------------


@cache
def rowids() -> SearchStrategy[int]:
    """Legacy rowids: small with gaps (pruning), and the extremes SQLite allows."""
    return weighted((6, st.integers(1, 40)), (1, st.sampled_from((0, -1, 2**63 - 1, -(2**63)))))


@cache
def checkpoint_timestamp_cells(*, nullable: bool = True) -> SearchStrategy[Any]:
    return weighted((7, content.timestamps()), (2, sqlite_cells(nullable=nullable)))


@cache
def last_seen_cells(*, nullable: bool = True) -> SearchStrategy[Any]:
    """Mostly the daemon's naive isoformat; also other writers' forms, numbers, and any cell."""
    return weighted(
        (4, content.last_seen_texts()),
        (3, content.timestamps()),
        (1, content.epoch_times()),
        (2, sqlite_cells(nullable=nullable)),
    )


@cache
def session_key_cells(*, nullable: bool = True) -> SearchStrategy[Any]:
    """Mostly `agent:conversation` text; sometimes odd text, or no text at all (quarantined)."""
    return weighted((6, content.session_keys()), (2, sqlite_texts()), (1, non_text_cells(nullable=nullable)))


# --- rows -------------------------------------------------------------------------------------


@cache
def checkpoint_rows(
    *,
    ids: SearchStrategy[int] | None = None,
    timestamp: SearchStrategy[Any] | None = None,
    data: SearchStrategy[Any] | None = None,
    nullable: bool = True,
) -> SearchStrategy[LegacyRow]:
    """`(id, id, timestamp, checkpoint_data)`: the id is the rowid (INTEGER PRIMARY KEY)."""
    return st.builds(
        lambda rowid, stamp, cell: (rowid, rowid, stamp, cell),
        ids if ids is not None else rowids(),
        timestamp if timestamp is not None else checkpoint_timestamp_cells(nullable=nullable),
        data if data is not None else checkpoint_data_cells(nullable=nullable),
    )


@cache
def session_rows(
    *,
    rowid: SearchStrategy[int] | None = None,
    key: SearchStrategy[Any] | None = None,
    data: SearchStrategy[Any] | None = None,
    last_seen: SearchStrategy[Any] | None = None,
    nullable: bool = True,
) -> SearchStrategy[LegacyRow]:
    """`(rowid, session_key, session_data, last_seen)`."""
    return st.tuples(
        rowid if rowid is not None else rowids(),
        key if key is not None else session_key_cells(nullable=nullable),
        data if data is not None else session_data_cells(nullable=nullable),
        last_seen if last_seen is not None else last_seen_cells(nullable=nullable),
    )


@cache
def unreadable_checkpoint_rows(*, nullable: bool = True) -> SearchStrategy[LegacyRow]:
    return checkpoint_rows(data=unreadable_checkpoint_data(nullable=nullable), nullable=nullable)


@cache
def unreadable_session_rows(*, nullable: bool = True) -> SearchStrategy[LegacyRow]:
    """A session whose data cannot be read, or whose key is not text."""
    return st.one_of(
        session_rows(data=unreadable_session_data(nullable=nullable), nullable=nullable),
        session_rows(key=non_text_cells(nullable=nullable), nullable=nullable),
        st.builds(
            _spoilt_session_row,
            rowids(),
            content.session_keys(),
            spoiled(MCP_SESSIONS.name),
            last_seen_cells(nullable=nullable),
        ),
    )


def _spoilt_session_row(rowid: int, key: str, spoilt: Spoiled, last_seen: Any) -> LegacyRow:
    """A session row with a catalogue kind's cells: its JSON cell, and its key as the kind stores it."""
    return rowid, spoilt.key(key) if spoilt.key is not None else key, spoilt.data, last_seen


# --- tables and snapshots ---------------------------------------------------------------------


def primary_key_identity(cell: Any) -> Any:
    """Keys that SQLite could take for the same PRIMARY KEY value, under any column affinity.

    A number equals the same number of any type (1 = 1.0 = -0.0 + 1), and TEXT affinity turns a
    number into text, so text that reads as a number counts as that number. Over-cautious on
    purpose: two keys that merely might collide are never drawn together.
    """
    if cell is None:
        return object()  # NULLs are distinct from each other, even in a PRIMARY KEY
    if isinstance(cell, bytes):
        return ("text" if isinstance(cell, InvalidText) else "blob", bytes(cell))
    try:
        return ("number", repr(float(cell) + 0.0))
    except (ValueError, OverflowError):
        return ("text", cell)


@cache
def checkpoint_tables(rows: SearchStrategy[LegacyRow] | None = None, max_size: int = 5) -> SearchStrategy[list]:
    """Checkpoint rows with distinct ids."""
    return st.lists(rows if rows is not None else checkpoint_rows(), max_size=max_size, unique_by=lambda row: row[0])


@cache
def session_tables(rows: SearchStrategy[LegacyRow] | None = None, max_size: int = 5) -> SearchStrategy[list]:
    """Session rows with distinct rowids and distinct keys."""
    each = rows if rows is not None else session_rows()
    return st.lists(each, max_size=max_size, unique_by=(lambda row: row[0], lambda row: primary_key_identity(row[1])))


DAEMON_SCHEMA = default_schema((CHECKPOINTS, MCP_SESSIONS))
"""The daemon's DDL: TEXT affinity turns numbers into text, NOT NULL refuses NULL."""

UNTYPED_SCHEMA = LegacySchema(
    [
        "CREATE TABLE checkpoints (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp, checkpoint_data)",
        "CREATE TABLE mcp_sessions (session_key PRIMARY KEY, session_data, last_seen)",
    ],
    {},
    "UTF-8",
    ["checkpoints", "mcp_sessions"],
)
"""Columns without types or constraints: every storage type, NULL included, is kept as given."""

_NOT_NULL_COLUMNS = {"checkpoints": (2, 3), "mcp_sessions": (2, 3)}  # row positions of NOT NULL cells


@dataclass(frozen=True)
class LegacySnapshot:
    """Legacy tables to write into a new SQLite file: the DDL and every row, cell by cell."""

    schema: LegacySchema
    checkpoints: tuple[LegacyRow, ...]
    sessions: tuple[LegacyRow, ...]

    def write(self, path: Path) -> Path:
        writer = LegacyWriter(path, self.schema)
        writer.insert(CHECKPOINTS, list(self.checkpoints))
        writer.insert(MCP_SESSIONS, list(self.sessions))
        return writer.finish()

    def write_apart(self, paths: Mapping[str, Path]) -> list[Path]:
        """Each table in a file of its own (`paths`: by table name), as the daemon keeps them."""
        files = []
        for table, rows in ((CHECKPOINTS, self.checkpoints), (MCP_SESSIONS, self.sessions)):
            statement = self.schema.statements[self.schema.tables.index(table.name)]
            counter = {name: seq for name, seq in self.schema.sequences.items() if name == table.name}
            writer = LegacyWriter(
                paths[table.name], LegacySchema([statement], counter, self.schema.encoding, [table.name])
            )
            writer.insert(table, list(rows))
            files.append(writer.finish())
        return files

    def reordered(self, checkpoint_order: Sequence[int], session_order: Sequence[int]) -> LegacySnapshot:
        """The same rows inserted in another order; sessions get rowids in that new order.

        Checkpoint ids are their identity and stay; session rowids are SQLite's to assign, so a
        snapshot written in another order numbers its sessions differently.
        """
        sessions = [self.sessions[index] for index in session_order]
        return replace(
            self,
            checkpoints=tuple(self.checkpoints[index] for index in checkpoint_order),
            sessions=tuple((rowid, *row[1:]) for rowid, row in enumerate(sessions, start=1)),
        )


def _schemas_allowing(checkpoints: Sequence[LegacyRow], sessions: Sequence[LegacyRow]) -> tuple[LegacySchema, ...]:
    """The daemon's DDL, unless a NOT NULL column would have to hold a NULL."""
    tables = {"checkpoints": checkpoints, "mcp_sessions": sessions}
    needs_null = any(
        row[position] is None for name, rows in tables.items() for row in rows for position in _NOT_NULL_COLUMNS[name]
    )
    return (UNTYPED_SCHEMA,) if needs_null else (DAEMON_SCHEMA, UNTYPED_SCHEMA)


@cache
def legacy_snapshots(
    checkpoints: SearchStrategy[list] | None = None,
    sessions: SearchStrategy[list] | None = None,
) -> SearchStrategy[LegacySnapshot]:
    """A whole snapshot: both tables, under the daemon's DDL or an untyped one."""
    tables = st.tuples(
        checkpoints if checkpoints is not None else checkpoint_tables(),
        sessions if sessions is not None else session_tables(),
    )
    return tables.flatmap(_snapshots_of)


def _snapshots_of(tables: tuple[list, list]) -> SearchStrategy[LegacySnapshot]:
    checkpoints, sessions = tables
    schemas = st.sampled_from(_schemas_allowing(checkpoints, sessions))
    return schemas.map(lambda schema: LegacySnapshot(schema, tuple(checkpoints), tuple(sessions)))
