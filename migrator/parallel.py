"""Both cores: legacy blobs parsed and split in worker processes while the main process writes.

A fresh load spends most of its time in `json.loads`, `json.dumps` and the record splits, which
hold the GIL, so threads would not help. `--jobs N` runs N processes: the main one, which reads
the snapshot a batch at a time and writes every batch, in the order read, and N - 1 workers that
map the batches they are handed. The main process maps a batch itself while the workers start
(`WorkerPool`), and later when they have their fill and it has used no more CPU than a worker
so far (`_Balance`), so the work shares out by itself between a writer and mappers that run at
different speeds, and all finish together. Results are written in the order read, so the
target's rows (their order and rowids included) are those of a run in one process. At most
`IN_FLIGHT_PER_WORKER` batches a worker, and `MAPPED_HERE_AHEAD` more, are read ahead, so memory
stays flat however large the snapshot. `--jobs 1` starts no process at all.

For a SQLite target a worker writes its batch's rows into a staging file, which the writer
copies in C (`migrator.staging`): only the digests and the path travel back through the pipe.
For a server, a worker sends each table's rows as the lines of the server's loader.

With `--jobs 1` into a server, one thread of this process reads and maps the batches, lines
included, while the main thread sends them and waits for the server to load each one
(`mapped_on_a_thread`): the server's time, which the GIL does not hold, overlaps the mapping
instead of following it. The main thread then takes the GIL only between packets of a megabyte
(`loading.LOAD_PACKET_BYTES`), so the mapping thread runs nearly unhindered.

A worker computes the rows' digests and maps them (`relational.map_legacy_rows`): a row that
cannot be read is quarantined there exactly as it would be in the main process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

from migrator.errors import WorkerFailed
from migrator.kinds import KINDS
from migrator.legacy import CELLS, LegacyRow, row_digest
from migrator.relational import WritableRows, map_legacy_rows
from migrator.staging import Stager

logger = logging.getLogger(__name__)

MAX_DEFAULT_JOBS = 4
"""`--jobs` defaults to the cores this process may use, at most this many: past a few processes the
one writer is the limit, and each worker costs its own interpreter's memory."""
IN_FLIGHT_PER_WORKER = 2
"""Batches handed to a worker at a time: one being mapped, one waiting, so it never idles between two."""
MAPPED_HERE_AHEAD = 2
"""Batches this process may hold, mapped here, beyond the workers' room before it waits for the
oldest answer: so that it can map while a worker finishes, when it has the time (`_Balance`)."""


def default_jobs() -> int:
    """The cores this process may run on (its affinity, not the machine's count), capped."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity (macOS)
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_JOBS))


@dataclass(frozen=True)
class MappedBatch:
    """What a worker makes of one batch: each row's digest, in order, and the rows to write
    (the relational ones in a staging file when the run stages them); and the CPU seconds that took."""

    digests: list[str]
    mapped: WritableRows
    cpu_seconds: float = 0.0


def map_batch(kind_name: str, batch: list[LegacyRow], staging: Stager | None = None) -> MappedBatch:
    """Run in a worker, or on the mapping thread: the digests and relational rows of a batch of
    legacy rows, the latter staged when the run stages them (`migrator.staging`)."""
    started = time.thread_time()
    kind = KINDS[kind_name]
    rows = [(row, row_digest(row[CELLS])) for row in batch]
    tables, quarantined = map_legacy_rows(kind, rows)
    mapped: WritableRows = (tables if staging is None else staging.stage(kind.tables, tables), quarantined)
    return MappedBatch([digest for _, digest in rows], mapped, time.thread_time() - started)


Task = tuple[str, list[LegacyRow], "Stager | None"]
"""A batch for a worker: its kind's name, its legacy rows and where to stage its rows, if anywhere."""
Outcome = tuple[bool, Any]
"""A worker's answer: (True, the MappedBatch) or (False, (the exception its mapping raised, the
worker's traceback as text))."""
JOIN_SECONDS = 10.0
"""How long a worker that was told to stop may take to exit before it is killed."""


