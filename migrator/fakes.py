"""Fake KSI data: a faker provider and builders of the JSON blobs the daemon stored.

Two layers:

* `KsiProvider` adds `ksi_*` methods to a Faker, one realistic value per call.
* `fake_checkpoint_blob` and `fake_session_blob` assemble whole blobs in every shape of the
  catalogue of legacy formats (`migrator.formats`): each daemon era, queue and session shape,
  tool form, later key and timestamp spelling. They draw faker values once into pools (one set
  of pools per Faker) and then pick from them with a caller-supplied `random.Random`, because
  calling Faker for every value is far too slow for million-row snapshots.

Everything is deterministic given the Faker seed and the state of the `random.Random`.
Dicts are built in the order the daemon would have written them and are never sorted,
because key order is part of what a lossless migration must keep.
"""

from __future__ import annotations

import random
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from faker import Faker
from faker.providers import BaseProvider

from migrator.formats import (
    CHECKPOINT_ERAS,
    COMPLETION_KEYS,
    COMPONENTS,
    LATER_CHECKPOINT_KEYS,
    LATER_COMPLETION_KEYS,
    LATER_ITEM_KEYS,
    LATER_QUEUE_KEYS,
    LATER_SESSION_KEYS,
    LATER_TOOL_KEYS,
    QUEUE_SHAPES,
    REASONS,
    SESSION_SHAPES,
    STATUSES,
    TIMESTAMP_NUMBERS,
    TIMESTAMP_TEXTS,
    Era,
    LaterKey,
    QueueShape,
    SessionShape,
    by_name,
)

T = TypeVar("T")

# Weighted locales: most prompts are English, the rest exercise non-Latin scripts and RTL.
LOCALES: dict[str, float] = {
    "en_US": 0.52,
    "de_DE": 0.08,
    "ja_JP": 0.08,
    "ru_RU": 0.08,
    "ar_AA": 0.08,
    "zh_CN": 0.08,
    "hi_IN": 0.08,
}

# Fixed base date (never the wall clock) so that the same seed gives the same text.
BASE_DATE = datetime(2025, 6, 1, 0, 0, 0)
SPAN = timedelta(days=120)

# Host UTC offsets applied to "naive local" texts, so they disagree with the UTC ones.
LOCAL_SHIFTS: tuple[timedelta, ...] = tuple(timedelta(minutes=m) for m in (0, 0, 0, 120, 60, -240, -420, 330, 540, 480))


def weighted(options: dict[T, int]) -> tuple[T, ...]:
    """Expand {value: weight} into a tuple for `rng.choice`, much cheaper than `choices`."""
    return tuple(value for value, weight in options.items() for _ in range(weight))


def catalogue_weighted(names: Iterable[str], weights: dict[str, int], default: int) -> tuple[str, ...]:
    """`weighted` over every name of a catalogue group; a name without a weight gets `default`,
    so a shape added to `migrator.formats` is drawn without a change here."""
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"weights for {sorted(unknown)}, which the catalogue does not list")
    return weighted({name: weights.get(name, default) for name in names})


_TEXT_SPELLINGS = by_name(TIMESTAMP_TEXTS)
_NUMBER_SPELLINGS = by_name(TIMESTAMP_NUMBERS)

# Any code path's spelling; the daemon's own timestamp_utc() dominates where it wrote the value.
_STYLE_TABLE = catalogue_weighted(
    _TEXT_SPELLINGS, {"utc_z": 55, "utc_z_whole": 5, "offset": 15, "offset_whole": 3, "naive": 17, "naive_whole": 5}, 2
)
_DAEMON_STYLE_TABLE = catalogue_weighted(
    _TEXT_SPELLINGS, {"utc_z": 84, "utc_z_whole": 4, "offset": 7, "offset_whole": 1, "naive": 3, "naive_whole": 1}, 1
)

_STATUS_TABLE = catalogue_weighted(
    STATUSES, {"queued": 30, "processing": 25, "completed": 25, "failed": 14, "cancelled": 6}, 5
)

