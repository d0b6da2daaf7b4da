"""`fake_session_blob`: a `session_data` dict in each session shape and tool form."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from faker import Faker

from migrator.fakes.checkpoint_blobs import fake_metadata, fake_sampling, random_count
from migrator.fakes.context import BlobContext
from migrator.fakes.provider import pools_for
from migrator.fakes.values import (
    ALL_TOOLS,
    CLAUDE_TOOLS,
    KSI_TOOLS,
    PROFILES,
    add_later_keys,
    catalogue_weighted,
    format_timestamp,
    hex_digits,
    pick,
    random_moment,
)
from migrator.formats import (
    LATER_SESSION_KEYS,
    SESSION_SHAPES,
    SessionShape,
    by_name,
)


def _tools_missing(r: random.Random) -> bool:
    """Some writers left `tools` out entirely."""
    return r.random() < 0.04


def _tool_names(r: random.Random, pool: Sequence[str]) -> list[str]:
    """A tools list: sometimes empty, sometimes with a duplicate; order kept as chosen."""
    if r.random() < 0.08:
        return []
    names = r.sample(pool, r.randint(1, min(12, len(pool))))
    if r.random() < 0.06:
        names.insert(r.randint(0, len(names)), pick(r, names))
    return names


def _tools(ctx: BlobContext, shape: SessionShape) -> list[Any]:
    """A tools list in the shape's forms: bare names (plan); name-only dicts, or (sometimes)
    full tool schemas, or occasionally a mix (daemon)."""
    r = ctx.r
    names = _tool_names(r, ALL_TOOLS)
    forms = shape.tool_forms
    if len(forms) == 1:
        chosen = [forms[0]] * len(names)
    else:
        roll = r.random()
        mixed = [pick(r, forms) for _ in names]
        chosen = [forms[0]] * len(names) if roll < 0.80 else [forms[1]] * len(names) if roll < 0.95 else mixed
    return [_tool(ctx, name, form) for name, form in zip(names, chosen, strict=True)]


def _tool(ctx: BlobContext, name: str, form: str) -> Any:
    if form == "name":
        return name
    if form == "name-only":
        return ctx.pools.name_only_tools[name]
    if form == "schema":
        return pick(ctx.r, ctx.pools.schemas)
    raise ValueError(f"no builder for the tool form {form!r}")


def _agent_info(ctx: BlobContext) -> dict[str, Any]:
    r = ctx.r
    info: dict[str, Any] = {
        "allowed_events": [pick(r, ctx.pools.event_names) for _ in range(random_count(r, 0.1, 20))],
        "allowed_claude_tools": r.sample(CLAUDE_TOOLS, r.randint(0, 8)),
    }
    roll = r.random()
    if roll < 0.85:
        info["profile"] = pick(r, PROFILES)
    elif roll < 0.92:
        info["profile"] = None
    elif roll < 0.96:
        info["profile"] = {
            "name": pick(r, PROFILES),
            "version": "1.0.0",
            "model": "sonnet",
        }
    if r.random() < 0.3:
        info["permissions"] = {"level": pick(r, ("restricted", "standard", "trusted"))}
    if r.random() < 0.2:
        info["sandbox_dir"] = f"var/sandbox/agents/{hex_digits(r, 8)}"
    if r.random() < 0.1:
        info["spawned_at"] = ctx.stamp(ctx.earlier(ctx.moment, 600))
    if r.random() < 0.05:
        info["limits"] = fake_sampling(ctx)
    if r.random() < 0.05:
        info["metadata"] = fake_metadata(ctx)
    return info


def _permissions(ctx: BlobContext) -> dict[str, Any]:
    """ee6e4bc's permission:get_agent answer, or its fallback `{"allowed_tools", "profile"}`."""
    r = ctx.r
    permissions: dict[str, Any] = {
        "allowed_tools": [pick(r, ctx.pools.event_names) for _ in range(random_count(r, 0.1, 8))],
        "profile": pick(r, ("restricted", "restricted", "standard", "trusted", "researcher")),
    }
    if r.random() < 0.3:
        permissions["allowed_modules"] = r.sample(
            ("state", "agent", "message", "system", "completion"), r.randint(0, 3)
        )
    if r.random() < 0.2:
        permissions["disallowed_tools"] = r.sample(KSI_TOOLS, r.randint(0, 2))
    return permissions


_SESSION_TABLE = catalogue_weighted(by_name(SESSION_SHAPES), {"plan": 35, "daemon": 55, "permissions": 10}, 10)
_SESSIONS: dict[str, SessionShape] = by_name(SESSION_SHAPES)
_LATER_SESSION_RATES = {"thin_handshake": 0.1, "client_info": 0.04, "protocol_version": 0.03}


def _session(ctx: BlobContext, shape: SessionShape, agent_id: str | None, conversation_id: str) -> dict[str, Any]:
    """A session blob with `shape`'s keys in order (tools sometimes left out), later keys after."""
    r = ctx.r
    values: dict[str, Callable[[], Any]] = {
        "agent_id": lambda: agent_id,
        "conversation_id": lambda: conversation_id,
        "agent_info": lambda: _agent_info(ctx),
        "permissions": lambda: _permissions(ctx),
        "tools": lambda: _tools(ctx, shape),
        "thin_handshake": lambda: r.random() < 0.85,
        "created_at": lambda: format_timestamp(ctx.moment, ctx.style, ctx.shift),
        "created": lambda: ctx.stamp(ctx.moment),
    }
    blob: dict[str, Any] = {}
    for key in shape.keys:
        if (key == "tools" and _tools_missing(r)) or (key == "thin_handshake" and r.random() >= 0.97):
            continue
        blob[key] = values[key]()
    later = (key for key in LATER_SESSION_KEYS if key.name not in shape.keys)
    add_later_keys(
        r, blob, later, 0.03, rates=_LATER_SESSION_RATES, values={"thin_handshake": lambda: r.random() < 0.5}
    )
    return blob


def fake_session_blob(
    fake: Faker,
    rng: random.Random,
    agent_id: str,
    conversation_id: str,
    *,
    when: datetime | None = None,
) -> dict[str, Any]:
    """A `session_data` dict in any of the catalogue's session shapes (about a third the plan's).

    `when` is the session's naive UTC creation moment; it is drawn from `rng` when omitted.
    An `"unknown"` agent is sometimes stored as null, as the daemon did when it had none.
    """
    ctx = BlobContext(pools_for(fake), rng, when if when is not None else random_moment(rng))
    stored_agent: str | None = agent_id
    if agent_id == "unknown" and rng.random() < 0.4:
        stored_agent = None
    return _session(ctx, _SESSIONS[pick(rng, _SESSION_TABLE)], stored_agent, conversation_id)
