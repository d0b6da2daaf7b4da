"""The catalogue of legacy formats (`migrator.formats`), and `fabricate` producing every entry of it.

`verification/test_formats_produced.py` holds the hypothesis strategies to the same catalogue.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import main
from migrator.fabricate import fabricate_snapshot
from migrator.formats import TIMESTAMP_SPELLINGS, UNREADABLE_KINDS, catalogue_entries
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacySource
from migrator.models import Quarantine
from migrator.target import target_database
from verification.shapes_seen import Entry, checkpoint_row_shapes, session_row_shapes, spellings_of

# Enough rows that every shape fabricate draws at a few percent shows up many times over, and two
# rounds of the unreadable kinds, so that each kind lands in each table it fits.
CHECKPOINTS_ROWS, SESSIONS_ROWS, UNREADABLE_ROWS = 300, 600, 2 * len(UNREADABLE_KINDS)


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalogue") / "legacy.db"
    fabricate_snapshot(path, checkpoints=CHECKPOINTS_ROWS, sessions=SESSIONS_ROWS, seed=1, unreadable=UNREADABLE_ROWS)
    return path


@pytest.fixture(scope="module")
def shapes_by_row(fabricated: Path) -> dict[tuple[str, int], set[Entry]]:
    """The catalogue entries each fabricated row shows, by (table, rowid), read as the migrator reads."""
    shapes: dict[tuple[str, int], set[Entry]] = {}
    with LegacySource(fabricated) as source:
        for table, row_shapes in ((CHECKPOINTS, checkpoint_row_shapes), (MCP_SESSIONS, session_row_shapes)):
            for batch in source.batches(table, 1000):
                shapes.update(((table.name, row[0]), row_shapes(row)) for row in batch)
    return shapes


@pytest.fixture(scope="module")
def fabricated_shapes(shapes_by_row: dict[tuple[str, int], set[Entry]]) -> Counter[Entry]:
    return Counter(entry for shapes in shapes_by_row.values() for entry in shapes)


# --- the catalogue itself ---------------------------------------------------------------------


def test_entries_are_named_once_within_their_category() -> None:
    entries = catalogue_entries()
    assert len(set(entries)) == len(entries)


MOMENT = datetime(2025, 6, 20, 23, 17, 27, 832348)  # naive UTC
HOST_OFFSET = timedelta(hours=2)
RENDERED = {
    "utc_z": "2025-06-20T23:17:27.832348Z",
    "utc_z_whole": "2025-06-20T23:17:27Z",
    "offset": "2025-06-20T23:17:27.832348+00:00",
    "offset_whole": "2025-06-20T23:17:27+00:00",
    "naive": "2025-06-21T01:17:27.832348",
    "naive_whole": "2025-06-21T01:17:27",
    "space": "2025-06-21 01:17:27.832348",
    "space_whole": "2025-06-20 23:17:27",
    "epoch": 1750461447.832348,
    "epoch_whole": 1750461447,
}


@pytest.mark.parametrize("spelling", TIMESTAMP_SPELLINGS, ids=lambda spelling: spelling.name)
def test_each_timestamp_spelling_renders_as_written_and_is_told_apart(spelling: Any) -> None:
    rendered = spelling.render(MOMENT, HOST_OFFSET)
    assert (rendered, type(rendered)) == (RENDERED[spelling.name], type(RENDERED[spelling.name]))
    assert spellings_of(rendered) == {("timestamp spelling", spelling.name)}
    assert spellings_of(spelling.example) == {("timestamp spelling", spelling.name)}


def test_every_spelling_has_a_rendering_pinned_above() -> None:
    assert set(RENDERED) == {spelling.name for spelling in TIMESTAMP_SPELLINGS}


# --- fabricate produces every entry -----------------------------------------------------------


@pytest.mark.parametrize("entry", catalogue_entries(), ids=lambda entry: f"{entry[0]}:{entry[1]}".replace(" ", "_"))
def test_fabricate_produces_every_catalogue_entry(fabricated_shapes: Counter[Entry], entry: Entry) -> None:
    assert fabricated_shapes[entry] > 0, f"fabricate never produces the {entry[0]} {entry[1]!r}"


def test_fabricate_plants_each_unreadable_kind_once_per_table_it_fits(
    shapes_by_row: dict[tuple[str, int], set[Entry]],
) -> None:
    planted = Counter(
        (table, entry[1])
        for (table, _rowid), shapes in shapes_by_row.items()
        for entry in shapes
        if entry[0] == "unreadable kind"
    )
    assert planted == Counter(
        {(table, kind.name): 2 // len(kind.tables) for kind in UNREADABLE_KINDS for table in kind.tables}
    )


def test_each_unreadable_kind_is_quarantined_for_its_reason(
    fabricated: Path, shapes_by_row: dict[tuple[str, int], set[Entry]], tmp_path: Path
) -> None:
    """Through the real command: every row of an unreadable kind, and no other, is quarantined,
    and its reason is the one the catalogue gives for that kind."""
    target = tmp_path / "target.db"
    assert main(["migrate", "--source", str(fabricated), "--target", str(target)]) == 0
    with target_database(target):
        reasons = {(row.legacy_table, row.source_rowid): row.reason for row in Quarantine.select()}
    kinds = {kind.name: kind for kind in UNREADABLE_KINDS}
    expected = {
        key: [kinds[name] for category, name in shapes if category == "unreadable kind"]
        for key, shapes in shapes_by_row.items()
    }
    expected = {key: found for key, found in expected.items() if found}
    assert set(reasons) == set(expected)
    for key, (kind,) in expected.items():
        assert re.search(kind.reason, reasons[key]), (key, kind.name, reasons[key])
