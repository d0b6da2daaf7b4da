"""How long runs go: batches of legacy rows, and the progress they report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

DEFAULT_BATCH_SIZE = 2000
"""Legacy rows a batch (and a write transaction) holds by default; the bytes a batch holds are
bounded too (`legacy.BATCH_BYTES`), so large blobs never make a batch large."""

Progress = Callable[[str, int], None]
"""Called with (legacy table name, rows just handled) as a long run goes."""


T = TypeVar("T")


class AcrossAttempts:
    """A run's progress across attempts that each start over (a server connection that dropped):
    only rows past the furthest an earlier attempt reached are reported, so no row counts twice
    and the progress still ends at the run's total."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.furthest = 0  # rows reported so far, by any attempt
        self.seen = 0  # rows the current attempt has handled

    def next_attempt(self) -> Progress | None:
        self.seen = 0
        return None if self.progress is None else self._advance

    def _advance(self, table: str, rows: int) -> None:
        self.seen += rows
        if self.seen > self.furthest and self.progress is not None:
            self.progress(table, self.seen - self.furthest)
            self.furthest = self.seen


def in_phase(progress: Progress | None, phase: str) -> Progress | None:
    """`progress` for one phase of a run that reads its rows more than once: each table it hears
    of is named with the phase (`verifying mcp_sessions`)."""
    if progress is None:
        return None
    report = progress  # bound here: mypy does not carry the narrowing into the closure
    return lambda table, rows: report(f"{phase} {table}", rows)


def reported(rows: Iterable[T], table: str, progress: Progress | None, every: int) -> Iterator[T]:
    """`rows` as they are, telling `progress` how many went by: every `every` rows, and the rest
    once they run out, so that a run's progress ends at its total."""
    if progress is None:
        yield from rows
        return
    pending = 0
    for row in rows:
        yield row
        pending += 1
        if pending == every:
            progress(table, pending)
            pending = 0
    if pending:
        progress(table, pending)
