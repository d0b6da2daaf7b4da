"""What every group of the catalogue shares: later keys, and entries looked up by name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True, eq=False)  # an entry is itself: hashed by identity, its examples need not be
class LaterKey:
    """A key that later daemon versions (or callers) added to an object, with values seen in it."""

    name: str
    doc: str
    examples: tuple[Any, ...]


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def by_name(entries: Iterable[N]) -> dict[str, N]:
    """{entry.name: entry}, in catalogue order."""
    return {entry.name: entry for entry in entries}
