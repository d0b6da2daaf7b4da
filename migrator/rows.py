"""Rows by column name, at the speed of plain tuples.

Legacy and relational rows travel as plain tuples: the drivers read and write them so, and the
hot paths handle millions. Their columns are named once, in one list per table (`LegacyTable`,
`relational.TableMap`); from that list come

* a builder that takes every column by keyword and returns the tuple in column order (a column
  left out is a `TypeError` at once, so adding a column cannot leave a builder behind), and
* the offset of each column by name (`TABLE.at.layout`), for reading a cell.

A run of columns that one JSON object's record fills (`records.RecordSpec`) is passed as one
sequence, `record=...`, in the record's own column order.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

RECORD = "record"
"""The keyword of a builder that takes a record's columns as one sequence."""

Part = str | tuple[str, int]
"""A column name, or (RECORD, width): a run of `width` columns given as one sequence."""


def row_builder(table: str, parts: Sequence[Part]) -> Callable[..., tuple[Any, ...]]:
    """`build(**cells) -> tuple`, generated once: a keyword-only function whose body is the tuple.

    Generating the function keeps a row's construction as cheap as writing the tuple by hand
    (a fraction of a microsecond), which matters at millions of rows.
    """
    names = [part if isinstance(part, str) else part[0] for part in parts]
    width = sum(1 if isinstance(part, str) else part[1] for part in parts)
    cells = ", ".join(name if isinstance(part, str) else f"*{name}" for name, part in zip(names, parts, strict=True))
    source = (
        f"def build(*, {', '.join(names)}):\n"
        f"    row = ({cells},)\n"
        f"    if len(row) != {width}:\n"
        f"        raise TypeError(f'{table} row has {{len(row)}} cells, expected {width}')\n"
        f"    return row\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<{table} row builder>", "exec"), namespace)
    return namespace["build"]


def offsets(table: str, columns: Sequence[str], start: int = 0) -> Any:
    """Each column's offset in a row, by name: `offsets("t", ["a", "b"]).b == 1`."""
    return namedtuple(f"{table.title().replace('_', '')}Offsets", columns)(*range(start, start + len(columns)))
