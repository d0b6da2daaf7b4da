"""The sign-off artifacts: `signoff.json` for machines, `signoff.md` for the person who signs, and
one junit test case per verdict for a CI system that reads `--junitxml`.

All come from one document built once on the controller, so they can never disagree. The
overall verdict is PASS only when every check passed; a check that did not run is not a pass.
The sign-off says who ran it where and when, with which migrator (its version, and its git
commit when it runs from a checkout), and, for each check that did not pass, what to do next.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest

import migrator
from migrator import __version__
from migrator.private import make_folder, write_new_text
from migrator.sources import files_listing
from verification.gate.checks import COUNTS_CHECKSUMS, PERFORMANCE, QUARANTINE
from verification.gate.ledger import FAIL, PASS, SKIP, CheckVerdict
from verification.gate.next_steps import Invocation, next_steps

JSON_NAME = "signoff.json"
MARKDOWN_NAME = "signoff.md"
QUARANTINE_ROWS = "rows"  # the quarantine check's figure that becomes the top-level `quarantine` list
PROBLEMS_SHOWN_IN_MARKDOWN = 8


@dataclass(frozen=True)
class RunFacts:
    """What the sign-off is about, besides the checks' own figures."""

    snapshots: tuple[Path, ...]  # one file, or the daemon's two
    snapshot_hashes: dict[str, str | None]  # taken when the session started (`sources.files_hashes`)
    target: str | None  # None: a scratch SQLite target migrated from the snapshot, gone after the run
    migration: dict[str, Any] | None  # the scratch migration's BackfillReport
    thresholds: dict[str, float]
    accept_file: Path | None
    accept_sha256: str | None
    invocation: Invocation
    signer: dict[str, str | None]  # host and user: `who_and_where()`
    migrator_source: dict[str, Any] | None  # `migrator_source()`


def who_and_where() -> dict[str, str | None]:
    try:
        user: str | None = getpass.getuser()
    except (OSError, KeyError):  # no login name, and no passwd entry for the uid (a bare container)
        user = None
    return {"host": socket.gethostname(), "user": user}


def migrator_checkout() -> dict[str, Any] | None:
    """The git commit the migrator runs from, and whether its files differ from it; None for an
    installed copy (a package in site-packages is not the checkout of any repository around it)."""
    package = Path(migrator.__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10)

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return None
        commit = git("rev-parse", "HEAD").stdout.strip()
        changes = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return None
    return {"commit": commit, "local_changes": bool(changes)} if commit else None


def migrator_installed_from_git() -> dict[str, Any] | None:
    """The commit pip recorded when it installed the package from a git repository
    (`pip install 'ksi-migrator[gate] @ git+URL@REV'`: `vcs_info` in PEP 610's direct_url.json);
    None for any other install. pip builds that commit from a clean clone: no local changes."""
    try:
        text = importlib.metadata.distribution("ksi-migrator").read_text("direct_url.json")
        vcs = json.loads(text or "{}").get("vcs_info") or {}
    except (importlib.metadata.PackageNotFoundError, ValueError, AttributeError):  # not installed; not PEP 610
        return None
    commit = vcs.get("commit_id") if isinstance(vcs, dict) and vcs.get("vcs") == "git" else None
    return {"commit": commit, "local_changes": False} if isinstance(commit, str) and commit else None


def migrator_source() -> dict[str, Any] | None:
    """Where the migrator's code comes from, when it is known: a git checkout, or an install from git."""
    return migrator_checkout() or migrator_installed_from_git()


# --- the document ------------------------------------------------------------------------------


