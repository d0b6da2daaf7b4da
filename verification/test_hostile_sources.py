"""Hostile sources, through the real command: `ksi-migrate migrate` as a user runs it.

A snapshot the mapping cannot carry exactly is refused before anything is written: one line on
stderr that names what is wrong (the table, the column, the command run) and, where it offers a way
out, a way out that works. The snapshot's files stay byte for byte as they were, with no file added
beside them. A snapshot that is odd but can be carried (a WAL copied without its index, another
daemon's file given for a catch-up and then confirmed) is migrated whole.

Every expectation is worked out here from the snapshot and SQLite's own documentation (the rowid's
names, the daemon's DDL), not from the migrator's code.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import sqlite3
from collections.abc import Sequence
from contextlib import closing, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from migrator.cli import EXIT_INTERNAL, EXIT_OK, build_parser, main
from migrator.codec import cell_identity
from migrator.legacy import CHECKPOINTS, MCP_SESSIONS, LegacyTable
from verification.harness import legacy_file_differences, scratch_folder
from verification.live import DAEMON_FILES
from verification.strategies import LegacySnapshot, checkpoint_tables, legacy_snapshots, session_tables

SQLITE_ROWID_NAMES = ("rowid", "oid", "_rowid_")  # https://sqlite.org/lang_createtable.html#rowid
TABLES = {table.name: table for table in (CHECKPOINTS, MCP_SESSIONS)}


@dataclass(frozen=True)
class Run:
    status: int
    stdout: str
    stderr: str

    @property
    def error(self) -> dict:
        """The `--json` error document."""
        return json.loads(self.stdout)


def ksi_migrate(*argv: object) -> Run:
    """The command line as a user runs it, with its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main([str(argument) for argument in argv])
    return Run(status, out.getvalue(), err.getvalue())


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def rows_in(target: Path) -> dict[str, int]:
    """Every table of a SQLite target with rows, and how many: nothing at all when it was never created."""
    if not target.exists():
        return {}
    with closing(sqlite3.connect(target)) as connection:
        names = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
    return {name: count for name, count in counts.items() if count}


def migrate_options() -> set[str]:
    """Every option `migrate` accepts, from the command line's own parser."""
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return {option for action in commands.choices["migrate"]._actions for option in action.option_strings}


def refusal_problems(run: Run, error_type: str, must_name: Sequence[str]) -> list[str]:
    """What is wrong with a refusal: not one clean line, not the situation's error, not naming what it must."""
    problems = []
    lines = run.stderr.splitlines()
    if run.status in (EXIT_OK, EXIT_INTERNAL) or len(lines) != 1 or not lines[0].startswith("ksi-migrate: error: "):
        return [f"not one clean error line (exit {run.status}): {run.stderr!r}"]
    if run.error["error_type"] != error_type or run.error["exit_code"] != run.status:
        problems.append(f"raised {run.error['error_type']} (exit {run.status}), expected {error_type}")
    problems += [f"the message does not name {name!r}: {lines[0]}" for name in must_name if name not in lines[0]]
    return problems


# --- damage done to a good snapshot -----------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """SQL that makes a good snapshot one the mapping cannot carry, and what the refusal must say."""

    what: str
    statements: tuple[str, ...]
    error_type: str
    must_name: tuple[str, ...]
    fixed_by_its_advice: bool = False  # the SQL the refusal offers gives the daemon's table back


def non_key_columns(table: LegacyTable) -> tuple[str, ...]:
    return tuple(column for column in table.columns if column != table.key_column)


def _recreated(table: LegacyTable, columns_sql: str, select: str, *, without_rowid: bool = False) -> tuple[str, ...]:
    """The table declared anew (SQLite cannot change a primary key in place), its rows copied:
    all of them, but for the NULL keys a WITHOUT ROWID table's primary key refuses."""
    options, rows = (" WITHOUT ROWID", f' WHERE "{table.key_column}" IS NOT NULL') if without_rowid else ("", "")
    return (
        f'CREATE TABLE "new_{table.name}" ({columns_sql}){options}',
        f'INSERT INTO "new_{table.name}" SELECT {select} FROM "{table.name}"{rows}',
        f'DROP TABLE "{table.name}"',
        f'ALTER TABLE "new_{table.name}" RENAME TO "{table.name}"',
    )


