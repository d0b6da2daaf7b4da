"""The catalogue of legacy formats: every shape a production KSI snapshot holds, in one place.

Both generators of legacy data read it: the faker builders (`migrator.fakes`, and through them
`migrator.fabricate`) and the hypothesis strategies (`verification.strategies`). A shape added
here reaches both, and the coverage tests (`tests/test_formats.py` for fabricate,
`verification/test_formats_produced.py` for the strategies) fail, naming the entry, when either
one never produces it.

The entries were read from the KSI daemon's code in the blob era (the public `durapensa/ksi`:
`ksi_daemon/core/checkpoint.py` at 8a0bb1b and bf15176, `completion/completion_service.py` at
bf15176, `mcp/dynamic_server.py` at ee6e4bc and 775e9c9) and from the rows later versions left.
Keys are listed in the order the daemon wrote them: key order is part of a shape.

One module a group: `checkpoint_data` (eras, queue shapes, completions), `session_data` (session
shapes, tool forms), `timestamps` (spellings), `unreadable` (every reason a row is quarantined),
and `keys` (later keys, shared by all). Import everything from here.

Each entry is data with a `doc`. A few carry a function where the shape is best said as one (how
a timestamp spelling renders a moment, how an unreadable kind spoils a readable blob), so that
both generators make the shape the same way. `catalogue_entries()` lists every entry by
(category, name), the unit the coverage tests count in.
"""

from __future__ import annotations

from typing import Any

from migrator.formats.checkpoint_data import (
    CHECKPOINT_ERAS,
    COMPLETION_KEYS,
    COMPONENTS,
    LATER_CHECKPOINT_KEYS,
    LATER_COMPLETION_KEYS,
    LATER_ITEM_KEYS,
    LATER_QUEUE_KEYS,
    QUEUE_SHAPES,
    REASONS,
    STATUSES,
    Era,
    QueueShape,
)
from migrator.formats.keys import LaterKey, by_name
from migrator.formats.session_data import (
    LATER_SESSION_KEYS,
    LATER_TOOL_KEYS,
    SESSION_SHAPES,
    TOOL_FORMS,
    SessionShape,
    ToolForm,
)
from migrator.formats.timestamps import TIMESTAMP_NUMBERS, TIMESTAMP_SPELLINGS, TIMESTAMP_TEXTS, Spelling
from migrator.formats.unreadable import UNREADABLE_KINDS, Encode, Spoiled, UnreadableKind

__all__ = [
    "CHECKPOINT_ERAS",
    "COMPLETION_KEYS",
    "COMPONENTS",
    "LATER_CHECKPOINT_KEYS",
    "LATER_COMPLETION_KEYS",
    "LATER_ITEM_KEYS",
    "LATER_QUEUE_KEYS",
    "LATER_SESSION_KEYS",
    "LATER_TOOL_KEYS",
    "QUEUE_SHAPES",
    "REASONS",
    "SESSION_SHAPES",
    "STATUSES",
    "TIMESTAMP_NUMBERS",
    "TIMESTAMP_SPELLINGS",
    "TIMESTAMP_TEXTS",
    "TOOL_FORMS",
    "UNREADABLE_KINDS",
    "Encode",
    "Era",
    "LaterKey",
    "QueueShape",
    "SessionShape",
    "Spelling",
    "Spoiled",
    "ToolForm",
    "UnreadableKind",
    "by_name",
    "catalogue_entries",
]


def catalogue_entries() -> tuple[tuple[str, str], ...]:
    """Every entry as (category, name): what the coverage tests require each generator to produce."""
    groups: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("checkpoint era", CHECKPOINT_ERAS),
        ("later checkpoint key", LATER_CHECKPOINT_KEYS),
        ("queue shape", QUEUE_SHAPES),
        ("later queue key", LATER_QUEUE_KEYS),
        ("later queue item key", LATER_ITEM_KEYS),
        ("later completion key", LATER_COMPLETION_KEYS),
        ("session shape", SESSION_SHAPES),
        ("later session key", LATER_SESSION_KEYS),
        ("tool form", TOOL_FORMS),
        ("later tool key", LATER_TOOL_KEYS),
        ("timestamp spelling", TIMESTAMP_SPELLINGS),
        ("unreadable kind", UNREADABLE_KINDS),
    )
    entries = [(category, entry.name) for category, group in groups for entry in group]
    for state in ("present", "null", "missing"):  # the daemon's completion keys: any may be missing or null
        entries += [(f"completion key {state}", key) for key in COMPLETION_KEYS]
    return tuple(entries)
