"""The daemon's drop-in (`migrator.ksi`): the daemon's own flows, run through it in every store
mode on the daemon's two files (and a target on each engine), answer exactly what the daemon's own
SQL answers (`verification.daemon_sql`, the model) and leave the same rows behind."""

from __future__ import annotations

import asyncio
import copy
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrator import ksi, open_store
from migrator.equivalence import json_differences
from migrator.kinds import KINDS
from migrator.legacy import CHECKPOINTS, LEGACY_TABLES, MCP_SESSIONS, LegacyRow, LegacyTable
from migrator.models import bound_to
from migrator.rollback import legacy_rows
from migrator.store import Mode, Store
from verification.daemon_sql import DaemonCheckpoints, DaemonSessions
from verification.harness import legacy_row_differences, read_legacy_rows

MODES = [mode.value for mode in Mode]
FILES = {CHECKPOINTS.name: "checkpoint.db", MCP_SESSIONS.name: "mcp_sessions.db"}  # the daemon's layout


class Clock:
    """The daemon's two clocks, moved by the flow: `datetime.now()` (naive) and `timestamp_utc()`."""

    def __init__(self) -> None:
        self.moment = datetime(2025, 7, 5, 14, 40, 0, 123456)

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)

    def now(self) -> datetime:
        return self.moment

    def timestamp_utc(self) -> str:
        return (self.moment - timedelta(hours=4)).isoformat() + "Z"


def checkpoint_state(n: int) -> dict[str, Any]:
    """What the daemon checkpoints: the newer shape (bf15176, no timestamp) and the older one (8a0bb1b)."""
    completions = {
        f"req-{n}-a": {"session_id": f"s{n}", "status": "processing", "queued_at": 1751726400.5},
        f"req-{n}-b": {"session_id": f"s{n}", "status": "failed", "error": "terminated with signal -9"},
    }
    if n % 2:
        return {
            "timestamp": f"2025-07-05T10:40:0{n}Z",
            "session_queues": {f"s{n}": []},
            "active_completions": completions,
        }
    queues = {f"s{n}": {"items": [{"request_id": f"q{n}", "data": {"prompt": "hi", "n": 1.0}}], "is_active": True}}
    components = dict.fromkeys(("queue", "completions", "retry", "tokens", "conversation_locks"), True)
    return {"session_queues": queues, "active_completions": completions, "components": components}


def handshake(agent: str, tools: int) -> dict[str, Any]:
    """A cached session as `list_tools` builds it (775e9c9), `created` already a string."""
    schemas = [{"name": f"tool_{i}", "description": "d", "inputSchema": {"type": "object"}} for i in range(tools)]
    return {
        "agent_id": agent,
        "conversation_id": "conv",
        "agent_info": {"permissions": {"allowed_tools": ["Read"]}},
        "tools": [*schemas, "raw"],
        "created": "2025-07-04T09:00:00",
    }


@dataclass
class Daemon:
    """One daemon's persistence: its checkpoint functions and a session persistence per start."""

    checkpoints: Any
    sessions: Any


