"""Fabricate a legacy KSI SQLite snapshot, written the way the daemon wrote its rows.

The file holds the two legacy tables, `checkpoints` and `mcp_sessions`, filled with blobs from
`migrator.fakes`. Besides the ordinary rows it plants the irregularities a migrator meets in
production, so that a lossless migration can be tested against them:

* ids with gaps (pruning), a `timestamp` column that disagrees with the blob's "timestamp",
  naive local `last_seen` texts that drop zero microseconds;
* about 1.5% of rows whose JSON is valid but not in `json.dumps` default formatting;
* a few readable rows whose non-JSON cells have another SQLite storage type
  (`last_seen` as INTEGER, REAL or BLOB; `timestamp` as BLOB);
* with `unreadable=N`, N extra rows that cannot be read, one of each of the catalogue's
  unreadable kinds in turn (`migrator.formats.UNREADABLE_KINDS`).

The output depends only on the arguments: the same seed gives a byte-identical file.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from faker import Faker

from migrator.codec import InvalidText
from migrator.errors import OutputExists
from migrator.fakes import (
    LOCAL_SHIFTS,
    SPAN,
    epoch_seconds,
    fake_checkpoint_blob,
    fake_session_blob,
    format_timestamp,
    make_faker,
    pick,
    random_conversation_id,
    random_moment,
)
from migrator.formats import TIMESTAMP_TEXTS, UNREADABLE_KINDS, UnreadableKind
from migrator.private import create_file

CHECKPOINTS_DDL = """CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    checkpoint_data TEXT NOT NULL
)"""

MCP_SESSIONS_DDL = """CREATE TABLE mcp_sessions (
    session_key TEXT PRIMARY KEY,
    session_data TEXT NOT NULL,
    last_seen TIMESTAMP NOT NULL
)"""

# Share of readable rows whose JSON text is valid but not json.dumps' default formatting.
NONCANONICAL_RATE = 0.015
NONCANONICAL_FORMATS: tuple[str, ...] = ("compact", "unicode", "indent", "newline")

# Readable rows whose non-JSON cell has another storage type, per table, with their rates.
# (`timestamp TEXT` turns numbers into text, so only BLOB differs there; `last_seen TIMESTAMP`
# has NUMERIC affinity, so INTEGER and non-integral REAL values keep their type.)
CHECKPOINT_CELL_VARIANTS: dict[str, float] = {"timestamp_blob": 0.002}
SESSION_CELL_VARIANTS: dict[str, float] = {
    "last_seen_integer": 0.002,
    "last_seen_real": 0.001,
    "last_seen_blob": 0.0005,
}

# Tables smaller than this get variants only by their rate; larger ones get each at least once,
# so that modest test snapshots are guaranteed to contain every irregularity.
MIN_ROWS_FOR_ALL_VARIANTS = 100

# Which kind each unreadable row is, and its table, in order: the first lap gives every kind
# once, the second puts each kind that fits both tables into the other one, and the cycle repeats.
_UNREADABLE_CYCLE: tuple[tuple[UnreadableKind, str], ...] = tuple(
    (kind, kind.tables[(index + lap) % len(kind.tables)])
    for lap in (0, 1)
    for index, kind in enumerate(UNREADABLE_KINDS)
)

_BATCH = 5000
_AGENT_POOL = 3000
_UNKNOWN_AGENT_SHARE = 0.07


class _Row(NamedTuple):
    params: tuple[Any, ...]
    # True when the JSON cell is bytes that must be stored as TEXT via CAST (invalid UTF-8).
    raw_text: bool = False


@dataclass
class _TablePlan:
    """Where, among a table's rows, each irregularity goes (decided up front, from the seed)."""

    readable: int
    unreadable: dict[int, UnreadableKind] = field(default_factory=dict)  # row position -> kind
    json_format: dict[int, str] = field(default_factory=dict)  # readable ordinal -> format
    cell_variant: dict[int, str] = field(default_factory=dict)  # readable ordinal -> variant

    @property
    def total(self) -> int:
        return self.readable + len(self.unreadable)


