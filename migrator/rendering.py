"""How values, paths and texts are written in difference messages: short, exact, and readable.

Values may be huge or nested ~10,000 levels deep, so JSON text is produced piece by piece from an
explicit stack and cut soon after the width a message can show; two long texts that differ near
their end are windowed around the difference, so the reader sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final, TypeAlias

# Width of a rendered value in a difference message: long enough to recognise a value,
# short enough that a report of twenty differences stays readable.
_MAX_WIDTH: Final = 60
# How many characters before a point of difference are kept when a text has to be
# windowed, so the reader sees what leads up to the change.
_LEAD: Final = 20
# Characters kept from a windowed text: _MAX_WIDTH less room for two "..." markers.
_WINDOW: Final = _MAX_WIDTH - 6

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# A path is a linked list from the leaf back to the root (`None` is `$`); a step is an array
# index, or (key, occurrence) for an object member (see `migrator.equivalence`).
Step: TypeAlias = "int | tuple[str, int]"
Path: TypeAlias = "tuple[Any, Step] | None"


def render_pair_texts(expected: str, actual: str) -> tuple[str, str]:
    """Shorten two texts to about _MAX_WIDTH characters, keeping their difference in view.

    Plain truncation would show two identical prefixes when long strings differ near
    the end, so when the first difference lies past the cut, both texts are windowed
    around it instead.
    """
    if len(expected) <= _MAX_WIDTH and len(actual) <= _MAX_WIDTH:
        return expected, actual
    index = common_prefix_length(expected, actual)
    start = 0
    if index >= _WINDOW - _LEAD // 2:
        # Lead up to the difference, but never so far right that the window is half
        # empty when the difference sits near the end.
        longest = max(len(expected), len(actual))
        start = max(0, min(index - _LEAD, longest - _WINDOW))
    return _window(expected, start), _window(actual, start)


def _window(text: str, start: int) -> str:
    """Cut _WINDOW characters out of `text` from `start`, marking cut ends with '...'."""
    if start == 0 and len(text) <= _MAX_WIDTH:
        return text
    head = "..." if start > 0 else ""
    tail = "..." if start + _WINDOW < len(text) else ""
    return f"{head}{text[start : start + _WINDOW]}{tail}"


def json_text(value: Any) -> str:
    """JSON spelling of a value, cut off soon after _MAX_WIDTH characters.

    Built piece by piece from an explicit stack, so a huge or 10,000-deep container
    costs only the few pieces needed (json.dumps would recurse and serialise it all).
    """
    pieces: list[str] = []
    size = 0
    for piece in _json_pieces(value):
        pieces.append(piece)
        size += len(piece)
        if size > _MAX_WIDTH + 1:
            break
    return "".join(pieces)


def value_text(value: Any) -> str:
    """Text of a value for a difference message; complete for scalars (see render_pair_texts)."""
    if isinstance(value, (dict, list)):
        return json_text(value)
    return _scalar_text(value)


class _Raw(str):
    """Punctuation emitted by _json_pieces, told apart from string values needing quotes."""

    __slots__ = ()


_END: Final = object()


def _json_pieces(root: Any) -> Iterator[str]:
    """Yield the JSON text of `root` in small pieces, iteratively (no recursion)."""
    stack: list[Iterator[Any]] = [iter((root,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, _Raw):
            yield str(item)
        elif isinstance(item, dict):
            stack.append(_object_pieces(item))
        elif isinstance(item, list):
            stack.append(_array_pieces(item))
        else:
            yield _scalar_text(item)


def _array_pieces(array: list[Any]) -> Iterator[Any]:
    """Punctuation and elements of an array, in output order."""
    yield _Raw("[")
    for index, element in enumerate(array):
        if index:
            yield _Raw(", ")
        yield element
    yield _Raw("]")


def _object_pieces(obj: dict[str, Any]) -> Iterator[Any]:
    """Punctuation, keys and values of an object in output order, duplicates included."""
    yield _Raw("{")
    for index, (key, value) in enumerate(obj.items()):
        if index:
            yield _Raw(", ")
        yield _Raw(_scalar_text(key) + ": ")
        yield value
    yield _Raw("}")


def _scalar_text(value: Any) -> str:
    """JSON spelling of a scalar: NaN/Infinity allowed, non-ASCII escaped.

    ensure_ascii (the json.dumps default) is deliberate: it makes invisible differences
    visible, e.g. a composed "é" (\\u00e9) against "e" + combining accent (e\\u0301).
    """
    try:
        return json.dumps(value, allow_nan=True)
    except ValueError:
        if isinstance(value, int):
            # Beyond sys.get_int_max_str_digits() decimal conversion is refused;
            # hexadecimal is exempt from that limit and still shows where ints differ.
            return f"<{value.bit_length()}-bit integer {value:#x}>"
        return repr(value)
    except TypeError:  # not a JSON type at all
        return repr(value)


def path_text(path: Path) -> str:
    """Spell a path like `$.a["b c"][3]`; a repeated key's n-th occurrence gets `#n`."""
    steps: list[str] = []
    while path is not None:
        path, step = path
        steps.append(_step_text(step))
    steps.append("$")
    return "".join(reversed(steps))


def _step_text(step: Step) -> str:
    """Spell one step of a path."""
    if isinstance(step, int):
        return f"[{step}]"
    key, occurrence = step
    text = f".{key}" if _IDENTIFIER.fullmatch(key) else f"[{json.dumps(key)}]"
    return text if occurrence == 0 else f"{text}#{occurrence + 1}"


def text_context(text: str, index: int) -> str:
    """Show `text` around `index` as a JSON string, so whitespace and escapes are visible."""
    start = max(0, index - _LEAD)
    end = index + _LEAD
    head = "..." if start > 0 else ""
    tail = "..." if end < len(text) else ("<end>" if index >= len(text) else "")
    return f"{head}{json.dumps(text[start:end])}{tail}"


def common_prefix_length(first: str, second: str) -> int:
    """Length of the longest common prefix, found by binary search over slices.

    Slice comparison runs in C, so this is fast even for megabyte-sized texts, where a
    character-by-character Python loop would not be.
    """
    low, high = 0, min(len(first), len(second))  # first[:low] == second[:low] always
    while low < high:
        middle = (low + high + 1) // 2
        if first[low:middle] == second[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low
