"""`fake_checkpoint_blob`: a `checkpoint_data` dict of one daemon era, queues and completions."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from faker import Faker

from migrator.fakes.context import QUEUE_SHAPES_BY_NAME, BlobContext, set_optional, time_value
from migrator.fakes.provider import pools_for
from migrator.fakes.values import (
    CLAUDE_TOOLS,
    MODEL_TABLE,
    ODD_TEXTS,
    PROFILES,
    STATUS_TABLE,
    add_later_keys,
    epoch_seconds,
    format_timestamp,
    hex_digits,
    odd_numbers,
    pick,
    random_moment,
    random_request_id,
    random_session_id,
    uuid4_text,
)
from migrator.formats import (
    COMPLETION_KEYS,
    COMPONENTS,
    LATER_CHECKPOINT_KEYS,
    LATER_COMPLETION_KEYS,
    LATER_ITEM_KEYS,
    LATER_QUEUE_KEYS,
    REASONS,
    QueueShape,
)


def fake_sampling(ctx: BlobContext) -> dict[str, Any]:
    """Nested numeric extras where NaN/Infinity, -0.0, 1.0 vs 1 and huge ints turn up."""
    odd = odd_numbers(ctx.r)
    return {
        "temperature": pick(ctx.r, odd),
        "top_p": pick(ctx.r, odd),
        "seed": 2**64 + ctx.r.getrandbits(48),
        "score": pick(ctx.r, (float("nan"), float("inf"), float("-inf"), -0.0)),
        "weights": [pick(ctx.r, odd) for _ in range(ctx.r.randint(0, 4))],
    }


def fake_metadata(ctx: BlobContext) -> dict[str, Any]:
    """Free-form metadata with localized keys, odd strings and nested containers."""
    r = ctx.r
    meta: dict[str, Any] = {}
    for _ in range(r.randint(0, 4)):
        meta[pick(r, ctx.pools.words)] = pick(r, ctx.pools.words)
    if r.random() < 0.3:
        meta["note"] = pick(r, ODD_TEXTS)
    if r.random() < 0.2:
        meta["tags"] = [pick(r, ctx.pools.words) for _ in range(r.randint(0, 3))]
    if r.random() < 0.1:
        meta["nested"] = {
            "empty_list": [],
            "empty_dict": {},
            "none": None,
            "flag": False,
        }
    return meta


def _request_data(ctx: BlobContext, request_id: str, session_id: str, agent_id: str) -> dict[str, Any]:
    """The completion request as sent with completion:async (the `data` of a queue item)."""
    r = ctx.r
    pools = ctx.pools
    data: dict[str, Any] = {}
    set_optional(ctx, data, "prompt", pick(r, pools.prompts), 0.97)
    set_optional(ctx, data, "model", pick(r, MODEL_TABLE), 0.95)
    set_optional(ctx, data, "agent_id", agent_id, 0.9)
    # A new conversation has no claude session yet, so session_id is often null.
    data["session_id"] = session_id if r.random() < 0.75 else None
    if r.random() < 0.8:
        data["priority"] = pick(r, ("normal", "normal", "high", "low", "critical", 0, 1, 5, 1.0))
    if r.random() < 0.3:
        data["request_id"] = request_id
    if r.random() < 0.2:
        data["temperature"] = pick(r, (1, 1.0, 0.7, 0.0, -0.0, 0.2))
    if r.random() < 0.15:
        data["max_tokens"] = pick(r, (4096, 8192, 1024.0, 200000))
    if r.random() < 0.1:
        data["stream"] = r.random() < 0.5
    if r.random() < 0.25:
        data["extra_body"] = _extra_body(ctx, session_id)
    if r.random() < 0.15:
        data["metadata"] = fake_metadata(ctx)
    if r.random() < 0.04:
        data["sampling"] = fake_sampling(ctx)
    if r.random() < 0.05:
        data["conversation_lock"] = {
            "enabled": True,
            "timeout": pick(r, (300, 300.0, 1e3)),
        }
    return data


def _extra_body(ctx: BlobContext, session_id: str) -> dict[str, Any]:
    r = ctx.r
    ksi: dict[str, Any] = {"conversation_id": session_id}
    if r.random() < 0.6:
        ksi["tools"] = r.sample(CLAUDE_TOOLS, r.randint(0, 5))
    if r.random() < 0.3:
        ksi["agent_config"] = {
            "profile": pick(r, PROFILES),
            "sandbox": r.random() < 0.5,
        }
    if r.random() < 0.2:
        ksi["mcp_config_path"] = f"var/tmp/mcp_configs/{hex_digits(r, 8)}.json"
    return {"ksi": ksi}


def _original_event(ctx: BlobContext, data: dict[str, Any], agent_id: str) -> Any:
    r = ctx.r
    roll = r.random()
    if roll < 0.05:
        return "completion:async"  # some paths kept only the event name
    if roll < 0.10:
        return None
    event: dict[str, Any] = {"event": "completion:async", "data": data}
    if r.random() < 0.8:
        event["context"] = {
            "_event_id": uuid4_text(r),
            "_correlation_id": uuid4_text(r) if r.random() < 0.7 else None,
            "_agent_id": agent_id,
            "_client_id": pick(r, ("ksi-cli", "chat_textual", "mcp", None)),
        }
    if r.random() < 0.3:
        event["timestamp"] = epoch_seconds(ctx.moment)
    return event


# The daemon's key order, and the one a later completion service wrote (status and data first).
_LATER_FIRST = ("status", "session_id", "agent_id", "data")
_COMPLETION_ORDERS: tuple[tuple[str, ...], ...] = (
    COMPLETION_KEYS,
    (*_LATER_FIRST, *(key for key in COMPLETION_KEYS if key not in _LATER_FIRST)),
)
_LATER_COMPLETION_RATES = {"retry_count": 0.15, "provider": 0.12, "max_retries": 0.04, "result_summary": 0.03}


def _completion(ctx: BlobContext, request_id: str, session_id: str, agent_id: str) -> dict[str, Any]:
    """One `active_completions` entry; any key may be missing or null."""
    r = ctx.r
    status = pick(r, STATUS_TABLE)
    queued = ctx.earlier(ctx.moment, 3600)
    started = ctx.later(queued, 120)
    finished = ctx.later(started, 600)
    data = _request_data(ctx, request_id, session_id, agent_id)
    values: dict[str, Any] = {
        "session_id": session_id,
        "agent_id": agent_id,
        "status": status,
        "queued_at": time_value(ctx, queued),
        "started_at": None if status == "queued" else time_value(ctx, started),
        "completed_at": time_value(ctx, finished) if status in ("completed", "failed", "cancelled") else None,
        "error": pick(r, ctx.pools.errors) if status == "failed" else None,
        "data": data,
        "original_event": _original_event(ctx, data, agent_id),
    }
    order = pick(r, _COMPLETION_ORDERS) if ctx.era.later_keys else COMPLETION_KEYS
    completion: dict[str, Any] = {}
    for key in order:
        set_optional(
            ctx,
            completion,
            key,
            values[key],
            0.97 if key in ("status", "data") else 0.9,
        )
    if ctx.era.later_keys:
        _add_later_completion_keys(ctx, completion)
    return completion


def _add_later_completion_keys(ctx: BlobContext, completion: dict[str, Any]) -> None:
    r = ctx.r
    summary = {"result_summary": lambda: {"tokens": pick(r, odd_numbers(r)), "cost_usd": 0.0123}}
    add_later_keys(r, completion, LATER_COMPLETION_KEYS, 0.05, rates=_LATER_COMPLETION_RATES, values=summary)


def random_count(r: random.Random, zero: float, high: int) -> int:
    """0 with probability `zero`, else skewed towards small values up to `high`."""
    if r.random() < zero:
        return 0
    return 1 + int(r.random() ** 2 * high)


def _queue_item(ctx: BlobContext, request_id: str, data: dict[str, Any], shape: QueueShape) -> dict[str, Any]:
    """One queued request with `shape`'s item keys; a queueing time only where the shape has one."""
    values = {"request_id": request_id, "data": data}
    item: dict[str, Any] = {}
    for key in shape.item_keys:
        if key == "timestamp":
            if ctx.r.random() < 0.97:
                item[key] = ctx.stamp(ctx.earlier(ctx.moment, 1800))
        else:
            item[key] = values[key]
    add_later_keys(ctx.r, item, LATER_ITEM_KEYS, 0.03)
    return item


