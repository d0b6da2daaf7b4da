"""Progress of long runs: a bar on a terminal, and elsewhere (a CI log, a pipe) a line every few seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PROGRESS_LINE_SECONDS = 5.0
"""Without a terminal (a CI log, a pipe), progress is one line on stderr this often."""


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[str, int], None]]:
    """A tqdm bar on a terminal; elsewhere a line every few seconds: rows, rows/s, table."""
    if not sys.stderr.isatty():
        lines = ProgressLines(total, description)
        yield lines.advance
        lines.finish()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit="row", file=sys.stderr)

    def advance(table: str, rows: int) -> None:
        bar.set_postfix_str(table, refresh=False)
        bar.update(rows)

    try:
        yield advance
    finally:
        bar.close()


class ProgressLines:
    """Progress for a log: `migrate: mcp_sessions, 40,000 of 100,000 rows, 12,345 rows/s`."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description, self.every = total, description, PROGRESS_LINE_SECONDS
        self.done = 0
        self.said = 0  # the rows done when a line last said so
        self.started = self.last = time.monotonic()
        self.table = ""

    def advance(self, table: str, rows: int) -> None:
        self.done += rows
        self.table = table
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.say(now)

    def finish(self) -> None:
        # Said something already: say where it ended, unless the last line said just that.
        if self.last != self.started and self.said != self.done:
            self.say(time.monotonic())

    def say(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        self.said = self.done
        print(
            f"{self.description}: {self.table}, {self.done:,} of {self.total:,} rows, {rate:,.0f} rows/s",
            file=sys.stderr,
            flush=True,
        )
