"""JSON text from generated values, in any formatting the JSON grammar allows.

The blob strategies generate *values*; a legacy cell holds *text*. `render` turns one into the
other the way some writer might have: `json.dumps` with any separators, indentation and
`ensure_ascii`, then token by token respelt (`1E5`, `1.0e0`, `-0`, `"\\u00e9"`, `"\\/"`), with extra
whitespace, and with `RawJson` fragments spliced in verbatim (deep nesting, corpus documents).

Objects that repeat a key are `migrator.codec.DupDict`s, which `json.dumps` writes pair by pair,
so the text really holds the repeated keys.

This module deliberately does not use the migrator's own tokenizer or overlay code: it is the
independent side of the comparison.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from migrator.codec import DupDict

__all__ = ["CANONICAL", "Formatting", "RawJson", "render"]


@dataclass(frozen=True)
class RawJson:
    """A fragment of JSON text that `render` splices in exactly as written."""

    text: str


@dataclass(frozen=True)
class Formatting:
    """How one writer spelled its JSON. The defaults are `json.dumps` with default arguments."""

    item_separator: str = ", "
    key_separator: str = ": "
    indent: int | str | None = None
    ensure_ascii: bool = True
    respellings: tuple[tuple[int, int], ...] = ()  # (token index, spelling variant)
    inserted_spaces: tuple[tuple[int, str], ...] = ()  # (token index, whitespace before it)
    leading: str = ""
    trailing: str = ""


CANONICAL = Formatting()
"""What the daemon wrote: `json.dumps(value)`."""

# Same grammar as a JSON tokenizer needs: whitespace, then one token. Strings may hold any escape.
_TOKEN = re.compile(
    r"""([ \t\n\r]*)("(?:[^"\\]|\\.)*"|-?Infinity|NaN|-?[0-9][0-9.eE+\-]*|true|false|null|[{}\[\]:,])""",
    re.DOTALL,
)
_STRING_UNIT = re.compile(r"\\u[0-9a-fA-F]{4}|\\.|.", re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHORT_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def render(value: Any, formatting: Formatting = CANONICAL) -> str:
    """The JSON text of `value` as `formatting` spells it; `RawJson` parts go in verbatim."""
    if isinstance(value, RawJson):
        return formatting.leading + value.text + formatting.trailing
    raws: list[str] = []
    text = json.dumps(
        _with_placeholders(value, raws),
        separators=(formatting.item_separator, formatting.key_separator),
        indent=formatting.indent,
        ensure_ascii=formatting.ensure_ascii,
    )
    if not formatting.ensure_ascii:
        text = _escape_surrogates(text)  # a lone surrogate cannot be stored as SQLite TEXT
    text = _respell(text, formatting)
    return formatting.leading + _splice(text, raws) + formatting.trailing


# --- raw fragments ----------------------------------------------------------------------------

_PLACEHOLDER = "\x00ksi-raw-fragment-{}\x00"


def _with_placeholders(value: Any, raws: list[str]) -> Any:
    """A copy of `value` with every `RawJson` replaced by a unique placeholder string."""
    if isinstance(value, RawJson):
        raws.append(value.text)
        return _PLACEHOLDER.format(len(raws) - 1)
    if isinstance(value, list):
        return [_with_placeholders(item, raws) for item in value]
    if isinstance(value, dict):
        pairs = [(key, _with_placeholders(item, raws)) for key, item in value.items()]
        return DupDict(pairs) if isinstance(value, DupDict) else dict(pairs)
    return value


def _splice(text: str, raws: list[str]) -> str:
    for index, raw in enumerate(raws):
        quoted = json.dumps(_PLACEHOLDER.format(index))
        if text.count(quoted) != 1:
            raise AssertionError(f"placeholder {index} is not unique in the rendered text")
        text = text.replace(quoted, raw)
    return text


def _escape_surrogates(text: str) -> str:
    # Surrogates only ever occur inside JSON strings, where `\\udxxx` is their escape.
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


# --- token spelling ---------------------------------------------------------------------------


def _respell(text: str, formatting: Formatting) -> str:
    if not formatting.respellings and not formatting.inserted_spaces:
        return text
    spaces, tokens = [], []
    for match in _TOKEN.finditer(text):
        spaces.append(match.group(1))
        tokens.append(match.group(2))
    for index, variant in formatting.respellings:
        position = index % len(tokens)
        tokens[position] = respell_token(tokens[position], variant)
    for index, space in formatting.inserted_spaces:
        position = index % len(tokens)
        spaces[position] += space
    return "".join(space + token for space, token in zip(spaces, tokens, strict=True))


def respell_token(token: str, variant: int) -> str:
    """Another spelling of one JSON token that parses to exactly the same value."""
    if token.startswith('"'):
        return token if "ksi-raw-fragment" in token else _respell_string(token, variant)
    if token[0] in "-0123456789" and token != "-Infinity":
        return _respell_number(token, variant)
    return token  # punctuation, literals, NaN and Infinity have one spelling


def _respell_number(token: str, variant: int) -> str:
    if not any(mark in token for mark in ".eE"):
        return "-0" if token == "0" else token  # an integer has no other spelling, except 0
    mantissa, _, exponent = token.lower().partition("e")
    sign = "-" if exponent.startswith("-") else ""
    digits = exponent.lstrip("+-")
    spellings = (
        format(Decimal(token), "E"),  # scientific: 100000.0 -> 1.000000E+5, 0.1 -> 1E-1
        (mantissa + "0" if "." in mantissa else mantissa + ".0") + (f"e{exponent}" if exponent else ""),
        f"{mantissa}E{sign}{digits}" if exponent else f"{mantissa}e0",
        f"{mantissa}e{sign or '+'}0{digits}" if exponent else f"{mantissa}E-00",
    )
    return spellings[variant % len(spellings)]


def _respell_string(token: str, variant: int) -> str:
    units = _STRING_UNIT.findall(token[1:-1])
    if not units:
        return token
    respellers = (_escape_solidus, _escape_first_unit, _escape_non_ascii_upper, _escape_short_escapes)
    return '"' + "".join(respellers[variant % len(respellers)](units)) + '"'


def _unit_text(unit: str) -> str:
    """The characters one string unit (raw character or escape) stands for."""
    if unit.startswith("\\u"):
        return chr(int(unit[2:], 16))
    if unit.startswith("\\"):
        return _SHORT_ESCAPES[unit[1]]
    return unit


def _u_escape(text: str, upper: bool = False) -> str:
    escaped = []
    for char in text:
        code = ord(char)
        if code > 0xFFFF:  # astral characters are written as a surrogate pair
            code -= 0x10000
            escaped += [f"\\u{0xD800 + (code >> 10):04x}", f"\\u{0xDC00 + (code & 0x3FF):04x}"]
        else:
            escaped.append(f"\\u{code:04x}")
    joined = "".join(escaped)
    return joined.upper().replace("\\U", "\\u") if upper else joined


def _escape_solidus(units: list[str]) -> list[str]:
    return ["\\/" if unit == "/" else unit for unit in units]


def _escape_first_unit(units: list[str]) -> list[str]:
    return [_u_escape(_unit_text(units[0])), *units[1:]]


def _escape_non_ascii_upper(units: list[str]) -> list[str]:
    return [
        _u_escape(_unit_text(unit), upper=True) if unit.startswith("\\u") or not unit.isascii() else unit
        for unit in units
    ]


def _escape_short_escapes(units: list[str]) -> list[str]:
    return [_u_escape(_unit_text(unit)) if unit.startswith("\\") and len(unit) == 2 else unit for unit in units]