def _queue(
    ctx: BlobContext, session_id: str, completions: dict[str, dict[str, Any]], agent_id: str
) -> list[dict[str, Any]] | dict[str, Any]:
    """One session's queue in one of the era's shapes; order matters."""
    r = ctx.r
    shape = QUEUE_SHAPES_BY_NAME[pick(r, ctx.era.queue_shapes)]
    # Requests of this session that are also in active_completions (with their data).
    in_flight = [
        rid for rid, c in completions.items() if c.get("session_id") == session_id and isinstance(c.get("data"), dict)
    ]
    items: list[dict[str, Any]] = []
    for _ in range(random_count(r, 0.2, 6)):
        if in_flight and r.random() < 0.35:
            # The same request sits in the queue and in active_completions.
            rid = pick(r, in_flight)
            items.append(_queue_item(ctx, rid, completions[rid]["data"], shape))
        else:
            rid = random_request_id(r)
            items.append(_queue_item(ctx, rid, _request_data(ctx, rid, session_id, agent_id), shape))
        if r.random() < 0.06:
            # Requests were sometimes queued twice (client retry).
            items.append(dict(pick(r, items)))
    if shape.keys is None:
        return items
    return _queue_object(ctx, shape, items, in_flight)


def _queue_object(
    ctx: BlobContext, shape: QueueShape, items: list[dict[str, Any]], in_flight: list[str]
) -> dict[str, Any]:
    r = ctx.r
    is_active = r.random() < 0.5
    active: str | None = None
    if is_active:
        active = pick(r, in_flight) if in_flight and r.random() < 0.7 else random_request_id(r)
    values = {"items": items, "is_active": is_active, "active_request": active}
    queue: dict[str, Any] = {}
    for key in shape.keys or ():
        if key != "active_request" or r.random() < 0.95:
            queue[key] = values[key]
    add_later_keys(r, queue, LATER_QUEUE_KEYS, 0.03, values={"last_activity": lambda: ctx.stamp(ctx.moment)})
    return queue


