"""`session_data`: the session shapes, the forms of a tool, later keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrator.formats.keys import LaterKey


@dataclass(frozen=True, eq=False)
class ToolForm:
    """One form of an element of a session's `tools` list."""

    name: str
    doc: str
    example: Any


TOOL_FORMS: tuple[ToolForm, ...] = (
    ToolForm("name", "The plan's form: the tool's name as a bare string.", "Read"),
    ToolForm("name-only", "What dynamic_server.py saved: the name alone.", {"name": "ksi_system_health"}),
    ToolForm(
        "schema",
        "A full MCP tool description, as some writers kept it.",
        {"name": "ksi_send_event", "description": "Send an event", "inputSchema": {"type": "object"}},
    ),
)

LATER_TOOL_KEYS: tuple[LaterKey, ...] = (
    LaterKey("annotations", "MCP tool hints, on full tool descriptions.", ({"readOnlyHint": True}, {"title": "Read"})),
)


@dataclass(frozen=True)
class SessionShape:
    """One shape of `session_data`: its keys in order, and the forms its `tools` hold."""

    name: str
    doc: str
    keys: tuple[str, ...]
    tool_forms: tuple[str, ...]


SESSION_SHAPES: tuple[SessionShape, ...] = (
    SessionShape(
        "plan",
        "The design plan's shape: tool names, thin_handshake, created_at in `...Z`.",
        ("agent_id", "tools", "thin_handshake", "created_at"),
        ("name",),
    ),
    SessionShape(
        "daemon",
        "775e9c9's dynamic_server.py: the agent's `agent_info`, tools saved by name (or in full).",
        ("agent_id", "conversation_id", "agent_info", "tools", "created"),
        ("name-only", "schema"),
    ),
    SessionShape(
        "permissions",
        "ee6e4bc's dynamic_server.py: a `permissions` object where 775e9c9 has `agent_info`.",
        ("agent_id", "conversation_id", "permissions", "tools", "created"),
        ("name-only", "schema"),
    ),
)

LATER_SESSION_KEYS: tuple[LaterKey, ...] = (
    LaterKey("thin_handshake", "On daemon-shaped sessions too, after `created`.", (True, False)),
    LaterKey("client_info", "The MCP client.", ({"name": "claude-code", "version": "1.0.31"},)),
    LaterKey("protocol_version", "The MCP protocol version.", ("2024-11-05",)),
)
