"""The relational side of the store: the relational rows seen as legacy rows, read back exactly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import peewee as pw

from migrator import checkpoints, engines, sessions
from migrator.codec import LegacyCell, decode_cell, is_storable_text, parse_timestamp, stored_key
from migrator.errors import InvalidCutoff, RebuildError
from migrator.legacy import CHECKPOINTS, LEGACY_TABLES, MCP_SESSIONS, ROWID, LegacyRow, LegacyTable
from migrator.legacy_copy import default_schema
from migrator.models import Checkpoint, McpSession, McpSessionTool, Quarantine
from migrator.relational import BlobKind, Bundle, read_bundle, unquarantine_row
from migrator.store.common import (
    KEPT_CHECKPOINTS,
    Blob,
    LegacyChange,
    blob_of,
)
from migrator.store.legacy_side import stored_form
from migrator.target import (
    load_legacy_schema,
    record_legacy_schema,
)

# --- the relational side ----------------------------------------------------------------------


class RelationalTables:
    """The relational rows seen as legacy rows: read back exactly, and changed the way the legacy
    table would change when there is no legacy table any more (`relational_only`)."""

    def __init__(self, database: pw.Database) -> None:
        self.database = database

    # reads, each in one transaction so that a concurrent rewrite never tears a bundle apart

    def checkpoint(self, checkpoint_id: int) -> LegacyRow | None:
        with self.database.atomic():
            bundle = read_bundle(self.database, checkpoints.KIND, Checkpoint.id, checkpoint_id)
            if bundle is not None:
                return checkpoints.KIND.from_rows(bundle)
            record = self._quarantined(CHECKPOINTS).where(Quarantine.source_rowid == checkpoint_id).first()
            return unquarantine_row(record.source_rowid, record.cells) if record else None

    def latest_checkpoint(self) -> LegacyRow | None:
        with self.database.atomic():
            ids = self.checkpoint_ids()
            return self.checkpoint(ids[-1]) if ids else None

    def session(self, session_key: str) -> LegacyRow | None:
        with self.database.atomic():
            bundle = read_bundle(self.database, sessions.KIND, *sessions.session_key_lookup(session_key))
            if bundle is not None:
                return sessions.KIND.from_rows(bundle)
            return next(iter(self._quarantined_sessions(session_key)), None)

    def blobs(self, kind: BlobKind, where: pw.ColumnBase) -> dict[Any, Blob]:
        """key -> blob of every relational row matching `where` on the kind's root table, in rowid order."""
        root = kind.root
        with self.database.atomic():
            matching = root.model.select(root.identity).where(where).order_by(root.identity)
            rows = [kind.from_rows(self._bundle(kind, rowid)) for (rowid,) in matching.tuples().iterator()]
        return {kind.legacy.key_of(row): blob_of(kind, row) for row in rows}

    def blobs_holding(self, kind: BlobKind, column: pw.Field, key: str, value: str) -> dict[Any, Blob]:
        """`blobs` whose top-level `key` is `value`, found through the indexed `column` that holds it.
        A text no engine's text type can hold (NUL, a lone surrogate) stays in the row's JSON with
        the column NULL (`codec.is_storable_text`): those rows are matched by their blobs."""
        if is_storable_text(value):
            return self.blobs(kind, engines.engine(self.database).text_equals(column, value))
        held_elsewhere = self.blobs(kind, column.is_null())
        return {k: blob for k, blob in held_elsewhere.items() if isinstance(blob, dict) and blob.get(key) == value}

    def _bundle(self, kind: BlobKind, rowid: int) -> Bundle:
        bundle = read_bundle(self.database, kind, kind.root.identity, rowid)
        if bundle is None:
            raise RebuildError(f"{kind.legacy.name} rowid {rowid} vanished while it was read")
        return bundle

    def tool_usage(self) -> dict[str, int]:
        sessions_using = pw.fn.COUNT(pw.fn.DISTINCT(McpSessionTool.session))
        name = pw.fn.MIN(McpSessionTool.tool_name)  # every name in a group is the same name
        query = (
            McpSessionTool.select(name, sessions_using)
            .where(McpSessionTool.tool_name.is_null(False))
            .group_by(engines.engine(self.database).group_key(McpSessionTool.tool_name))
            .order_by(sessions_using.desc(), name)
        )
        return dict(query.tuples().iterator())

    def digest(self, kind: BlobKind, rowid: int) -> str | None:
        root = kind.root
        found = root.model.select(root.model.source_digest).where(root.identity == rowid).scalar()
        if found is None:
            found = (
                self._quarantined(kind.legacy)
                .where(Quarantine.source_rowid == rowid)
                .select(Quarantine.source_digest)
                .scalar()
            )
        return found

    def checkpoint_ids(self) -> list[int]:
        relational = [i for (i,) in Checkpoint.select(Checkpoint.id).tuples().iterator()]
        quarantined = [i for (i,) in self._quarantined(CHECKPOINTS).select(Quarantine.source_rowid).tuples().iterator()]
        return sorted(relational + quarantined)

    def session_rowids(self, session_key: str) -> tuple[int, ...]:
        column, digest = sessions.session_key_lookup(session_key)
        query = McpSession.select(McpSession.legacy_rowid).where(column == digest)
        relational = [rowid for (rowid,) in query.tuples().iterator()]
        return (*relational, *(row[ROWID] for row in self._quarantined_sessions(session_key)))

    def checkpoint_list(self) -> list[tuple[int, LegacyCell]]:
        """(id, timestamp) of every checkpoint, newest first, the timestamp as the legacy cell."""
        with self.database.atomic():
            relational = Checkpoint.select(Checkpoint.id, Checkpoint.legacy_timestamp_type, Checkpoint.legacy_timestamp)
            listed = [(rowid, decode_cell(tag, text)) for rowid, tag, text in relational.tuples().iterator()]
            for record in self._quarantined(CHECKPOINTS):
                row = unquarantine_row(record.source_rowid, record.cells)
                listed.append((record.source_rowid, row[CHECKPOINTS.at.timestamp]))
        return sorted(listed, key=lambda entry: entry[0], reverse=True)

    def sessions_seen_after(self, cutoff: str) -> list[LegacyRow]:
        """Sessions whose `last_seen` names a time after the cutoff's, through the index on the
        parsed copy (see `seen_cutoff`); in rowid order, as the daemon's SQL reads them."""
        moment = seen_cutoff(cutoff)
        with self.database.atomic():
            ids = [
                rowid
                for (rowid,) in McpSession.select(McpSession.legacy_rowid)
                .where(McpSession.last_seen > moment)
                .tuples()
                .iterator()
            ]
            rows = [sessions.KIND.from_rows(self._bundle(sessions.KIND, rowid)) for rowid in ids]
            rows += [row for row in self._quarantined_rows(MCP_SESSIONS) if _seen(row, moment, after=True)]
        return sorted(rows, key=lambda row: row[ROWID])

    def expired_rowids(self, cutoff: str) -> tuple[int, ...]:
        moment = seen_cutoff(cutoff)
        ids = [
            rowid
            for (rowid,) in McpSession.select(McpSession.legacy_rowid)
            .where(McpSession.last_seen < moment)
            .tuples()
            .iterator()
        ]
        ids += [row[ROWID] for row in self._quarantined_rows(MCP_SESSIONS) if _seen(row, moment, after=False)]
        return tuple(sorted(ids))

    def _quarantined_rows(self, table: LegacyTable) -> Iterator[LegacyRow]:
        for record in self._quarantined(table):
            yield unquarantine_row(record.source_rowid, record.cells)

    # changes the legacy table would make, for `relational_only`

    def update_checkpoint(self, checkpoint_id: int | None, data: str) -> LegacyChange | None:
        current = self.checkpoint(checkpoint_id) if checkpoint_id is not None else None
        if checkpoint_id is None or current is None:
            return None
        timestamp = current[CHECKPOINTS.at.timestamp]  # an update keeps the time of the save
        built = CHECKPOINTS.build(rowid=checkpoint_id, id=checkpoint_id, timestamp=timestamp, checkpoint_data=data)
        return LegacyChange(checkpoints.KIND, str(checkpoint_id), stored_form(CHECKPOINTS, built), (checkpoint_id,))

    def latest_checkpoint_id(self) -> int | None:
        ids = self.checkpoint_ids()
        return ids[-1] if ids else None

    def expire_sessions(self, cutoff: str) -> LegacyChange:
        return LegacyChange(sessions.KIND, f"sessions seen before {cutoff}", None, self.expired_rowids(cutoff))

    def insert_checkpoint(self, timestamp: str, data: str) -> LegacyChange:
        checkpoint_id = self._allocate_checkpoint_id()
        row = stored_form(
            CHECKPOINTS,
            CHECKPOINTS.build(rowid=checkpoint_id, id=checkpoint_id, timestamp=timestamp, checkpoint_data=data),
        )
        newest_last = [*self.checkpoint_ids(), checkpoint_id]
        pruned = tuple(newest_last[:-KEPT_CHECKPOINTS])
        return LegacyChange(checkpoints.KIND, str(checkpoint_id), row, pruned)

    def put_session(self, session_key: str, data: str, last_seen: LegacyCell) -> LegacyChange:
        replaced = self.session_rowids(session_key)
        rowid = self._next_rowid(sessions.KIND)  # INSERT OR REPLACE gives the row a new rowid
        row = stored_form(
            MCP_SESSIONS,
            MCP_SESSIONS.build(rowid=rowid, session_key=session_key, session_data=data, last_seen=last_seen),
        )
        return LegacyChange(sessions.KIND, session_key, row, replaced)

    def delete_session(self, session_key: str) -> LegacyChange:
        return LegacyChange(sessions.KIND, session_key, None, self.session_rowids(session_key))

    def _allocate_checkpoint_id(self) -> int:
        # AUTOINCREMENT never reuses an id, even a pruned one: the counter lives on in the
        # recorded legacy schema, so a later `restore` writes it to sqlite_sequence as well.
        schema = load_legacy_schema(self.database) or default_schema(LEGACY_TABLES)
        ids = self.checkpoint_ids()
        allocated = max([schema.sequences.get(CHECKPOINTS.name, 0), *ids[-1:]]) + 1
        record_legacy_schema(
            self.database, replace(schema, sequences={**schema.sequences, CHECKPOINTS.name: allocated})
        )
        return allocated

    def _next_rowid(self, kind: BlobKind) -> int:
        root = kind.root
        relational = root.model.select(pw.fn.MAX(root.identity)).scalar() or 0
        quarantined = self._quarantined(kind.legacy).select(pw.fn.MAX(Quarantine.source_rowid)).scalar() or 0
        return max(relational, quarantined) + 1

    @staticmethod
    def _quarantined(table: LegacyTable) -> pw.ModelSelect[Quarantine]:
        return Quarantine.select().where(Quarantine.legacy_table == table.name)

    def _quarantined_sessions(self, session_key: str) -> Iterator[LegacyRow]:
        # row_key is a display form ("NULL" for a NULL key), so the key cell itself is compared.
        for record in self._quarantined(MCP_SESSIONS).where(Quarantine.row_key == stored_key(session_key)):
            row = unquarantine_row(record.source_rowid, record.cells)
            if MCP_SESSIONS.key_of(row) == session_key:  # a BLOB key never equals text in Python either
                yield row


def seen_cutoff(cutoff: str) -> datetime:
    """A cutoff as the relational side compares it: the time it names (UTC when it has an offset,
    as written when naive), which is how the parsed `last_seen` copies were made."""
    moment = parse_timestamp(cutoff)
    if moment is None:
        raise InvalidCutoff(f"cutoff {cutoff!r} is not an ISO 8601 time (the daemon passes datetime.isoformat())")
    return moment


def _seen(row: LegacyRow, moment: datetime, *, after: bool) -> bool:
    """A quarantined session's `last_seen` against a cutoff, as its parsed copy would compare."""
    cell = row[MCP_SESSIONS.at.last_seen]
    seen = parse_timestamp(cell) if isinstance(cell, str) else None
    return seen is not None and (seen > moment if after else seen < moment)
