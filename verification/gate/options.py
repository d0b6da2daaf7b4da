"""The sign-off gate's command-line options: declared once, validated once, read as `GateOptions`.

Every name starts with `--ksi-` so the gate never clashes with another plugin's options. A value
that cannot be right (a missing file, a threshold of zero, an accept file in the wrong form) is
rejected before anything runs, as a `pytest.UsageError`: pytest's own parser turns the
`argparse.ArgumentTypeError` of a type function into one, and cross-option rules raise it here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migrator.legacy import LEGACY_TABLES_BY_NAME
from migrator.redaction import mask_url
from migrator.target import is_url, local_path

SNAPSHOT_OPTION = "--ksi-snapshot"
TARGET_OPTION = "--ksi-target"
SIGNOFF_DIR_OPTION = "--ksi-signoff-dir"
ACCEPT_QUARANTINE_OPTION = "--ksi-accept-quarantine"
MAX_CHECKPOINT_SAVE_OPTION = "--ksi-max-checkpoint-save-ms"
MAX_SESSION_LOOKUP_OPTION = "--ksi-max-session-lookup-ms"
SHARD_ROWS_OPTION = "--ksi-shard-rows"
SHARD_BYTES_OPTION = "--ksi-shard-bytes"
READ_SAMPLE_OPTION = "--ksi-read-sample"

DEFAULT_SIGNOFF_DIR = "signoff"
DEFAULT_MAX_CHECKPOINT_SAVE_MS = 100.0  # the plan's "checkpoint save < 100ms"
DEFAULT_MAX_SESSION_LOOKUP_MS = 10.0  # the plan's "session lookup < 10ms"
DEFAULT_SHARD_ROWS = 2000
DEFAULT_SHARD_BYTES = 8 << 20  # about 1,700 sessions or 700 checkpoints of the benchmark's snapshots
DEFAULT_READ_SAMPLE = 100_000  # reads a table through the store whole up to this size, else every n-th row

ACCEPT_ENTRY_FIELDS = ("table", "key", "reason")


@dataclass(frozen=True)
class GateOptions:
    snapshots: tuple[Path, ...]  # one legacy file, or the daemon's two (checkpoint.db, mcp_sessions.db)
    target: str | None  # None: migrate the snapshot into a scratch target
    signoff_dir: Path
    accept_file: Path | None
    accepted: list[dict[str, Any]] = field(default_factory=list)  # the accept file's entries
    accept_sha256: str | None = None  # of the accept file's bytes as they were read
    max_checkpoint_save_ms: float = DEFAULT_MAX_CHECKPOINT_SAVE_MS
    max_session_lookup_ms: float = DEFAULT_MAX_SESSION_LOOKUP_MS
    rows_per_shard: int = DEFAULT_SHARD_ROWS
    bytes_per_shard: int = DEFAULT_SHARD_BYTES
    read_sample: int = DEFAULT_READ_SAMPLE

    @property
    def label(self) -> str:
        """The snapshot's file, or its files joined with ` + `, as the gate's lines name it."""
        return " + ".join(str(path) for path in self.snapshots)


# --- declaring ---------------------------------------------------------------------------------


def existing_file(text: str) -> Path:
    path = Path(local_path(text)).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {mask_url(text)}")
    return path


def existing_target(text: str) -> str:
    """A database URL as given, or the absolute path of an existing SQLite file."""
    return text if is_url(text) else str(existing_file(text))


def positive_number(unit: str, symbol: str) -> Callable[[str], float]:
    """An option type: a number of `unit` (written `symbol`) above zero."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of {unit}: {mask_url(text)!r}") from None
        if not value > 0:  # also refuses NaN, which every comparison would let through
            raise argparse.ArgumentTypeError(f"must be more than 0 {symbol}, got {mask_url(text)!r}")
        return value

    return parse


positive_milliseconds = positive_number("milliseconds", "ms")


def positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {mask_url(text)!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def add_gate_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("ksi-gate", "KSI pre-cutover sign-off gate")
    group.addoption(
        SNAPSHOT_OPTION,
        type=existing_file,
        action="append",
        metavar="LEGACY.db",
        help="legacy snapshot to sign off, once per file for the daemon's two files (checkpoint.db and "
        "mcp_sessions.db); without it the gate collects nothing",
    )
    group.addoption(
        TARGET_OPTION,
        type=existing_target,
        metavar="TARGET",
        help=f"verify this already-migrated target (path or URL) instead of migrating; needs {SNAPSHOT_OPTION}",
    )
    group.addoption(
        SIGNOFF_DIR_OPTION,
        type=local_path,
        default=DEFAULT_SIGNOFF_DIR,
        metavar="DIR",
        help="where signoff.json and signoff.md are written (default: %(default)s)",
    )
    group.addoption(
        ACCEPT_QUARANTINE_OPTION,
        type=existing_file,
        metavar="FILE",
        help="reviewed JSON list of quarantined rows the signer accepts (signoff.json's quarantine list)",
    )
    group.addoption(
        MAX_CHECKPOINT_SAVE_OPTION,
        type=positive_milliseconds,
        default=DEFAULT_MAX_CHECKPOINT_SAVE_MS,
        metavar="MS",
        help="p99 limit of a checkpoint save, in ms (default: %(default)s)",
    )
    group.addoption(
        MAX_SESSION_LOOKUP_OPTION,
        type=positive_milliseconds,
        default=DEFAULT_MAX_SESSION_LOOKUP_MS,
        metavar="MS",
        help="p99 limit of a session lookup by key, in ms (default: %(default)s)",
    )
    group.addoption(
        SHARD_ROWS_OPTION,
        type=positive_count,
        default=DEFAULT_SHARD_ROWS,
        metavar="N",
        help="at most this many legacy rows per exactness shard, the unit spread over -n workers "
        "(default: %(default)s)",
    )
    group.addoption(
        SHARD_BYTES_OPTION,
        type=positive_count,
        default=DEFAULT_SHARD_BYTES,
        metavar="N",
        help="what an exactness shard costs to check, in bytes: its rows' blobs, plus 4 KiB a row for the "
        "work besides the blob (default: %(default)s)",
    )
    group.addoption(
        READ_SAMPLE_OPTION,
        type=positive_count,
        default=DEFAULT_READ_SAMPLE,
        metavar="N",
        help="rows per table also read through the store (get_session, load_checkpoint); a larger table "
        "is sampled evenly to about N (default: %(default)s)",
    )


# --- reading -----------------------------------------------------------------------------------


def read_gate_options(config: pytest.Config) -> GateOptions | None:
    """The gate's options, or None when the gate is off (no snapshot).

    The rules checked here involve more than one option, or a file's content.
    """
    snapshots: list[Path] | None = config.getoption(SNAPSHOT_OPTION)
    target: str | None = config.getoption(TARGET_OPTION)
    accept_file: Path | None = config.getoption(ACCEPT_QUARANTINE_OPTION)
    if target is not None and not snapshots:
        raise pytest.UsageError(
            f"{TARGET_OPTION} needs {SNAPSHOT_OPTION}: the snapshot is what the target is checked against"
        )
    if not snapshots:
        return None
    accepted, accept_sha256 = read_accept_file(accept_file) if accept_file else ([], None)
    return GateOptions(
        snapshots=tuple(snapshots),
        target=target,
        signoff_dir=signoff_dir(config),
        accept_file=accept_file,
        accepted=accepted,
        accept_sha256=accept_sha256,
        max_checkpoint_save_ms=config.getoption(MAX_CHECKPOINT_SAVE_OPTION),
        max_session_lookup_ms=config.getoption(MAX_SESSION_LOOKUP_OPTION),
        rows_per_shard=config.getoption(SHARD_ROWS_OPTION),
        bytes_per_shard=config.getoption(SHARD_BYTES_OPTION),
        read_sample=config.getoption(READ_SAMPLE_OPTION),
    )


def signoff_dir(config: pytest.Config) -> Path:
    folder = config.invocation_params.dir / Path(config.getoption(SIGNOFF_DIR_OPTION)).expanduser()
    if folder.exists() and not folder.is_dir():
        raise pytest.UsageError(f"{SIGNOFF_DIR_OPTION} {folder} exists and is not a folder")
    return folder.resolve()


def read_accept_file(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The signer's reviewed copy of signoff.json's `quarantine` list, and the sha256 of the bytes
    read: the sign-off records exactly which reviewed list it accepted."""
    try:
        content = path.read_bytes()
        entries = json.loads(content.decode("utf-8"))
    except (OSError, ValueError) as exc:  # a UnicodeDecodeError is a ValueError
        raise pytest.UsageError(f"{ACCEPT_QUARANTINE_OPTION} {path}: not a readable JSON file: {exc}") from exc
    if not isinstance(entries, list):
        raise pytest.UsageError(
            f"{ACCEPT_QUARANTINE_OPTION} {path}: expected a JSON list, in the form of signoff.json's quarantine list"
        )
    for position, entry in enumerate(entries):
        problem = accept_entry_problem(entry)
        if problem:
            raise pytest.UsageError(f"{ACCEPT_QUARANTINE_OPTION} {path}: entry {position}: {problem}")
    return entries, hashlib.sha256(content).hexdigest()


def accept_entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return "expected an object with " + ", ".join(ACCEPT_ENTRY_FIELDS)
    missing = [name for name in ACCEPT_ENTRY_FIELDS if name not in entry]
    if missing:
        return "lacks " + ", ".join(missing)
    if entry["table"] not in LEGACY_TABLES_BY_NAME:
        return f"table must be one of {', '.join(LEGACY_TABLES_BY_NAME)}, got {entry['table']!r}"
    if isinstance(entry["key"], bool) or not isinstance(entry["key"], str | int):
        return f"key must be the row's id or session_key, got {entry['key']!r}"
    if not isinstance(entry["reason"], str):
        return f"reason must be text, got {entry['reason']!r}"
    return None
