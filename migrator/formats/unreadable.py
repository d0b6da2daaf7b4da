"""Every reason a legacy row is quarantined, each with a way to make such a row from a readable one."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from migrator.codec import DupDict, InvalidText, LegacyCell

CHECKPOINTS = "checkpoints"
MCP_SESSIONS = "mcp_sessions"


@dataclass(frozen=True)
class Spoiled:
    """An unreadable row's cells: its JSON cell, and what becomes of its key cell."""

    data: LegacyCell  # str, bytes (a BLOB) or InvalidText (TEXT that is not UTF-8)
    key: Callable[[str], LegacyCell] | None = None  # turns the row's text key into its stored cell


Encode = Callable[[Any], str]
"""How a generator writes a JSON value as text: `json.dumps`, or the harness's `render`."""


@dataclass(frozen=True)
class UnreadableKind:
    """One way a legacy row cannot be read as the expected JSON, and the reason it is quarantined.

    `spoil(table, blob, rng, encode)` turns a readable blob of `table` into such a row; `reason`
    is a regular expression the migrator's quarantine reason matches.
    """

    name: str
    doc: str
    tables: tuple[str, ...]
    reason: str
    spoil: Callable[[str, Mapping[str, Any], random.Random, Encode], Spoiled]


def _replaced(blob: Mapping[str, Any], key: str, value: Any) -> dict:
    """`blob` with `key` set to `value` (every occurrence), or appended; repeated keys stay."""
    pairs = list(blob.items())
    if key in blob:
        pairs = [(k, value if k == key else v) for k, v in pairs]
    else:
        pairs.append((key, value))
    return DupDict(pairs) if isinstance(blob, DupDict) else dict(pairs)


def _a_map(value: Any) -> dict:
    return dict(value.items()) if isinstance(value, dict) else {}


def _new_key(taken: Mapping[str, Any], prefix: str, rng: random.Random) -> str:
    while True:
        key = f"{prefix}_{rng.getrandbits(32):08x}"
        if key not in taken:
            return key


def _truncated(_table: str, blob: Mapping[str, Any], rng: random.Random, encode: Encode) -> Spoiled:
    text = encode(blob)
    start, end = len(text) - len(text.lstrip()), len(text.rstrip())
    # Cut before the object's closing brace: a prefix of an unclosed object is never JSON.
    return Spoiled(text[: rng.randint(start + 1, end - 1)])


def _python_repr(_table: str, blob: Mapping[str, Any], _rng: random.Random, _encode: Encode) -> Spoiled:
    text = ascii(blob)
    # A key holding a single quote is repr'd in double quotes: wrap it so the text stays Python's.
    return Spoiled(text if text.startswith("{'") else "{'state': " + text + "}")


def _empty(_table: str, _blob: Mapping[str, Any], _rng: random.Random, _encode: Encode) -> Spoiled:
    return Spoiled("")


_TOO_DEEP = 5_000  # Python's parser recurses once a level and stops near 1,000


