"""What peewee has but its type stubs leave out: `sort_models`, its exception wrapper, and an
index's private parts, which the engines read to adapt an index (a digest of a text column, a
prefix of one)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import peewee as pw

exception_wrapper: AbstractContextManager[None] = pw.__exception_wrapper__  # type: ignore[attr-defined]
"""Turns a driver's exception into peewee's (`IntegrityError`, `OperationalError`, ...)."""
sort_models: Callable[[Sequence[type[pw.Model]]], list[type[pw.Model]]] = pw.sort_models  # type: ignore[attr-defined]


@dataclass(frozen=True)
class IndexParts:
    """What a model index is made of, which peewee keeps private."""

    model: type[pw.Model]
    expressions: list[Any]
    unique: bool
    name: str

    @classmethod
    def of(cls, index: pw.ModelIndex) -> IndexParts:
        private: Any = index
        return cls(private._model, private._expressions, private._unique, private._name)