def _work(tasks: Queue[Task | None], results: Connection) -> None:
    """A worker's life: map each batch handed to it, in order, until it is told to stop.

    Ctrl-C reaches every process of the terminal's group: the main process alone handles it (and
    stops the workers), so the user sees one message, not one traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (task := tasks.get()) is not None:
        outcome: Outcome
        try:
            outcome = (True, map_batch(*task))
        except Exception as exc:  # noqa: BLE001 - a bug: raised again in the main process, as a call there would
            outcome = (False, (exc, traceback.format_exc()))
        try:
            results.send(outcome)
        except Exception as exc:  # noqa: BLE001 - the exception could not be pickled: send its text
            results.send((False, (RuntimeError(f"{type(exc).__name__}: {exc}"), traceback.format_exc())))


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker, as text: the cause of the exception
    raised again here, so that a bug in the mapping shows where in the worker it happened."""


@dataclass
class _Worker:
    """One worker process with a task queue and a result pipe of its own.

    Nothing is shared between workers, and only the worker holds its pipe's writing end: when it
    dies, even halfway through sending an answer, reading the pipe here ends instead of waiting
    for bytes that never come. (A `ProcessPoolExecutor` shares one result pipe whose writing end
    the main process holds too, and a worker killed mid-send hangs it for good.) A thread here
    receives each answer as soon as it is sent, so the worker goes on to its next batch while
    this process writes.
    """

    process: BaseProcess
    tasks: Queue[Task | None]
    answers: queue.SimpleQueue[Outcome | None]  # None: the pipe ended, the worker is gone
    receiving: threading.Thread
    handed: int = 0  # batches handed to it
    received: int = 0  # answers received from it (by the thread)

    @classmethod
    def start(cls, context: BaseContext) -> _Worker:
        tasks: Queue[Task | None] = context.Queue()
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_work, args=(tasks, writer), daemon=True)  # type: ignore[attr-defined]
        process.start()
        writer.close()  # the worker's end: once it exits, reading here ends instead of waiting
        worker = cls(process, tasks, queue.SimpleQueue(), threading.Thread())
        worker.receiving = threading.Thread(target=worker._receive, args=(reader,), daemon=True)
        worker.receiving.start()
        return worker

    def _receive(self, results: Connection) -> None:
        with results:
            while True:
                try:
                    outcome: Outcome = results.recv()
                except (EOFError, OSError):
                    self.answers.put(None)
                    return
                self.received += 1
                self.answers.put(outcome)

    @property
    def in_hand(self) -> int:
        """Batches handed to it that it has not answered yet."""
        return self.handed - self.received

    def hand(self, task: Task) -> None:
        self.tasks.put(task)  # a feeder thread sends it: never blocks on a worker busy sending
        self.handed += 1

    def answered(self) -> bool:
        """Whether the oldest batch handed has its answer (or the worker has died) to read."""
        return not self.answers.empty()

    def answer(self, kind_name: str) -> MappedBatch:
        outcome = self.answers.get()
        if outcome is None:
            self.process.join(JOIN_SECONDS)  # reaped, so that its exit code can be named
            raise WorkerFailed(
                f"a worker process parsing {kind_name} rows stopped unexpectedly (killed, or out of memory?), "
                f"exit code {self.process.exitcode}. Every batch written before it is complete: run the same "
                "command again to carry on (--jobs 1 uses no worker process)"
            )
        ok, value = outcome
        if not ok:
            error, worker_traceback = value
            raise error from WorkerTraceback(worker_traceback)
        return value

    def stop(self) -> None:
        self.tasks.put(None)
        self.tasks.close()
        self.process.join(JOIN_SECONDS)
        if self.process.is_alive():  # pragma: no cover - a worker that ignores being told to stop
            self.kill()
        # Once it has exited, what it did not read is moot: a worker that died before reading its
        # last batch would otherwise keep this process at its exit, flushing to a pipe nobody reads.
        self.tasks.cancel_join_thread()
        self.receiving.join(JOIN_SECONDS)

    def kill(self) -> None:
        self.tasks.cancel_join_thread()  # a dead worker reads nothing: do not wait to flush its queue
        self.process.kill()
        self.process.join()
        self.receiving.join(JOIN_SECONDS)  # the pipe ends with the process


