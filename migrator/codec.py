"""Exact JSON and SQLite-cell codecs shared by both blob kinds.

Four problems are solved here, once, so that the kind modules stay about their own shapes:

* **Parsing without loss.** `json.loads` loses duplicate keys, and its canonical re-encoding loses
  spelling (`1E5`, `"\\u00e9"`) and whitespace. `parse_blob` returns the value plus a *text overlay*:
  the few tokens and whitespace runs whose spelling differs from what `json.dumps` would write.
  Rows written by the daemon (`json.dumps` with defaults) need no overlay at all.
* **Encoding like `json.dumps`.** The rebuild assembles JSON text from relational columns. The
  helpers here produce exactly what `json.dumps` with default arguments produces.
* **SQLite storage types.** A legacy cell can hold any storage type, and TEXT that is not valid
  UTF-8. `encode_cell`/`decode_cell` turn any such value into a portable (tag, text) pair and back.
* **Text every target engine can hold.** `is_storable_text` decides which strings may go into a
  text column on every engine (no NUL, no lone surrogate); keys get a stored form and a digest
  (`stored_key`, `key_digest`), so that lookups and unique constraints are exact everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from migrator.errors import RebuildError

# Python refuses to turn integers of more than 4300 digits into text (CVE-2020-10735). JSON allows
# them, and a lossless migrator must carry them, so this process lifts the limit.
sys.set_int_max_str_digits(0)

JSONValue = Any
"""A value as `json.loads` returns it, with `DupDict` for objects that repeat a key."""


class DupDict(dict):
    """A JSON object that repeats a key: behaves like the last-wins dict, but keeps every pair.

    `json.dumps` (C and Python encoders alike) serialises dict subclasses through `.items()`,
    so overriding it makes the encoder write every pair, duplicates included, in document order.
    `tests/test_codec.py` pins that behaviour of the standard library.
    """

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, JSONValue]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def items(self) -> list[tuple[str, JSONValue]]:  # type: ignore[override]
        return list(self.pairs)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [key for key, _ in self.pairs]

    def values(self) -> list[JSONValue]:  # type: ignore[override]
        return [value for _, value in self.pairs]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.pairs)


def keep_duplicate_keys(pairs: list[tuple[str, JSONValue]]) -> dict:
    """`object_pairs_hook` that returns a plain dict unless a key repeats."""
    result = dict(pairs)
    return result if len(result) == len(pairs) else DupDict(pairs)


def first_duplicate_key(obj: dict) -> str | None:
    """The first key an object repeats, or None (only a `DupDict` repeats keys)."""
    if not isinstance(obj, DupDict):
        return None
    seen: set[str] = set()
    for key in obj:
        if key in seen:
            return key
        seen.add(key)
    return None


def json_type_name(value: JSONValue) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    names = ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"))
    return next((name for kind, name in names if isinstance(value, kind)), "number")


class UnreadableBlob(ValueError):
    """A legacy cell that cannot be read as the expected JSON; the message is the reason."""


# --- encoding exactly like json.dumps(value) with default arguments ----------------------------

encode_str = json.encoder.encode_basestring_ascii  # the C function json.dumps uses for strings


def _reused_encoder() -> Callable[[JSONValue], str]:
    """`json.dumps` with its defaults, minus its cost per call.

    Each `json.dumps` call builds a `JSONEncoder` and a C encoder before it writes a byte, which
    is most of the time of a small value (3.3 us against 1.1 us for `{"prompt": "..."}`), and a
    checkpoint save serialises some 200 small values. This is the same C encoder with the same
    settings, made once. It skips the circular-reference check: values come from `json.loads`
    and the mapping, which cannot hold a cycle. Where the C encoder is missing or differs, and on
    any sample it encodes otherwise than `json.dumps`, `json.dumps` itself is used.
    """
    make = getattr(json.encoder, "c_make_encoder", None)  # the C accelerator, undeclared in the stubs
    defaults = json.JSONEncoder()
    if make is None:  # pragma: no cover - a Python built without the C accelerator
        return json.dumps
    try:
        encode = make(None, defaults.default, encode_str, None, ": ", ", ", False, False, True)
    except TypeError:  # pragma: no cover - another signature in another Python version
        return json.dumps

    def reused(value: JSONValue) -> str:
        return "".join(encode(value, 0))

    # The keys out of order: an encoder made with sort_keys=True must fail the check too.
    samples = (
        {"b": 0, "a": [1, 1.0, -0.0, 1e300, float("nan"), float("-inf"), True, None, "\u00e9\ud800"]},
        "x",
        10**40,
    )
    return reused if all(reused(sample) == json.dumps(sample) for sample in samples) else json.dumps


dumps = _reused_encoder()
NULL_TEXT = "null"


def encode_optional_str(value: str | None) -> str:
    return NULL_TEXT if value is None else encode_str(value)


def encode_optional_bool(value: bool | int | None) -> str:
    # SQLite hands booleans back as 0/1; the column only ever holds real booleans.
    if value is None:
        return NULL_TEXT
    return "true" if value else "false"


def join_object(pairs: Iterable[tuple[str, str]]) -> str:
    """`{"k": v, ...}` from (key, already-encoded value) pairs, as json.dumps spaces it."""
    return "{" + ", ".join([f"{encode_str(key)}: {text}" for key, text in pairs]) + "}"


def join_array(texts: Iterable[str]) -> str:
    return "[" + ", ".join(texts) + "]"


# --- parsing ----------------------------------------------------------------------------------


def parse_blob(text: str) -> tuple[JSONValue, str | None]:
    """Parse a legacy JSON text; return the value and the text overlay (None when canonical).

    The fast path is one C parse and one C encode: daemon-written rows are canonical. When the
    text differs from its own canonical encoding, the overlay is computed; only when a key
    repeats is the text parsed again, keeping every pair. Inside `encoded_blob`, its own text is
    not parsed at all.
    """
    known = _ENCODED.get()
    if known is not None and known[0] == text:
        return known[1], None
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise UnreadableBlob("JSON nested too deeply to parse") from exc
    except ValueError as exc:
        raise UnreadableBlob(f"invalid JSON: {exc}") from exc
    canonical = dumps(value)
    if canonical == text:
        return value, None
    try:
        # Only a repeated key makes the plain parse lose pairs (four tokens or more each), and
        # then the token counts differ: otherwise this is the value the slower parse gives.
        return value, compute_overlay(text, canonical)
    except UnreadableBlob:
        value = json.loads(text, object_pairs_hook=keep_duplicate_keys)
        return value, compute_overlay(text, dumps(value))


_ENCODED: ContextVar[tuple[str, JSONValue] | None] = ContextVar("encoded_blob", default=None)
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


@contextmanager
def encoded_blob(blob: JSONValue) -> Iterator[str]:
    """`json.dumps(blob)`, the daemon's own encoding; and, while the block runs, `parse_blob` of
    that text in this thread returns `blob` itself, with no parse and no canonical check.

    A store's save encodes the daemon's value and maps the text at once: parsing it again and
    encoding it once more to see that it is canonical repeats the work just done (1.5 ms of a
    100 KB checkpoint). That holds only when `blob` is made of exactly the types `json.loads`
    returns, with text keys (`_is_plain_json`): then `json.loads(text)` gives it back, type for
    type, and no key repeats. Any other value (a tuple, a key `1` beside `"1"`, a str subclass)
    is parsed from its text as usual. The value is not kept past the block, where the caller
    may change it.
    """
    text = json.dumps(blob)
    token = _ENCODED.set((text, blob) if _is_plain_json(blob) else None)
    try:
        yield text
    finally:
        _ENCODED.reset(token)


def _is_plain_json(value: JSONValue) -> bool:
    """Dicts with str keys, lists, str, int, float, bool and None, exactly those types, all the way down."""
    if type(value) is not dict and type(value) is not list:
        return type(value) in _PLAIN_SCALARS
    pending = [value]
    while pending:  # only containers are pushed: the scalars, most of a blob, are checked where met
        item = pending.pop()
        if type(item) is dict:
            for key, child in item.items():
                if type(key) is not str or not _plain_child(child, pending):
                    return False
        else:
            for child in item:
                if not _plain_child(child, pending):
                    return False
    return True


def _plain_child(child: JSONValue, pending: list[JSONValue]) -> bool:
    kind = type(child)
    if kind is dict or kind is list:
        pending.append(child)
        return True
    return kind in _PLAIN_SCALARS


# --- text overlays: spelling and whitespace that differ from the canonical encoding -------------

_TOKEN = re.compile(
    # A string is unrolled (runs of plain characters between escapes): twice as fast as one
    # alternation per character, and it matches the same text.
    r"""([ \t\n\r]*)("[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN|-?[0-9][0-9.eE+\-]*|true|false|null|[{}\[\]:,])""",
    re.DOTALL,
)
_TRAILING_WS = re.compile(r"[ \t\n\r]*\Z")


