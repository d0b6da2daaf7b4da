"""The realistic layer: KSI values drawn from pools that our faker provider filled once.

Calling Faker inside a strategy would make shrinking meaningless (a seed shrinks to another seed,
not to a simpler value) and slow. So `migrator.fakes.KsiProvider` fills fixed pools at import, and
the strategies pick with `st.sampled_from`. Each pool is ordered shortest first, so a failing
example shrinks to the plainest realistic value. Whole faker-built blobs are offered too
(`faker_checkpoint_blobs`), seeded through hypothesis so they replay.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from migrator.fakes import (
    BASE_DATE,
    CLAUDE_TOOLS,
    EVENT_NAMES,
    KSI_TOOLS,
    LOCAL_SHIFTS,
    MODEL_NAMES,
    PROFILES,
    SPAN,
    fake_checkpoint_blob,
    fake_session_blob,
    make_faker,
)
from migrator.formats import COMPONENTS, REASONS, STATUSES, TIMESTAMP_NUMBERS, TIMESTAMP_TEXTS, Spelling, by_name

__all__ = [
    "agent_ids",
    "agent_infos",
    "components",
    "conversation_ids",
    "epoch_times",
    "error_texts",
    "event_names",
    "faker_checkpoint_blobs",
    "faker_session_blobs",
    "last_seen_texts",
    "model_names",
    "original_events",
    "permissions",
    "prompts",
    "reasons",
    "request_data",
    "request_ids",
    "session_ids",
    "session_keys",
    "statuses",
    "timestamps",
    "tool_names",
    "tool_schemas",
]

FAKER_SEED = 20250620
_FAKE = make_faker(FAKER_SEED)


def _pool(make: Callable[[], Any], size: int) -> tuple[Any, ...]:
    """`size` faker draws, without repeats, shortest first (the way shrinking should go)."""
    values = list(dict.fromkeys(make() for _ in range(size)))
    return tuple(sorted(values, key=lambda value: (len(value), value)))


_AGENT_IDS = _pool(_FAKE.ksi_agent_id, 40)
_CONVERSATION_IDS = _pool(_FAKE.ksi_conversation_id, 40)
_SESSION_KEYS = _pool(_FAKE.ksi_session_key, 40)
_REQUEST_IDS = _pool(_FAKE.ksi_request_id, 40)
_SESSION_IDS = _pool(_FAKE.ksi_session_id, 30)
_PROMPTS = _pool(_FAKE.ksi_prompt, 40)  # English, German, Japanese, Russian, Arabic, Chinese, Hindi
_EVENT_NAMES = tuple(sorted(set(EVENT_NAMES) | set(_pool(_FAKE.ksi_event_name, 60)), key=lambda n: (len(n), n)))
_SENTENCES = _pool(_FAKE.sentence, 20)
# Tool schemas are dicts: the pool is ordered smallest first, the keys inside are never sorted.
_TOOL_SCHEMAS = tuple(sorted((_FAKE.ksi_tool_schema() for _ in range(15)), key=lambda schema: len(str(schema))))
_TOOL_NAMES = CLAUDE_TOOLS + KSI_TOOLS


@cache
def agent_ids() -> SearchStrategy[str]:
    return st.sampled_from(("unknown", *_AGENT_IDS))


@cache
def conversation_ids() -> SearchStrategy[str]:
    """About a fifth hold ':' themselves, so a session key splits ambiguously."""
    return st.sampled_from(_CONVERSATION_IDS)


@cache
def session_keys() -> SearchStrategy[str]:
    """`f"{agent_id}:{conversation_id}"`, the agent sometimes `"unknown"`."""
    return st.sampled_from(_SESSION_KEYS)


@cache
def request_ids() -> SearchStrategy[str]:
    # A small pool makes a request that is queued twice, or queued and active, a common draw.
    return st.sampled_from(_REQUEST_IDS[:8])


@cache
def session_ids() -> SearchStrategy[str]:
    return st.sampled_from(_SESSION_IDS)


@cache
def prompts() -> SearchStrategy[str]:
    return st.sampled_from(_PROMPTS)


@cache
def model_names() -> SearchStrategy[str]:
    return st.sampled_from(MODEL_NAMES)


@cache
def event_names() -> SearchStrategy[str]:
    return st.sampled_from(_EVENT_NAMES)


@cache
def tool_names() -> SearchStrategy[str]:
    return st.sampled_from(_TOOL_NAMES)


@cache
def tool_schemas() -> SearchStrategy[dict[str, Any]]:
    """Full MCP tool descriptions: name, description and a JSON Schema `inputSchema`."""
    return st.sampled_from(_TOOL_SCHEMAS)


@cache
def statuses() -> SearchStrategy[str]:
    return st.sampled_from(STATUSES)


@cache
def reasons() -> SearchStrategy[str]:
    return st.sampled_from(REASONS)


@cache
def error_texts() -> SearchStrategy[str]:
    return st.sampled_from(("Daemon shutdown", "Process terminated with signal -9", "", *_SENTENCES))


# --- time -------------------------------------------------------------------------------------


@cache
def _moments() -> SearchStrategy[datetime]:
    return st.datetimes(min_value=BASE_DATE, max_value=BASE_DATE + SPAN)


_TEXT_SPELLINGS = by_name(TIMESTAMP_TEXTS)


def _spelt(moment: datetime, spelling: Spelling, shift: timedelta) -> Any:
    return spelling.render(moment, shift)


@cache
def timestamps(spellings: tuple[str, ...] = tuple(_TEXT_SPELLINGS)) -> SearchStrategy[str]:
    """Timestamp texts in the catalogue's text spellings (`migrator.formats.TIMESTAMP_TEXTS`)."""
    chosen = st.sampled_from([_TEXT_SPELLINGS[name] for name in spellings])
    return st.builds(_spelt, _moments(), chosen, st.sampled_from(LOCAL_SHIFTS))