@dataclass
class WorkerPool:
    """The `jobs - 1` worker processes of a run, started on a thread of their own.

    Starting them takes a third of a second or more (the forkserver imports the mapping before
    it forks the first), which the run spends mapping batches here instead of waiting: each
    worker takes batches once it is up. A worker that cannot be started (a process limit, no
    memory) leaves its share to the others, or to this process, with a warning."""

    workers: list[_Worker] = field(default_factory=list)  # those started so far; only ever appended to
    _starting: threading.Thread | None = None

    def start(self, context: BaseContext, count: int) -> None:
        self._starting = threading.Thread(target=self._start, args=(context, count), name="ksi-workers", daemon=True)
        self._starting.start()

    def _start(self, context: BaseContext, count: int) -> None:
        for _ in range(count):
            try:
                self.workers.append(_Worker.start(context))
            except Exception as exc:  # noqa: BLE001 - any failure to start one: the run maps without it
                logger.warning("cannot start a worker process (%s): its share is mapped by the others or here", exc)
                return

    def wait_started(self) -> None:
        """Return once every worker is started, or has failed to start."""
        if self._starting is not None:
            self._starting.join()

    @property
    def room(self) -> int:
        """Batches the workers started so far hold at a time."""
        return len(self.workers) * IN_FLIGHT_PER_WORKER

    def with_room(self) -> _Worker | None:
        """The started worker with the fewest batches in hand, if it can take one more."""
        if not self.workers:
            return None
        worker = min(self.workers, key=lambda worker: worker.in_hand)
        return worker if worker.in_hand < IN_FLIGHT_PER_WORKER else None


def worker_context() -> BaseContext:
    """How worker processes are started (`--jobs` of `migrate` and of `verify`)."""
    # forkserver forks each worker from a clean server process: cheap, and never a fork of this
    # multi-threaded process (its hashing thread, a driver's threads), which may deadlock.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["migrator.kinds"])
    return context


@contextmanager
def worker_pool(jobs: int) -> Iterator[WorkerPool | None]:
    """`jobs - 1` worker processes beside this one, or None for 1: the run maps here, as before."""
    if jobs <= 1:
        yield None
        return
    pool = WorkerPool()
    pool.start(worker_context(), jobs - 1)
    try:
        yield pool
    except BaseException:
        # The run is failing (a worker died, Ctrl-C): stop the workers rather than wait for them.
        pool.wait_started()
        for worker in pool.workers:
            worker.kill()
        raise
    pool.wait_started()
    for worker in pool.workers:
        worker.stop()


def mapped_batches(
    pool: WorkerPool, kind_name: str, batches: Iterable[list[LegacyRow]], staging: Stager | None = None
) -> Generator[tuple[list[LegacyRow], MappedBatch], None, None]:
    """Each batch with what a worker, or this process, made of it, in the order read. Workers
    stage their rows when `staging` says where; a batch mapped here is written as it is.

    Each pending batch holds its mapping, or the worker it was handed to: a worker answers in
    the order it was handed its batches, so the oldest pending batch's answer is the next one
    its worker sends."""
    pending: deque[tuple[list[LegacyRow], MappedBatch | _Worker]] = deque()
    balance = _Balance()
    for batch in batches:
        while not _placed(pool, balance, pending, kind_name, batch, staging):
            yield _next(pending, kind_name, balance)  # the oldest, once its worker answers
        # The oldest is written once it is mapped, or when the run has read as far ahead as it may.
        while pending and (_mapped(pending[0][1]) or len(pending) > pool.room + MAPPED_HERE_AHEAD):
            yield _next(pending, kind_name, balance)
    while pending:
        yield _next(pending, kind_name, balance)


