"""The hypothesis strategies draw every entry of the catalogue of legacy formats (`migrator.formats`).

Each test draws from one of the strategies the properties use, and asks `verification.shapes_seen`
which entries the examples show. Hypothesis does not draw uniformly (it mutates earlier examples),
so an entry the first draws miss is then searched for on its own with `find`; one that search
cannot produce either fails the test by name. Settings are fixed and derandomized, whatever the
profile, so the outcome never depends on luck and a nightly run is no slower.
`tests/test_formats.py` holds `fabricate` to the same catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, NoSuchExample
from hypothesis.strategies import SearchStrategy

from migrator.formats import UNREADABLE_KINDS, catalogue_entries
from verification.shapes_seen import (
    Entry,
    checkpoint_blob_shapes,
    checkpoint_row_shapes,
    session_blob_shapes,
    session_row_shapes,
)
from verification.strategies import (
    checkpoint_blobs,
    checkpoint_rows,
    session_blobs,
    session_rows,
    unreadable_checkpoint_rows,
    unreadable_session_rows,
)


@dataclass(frozen=True)
class Source:
    """A strategy of the harness, how to read entries off its examples, and which it must show."""

    name: str
    strategy: Callable[[], SearchStrategy[Any]]
    shapes: Callable[[Any], set[Entry]]
    wants: Callable[[Entry], bool]
    examples: int


def _categories(*names: str) -> Callable[[Entry], bool]:
    return lambda entry: entry[0] in names


def _unreadable_in(table: str) -> Callable[[Entry], bool]:
    kinds = {kind.name for kind in UNREADABLE_KINDS if table in kind.tables}
    return lambda entry: entry[0] == "unreadable kind" and entry[1] in kinds


def _any_row_shapes(row: tuple[str, Any]) -> set[Entry]:
    table, cells = row
    return checkpoint_row_shapes(cells) if table == "checkpoints" else session_row_shapes(cells)


def _any_rows() -> SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(st.just("checkpoints"), checkpoint_rows()), st.tuples(st.just("mcp_sessions"), session_rows())
    )


SOURCES = (
    Source(
        "checkpoint_blobs",
        checkpoint_blobs,
        checkpoint_blob_shapes,
        _categories(
            "checkpoint era",
            "later checkpoint key",
            "queue shape",
            "later queue key",
            "later queue item key",
            "later completion key",
            "completion key present",
            "completion key null",
            "completion key missing",
        ),
        150,
    ),
    Source(
        "session_blobs",
        session_blobs,
        session_blob_shapes,
        _categories("session shape", "later session key", "tool form", "later tool key"),
        150,
    ),
    Source("checkpoint_rows | session_rows", _any_rows, _any_row_shapes, _categories("timestamp spelling"), 100),
    Source(
        "unreadable_checkpoint_rows",
        unreadable_checkpoint_rows,
        checkpoint_row_shapes,
        _unreadable_in("checkpoints"),
        150,
    ),
    Source(
        "unreadable_session_rows",
        unreadable_session_rows,
        session_row_shapes,
        _unreadable_in("mcp_sessions"),
        150,
    ),
)


_FIXED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
SEARCH_EXAMPLES = 1_000  # the budget of the search for one entry the first draws missed


def drawn_shapes(source: Source) -> set[Entry]:
    """Every entry `source.examples` draws of its strategy show."""
    seen: set[Entry] = set()

    @settings(_FIXED, max_examples=source.examples)
    @given(source.strategy())
    def draw(example: Any) -> None:
        seen.update(source.shapes(example))

    draw()
    return seen


def can_draw(source: Source, entry: Entry) -> bool:
    """Whether a search of `source`'s strategy finds an example showing `entry`."""
    try:
        find(
            source.strategy(),
            lambda example: entry in source.shapes(example),
            settings=settings(_FIXED, max_examples=SEARCH_EXAMPLES),
        )
    except NoSuchExample:
        return False
    except Flaky:
        # Shown once but not on replay: JSON nested near the parser's limit reads or not by stack depth.
        return True
    return True


def test_every_catalogue_entry_is_looked_for() -> None:
    """A category the catalogue gains must get a source here, or it would never be checked."""
    unchecked = [entry for entry in catalogue_entries() if not any(source.wants(entry) for source in SOURCES)]
    assert unchecked == []


# Hypothesis writes out each example's repr; a too_deep row makes a large one, never shown here.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_strategies_draw_every_catalogue_entry(source: Source) -> None:
    seen = drawn_shapes(source)
    missed = [entry for entry in catalogue_entries() if source.wants(entry) and entry not in seen]
    never = [entry for entry in missed if not can_draw(source, entry)]
    assert not never, f"{source.name} never draws these catalogue entries: {never}"


CUT_SHORT = json.dumps({"a": [1.5e-07, -2, True, False, None, float("nan"), float("-inf")], 'é\n"\\': "\ud83d/"})


@pytest.mark.parametrize("cut", range(1, len(CUT_SHORT)))
def test_every_cut_of_a_json_text_is_seen_as_truncated(cut: int) -> None:
    assert ("unreadable kind", "truncated") in checkpoint_row_shapes((1, 1, "", CUT_SHORT[:cut]))


@pytest.mark.parametrize("text", ["[1,]", '{"a" 1}', "01", '{"a": 1}x', "}", "[}", "{'a': 1}"])
def test_other_invalid_json_is_not_seen_as_truncated(text: str) -> None:
    assert ("unreadable kind", "truncated") not in checkpoint_row_shapes((1, 1, "", text))