def fabricate_snapshot(
    path: str | os.PathLike[str],
    *,
    checkpoints: int,
    sessions: int,
    seed: int = 0,
    unreadable: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a new legacy snapshot at `path` and return a summary of what it holds.

    `checkpoints` and `sessions` count the readable rows; `unreadable` extra rows are spread
    over both tables. `progress`, if given, is called with the number of rows just written.
    Raises `OutputExists` rather than touch an existing file.
    """
    for name, value in (("checkpoints", checkpoints), ("sessions", sessions), ("unreadable", unreadable)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    target = Path(path)
    _refuse_existing(target)
    # Written under a temporary name, so a crash never leaves a half-written snapshot at `path`.
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    try:
        create_file(temp)  # 0600 before SQLite writes a byte
        noncanonical = _write_snapshot(temp, checkpoints, sessions, seed, unreadable, progress)
        _publish(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return {
        "checkpoints": checkpoints,
        "sessions": sessions,
        "unreadable": unreadable,
        "noncanonical": noncanonical,
        "path": str(target),
    }


def _refuse_existing(target: Path) -> None:
    if os.path.lexists(target):
        raise OutputExists(f"{target} already exists; refusing to overwrite it")


def _publish(temp: Path, target: Path) -> None:
    """Move the finished file into place without ever replacing a file that appeared meanwhile."""
    try:
        os.link(temp, target)  # fails if `target` exists, unlike rename
    except FileExistsError:
        raise OutputExists(f"{target} already exists; refusing to overwrite it") from None
    except OSError:
        # A file system without hard links: check, then rename (a small race remains).
        _refuse_existing(target)
        os.replace(temp, target)


def _rng(seed: int, purpose: str) -> random.Random:
    """An independent stream per purpose, so one table's size does not reshuffle the other."""
    return random.Random(f"ksi-fabricate:{seed}:{purpose}")


def _write_snapshot(
    temp: Path,
    checkpoints: int,
    sessions: int,
    seed: int,
    unreadable: int,
    progress: Callable[[int], None] | None,
) -> int:
    """Fill the temporary file; returns how many rows got non-default JSON formatting."""
    plan_rng = _rng(seed, "plan")
    per_table = _spread_unreadable(unreadable)
    checkpoint_plan = _plan_table(plan_rng, checkpoints, per_table["checkpoints"], CHECKPOINT_CELL_VARIANTS)
    session_plan = _plan_table(plan_rng, sessions, per_table["mcp_sessions"], SESSION_CELL_VARIANTS)
    fake = make_faker(seed)
    agents = [fake.ksi_agent_id() for _ in range(_AGENT_POOL)]
    encoders = {"checkpoints": _Encoder(), "mcp_sessions": _Encoder()}
    report = progress or (lambda _n: None)
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        # The file is private until published, so durability is not needed while writing.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-131072")
        conn.execute("BEGIN")
        conn.execute(CHECKPOINTS_DDL)
        conn.execute(MCP_SESSIONS_DDL)
        checkpoint_rows = _checkpoint_rows(fake, _rng(seed, "checkpoints"), checkpoint_plan, encoders["checkpoints"])
        _insert(conn, "checkpoints", ("id", "timestamp", "checkpoint_data"), 2, checkpoint_rows, report)
        session_rows = _session_rows(fake, _rng(seed, "sessions"), agents, session_plan, encoders["mcp_sessions"])
        _insert(conn, "mcp_sessions", ("session_key", "session_data", "last_seen"), 1, session_rows, report)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return sum(encoder.noncanonical for encoder in encoders.values())


def _spread_unreadable(count: int) -> dict[str, list[UnreadableKind]]:
    kinds: dict[str, list[UnreadableKind]] = {"checkpoints": [], "mcp_sessions": []}
    for index in range(count):
        kind, table = _UNREADABLE_CYCLE[index % len(_UNREADABLE_CYCLE)]
        kinds[table].append(kind)
    return kinds


def _plan_table(
    rng: random.Random, readable: int, unreadable_kinds: list[UnreadableKind], cell_rates: dict[str, float]
) -> _TablePlan:
    plan = _TablePlan(readable=readable)
    total = readable + len(unreadable_kinds)
    positions = sorted(rng.sample(range(total), len(unreadable_kinds)))
    plan.unreadable = dict(zip(positions, unreadable_kinds, strict=True))
    plan.json_format = _scatter(rng, readable, _quotas(readable, NONCANONICAL_RATE, NONCANONICAL_FORMATS))
    cell_quotas: list[str] = []
    for variant, rate in cell_rates.items():
        cell_quotas.extend(_quotas(readable, rate, (variant,)))
    plan.cell_variant = _scatter(rng, readable, cell_quotas)
    return plan


def _quotas(rows: int, rate: float, variants: tuple[str, ...]) -> list[str]:
    """`rate * rows` labels cycling over `variants`, each at least once in non-tiny tables."""
    count = round(rate * rows)
    if rows >= MIN_ROWS_FOR_ALL_VARIANTS:
        count = max(count, len(variants))
    return [variants[index % len(variants)] for index in range(count)]


def _scatter(rng: random.Random, rows: int, labels: list[str]) -> dict[int, str]:
    positions = rng.sample(range(rows), min(len(labels), rows))
    return dict(zip(positions, labels, strict=False))


def _insert(
    conn: sqlite3.Connection,
    table: str,
    columns: tuple[str, str, str],
    json_column: int,
    rows: Iterable[_Row],
    report: Callable[[int], None],
) -> None:
    """executemany in batches; rows needing a CAST go one by one, keeping insertion order."""
    slots = ["?", "?", "?"]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(slots)})"
    slots[json_column] = "CAST(? AS TEXT)"
    raw_sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(slots)})"
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        if batch:
            conn.executemany(sql, batch)
            report(len(batch))
            batch.clear()

    for row in rows:
        if row.raw_text:
            flush()
            conn.execute(raw_sql, row.params)
            report(1)
            continue
        batch.append(row.params)
        if len(batch) >= _BATCH:
            flush()
    flush()


