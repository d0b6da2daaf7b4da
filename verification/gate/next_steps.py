"""What the signer does next about each check that did not pass: the commands, ready to paste.

Every command is built from the run itself: the same interpreter, the same folder and the same
arguments, with only what must change changed (an accept file added, a `-k` that left a check
out removed). No password is ever written: the gate's own arguments come with a URL's password
masked (***), and `ksi-migrate` commands say TARGET for a database URL.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migrator.target import is_url
from verification.gate.checks import (
    COUNTS_CHECKSUMS,
    METADATA,
    NO_ORPHANS,
    PERFORMANCE,
    QUARANTINE,
    ROWS_COVERED,
    ROWS_EXACT,
    SCHEMA,
    SOURCE_COLUMNS,
    SOURCE_UNTOUCHED,
)
from verification.gate.ledger import NOT_RUN, PASS, SKIP, CheckVerdict
from verification.gate.options import (
    ACCEPT_QUARANTINE_OPTION,
    MAX_CHECKPOINT_SAVE_OPTION,
    MAX_SESSION_LOOKUP_OPTION,
    SNAPSHOT_OPTION,
)

# What narrows or stops a run, so that a check does not run: dropped when the whole gate must run.
NARROWING_WITH_VALUE = ("-k", "-m", "--deselect", "--maxfail")
NARROWING_FLAGS = ("-x", "--exitfirst", "--lf", "--last-failed", "--sw", "--stepwise")
ACCEPT_FILE_NAME = "accepted.json"
TARGET_PLACEHOLDER = "TARGET"
# What a catch-up into the target mends: its rows, and the legacy DDL, AUTOINCREMENT counters and
# encoding it records (a migrate records them as the snapshot holds them now).
DATA_CHECKS = (ROWS_EXACT, COUNTS_CHECKSUMS, NO_ORPHANS, SCHEMA, METADATA)


@dataclass(frozen=True)
class Invocation:
    """How the gate was run: enough to run it again exactly."""

    folder: Path
    python: str  # the interpreter that ran pytest, so the command finds the same packages
    args: tuple[str, ...]
    snapshots: tuple[Path, ...]  # one file, or the daemon's two
    target: str | None  # None: a scratch target; a URL's password masked
    signoff_json: Path
    password_masked: bool = False  # the arguments held a password, now ***

    def command(self, args: Sequence[str]) -> str:
        return f"cd {shlex.quote(str(self.folder))} && {shlex.join([self.python, '-m', 'pytest', *args])}"

    def whole_gate(self) -> list[str]:
        return without(self.args, NARROWING_WITH_VALUE, NARROWING_FLAGS)

    def rerun(self) -> str:
        return self.command(self.whole_gate())

    def rerun_accepting(self, accept_file: str) -> str:
        return self.command(replace_option(self.whole_gate(), ACCEPT_QUARANTINE_OPTION, accept_file))

    def ksi_migrate(self, command: str, *extra: str) -> str:
        """`ksi-migrate COMMAND` as `python -m migrator`, through the gate's own interpreter: a gate run
        as `~/ksi-gate/bin/pytest` has no `ksi-migrate` on the PATH, and this one is the same version."""
        target = TARGET_PLACEHOLDER if self.target is None or is_url(self.target) else self.target
        sources = [word for path in self.snapshots for word in ("--source", str(path))]
        words = [self.python, "-m", "migrator", command, *sources, "--target", target, *extra]
        return shlex.join(words).replace(shlex.quote(TARGET_PLACEHOLDER), TARGET_PLACEHOLDER)


def without(args: Sequence[str], with_value: Sequence[str], flags: Sequence[str]) -> list[str]:
    """`args` less the named options, in any of their spellings (`-k X`, `-kX`, `--opt=X`, `--opt X`)."""
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        name = arg.split("=", 1)[0]
        if arg in flags:
            continue
        if name in with_value:
            skip_value = "=" not in arg
            continue
        if any(len(option) == 2 and arg.startswith(option) and len(arg) > 2 for option in with_value):
            continue  # -kEXPRESSION
        kept.append(arg)
    return kept


def next_steps(verdict: CheckVerdict, run: Invocation) -> list[str]:
    """Numbered steps for one check that did not pass; none for a pass."""
    if verdict.verdict == PASS:
        return []
    steps = steps_for(verdict, run)
    if run.password_masked:
        steps.append(
            "The target's password is shown as ***: give it back when you run these commands, or leave it out "
            "of the URL and let the driver find it (PGPASSWORD or ~/.pgpass; a MySQL option file)."
        )
    return steps


def steps_for(verdict: CheckVerdict, run: Invocation) -> list[str]:
    if verdict.verdict == NOT_RUN:
        return [
            "It did not run: the run was narrowed (`-k`, `-m`, `--deselect`), stopped early (`-x`, "
            f"`--maxfail`), or a worker was lost. Run the whole gate: `{run.rerun()}`",
        ]
    if verdict.verdict == SKIP:
        return [
            "A test of it was skipped; signoff.json's `checks` gives each test's outcome and the reason. "
            f"Remove the cause (a server that could not be reached, say), then run the gate again: `{run.rerun()}`",
        ]
    return STEPS_FOR_FAILED.get(verdict.name, steps_for_unknown)(run)


def steps_for_quarantine(run: Invocation) -> list[str]:
    save = (
        "python3 -c \"import json, sys; print(json.dumps(json.load(open(sys.argv[1]))['quarantine'], indent=2))\" "
        f"{shlex.quote(str(run.signoff_json))} > {ACCEPT_FILE_NAME}"
    )
    return [
        "Review each quarantined row in signoff.json's `quarantine` (its `table`, `key`, `rowid` and `reason`).",
        f"Save the list to a file, then delete from it every row you do not accept: `cd {shlex.quote(str(run.folder))} "
        f"&& {save}`",
        f"Run the gate again with it (rows are matched by table, key and reason; a row quarantined for "
        f"another reason, or listed but no longer quarantined, fails again): `{run.rerun_accepting(ACCEPT_FILE_NAME)}`",
    ]


def steps_for_performance(run: Invocation) -> list[str]:
    latency_only = run.command([*run.whole_gate(), "-k", "latency"])
    return [
        "The latency was over its limit twice in a row (both measurements are in signoff.json's `latencies`). "
        "Latencies depend on the machine: run the gate again where nothing else runs, on a machine like the "
        f"one that will serve the daemon, with the target on its production server: `{run.rerun()}`",
        f"To look at the latencies alone while you investigate (this run cannot sign off): `{latency_only}`",
        f"The limits ({MAX_CHECKPOINT_SAVE_OPTION}, {MAX_SESSION_LOOKUP_OPTION}) are the migration plan's "
        "goals: change one only with the plan owner's agreement, and say so in the sign-off.",
    ]


def steps_for_data(run: Invocation) -> list[str]:
    if run.target is None:
        return [
            "The migrator itself carried this snapshot wrongly (the gate migrated it into a scratch target): "
            "a defect. Do not cut over; report it with signoff.json, whose sha256 names the snapshot.",
        ]
    where = " (TARGET: the URL the gate was given)" if is_url(run.target) else ""
    return [
        f"If the target was migrated from an older snapshot, catch it up with this one (it writes what changed, "
        f"removes what is gone, creates missing tables and indexes, and records the legacy tables' DDL, "
        f"counters and encoding as this snapshot holds them){where}: `{run.ksi_migrate('migrate')}`",
        f"Check it: `{run.ksi_migrate('verify', '--report', 'verify.json')}` (exit 0 only when every row is "
        "identical; verify.json names each row with its JSON-path differences).",
        f"Sign off again: `{run.rerun()}`. If it still fails, something other than the migrator changed the "
        "target: migrate this snapshot into a new, empty target and sign that off.",
    ]


def steps_for_source(run: Invocation) -> list[str]:
    copies = {path: "snapshot-copy.db" if len(run.snapshots) == 1 else f"{path.stem}-copy.db" for path in run.snapshots}
    backup = " && ".join(shlex.join(["sqlite3", str(path), f".backup {copy}"]) for path, copy in copies.items())
    on_copies = without(run.whole_gate(), (SNAPSHOT_OPTION,), ())
    on_copies += [word for copy in copies.values() for word in (SNAPSHOT_OPTION, copy)]
    return [
        "The snapshot's bytes changed during the run. The gate only reads it, so another process wrote "
        f"it: sign off a copy that nothing writes: `cd {shlex.quote(str(run.folder))} && {backup}`",
        f"Then run the gate on the copy: `{run.command(on_copies)}`",
    ]


def steps_for_source_columns(run: Invocation) -> list[str]:
    return [
        "The snapshot's legacy tables hold a column the migrator does not carry (named above and in "
        "signoff.json): cleanup would lose it, so `ksi-migrate migrate` refuses this snapshot. Do not cut over.",
        "If the daemon writes that column, the migrator must carry it first: report it with signoff.json. If it "
        "was added by hand and nothing reads it, drop it from the daemon's database (`ALTER TABLE ... DROP "
        f"COLUMN ...`), take a new snapshot, and sign that off: `{run.rerun()}`",
    ]


def steps_for_coverage(run: Invocation) -> list[str]:
    return [
        "A row no shard compared is not proven, however many shards passed. When shards did not run (see "
        f"Per-row exactness), run the whole gate: `{run.rerun()}`",
        "Otherwise the gate itself planned its shards wrongly (a rowid named here is within no shard's bounds, "
        "or within two): a defect of the gate. Do not sign off; report it with signoff.json.",
    ]


def steps_for_unknown(run: Invocation) -> list[str]:
    return [f"See its problems in signoff.json, remove their cause, and run the gate again: `{run.rerun()}`"]


def replace_option(args: Sequence[str], option: str, value: str) -> list[str]:
    return [*without(args, (option,), ()), option, value]


STEPS_FOR_FAILED = {
    QUARANTINE: steps_for_quarantine,
    PERFORMANCE: steps_for_performance,
    SOURCE_UNTOUCHED: steps_for_source,
    ROWS_COVERED: steps_for_coverage,
    SOURCE_COLUMNS: steps_for_source_columns,
    **dict.fromkeys(DATA_CHECKS, steps_for_data),
}
