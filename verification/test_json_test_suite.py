"""Nicolas Seriot's JSONTestSuite through migrate and restore, one test per document.

* Every `y_` document, and every `i_` or `test_transform` document that Python's json accepts,
  must come back byte-identical wherever it appears as a value: as the whole blob of either
  kind, and spliced verbatim (its own spelling and whitespace) into typed and untyped places of
  a blob (a completion's `data`, a queue item's `data`, `reason`, an unknown top-level key; a
  session's `agent_info`, a tool, `thin_handshake`, an unknown key). Spliced, the blob is a valid
  one, so it must be migrated relationally, not quarantined.
* Every `n_` document, and every other document Python rejects, must be quarantined and
  restored verbatim as the whole blob of either kind. A file that is not UTF-8 is stored as TEXT
  with its bytes as they are (`migrator.codec.InvalidText`).

All documents go into one snapshot, migrated and restored once per worker (a module fixture);
the tests then look up their own rows.

The corpus is part of this package (`verification/corpora/JSONTestSuite`, with its licence and
origin), so the tests run in any clone and from an installed copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migrator.codec import InvalidText
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacyRow, LegacyTable
from verification.harness import (
    legacy_row_differences,
    migrate,
    read_legacy_rows,
    restore_copy,
    target_contents,
)
from verification.snapshots import checkpoint_row, session_row, write_snapshot
from verification.strategies import RawJson, render

CORPUS = Path(__file__).resolve().parent / "corpora" / "JSONTestSuite"
EXPECTED_COUNTS = {"y_": 95, "n_": 188, "i_": 35, "transform/": 22}  # upstream 1ef36fa, see the corpus README
STAMP = "2025-06-20T23:17:27Z"


# --- the documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    name: str  # the file name, prefixed with `transform/` for the test_transform files
    cell: str | InvalidText  # what a legacy TEXT cell holding the file holds

    @property
    def python_accepts(self) -> bool:
        if isinstance(self.cell, InvalidText):
            return False
        try:
            json.loads(self.cell)
        except (ValueError, RecursionError):
            return False
        return True

    @property
    def must_round_trip_as_a_value(self) -> bool:
        return self.name.startswith("y_") or (not self.name.startswith("n_") and self.python_accepts)


def _as_cell(data: bytes) -> str | InvalidText:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidText(data)


def load_documents(folder: Path) -> list[Document]:
    parsing = sorted((folder / "test_parsing").glob("*.json"))
    transform = sorted((folder / "test_transform").glob("*.json"))
    documents = [Document(path.name, _as_cell(path.read_bytes())) for path in parsing]
    documents += [Document(f"transform/{path.name}", _as_cell(path.read_bytes())) for path in transform]
    return documents


DOCUMENTS = load_documents(CORPUS)
ACCEPTED = [document for document in DOCUMENTS if document.must_round_trip_as_a_value]
REJECTED = [document for document in DOCUMENTS if not document.must_round_trip_as_a_value]


# --- where a document goes --------------------------------------------------------------------

CHECKPOINT_PLACES: dict[str, Callable[[RawJson], Any]] = {
    "completion data": lambda doc: {
        "timestamp": STAMP,
        "session_queues": {},
        "active_completions": {"req_1": {"status": "queued", "data": doc}},
    },
    "queue item data": lambda doc: {
        "timestamp": STAMP,
        "session_queues": {"sess_1": [{"request_id": "req_1", "data": doc}]},
        "active_completions": {},
    },
    "reason": lambda doc: {"timestamp": STAMP, "session_queues": {}, "active_completions": {}, "reason": doc},
    "unknown key": lambda doc: {"timestamp": STAMP, "session_queues": {}, "active_completions": {}, "corpus": doc},
}
SESSION_PLACES: dict[str, Callable[[RawJson], Any]] = {
    "agent_info": lambda doc: {"agent_id": "agent_1", "conversation_id": "c", "agent_info": doc, "tools": []},
    "tool": lambda doc: {"agent_id": "agent_1", "tools": ["Read", doc, {"name": "Write"}]},
    "thin_handshake": lambda doc: {"agent_id": "agent_1", "tools": [], "thin_handshake": doc},
    "unknown key": lambda doc: {"agent_id": "agent_1", "corpus": doc},
}
WHOLE_BLOB = "whole blob"


@dataclass(frozen=True)
class Placement:
    table: LegacyTable
    rowid: int
    place: str


@dataclass
class CorpusSnapshot:
    """Every document in every place it must survive, as legacy rows, and where each went."""

    checkpoints: list[LegacyRow] = field(default_factory=list)
    sessions: list[LegacyRow] = field(default_factory=list)
    placements: dict[str, list[Placement]] = field(default_factory=dict)

    def add(self, document: Document, place: str, checkpoint_cell: Any, session_cell: Any) -> None:
        rowid = len(self.checkpoints) + 1
        self.checkpoints.append(checkpoint_row(rowid, checkpoint_cell, timestamp=STAMP))
        self.sessions.append(session_row(rowid, f"agent_1:{document.name}:{place}", session_cell))
        placements = self.placements.setdefault(document.name, [])
        placements += [Placement(CHECKPOINTS, rowid, place), Placement(MCP_SESSIONS, rowid, place)]


def build_snapshot(documents: list[Document]) -> CorpusSnapshot:
    snapshot = CorpusSnapshot()
    for document in documents:
        snapshot.add(document, WHOLE_BLOB, document.cell, document.cell)
        if document.must_round_trip_as_a_value:
            raw = RawJson(str(document.cell))
            for checkpoint_place, session_place in zip(CHECKPOINT_PLACES, SESSION_PLACES, strict=True):
                snapshot.add(
                    document,
                    f"{checkpoint_place} / {session_place}",
                    render(CHECKPOINT_PLACES[checkpoint_place](raw)),
                    render(SESSION_PLACES[session_place](raw)),
                )
    return snapshot


# --- one migration for the whole corpus -------------------------------------------------------


@dataclass(frozen=True)
class CorpusRun:
    source: dict[tuple[str, int], LegacyRow]
    restored: dict[tuple[str, int], LegacyRow]
    quarantined: set[tuple[str, int]]
    placements: dict[str, list[Placement]]

    def differences(self, placement: Placement) -> list[str]:
        key = (placement.table.name, placement.rowid)
        restored = [self.restored[key]] if key in self.restored else []
        found = legacy_row_differences(placement.table, [self.source[key]], restored)
        return [f"{placement.place}: {difference}" for difference in found]

    def is_quarantined(self, placement: Placement) -> bool:
        return (placement.table.name, placement.rowid) in self.quarantined


def _rows_by_key(path: Path) -> dict[tuple[str, int], LegacyRow]:
    return {(table.name, row[0]): row for table in (CHECKPOINTS, MCP_SESSIONS) for row in read_legacy_rows(path, table)}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    folder = tmp_path_factory.mktemp("json-test-suite")
    snapshot = build_snapshot(DOCUMENTS)
    source = write_snapshot(folder / "legacy.db", snapshot.checkpoints, snapshot.sessions)
    migrate(source, folder / "target.db", batch_size=200)
    restored = restore_copy(folder / "target.db", folder / "restored.db", batch_size=200)
    quarantine = target_contents(folder / "target.db")["ksi_quarantine"]
    return CorpusRun(
        source=_rows_by_key(source),
        restored=_rows_by_key(restored),
        quarantined={(record["legacy_table"], record["source_rowid"]) for record in quarantine},
        placements=snapshot.placements,
    )


# --- the tests --------------------------------------------------------------------------------


def test_the_corpus_is_complete() -> None:
    counts = {prefix: sum(document.name.startswith(prefix) for document in DOCUMENTS) for prefix in EXPECTED_COUNTS}
    assert counts == EXPECTED_COUNTS, f"a partial corpus at {CORPUS} would hide documents"


@pytest.mark.parametrize("document", ACCEPTED, ids=lambda document: document.name)
def test_accepted_document_survives_in_every_place(corpus_run: CorpusRun, document: Document) -> None:
    assert document.python_accepts, "a y_ document Python's json rejects cannot be a legacy value"
    placements = corpus_run.placements[document.name]
    problems = [difference for placement in placements for difference in corpus_run.differences(placement)]
    assert not problems, "\n".join(problems)
    spliced = [placement for placement in placements if placement.place != WHOLE_BLOB]
    quarantined = [f"{p.table.name} {p.place}" for p in spliced if corpus_run.is_quarantined(p)]
    assert not quarantined, f"a valid blob holding this document was quarantined: {quarantined}"


@pytest.mark.parametrize("document", REJECTED, ids=lambda document: document.name)
def test_rejected_document_is_quarantined_and_restored_verbatim(corpus_run: CorpusRun, document: Document) -> None:
    placements = corpus_run.placements[document.name]
    assert [p.place for p in placements] == [WHOLE_BLOB, WHOLE_BLOB], "rejected documents are only whole blobs"
    problems = [difference for placement in placements for difference in corpus_run.differences(placement)]
    assert not problems, "\n".join(problems)
    migrated = [placement.table.name for placement in placements if not corpus_run.is_quarantined(placement)]
    assert not migrated, f"migrated instead of quarantined in {migrated}"
