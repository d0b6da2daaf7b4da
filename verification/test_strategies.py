"""The strategies themselves: they must produce what they claim, or every property built on
them checks less than it says. Rendering must never change a value, overrides must hold, cells
must be storable, and a failure must shrink to a small blob."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from migrator.codec import keep_duplicate_keys
from migrator.equivalence import json_differences
from verification.strategies import (
    CANONICAL,
    MISSING,
    Formatting,
    checkpoint_blobs,
    checkpoint_data_cells,
    json_values,
    noncanonical_formattings,
    render,
    session_blobs,
    session_data_cells,
)
from verification.strategies.rendering import respell_token

SMALL_SEARCH = settings(settings.get_profile("ci"), max_examples=200, suppress_health_check=list(HealthCheck))


def _parsed(text: str) -> tuple[str, Any]:
    """("ok", value), or the kind of error Python's json raises."""
    try:
        return "ok", json.loads(text, object_pairs_hook=keep_duplicate_keys)
    except RecursionError:
        return "too deep", None


@given(value=json_values(), formatting=noncanonical_formattings())
def test_any_formatting_parses_to_exactly_the_same_value(value: Any, formatting: Formatting) -> None:
    canonical_status, canonical = _parsed(render(value, CANONICAL))
    status, reformatted = _parsed(render(value, formatting))
    assert status == canonical_status
    assert json_differences(canonical, reformatted) == []


@pytest.mark.parametrize(
    ("token", "variant", "respelt"),
    [
        ("100000.0", 0, "1.000000E+5"),
        ("0.1", 1, "0.10"),
        ("1.0", 2, "1.0e0"),
        ("-0.0", 3, "-0.0E-00"),
        ("5e-324", 3, "5e-0324"),
        ("1e+16", 2, "1E16"),
        ("0", 0, "-0"),
        ("12", 1, "12"),  # an integer has no other spelling
        ('"a/b"', 0, '"a\\/b"'),
        ('"\\u00e9t\\u00e9"', 2, '"\\u00E9t\\u00E9"'),
        ('"Ab"', 1, '"\\u0041b"'),
        ('"a\\nb"', 3, '"a\\u000ab"'),
        ("NaN", 0, "NaN"),
        ("-Infinity", 1, "-Infinity"),
    ],
)
def test_respelt_tokens_parse_to_the_same_value(token: str, variant: int, respelt: str) -> None:
    assert respell_token(token, variant) == respelt
    assert json_differences(json.loads(token), json.loads(respelt)) == []


@given(cell=checkpoint_data_cells() | session_data_cells())
def test_json_cells_can_be_stored_as_sqlite_text(cell: Any) -> None:
    if isinstance(cell, str):
        cell.encode("utf-8")  # raises on a lone surrogate, which SQLite TEXT cannot hold


@given(blob=checkpoint_blobs(reason=st.just("manual"), active_completions=st.just(MISSING), shuffle=st.just(False)))
def test_overrides_replace_the_default_values(blob: dict) -> None:
    # Unshuffled, the field comes first; a repeated "reason" among the unknown keys may follow it.
    assert next(value for key, value in blob.items() if key == "reason") == "manual"
    assert "active_completions" not in blob


@given(blob=session_blobs(tools=st.just(["Read", "Read"]), shuffle=st.just(False)))
def test_session_overrides_keep_repeated_tools(blob: dict) -> None:
    assert next(value for key, value in blob.items() if key == "tools") == ["Read", "Read"]


SMALL_BLOB = 300  # characters: a few lines of JSON, where a generated blob runs to many kilobytes


@pytest.mark.slow  # 3 s alone, 20 s and more inside the suite, where there are more constants to try
def test_a_failure_shrinks_to_a_small_blob() -> None:
    """A blob holding -0.0 anywhere comes down to a few lines, not a page of JSON.

    Not to one fixed size: hypothesis also draws constants it finds in every module the process
    has loaded, so where the first -0.0 lands, and the local minimum the shrinker reaches from
    there, depend on what else ran (54 characters alone, 61 and 197 inside the whole suite).
    """
    smallest = find(checkpoint_blobs(), lambda blob: "-0.0" in render(blob), settings=SMALL_SEARCH)
    assert len(render(smallest)) <= SMALL_BLOB, render(smallest)
