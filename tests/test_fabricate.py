"""`fabricate_snapshot`: deterministic, never overwrites, and plants every legacy irregularity."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from migrator.errors import OutputExists
from migrator.fabricate import CHECKPOINTS_DDL, MCP_SESSIONS_DDL, fabricate_snapshot
from migrator.formats import COMPLETION_KEYS, UNREADABLE_KINDS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
JSON_COLUMNS = {"checkpoints": "checkpoint_data", "mcp_sessions": "session_data"}
KEY_COLUMNS = {"checkpoints": "id", "mcp_sessions": "session_key"}


# --- helpers ----------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def json_cells(path: Path, table: str) -> list[tuple[str, bytes]]:
    """(storage type, exact bytes) of every JSON cell; CAST AS BLOB never decodes the text."""
    column = JSON_COLUMNS[table]
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT typeof({column}), CAST({column} AS BLOB) FROM {table} ORDER BY rowid").fetchall()


def key_types(path: Path, table: str) -> list[str]:
    """The storage type of every row's key cell, in the order of `json_cells`."""
    column = KEY_COLUMNS[table]
    with closing(sqlite3.connect(path)) as conn:
        return [kind for (kind,) in conn.execute(f"SELECT typeof({column}) FROM {table} ORDER BY rowid")]


def is_queue(value: Any) -> bool:
    """An old list-shaped queue of objects, or a new object-shaped one with an `items` list."""
    if isinstance(value, list):
        return all(isinstance(item, dict) for item in value)
    return isinstance(value, dict) and isinstance(value.get("items", []), list)


class RepeatedKey(dict):
    """A parsed object that named one key twice."""


def keep_repeats(pairs: list[tuple[str, Any]]) -> dict:
    return RepeatedKey(pairs) if len({key for key, _ in pairs}) < len(pairs) else dict(pairs)


def why_unreadable(table: str, storage: str, raw: bytes, key_storage: str = "text") -> str | None:
    """None when the row reads as the expected JSON object under a text key, else why it does not."""
    if key_storage not in ("text", "integer"):
        return "key not text"
    if storage != "text":
        return f"stored as {storage}"
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=keep_repeats)
    except UnicodeDecodeError:
        return "not UTF-8"
    except RecursionError:
        return "too deep"
    except ValueError:
        return "not JSON"
    if not isinstance(value, dict):
        return "not an object"
    if table == "checkpoints":
        queues, completions = value.get("session_queues", {}), value.get("active_completions", {})
        if not isinstance(queues, dict) or not isinstance(completions, dict):
            return "wrong container"
        if isinstance(queues, RepeatedKey) or isinstance(completions, RepeatedKey):
            return "repeated id"
        queues_ok = all(is_queue(queue) for queue in queues.values())
        if not queues_ok or not all(isinstance(c, dict) for c in completions.values()):
            return "wrong container"
    elif not isinstance(value.get("tools", []), list) or not isinstance(value.get("agent_info", {}), dict):
        return "wrong container"
    return None


def row_reasons(path: Path) -> Counter[str | None]:
    """How many rows of both tables read (None), and how many do not, by reason."""
    return Counter(
        why_unreadable(table, storage, raw, key)
        for table in JSON_COLUMNS
        for (storage, raw), key in zip(json_cells(path, table), key_types(path, table), strict=True)
    )


def walk(value: Any) -> Iterator[Any]:
    """Every value nested anywhere in a parsed blob, keys included."""
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[int]]:
    """A modest readable snapshot, shared by the shape tests (fabricated once)."""
    path = tmp_path_factory.mktemp("snap") / "legacy.db"
    increments: list[int] = []
    summary = fabricate_snapshot(path, checkpoints=200, sessions=600, seed=7, progress=increments.append)
    return path, summary, increments


@pytest.fixture(scope="module")
def texts(snapshot: tuple[Path, dict[str, Any], list[int]]) -> dict[str, list[str]]:
    path = snapshot[0]
    return {table: [raw.decode("utf-8") for _, raw in json_cells(path, table)] for table in JSON_COLUMNS}


@pytest.fixture(scope="module")
def checkpoints(texts: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts["checkpoints"]]


@pytest.fixture(scope="module")
def sessions(texts: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts["mcp_sessions"]]


# --- the file ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_even_in_another_process(tmp_path: Path) -> None:
    arguments: dict[str, Any] = {"checkpoints": 30, "sessions": 60, "seed": 5, "unreadable": 9}
    first, second, other = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    fabricate_snapshot(first, **arguments)
    # A different hash seed in the second process catches any dependence on set/str hash order.
    code = f"from migrator.fabricate import fabricate_snapshot; fabricate_snapshot({str(second)!r}, **{arguments!r})"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, check=True)
    fabricate_snapshot(other, **{**arguments, "seed": 6})
    assert sha256(first) == sha256(second)
    assert sha256(first) != sha256(other)