def signoff_document(facts: RunFacts, verdicts: list[CheckVerdict], now: datetime) -> dict[str, Any]:
    by_name = {verdict.name: verdict for verdict in verdicts}
    quarantine = figures_of(by_name[QUARANTINE])
    source = facts.migrator_source or {}
    return {
        "verdict": PASS if all(verdict.verdict == PASS for verdict in verdicts) else FAIL,
        "generated_at": now.isoformat(timespec="seconds"),
        "signed": {**facts.signer, "at": now.isoformat(timespec="seconds")},
        "tool": {
            "name": "ksi-migrator",
            "version": __version__,
            "commit": source.get("commit"),  # None: not known (installed, and not from git)
            "local_changes": source.get("local_changes"),
        },
        "snapshot": {
            "path": " + ".join(str(path) for path in facts.snapshots),
            "sha256": facts.snapshot_hashes["db"],
            "wal_sha256": facts.snapshot_hashes["wal"],
            **({"files": files_listing(facts.snapshots)} if len(facts.snapshots) > 1 else {}),
        },
        "target": {"location": facts.target or "scratch", "scratch": facts.target is None},
        "migration": facts.migration,
        "thresholds": facts.thresholds,
        "accepted_quarantine_file": str(facts.accept_file) if facts.accept_file else None,
        "accepted_quarantine_sha256": facts.accept_sha256,
        "rerun": {"folder": str(facts.invocation.folder), "command": facts.invocation.rerun()},
        "checks": [check_entry(verdict, facts.invocation) for verdict in verdicts],
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


def check_entry(verdict: CheckVerdict, invocation: Invocation) -> dict[str, Any]:
    return {
        "name": verdict.name,
        "title": verdict.title,
        "verdict": verdict.verdict,
        "summary": verdict.summary,
        "problems": verdict.problems,
        "next_steps": next_steps(verdict, invocation),
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
        f"- Accepted quarantine list: {describe_accept_file(document)}",
        f"- Run by {describe_signer(document['signed'])}, {document['generated_at']}",
        f"- {describe_tool(document['tool'])}",
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
    unfinished = [check for check in document["checks"] if check["next_steps"]]
    if unfinished:
        lines += ["", "## What to do next"]
        for check in unfinished:
            lines += ["", f"**{check['title']}** ({check['verdict']}):", ""]
            lines += [f"{number}. {step}" for number, step in enumerate(check["next_steps"], start=1)]
    return "\n".join(lines) + "\n"


def describe_accept_file(document: dict[str, Any]) -> str:
    if document["accepted_quarantine_file"] is None:
        return "none given"
    return f"`{document['accepted_quarantine_file']}`, sha256 `{document['accepted_quarantine_sha256']}`"


def describe_signer(signed: dict[str, Any]) -> str:
    return f"{signed['user'] or 'an unknown user'} on {signed['host']}"


def describe_tool(tool: dict[str, Any]) -> str:
    if tool["commit"] is None:
        return f"ksi-migrator {tool['version']} (installed, not from git: git commit not known)"
    changes = ", with local changes" if tool["local_changes"] else ""
    return f"ksi-migrator {tool['version']}, git commit `{tool['commit']}`{changes}"


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


# --- junit ---------------------------------------------------------------------------------------

JUNIT_OUTCOMES: dict[str, Literal["passed", "skipped"]] = {
    PASS: "passed",
    SKIP: "skipped",
}  # anything else, NOT RUN included, fails


def verdict_reports(document: dict[str, Any]) -> list[pytest.TestReport]:
    """Setup, call and teardown reports of one test case per check, and one for the sign-off,
    as pytest makes them for a test: junitxml (and every other report consumer) takes them as
    such, so a CI system that reads junit sees a check fail even when every test passed (a check
    the controller adds up from shards, or one that did not run)."""
    cases = [(check["name"], check["verdict"], check_failure_text(check)) for check in document["checks"]]
    failed = [check["title"] for check in document["checks"] if check["verdict"] != PASS]
    cases.append(("verdict", document["verdict"], f"the sign-off is {document['verdict']}: {', '.join(failed)}"))
    return [report for name, verdict, text in cases for report in case_reports(f"signoff::{name}", verdict, text)]


def check_failure_text(check: dict[str, Any]) -> str:
    lines = [f"{check['title']}: {check['verdict']}: {check['summary']}", *check["problems"]]
    if check["next_steps"]:
        lines += ["What to do next:", *check["next_steps"]]
    return "\n".join(lines)


def case_reports(nodeid: str, verdict: str, text: str) -> list[pytest.TestReport]:
    location = ("signoff", None, nodeid)
    outcome: Literal["passed", "failed", "skipped"] = JUNIT_OUTCOMES.get(verdict, "failed")
    longrepr: Any = None if outcome == "passed" else ("signoff", 0, text) if outcome == "skipped" else text
    return [
        pytest.TestReport(nodeid, location, {}, "passed", None, "setup"),
        pytest.TestReport(nodeid, location, {}, outcome, longrepr, "call"),
        pytest.TestReport(nodeid, location, {}, "passed", None, "teardown"),
    ]


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
