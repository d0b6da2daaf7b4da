"""MCP sessions: a legacy `mcp_sessions` row to relational rows, and back. Both directions live here.

Two shapes of `session_data` exist, and any mix of their keys is carried:

* plan:   {"agent_id", "tools": ["Read", ...], "thin_handshake": true, "created_at": "...Z"}
* daemon: {"agent_id", "conversation_id", "agent_info": {...},
           "tools": [{"name": ...} | full tool schema, ...], "created": "..."}

Each tool becomes one row at its position, so order and duplicates survive, and `tool_name` is
indexed for the plan's tool-usage query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard

import peewee as pw

from migrator.codec import (
    UnreadableBlob,
    apply_overlay,
    decode_cell,
    dumps,
    encode_cell,
    encode_str,
    is_storable_text,
    join_array,
    json_type_name,
    key_digest,
    key_from_stored,
    parse_blob,
    parse_timestamp,
    storage_type,
    stored_key,
)
from migrator.errors import RebuildError
from migrator.legacy import MCP_SESSIONS, LegacyRow
from migrator.models import McpSession, McpSessionTool
from migrator.records import Field, Kind, RecordSpec, join_record, split_record
from migrator.relational import BlobKind, Bundle, Row, TableMap

SESSION_DATA = RecordSpec(
    "session_data",
    (
        Field("agent_id", Kind.TEXT),
        Field("conversation_id", Kind.TEXT),
        Field("thin_handshake", Kind.BOOL),
        Field("created_at", Kind.TIMESTAMP),
        Field("created", Kind.TIMESTAMP),
        Field("agent_info", Kind.JSON),
        Field("tools", Kind.ARRAY),
    ),
)
TOOL = RecordSpec(
    "tool",
    (
        Field("name", Kind.TEXT, "tool_name"),
        Field("description", Kind.TEXT),
        Field("inputSchema", Kind.JSON, "input_schema"),
    ),
)

SESSION_TABLE = TableMap(
    McpSession,
    (
        # The legacy rowid first: it is the identity every read by rowid (range) goes by. The
        # session's own `id` is mapped to the rowid; a target that assigned another (a session
        # moved, or its rowid's id taken) holds its own, which the forward check takes as given
        # and holds the tools to (`relational.with_parent_key`).
        "legacy_rowid",
        "id",
        "source_digest",
        "session_key",
        "session_key_digest",
        "shape",
        SESSION_DATA,
        "last_seen_type",
        "last_seen_text",
        "last_seen",
        "is_active",  # the plan's lifecycle, not legacy data: every migrated session is active
        "layout",
        "extra",
        "text_overlay",
    ),
)
TOOL_TABLE = TableMap(
    McpSessionTool,
    # added_at is a plan column that legacy rows never record: it is mapped to NULL.
    ("session_id", "position", "form", TOOL, "added_at", "layout", "extra"),
    order=("position",),
)

LEGACY = MCP_SESSIONS.at
SESSION_AT, TOOL_AT = SESSION_TABLE.at, TOOL_TABLE.at
TOOL_NAME = TOOL.columns.index("tool_name")  # where a tool's name sits within its record
NO_TOOL_RECORD: Sequence[Any] = (None,) * TOOL.width

_DAEMON_KEYS = frozenset({"conversation_id", "agent_info", "created"})
_PLAN_KEYS = frozenset({"thin_handshake", "created_at"})


# --- legacy row -> relational rows ------------------------------------------------------------


def to_rows(row: LegacyRow, digest: str) -> Bundle:
    rowid, session_key = row[LEGACY.rowid], row[LEGACY.session_key]
    data, last_seen = row[LEGACY.session_data], row[LEGACY.last_seen]
    if not isinstance(session_key, str):
        raise UnreadableBlob(f"session_key is a {storage_type(session_key)} value, expected text")
    if not isinstance(data, str):
        raise UnreadableBlob(f"session_data is a {storage_type(data)} value, expected JSON text")
    blob, overlay = parse_blob(data)
    if not isinstance(blob, dict):
        raise UnreadableBlob(f"session_data is a JSON {json_type_name(blob)}, expected an object")
    split = split_record(SESSION_DATA, blob, "session_data")
    tools = [_tool_row(rowid, position, tool) for position, tool in enumerate(split.containers.get("tools", []))]
    tag, text = encode_cell(last_seen)
    key = stored_key(session_key)
    session = SESSION_TABLE.build(
        legacy_rowid=rowid,
        id=rowid,
        source_digest=digest,
        session_key=key,
        session_key_digest=key_digest(key),
        shape=_shape(blob),
        record=split.slots,
        last_seen_type=tag,
        last_seen_text=text,
        last_seen=parse_timestamp(last_seen) if isinstance(last_seen, str) else None,
        is_active=True,
        layout=split.layout,
        extra=split.extra,
        text_overlay=overlay,
    )
    return [session], tools


def _shape(blob: dict) -> str:
    daemon, plan = not _DAEMON_KEYS.isdisjoint(blob.keys()), not _PLAN_KEYS.isdisjoint(blob.keys())
    if daemon and plan:
        return "mixed"
    return "daemon" if daemon else "plan" if plan else "other"


def _tool_row(session_id: int, position: int, tool: object) -> Row:
    record, form, layout, extra = NO_TOOL_RECORD, "json", None, None
    if type(tool) is str and is_storable_text(tool):
        record, form = _name_only(tool), "name"
    elif type(tool) is dict and len(tool) == 1 and _is_storable_name(name := tool.get("name")):
        # `{"name": ...}`, most tools' shape: what `split_record` makes of it, without its loop
        # (a third of the tool rows' time).
        record, form, layout = _name_only(name), "object", NAME_OBJECT_LAYOUT
    elif isinstance(tool, dict):
        split = split_record(TOOL, tool, lambda: f"session_data.tools[{position}]")
        record, form, layout, extra = split.slots, "object", split.layout, split.extra
    else:  # anything else the list holds (null, a number, a nested list) is kept as it is
        extra = dumps(tool)
    return TOOL_TABLE.build(
        session_id=session_id, position=position, form=form, record=record, added_at=None, layout=layout, extra=extra
    )


def _is_storable_name(name: object) -> TypeGuard[str]:
    return type(name) is str and is_storable_text(name)


NAME_OBJECT_LAYOUT = split_record(TOOL, {"name": ""}, "tool").layout


def _name_only(name: str) -> list[Any]:
    record = list(NO_TOOL_RECORD)
    record[TOOL_NAME] = name
    return record


# --- relational rows -> legacy row ------------------------------------------------------------


def from_rows(bundle: Bundle) -> LegacyRow:
    (session,), tools = bundle
    containers = {"tools": join_array(_tool_text(tool) for tool in tools)}
    record = session[SESSION_TABLE.record]
    canonical = join_record(SESSION_DATA, record, session[SESSION_AT.layout], session[SESSION_AT.extra], containers)
    return MCP_SESSIONS.build(
        rowid=session[SESSION_AT.legacy_rowid],
        session_key=key_from_stored(session[SESSION_AT.session_key]),
        session_data=apply_overlay(canonical, session[SESSION_AT.text_overlay]),
        last_seen=decode_cell(session[SESSION_AT.last_seen_type], session[SESSION_AT.last_seen_text]),
    )


def session_key_lookup(session_key: str) -> tuple[pw.Field, str]:
    """The column and value that find a session by its key: the digest of the key's stored
    form, which is indexed, unique and exact on every engine."""
    return McpSession.session_key_digest, key_digest(stored_key(session_key))


def _tool_text(tool: Row) -> str:
    form = tool[TOOL_AT.form]
    if form == "name":
        return encode_str(tool[TOOL_AT.tool_name])
    if form == "object":
        return join_record(TOOL, tool[TOOL_TABLE.record], tool[TOOL_AT.layout], tool[TOOL_AT.extra])
    if form == "json":
        return tool[TOOL_AT.extra]
    raise RebuildError(f"session {tool[TOOL_AT.session_id]} tool {tool[TOOL_AT.position]} has unknown form {form!r}")


KIND = BlobKind(
    legacy=MCP_SESSIONS,
    tables=(SESSION_TABLE, TOOL_TABLE),
    to_rows=to_rows,
    from_rows=from_rows,
)
