"""Every spelling of a time, in blobs and in the `timestamp` and `last_seen` cells."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Spelling:
    """One way a code path wrote a time, with a pattern every text in it matches.

    `render(moment, local_shift)` writes a naive UTC moment in this spelling; `local_shift` is
    the host's UTC offset, which only the naive local spellings apply. A number spelling has no
    pattern: it is matched by its type.
    """

    name: str
    doc: str
    example: str | float | int
    pattern: str | None
    render: Callable[[datetime, timedelta], str | float | int]


_DATE_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
_SPACED = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def _whole(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


TIMESTAMP_TEXTS: tuple[Spelling, ...] = (
    Spelling(
        "utc_z",
        "The daemon's timestamp_utc(): isoformat() with `+00:00` replaced by `Z`.",
        "2025-06-20T23:17:27.832348Z",
        _DATE_TIME + r"\.\d{6}Z",
        lambda moment, _shift: moment.isoformat() + "Z",
    ),
    Spelling(
        "utc_z_whole",
        "timestamp_utc() at a whole second: isoformat() leaves the microseconds out.",
        "2025-06-20T23:17:27Z",
        _DATE_TIME + "Z",
        lambda moment, _shift: _whole(moment).isoformat() + "Z",
    ),
    Spelling(
        "offset",
        "An aware datetime's isoformat().",
        "2025-06-20T23:17:27.832348+00:00",
        _DATE_TIME + r"\.\d{6}\+00:00",
        lambda moment, _shift: moment.replace(tzinfo=UTC).isoformat(),
    ),
    Spelling(
        "offset_whole",
        "An aware datetime's isoformat() at a whole second.",
        "2025-06-20T23:17:27+00:00",
        _DATE_TIME + r"\+00:00",
        lambda moment, _shift: _whole(moment).replace(tzinfo=UTC).isoformat(),
    ),
    Spelling(
        "naive",
        "datetime.now().isoformat(): naive local time (last_seen, created).",
        "2025-06-21T01:17:27.832348",
        _DATE_TIME + r"\.\d{6}",
        lambda moment, shift: (moment + shift).isoformat(),
    ),
    Spelling(
        "naive_whole",
        "datetime.now().isoformat() at a whole second.",
        "2025-06-21T01:17:27",
        _DATE_TIME,
        lambda moment, shift: _whole(moment + shift).isoformat(),
    ),
    Spelling(
        "space",
        "str(datetime.now()): naive local time with a space instead of `T`.",
        "2025-06-21 01:17:27.832348",
        _SPACED + r"\.\d{6}",
        lambda moment, shift: (moment + shift).isoformat(" "),
    ),
    Spelling(
        "space_whole",
        "SQLite's CURRENT_TIMESTAMP: UTC, a space instead of `T`, whole seconds.",
        "2025-06-20 23:17:27",
        _SPACED,
        lambda moment, _shift: moment.isoformat(" ", "seconds"),
    ),
)

TIMESTAMP_NUMBERS: tuple[Spelling, ...] = (
    Spelling(
        "epoch", "time.time(): seconds since the epoch, a float.", 1750461447.832348, None, lambda m, _s: _epoch(m)
    ),
    Spelling("epoch_whole", "int(time.time()): whole seconds.", 1750461447, None, lambda m, _s: int(_epoch(m))),
)

TIMESTAMP_SPELLINGS: tuple[Spelling, ...] = TIMESTAMP_TEXTS + TIMESTAMP_NUMBERS
"""Every spelling of a time, in blobs and in the `timestamp` and `last_seen` cells."""