def _session_ids_for(ctx: BlobContext) -> list[str]:
    """A few session ids, often reused across checkpoints (a session outlives a checkpoint)."""
    r = ctx.r
    ids: dict[str, None] = {}  # a dict, not a set: iteration order must not depend on hashing
    for _ in range(1 + int(r.random() ** 2 * 7)):
        sid = pick(r, ctx.pools.session_ids) if r.random() < 0.6 else random_session_id(r)
        ids[sid] = None
    return list(ids)


def fake_checkpoint_blob(fake: Faker, rng: random.Random, *, when: datetime | None = None) -> dict[str, Any]:
    """A `checkpoint_data` dict in any shape the daemon wrote: the keys of one daemon era in order.

    `fake` must carry `KsiProvider` (use `make_faker`). `when` is the checkpoint's naive UTC
    moment; it is drawn from `rng` when omitted.
    """
    ctx = BlobContext(pools_for(fake), rng, when if when is not None else random_moment(rng))
    session_ids = _session_ids_for(ctx)
    completions: dict[str, dict[str, Any]] = {}
    for _ in range(random_count(rng, 0.25, 14)):
        rid = random_request_id(rng)
        agent = pick(rng, ctx.pools.agent_ids)
        completions[rid] = _completion(ctx, rid, pick(rng, session_ids), agent)
    queues: dict[str, Any] = {}
    for sid in session_ids if rng.random() < 0.7 else []:
        queues[sid] = _queue(ctx, sid, completions, pick(rng, ctx.pools.agent_ids))
    values: dict[str, Callable[[], Any]] = {
        "timestamp": lambda: format_timestamp(ctx.moment, ctx.style, ctx.shift),
        "session_queues": lambda: queues,
        "active_completions": lambda: completions,
        "components": lambda: {name: rng.random() < 0.9 for name in COMPONENTS},
    }
    blob = {key: values[key]() for key in ctx.era.keys}
    _add_checkpoint_extras(ctx, blob)
    return blob


def _add_checkpoint_extras(ctx: BlobContext, blob: dict[str, Any]) -> None:
    """`reason` (in any era) and keys from later daemon versions, appended as the daemon did."""
    r = ctx.r
    if r.random() < 0.45:
        blob["reason"] = pick(r, ("shutdown", "shutdown", *REASONS))
    if not ctx.era.later_keys or r.random() >= 0.15:
        return
    values: dict[str, Callable[[], Any]] = {
        "hostname": lambda: pick(r, ctx.pools.hosts),
        "pid": lambda: r.randint(100, 4_000_000),
        "stats": lambda: {"sessions": len(blob.get("session_queues", ())), "duration_ms": r.random() * 50},
    }
    later = [key for key in LATER_CHECKPOINT_KEYS if key.name != "reason"]
    for key in r.sample(later, r.randint(1, 3)):
        make = values.get(key.name)
        blob[key.name] = make() if make is not None else pick(r, key.examples)
