"""Shadow mode never skips a comparison silently: the report gives the share of reads compared,
and a burst that outruns the comparisons is logged when it starts and when it ends."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from migrator import open_store
from migrator.equivalence import json_differences
from migrator.legacy import LegacyRow
from migrator.store.relational_side import RelationalTables

SESSION = {"agent_id": "a", "tools": [{"name": "Read"}]}


def test_reads_the_backlog_cannot_hold_are_counted_logged_and_lower_the_share_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("migrator.store.shadow.SHADOW_BACKLOG", 1)
    release = threading.Event()
    original = RelationalTables.session

    def held(self: RelationalTables, session_key: str) -> LegacyRow | None:
        release.wait(timeout=30)  # the comparison thread waits here, so the backlog stays full
        return original(self, session_key)

    monkeypatch.setattr(RelationalTables, "session", held)
    with open_store(tmp_path / "ksi.db", mode="shadow", create=True) as store:
        store.save_session("a:c", SESSION, "2025-06-20T10:00:00")
        assert store.report().shadow_compared_share is None  # nothing decided yet
        with caplog.at_level(logging.WARNING, logger="migrator.store.shadow"):
            answers: list[Any] = [store.get_session("a:c") for _ in range(5)]  # one in flight, four skipped
            release.set()
            store.wait_for_shadow_reads()
            answers.append(store.get_session("a:c"))  # the backlog has room again
            store.wait_for_shadow_reads()
        report = store.report()
    assert json_differences([SESSION] * 6, answers) == []  # the caller is served the JSON whatever the backlog
    assert (report.shadow_reads, report.shadow_matches, report.shadow_skipped) == (6, 2, 4)
    assert report.shadow_compared_share == pytest.approx(2 / 6)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, warnings  # once when the burst starts, once when it ends
    assert "reads go uncompared" in warnings[0] and "4 reads went uncompared" in warnings[1]


def test_every_read_compared_is_a_share_of_one(tmp_path: Path) -> None:
    with open_store(tmp_path / "ksi.db", mode="shadow", create=True) as store:
        store.save_session("a:c", SESSION, "2025-06-20T10:00:00")
        for _ in range(3):
            store.get_session("a:c")
        store.wait_for_shadow_reads()
        report = store.report()
    assert (report.shadow_reads, report.shadow_matches, report.shadow_compared_share) == (3, 3, 1.0)