def test_refuses_to_overwrite_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    existing = tmp_path / "legacy.db"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputExists, match="already exists"):
        fabricate_snapshot(existing, checkpoints=3, sessions=3)
    assert existing.read_bytes() == b"precious"
    fresh = tmp_path / "fresh.db"
    fabricate_snapshot(fresh, checkpoints=3, sessions=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.db", "legacy.db"]


def test_rejects_negative_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sessions must be >= 0"):
        fabricate_snapshot(tmp_path / "x.db", checkpoints=1, sessions=-1)
    assert not (tmp_path / "x.db").exists()


def test_schema_is_exactly_the_daemons(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    fabricate_snapshot(path, checkpoints=0, sessions=0)
    with closing(sqlite3.connect(path)) as conn:
        tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        counts = [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in JSON_COLUMNS]
    assert "sqlite_sequence" in tables  # made by AUTOINCREMENT, as in the daemon's file
    del tables["sqlite_sequence"]
    assert tables == {"checkpoints": CHECKPOINTS_DDL, "mcp_sessions": MCP_SESSIONS_DDL}
    assert counts == [0, 0]


def test_summary_counts_and_progress(snapshot: tuple[Path, dict[str, Any], list[int]]) -> None:
    path, summary, increments = snapshot
    assert summary == {
        "checkpoints": 200,
        "sessions": 600,
        "unreadable": 0,
        "noncanonical": summary["noncanonical"],
        "path": str(path),
    }
    assert all(step > 0 for step in increments)
    assert sum(increments) == 800


# --- readable rows ----------------------------------------------------------------------------


def test_without_unreadable_every_row_reads_as_the_expected_object(
    snapshot: tuple[Path, dict[str, Any], list[int]],
) -> None:
    reasons = row_reasons(snapshot[0])
    assert reasons == {None: 800}


def test_noncanonical_rows_are_counted_and_every_format_appears(
    snapshot: tuple[Path, dict[str, Any], list[int]], texts: dict[str, list[str]]
) -> None:
    odd = [text for table in texts.values() for text in table if json.dumps(json.loads(text)) != text]
    assert len(odd) == snapshot[1]["noncanonical"]
    assert 0 < len(odd) <= 0.03 * 800

    def format_of(text: str) -> str:
        if "\n  " in text:
            return "indent"
        if text.endswith("\n"):
            return "newline"
        return "unicode" if not text.isascii() else "compact"

    assert {format_of(text) for text in odd} == {"indent", "newline", "unicode", "compact"}


def test_other_storage_types_in_non_json_cells(snapshot: tuple[Path, dict[str, Any], list[int]]) -> None:
    with closing(sqlite3.connect(snapshot[0])) as conn:
        stamps = Counter(kind for (kind,) in conn.execute("SELECT typeof(timestamp) FROM checkpoints"))
        seen = Counter(kind for (kind,) in conn.execute("SELECT typeof(last_seen) FROM mcp_sessions"))
        blob_text = conn.execute("SELECT timestamp FROM checkpoints WHERE typeof(timestamp) = 'blob'").fetchone()[0]
    assert set(stamps) == {"text", "blob"}
    assert set(seen) == {"text", "integer", "real", "blob"}
    assert stamps["text"] > 0.98 * 200 and seen["text"] > 0.98 * 600
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|\+00:00)?", blob_text.decode("utf-8"))


def test_ids_gaps_and_timestamps(snapshot: tuple[Path, dict[str, Any], list[int]], checkpoints: list[dict]) -> None:
    with closing(sqlite3.connect(snapshot[0])) as conn:
        rows = conn.execute("SELECT id, CAST(timestamp AS TEXT) FROM checkpoints ORDER BY rowid").fetchall()
        last_seen = [t for (t,) in conn.execute("SELECT last_seen FROM mcp_sessions WHERE typeof(last_seen) = 'text'")]
    ids = [row_id for row_id, _ in rows]
    assert ids == sorted(set(ids)) and any(b - a > 1 for a, b in itertools.pairwise(ids))
    stamped = [
        (column, blob["timestamp"]) for (_, column), blob in zip(rows, checkpoints, strict=True) if "timestamp" in blob
    ]
    assert any(column != stamp for column, stamp in stamped) and any(column == stamp for column, stamp in stamped)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?", text) for text in last_seen)
    assert any("." not in text for text in last_seen) and any("." in text for text in last_seen)
    families = {stamp[-1] if stamp.endswith("Z") else stamp[-6:] for _, stamp in stamped}
    assert {"Z", "+00:00"} <= families and len(families) > 2  # plus naive local texts


def test_checkpoint_shapes(checkpoints: list[dict[str, Any]], texts: dict[str, list[str]]) -> None:
    queues = [(blob, queue) for blob in checkpoints for queue in blob["session_queues"].values()]
    assert any(isinstance(q, list) for _, q in queues) and any(isinstance(q, dict) for _, q in queues)
    assert any({type(q) for q in blob["session_queues"].values()} == {list, dict} for blob in checkpoints)
    items = [(blob, q if isinstance(q, list) else q["items"]) for blob, q in queues]
    assert any(len({i["request_id"] for i in queue}) < len(queue) for _, queue in items), "duplicate queue entry"
    assert any(i["request_id"] in blob["active_completions"] for blob, queue in items for i in queue)
    assert any(not blob["session_queues"] for blob in checkpoints)
    assert any(not blob["active_completions"] for blob in checkpoints)
    assert {blob.get("reason") for blob in checkpoints} >= {None, "manual", "shutdown", "dev"}
    assert any("timestamp" not in blob and "components" in blob for blob in checkpoints), "bf15176's shape"
    standard = {"timestamp", "session_queues", "active_completions", "components", "reason"}
    assert any(set(blob) - standard for blob in checkpoints), "keys from later daemon versions"
    text = "\n".join(texts["checkpoints"])
    assert "NaN" in text and "Infinity" in text and re.search(r"-0\.0\b", text)
    values = [v for blob in checkpoints for v in walk(blob)]
    assert any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**64 for v in values)
    assert any(isinstance(v, float) and math.isnan(v) for v in values)
    assert any(isinstance(v, str) and not v.isascii() for v in values)


