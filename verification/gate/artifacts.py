"""The sign-off artifacts: `signoff.json` for machines, `signoff.md` for the person who signs.

Both come from one document built once on the controller, so they can never disagree. The
overall verdict is PASS only when every check passed; a check that did not run is not a pass.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from migrator import __version__
from migrator.private import make_folder, write_new_text
from verification.gate.checks import COUNTS_CHECKSUMS, PERFORMANCE, QUARANTINE
from verification.gate.ledger import FAIL, PASS, CheckVerdict

JSON_NAME = "signoff.json"
MARKDOWN_NAME = "signoff.md"
QUARANTINE_ROWS = "rows"  # the quarantine check's figure that becomes the top-level `quarantine` list
PROBLEMS_SHOWN_IN_MARKDOWN = 8


@dataclass(frozen=True)
class RunFacts:
    """What the sign-off is about, besides the checks' own figures."""

    snapshot: Path
    snapshot_hashes: dict[str, str | None]  # taken when the session started
    target: str | None  # None: a scratch SQLite target migrated from the snapshot, gone after the run
    migration: dict[str, Any] | None  # the scratch migration's BackfillReport
    thresholds: dict[str, float]
    accept_file: Path | None


# --- the document ------------------------------------------------------------------------------


def signoff_document(facts: RunFacts, verdicts: list[CheckVerdict], now: datetime) -> dict[str, Any]:
    by_name = {verdict.name: verdict for verdict in verdicts}
    quarantine = figures_of(by_name[QUARANTINE])
    return {
        "verdict": PASS if all(verdict.verdict == PASS for verdict in verdicts) else FAIL,
        "generated_at": now.isoformat(timespec="seconds"),
        "tool": {"name": "ksi-migrator", "version": __version__},
        "snapshot": {
            "path": str(facts.snapshot),
            "sha256": facts.snapshot_hashes["db"],
            "wal_sha256": facts.snapshot_hashes["wal"],
        },
        "target": {"location": facts.target or "scratch", "scratch": facts.target is None},
        "migration": facts.migration,
        "thresholds": facts.thresholds,
        "accepted_quarantine_file": str(facts.accept_file) if facts.accept_file else None,
        "checks": [check_entry(verdict) for verdict in verdicts],
        "counts": {
            figures["table"]: {"source_rows": figures["source_rows"], "rebuilt_rows": figures["rebuilt_rows"]}
            for figures in figures_of(by_name[COUNTS_CHECKSUMS])
        },
        "checksums": {
            figures["table"]: {"source": figures["source_checksum"], "rebuilt": figures["rebuilt_checksum"]}
            for figures in figures_of(by_name[COUNTS_CHECKSUMS])
        },
        "quarantine": quarantine[0][QUARANTINE_ROWS] if quarantine else None,  # None: not known, never "none"
        "latencies": {
            figures["operation"]: {key: value for key, value in figures.items() if key != "operation"}
            for figures in figures_of(by_name[PERFORMANCE])
        },
    }


def figures_of(verdict: CheckVerdict) -> list[dict[str, Any]]:
    return [record.result["figures"] for record in verdict.tests if record.result]


def check_entry(verdict: CheckVerdict) -> dict[str, Any]:
    return {
        "name": verdict.name,
        "title": verdict.title,
        "verdict": verdict.verdict,
        "summary": verdict.summary,
        "problems": verdict.problems,
        "tests": [
            {
                "test": record.test,
                "outcome": record.outcome,
                # the quarantine list is given once, at the top level
                "figures": {k: v for k, v in record.result["figures"].items() if k != QUARANTINE_ROWS}
                if record.result
                else None,
            }
            for record in verdict.tests
        ],
    }


# --- the summary for the signer ----------------------------------------------------------------


def signoff_markdown(document: dict[str, Any]) -> str:
    snapshot, target = document["snapshot"], document["target"]
    lines = [
        f"{document['verdict']}: KSI pre-cutover sign-off",
        "",
        f"- Snapshot: `{snapshot['path']}`, sha256 `{snapshot['sha256']}`"
        + (f", WAL sha256 `{snapshot['wal_sha256']}`" if snapshot["wal_sha256"] else ", no WAL file"),
        f"- Target: {describe_target(target, document['migration'])}",
        f"- ksi-migrator {document['tool']['version']}, {document['generated_at']}",
        "",
        "| Check | Verdict | Figures |",
        "| --- | --- | --- |",
        *(
            f"| {check['title']} | {check['verdict']} | {table_cell(check['summary'])} |"
            for check in document["checks"]
        ),
        "",
        describe_quarantine(document),
    ]
    problems = [line.splitlines()[0] for check in document["checks"] for line in check["problems"]]
    if problems:
        lines += ["", "What failed (every detail is in signoff.json):", ""]
        lines += [f"- {table_cell(line)}" for line in problems[:PROBLEMS_SHOWN_IN_MARKDOWN]]
        if len(problems) > PROBLEMS_SHOWN_IN_MARKDOWN:
            lines.append(f"- ... and {len(problems) - PROBLEMS_SHOWN_IN_MARKDOWN} more")
    return "\n".join(lines) + "\n"


def describe_target(target: dict[str, Any], migration: dict[str, Any] | None) -> str:
    if not target["scratch"]:
        return f"`{target['location']}` (already migrated)"
    if migration is None:
        return "scratch SQLite target"
    rows = sum(table["source_rows"] for table in migration["tables"])
    return f"scratch SQLite target, {rows:,} rows migrated in {migration['seconds']} s"


def describe_quarantine(document: dict[str, Any]) -> str:
    rows = document["quarantine"]
    if rows is None:
        return "Quarantined rows: not known (the quarantine check did not run)."
    accepted = document["accepted_quarantine_file"]
    source = f", accepted in `{accepted}`" if accepted else ""
    return f"Quarantined rows: {len(rows)}, each listed with its reason in signoff.json's `quarantine`{source}."


def table_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- files -------------------------------------------------------------------------------------


def write_atomically(path: Path, text: str) -> Path:
    """Readers see the old file or the new one, never half of one."""
    partial = write_new_text(path.with_name(path.name + ".partial"), text)  # 0600
    os.replace(partial, path)
    return path


def write_signoff(folder: Path, document: dict[str, Any]) -> tuple[Path, Path]:
    make_folder(folder, exist_ok=True)  # 0700 when the run makes it
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return (
        write_atomically(folder / JSON_NAME, text),
        write_atomically(folder / MARKDOWN_NAME, signoff_markdown(document)),
    )


def remove_stale_signoff(folder: Path) -> None:
    """A run that breaks before it can sign must not leave the previous run's PASS in place."""
    for name in (JSON_NAME, MARKDOWN_NAME):
        (folder / name).unlink(missing_ok=True)