def _tokens(text: str) -> tuple[list[str], list[str], str]:
    """Split valid JSON text into whitespace-before-each-token, tokens, and trailing whitespace."""
    pairs = _TOKEN.findall(text)
    spaces = [space for space, _ in pairs]
    tokens = [token for _, token in pairs]
    # Matches follow one another with no gap exactly when their lengths add up to where the last
    # one ends. After a gap, that sum falls short of the last token, whose final character (a
    # quote, a digit, a letter or a bracket) is then in what should be trailing whitespace.
    end = sum(map(len, spaces)) + sum(map(len, tokens))
    trailing = text[end:]
    if not _TRAILING_WS.fullmatch(trailing):
        raise ValueError(f"cannot tokenise JSON: characters {end} on are not whitespace between tokens")
    return spaces, tokens, trailing


def compute_overlay(original: str, canonical: str) -> str:
    """The differences that turn `canonical` back into `original`, as compact JSON text.

    Both texts must encode the same value, so they have the same tokens, which differ only in
    spelling (number and string escapes) and in the whitespace around them.
    """
    spaces, tokens, trailing = _tokens(original)
    canon_spaces, canon_tokens, _ = _tokens(canonical)
    if len(tokens) != len(canon_tokens):
        raise UnreadableBlob("JSON structure cannot be represented exactly")
    space_edits = [[i, s] for i, (s, c) in enumerate(zip(spaces, canon_spaces, strict=True)) if s != c]
    token_edits = [[i, t] for i, (t, c) in enumerate(zip(tokens, canon_tokens, strict=True)) if t != c]
    return dumps([len(tokens), space_edits, token_edits, trailing])


