"""Shadow reads: the JSON is served, and the relational rebuild compared with it off the read path."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from migrator.equivalence import json_differences
from migrator.errors import RebuildError
from migrator.relational import BlobKind
from migrator.store.common import (
    maybe_blob,
)
from migrator.store.report import Ledger, ShadowMismatch

logger = logging.getLogger(__name__)

SHADOW_BACKLOG = 1000  # comparisons waiting beyond this are skipped (and counted), never queued unbounded


# --- shadow reads -----------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through object.__setattr__
class Read:
    """One read as each side would serve it. Both callables return what their side read (a legacy
    row or None, by default); `present` turns that into what the caller is handed (by default
    the row's blob, `json.loads` of it). A `listing` is complete as the relational side gives it:
    an empty answer is an answer, not a key the relational rows lack."""

    kind: BlobKind
    key: str
    legacy: Callable[[], Any]
    relational: Callable[[], Any]
    present: Callable[[Any], Any] | None = None
    listing: bool = False

    def view(self, raw: Any) -> Any:
        return self.present(raw) if self.present is not None else maybe_blob(self.kind, raw)


@dataclass(frozen=True)
class Observation:
    value: Any = None
    error: Exception | None = None


def observe(read: Read, fetch: Callable[[], Any]) -> Observation:
    try:
        return Observation(value=read.view(fetch()))
    except Exception as exc:  # noqa: BLE001 - in an experiment, an exception is a result to compare
        return Observation(error=exc)


def comparable(value: Any) -> Any:
    """A presented value as JSON-like lists and objects, so `json_differences` compares it exactly."""
    if is_dataclass(value) and not isinstance(value, type):
        return [comparable(getattr(value, f.name)) for f in fields(value)]
    if isinstance(value, list | tuple):
        return [comparable(item) for item in value]
    return value


def observation_differences(control: Observation, candidate: Observation) -> list[str]:
    if control.error is None and candidate.error is None:
        found = json_differences(comparable(control.value), comparable(candidate.value))
        return [str(difference) for difference in found]
    if type(control.error) is type(candidate.error) and str(control.error) == str(candidate.error):
        return []
    return [f"legacy {_outcome(control)} != relational {_outcome(candidate)}"]


def _outcome(observation: Observation) -> str:
    if observation.error is not None:
        return f"raised {observation.error!r}"
    return "found nothing" if observation.value is None else "returned a blob"


def _failed_alone(control: Observation, candidate: Observation) -> bool:
    """The relational path raised where the legacy read did not."""
    return candidate.error is not None and control.error is None


class ShadowReads:
    """GitHub Scientist's experiment for reads: the JSON (control) is served, and the relational
    rebuild (candidate) is compared with it on a background thread, off the caller's path."""

    def __init__(self, ledger: Ledger, write_lock: threading.Lock) -> None:
        self._ledger = ledger
        self._write_lock = write_lock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ksi-shadow")  # threads start on first use
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._skipping = 0  # reads skipped since the backlog was last below its limit

    def run(self, read: Read) -> Any:
        row = read.legacy()
        self._submit(read, row)
        return read.view(row)

    def _submit(self, read: Read, legacy_row: Any) -> None:
        self._ledger.tally(shadow_reads=1)
        with self._lock:
            if len(self._in_flight) >= SHADOW_BACKLOG:
                self._ledger.tally(shadow_skipped=1)
                if not self._skipping:  # once a burst, not once a read
                    logger.warning("shadow comparisons fall behind (%d waiting): reads go uncompared", SHADOW_BACKLOG)
                self._skipping += 1
                return
            if self._skipping:
                logger.warning(
                    "shadow comparisons resumed; %d reads went uncompared (report().shadow_skipped)", self._skipping
                )
                self._skipping = 0
            # In the caller's context, so the comparison reads the same store's target (models.bound_to).
            future = self._pool.submit(contextvars.copy_context().run, self._compare, read, legacy_row)
            self._in_flight.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def _compare(self, read: Read, legacy_row: Any) -> None:
        # The control is parsed again from the row, so a caller changing the dict it was handed
        # cannot make a difference appear.
        control = observe(read, lambda: legacy_row)
        candidate = observe(read, read.relational)
        if not observation_differences(control, candidate):
            self._ledger.tally(shadow_matches=1)
        elif _failed_alone(control, candidate) and not isinstance(candidate.error, RebuildError):
            # A failure of the relational path's own (a server down, a bug), not a race with a
            # write: reading again under the write lock would hold the daemon's writes up for as
            # long as it takes to fail again.
            self._count_error(read, candidate)
        else:
            self._confirm(read)

    def _confirm(self, read: Read) -> None:
        # A write may have changed the row between the two reads, or while the relational side
        # read its rows one query after another (a row gone half way: RebuildError). Reading both
        # sides again while no write of this store can run tells such a race from a real divergence.
        with self._write_lock:
            control = observe(read, read.legacy)
            candidate = observe(read, read.relational)
        if _failed_alone(control, candidate):
            self._count_error(read, candidate)
        elif differences := observation_differences(control, candidate):
            self._ledger.record_mismatch(ShadowMismatch(read.kind.legacy.name, read.key, differences))
        else:
            self._ledger.tally(shadow_stale=1)

    def _count_error(self, read: Read, candidate: Observation) -> None:
        self._ledger.tally(shadow_errors=1)
        table = read.kind.legacy.name
        logger.warning("shadow read of %s %s: the relational path raised %r", table, read.key, candidate.error)

    def wait(self, timeout: float | None = None) -> None:
        with self._lock:
            in_flight = set(self._in_flight)
        wait(in_flight, timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