async def daemon_flows(daemon: Daemon, clock: Clock) -> dict[str, Any]:
    """The daemon's flows in the order its life runs them; every answer it gets, in order."""
    cp, answers = daemon.checkpoints, {}
    answers["initialized"] = await cp.initialize_checkpoint_db()
    answers["latest, none saved"] = await cp.load_latest_checkpoint()
    answers["update, none saved"] = await cp.update_checkpoint({"active_completions": {}})
    saved = []
    for n in range(8):  # five and more: the prune keeps the newest five
        clock.advance(seconds=1)
        saved.append(await cp.save_checkpoint(checkpoint_state(n)))
    answers["saved"] = saved
    answers["latest"] = await cp.load_latest_checkpoint()
    latest = copy.deepcopy(answers["latest"])
    del latest["active_completions"]["req-7-a"]  # dev:checkpoint remove_request
    answers["request removed"] = await cp.update_checkpoint(latest)
    answers["after removal"] = await cp.load_latest_checkpoint()
    kept = copy.deepcopy(answers["after removal"])
    kept["active_completions"] = {k: v for k, v in kept["active_completions"].items() if v.get("status") != "failed"}
    answers["failed cleared"] = await cp.update_checkpoint(kept)  # dev:checkpoint clear_failed
    answers["after clearing"] = await cp.load_latest_checkpoint()

    cache: dict[str, Any] = {}
    seen: dict[str, datetime] = {}
    await daemon.sessions.load(cache, seen)  # the first start: nothing to load
    answers["first start"] = loaded(cache, seen)
    now = clock.now()
    seen_at = {
        "old:conv": now - timedelta(hours=30),  # expired by the save
        "edge:conv": now - timedelta(hours=24),  # exactly at the cutoff: neither expired nor loaded
        "day:conv": now - timedelta(hours=23),
        "whole:conv": now.replace(microsecond=0),  # isoformat() without a fraction
        "recent:conv": now - timedelta(microseconds=1),
    }
    for key, moment in seen_at.items():
        cache[key], seen[key] = handshake(key.split(":")[0], 2), moment
    cache["unseen:conv"] = handshake("unseen", 0)  # no last_seen: saved as seen now
    await daemon.sessions.save(cache, seen)  # shutdown
    clock.advance(minutes=5)
    cache, seen = {}, {}
    await daemon.sessions.load(cache, seen)  # restart
    answers["second start"] = loaded(cache, seen)
    clock.advance(hours=2)
    seen["day:conv"] = clock.now()  # seen again
    cache["new:conv"], seen["new:conv"] = handshake("new", 1), clock.now()
    await daemon.sessions.save(cache, seen)  # INSERT OR REPLACE of every session, changed or not
    unencodable = {**cache, "bad:conv": {**handshake("bad", 0), "created": clock.now()}}  # ee6e4bc's datetime
    clock.advance(hours=1)
    await daemon.sessions.save(unencodable, seen)  # fails whole: nothing saved, nothing expired
    clock.advance(hours=22)
    cache, seen = {}, {}
    await daemon.sessions.load(cache, seen)  # a day later
    answers["a day later"] = loaded(cache, seen)
    answers["expired"] = await daemon.sessions.expire()  # what was seen more than 24 hours ago
    answers["expired again"] = await daemon.sessions.expire()
    await daemon.sessions.save(cache, seen)
    answers["after the save"] = loaded(cache, seen)
    return answers


def loaded(cache: dict[str, Any], seen: dict[str, datetime]) -> list[Any]:
    """The daemon's two maps in their order, `last_seen` as its exact fields."""
    return [list(cache.items()), [(key, moment.isoformat()) for key, moment in seen.items()]]


# --- the two daemons ----------------------------------------------------------------------------


def model_daemon(folder: Path, clock: Clock) -> Daemon:
    return Daemon(
        DaemonCheckpoints(folder / FILES[CHECKPOINTS.name], clock.timestamp_utc),
        DaemonSessions(folder / FILES[MCP_SESSIONS.name], clock.now),
    )


@contextmanager
def drop_in_daemon(
    folder: Path, target: str, mode: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Store]]:
    """`migrator.ksi` configured as a daemon would: one store over its two legacy files, on one target. The
    daemon's own start-up creates its tables in its files; in `relational_only` there are none."""
    monkeypatch.setattr("migrator.store.core.timestamp_utc", clock.timestamp_utc)
    with ExitStack() as stack:
        if mode == Mode.RELATIONAL_ONLY:
            checkpoint_store = session_store = stack.enter_context(open_store(target, mode=mode, create=True))
        else:
            model = model_daemon(folder, clock)  # its CREATE TABLE statements, on the drop-in's files
            asyncio.run(model.checkpoints.initialize_checkpoint_db())
            asyncio.run(model.sessions.load({}, {}))
            files = {table.name: folder / FILES[table.name] for table in LEGACY_TABLES}
            checkpoint_store = session_store = stack.enter_context(
                open_store(target, legacy=files, mode=mode, create=True)
            )
        ksi.configure(checkpoint_store)
        stack.callback(ksi.configure, None)
        yield [checkpoint_store, session_store]


def relational_rows(store: Store, table: LegacyTable) -> list[LegacyRow]:
    """The legacy rows the relational tables rebuild, as `restore` writes them."""
    with bound_to(store.database):
        return list(legacy_rows(store.database, KINDS[table.name], 1000))


