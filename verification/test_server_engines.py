"""The generative suite with its targets on the server engines, PostgreSQL and MySQL/MariaDB.

Every property of `test_properties.py` that goes through a database, and the lifecycle of
`test_lifecycle_state_machine.py`, run here unchanged: the same strategies, the same checks,
only the target lives on a server (`verification.engines`, one private namespace per worker).
It is the harness's job to find where an engine differs from SQLite.

A server round trip costs more than a SQLite file, so each test searches a share of the
profile's examples (`server_settings`); the explicit examples below run on every engine always.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from migrator.codec import InvalidText
from verification.engines import Targets
from verification.fuzzing import honour_budget
from verification.snapshots import checkpoint_row, session_row
from verification.strategies import DAEMON_SCHEMA, LegacySnapshot
from verification.test_lifecycle_state_machine import lifecycle_on
from verification.test_properties import LONE_SURROGATES, PROPERTIES

DATABASE_PROPERTIES = (
    "migrate-then-restore",
    "fresh-load-equals-catch-up",
    "migrating-twice-changes-nothing",
    "source-order-does-not-matter",
    "quarantine-is-total",
)
SERVER_SHARE = 4  # a quarter of the profile's examples: the ci profile's 60 become 15
MIN_SERVER_EXAMPLES = 5
LIFECYCLE_STEPS = 12

# Where the servers differ from SQLite, in one snapshot: NUL in text, keys and cells
# (PostgreSQL); case, accents and trailing spaces in keys, text over 64 KiB, 4-byte characters,
# microseconds, years outside DATETIME (MySQL); integers past 64 bits and REAL cells (both).
ENGINE_TRAPS = LegacySnapshot(
    DAEMON_SCHEMA,
    (
        checkpoint_row(
            1,
            '{"timestamp": "0999-01-01T00:00:00.000001Z", "reason": "a\\u0000", "n": 18446744073709551617, '
            '"session_queues": {"s": [], "S": [], "s ": [], "\\u0000": []}, '
            '"active_completions": {"r": {"status": "\U0001f642"}, "R": {}, "r ": {}}}',
            timestamp="2025-06-20\x00",
        ),
        checkpoint_row(2**63 - 1, {"reason": "x" * 70_000}),
    ),
    (
        session_row(1, "a", {"agent_id": "a", "tools": ["Read"]}, last_seen="2025-06-20T23:17:27.832348"),
        session_row(2, "A", {"agent_id": "A", "tools": ["Read "]}, last_seen=0.1 + 0.2),
        session_row(3, "a ", {"agent_id": "\U0001f642" * 20_000}, last_seen=float("inf")),
        session_row(4, "a\x00", {"created": "\x00"}, last_seen=2**63 - 1),
    ),
)

# What could end a field or a line of a COPY or LOAD DATA early, or read as NULL or an escape, in
# every place the mapping puts text: keys, verbatim cells, parsed-out columns, JSON payloads.
_LOADER_TEXT = "\\ \\\\ \t \n \r \\. \\N NULL \\0 %s"
LOADER_TRAPS = LegacySnapshot(
    DAEMON_SCHEMA,
    (
        checkpoint_row(
            1,
            {
                "reason": _LOADER_TEXT,
                "timestamp": "\\.",
                "session_queues": {_LOADER_TEXT: [{"request_id": "\t"}]},
                "active_completions": {"\\N": {"status": "", "error": _LOADER_TEXT}},
                "x": [-0.0, 1e308, "\r\n"],
            },
            timestamp=_LOADER_TEXT,
        ),
    ),
    (
        session_row(1, _LOADER_TEXT, {"agent_id": "", "tools": ["\\.", {"name": "\n"}], "n": 2**70}, last_seen="\\N"),
        session_row(2, "", {"agent_id": None, "created": "\t"}, last_seen=""),
        session_row(3, "\\", '{"agent_id": "\\\\", "tools": [], "f": NaN, "g": -Infinity}', last_seen=b"\\.\t"),
        session_row(4, "\r", {"conversation_id": "\\N"}, last_seen=InvalidText(b"\xff\\.\t\n")),
    ),
)
EXPLICIT_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "migrate-then-restore": [
        {"snapshot": ENGINE_TRAPS, "batch_size": 1},
        {"snapshot": LONE_SURROGATES, "batch_size": 1},
        {"snapshot": LOADER_TRAPS, "batch_size": 1},
    ],
    "fresh-load-equals-catch-up": [
        {"snapshot": ENGINE_TRAPS, "batch_size": 2},
        {"snapshot": LOADER_TRAPS, "batch_size": 1},
    ],
    "migrating-twice-changes-nothing": [{"snapshot": ENGINE_TRAPS, "batch_size": 2}],
}


def server_settings() -> settings:
    """The loaded profile (chosen with --hypothesis-profile), with a share of its examples."""
    profile = settings.default
    assert profile is not None  # a profile is always loaded once the plugin has configured
    return settings(profile, max_examples=max(MIN_SERVER_EXAMPLES, profile.max_examples // SERVER_SHARE))


# The round trip on each server in the quick suite; the other properties take 3 s to 10 s each
# per server, so CI runs them with `-m slow`.
SERVER_PROPERTY_CASES = [
    pytest.param(name, marks=() if name == "migrate-then-restore" else pytest.mark.slow) for name in DATABASE_PROPERTIES
]


@pytest.mark.hypothesis  # a hypothesis test, built as it runs: a fuzz budget gives it its share
@pytest.mark.parametrize("property_name", SERVER_PROPERTY_CASES)
def test_property_holds_on_a_server_engine(server_engine: Targets, property_name: str) -> None:
    prop = PROPERTIES[property_name]

    def holds(arguments: dict[str, Any]) -> None:
        prop.check(**arguments, targets=server_engine)

    # Hypothesis keeps failing examples under the test function's name: one name per property
    # and engine, so a failure saved for one is replayed for it, not for the others.
    holds.__name__ = f"{property_name.replace('-', '_')}_on_{server_engine.engine}"
    for explicit in EXPLICIT_EXAMPLES.get(property_name, []):
        holds = example(arguments=explicit)(holds)
    test = settings(server_settings())(given(arguments=st.fixed_dictionaries(prop.arguments))(holds))
    honour_budget(test)()  # built while the test runs, so the plugin could not do it at collection


@pytest.mark.slow
@pytest.mark.hypothesis
def test_legacy_database_lifecycle_on_a_server_engine(server_engine: Targets) -> None:
    run_state_machine_as_test(
        lifecycle_on(server_engine), settings=settings(server_settings(), stateful_step_count=LIFECYCLE_STEPS)
    )