def apply_overlay(canonical: str, overlay: str | None) -> str:
    """Inverse of `compute_overlay`: rebuild the original text from the canonical one."""
    if overlay is None:
        return canonical
    count, space_edits, token_edits, trailing = json.loads(overlay)
    spaces, tokens, _ = _tokens(canonical)
    if len(tokens) != count:
        raise RebuildError(f"text overlay expects {count} JSON tokens but the relational rows give {len(tokens)}")
    for index, space in space_edits:
        spaces[index] = space
    for index, token in token_edits:
        tokens[index] = token
    return "".join([s + t for s, t in zip(spaces, tokens, strict=True)]) + trailing


# --- text that every engine can hold ----------------------------------------------------------


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_storable_text(text: str) -> bool:
    """Whether every target engine's text type can hold this string.

    JSON can spell a lone surrogate (`"\\ud800"`), but UTF-8 has no encoding for one; and JSON
    and SQLite TEXT can hold NUL, which PostgreSQL's `text` refuses. Such a string stays inside
    JSON text, escaped, on every engine, so that one mapping serves them all.
    """
    if "\x00" in text:
        return False
    return text.isascii() or _SURROGATE.search(text) is None


ESCAPED_KEY_MARK = "\x1b"
"""Starts a key column's value that holds a key's JSON spelling instead of the key itself."""