@cache
def last_seen_texts() -> SearchStrategy[str]:
    """`datetime.now().isoformat()`: naive local time, microseconds left out when zero."""
    return timestamps(("naive", "naive_whole"))


@cache
def epoch_times() -> SearchStrategy[float | int]:
    """Times as numbers (`time.time()` and its whole seconds), as some daemon paths stored them."""
    return st.builds(_spelt, _moments(), st.sampled_from(TIMESTAMP_NUMBERS), st.just(timedelta(0)))


# --- nested payloads --------------------------------------------------------------------------


@cache
def request_data() -> SearchStrategy[dict[str, Any]]:
    """A completion request as sent with completion:async (the `data` of queues and completions)."""
    return st.fixed_dictionaries(
        {"prompt": prompts()},
        optional={
            "model": model_names(),
            "agent_id": agent_ids(),
            "session_id": st.none() | session_ids(),
            "priority": st.sampled_from(("normal", "high", "low", "critical", 0, 5, 1.0)),
            "temperature": st.sampled_from((1, 1.0, 0.7, 0.0, -0.0)),
            "max_tokens": st.sampled_from((4096, 8192, 1024.0, 200_000)),
            "stream": st.booleans(),
            "extra_body": st.fixed_dictionaries({"ksi": st.fixed_dictionaries({"tools": st.lists(tool_names())})}),
        },
    )


@cache
def original_events() -> SearchStrategy[Any]:
    """The event that started a completion; some paths kept only its name, or nothing."""
    event = st.fixed_dictionaries(
        {"event": st.just("completion:async"), "data": request_data()},
        optional={"context": st.fixed_dictionaries({"_agent_id": agent_ids()}), "timestamp": epoch_times()},
    )
    return st.one_of(event, st.just("completion:async"), st.none())


@cache
def agent_infos() -> SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "allowed_events": st.lists(event_names(), max_size=5),
            "allowed_claude_tools": st.lists(st.sampled_from(CLAUDE_TOOLS), max_size=5, unique=True),
        },
        optional={
            "profile": st.one_of(st.sampled_from(PROFILES), st.none()),
            "permissions": st.fixed_dictionaries({"level": st.sampled_from(("restricted", "standard", "trusted"))}),
            "sandbox_dir": st.just("var/sandbox/agents/1f2e3d4c"),
            "limits": _limits(),
        },
    )


@cache
def permissions() -> SearchStrategy[dict[str, Any]]:
    """ee6e4bc's `permissions`: the answer of permission:get_agent, or its fallback."""
    return st.fixed_dictionaries(
        {
            "allowed_tools": st.lists(event_names(), max_size=4),
            "profile": st.sampled_from(("restricted", "standard", "trusted", "researcher")),
        },
        optional={
            "allowed_modules": st.lists(st.sampled_from(("state", "agent", "message", "system")), max_size=3),
            "disallowed_tools": st.lists(tool_names(), max_size=2),
        },
    )


@cache
def components() -> SearchStrategy[dict[str, bool]]:
    """bf15176's `components`: a boolean for each part of the completion service, in order."""
    # Not `fixed_dictionaries`, which does not keep the order of its keys.
    flags = st.tuples(*(st.booleans() for _ in COMPONENTS))
    return flags.map(lambda values: dict(zip(COMPONENTS, values, strict=True)))


@cache
def _limits() -> SearchStrategy[dict[str, Any]]:
    """Numbers as the daemon's sampling settings held them: 1 and 1.0, -0.0, NaN, past 64 bits."""
    return st.fixed_dictionaries(
        {
            "temperature": st.sampled_from((0.7, 1, 1.0, -0.0, 0.0)),
            "top_p": st.sampled_from((1.0, float("nan"), float("inf"))),
            "seed": st.sampled_from((42, 2**64 + 7, -(2**70))),
        }
    )


# --- whole blobs from the faker builders ------------------------------------------------------


@cache
def faker_checkpoint_blobs() -> SearchStrategy[dict[str, Any]]:
    """Whole `checkpoint_data` values as `migrator.fakes` builds them, one per seed."""
    return st.builds(lambda seed: fake_checkpoint_blob(_FAKE, random.Random(seed)), st.integers(0, 2**32 - 1))


@cache
def faker_session_blobs() -> SearchStrategy[dict[str, Any]]:
    """Whole `session_data` values as `migrator.fakes` builds them, one per seed."""

    def build(seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        return fake_session_blob(_FAKE, rng, rng.choice(("unknown", *_AGENT_IDS)), rng.choice(_CONVERSATION_IDS))

    return st.builds(build, st.integers(0, 2**32 - 1))
