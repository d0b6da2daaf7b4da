"""`checkpoint_data`: the daemon eras' top-level keys, queue shapes, completions, later keys."""

from __future__ import annotations

from dataclasses import dataclass

from migrator.formats.keys import LaterKey


@dataclass(frozen=True)
class QueueShape:
    """One shape of a `session_queues` value, and the keys of the items it queues."""

    name: str
    doc: str
    keys: tuple[str, ...] | None  # the object's keys in order; None for a plain JSON array
    item_keys: tuple[str, ...]


QUEUE_SHAPES: tuple[QueueShape, ...] = (
    QueueShape(
        "list",
        "8a0bb1b: a plain array of the queued requests, oldest first.",
        None,
        ("request_id", "data"),
    ),
    QueueShape(
        "object",
        "Later daemons: the items (each with its queueing time), whether the session is busy, and on what.",
        ("items", "is_active", "active_request"),
        ("request_id", "data", "timestamp"),
    ),
    QueueShape(
        "object_without_active_request",
        "bf15176's collect_checkpoint_data: items and is_active only.",
        ("items", "is_active"),
        ("request_id", "data", "timestamp"),
    ),
)

COMPONENTS: tuple[str, ...] = (
    "queue_manager",
    "provider_manager",
    "session_manager",
    "token_tracker",
    "retry_manager",
)
"""bf15176's `components`: whether each part of the completion service was running (booleans)."""


@dataclass(frozen=True)
class Era:
    """The `checkpoint_data` one daemon version wrote: top-level keys in order, and queue shapes."""

    name: str
    doc: str
    keys: tuple[str, ...]
    queue_shapes: tuple[str, ...]  # every one of them appears in one checkpoint of this era
    later_keys: bool  # keys of later versions (LATER_CHECKPOINT_KEYS, LATER_COMPLETION_KEYS) follow


CHECKPOINT_ERAS: tuple[Era, ...] = (
    Era(
        "8a0bb1b",
        "The older checkpoint.py: the state with its own `timestamp`, list-shaped queues.",
        ("timestamp", "session_queues", "active_completions"),
        ("list",),
        False,
    ),
    Era(
        "bf15176",
        "State collected from the completion service: no `timestamp` key, and `components`.",
        ("session_queues", "active_completions", "components"),
        ("object_without_active_request",),
        False,
    ),
    Era(
        "later",
        "Later versions: `timestamp` again, object-shaped queues, and keys of their own appended.",
        ("timestamp", "session_queues", "active_completions"),
        ("object",),
        True,
    ),
    Era(
        "rolling_upgrade",
        "A daemon upgraded while sessions were queued: list and object queues in one checkpoint.",
        ("timestamp", "session_queues", "active_completions"),
        ("list", "object"),
        True,
    ),
)

REASONS: tuple[str, ...] = ("manual", "shutdown", "dev")
"""Values of `reason`, which callers that had one stored beside the state, in any era."""

LATER_CHECKPOINT_KEYS: tuple[LaterKey, ...] = (
    LaterKey("reason", "Why the checkpoint was taken; in any era (the daemon itself never wrote it).", REASONS),
    LaterKey("checkpoint_version", "A format version, as a number or a string.", (2, 2.0, "2")),
    LaterKey("daemon_version", "The writing daemon's version.", ("0.9.3", "1.0.0", "1.1.0-dev")),
    LaterKey("hostname", "The host that wrote it (snapshots merged from several hosts).", ("ksi-1", "mbp.local")),
    LaterKey("pid", "The writing daemon's process id.", (4242, 3_999_999)),
    LaterKey("stats", "Counts at checkpoint time.", ({"sessions": 2, "duration_ms": 1.5},)),
    LaterKey("paused_sessions", "Sessions paused at checkpoint time.", ([], ["sess_1"])),
    LaterKey(
        "features",
        "The optional features the daemon ran with.",
        ({"retry": True, "providers": ["claude-cli", "litellm"], "x": None},),
    ),
)

LATER_QUEUE_KEYS: tuple[LaterKey, ...] = (
    LaterKey("last_activity", "When the queue last moved (a timestamp text).", ("2025-06-20T23:17:27.832348Z",)),
)

LATER_ITEM_KEYS: tuple[LaterKey, ...] = (
    LaterKey("priority", "The request's priority, copied onto its queue item.", ("normal", "high", 0, 5)),
    LaterKey("retries", "How often the request was queued again.", (0, 1, 2)),
)

COMPLETION_KEYS: tuple[str, ...] = (
    "session_id",
    "agent_id",
    "status",
    "queued_at",
    "started_at",
    "completed_at",
    "error",
    "data",
    "original_event",
)
"""The keys of an `active_completions` entry, as the daemon wrote them; any may be missing or null."""

STATUSES: tuple[str, ...] = ("queued", "processing", "completed", "failed", "cancelled")
"""Values of a completion's `status`."""

LATER_COMPLETION_KEYS: tuple[LaterKey, ...] = (
    LaterKey("retry_count", "Retries so far.", (0, 1, 2, 3, 1.0)),
    LaterKey("provider", "The completion provider.", ("claude-cli", "litellm", "anthropic", "openai", None)),
    LaterKey("max_retries", "The retry limit.", (3,)),
    LaterKey("result_summary", "Token and cost figures of the result.", ({"tokens": 2**64 + 1, "cost_usd": 0.0123},)),
)