# ---------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------


def _checkpoint_rows(fake: Faker, rng: random.Random, plan: _TablePlan, encoder: _Encoder) -> Iterator[_Row]:
    row_id = rng.randint(1, 200)
    moment = random_moment(rng, span=SPAN / 8)
    # Spread the checkpoints over the span, one after another, as the daemon saved them.
    mean_step_us = SPAN.total_seconds() * 1e6 / max(plan.total, 1)
    ordinal = 0
    for position in range(plan.total):
        moment += timedelta(microseconds=int(rng.expovariate(1.0) * mean_step_us))
        kind = plan.unreadable.get(position)
        if kind is not None:
            blob = fake_checkpoint_blob(fake, rng, when=moment)
            spoiled = kind.spoil("checkpoints", blob, rng, json.dumps)
            column = format_timestamp(moment, "utc_z")
            yield _Row((row_id, column, _stored(spoiled.data)), raw_text=isinstance(spoiled.data, InvalidText))
        else:
            yield _readable_checkpoint(fake, rng, plan, ordinal, row_id, moment, encoder)
            ordinal += 1
        row_id += _id_gap(rng)


def _readable_checkpoint(
    fake: Faker,
    rng: random.Random,
    plan: _TablePlan,
    ordinal: int,
    row_id: int,
    moment: datetime,
    encoder: _Encoder,
) -> _Row:
    blob = fake_checkpoint_blob(fake, rng, when=moment)
    data = encoder.encode(blob, plan.json_format.get(ordinal))
    text = _checkpoint_column(rng, blob.get("timestamp"), moment)
    timestamp_blob = plan.cell_variant.get(ordinal) == "timestamp_blob"
    column: str | bytes = text.encode("utf-8") if timestamp_blob else text
    return _Row((row_id, column, data))


def _id_gap(rng: random.Random) -> int:
    """Pruning (keep the newest 5) and merged hosts leave holes in the id sequence."""
    roll = rng.random()
    if roll < 0.7:
        return 1
    if roll < 0.99:
        return rng.randint(2, 40)
    return rng.randint(41, 5000)


def _checkpoint_column(rng: random.Random, blob_stamp: Any, moment: datetime) -> str:
    """The `timestamp` column was computed apart from the blob's "timestamp", so may differ."""
    roll = rng.random()
    if roll < 0.65 and isinstance(blob_stamp, str):
        return blob_stamp
    if roll < 0.85:
        return format_timestamp(moment, pick(rng, TIMESTAMP_TEXTS).name, pick(rng, LOCAL_SHIFTS))
    later = moment + timedelta(microseconds=rng.randint(1, 3_000_000))
    return format_timestamp(later, "utc_z")


