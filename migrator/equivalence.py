"""Exact comparison of JSON values, used to prove a rebuilt blob equals the original.

"Equal" here is much stricter than Python's `==`, because the migration promises a
byte-for-byte faithful round trip of the legacy data:

* types are exact: `true` is not `1` (Python says `True == 1`) and `1` is not `1.0`;
* floats compare by bits: `-0.0` is not `0.0`, and a NaN equals a NaN (the NaN survived);
* strings compare code point by code point, with no Unicode normalisation;
* objects compare as the *sequence* of their `.items()`, so key order matters and
  duplicate keys count. Objects with duplicate keys arrive as `migrator.codec.DupDict`,
  whose `.items()` yields every pair; this module only ever calls `.items()`, so it works
  for plain dicts and DupDicts alike without importing the codec;
* arrays compare by length and element by element.

Values may be nested ~10,000 levels deep, so every walk below uses an explicit stack
rather than recursion (Python's recursion limit is 1,000 by default).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Final, TypeAlias

from migrator.rendering import common_prefix_length, json_text, path_text, render_pair_texts, text_context, value_text

__all__ = ["Difference", "json_differences", "json_equal", "text_difference"]


class _Absent:
    """Stands in for the value on the side where a key or array element does not exist.

    Using a sentinel value (instead of a special code path) lets a missing element flow
    through the ordinary "types differ" comparison and rendering.
    """

    def __repr__(self) -> str:
        return "<missing>"


_ABSENT: Final = _Absent()
_MISSING_TEXT: Final = "<missing>"

# A path is a linked list from the leaf back to the root (`None` is `$`). Building a
# full path string for every node would cost O(depth) per node, i.e. O(depth**2) for
# deep documents; a parent link is O(1) and the string is only built for a reported
# difference. A step is an array index, or (key, occurrence) for an object member,
# where occurrence counts earlier members with the same key (0 for the first).
_Step: TypeAlias = "int | tuple[str, int]"
_Path: TypeAlias = "tuple[Any, _Step] | None"
# One comparison still to do: expected value, actual value, where they sit.
_Task: TypeAlias = "tuple[Any, Any, _Path]"


@dataclass(frozen=True)
class Difference:
    """One way in which the actual JSON value differs from the expected one.

    `expected` and `actual` are already rendered for humans, e.g. `1 (int)`.
    """

    path: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.path}: {self.expected} != {self.actual}"


def json_differences(expected: Any, actual: Any, *, limit: int = 20) -> list[Difference]:
    """List how `actual` differs from `expected`, in document order, at most `limit` items.

    An empty list means the two values are exactly the same JSON (see the module
    docstring for what "exactly" means).
    """
    if limit < 1:
        # A limit of 0 would make every comparison come back "equal"; refuse it loudly
        # rather than let a verification silently pass.
        raise ValueError(f"limit must be at least 1, got {limit}")
    if _identical_at_c_speed(expected, actual):
        return []
    differences: list[Difference] = []
    for difference in _walk(expected, actual):
        differences.append(difference)
        if len(differences) >= limit:
            break
    return differences


def json_equal(expected: Any, actual: Any) -> bool:
    """Tell whether the two values are exactly the same JSON; stops at the first difference."""
    return _identical_at_c_speed(expected, actual) or next(_walk(expected, actual), None) is None


def _identical_at_c_speed(expected: Any, actual: Any) -> bool:
    """A shortcut for the common case, two equal values, with no Python-level walk: True only
    when the walk would find no difference; False says nothing (the walk decides).

    Python's `==` holds structure and values but not types, key order or the sign of zero
    (`True == 1 == 1.0`, `-0.0 == 0.0`, dicts in any order, a DupDict's last-wins view); the
    encoder's text holds exactly those (`true`, `1`, `1.0`, `-0.0`, keys in order, every pair
    of a DupDict) but not what `==` does (a key `1` and a key `"1"` both spell `"1"`). Together
    they leave only a NaN, which `==` calls unequal, so such a value takes the walk. A value
    the encoder refuses, or too deep for either to recurse, takes the walk too."""
    try:
        return bool(expected == actual) and json.dumps(expected) == json.dumps(actual)
    except (TypeError, ValueError, RecursionError):
        return False


def text_difference(path: str, expected: str, actual: str) -> Difference | None:
    """Where two texts first differ, with a little context from each; None when they are equal.

    Used when two JSON texts decode to equal values but are spelled differently
    (whitespace, escapes, number spelling), so the reader can see the spelling change.
    """
    index = common_prefix_length(expected, actual)
    if index == len(expected) == len(actual):
        return None
    line = expected.count("\n", 0, index) + 1
    column = index - (expected.rfind("\n", 0, index) + 1) + 1
    where = f"{path} (text differs at character {index}, line {line}, column {column})"
    return Difference(where, text_context(expected, index), text_context(actual, index))


# --- the walk ------------------------------------------------------------------------


def _walk(expected: Any, actual: Any) -> Iterator[Difference]:
    """Yield every difference, lazily, in document order.

    The stack holds one iterator of pending comparisons per open container, so memory
    grows with nesting depth, not with document size, and no recursion is involved.
    """
    root: _Task = (expected, actual, None)
    stack: list[Iterator[_Task]] = [iter((root,))]
    while stack:
        task = next(stack[-1], None)
        if task is None:
            stack.pop()
            continue
        own_differences, children = _compare(*task)
        yield from own_differences
        if children is not None:
            stack.append(children)


def _compare(expected: Any, actual: Any, path: _Path) -> tuple[list[Difference], Iterator[_Task] | None]:
    """Compare one pair of values: differences found at this node, and child pairs."""
    kind = _kind(expected)
    if kind != _kind(actual):
        return [_value_difference(path, expected, actual)], None
    if kind == "object":
        return _compare_objects(expected, actual, path)
    if kind == "array":
        return _compare_arrays(expected, actual, path)
    if _same_scalar(kind, expected, actual):
        return [], None
    return [_value_difference(path, expected, actual)], None


def _same_scalar(kind: str, expected: Any, actual: Any) -> bool:
    """Compare two non-container values already known to be of the same kind."""
    if kind == "float":
        return _same_float(expected, actual)
    if kind in ("null", "bool", "int", "str"):
        return bool(expected == actual)
    # Not a JSON type (e.g. a Decimal from a custom parse_float). `==` may be loose
    # (Decimal("1.0") == Decimal("1.00")), so also demand the same spelling.
    return type(expected) is type(actual) and repr(expected) == repr(actual)


def _same_float(expected: float, actual: float) -> bool:
    """Bit-level float equality, except that all NaNs are one value.

    `==` would call -0.0 equal to 0.0 and NaN unequal to itself; JSON text can carry
    neither a NaN payload nor a NaN sign, so any NaN matches any NaN.
    """
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return expected == actual and math.copysign(1.0, expected) == math.copysign(1.0, actual)


def _compare_arrays(expected: list[Any], actual: list[Any], path: _Path) -> tuple[list[Difference], Iterator[_Task]]:
    """Report a length change here; compare elements pairwise, the surplus against <missing>."""
    differences = []
    if len(expected) != len(actual):
        differences.append(Difference(path_text(path), f"length {len(expected)}", str(len(actual))))
    pairs = zip_longest(expected, actual, fillvalue=_ABSENT)
    children = ((e, a, (path, index)) for index, (e, a) in enumerate(pairs))
    return differences, children


def _compare_objects(
    expected: dict[str, Any], actual: dict[str, Any], path: _Path
) -> tuple[list[Difference], Iterator[_Task]]:
    """Compare two objects as sequences of members.

    Members are matched by (key, occurrence), so the second `"a"` of one object is
    compared with the second `"a"` of the other. A member with no partner is reported
    against <missing>. If the matched members come in a different order, that is
    reported once, here, with both key lists.
    """
    expected_items = list(expected.items())
    actual_items = list(actual.items())
    expected_keys = [key for key, _ in expected_items]
    actual_keys = [key for key, _ in actual_items]
    if expected_keys == actual_keys and len(set(expected_keys)) == len(expected_keys):
        # Fast path for the usual case: same keys, same order, no duplicates.
        return [], ((e, a, (path, (key, 0))) for (key, e), (_, a) in zip(expected_items, actual_items, strict=True))

    expected_members = _number_occurrences(expected_keys)
    actual_members = _number_occurrences(actual_keys)
    actual_position = {member: index for index, member in enumerate(actual_members)}
    expected_set = set(expected_members)

    differences = []
    matched_expected = [m for m in expected_members if m in actual_position]
    matched_actual = [m for m in actual_members if m in expected_set]
    if matched_expected != matched_actual:
        shown_expected, shown_actual = render_pair_texts(json_text(expected_keys), json_text(actual_keys))
        differences.append(Difference(path_text(path), f"key order {shown_expected}", shown_actual))

    tasks: list[_Task] = []
    for member, (_, value) in zip(expected_members, expected_items, strict=True):
        position = actual_position.get(member)
        partner = _ABSENT if position is None else actual_items[position][1]
        tasks.append((value, partner, (path, member)))
    for member, (_, value) in zip(actual_members, actual_items, strict=True):
        if member not in expected_set:
            tasks.append((_ABSENT, value, (path, member)))
    return differences, iter(tasks)


def _number_occurrences(keys: list[str]) -> list[tuple[str, int]]:
    """Pair each key with how many times it appeared before (0 for the first time)."""
    seen: dict[str, int] = {}
    members = []
    for key in keys:
        count = seen.get(key, 0)
        members.append((key, count))
        seen[key] = count + 1
    return members


# --- kinds ---------------------------------------------------------------------------

# Exact-type lookup first (fast); the isinstance chain below handles subclasses such as
# DupDict. bool must be tested before int because bool is a subclass of int.
_EXACT_KINDS: Final[dict[type, str]] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    dict: "object",
    list: "array",
}


def _kind(value: Any) -> str:
    """Name the JSON type of a value (with its JSON name: null, object, array)."""
    kind = _EXACT_KINDS.get(type(value))
    if kind is not None:
        return kind
    if value is _ABSENT:
        return "missing"
    for base, name in (
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (dict, "object"),
        (list, "array"),
    ):
        if isinstance(value, base):
            return name
    return type(value).__name__


# --- rendering -----------------------------------------------------------------------


def _value_difference(path: _Path, expected: Any, actual: Any) -> Difference:
    """Build the Difference for two unequal values, rendered with their types."""
    shown_expected, shown_actual = render_pair_texts(value_text(expected), value_text(actual))
    return Difference(
        path_text(path),
        _with_kind(shown_expected, expected),
        _with_kind(shown_actual, actual),
    )


def _with_kind(text: str, value: Any) -> str:
    """Append the type name, which is what tells `1 (int)` from `1.0 (float)` at a glance."""
    if value is _ABSENT:
        return _MISSING_TEXT
    return f"{text} ({_kind(value)})"
