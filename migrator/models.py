"""The relational schema, as peewee models: the single source of truth for every SQL statement.

It covers the plan's entities (checkpoint, checkpoint_request, checkpoint_queue, mcp_session,
mcp_session_tool) and extends them wherever exactness needs it: queue items and their order,
tool order and duplicates, every timestamp's verbatim text beside a parsed copy, keys the plan
does not model (`extra`), key order (`layout`), the historical shape of each row, and the
spelling of non-canonical JSON (`text_overlay`). Children use composite keys of their parent
and a position, so a bulk load needs no id round trips and order is part of the identity.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import peewee as pw

SCHEMA_VERSION = 4
"""Bumped whenever a change needs a `playhouse.migrate` step. Version 2 moved the unique keys
from key text to key digests, so that every engine enforces them exactly. Version 3 gave each
session an id of its own, apart from its legacy rowid (see `McpSession`). Version 4 dropped the
index on each child's parent reference, which its primary key's index already serves (`_cascade`)."""

_CURRENT: ContextVar[pw.Database | None] = ContextVar("ksi_target", default=None)


class TargetProxy(pw.DatabaseProxy):
    """The models' database: the one a store works on in the current context (`bound_to`), else
    the target opened last (`target.open_target`). So two stores in one process each read and
    write their own target, from any thread, and opening another target redirects neither."""

    def current(self) -> pw.Database | None:
        return _CURRENT.get() or self.obj

    def _open(self) -> pw.Database:
        database = self.current()
        if database is None:
            raise AttributeError("no target is open: open one with migrator.open_target or open_store")
        return database

    def __getattr__(self, attr: str) -> object:
        return getattr(self._open(), attr)

    def __enter__(self) -> object:
        return self._open().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._open().__exit__(*exc_info)
        return None


class bound_to:
    """Within this context (this thread, this task), the models use `database`.

    A class, not a `contextmanager` generator: every store call enters one, and a generator's
    set-up costs microseconds a call, some 5% of a session lookup (65 us)."""

    __slots__ = ("database", "token")

    def __init__(self, database: pw.Database) -> None:
        self.database = database

    def __enter__(self) -> None:
        self.token = _CURRENT.set(self.database)

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT.reset(self.token)


database_proxy = TargetProxy()

# `bound_to` as two calls, for the store's per-call wrapper: the ContextVar's own C methods,
# with no object to build and no Python frames to enter (a session lookup makes one of each).
bind = _CURRENT.set
unbind = _CURRENT.reset


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


def _cascade(model: type[pw.Model], **kwargs: Any) -> pw.ForeignKeyField:
    """A child's reference to its parent, which leads the child's primary key.

    That key's index serves every lookup by parent and every cascade, on each engine (MySQL
    takes it as the index a foreign key needs). A second index on the reference alone, which
    peewee makes by default, would only cost writes: a fifth of a fresh load's index builds, and
    three pages of each checkpoint save (schema version 4 dropped it)."""
    return pw.ForeignKeyField(model, on_delete="CASCADE", index=False, **kwargs)


class Checkpoint(BaseModel):
    id = pw.BigIntegerField(primary_key=True)  # the legacy checkpoints.id, kept as identity
    source_digest = pw.CharField(max_length=32)  # fingerprint of the legacy row (catch-up)
    legacy_timestamp = pw.TextField(null=True)  # the legacy `timestamp` column, verbatim
    legacy_timestamp_type = pw.CharField(max_length=16, null=True)  # storage tag when not TEXT
    created_at_text = pw.TextField(null=True)  # the blob's "timestamp", verbatim
    created_at = pw.DateTimeField(null=True, index=True)  # parsed copy, for queries by time
    reason = pw.TextField(null=True, index=True)
    status = pw.CharField(max_length=16, default="active")  # plan lifecycle, not legacy data
    restored_at = pw.DateTimeField(null=True)
    layout = pw.TextField()  # top-level key order, and which values live in `extra`
    extra = pw.TextField(null=True)  # top-level values the schema does not model, in order
    text_overlay = pw.TextField(null=True)  # spelling/whitespace of non-canonical JSON


class CheckpointQueue(BaseModel):
    checkpoint = _cascade(Checkpoint, backref="queues")
    position = pw.IntegerField()  # order of the session_queues keys
    session_id = pw.TextField()  # in its stored form (codec.stored_key)
    session_id_digest = pw.CharField(max_length=32)  # codec.key_digest: the exact unique key
    shape = pw.CharField(max_length=8)  # "list" (old daemon) or "object" (new daemon)
    queue_depth = pw.IntegerField()
    is_active = pw.BooleanField(null=True)
    active_request = pw.TextField(null=True)
    layout = pw.TextField(null=True)  # object shape only
    extra = pw.TextField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("checkpoint", "position")
        indexes = ((("checkpoint", "session_id_digest"), True),)


@dataclass(frozen=True)
class Reference:
    """A foreign key: these columns of a table name a row of another by its columns."""

    table: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]

    def constraint(self) -> pw.NodeList:
        # Built from entities, not SQL text, so each engine quotes the names its own way.
        return pw.NodeList(
            (
                pw.SQL("FOREIGN KEY"),
                pw.EnclosedNodeList([pw.Entity(column) for column in self.columns]),
                pw.SQL("REFERENCES"),
                pw.Entity(self.parent),
                pw.EnclosedNodeList([pw.Entity(column) for column in self.parent_columns]),
                pw.SQL("ON DELETE CASCADE"),
            )
        )


QUEUE_ITEM_TO_QUEUE = Reference(
    "checkpoint_queue_item", ("checkpoint_id", "queue_position"), "checkpoint_queue", ("checkpoint_id", "position")
)
"""A queue item's queue: a key of two columns, which peewee's ForeignKeyField cannot declare."""
COMPOSITE_REFERENCES = (QUEUE_ITEM_TO_QUEUE,)  # the keys of several columns, each in its table's Meta.constraints


class CheckpointQueueItem(BaseModel):
    checkpoint = _cascade(Checkpoint)
    queue_position = pw.IntegerField()
    position = pw.IntegerField()  # queue order; a request may be queued twice
    request_id = pw.TextField(null=True, index=True)
    queued_at_text = pw.TextField(null=True)  # the item's "timestamp", verbatim
    queued_at = pw.DateTimeField(null=True)
    request_data = pw.TextField(null=True)  # the item's "data", canonical JSON
    layout = pw.TextField()
    extra = pw.TextField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("checkpoint", "queue_position", "position")
        constraints = [QUEUE_ITEM_TO_QUEUE.constraint()]  # noqa: RUF012 - peewee reads Meta attributes, never mutates them


class CheckpointRequest(BaseModel):
    checkpoint = _cascade(Checkpoint, backref="requests")
    position = pw.IntegerField()  # order of the active_completions keys
    request_id = pw.TextField()  # in its stored form (codec.stored_key)
    request_id_digest = pw.CharField(max_length=32)  # codec.key_digest: the exact unique key
    session_id = pw.TextField(null=True, index=True)
    agent_id = pw.TextField(null=True)
    status = pw.TextField(null=True, index=True)
    queued_at_text = pw.TextField(null=True)
    queued_at = pw.DateTimeField(null=True)
    started_at_text = pw.TextField(null=True)
    started_at = pw.DateTimeField(null=True)
    completed_at_text = pw.TextField(null=True)
    completed_at = pw.DateTimeField(null=True)
    error = pw.TextField(null=True)
    request_data = pw.TextField(null=True)  # "data", canonical JSON (the plan's request_data)
    original_event = pw.TextField(null=True)  # canonical JSON
    layout = pw.TextField()
    extra = pw.TextField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("checkpoint", "position")
        indexes = ((("checkpoint", "request_id_digest"), True),)


class McpSession(BaseModel):
    """A session. The daemon saves sessions with `INSERT OR REPLACE`, which gives a row a new
    rowid each time, changed or not; so the rowid is a column of its own (`legacy_rowid`), and
    the session's `id`, which its tools reference, is assigned once, when its rows are written
    (the legacy rowid then, unless another session holds that id: `relational.free_parent_keys`).
    A catch-up that finds a session unchanged under a new rowid changes `legacy_rowid` alone and
    leaves its tools untouched (`migrator.moves`). Chosen over keying tools by the session's key
    digest: the key must be the primary key here, which a load never drops, whereas a
    foreign key to the key digest would need its unique index present during every load, when
    the secondary indexes are built after the rows (`loading`)."""

    id = pw.BigIntegerField(primary_key=True)  # the session's own identity; its tools' parent key
    legacy_rowid = pw.BigIntegerField(unique=True)  # where the legacy row is now: every read by rowid
    source_digest = pw.CharField(max_length=32)
    session_key = pw.TextField()  # in its stored form (codec.stored_key)
    session_key_digest = pw.CharField(max_length=32, unique=True)  # codec.key_digest: lookups and uniqueness
    agent_id = pw.TextField(null=True, index=True)
    conversation_id = pw.TextField(null=True)
    shape = pw.CharField(max_length=8)  # "plan", "daemon", "mixed" (keys of both) or "other"
    thin_handshake = pw.BooleanField(null=True)
    created_at_text = pw.TextField(null=True)  # plan shape's "created_at", verbatim
    created_at = pw.DateTimeField(null=True, index=True)
    created_text = pw.TextField(null=True)  # daemon shape's "created", verbatim
    created = pw.DateTimeField(null=True)
    agent_info = pw.TextField(null=True)  # canonical JSON
    last_seen_text = pw.TextField(null=True)  # the legacy last_seen column, verbatim
    last_seen_type = pw.CharField(max_length=16, null=True)  # storage tag when not TEXT
    last_seen = pw.DateTimeField(null=True, index=True)
    is_active = pw.BooleanField(default=True)  # plan lifecycle, not legacy data
    layout = pw.TextField()
    extra = pw.TextField(null=True)
    text_overlay = pw.TextField(null=True)


class McpSessionTool(BaseModel):
    session = _cascade(McpSession, backref="tools")
    position = pw.IntegerField()  # tool order; duplicates are kept
    form = pw.CharField(max_length=8)  # "name" (bare string), "object" or "json"
    tool_name = pw.TextField(null=True, index=True)
    description = pw.TextField(null=True)
    input_schema = pw.TextField(null=True)  # canonical JSON
    layout = pw.TextField(null=True)  # object form only
    extra = pw.TextField(null=True)
    added_at = pw.DateTimeField(null=True)  # plan field; legacy rows do not record it

    class Meta:
        primary_key = pw.CompositeKey("session", "position")


class Quarantine(BaseModel):
    """A legacy row that cannot be read as the expected JSON object, kept verbatim."""

    legacy_table = pw.CharField(max_length=32)
    source_rowid = pw.BigIntegerField()
    source_digest = pw.CharField(max_length=32)
    row_key = pw.TextField(null=True)  # `id` or `session_key`, readable, for reports
    reason = pw.TextField()
    cells = pw.TextField()  # JSON list of [tag, text] per legacy column (migrator.codec)

    class Meta:
        table_name = "ksi_quarantine"
        indexes = ((("legacy_table", "source_rowid"), True),)


class MigrationMeta(BaseModel):
    """Facts about the migration: schema version, the legacy DDL, the source's encoding."""

    key = pw.CharField(max_length=64, primary_key=True)
    value = pw.TextField()

    class Meta:
        table_name = "ksi_migration_meta"


CHECKPOINT_MODELS = (Checkpoint, CheckpointQueue, CheckpointQueueItem, CheckpointRequest)
SESSION_MODELS = (McpSession, McpSessionTool)
ALL_MODELS = (*CHECKPOINT_MODELS, *SESSION_MODELS, Quarantine, MigrationMeta)


def references(model: type[pw.Model]) -> list[Reference]:
    """Every foreign key of a table: its ForeignKeyFields' and its `COMPOSITE_REFERENCES`."""
    table = model._meta.table_name
    declared = [
        Reference(table, (key.column_name,), key.rel_model._meta.table_name, (key.rel_field.column_name,))
        for key in model._meta.refs
    ]
    return declared + [reference for reference in COMPOSITE_REFERENCES if reference.table == table]


def references_of_table(table: str) -> list[Reference]:
    """`references` of the model of this table name (none for a table no model declares)."""
    model = next((model for model in ALL_MODELS if model._meta.table_name == table), None)
    return references(model) if model is not None else []