# ---------------------------------------------------------------------------------------
# mcp_sessions
# ---------------------------------------------------------------------------------------


def _session_rows(
    fake: Faker, rng: random.Random, agents: list[str], plan: _TablePlan, encoder: _Encoder
) -> Iterator[_Row]:
    seen: set[str] = set()  # membership only; never iterated, so hash order cannot leak
    ordinal = 0
    for position in range(plan.total):
        agent = "unknown" if rng.random() < _UNKNOWN_AGENT_SHARE else pick(rng, agents)
        conversation = random_conversation_id(rng)
        key = f"{agent}:{conversation}"
        while key in seen:
            conversation = random_conversation_id(rng)
            key = f"{agent}:{conversation}"
        seen.add(key)
        created = random_moment(rng)
        blob = fake_session_blob(fake, rng, agent, conversation, when=created)
        kind = plan.unreadable.get(position)
        if kind is not None:
            spoiled = kind.spoil("mcp_sessions", blob, rng, json.dumps)
            key_cell = spoiled.key(key) if spoiled.key is not None else key
            cells = (key_cell, _stored(spoiled.data), _last_seen_text(rng, created))
            yield _Row(cells, raw_text=isinstance(spoiled.data, InvalidText))
            continue
        text = encoder.encode(blob, plan.json_format.get(ordinal))
        last_seen = _last_seen_cell(rng, created, plan.cell_variant.get(ordinal))
        ordinal += 1
        yield _Row((key, text, last_seen))


def _last_seen_moment(rng: random.Random, created: datetime) -> datetime:
    """Naive local time, within 24 h after creation (older rows were deleted)."""
    moment = created + timedelta(microseconds=int(rng.random() * 86_400e6))
    moment += pick(rng, LOCAL_SHIFTS)
    if rng.random() < 0.01:
        moment = moment.replace(microsecond=0)  # isoformat() then leaves out the micros
    return moment


def _last_seen_text(rng: random.Random, created: datetime) -> str:
    return _last_seen_moment(rng, created).isoformat()


def _last_seen_cell(rng: random.Random, created: datetime, variant: str | None) -> Any:
    moment = _last_seen_moment(rng, created)
    if variant == "last_seen_integer":
        return int(epoch_seconds(moment))
    if variant == "last_seen_real":
        # NUMERIC affinity would turn an integral float into INTEGER, so keep a fraction.
        return epoch_seconds(moment.replace(microsecond=moment.microsecond or 500_000))
    if variant == "last_seen_blob":
        return moment.isoformat().encode("utf-8")
    return moment.isoformat()


# ---------------------------------------------------------------------------------------
# JSON cells
# ---------------------------------------------------------------------------------------


class _Encoder:
    """Encodes one table's blobs: `json.dumps(blob)` as the daemon wrote it, or a planned variant.

    A planned variant that would not change the text (ensure_ascii=False on an ASCII-only blob)
    or cannot be stored as UTF-8 (a lone surrogate) is deferred to the next row, so that every
    planned format really shows up and `noncanonical` counts only rows that differ.
    """

    def __init__(self) -> None:
        self.noncanonical = 0
        self._deferred: list[str] = []

    def encode(self, blob: dict[str, Any], planned: str | None) -> str:
        canonical = json.dumps(blob)
        wanted = planned or (self._deferred.pop(0) if self._deferred else None)
        if wanted is None:
            return canonical
        text = _noncanonical(blob, wanted, canonical)
        if text == canonical or not _utf8_encodable(text):
            self._deferred.append(wanted)
            return canonical
        self.noncanonical += 1
        return text


def _noncanonical(blob: dict[str, Any], fmt: str, canonical: str) -> str:
    if fmt == "compact":
        return json.dumps(blob, separators=(",", ":"))
    if fmt == "unicode":
        return json.dumps(blob, ensure_ascii=False)
    if fmt == "indent":
        return json.dumps(blob, indent=2)
    if fmt == "newline":
        return canonical + "\n"
    raise ValueError(f"unknown JSON format {fmt!r}; expected one of {NONCANONICAL_FORMATS}")


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stored(cell: Any) -> Any:
    """What sqlite3 is handed for a cell: text that is not UTF-8 goes as its bytes, cast to TEXT."""
    return bytes(cell) if isinstance(cell, InvalidText) else cell
