"""The faker provider and blob builders: deterministic, well-formed, and varied enough."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from typing import Any

import pytest

from migrator.fakes import (
    CLAUDE_TOOLS,
    KSI_TOOLS,
    fake_checkpoint_blob,
    fake_session_blob,
    format_timestamp,
    make_faker,
)
from migrator.formats import CHECKPOINT_ERAS, LATER_CHECKPOINT_KEYS, LATER_TOOL_KEYS, STATUSES, TIMESTAMP_TEXTS

PROVIDER_METHODS = (
    "ksi_agent_id",
    "ksi_conversation_id",
    "ksi_session_key",
    "ksi_request_id",
    "ksi_session_id",
    "ksi_prompt",
    "ksi_model_name",
    "ksi_event_name",
    "ksi_tool_name",
    "ksi_tool_schema",
    "ksi_status",
    "ksi_timestamp",
)

SCRIPTS = {
    "cyrillic": r"[\u0400-\u04ff]",
    "arabic": r"[\u0600-\u06ff]",
    "devanagari": r"[\u0900-\u097f]",
    "cjk": r"[\u4e00-\u9fff]",
    "kana": r"[\u3040-\u30ff]",
    "german": r"[äöüßÄÖÜ]",
    "astral (emoji)": r"[\U00010000-\U0010ffff]",
}


@pytest.fixture(scope="module")
def fake() -> Any:
    return make_faker(11)


def draw_all(seed: int) -> list[Any]:
    faker = make_faker(seed)
    return [getattr(faker, method)() for _ in range(20) for method in PROVIDER_METHODS]


def test_same_seed_gives_same_values() -> None:
    assert draw_all(5) == draw_all(5)
    assert draw_all(5) != draw_all(6)


def test_builders_are_deterministic() -> None:
    def build(seed: int) -> str:
        faker, rng = make_faker(seed), random.Random(seed)
        blobs = [fake_checkpoint_blob(faker, rng) for _ in range(20)]
        blobs += [fake_session_blob(faker, rng, "agent_1", f"conv:{n}") for n in range(50)]
        return json.dumps(blobs)

    assert build(3) == build(3)
    assert build(3) != build(4)


@pytest.mark.parametrize("spelling", TIMESTAMP_TEXTS, ids=lambda spelling: spelling.name)
def test_timestamp_styles(fake: Any, spelling: Any) -> None:
    for _ in range(30):
        text = fake.ksi_timestamp(style=spelling.name)
        assert re.fullmatch(spelling.pattern, text), text
        datetime.fromisoformat(text)  # every form must still parse


def test_timestamp_drops_zero_microseconds_like_isoformat() -> None:
    whole = datetime(2025, 6, 20, 23, 17, 27)
    assert format_timestamp(whole, "utc_z") == "2025-06-20T23:17:27Z"
    assert format_timestamp(whole.replace(microsecond=832348), "utc_z") == "2025-06-20T23:17:27.832348Z"
    assert format_timestamp(whole, "offset") == "2025-06-20T23:17:27+00:00"
    assert format_timestamp(whole.replace(microsecond=5), "naive") == "2025-06-20T23:17:27.000005"
    with pytest.raises(ValueError, match="unknown timestamp style"):
        format_timestamp(whole, "julian")


def style_of(text: str) -> str:
    (name,) = [
        spelling.name for spelling in TIMESTAMP_TEXTS if spelling.pattern and re.fullmatch(spelling.pattern, text)
    ]
    return name


def test_default_timestamps_mix_every_style(fake: Any) -> None:
    assert {style_of(fake.ksi_timestamp()) for _ in range(1000)} == {spelling.name for spelling in TIMESTAMP_TEXTS}


def test_session_keys(fake: Any) -> None:
    keys = [fake.ksi_session_key() for _ in range(400)]
    agents = [key.split(":", 1)[0] for key in keys]
    conversations = [key.split(":", 1)[1] for key in keys]
    assert "unknown" in agents
    assert any(":" in conversation for conversation in conversations)
    assert all(agent and conversation for agent, conversation in zip(agents, conversations, strict=True))


def test_prompts_cover_many_scripts(fake: Any) -> None:
    prompts = "\n".join(fake.ksi_prompt() for _ in range(400))
    for script, pattern in SCRIPTS.items():
        assert re.search(pattern, prompts), script


def test_value_vocabularies(fake: Any) -> None:
    assert {fake.ksi_status() for _ in range(200)} == set(STATUSES)
    tools = {fake.ksi_tool_name() for _ in range(300)}
    assert tools & set(CLAUDE_TOOLS)
    assert tools & set(KSI_TOOLS)
    assert all(":" in fake.ksi_event_name() for _ in range(100))
    assert all(fake.ksi_model_name() for _ in range(20))


def test_tool_schema_shape(fake: Any) -> None:
    for _ in range(50):
        schema = fake.ksi_tool_schema()
        assert list(schema)[:3] == ["name", "description", "inputSchema"]
        assert set(list(schema)[3:]) <= {key.name for key in LATER_TOOL_KEYS}
        assert schema["inputSchema"]["type"] == "object"
        assert isinstance(schema["inputSchema"]["properties"], dict)
        json.dumps(schema)


def test_checkpoint_blob_keeps_the_daemon_key_order(fake: Any) -> None:
    """Each blob starts with one era's keys in that era's order; only `reason` and later keys follow."""
    rng = random.Random(1)
    later = {key.name for key in LATER_CHECKPOINT_KEYS}
    eras = set()
    for _ in range(200):
        blob = fake_checkpoint_blob(fake, rng)
        (keys,) = {era.keys for era in CHECKPOINT_ERAS if list(blob)[: len(era.keys)] == list(era.keys)}
        allowed = later if any(era.later_keys for era in CHECKPOINT_ERAS if era.keys == keys) else {"reason"}
        assert set(list(blob)[len(keys) :]) <= allowed, keys
        eras.add(keys)
    assert eras == {era.keys for era in CHECKPOINT_ERAS}


def test_session_blob_shapes_and_ids(fake: Any) -> None:
    rng = random.Random(2)
    blobs = [fake_session_blob(fake, rng, "agent_7", "slack:T1:C2") for _ in range(200)]
    plan = [blob for blob in blobs if "created_at" in blob]
    daemon = [blob for blob in blobs if "agent_info" in blob or "permissions" in blob]
    assert plan and daemon and len(plan) + len(daemon) == len(blobs)
    assert all(blob["agent_id"] == "agent_7" for blob in blobs)
    assert all(blob["conversation_id"] == "slack:T1:C2" for blob in daemon)
    unknown = [fake_session_blob(fake, rng, "unknown", "c")["agent_id"] for _ in range(60)]
    assert {"unknown", None} <= set(unknown)
