"""The adversarial layer: JSON values and SQLite cells that break naive migrators.

Every strategy here shrinks towards the plainest value of its kind (`""`, `0`, `null`, `[]`), so a
failure comes down to the one odd value that causes it.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from migrator.codec import DupDict, InvalidText
from verification.strategies.rendering import RawJson

__all__ = [
    "EDGE_FLOATS",
    "EDGE_INTEGERS",
    "TRICKY_STRINGS",
    "adversarial_floats",
    "adversarial_integers",
    "adversarial_texts",
    "deep_nesting",
    "invalid_texts",
    "json_objects",
    "json_scalars",
    "json_values",
    "non_text_cells",
    "not_json_texts",
    "object_from_pairs",
    "sqlite_cells",
    "sqlite_integers",
    "sqlite_reals",
    "sqlite_texts",
    "weighted",
    "with_a_trap",
]

T = TypeVar("T")


def weighted(*branches: tuple[int, SearchStrategy[T]]) -> SearchStrategy[T]:
    """`st.one_of` with weights; it shrinks towards the first branch, so list the plain one first."""
    table = [index for index, (weight, _) in enumerate(branches) for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda index: branches[index][1])


# --- strings ----------------------------------------------------------------------------------

# Every code point but the surrogates, which UTF-8 cannot encode (so SQLite TEXT cannot hold them).
_STORABLE_CHARACTERS = st.characters(exclude_categories=["Cs"])


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


TRICKY_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "before\x00after",  # C strings stop at NUL
    "e\u0301",  # decomposed é: NFC turns it into U+00E9
    "\u00e9",  # composed é: NFD turns it into e + U+0301
    "\u212b",  # ANGSTROM SIGN: NFC turns it into U+00C5
    "\u1e9b\u0323",  # NFC and NFKC disagree
    "\ufb01",  # the ligature fi: NFKC splits it
    "\ud800",  # lone high surrogate
    "\udfff",  # lone low surrogate
    "lone \ud83d surrogate",
    "\U0001f600",  # astral: a surrogate pair in JSON escapes
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\u2028\u2029",  # JavaScript line terminators
    "\ufeffBOM",
    "\u202eRTL override\u202c",
    "\x7f\x1f\x01\x0b\x0c",
    "\x1b[31mred\x1b[0m",  # an ANSI colour, as terminals and logs write it
    "tab\tnew\nline\r\n",
    'quote " backslash \\ slash /',
    "\uffff\U0010ffff",
    "null",
    "true",
    "-0",
    "1E5",
    "NaN",
    "{}",
    "[]",
    "2025-06-20T23:17:27Z",
)


@cache
def _unicode_text(min_size: int = 0) -> SearchStrategy[str]:
    """Any code point at all, surrogates and control characters included."""
    return st.text(st.characters(exclude_categories=()), min_size=min_size, max_size=12)


@cache
def _long_texts() -> SearchStrategy[str]:
    pieces = st.sampled_from(["a", "\u00e9", "\x00", "\U0001f600", "\\", '"', "\ud800"])
    # Lengths from 1, so a failure caused by the character, not the length, shrinks to one.
    return st.builds(lambda piece, count: piece * count, pieces, st.integers(min_value=1, max_value=10_000))


# Characters that normalisation, C strings, UTF-8 encoders or JavaScript change or cut.
TRAP_CHARACTERS: tuple[str, ...] = (
    "\x00",
    "e\u0301",  # NFC composes it
    "A\u030a",  # NFC composes it
    "\u212b",  # NFC replaces it
    "\ud800",
    "\U0001f600",
    "\u2028",
    "\ufeff",
    "\x1b",  # ESC, which the migrator uses to mark escaped keys
    "/",
)


def _insert(text: str, trap: str, index: int) -> str:
    at = index % (len(text) + 1)
    return text[:at] + trap + text[at:]


@cache
def with_a_trap(texts: SearchStrategy[str]) -> SearchStrategy[str]:
    """Texts from `texts` with one trap character inside, where a naive migrator would not look."""
    return st.builds(_insert, texts, st.sampled_from(TRAP_CHARACTERS), st.integers(0, 64))


@cache
def _texts_with_a_trap() -> SearchStrategy[str]:
    return with_a_trap(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6))


@cache
def adversarial_texts() -> SearchStrategy[str]:
    """Strings from the whole unicode range, the known troublemakers, and very long ones."""
    return weighted(
        (3, st.sampled_from(TRICKY_STRINGS)), (3, _texts_with_a_trap()), (3, _unicode_text()), (1, _long_texts())
    )


# --- numbers ----------------------------------------------------------------------------------

EDGE_INTEGERS: tuple[int, ...] = (
    0,
    1,
    -1,
    2**31,
    2**53 + 1,  # the first integer a double cannot hold
    2**63 - 1,
    -(2**63),
    2**63,  # past signed 64 bits
    -(2**63) - 1,
    2**64,
    2**64 + 1,
    10**30,
    -(10**30),
    10**400,  # past any float
    -(10**5000),  # past Python's default 4300-digit conversion limit
)

EDGE_FLOATS: tuple[float, ...] = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    1e16,
    1e22,
    1e-7,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    9007199254740993.0,
    float("nan"),
    float("inf"),
    float("-inf"),
)


@cache
def adversarial_integers() -> SearchStrategy[int]:
    return weighted((2, st.integers(-1000, 1000)), (2, st.sampled_from(EDGE_INTEGERS)), (1, st.integers()))


@cache
def adversarial_floats() -> SearchStrategy[float]:
    # -0.0 on its own as well: it is the float most often lost (`x + 0.0`, `abs`, a REAL column).
    return weighted((2, st.sampled_from(EDGE_FLOATS)), (1, st.just(-0.0)), (2, st.floats()))


# --- JSON values ------------------------------------------------------------------------------


def object_from_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object from ordered pairs: a `DupDict` when a key repeats, so the text repeats it."""
    keys = [key for key, _ in pairs]
    return DupDict(list(pairs)) if len(set(keys)) < len(keys) else dict(pairs)


