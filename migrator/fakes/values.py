"""Values the blob builders draw from: catalogue weights, names, odd texts and numbers,
ids, moments and their spellings."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from migrator.formats import (
    STATUSES,
    TIMESTAMP_NUMBERS,
    TIMESTAMP_TEXTS,
    LaterKey,
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
STYLE_TABLE = catalogue_weighted(
    _TEXT_SPELLINGS, {"utc_z": 55, "utc_z_whole": 5, "offset": 15, "offset_whole": 3, "naive": 17, "naive_whole": 5}, 2
)
DAEMON_STYLE_TABLE = catalogue_weighted(
    _TEXT_SPELLINGS, {"utc_z": 84, "utc_z_whole": 4, "offset": 7, "offset_whole": 1, "naive": 3, "naive_whole": 1}, 1
)

STATUS_TABLE = catalogue_weighted(
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
MODEL_TABLE = weighted({name: (12 if name.startswith("claude-cli/") else 2) for name in MODEL_NAMES})

PROFILES: tuple[str, ...] = (
    "base_single_agent", "base_multi_agent", "claude_agent_default", "system/orchestrator",
    "components/core/base_agent", "personas/analysts/data_analyst",
    "personas/developers/python_expert", "evaluations/judge", "ksi_developer",
)  # fmt: skip

ALL_TOOLS = CLAUDE_TOOLS + KSI_TOOLS

_ROLES: tuple[str, ...] = (
    "orchestrator", "researcher", "analyst", "coordinator", "judge", "worker", "planner",
    "reviewer", "tester", "writer", "debater",
)  # fmt: skip

FIXED_ERRORS: tuple[str, ...] = (
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


def odd_numbers(r: random.Random) -> tuple[Any, ...]:
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
