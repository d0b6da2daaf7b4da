"""A shard's compared source rowids in a compact form that crosses from a worker on its report.

Runs of consecutive rowids, flattened: `[start, length, gap, length, gap, length, ...]`, each run
starting `gap` after the end of the one before. A shard over rowids without holes is two numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class RowidRuns:
    """Rowids in increasing order, kept as runs of consecutive rowids (see the module docstring)."""

    def __init__(self) -> None:
        self.encoded: list[int] = []
        self._end: int | None = None  # one past the last rowid added

    def add(self, rowid: int) -> None:
        if self._end is not None and rowid == self._end:
            self.encoded[-1] += 1
        else:
            self.encoded += [rowid - (self._end or 0), 1]
        self._end = rowid + 1


def decode_runs(encoded: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(first rowid, one past the last) of each run, in the order they were added."""
    end = 0
    for index in range(0, len(encoded), 2):
        start = end + encoded[index]
        end = start + encoded[index + 1]
        yield start, end
