"""What a backfill did, per table and in all: the summary `migrate` prints, and its `--json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TableReport:
    table: str
    source_rows: int = 0
    written: int = 0  # rows new or changed since the last run, written by this one
    rewritten: int = 0  # of those, rows the target held before (by rowid, or a session by key), in another form
    moved: int = 0  # sessions the daemon saved again unchanged under a new rowid: their rows given it in place
    unchanged: int = 0
    deleted: int = 0  # rows gone from the source, removed from the target
    orphans_removed: int = 0  # child rows without their legacy row, removed (recheck)
    changed_meanwhile: int = 0  # rows a daemon changed or removed during the run: left to it, or the next run
    child_rows_written: int = 0  # child rows (tools, queues, queue items, completions) mapped and written
    migrated: int = 0  # rows now held relationally (after the run)
    quarantined: int = 0  # rows now held verbatim in quarantine
    noncanonical: int = 0  # migrated rows whose JSON is not in json.dumps' default format


@dataclass
class BackfillReport:
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    recheck: bool = False
    attempts: int = 1  # more than 1 when a dropped server connection made the run start over

    def to_dict(self) -> dict[str, Any]:
        return {
            "tables": [asdict(t) for t in self.tables],
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "recheck": self.recheck,
            "attempts": self.attempts,
        }
