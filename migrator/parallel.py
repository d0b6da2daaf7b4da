"""Both cores: legacy blobs parsed and split in worker processes while the main process writes.

A fresh load spends most of its time in `json.loads`, `json.dumps` and the record splits, which
hold the GIL, so threads would not help. `--jobs N` runs N processes: the main one, which reads
the snapshot a batch at a time and writes every batch, in the order read, and N - 1 workers that
map the batches they are handed. The main process maps a batch itself whenever the workers have
their fill, so neither side idles while the other works, and the work shares out by itself
between a writer and mappers that run at different speeds. Results are written in the order
read, so the target's rows (their order and rowids included) are those of a run in one process.
At most `IN_FLIGHT_PER_WORKER` batches a worker are read ahead, so memory stays flat however
large the snapshot. `--jobs 1` starts no process at all.

A worker computes the rows' digests and maps them (`relational.map_legacy_rows`): a row that
cannot be read is quarantined there exactly as it would be in the main process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

from migrator.errors import WorkerFailed
from migrator.kinds import KINDS
from migrator.legacy import CELLS, LegacyRow, row_digest
from migrator.relational import MappedRows, map_legacy_rows

MAX_DEFAULT_JOBS = 4
"""`--jobs` defaults to the cores this process may use, at most this many: past a few processes the
one writer is the limit, and each worker costs its own interpreter's memory."""
IN_FLIGHT_PER_WORKER = 2
"""Batches handed to a worker at a time: one being mapped, one waiting, so it never idles between two."""


def default_jobs() -> int:
    """The cores this process may run on (its affinity, not the machine's count), capped."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity (macOS)
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_JOBS))


@dataclass(frozen=True)
class MappedBatch:
    """What a worker makes of one batch: each row's digest, in order, and the rows to write."""

    digests: list[str]
    mapped: MappedRows


def map_batch(kind_name: str, batch: list[LegacyRow]) -> MappedBatch:
    """Run in a worker: the digests and relational rows of a batch of legacy rows."""
    rows = [(row, row_digest(row[CELLS])) for row in batch]
    return MappedBatch([digest for _, digest in rows], map_legacy_rows(KINDS[kind_name], rows))


def _mapped_here(kind_name: str, batch: list[LegacyRow]) -> Future[MappedBatch]:
    mapped: Future[MappedBatch] = Future()
    mapped.set_result(map_batch(kind_name, batch))
    return mapped


def _start_worker() -> None:
    """Ctrl-C reaches every process of the terminal's group: the main process alone handles it
    (and stops the workers), so the user sees one message, not one traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(jobs: int) -> Iterator[Executor | None]:
    """`jobs - 1` worker processes beside this one, or None for 1: the run maps here, as before."""
    if jobs <= 1:
        yield None
        return
    # forkserver forks each worker from a clean server process: cheap, and never a fork of this
    # multi-threaded process (its hashing thread, a driver's threads), which may deadlock.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["migrator.kinds"])
    pool = ProcessPoolExecutor(jobs - 1, mp_context=context, initializer=_start_worker)
    try:
        yield pool
    except BaseException:
        # The run is failing (a worker died, Ctrl-C): stop the workers rather than wait for them.
        # A worker killed while it held a queue's lock leaves the others blocked on it for good,
        # and a shutdown that waits for them would wait with them.
        processes = getattr(pool, "_processes", None) or {}  # the executor's own, by pid
        for process in list(processes.values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)


def mapped_batches(
    pool: Executor, kind_name: str, batches: Iterable[list[LegacyRow]], jobs: int
) -> Iterator[tuple[list[LegacyRow], MappedBatch]]:
    """Each batch with what a worker, or this process, made of it, in the order read."""
    room = (jobs - 1) * IN_FLIGHT_PER_WORKER  # batches the workers hold at a time
    pending: deque[tuple[list[LegacyRow], Future[MappedBatch]]] = deque()
    try:
        for batch in batches:
            if sum(1 for _, future in pending if not future.done()) < room:
                pending.append((batch, pool.submit(map_batch, kind_name, batch)))
            else:  # the workers have their fill: map this one here rather than wait
                pending.append((batch, _mapped_here(kind_name, batch)))
            while pending and (pending[0][1].done() or len(pending) > room):
                batch, future = pending.popleft()
                yield batch, future.result()
        while pending:
            batch, future = pending.popleft()
            yield batch, future.result()
    except BrokenProcessPool as exc:
        raise WorkerFailed(
            f"a worker process parsing {kind_name} rows stopped unexpectedly (killed, or out of memory?): {exc} "
            "Every batch written before it is complete: run the same command again to carry on (--jobs 1 uses "
            "no worker process)"
        ) from exc