def table_names(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:
        return [
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]


# --- the test -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_daemons_flows_through_the_drop_in_answer_as_the_daemons_sql(
    tmp_path: Path, target: str, mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "ksi").mkdir()
    model_clock, clock = Clock(), Clock()
    expected = asyncio.run(daemon_flows(model_daemon(tmp_path / "model", model_clock), model_clock))
    with drop_in_daemon(tmp_path / "ksi", target, mode, clock, monkeypatch) as stores:
        persistence = ksi.SessionPersistence(stores[1], now=clock.now)
        with caplog.at_level(logging.ERROR, logger="migrator.ksi"):
            answers = asyncio.run(daemon_flows(Daemon(ksi, persistence), clock))
        for store in stores:
            store.wait_for_shadow_reads()
            report = store.report()
            assert (report.shadow_mismatches, report.shadow_errors, report.fallbacks) == (0, 0, 0), report
            assert report.pending_repairs == []
        relational = Mode(mode).writes_relational
        rebuilt = {t.name: relational_rows(s, t) for t, s in zip(LEGACY_TABLES, stores, strict=True) if relational}
    assert [json_differences(expected[name], answers[name]) for name in expected] == [[]] * len(expected)
    failed = [r.getMessage() for r in caplog.records if r.name == "migrator.ksi"]
    assert failed == ["Failed to save MCP sessions: Object of type datetime is not JSON serializable"]

    # The model itself ran the daemon's flows as the daemon would.
    assert expected["saved"] == [True] * 8 and expected["update, none saved"] is False
    assert expected["after clearing"]["active_completions"] == {}
    assert [key for key, _ in expected["second start"][0]] == ["day:conv", "whole:conv", "recent:conv", "unseen:conv"]
    assert [key for key, _ in expected["a day later"][0]] == ["day:conv", "new:conv"]
    assert (expected["expired"], expected["expired again"]) == (3, 0)  # whole, recent, unseen

    # The same rows are left behind: the prune's ids, the kept timestamps, INSERT OR REPLACE's new rowids.
    for table in LEGACY_TABLES:
        model_rows = read_legacy_rows(tmp_path / "model" / FILES[table.name], table)
        assert model_rows, table.name
        if mode != Mode.RELATIONAL_ONLY:
            held = read_legacy_rows(tmp_path / "ksi" / FILES[table.name], table)
            assert table_names(tmp_path / "ksi" / FILES[table.name]) == table_names(
                tmp_path / "model" / FILES[table.name]
            )
            assert legacy_row_differences(table, model_rows, held) == [], table.name
        if relational:
            assert legacy_row_differences(table, model_rows, rebuilt[table.name]) == [], table.name


def test_without_a_store_the_functions_answer_as_the_daemon_does_on_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ksi.TARGET_VARIABLE, raising=False)
    ksi.configure(None)
    with caplog.at_level(logging.ERROR, logger="migrator.ksi"):
        answers = [
            asyncio.run(ksi.initialize_checkpoint_db()),
            asyncio.run(ksi.save_checkpoint({"session_queues": {}})),
            asyncio.run(ksi.load_latest_checkpoint()),
            asyncio.run(ksi._update_checkpoint({})),
        ]
    assert answers == [False, False, None, False]
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 4 and all(f"set ${ksi.TARGET_VARIABLE}" in message for message in logged)
    assert not any(record.exc_info for record in caplog.records)  # a domain error is one line


def test_the_environment_names_the_target_and_the_daemons_two_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    model = model_daemon(tmp_path, clock)
    asyncio.run(model.checkpoints.initialize_checkpoint_db())
    asyncio.run(model.sessions.load({}, {}))
    monkeypatch.setenv(ksi.TARGET_VARIABLE, str(tmp_path / "target.db"))
    monkeypatch.setenv(ksi.CHECKPOINT_DB_VARIABLE, str(tmp_path / FILES[CHECKPOINTS.name]))
    monkeypatch.setenv(ksi.SESSIONS_DB_VARIABLE, str(tmp_path / FILES[MCP_SESSIONS.name]))
    monkeypatch.setenv("KSI_STORE_MODE", "dual_write")
    (tmp_path / "target.db").touch()

    class Server(ksi.PersistedSessions):  # the daemon's MCP server, its own two methods gone
        def __init__(self) -> None:
            self.session_cache = {"a:c": handshake("a", 1)}
            self.session_last_seen = {"a:c": datetime.now()}

    ksi.configure(None)
    server, restarted = Server(), Server()
    restarted.session_cache, restarted.session_last_seen = {}, {}
    try:
        assert asyncio.run(ksi.initialize_checkpoint_db()) is True
        assert asyncio.run(ksi.save_checkpoint(checkpoint_state(0))) is True
        asyncio.run(server._save_sessions())
        asyncio.run(restarted._load_sessions())
    finally:
        opened = [
            ksi._checkpoints.store,
            *(s.session_persistence.store for s in (server, restarted) if s.session_persistence),
        ]
        for store in {id(store): store for store in opened if store is not None}.values():
            store.close()  # one store, shared by both halves
        ksi.configure(None)
    assert [row[1] for row in read_legacy_rows(tmp_path / "checkpoint.db", CHECKPOINTS)] == [1]
    assert [row[1] for row in read_legacy_rows(tmp_path / "mcp_sessions.db", MCP_SESSIONS)] == ["a:c"]
    assert json_differences({"a:c": ksi.saved_form(handshake("a", 1))}, restarted.session_cache) == []
    assert list(restarted.session_cache["a:c"]["tools"]) == [{"name": "tool_0"}, "raw"]  # names only
