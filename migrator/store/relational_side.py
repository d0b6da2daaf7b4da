"""The relational side of the store: the relational rows seen as legacy rows, read back exactly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import peewee as pw

from migrator import checkpoints, engines, sessions
from migrator.codec import LegacyCell, stored_key
from migrator.errors import (
    RebuildError,
)
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

    def blobs(self, kind: BlobKind, where: pw.Expression) -> dict[Any, Blob]:
        """key -> blob of every relational row matching `where` on the kind's root table, in rowid order."""
        root = kind.root
        with self.database.atomic():
            matching = root.model.select(root.identity).where(where).order_by(root.identity)
            rows = [kind.from_rows(self._bundle(kind, rowid)) for (rowid,) in matching.tuples()]
        return {kind.legacy.key_of(row): blob_of(kind, row) for row in rows}

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
        return dict(query.tuples())

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
        relational = [i for (i,) in Checkpoint.select(Checkpoint.id).tuples()]
        quarantined = [i for (i,) in self._quarantined(CHECKPOINTS).select(Quarantine.source_rowid).tuples()]
        return sorted(relational + quarantined)

    def session_rowids(self, session_key: str) -> tuple[int, ...]:
        column, digest = sessions.session_key_lookup(session_key)
        query = McpSession.select(McpSession.id).where(column == digest)
        relational = [rowid for (rowid,) in query.tuples()]
        return (*relational, *(row[ROWID] for row in self._quarantined_sessions(session_key)))

    # changes the legacy table would make, for `relational_only`

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
    def _quarantined(table: LegacyTable) -> pw.ModelSelect:
        return Quarantine.select().where(Quarantine.legacy_table == table.name)

    def _quarantined_sessions(self, session_key: str) -> Iterator[LegacyRow]:
        # row_key is a display form ("NULL" for a NULL key), so the key cell itself is compared.
        for record in self._quarantined(MCP_SESSIONS).where(Quarantine.row_key == stored_key(session_key)):
            row = unquarantine_row(record.source_rowid, record.cells)
            if MCP_SESSIONS.key_of(row) == session_key:  # a BLOB key never equals text in Python either
                yield row