def _too_deep(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled("[" * _TOO_DEEP + encode(blob) + "]" * _TOO_DEEP)


def _top_level_array(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled(encode([blob]))


def _top_level_string(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled(encode(encode(blob)))


def _wrong_container(table: str, blob: Mapping[str, Any], rng: random.Random, encode: Encode) -> Spoiled:
    """A container stored as its own JSON text (encoded twice) where the object or array belongs."""
    if table == MCP_SESSIONS:
        return Spoiled(encode(_replaced(blob, "tools", encode(blob.get("tools", [])))))
    place = rng.choice(("session_queues", "active_completions", "items"))
    if place != "items":
        return Spoiled(encode(_replaced(blob, place, encode(_a_map(blob.get(place))))))
    queues = _a_map(blob.get("session_queues"))
    queues[_new_key(queues, "sess", rng)] = {"items": "[]", "is_active": False}
    return Spoiled(encode(_replaced(blob, "session_queues", queues)))


def _wrong_element(_table: str, blob: Mapping[str, Any], rng: random.Random, encode: Encode) -> Spoiled:
    """A queue that is neither array nor object, a queue item or a completion that is no object."""
    place = rng.choice(("queue", "item", "completion"))
    if place == "completion":
        completions = _a_map(blob.get("active_completions"))
        completions[_new_key(completions, "req", rng)] = "completed"
        return Spoiled(encode(_replaced(blob, "active_completions", completions)))
    queues = _a_map(blob.get("session_queues"))
    queues[_new_key(queues, "sess", rng)] = "queued" if place == "queue" else ["req_1"]
    return Spoiled(encode(_replaced(blob, "session_queues", queues)))


def _repeated_id(_table: str, blob: Mapping[str, Any], rng: random.Random, encode: Encode) -> Spoiled:
    """A map of sessions or requests that names one twice (two files merged by hand)."""
    place = rng.choice(("session_queues", "active_completions"))
    pairs = list(_a_map(blob.get(place)).items()) or [("sess_1" if place == "session_queues" else "req_1", {})]
    pairs.insert(rng.randint(0, len(pairs)), pairs[rng.randrange(len(pairs))])
    return Spoiled(encode(_replaced(blob, place, DupDict(pairs))))


def _blob_typed(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled(encode(blob).encode("utf-8"))


def _with_bytes(text: str, inserted: bytes) -> InvalidText:
    """The text's UTF-8 with `inserted` inside its first string (or after its first character)."""
    raw = text.encode("utf-8")
    at = raw.find(b'"') + 1 or 1
    return InvalidText(raw[:at] + inserted + raw[at:])


def _invalid_utf8(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled(_with_bytes(encode(blob), b"caf\xe9 \xff"))


def _lone_surrogate(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled(_with_bytes(encode(blob), "\ud83d".encode("utf-8", "surrogatepass")))


def _key_as_blob(key: str) -> bytes:
    return key.encode("utf-8")


def _session_key_not_text(_table: str, blob: Mapping[str, Any], _rng: random.Random, encode: Encode) -> Spoiled:
    return Spoiled(encode(blob), key=_key_as_blob)


_BOTH = (CHECKPOINTS, MCP_SESSIONS)
_JSON_CELL = r"^(checkpoint|session)_data"

UNREADABLE_KINDS: tuple[UnreadableKind, ...] = (
    UnreadableKind(
        "truncated",
        "A JSON object cut short, as a full disk leaves it: the closing brace is gone.",
        _BOTH,
        r"^invalid JSON: ",
        _truncated,
    ),
    UnreadableKind(
        "python_repr",
        "str(state) written instead of json.dumps(state): single quotes, True, None, nan.",
        _BOTH,
        r"^invalid JSON: ",
        _python_repr,
    ),
    UnreadableKind(
        "top_level_array",
        "Valid JSON, but the object inside a list.",
        _BOTH,
        _JSON_CELL + r" is a JSON array, expected an object$",
        _top_level_array,
    ),
    UnreadableKind(
        "top_level_string",
        "Valid JSON, but the object's text encoded once more, into a string.",
        _BOTH,
        _JSON_CELL + r" is a JSON string, expected an object$",
        _top_level_string,
    ),
    UnreadableKind(
        "wrong_container",
        "A container (session_queues, active_completions, a queue's items, tools) holding its JSON text.",
        _BOTH,
        _JSON_CELL + r"\S*\.(session_queues|active_completions|items|tools) is string, expected (object|array)$",
        _wrong_container,
    ),
    UnreadableKind(
        "blob_typed",
        "The JSON stored as a BLOB of UTF-8 bytes (a writer that passed bytes).",
        _BOTH,
        _JSON_CELL + r" is a blob value, expected JSON text$",
        _blob_typed,
    ),
    UnreadableKind(
        "invalid_utf8",
        "A TEXT cell whose bytes are not UTF-8 (Latin-1 from a writer with another codec).",
        _BOTH,
        _JSON_CELL + r" is a text value, expected JSON text$",
        _invalid_utf8,
    ),
    UnreadableKind("empty", "An empty string.", _BOTH, r"^invalid JSON: ", _empty),
    UnreadableKind(
        "too_deep",
        "Valid JSON nested deeper than Python's parser reads (about 1,000 levels).",
        _BOTH,
        r"^JSON nested too deeply to parse$",
        _too_deep,
    ),
    UnreadableKind(
        "lone_surrogate",
        "A TEXT cell holding a lone surrogate's bytes (CESU-8, surrogatepass), which UTF-8 forbids.",
        _BOTH,
        _JSON_CELL + r" is a text value, expected JSON text$",
        _lone_surrogate,
    ),
    UnreadableKind(
        "wrong_element",
        "A queue that is neither array nor object, or a queue item or completion that is no object.",
        (CHECKPOINTS,),
        r"^checkpoint_data\.(session_queues|active_completions)\[.*\] is a JSON \w+, expected an (array or )?object$",
        _wrong_element,
    ),
    UnreadableKind(
        "repeated_id",
        "session_queues or active_completions naming one session or request twice.",
        (CHECKPOINTS,),
        r"^checkpoint_data\.(session_queues|active_completions) repeats the key ",
        _repeated_id,
    ),
    UnreadableKind(
        "session_key_not_text",
        "A readable session under a BLOB key: no text key to look it up by.",
        (MCP_SESSIONS,),
        r"^session_key is a blob value, expected text$",
        _session_key_not_text,
    ),
)
"""Every reason a legacy row is quarantined. Under the daemon's DDL a JSON cell is TEXT or BLOB:
TEXT affinity turns a number into text and NOT NULL refuses NULL, so INTEGER, REAL and NULL
cells (which the harness also draws, under untyped DDL) are beyond what production holds."""