def stored_key(key: str) -> str:
    """The form a key column holds: the key itself when every engine can store it, else a mark
    and its JSON spelling (ASCII, NUL written `\\u0000`). A key that itself starts with the mark
    is spelled too, so that no two keys share a stored form; lookups ask for this form."""
    if is_storable_text(key) and not key.startswith(ESCAPED_KEY_MARK):
        return key
    return ESCAPED_KEY_MARK + encode_str(key)


def key_from_stored(stored: str) -> str:
    """Inverse of `stored_key`."""
    return json.loads(stored[1:]) if stored.startswith(ESCAPED_KEY_MARK) else stored


def key_digest(stored_key: str) -> str:
    """The fixed-length fingerprint that unique constraints hold for a key column.

    Keys have no length bound, and no server can enforce uniqueness over unbounded text exactly:
    MySQL indexes a TEXT prefix only, PostgreSQL refuses btree entries over ~2.7 kB, and
    collations may fold case or trailing spaces. A digest of the key's bytes is exact everywhere.
    """
    return hashlib.blake2b(stored_key.encode("utf-8"), digest_size=16).hexdigest()


# --- timestamps -------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def parse_timestamp(text: str) -> datetime | None:
    """A queryable copy of a timestamp text: UTC when it names an offset, as written otherwise.

    The text itself is always kept verbatim beside this copy; None means it could not be read,
    or names a time outside `QUERYABLE_YEARS`.
    """
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, TypeError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        return None
    return parsed if parsed.year in QUERYABLE_YEARS else None


QUERYABLE_YEARS = range(1000, 10000)
"""The years every engine's datetime column holds (MySQL's DATETIME: 1000 to 9999), so that one
mapping gives the same parsed copies everywhere and no engine refuses a row for its timestamp."""


# --- SQLite cells of any storage type ---------------------------------------------------------


class InvalidText(bytes):
    """A TEXT cell whose bytes are not valid UTF-8: kept as its bytes, restored as TEXT."""


def decode_sqlite_text(raw: bytes) -> str | InvalidText:
    """`sqlite3` text_factory that keeps invalid UTF-8 instead of failing the whole read."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(raw)


LegacyCell = int | float | str | bytes | None
"""A legacy SQLite cell as read: its Python type is its storage type (`InvalidText` is TEXT)."""

TEXT_TAG = None  # the common case, TEXT in valid UTF-8, is stored untagged to keep rows small


def storage_type(value: LegacyCell) -> str:
    """The name SQLite's `typeof()` gives this value."""
    if value is None:
        return "null"
    if isinstance(value, str | InvalidText):
        return "text"
    if isinstance(value, bytes):
        return "blob"
    if isinstance(value, bool):
        return "integer"
    return "integer" if isinstance(value, int) else "real"


def encode_cell(value: LegacyCell) -> tuple[str | None, str | None]:
    """A legacy cell as a (tag, text) pair that any SQL engine can store in two text columns."""
    if isinstance(value, str):
        return (TEXT_TAG, value) if is_storable_text(value) else ("text-json", encode_str(value))
    if isinstance(value, InvalidText):
        return "text-bytes", value.hex()
    if isinstance(value, bytes):
        return "blob", value.hex()
    if value is None:
        return "null", None
    if isinstance(value, int):
        return "integer", str(value)
    return "real", repr(value)


def decode_cell(tag: str | None, text: str | None) -> LegacyCell:
    if tag is TEXT_TAG:
        return text
    assert text is not None or tag == "null"
    decoders: dict[str, Callable[[Any], Any]] = {
        "text-json": json.loads,
        "text-bytes": lambda t: InvalidText(bytes.fromhex(t)),
        "blob": bytes.fromhex,
        "null": lambda t: None,
        "integer": int,
        "real": float,
    }
    try:
        return decoders[tag](text)
    except KeyError as exc:
        raise RebuildError(f"unknown cell storage tag {tag!r}") from exc


def cell_identity(value: LegacyCell) -> tuple[str, Any]:
    """Compare legacy cells by storage type and value, with floats compared bit for bit."""
    kind = storage_type(value)
    if kind == "real":
        return kind, float(value).hex()  # type: ignore[arg-type]
    if isinstance(value, InvalidText):
        return "text-bytes", bytes(value)
    return kind, value
