"""An independent account of what the relational rows must answer, for the forward direction.

`compare.compare_rows` holds the target to `to_rows` of each source row, which proves that what
was written is what the mapping makes. It cannot prove the mapping right: a `to_rows` that puts
the wrong parsed time or the wrong queue depth in a column would be compared with itself. This
module states, from the blob alone (`json.loads`, `datetime.fromisoformat`, `hashlib`) and without
the migrator's code, what every queryable column must hold: the keys and their digests, the
parsed timestamps every "seen since" or expiry query uses, flags, depths, shapes, positions, tool
names, statuses. Where the legacy value is one the plan does not model (a number where a string
belongs, a repeated key), the oracle says nothing about it, and the round trip proves it kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migrator.legacy import LegacyRow

PLAN_KEYS = frozenset({"thin_handshake", "created_at"})
DAEMON_KEYS = frozenset({"conversation_id", "agent_info", "created"})


@dataclass(frozen=True)
class Expected:
    """One fact: the target's `table` row whose key columns equal `key` holds `value` in `column`."""

    table: str
    key: tuple[tuple[str, Any], ...]
    column: str
    value: Any


def parsed_time(text: Any) -> str | None:
    """The queryable copy of a timestamp as the plan describes it (UTC when it names an offset,
    as written when naive; none outside the years 1000 to 9999), spelled as the target stores it."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    return moment.isoformat(" ") if 1000 <= moment.year <= 9999 else None


def column_text(value: Any) -> str | None:
    """What a text column holds for a JSON value: a string every engine's text type can hold
    (no NUL, no lone surrogate), as it is; anything else stays in JSON, and the column is NULL."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return None
    return value


def key_text(value: Any) -> str | None:
    """A key column holds the key itself when it is plain text; other keys are spelled in an
    escaped form the oracle does not restate (None: it claims nothing about them)."""
    text = column_text(value)
    return None if text is None or text.startswith("\x1b") else text


def key_digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class JsonObject(dict):
    """A parsed JSON object, told apart from an array even when both are empty, that remembers
    every value of a repeated key (the dict itself keeps the first)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.every: dict[str, list[Any]] = {}
        for key, value in pairs:
            self.setdefault(key, value)
            self.every.setdefault(key, []).append(value)

    # A repeated key's column holds its first value of the column's type; JSON null is every
    # column's NULL, so a first null wins over a later value (which the round trip keeps apart).

    def text(self, key: str) -> str | None:
        """What the key's text column holds: its first value that is null or text a column can hold."""
        fitting = (value for value in self.every.get(key, []) if value is None or column_text(value) is not None)
        return next(fitting, None)

    def flag(self, key: str) -> bool | None:
        """What the key's boolean column holds: its first value that is null or a boolean."""
        return next((value for value in self.every.get(key, []) if value is None or isinstance(value, bool)), None)


def first_values(text: str) -> JsonObject | None:
    """The blob as a `JsonObject`, or None when it is not a JSON object."""
    try:
        value = json.loads(text, object_pairs_hook=JsonObject)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, JsonObject) else None


# --- sessions -----------------------------------------------------------------------------------


def session_facts(row: LegacyRow) -> Iterator[Expected]:
    rowid, key, data, last_seen = row
    blob = first_values(data) if isinstance(data, str) else None
    if blob is None or key_text(key) is None:
        return
    at = (("legacy_rowid", rowid),)
    yield Expected("mcp_session", at, "session_key", key)
    yield Expected("mcp_session", at, "session_key_digest", key_digest(key))
    yield Expected("mcp_session", at, "last_seen", parsed_time(last_seen))
    yield Expected("mcp_session", at, "is_active", True)
    yield Expected("mcp_session", at, "shape", _shape(set(blob)))
    for name in ("agent_id", "conversation_id"):
        yield Expected("mcp_session", at, name, blob.text(name))
    for name in ("created_at", "created"):
        yield Expected("mcp_session", at, name, parsed_time(blob.text(name)))
    yield Expected("mcp_session", at, "thin_handshake", blob.flag("thin_handshake"))
    tools = blob.get("tools", [])
    if isinstance(tools, list):
        for position, tool in enumerate(tools):
            yield from _tool_facts(rowid, position, tool)


def _shape(keys: set[str]) -> str:
    daemon, plan = bool(keys & DAEMON_KEYS), bool(keys & PLAN_KEYS)
    return "mixed" if daemon and plan else "daemon" if daemon else "plan" if plan else "other"


def _tool_facts(rowid: int, position: int, tool: Any) -> Iterator[Expected]:
    at = (("session_rowid", rowid), ("position", position))
    if column_text(tool) is not None:
        yield Expected("mcp_session_tool", at, "form", "name")
        yield Expected("mcp_session_tool", at, "tool_name", tool)
    elif isinstance(tool, JsonObject):
        yield Expected("mcp_session_tool", at, "form", "object")
        yield Expected("mcp_session_tool", at, "tool_name", tool.text("name"))
    else:
        yield Expected("mcp_session_tool", at, "form", "json")
        yield Expected("mcp_session_tool", at, "tool_name", None)


# --- checkpoints --------------------------------------------------------------------------------