_COMMON_KEYS = ("a", "b", "", "data", "timestamp", "items", "tools", "name", "session_queues", "\x00", "e\u0301")


@cache
def object_keys() -> SearchStrategy[str]:
    # A small set of keys comes first so that repeated keys are common, not a lucky draw.
    return weighted((3, st.sampled_from(_COMMON_KEYS)), (1, adversarial_texts()))


def json_objects(values: SearchStrategy[Any], keys: SearchStrategy[str] | None = None) -> SearchStrategy[dict]:
    """Objects in any key order, with repeated keys now and then."""
    pairs = st.lists(st.tuples(keys if keys is not None else object_keys(), values), max_size=4)
    return pairs.map(object_from_pairs)


@cache
def deep_nesting() -> SearchStrategy[RawJson]:
    """Arrays or objects nested hundreds of levels deep, as text (json.dumps would recurse)."""

    def nest(depth: int, in_objects: bool) -> RawJson:
        if in_objects:
            return RawJson('{"a": ' * depth + "null" + "}" * depth)
        return RawJson("[" * depth + "]" * depth)

    # A few depths, not a range: around the parser's limit is what matters, and they shrink to 1.
    return st.builds(nest, st.sampled_from((1, 2, 64, 400, 1_100)), st.booleans())


@cache
def json_scalars() -> SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        adversarial_integers(),
        adversarial_floats(),
        adversarial_texts(),
    )


@cache
def json_values(max_leaves: int = 10) -> SearchStrategy[Any]:
    """Any JSON value: every scalar edge, empty and nested containers, repeated keys, deep text."""
    leaves = weighted((100, json_scalars()), (1, deep_nesting()))  # rare: past ~900 levels it is unreadable
    return st.recursive(
        leaves,
        lambda children: st.one_of(st.lists(children, max_size=4), json_objects(children)),
        max_leaves=max_leaves,
    )


# --- text that is not JSON --------------------------------------------------------------------

