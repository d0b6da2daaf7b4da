"""Per-blob choices shared by the checkpoint and session builders: the daemon era, the
timestamp style, and the helpers that add optional and later keys."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from migrator.fakes.provider import Pools
from migrator.fakes.values import (
    DAEMON_STYLE_TABLE,
    LOCAL_SHIFTS,
    STYLE_TABLE,
    catalogue_weighted,
    epoch_number,
    format_timestamp,
    pick,
)
from migrator.formats import (
    CHECKPOINT_ERAS,
    QUEUE_SHAPES,
    Era,
    QueueShape,
    by_name,
)

# How often each era of `migrator.formats.CHECKPOINT_ERAS` wrote a checkpoint.
_ERA_TABLE = catalogue_weighted(
    by_name(CHECKPOINT_ERAS), {"8a0bb1b": 30, "bf15176": 10, "later": 45, "rolling_upgrade": 15}, 10
)
_ERAS = by_name(CHECKPOINT_ERAS)
QUEUE_SHAPES_BY_NAME: dict[str, QueueShape] = by_name(QUEUE_SHAPES)


class BlobContext:
    """Per-blob choices shared by the helpers: which daemon era wrote it and how."""

    __slots__ = ("era", "moment", "pools", "r", "shift", "style")

    def __init__(self, pools: Pools, r: random.Random, moment: datetime) -> None:
        self.pools = pools
        self.r = r
        self.moment = moment
        self.shift = pick(r, LOCAL_SHIFTS)
        self.style = pick(r, DAEMON_STYLE_TABLE)
        self.era: Era = _ERAS[pick(r, _ERA_TABLE)]

    def stamp(self, moment: datetime) -> str:
        """Mostly this blob's style; sometimes another code path's."""
        style = self.style if self.r.random() < 0.9 else pick(self.r, STYLE_TABLE)
        return format_timestamp(moment, style, self.shift)

    def later(self, moment: datetime, max_seconds: float) -> datetime:
        return moment + timedelta(microseconds=int(self.r.random() * max_seconds * 1e6))

    def earlier(self, moment: datetime, max_seconds: float) -> datetime:
        return moment - timedelta(microseconds=int(self.r.random() * max_seconds * 1e6))


def set_optional(ctx: BlobContext, target: dict[str, Any], key: str, value: Any, present: float) -> None:
    """Set `key` with probability `present`; a small share of present values are null."""
    roll = ctx.r.random()
    if roll < present:
        target[key] = None if roll < present * 0.04 else value


def time_value(ctx: BlobContext, moment: datetime) -> Any:
    """A time field: usually text, sometimes a time.time() number, as different paths wrote."""
    if ctx.r.random() < 0.06:
        return epoch_number(moment, ctx.r)
    return ctx.stamp(moment)