def test_completion_shapes(checkpoints: list[dict[str, Any]]) -> None:
    completions = [c for blob in checkpoints for c in blob["active_completions"].values()]
    for key in COMPLETION_KEYS:
        assert any(key not in c for c in completions), f"{key} missing somewhere"
        assert any(key in c and c[key] is None for c in completions), f"{key} null somewhere"
    assert any("retry_count" in c for c in completions) and any("provider" in c for c in completions)
    assert {c.get("status") for c in completions} >= {"queued", "processing", "completed", "failed", "cancelled"}
    data = [c["data"] for c in completions if isinstance(c.get("data"), dict)]
    for key in ("prompt", "model", "agent_id", "session_id", "priority", "extra_body"):
        assert any(key in d for d in data), key
    events = [c["original_event"] for c in completions if "original_event" in c]
    assert {type(e) for e in events} == {dict, str, type(None)}
    assert len({tuple(c)[:2] for c in completions if len(c) > 2}) > 1, "more than one key order"


def test_session_shapes(snapshot: tuple[Path, dict[str, Any], list[int]], sessions: list[dict[str, Any]]) -> None:
    plan = [s for s in sessions if "created_at" in s]
    daemon = [s for s in sessions if "agent_info" in s or "permissions" in s]
    assert plan and daemon and len(plan) + len(daemon) == len(sessions)
    assert any(s.get("thin_handshake") is True for s in plan)
    info = [s["agent_info"] for s in daemon if "agent_info" in s]
    assert all({"allowed_events", "allowed_claude_tools"} <= set(i) for i in info)
    assert any("profile" in i for i in info)
    tools = [s["tools"] for s in sessions if "tools" in s]
    assert any("tools" not in s for s in sessions) and any(t == [] for t in tools)
    named = [t for t in tools if t and all(isinstance(e, str) for e in t)]
    assert any(len(set(t)) < len(t) for t in named), "duplicate tool names"
    entries = [e for t in tools for e in t if isinstance(e, dict)]
    assert any(list(e) == ["name"] for e in entries)
    assert any({"name", "description", "inputSchema"} <= set(e) for e in entries)
    with closing(sqlite3.connect(snapshot[0])) as conn:
        keys = [key for (key,) in conn.execute("SELECT session_key FROM mcp_sessions")]
    assert len(set(keys)) == len(keys)
    assert any(key.startswith("unknown:") for key in keys)
    assert any(":" in key.split(":", 1)[1] for key in keys)


# --- unreadable rows --------------------------------------------------------------------------


@pytest.mark.parametrize("unreadable", [1, 2, 8, 2 * len(UNREADABLE_KINDS) + 1])
def test_unreadable_rows_are_exactly_the_ones_asked_for(tmp_path: Path, unreadable: int) -> None:
    path = tmp_path / "broken.db"
    summary = fabricate_snapshot(path, checkpoints=25, sessions=40, seed=3, unreadable=unreadable)
    reasons = row_reasons(path)
    assert sum(reasons.values()) == 25 + 40 + unreadable
    assert sum(n for reason, n in reasons.items() if reason is not None) == unreadable
    assert summary["unreadable"] == unreadable
    if unreadable >= len(UNREADABLE_KINDS):
        assert set(reasons) - {None} == {
            "key not text",
            "stored as blob",
            "not UTF-8",
            "too deep",
            "not JSON",
            "not an object",
            "wrong container",
            "repeated id",
        }
    if unreadable >= 2:
        with closing(sqlite3.connect(path)) as conn:
            totals = [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in JSON_COLUMNS]
        assert totals[0] > 25 and totals[1] > 40, "spread over both tables"