def other_cases(name: str) -> st.SearchStrategy[str]:
    """The name with at least one letter in another case: SQLite takes it for the same table."""
    flips = st.lists(st.booleans(), min_size=len(name), max_size=len(name))
    spelled = flips.map(lambda upper: "".join(c.upper() if up else c for c, up in zip(name, upper, strict=True)))
    return spelled.filter(lambda spelling: spelling != name)


@st.composite
def named_in_another_case(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    spelling = draw(other_cases(table.name))
    if draw(st.booleans()):
        # A renamed table: the daemon's `FROM checkpoints` still reads it, the exact name would not.
        # (SQLite takes a rename to the same name in another case for a clash: two steps.)
        statements: tuple[str, ...] = (
            f'ALTER TABLE "{table.name}" RENAME TO "{table.name}_renamed"',
            f'ALTER TABLE "{table.name}_renamed" RENAME TO "{spelling}"',
        )
        named = (f"table {spelling}", table.name)
        return Damage("a table in another case", statements, "UnsupportedSource", named, fixed_by_its_advice=True)
    statements = (
        f'ALTER TABLE "{table.name}" RENAME TO "{table.name}_kept"',
        f'CREATE VIEW "{spelling}" AS SELECT * FROM "{table.name}_kept"',
    )
    return Damage("a view in another case", statements, "UnsupportedSource", (f"view {spelling}", table.name))


@st.composite
def missing_columns(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    columns = non_key_columns(table)
    dropped = draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
    listed = ", ".join(column for column in table.columns if column in dropped)  # in the table's order
    statements = tuple(f'ALTER TABLE "{table.name}" DROP COLUMN "{column}"' for column in dropped)
    return Damage("missing columns", statements, "UnsupportedSource", (table.name, f"lacks column(s) {listed}"))


@st.composite
def rowid_hidden(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    name = draw(st.sampled_from(SQLITE_ROWID_NAMES))
    column = draw(st.one_of(st.just(name), other_cases(name)))
    statements = (f'ALTER TABLE "{table.name}" ADD COLUMN "{column}"',)
    return Damage("a column hiding the rowid", statements, "UnsupportedSource", (table.name, f"column {column}"))


@st.composite
def generated_column(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    statements = (f'ALTER TABLE "{table.name}" ADD COLUMN "derived" GENERATED ALWAYS AS (1) VIRTUAL',)
    return Damage("a generated column", statements, "UnsupportedSource", (table.name, "column derived"))


@st.composite
def unmapped_column(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    column = draw(st.sampled_from(["agent_note", "Extra", "ttl"]))
    statements = (f'ALTER TABLE "{table.name}" ADD COLUMN "{column}"',)
    return Damage("a column the mapping does not read", statements, "UnmappedColumn", (f"{table.name}.{column}",))


# The daemon's keys as its DDL spells them (`verification.daemon_sql.CHECKPOINTS_DDL`).
DAEMON_CHECKPOINT_KEY = "INTEGER PRIMARY KEY"
OTHER_KEYS = {
    CHECKPOINTS.name: (
        # INT is not INTEGER: the column is then a key of its own, not the rowid.
        ("id INT PRIMARY KEY, timestamp, checkpoint_data", "id, timestamp, checkpoint_data"),
        ("id INTEGER, timestamp, checkpoint_data", "id, timestamp, checkpoint_data"),
        ("id INTEGER, timestamp, checkpoint_data, PRIMARY KEY (id, timestamp)", "id, timestamp, checkpoint_data"),
    ),
    MCP_SESSIONS.name: (
        ("session_key, session_data, last_seen", "session_key, session_data, last_seen"),
        ("session_key, session_data, last_seen, PRIMARY KEY (session_key, last_seen)", "*"),
    ),
}


@st.composite
def another_primary_key(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    columns_sql, select = draw(st.sampled_from(OTHER_KEYS[table.name]))
    must_name = [table.name, table.key_column]
    if table is CHECKPOINTS:
        must_name.append(f"{table.key_column} is {DAEMON_CHECKPOINT_KEY}")
    statements = _recreated(table, columns_sql, select)
    return Damage("another primary key", statements, "UnsupportedSource", tuple(must_name))


@st.composite
def without_rowid(draw: st.DrawFn) -> Damage:
    table = draw(st.sampled_from(list(TABLES.values())))
    key = "id INTEGER PRIMARY KEY" if table is CHECKPOINTS else "session_key TEXT PRIMARY KEY"
    others = ", ".join(non_key_columns(table))
    statements = _recreated(table, f"{key}, {others}", ", ".join(table.columns), without_rowid=True)
    return Damage("a WITHOUT ROWID table", statements, "UnsupportedSource", (table.name, "WITHOUT ROWID"))


# Each kind of damage is a test of its own, so that every kind gets the profile's examples (the
# `mutation` profile's ten would otherwise leave one out now and then).
DAMAGES = {
    "another-case": named_in_another_case,
    "missing-columns": missing_columns,
    "rowid-hidden": rowid_hidden,
    "generated-column": generated_column,
    "unmapped-column": unmapped_column,
    "another-primary-key": another_primary_key,
    "without-rowid": without_rowid,
}


def damaged_copy(snapshot: LegacySnapshot, damage: Damage, folder: Path) -> Path:
    folder.mkdir()
    path = snapshot.write(folder / "ksi.db")
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        for statement in damage.statements:
            connection.execute(statement)
    return path


# --- the properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(DAMAGES))
@given(snapshot=legacy_snapshots(), data=st.data())
def test_a_source_the_mapping_cannot_carry_is_refused_in_one_line_that_names_it(
    kind: str, snapshot: LegacySnapshot, data: st.DataObject
) -> None:
    damage = data.draw(DAMAGES[kind](), label="damage")
    with scratch_folder() as folder:
        source = damaged_copy(snapshot, damage, folder / "source")
        before = folder_bytes(source.parent)
        target = folder / "target.db"
        run = ksi_migrate("migrate", "--source", source, "--target", target, "--json", "--jobs", 1)
        problems = refusal_problems(run, damage.error_type, (str(source), *damage.must_name))
        assert not problems, f"{damage.what}: " + "; ".join(problems)
        assert folder_bytes(source.parent) == before, f"{damage.what}: the refused snapshot's folder changed"
        assert not rows_in(target), f"{damage.what}: a refused run wrote {rows_in(target)}"
        if damage.fixed_by_its_advice:
            fixed_by_the_advice(source, run.error["error"], snapshot, folder)


def fixed_by_the_advice(source: Path, message: str, snapshot: LegacySnapshot, folder: Path) -> None:
    """The statements a refusal offers, run on the snapshot, make it one that migrates whole."""
    statements = [statement.strip() for statement in re.findall(r"ALTER TABLE [^;]+", message)]
    assert statements, f"the refusal offers no statement to run: {message}"
    with closing(sqlite3.connect(source, isolation_level=None)) as connection:
        for statement in statements:
            connection.execute(statement)
    target, restored = folder / "fixed.db", folder / "restored.db"
    run = ksi_migrate("migrate", "--source", source, "--target", target, "--jobs", 1)
    assert run.status == EXIT_OK, f"after the refusal's advice ({statements}): {run.stderr}"
    assert ksi_migrate("restore", "--target", target, "--out", restored).status == EXIT_OK
    expected = snapshot.write(folder / "expected.db")
    differences = legacy_file_differences(expected, restored)
    assert not differences, "after the refusal's advice, the snapshot migrates otherwise: " + "; ".join(differences)


@given(snapshot=legacy_snapshots(), command=st.sampled_from(["migrate", "archive"]))
def test_a_source_whose_schema_a_restore_cannot_recreate_is_refused_by_the_command_run(
    snapshot: LegacySnapshot, command: str
) -> None:
    table = CHECKPOINTS if snapshot.checkpoints or not snapshot.sessions else MCP_SESSIONS
    trigger = f'CREATE TRIGGER audit AFTER DELETE ON "{table.name}" BEGIN SELECT 1; END'
    damage = Damage("a trigger", (trigger,), "SchemaRefused", (f"cannot {command} ", "CREATE TRIGGER audit"))
    with scratch_folder() as folder:
        source = damaged_copy(snapshot, damage, folder / "source")
        before = folder_bytes(source.parent)
        out = ("--target", folder / "target.db") if command == "migrate" else ("--out", folder / "archive")
        run = ksi_migrate(command, "--source", source, *out, *(("--json",) if command == "migrate" else ()))
        if command == "archive":  # archive has no --json: its one line is all there is
            run = Run(run.status, json.dumps({"error_type": "SchemaRefused", "exit_code": run.status}), run.stderr)
        problems = refusal_problems(run, damage.error_type, (str(source), *damage.must_name))
        assert not problems, "; ".join(problems)
        assert folder_bytes(source.parent) == before, "the refused snapshot's folder changed"
        assert not rows_in(folder / "target.db") and not (folder / "archive").exists(), "a refused run wrote"


# --- odd sources that can be carried ------------------------------------------------------------


def copied_mid_write(snapshot: LegacySnapshot, folder: Path) -> tuple[Path, Path]:
    """The snapshot as a hot copy of a WAL database: its rows only in the -wal file, with no -shm.

    Returns the snapshot written plainly (what the copy holds) and the copy. The copy's main file
    holds the tables empty; a reader that ignores the WAL, or rebuilds its index wrongly, loses rows.
    """
    plain = snapshot.write(folder / "plain.db")
    live = folder / "live" / "ksi.db"
    live.parent.mkdir()
    shutil.copyfile(plain, live)
    with closing(sqlite3.connect(live, isolation_level=None)) as connection:
        for table in TABLES.values():
            connection.execute(f'DELETE FROM "{table.name}"')
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA wal_autocheckpoint = 0")  # every row stays in the WAL
        connection.execute("ATTACH ? AS plain", (str(plain),))
        for table in TABLES.values():
            columns = ", ".join(f'"{column}"' for column in table.columns)
            keys = columns if table.rowid_alias else f"rowid, {columns}"
            connection.execute(f'INSERT INTO main."{table.name}" ({keys}) SELECT {keys} FROM plain."{table.name}"')
        connection.execute("DETACH plain")
        copy = folder / "copy" / "ksi.db"
        copy.parent.mkdir()
        shutil.copyfile(live, copy)  # while the writer is still open: the WAL is not checkpointed yet
        shutil.copyfile(live.with_name("ksi.db-wal"), copy.with_name("ksi.db-wal"))
    return plain, copy


@given(snapshot=legacy_snapshots())
def test_a_wal_copied_without_its_index_is_read_whole_and_left_as_it_was(snapshot: LegacySnapshot) -> None:
    assume(snapshot.checkpoints or snapshot.sessions)
    with scratch_folder() as folder:
        plain, copy = copied_mid_write(snapshot, folder)
        before = folder_bytes(copy.parent)
        target, restored = folder / "target.db", folder / "restored.db"
        run = ksi_migrate("migrate", "--source", copy, "--target", target, "--jobs", 1)
        assert run.status == EXIT_OK, run.stderr
        assert folder_bytes(copy.parent) == before, "migrate changed the copied snapshot's folder"
        run = ksi_migrate("restore", "--target", target, "--out", restored)
        assert run.status == EXIT_OK, run.stderr
        differences = legacy_file_differences(plain, restored)
        assert not differences, "the rows in the WAL did not all come through: " + "; ".join(differences)


# --- another daemon's snapshot given for a catch-up ---------------------------------------------


def _row_identities(rows: Sequence[tuple]) -> set[tuple]:
    return {tuple(cell_identity(cell) for cell in row) for row in rows}


def share_nothing(first: LegacySnapshot, second: LegacySnapshot) -> bool:
    """No row with the same rowid and cells, and no session with the same key: another daemon's."""
    same_rows = _row_identities(first.checkpoints) & _row_identities(second.checkpoints) or _row_identities(
        first.sessions
    ) & _row_identities(second.sessions)
    same_keys = {cell_identity(row[1]) for row in first.sessions} & {cell_identity(row[1]) for row in second.sessions}
    return not same_rows and not same_keys


def sources(files: Sequence[Path]) -> list[object]:
    return [word for path in files for word in ("--source", path)]


def way_out(message: str) -> list[str]:
    """The options a refusal tells the user to pass; each must be one `migrate` has."""
    offered = re.findall(r"(?<![\w-])--[\w-]+", message)
    unknown = [option for option in offered if option not in migrate_options()]
    assert offered and not unknown, f"the refusal offers no way out, or options migrate lacks ({unknown}): {message}"
    return offered


def restored_differences(target: Path, expected: Sequence[Path], folder: Path) -> list[str]:
    """The target rebuilt into files laid out as `expected` (one file, or the daemon's two)."""
    outs = [folder / f"restored-{path.name}" for path in expected]
    flags = ["--out"] if len(expected) == 1 else ["--checkpoints-out", "--sessions-out"]
    held = [[CHECKPOINTS, MCP_SESSIONS]] if len(expected) == 1 else [[CHECKPOINTS], [MCP_SESSIONS]]
    run = ksi_migrate("restore", "--target", target, *(word for pair in zip(flags, outs, strict=True) for word in pair))
    assert run.status == EXIT_OK, run.stderr
    pairs = zip(expected, outs, held, strict=True)
    return [d for want, got, tables in pairs for d in legacy_file_differences(want, got, tables)]


def written(snapshot: LegacySnapshot, folder: Path, apart: bool) -> list[Path]:
    """The snapshot in one file, or `apart`: in the daemon's own layout, each table in a file of its own."""
    folder.mkdir()
    if apart:
        return snapshot.write_apart({name: folder / file for name, file in DAEMON_FILES.items()})
    return [snapshot.write(folder / "ksi.db")]


HOLDING_BOTH = legacy_snapshots(checkpoint_tables().filter(bool), session_tables().filter(bool))


@pytest.mark.slow  # 29 s in the suite on a slow day (2026-12-01)
@given(first=HOLDING_BOTH, second=legacy_snapshots(), apart=st.booleans())
def test_a_catch_up_from_another_daemons_snapshot_is_refused_and_the_way_out_it_names_works(
    first: LegacySnapshot, second: LegacySnapshot, apart: bool
) -> None:
    assume(share_nothing(first, second))
    with scratch_folder() as folder:
        target = folder / "target.db"
        mine = written(first, folder / "mine", apart)
        # Apart: the right checkpoint file with another daemon's sessions file, a mix-up of one file.
        theirs = (
            [mine[0], written(second, folder / "theirs", apart)[1]]
            if apart
            else written(second, folder / "theirs", apart)
        )
        assert ksi_migrate("migrate", *sources(mine), "--target", target, "--jobs", 1).status == EXIT_OK
        held = rows_in(target)
        run = ksi_migrate("migrate", *sources(theirs), "--target", target, "--json", "--jobs", 1)
        names = (str(theirs[1]),) if apart else (str(theirs[0]), "the target's checkpoints, mcp_sessions (")
        problems = refusal_problems(run, "SnapshotMismatch", names)
        assert not problems, "; ".join(problems)
        assert rows_in(target) == held, "a refused catch-up changed the target"
        run = ksi_migrate("migrate", *sources(theirs), "--target", target, *way_out(run.error["error"]), "--jobs", 1)
        assert run.status == EXIT_OK, run.stderr
        differences = restored_differences(target, theirs, folder)
        assert not differences, "the catch-up the refusal allowed differs from the snapshot: " + "; ".join(differences)