CLAUDE_TOOLS: tuple[str, ...] = (
    "Read", "Write", "Edit", "MultiEdit", "Bash", "Glob", "Grep", "LS", "WebFetch",
    "WebSearch", "TodoRead", "TodoWrite", "NotebookRead", "NotebookEdit", "Task",
    "exit_plan_mode",
)  # fmt: skip
KSI_TOOLS: tuple[str, ...] = (
    "ksi_system_health", "ksi_send_event", "ksi_agent_spawn", "ksi_agent_list",
    "ksi_agent_terminate", "ksi_state_get", "ksi_state_set", "ksi_completion_async",
    "ksi_completion_status", "ksi_message_publish", "ksi_discover", "ksi_composition_get",
    "ksi_observation_query", "ksi_checkpoint_status", "ksi_conversation_list",
    "mcp__ksi__ksi_send_event", "mcp__ksi__ksi_system_health",
)  # fmt: skip

EVENT_NAMES: tuple[str, ...] = (
    "completion:async", "completion:result", "completion:status", "completion:cancel",
    "completion:retry", "state:entity:create", "state:entity:update", "state:entity:get",
    "state:entity:query", "state:relationship:create", "agent:spawn", "agent:terminate",
    "agent:list", "agent:send_message", "agent:status", "message:publish",
    "message:subscribe", "system:health", "system:shutdown", "system:discover",
    "checkpoint:collect", "checkpoint:restore", "orchestration:start",
    "orchestration:terminate", "composition:get", "composition:list", "conversation:list",
    "conversation:get", "monitor:get_events", "observation:subscribe", "permission:check",
    "sandbox:create", "mcp:tools:list",
)  # fmt: skip

MODEL_NAMES: tuple[str, ...] = (
    "claude-cli/sonnet", "claude-cli/opus", "claude-cli/haiku", "sonnet", "opus",
    "claude-sonnet-4-20250514", "claude-opus-4-20250514", "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022", "claude-3-haiku-20240307", "gpt-4o", "gpt-4o-mini",
    "ollama/llama3.2", "ollama/qwen2.5-coder:7b", "gemini/gemini-1.5-pro",
)  # fmt: skip
_MODEL_TABLE = weighted({name: (12 if name.startswith("claude-cli/") else 2) for name in MODEL_NAMES})

PROFILES: tuple[str, ...] = (
    "base_single_agent", "base_multi_agent", "claude_agent_default", "system/orchestrator",
    "components/core/base_agent", "personas/analysts/data_analyst",
    "personas/developers/python_expert", "evaluations/judge", "ksi_developer",
)  # fmt: skip

_ALL_TOOLS = CLAUDE_TOOLS + KSI_TOOLS

_ROLES: tuple[str, ...] = (
    "orchestrator", "researcher", "analyst", "coordinator", "judge", "worker", "planner",
    "reviewer", "tester", "writer", "debater",
)  # fmt: skip

_FIXED_ERRORS: tuple[str, ...] = (
    "Process terminated with signal -9",
    "Daemon shutdown",
    "Daemon shutdown during processing",
    "TimeoutError: completion exceeded 300s",
    "claude CLI exited with code 1",
    "Rate limited (429): retry after 30s",
    "litellm.APIConnectionError: Connection refused",
    "Session not found: conversation lock expired",
    "KeyError: 'prompt'",
    "",
)

# Strings that break naive text handling: combining marks, joiners, bidi controls, line
# separators, NUL, BOM, astral characters, and one lone surrogate (valid JSON via \ud83d).
ODD_TEXTS: tuple[str, ...] = (
    "",
    " ",
    "e\u0301t\u00e9",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\u202eevil RTL override\u202c",
    "line\u2028separator\u2029paragraph",
    "tab\tnew\nline\r\ncr",
    'quote " and backslash \\ and slash /',
    "nul\x00byte",
    "del\x7fchar",
    "\ufeffbom first",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c",
    "\U0010ffff",
    "lone \ud83d surrogate",
    "</script><!--",
    "null",
    "NaN",
    "{}",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947",
)


def _odd_numbers(r: random.Random) -> tuple[Any, ...]:
    """Numbers that JSON tooling mangles: NaN/Infinity, -0.0, 1.0 vs 1, > 2**64, extremes."""
    return (
        float("nan"),
        float("inf"),
        float("-inf"),
        -0.0,
        0.0,
        1.0,
        1,
        0,
        2**64 + r.getrandbits(40),
        -(2**70) - r.getrandbits(30),
        10**30 + r.getrandbits(20),
        2**63,
        -(2**63) - 1,
        123456789012345678,
        1e-300,
        5e-324,
        1.7976931348623157e308,
        0.1 + 0.2,
        1e16,
        True,
    )


