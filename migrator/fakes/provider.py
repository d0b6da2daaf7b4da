"""`KsiProvider` (one realistic KSI value per call), `make_faker`, and the pools of faker
output the blob builders pick from."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from faker import Faker
from faker.providers import BaseProvider

from migrator.fakes.values import (
    ALL_TOOLS,
    CLAUDE_TOOLS,
    EVENT_NAMES,
    FIXED_ERRORS,
    KSI_TOOLS,
    LOCAL_SHIFTS,
    LOCALES,
    MODEL_TABLE,
    STATUS_TABLE,
    STYLE_TABLE,
    add_later_keys,
    format_timestamp,
    pick,
    random_agent_id,
    random_conversation_id,
    random_moment,
    random_request_id,
    random_session_id,
    random_session_key,
)
from migrator.formats import (
    LATER_TOOL_KEYS,
)


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
        return pick(self.generator.random, MODEL_TABLE)

    def ksi_status(self) -> str:
        return pick(self.generator.random, STATUS_TABLE)

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
        chosen = style if style is not None else pick(r, STYLE_TABLE)
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
class Pools:
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


_POOLS: weakref.WeakKeyDictionary[Faker, Pools] = weakref.WeakKeyDictionary()


def pools_for(fake: Faker) -> Pools:
    pools = _POOLS.get(fake)
    if pools is None:
        pools = _build_pools(fake)
        _POOLS[fake] = pools
    return pools


def _build_pools(fake: Faker) -> Pools:
    return Pools(
        prompts=tuple(fake.ksi_prompt() for _ in range(600)),
        agent_ids=tuple(fake.ksi_agent_id() for _ in range(1500)),
        session_ids=tuple(fake.ksi_session_id() for _ in range(400)),
        errors=FIXED_ERRORS + tuple(fake.sentence() for _ in range(30)),
        schemas=tuple(fake.ksi_tool_schema() for _ in range(60)),
        words=tuple(fake.word() for _ in range(300)),
        hosts=tuple(fake.hostname() for _ in range(20)),
        event_names=tuple(fake.ksi_event_name() for _ in range(200)),
        name_only_tools={name: {"name": name} for name in ALL_TOOLS},
    )
