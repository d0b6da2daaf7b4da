"""Round trips of every shape in ksi-legacy-formats.md through each kind's symmetric pair,
in memory (to_rows then from_rows), plus the reasons given for rows that cannot be read."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator import checkpoints, sessions
from migrator.codec import UnreadableBlob
from migrator.compare import legacy_row_differences
from migrator.legacy import LegacyRow
from migrator.relational import BlobKind
from verification.snapshots import checkpoint_row, session_row

OLD_QUEUE = [{"request_id": "req_1", "data": {"prompt": "hi", "model": "claude"}}, {"request_id": "req_1", "data": {}}]
NEW_QUEUE = {
    "items": [{"request_id": "req_2", "data": {"priority": 1}, "timestamp": "2025-06-20T23:17:27Z"}],
    "is_active": True,
    "active_request": "req_9",
}
COMPLETION = {
    "session_id": "sess_1",
    "agent_id": "agent_1",
    "status": "processing",
    "queued_at": "2025-06-20T23:17:27.832348Z",
    "started_at": None,
    "data": {"prompt": "x", "extras": {"deep": [1, 1.0, True, None, -0.0]}},
    "original_event": {"event": "completion:async"},
    "retry_count": 2,
    "provider": "claude-cli",
}

CHECKPOINT_BLOBS = {
    "plan": {"timestamp": "2025-01-05T10:00:00Z", "session_queues": {"s": NEW_QUEUE}, "active_completions": {}},
    "old queues": {"timestamp": "2025-06-20T23:17:27Z", "session_queues": {"s": OLD_QUEUE}, "active_completions": {}},
    "mixed queues": {
        "timestamp": "2025-06-20T23:17:27+00:00",
        "session_queues": {"a": OLD_QUEUE, "b": NEW_QUEUE, "c": [], "d": {"items": []}},
        "active_completions": {"req_1": COMPLETION, "req_2": {}},
        "reason": "shutdown",
    },
    "later keys": {"reason": "dev", "version": 3, "timestamp": None, "session_queues": {}, "active_completions": {}},
    "off-type values": {
        "timestamp": 1750461447,
        "reason": ["manual"],
        "session_queues": {"s": {"is_active": 1, "active_request": 7, "items": [{"request_id": 5}]}},
        "active_completions": {"r": {"status": True, "session_id": None, "error": {"code": 1}}},
    },
    "nan and infinity": {
        "session_queues": {},
        "active_completions": {"r": {"data": {"x": float("nan"), "y": float("inf")}}},
    },
    "empty": {},
    "unicode keys": {"séance": "\u0000\ud800", "session_queues": {"ß": []}, "active_completions": {"🙂": {}}},
}

SESSION_BLOBS = {
    "plan": {
        "agent_id": "agent_1",
        "tools": ["Read", "Write"],
        "thin_handshake": True,
        "created_at": "2025-01-05T10:00:00Z",
    },
    "daemon": {
        "agent_id": "agent_1",
        "conversation_id": "conv:with:colons",
        "agent_info": {"allowed_events": ["a"], "allowed_claude_tools": ["Read"], "profile": "base"},
        "tools": [
            {"name": "ksi_system_health"},
            {"name": "ksi_send", "description": "send", "inputSchema": {"type": "object", "properties": {}}},
            {"name": "ksi_system_health"},
        ],
        "created": "2025-06-20T23:17:27.832348",
    },
    "no tools key": {"agent_id": "unknown"},
    "empty tools": {"agent_id": "unknown", "tools": []},
    "duplicate tools": {"tools": ["Read", "Read", {"name": "Read"}, None, 5, ["x"]]},
    "off-type values": {"agent_id": 12, "thin_handshake": "yes", "created_at": 1.5, "tools": [{"name": None, "x": 1}]},
}


def _round_trip(kind: BlobKind, row: LegacyRow) -> list[str]:
    return [str(d) for d in legacy_row_differences(kind.legacy, row, kind.from_rows(kind.to_rows(row, "digest")))]


@pytest.mark.parametrize("name", CHECKPOINT_BLOBS)
def test_checkpoint_shapes_round_trip(name: str) -> None:
    assert _round_trip(checkpoints.KIND, checkpoint_row(7, CHECKPOINT_BLOBS[name])) == []


@pytest.mark.parametrize("name", SESSION_BLOBS)
def test_session_shapes_round_trip(name: str) -> None:
    assert _round_trip(sessions.KIND, session_row(3, "agent_1:conv:1", SESSION_BLOBS[name])) == []


def test_queue_items_keep_order_and_duplicates_in_rows() -> None:
    _, queues, items, requests = checkpoints.to_rows(checkpoint_row(1, CHECKPOINT_BLOBS["mixed queues"]), "d")
    named = [checkpoints.QUEUE_TABLE.columns.index(c) for c in ("session_id", "shape", "queue_depth")]
    assert [tuple(q[i] for i in named) for q in queues] == [
        ("a", "list", 2),
        ("b", "object", 1),
        ("c", "list", 0),
        ("d", "object", 0),
    ]
    assert [(i[1], i[2], i[3]) for i in items] == [(0, 0, "req_1"), (0, 1, "req_1"), (1, 0, "req_2")]
    assert [r[2] for r in requests] == ["req_1", "req_2"]


def test_off_type_values_are_not_coerced_into_typed_columns() -> None:
    _, queues, _, _ = checkpoints.to_rows(checkpoint_row(1, CHECKPOINT_BLOBS["off-type values"]), "d")
    queue_is_active = queues[0][checkpoints.QUEUE_TABLE.columns.index("is_active")]
    assert queue_is_active is None  # 1 is not true: it lives in `extra`
    assert json.loads(queues[0][-1]) == [1, 7]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("[1, 2]", "checkpoint_data is a JSON array, expected an object"),
        ('"text"', "checkpoint_data is a JSON string"),
        ('{"session_queues": "x"}', "checkpoint_data.session_queues is string, expected object"),
        ('{"session_queues": {"s": 5}}', "expected an array or object"),
        ('{"session_queues": {"s": [1]}}', "items[0] is a JSON number, expected an object"),
        ('{"session_queues": {"s": {"items": {}}}}', "items is object, expected array"),
        ('{"active_completions": {"r": []}}', "is a JSON array, expected an object"),
        ('{"active_completions": {"r": {}, "r": {}}}', "repeats the key 'r'"),
        ('{"session_queues": null}', "session_queues is null, expected object"),
        ('{"a": ', "invalid JSON"),
        (b"{}", "checkpoint_data is a blob value"),
        (None, "checkpoint_data is a null value"),
        (12, "checkpoint_data is a integer value"),
    ],
)
def test_unreadable_checkpoints_name_their_reason(cell: object, reason: str) -> None:
    with pytest.raises(UnreadableBlob, match=reason.replace("[", r"\[")):
        checkpoints.to_rows((1, 1, "t", cell), "d")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ((1, b"key", "{}", "t"), "session_key is a blob value, expected text"),
        ((1, None, "{}", "t"), "session_key is a null value"),
        ((1, "k", '{"tools": {}}', "t"), "session_data.tools is object, expected array"),
        ((1, "k", "null", "t"), "session_data is a JSON null"),
    ],
)
def test_unreadable_sessions_name_their_reason(row: LegacyRow, reason: str) -> None:
    with pytest.raises(UnreadableBlob, match=reason):
        sessions.to_rows(row, "d")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values, json_values, json_values)
def test_arbitrary_json_values_survive_in_every_value_position(data: object, extra: object, event: object) -> None:
    blob = {
        "timestamp": "2025-06-20T23:17:27Z",
        "unmodelled": extra,
        "session_queues": {"s": [{"request_id": "r", "data": data}], "t": {"items": [{"data": extra}], "x": event}},
        "active_completions": {"r": {"data": data, "original_event": event, "error": extra, "status": data}},
    }
    assert _round_trip(checkpoints.KIND, checkpoint_row(1, blob)) == []
    session = {"agent_id": data, "agent_info": event, "tools": [data, {"name": "t", "inputSchema": extra}], "z": extra}
    assert _round_trip(sessions.KIND, session_row(1, "k", session)) == []


@given(
    json_values,
    st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]),
    st.none() | st.integers(0, 3),
    st.booleans(),
)
def test_any_formatting_comes_back_byte_identical(
    value: object, separators: tuple[str, str], indent: int | None, ascii_only: bool
) -> None:
    text = json.dumps({"session_queues": {}, "v": value}, separators=separators, indent=indent, ensure_ascii=ascii_only)
    assert _round_trip(checkpoints.KIND, checkpoint_row(1, text)) == []