NOT_JSON: tuple[str, ...] = (
    "",
    " ",
    "{",
    "}",
    "[1,]",
    '{"a": 1,}',
    "{'a': 1}",
    '{"a" 1}',
    "[1 2]",
    "tru",
    "nul",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
    '"unterminated',
    '{"a": 1}x',
    '{"a": 1} {"b": 2}',
    "/* comment */ {}",
    "\ufeff{}",  # a byte order mark is not JSON whitespace
    '{"a": "\x00"}',  # control characters must be escaped
    '{"a": "\\x41"}',
    "[1e]",
    "-",
    "Infinity1",
    '{"session_queues": {}, "active_completions": {}',
)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


@cache
def not_json_texts() -> SearchStrategy[str]:
    """Text no JSON parser accepts (checked with Python's own, the daemon's reader)."""
    # Lone surrogates cannot be stored as SQLite TEXT; such bytes are `invalid_texts()`.
    storable = st.text(_STORABLE_CHARACTERS, max_size=20)
    return weighted((3, st.sampled_from(NOT_JSON)), (1, storable.filter(lambda text: not _is_json(text))))


# --- SQLite cells -----------------------------------------------------------------------------


_INVALID_UTF8: tuple[bytes, ...] = (
    b"\xff",
    b"\x80",  # a lone continuation byte
    b"\xc3",  # a truncated two-byte sequence
    b"\xc0\xaf",  # an overlong '/'
    b"\xed\xa0\x80",  # an encoded surrogate (CESU-8)
    b"\xf4\x90\x80\x80",  # past U+10FFFF
)


@cache
def invalid_texts() -> SearchStrategy[InvalidText]:
    """TEXT cells whose bytes are not UTF-8, as a writer using another codec left them."""
    valid = st.text(_STORABLE_CHARACTERS, max_size=6).map(str.encode)
    return st.builds(
        lambda before, bad, after: InvalidText(before + bad + after), valid, st.sampled_from(_INVALID_UTF8), valid
    )


@cache
def sqlite_integers() -> SearchStrategy[int]:
    """INTEGER cells: SQLite stores signed 64 bits."""
    edges = st.sampled_from((0, 1, -1, 2**63 - 1, -(2**63), 1_750_461_447))
    return weighted((1, st.integers(-1000, 1000)), (1, edges), (1, st.integers(-(2**63), 2**63 - 1)))


@cache
def sqlite_reals() -> SearchStrategy[float]:
    """REAL cells. No NaN: SQLite stores a NaN as NULL."""
    edges = st.sampled_from((0.0, -0.0, 17.25, 1e16, 5e-324, float("inf"), float("-inf"), 1_750_461_447.832348))
    return weighted((1, edges), (1, st.floats(allow_nan=False)))


@cache
def sqlite_texts() -> SearchStrategy[str]:
    """TEXT cells in valid UTF-8 (a lone surrogate is not; see `invalid_texts`)."""
    storable = tuple(text for text in TRICKY_STRINGS if not _has_surrogate(text))
    return weighted((1, st.sampled_from(storable)), (1, st.text(_STORABLE_CHARACTERS, max_size=12)))


@cache
def sqlite_cells(*, nullable: bool = True) -> SearchStrategy[Any]:
    """A cell of any SQLite storage type: TEXT, INTEGER, REAL, BLOB, NULL, and non-UTF-8 TEXT."""
    return weighted((2, sqlite_texts()), *_non_text_branches(nullable))


@cache
def non_text_cells(*, nullable: bool = True) -> SearchStrategy[Any]:
    """A cell of any SQLite storage type but valid TEXT: what no JSON column can be read from."""
    return weighted(*_non_text_branches(nullable))


def _non_text_branches(nullable: bool) -> list[tuple[int, SearchStrategy[Any]]]:
    branches: list[tuple[int, SearchStrategy[Any]]] = [
        (1, sqlite_integers()),
        (1, sqlite_reals()),
        (1, st.binary(max_size=12)),
        (1, invalid_texts()),
    ]
    if nullable:
        branches.append((1, st.none()))
    return branches