def checkpoint_facts(row: LegacyRow) -> Iterator[Expected]:
    rowid, _, timestamp, data = row
    blob = first_values(data) if isinstance(data, str) else None
    if blob is None:
        return
    at = (("id", rowid),)
    # The blob's own time, or the row's `timestamp` column when the blob gives none that parses.
    created = parsed_time(blob.text("timestamp")) or parsed_time(timestamp)
    yield Expected("checkpoint", at, "created_at", created)
    yield Expected("checkpoint", at, "reason", blob.text("reason"))
    yield Expected("checkpoint", at, "status", "active")
    queues, completions = blob.get("session_queues", JsonObject([])), blob.get("active_completions", JsonObject([]))
    if isinstance(queues, JsonObject):
        for position, (session_id, queue) in enumerate(queues.items()):
            yield from _queue_facts(rowid, position, session_id, queue)
    if isinstance(completions, JsonObject):
        for position, (request_id, completion) in enumerate(completions.items()):
            yield from _completion_facts(rowid, position, request_id, completion)


def _queue_facts(rowid: int, position: int, session_id: str, queue: Any) -> Iterator[Expected]:
    at = (("checkpoint_id", rowid), ("position", position))
    if key_text(session_id) is not None:
        yield Expected("checkpoint_queue", at, "session_id", session_id)
        yield Expected("checkpoint_queue", at, "session_id_digest", key_digest(session_id))
    is_object = isinstance(queue, JsonObject)
    items = queue.get("items", []) if is_object else queue
    if not isinstance(items, list):
        return
    yield Expected("checkpoint_queue", at, "shape", "object" if is_object else "list")
    yield Expected("checkpoint_queue", at, "queue_depth", len(items))
    yield Expected("checkpoint_queue", at, "is_active", queue.flag("is_active") if is_object else None)
    for item_position, item in enumerate(items):
        if isinstance(item, JsonObject):
            item_at = (("checkpoint_id", rowid), ("queue_position", position), ("position", item_position))
            yield Expected("checkpoint_queue_item", item_at, "request_id", item.text("request_id"))
            queued_at = parsed_time(item.text("timestamp"))
            yield Expected("checkpoint_queue_item", item_at, "queued_at", queued_at)


def _completion_facts(rowid: int, position: int, request_id: str, completion: Any) -> Iterator[Expected]:
    at = (("checkpoint_id", rowid), ("position", position))
    if key_text(request_id) is not None:
        yield Expected("checkpoint_request", at, "request_id", request_id)
        yield Expected("checkpoint_request", at, "request_id_digest", key_digest(request_id))
    if not isinstance(completion, JsonObject):
        return
    for name in ("session_id", "agent_id", "status", "error"):
        yield Expected("checkpoint_request", at, name, completion.text(name))
    for name in ("queued_at", "started_at", "completed_at"):
        yield Expected("checkpoint_request", at, name, parsed_time(completion.text(name)))


# --- judging a target ---------------------------------------------------------------------------

FACTS = {"checkpoints": checkpoint_facts, "mcp_sessions": session_facts}


def fact_problems(source_rows: dict[str, list[LegacyRow]], contents: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every fact the blobs state that the target's rows (read with plain SQL) do not hold. Rows
    the target quarantined are skipped: `quarantine-is-total` holds them to their own account."""
    quarantined = {(row["legacy_table"], row["source_rowid"]) for row in contents.get("ksi_quarantine", [])}
    indexed = {table: _by_key(table, rows) for table, rows in _tools_by_session_rowid(contents).items()}
    problems = []
    for legacy_table, rows in source_rows.items():
        for row in rows:
            if (legacy_table, row[0]) in quarantined:
                continue
            for fact in FACTS[legacy_table](row):
                found = indexed.get(fact.table, {}).get(frozenset(fact.key))
                if found is None:
                    problems.append(f"{fact.table} {dict(fact.key)}: no such row (from {legacy_table} rowid {row[0]})")
                elif _cell(found[fact.column]) != _cell(fact.value):
                    problems.append(
                        f"{fact.table} {dict(fact.key)}.{fact.column}: {found[fact.column]!r}, "
                        f"the blob says {fact.value!r} ({legacy_table} rowid {row[0]})"
                    )
    return problems


def _tools_by_session_rowid(contents: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """A tool references its session's own id; the blob names its session by legacy rowid."""
    rowids = {row["id"]: row["legacy_rowid"] for row in contents.get("mcp_session", [])}
    tools = [{**row, "session_rowid": rowids.get(row["session_id"])} for row in contents.get("mcp_session_tool", [])]
    return {**contents, "mcp_session_tool": tools}


KEY_COLUMNS = {
    "checkpoint": ("id",),
    "checkpoint_queue": ("checkpoint_id", "position"),
    "checkpoint_queue_item": ("checkpoint_id", "queue_position", "position"),
    "checkpoint_request": ("checkpoint_id", "position"),
    "mcp_session": ("legacy_rowid",),
    "mcp_session_tool": ("session_rowid", "position"),
}


def _by_key(table: str, rows: list[dict[str, Any]]) -> dict[frozenset, dict[str, Any]]:
    columns = KEY_COLUMNS.get(table, ())
    return {frozenset((column, row[column]) for column in columns): row for row in rows}


def _cell(value: Any) -> Any:
    """Booleans as 0/1 (SQLite and MySQL hand them back so), everything else as it is."""
    return int(value) if isinstance(value, bool) else value