def _placed(
    pool: WorkerPool,
    balance: _Balance,
    pending: deque[tuple[list[LegacyRow], MappedBatch | _Worker]],
    kind_name: str,
    batch: list[LegacyRow],
    staging: Stager | None,
) -> bool:
    """Hand a batch to a worker with room, or map it here while no worker is started yet or when
    this process has worked less than a worker so far; False when it must wait for the oldest
    answer first (there is one: a started worker without room holds batches that are pending)."""
    worker = pool.with_room()
    if worker is not None:
        worker.hand((kind_name, batch, staging))
        pending.append((batch, worker))
        return True
    if not pool.workers or balance.here_has_time(len(pool.workers)):
        pending.append((batch, map_batch(kind_name, batch)))
        return True
    return False


@dataclass
class _Balance:
    """CPU seconds this process has spent since the load began, against a worker's mean.

    The writer reads, hands out and writes every batch besides the ones it maps itself, so
    mapping whenever the workers had their fill left it the busier, and the run waited on it: at
    1M sessions it used 141 to 156 s of CPU against its worker's 96 to 112 s. Mapping only while
    it has worked no more than a worker evened that out (126 to 128 s against 108 to 109 s) and
    took the load from 154 and 170 s to 150 and 151 s (`benchmarks/results/issue18-staging.md`)."""

    started: float = field(default_factory=time.process_time)
    workers_seconds: float = 0.0  # what the workers reported for the batches they mapped, all together

    def here_has_time(self, workers: int) -> bool:
        """Whether this process has used no more CPU than the mean of `workers` (those started)."""
        return time.process_time() - self.started <= self.workers_seconds / workers


def _mapped(mapping: MappedBatch | _Worker) -> bool:
    return isinstance(mapping, MappedBatch) or mapping.answered()


def _next(
    pending: deque[tuple[list[LegacyRow], MappedBatch | _Worker]], kind_name: str, balance: _Balance
) -> tuple[list[LegacyRow], MappedBatch]:
    batch, mapping = pending.popleft()
    if isinstance(mapping, MappedBatch):
        return batch, mapping
    answer = mapping.answer(kind_name)
    balance.workers_seconds += answer.cpu_seconds
    return batch, answer


MAPPED_AHEAD_ON_A_THREAD = 2
"""Batches the mapping thread of a `--jobs 1` server load may hold mapped beyond the one the
writer is sending: enough that the writer finds the next one ready, few enough that memory stays
flat (15 to 17 MB more than one thread held at 1M sessions)."""
THREAD_DONE = object()


def mapped_on_a_thread(
    kind_name: str, batches: Iterable[list[LegacyRow]], staging: Stager
) -> Generator[tuple[list[LegacyRow], MappedBatch], None, None]:
    """Each batch with its mapping (staged as `staging` says), in the order read; reading and
    mapping both run on a thread of their own, ahead of the caller by `MAPPED_AHEAD_ON_A_THREAD`
    batches at most. An error there is raised here, at the batch it stopped at; a caller that
    stops early stops the thread, which ends after the batch in hand."""
    handed: queue.Queue[Any] = queue.Queue(MAPPED_AHEAD_ON_A_THREAD)
    stopping = threading.Event()

    def hand(item: Any) -> bool:
        while not stopping.is_set():
            with suppress(queue.Full):
                handed.put(item, timeout=0.1)
                return True
        return False

    def read_and_map() -> None:
        try:
            for batch in batches:
                if not hand((batch, map_batch(kind_name, batch, staging))):
                    return
            hand(THREAD_DONE)
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
            hand(exc)

    thread = threading.Thread(target=read_and_map, name="ksi-map", daemon=True)
    thread.start()
    try:
        while (item := handed.get()) is not THREAD_DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
        thread.join()