def pick(r: random.Random, values: Sequence[T]) -> T:
    """`rng.choice`, named so call sites read as "pick one of these"."""
    return values[int(r.random() * len(values))]


def hex_digits(r: random.Random, n: int) -> str:
    return f"{r.getrandbits(4 * n):0{n}x}"


def uuid4_text(r: random.Random) -> str:
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


def random_agent_id(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.40:
        return f"agent_{hex_digits(r, 8)}"
    if roll < 0.70:
        return f"{pick(r, _ROLES)}_{hex_digits(r, 8)}"
    if roll < 0.80:
        return f"{pick(r, _ROLES)}-{r.randint(1, 999)}"
    if roll < 0.90:
        return uuid4_text(r)
    return f"claude_{hex_digits(r, 6)}"


def random_conversation_id(r: random.Random) -> str:
    """Conversation ids; about a fifth contain ':' so session keys split ambiguously."""
    roll = r.random()
    if roll < 0.45:
        return uuid4_text(r)
    if roll < 0.62:
        return f"conv_{hex_digits(r, 12)}"
    if roll < 0.72:
        return f"orchestration_{hex_digits(r, 8)}_{r.randint(0, 99)}"
    if roll < 0.78:
        return f"slack:T{hex_digits(r, 9).upper()}:C{hex_digits(r, 9).upper()}"
    if roll < 0.86:
        return f"thread:{uuid4_text(r)}:{r.randint(0, 500)}"
    if roll < 0.92:
        return f"claude-code:{uuid4_text(r)}"
    return f"ksi:{hex_digits(r, 8)}:{r.randint(0, 10**6)}"


def random_session_key(r: random.Random) -> str:
    agent = "unknown" if r.random() < 0.07 else random_agent_id(r)
    return f"{agent}:{random_conversation_id(r)}"


def random_request_id(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.5:
        return uuid4_text(r)
    if roll < 0.8:
        return f"req_{hex_digits(r, 12)}"
    if roll < 0.9:
        return f"completion_{hex_digits(r, 8)}"
    return hex_digits(r, 32)


def random_session_id(r: random.Random) -> str:
    roll = r.random()
    if roll < 0.6:
        return uuid4_text(r)  # claude CLI session ids are UUIDs
    if roll < 0.85:
        return f"sess_{hex_digits(r, 12)}"
    if roll < 0.95:
        return f"session_{r.randint(1, 10**6)}"
    return f"ksi-{hex_digits(r, 8)}"


def random_moment(r: random.Random, start: datetime = BASE_DATE, span: timedelta = SPAN) -> datetime:
    """A naive UTC datetime with microseconds, derived only from `r` (never the clock)."""
    micros = int(r.random() * span.total_seconds() * 1_000_000)
    return start + timedelta(microseconds=micros)


def format_timestamp(moment: datetime, style: str, local_shift: timedelta = timedelta(0)) -> str:
    """Render a naive UTC `moment` in one of the catalogue's text spellings (`TIMESTAMP_TEXTS`).

    `isoformat()` drops the microseconds when they are zero, exactly as the daemon's text did;
    the `*_whole` spellings force that case so it shows up often enough to be tested.
    """
    spelling = _TEXT_SPELLINGS.get(style)
    if spelling is None:
        raise ValueError(f"unknown timestamp style {style!r}; expected one of {tuple(_TEXT_SPELLINGS)}")
    return cast(str, spelling.render(moment, local_shift))  # a text spelling renders text


def epoch_seconds(moment: datetime) -> float:
    """`time.time()`-style float for a naive UTC moment (some daemon paths stored these)."""
    return cast(float, _NUMBER_SPELLINGS["epoch"].render(moment, timedelta(0)))


def epoch_number(moment: datetime, r: random.Random) -> float | int:
    """A time as one of the catalogue's number spellings (`TIMESTAMP_NUMBERS`)."""
    return cast(float | int, pick(r, TIMESTAMP_NUMBERS).render(moment, timedelta(0)))


class KsiProvider(BaseProvider):
    """Faker provider of single KSI values: ids, prompts, tools, events, timestamps."""

    def ksi_agent_id(self) -> str:
        return random_agent_id(self.generator.random)

    def ksi_conversation_id(self) -> str:
        return random_conversation_id(self.generator.random)

    def ksi_session_key(self) -> str:
        return random_session_key(self.generator.random)

    def ksi_request_id(self) -> str:
        return random_request_id(self.generator.random)

    def ksi_session_id(self) -> str:
        return random_session_id(self.generator.random)

    def ksi_model_name(self) -> str:
        return pick(self.generator.random, _MODEL_TABLE)

    def ksi_status(self) -> str:
        return pick(self.generator.random, _STATUS_TABLE)

    def ksi_event_name(self) -> str:
        r = self.generator.random
        if r.random() < 0.04:
            # Plugin-defined events can carry localized words (non-ASCII event names).
            return f"custom:{self.generator.word()}:{self.generator.word()}"
        return pick(r, EVENT_NAMES)

    def ksi_tool_name(self) -> str:
        r = self.generator.random
        return pick(r, CLAUDE_TOOLS) if r.random() < 0.5 else pick(r, KSI_TOOLS)

    def ksi_timestamp(self, style: str | None = None) -> str:
        r = self.generator.random
        chosen = style if style is not None else pick(r, _STYLE_TABLE)
        return format_timestamp(random_moment(r), chosen, pick(r, LOCAL_SHIFTS))

    def ksi_prompt(self) -> str:
        """A prompt in this generator's locale, sometimes with emoji, code or odd layout."""
        r = self.generator.random
        gen = self.generator
        parts: list[str] = []
        if r.random() < 0.3:
            parts.append(pick(r, _PROMPT_PREFIXES))
        if r.random() < 0.6:
            parts.append(gen.sentence())
        else:
            parts.append(gen.paragraph(nb_sentences=r.randint(1, 5)))
        if r.random() < 0.35:
            # Names and cities are localized even where lorem text is not (hi_IN).
            parts.append(f"{gen.name()}, {gen.city()}.")
        if r.random() < 0.15:
            parts.append(gen.emoji())
        if r.random() < 0.08:
            parts.append('```python\nprint("héllo\\tworld")\n```')
        if r.random() < 0.03:
            parts.extend(gen.paragraph(nb_sentences=8) for _ in range(r.randint(3, 12)))
        separator = "\n\n" if r.random() < 0.25 else " "
        return separator.join(parts)

    def ksi_tool_schema(self) -> dict[str, Any]:
        """An MCP tool description: {"name", "description", "inputSchema": JSON Schema}."""
        r = self.generator.random
        gen = self.generator
        name = pick(r, KSI_TOOLS) if r.random() < 0.8 else pick(r, CLAUDE_TOOLS)
        properties: dict[str, Any] = {}
        for _ in range(r.randint(0, 5)):
            properties[pick(r, _PARAM_NAMES)] = self._param_schema()
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if properties and r.random() < 0.7:
            schema["required"] = list(properties)[: r.randint(1, len(properties))]
        if r.random() < 0.3:
            schema["additionalProperties"] = r.random() < 0.5
        if r.random() < 0.1:
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        tool: dict[str, Any] = {"name": name, "description": gen.sentence(), "inputSchema": schema}
        add_later_keys(r, tool, LATER_TOOL_KEYS, 0.1)
        return tool

    def _param_schema(self) -> dict[str, Any]:
        r = self.generator.random
        kind = pick(r, ("string", "string", "integer", "number", "boolean", "object", "array"))
        param: dict[str, Any] = {"type": kind, "description": self.generator.sentence()}
        if kind == "string" and r.random() < 0.3:
            param["enum"] = [pick(r, EVENT_NAMES) for _ in range(r.randint(1, 4))]
        elif kind == "number" and r.random() < 0.4:
            param["minimum"] = pick(r, (0, 0.0, -1, 1e-9))
            param["maximum"] = pick(r, (1, 1.0, 100, 2**53, 1e308))
        elif kind == "integer" and r.random() < 0.3:
            param["default"] = pick(r, (0, 1, 300, 2**64 + 1))
        elif kind == "array":
            param["items"] = {"type": "string"}
        elif kind == "object" and r.random() < 0.5:
            param["additionalProperties"] = True
        return param


_PROMPT_PREFIXES: tuple[str, ...] = (
    "Summarize the following:",
    "Translate to English:",
    "You are a helpful research agent.",
    "## Task",
    "Please analyze this and reply in JSON:",
    "Continue the conversation.",
    "Zusammenfassung bitte:",
    "\u6b21\u306e\u6587\u7ae0\u3092\u8981\u7d04\u3057\u3066\u304f\u3060\u3055\u3044\uff1a",
    "\u041e\u0442\u0432\u0435\u0442\u044c\u0442\u0435 \u043a\u0440\u0430\u0442\u043a\u043e:",
)

_PARAM_NAMES: tuple[str, ...] = (
    "event", "data", "agent_id", "profile", "prompt", "timeout", "limit", "pattern",
    "namespace", "key", "value", "recursive", "include_children", "filter", "model",
)  # fmt: skip


def make_faker(seed: int) -> Faker:
    """A multi-locale Faker with `KsiProvider`, seeded so every run draws the same values.

    Each locale gets its own seed (derived from `seed`) so that locales do not march in
    lockstep; locale selection itself uses the first locale's generator, which is seeded too.
    """
    fake = Faker(LOCALES)
    for locale, sub in fake.items():
        sub.add_provider(KsiProvider)
        fake.seed_locale(locale, f"{seed}:{locale}")
    return fake


# ---------------------------------------------------------------------------------------
# Blob builders
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pools:
    """Faker output drawn once per Faker; builders only pick from these (speed)."""

    prompts: tuple[str, ...]
    agent_ids: tuple[str, ...]
    session_ids: tuple[str, ...]
    errors: tuple[str, ...]
    schemas: tuple[dict[str, Any], ...]
    words: tuple[str, ...]
    hosts: tuple[str, ...]
    event_names: tuple[str, ...]
    # Shared, never-mutated {"name": ...} dicts for name-only tool entries.
    name_only_tools: dict[str, dict[str, str]]


_POOLS: weakref.WeakKeyDictionary[Faker, _Pools] = weakref.WeakKeyDictionary()


def _pools_for(fake: Faker) -> _Pools:
    pools = _POOLS.get(fake)
    if pools is None:
        pools = _build_pools(fake)
        _POOLS[fake] = pools
    return pools


def _build_pools(fake: Faker) -> _Pools:
    return _Pools(
        prompts=tuple(fake.ksi_prompt() for _ in range(600)),
        agent_ids=tuple(fake.ksi_agent_id() for _ in range(1500)),
        session_ids=tuple(fake.ksi_session_id() for _ in range(400)),
        errors=_FIXED_ERRORS + tuple(fake.sentence() for _ in range(30)),
        schemas=tuple(fake.ksi_tool_schema() for _ in range(60)),
        words=tuple(fake.word() for _ in range(300)),
        hosts=tuple(fake.hostname() for _ in range(20)),
        event_names=tuple(fake.ksi_event_name() for _ in range(200)),
        name_only_tools={name: {"name": name} for name in _ALL_TOOLS},
    )


# How often each era of `migrator.formats.CHECKPOINT_ERAS` wrote a checkpoint.
_ERA_TABLE = catalogue_weighted(
    by_name(CHECKPOINT_ERAS), {"8a0bb1b": 30, "bf15176": 10, "later": 45, "rolling_upgrade": 15}, 10
)
_ERAS = by_name(CHECKPOINT_ERAS)
_QUEUE_SHAPES: dict[str, QueueShape] = by_name(QUEUE_SHAPES)


class _Ctx:
    """Per-blob choices shared by the helpers: which daemon era wrote it and how."""

    __slots__ = ("era", "moment", "pools", "r", "shift", "style")

    def __init__(self, pools: _Pools, r: random.Random, moment: datetime) -> None:
        self.pools = pools
        self.r = r
        self.moment = moment
        self.shift = pick(r, LOCAL_SHIFTS)
        self.style = pick(r, _DAEMON_STYLE_TABLE)
        self.era: Era = _ERAS[pick(r, _ERA_TABLE)]

    def stamp(self, moment: datetime) -> str:
        """Mostly this blob's style; sometimes another code path's."""
        style = self.style if self.r.random() < 0.9 else pick(self.r, _STYLE_TABLE)
        return format_timestamp(moment, style, self.shift)

    def later(self, moment: datetime, max_seconds: float) -> datetime:
        return moment + timedelta(microseconds=int(self.r.random() * max_seconds * 1e6))

    def earlier(self, moment: datetime, max_seconds: float) -> datetime:
        return moment - timedelta(microseconds=int(self.r.random() * max_seconds * 1e6))


def _optional(ctx: _Ctx, target: dict[str, Any], key: str, value: Any, present: float) -> None:
    """Set `key` with probability `present`; a small share of present values are null."""
    roll = ctx.r.random()
    if roll < present:
        target[key] = None if roll < present * 0.04 else value


def add_later_keys(
    r: random.Random,
    target: dict[str, Any],
    keys: Iterable[LaterKey],
    rate: float,
    *,
    rates: Mapping[str, float] | None = None,
    values: Mapping[str, Callable[[], Any]] | None = None,
) -> None:
    """Append each of the catalogue's later `keys` with probability `rate` (or its own in
    `rates`), in catalogue order. Its value is made by `values` when that names the key (a value
    built for this blob), else picked from the catalogue's examples of it.
    """
    for key in keys:
        if r.random() < (rates or {}).get(key.name, rate):
            make = (values or {}).get(key.name)
            target[key.name] = make() if make is not None else pick(r, key.examples)


def _time_value(ctx: _Ctx, moment: datetime) -> Any:
    """A time field: usually text, sometimes a time.time() number, as different paths wrote."""
    if ctx.r.random() < 0.06:
        return epoch_number(moment, ctx.r)
    return ctx.stamp(moment)


def _sampling(ctx: _Ctx) -> dict[str, Any]:
    """Nested numeric extras where NaN/Infinity, -0.0, 1.0 vs 1 and huge ints turn up."""
    odd = _odd_numbers(ctx.r)
    return {
        "temperature": pick(ctx.r, odd),
        "top_p": pick(ctx.r, odd),
        "seed": 2**64 + ctx.r.getrandbits(48),
        "score": pick(ctx.r, (float("nan"), float("inf"), float("-inf"), -0.0)),
        "weights": [pick(ctx.r, odd) for _ in range(ctx.r.randint(0, 4))],
    }


def _metadata(ctx: _Ctx) -> dict[str, Any]:
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


def _request_data(ctx: _Ctx, request_id: str, session_id: str, agent_id: str) -> dict[str, Any]:
    """The completion request as sent with completion:async (the `data` of a queue item)."""
    r = ctx.r
    pools = ctx.pools
    data: dict[str, Any] = {}
    _optional(ctx, data, "prompt", pick(r, pools.prompts), 0.97)
    _optional(ctx, data, "model", pick(r, _MODEL_TABLE), 0.95)
    _optional(ctx, data, "agent_id", agent_id, 0.9)
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
        data["metadata"] = _metadata(ctx)
    if r.random() < 0.04:
        data["sampling"] = _sampling(ctx)
    if r.random() < 0.05:
        data["conversation_lock"] = {
            "enabled": True,
            "timeout": pick(r, (300, 300.0, 1e3)),
        }
    return data


def _extra_body(ctx: _Ctx, session_id: str) -> dict[str, Any]:
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


def _original_event(ctx: _Ctx, data: dict[str, Any], agent_id: str) -> Any:
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


def _completion(ctx: _Ctx, request_id: str, session_id: str, agent_id: str) -> dict[str, Any]:
    """One `active_completions` entry; any key may be missing or null."""
    r = ctx.r
    status = pick(r, _STATUS_TABLE)
    queued = ctx.earlier(ctx.moment, 3600)
    started = ctx.later(queued, 120)
    finished = ctx.later(started, 600)
    data = _request_data(ctx, request_id, session_id, agent_id)
    values: dict[str, Any] = {
        "session_id": session_id,
        "agent_id": agent_id,
        "status": status,
        "queued_at": _time_value(ctx, queued),
        "started_at": None if status == "queued" else _time_value(ctx, started),
        "completed_at": _time_value(ctx, finished) if status in ("completed", "failed", "cancelled") else None,
        "error": pick(r, ctx.pools.errors) if status == "failed" else None,
        "data": data,
        "original_event": _original_event(ctx, data, agent_id),
    }
    order = pick(r, _COMPLETION_ORDERS) if ctx.era.later_keys else COMPLETION_KEYS
    completion: dict[str, Any] = {}
    for key in order:
        _optional(
            ctx,
            completion,
            key,
            values[key],
            0.97 if key in ("status", "data") else 0.9,
        )
    if ctx.era.later_keys:
        _add_later_completion_keys(ctx, completion)
    return completion


def _add_later_completion_keys(ctx: _Ctx, completion: dict[str, Any]) -> None:
    r = ctx.r
    summary = {"result_summary": lambda: {"tokens": pick(r, _odd_numbers(r)), "cost_usd": 0.0123}}
    add_later_keys(r, completion, LATER_COMPLETION_KEYS, 0.05, rates=_LATER_COMPLETION_RATES, values=summary)


def _count(r: random.Random, zero: float, high: int) -> int:
    """0 with probability `zero`, else skewed towards small values up to `high`."""
    if r.random() < zero:
        return 0
    return 1 + int(r.random() ** 2 * high)


def _queue_item(ctx: _Ctx, request_id: str, data: dict[str, Any], shape: QueueShape) -> dict[str, Any]:
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
    ctx: _Ctx, session_id: str, completions: dict[str, dict[str, Any]], agent_id: str
) -> list[dict[str, Any]] | dict[str, Any]:
    """One session's queue in one of the era's shapes; order matters."""
    r = ctx.r
    shape = _QUEUE_SHAPES[pick(r, ctx.era.queue_shapes)]
    # Requests of this session that are also in active_completions (with their data).
    in_flight = [
        rid for rid, c in completions.items() if c.get("session_id") == session_id and isinstance(c.get("data"), dict)
    ]
    items: list[dict[str, Any]] = []
    for _ in range(_count(r, 0.2, 6)):
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


def _queue_object(ctx: _Ctx, shape: QueueShape, items: list[dict[str, Any]], in_flight: list[str]) -> dict[str, Any]:
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


def _session_ids_for(ctx: _Ctx) -> list[str]:
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
    ctx = _Ctx(_pools_for(fake), rng, when if when is not None else random_moment(rng))
    session_ids = _session_ids_for(ctx)
    completions: dict[str, dict[str, Any]] = {}
    for _ in range(_count(rng, 0.25, 14)):
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


def _add_checkpoint_extras(ctx: _Ctx, blob: dict[str, Any]) -> None:
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


def _tools(ctx: _Ctx, shape: SessionShape) -> list[Any]:
    """A tools list in the shape's forms: bare names (plan); name-only dicts, or (sometimes)
    full tool schemas, or occasionally a mix (daemon)."""
    r = ctx.r
    names = _tool_names(r, _ALL_TOOLS)
    forms = shape.tool_forms
    if len(forms) == 1:
        chosen = [forms[0]] * len(names)
    else:
        roll = r.random()
        mixed = [pick(r, forms) for _ in names]
        chosen = [forms[0]] * len(names) if roll < 0.80 else [forms[1]] * len(names) if roll < 0.95 else mixed
    return [_tool(ctx, name, form) for name, form in zip(names, chosen, strict=True)]


def _tool(ctx: _Ctx, name: str, form: str) -> Any:
    if form == "name":
        return name
    if form == "name-only":
        return ctx.pools.name_only_tools[name]
    if form == "schema":
        return pick(ctx.r, ctx.pools.schemas)
    raise ValueError(f"no builder for the tool form {form!r}")


def _agent_info(ctx: _Ctx) -> dict[str, Any]:
    r = ctx.r
    info: dict[str, Any] = {
        "allowed_events": [pick(r, ctx.pools.event_names) for _ in range(_count(r, 0.1, 20))],
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
        info["limits"] = _sampling(ctx)
    if r.random() < 0.05:
        info["metadata"] = _metadata(ctx)
    return info


def _permissions(ctx: _Ctx) -> dict[str, Any]:
    """ee6e4bc's permission:get_agent answer, or its fallback `{"allowed_tools", "profile"}`."""
    r = ctx.r
    permissions: dict[str, Any] = {
        "allowed_tools": [pick(r, ctx.pools.event_names) for _ in range(_count(r, 0.1, 8))],
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


def _session(ctx: _Ctx, shape: SessionShape, agent_id: str | None, conversation_id: str) -> dict[str, Any]:
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
    ctx = _Ctx(_pools_for(fake), rng, when if when is not None else random_moment(rng))
    stored_agent: str | None = agent_id
    if agent_id == "unknown" and rng.random() < 0.4:
        stored_agent = None
    return _session(ctx, _SESSIONS[pick(rng, _SESSION_TABLE)], stored_agent, conversation_id)
