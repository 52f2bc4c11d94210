"""
Group commit: the writes of many concurrent requests in one transaction.

A ballot's own work is a handful of small statements; what made one-transaction-per-ballot
slow was everything around them: a thread hop, a connection checkout, BEGIN IMMEDIATE and a
COMMIT per ballot, and on SQLite every other request queueing for the one writer in turn.
Here writer threads take whatever requests are waiting (up to `max_batch`), run each in its
own SAVEPOINT of one transaction and commit once, the way databases group log flushes. Under
no load a batch is one request, so latency is what it was; under load the cost of a commit is
shared by everyone who arrived while the previous batch was being written.

What it must never do, and how it doesn't:
- Answer before the data is durable: futures are resolved only after COMMIT returns.
- Let one request's failure undo another's ballot: each runs in a savepoint; its exception
  goes to its own caller, the others commit.
- Lose a batch when COMMIT itself fails (disk full, a serialisation failure): nothing of it
  was stored, so each request is run again alone, in its own transaction, and gets its own
  answer or error.

`GroupWriter.for_store` picks the shape per database:
- SQLite: one writer thread, batches of up to MAX_BATCH. The file has one writer anyway, so
  batching is pure gain.
- PostgreSQL: PG_WRITERS threads, one request per transaction. PostgreSQL groups concurrent
  commits' log flushes itself, and a batch transaction would hold every slot lock
  (ingest._lock_slot) it took until the batch commits: two batches taking slots in different
  orders deadlock (tests/store/test_group_commit.py found it with four threads). One request
  per transaction takes a voter's slots in one sorted order and holds nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.store.engine import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Store], Any]

MAX_BATCH = 128  # bounds how long one batch holds the write lock (a few tens of ms)
PG_WRITERS = 10  # concurrent writer threads (transactions) per process on PostgreSQL
RACE_ROUNDS = 5
# PostgreSQL's "try again" errors: deadlock_detected, serialization_failure. Its docs advise
# retrying them; a step's savepoint rollback releases the locks it took.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})


@dataclass(frozen=True, slots=True)
class Together:
    """
    A kind of request whose waiting instances can be written set-based, in one go (many API
    ballots through ingest_stream instead of one by one: several times cheaper per ballot).

    `many(store, payloads)` does the work of all of them and returns their results in order,
    or raises; then they are run again one by one through their own `work`, so a batch that
    cannot be written together costs time, never an answer.
    """

    name: str
    many: Callable[[Store, list[Any]], list[Any]]
    # Two requests with the same key must not share a call of `many` (a resent request must
    # find the first one's result): the second starts the next run.
    key: Callable[[Any], Hashable | None] = lambda _payload: None


@dataclass(slots=True)
class _Job:
    work: Work
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    together: Together | None = None
    payload: Any = None
    queued: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class WriterStats:
    """What the writer has done since it started (for /metrics and for tests)."""

    batches: int = 0
    requests: int = 0
    alone: int = 0  # requests written by their own work (no others of their kind waiting)
    together: int = 0  # requests written set-based with others of their kind
    one_by_one: int = 0  # requests of a kind that could not go together, written singly
    failed_commits: int = 0


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class GroupWriter:
    """
    Writer threads that commit waiting requests together.

    `await writer.run(work)` calls `work(store)` on a writer thread, where `store` is the
    store as seen inside the batch's transaction (`Store.in_transaction`), and returns its
    result once the batch has committed.
    """

    def __init__(
        self,
        store: Store,
        *,
        threads: int = 1,
        max_batch: int = MAX_BATCH,
        on_written: Callable[[float], None] | None = None,
    ) -> None:
        """`on_written(seconds)`: each request's time from queued to committed (for /metrics)."""
        self.store = store
        self.on_written = on_written
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"collect-writer-{n}", daemon=True)
            for n in range(threads)
        ]
        self._closed = False
        self.stats = WriterStats()
        self._stats_lock = threading.Lock()
        for thread in self._threads:
            thread.start()

    async def run(
        self, work: Callable[[Store], T], *, together: Together | None = None, payload: Any = None
    ) -> T:
        """
        Args:
            work: the request's writes, alone.
            together: when several requests of this kind wait at once, write them with
                `together.many(store, [payload, ...])` instead (falling back to `work`).
        """
        if self._closed:
            raise RuntimeError("the group writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(work, loop, future, together, payload))
        # Not shielded on purpose: a caller that goes away stops waiting, but its work is
        # already queued and commits all the same (a device retry then gets the replay).
        return await future

    @classmethod
    def for_store(cls, store: Store, *, on_written: Callable[[float], None] | None = None) -> GroupWriter:
        """The writer shaped for the store's database (see the module's docstring)."""
        if store.settings.is_sqlite:
            return cls(store, threads=1, max_batch=MAX_BATCH, on_written=on_written)
        return cls(store, threads=PG_WRITERS, max_batch=1, on_written=on_written)

    @property
    def threads(self) -> int:
        return len(self._threads)

    def waiting(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        for _thread in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._commit(batch)
            if stop:
                return

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for name, n in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    def _commit(self, batch: list[_Job]) -> None:
        try:
            outcomes = self._write(batch)
        except Exception as exc:
            self._count(failed_commits=1)
            if len(batch) == 1:
                _deliver(batch[0], _Outcome(error=exc))
                return
            # COMMIT (or BEGIN) failed: nothing of the batch is stored. Each alone, then.
            log.warning("a batch of %d writes failed to commit (%s); retrying each alone", len(batch), exc)
            for job in batch:
                self._commit([job])
            return
        done = time.perf_counter()
        for job, outcome in zip(batch, outcomes, strict=True):
            if self.on_written is not None:
                self.on_written(done - job.queued)
            _deliver(job, outcome)

    def _write(self, batch: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        with self.store.writing(), self.store.engine.begin() as connection:
            inner = self.store.in_transaction(connection)
            for run in _runs(batch):
                if len(run) > 1 and run[0].together is not None:
                    written, together = _together(connection, inner, run, run[0].together)
                    outcomes.extend(written)
                    self._count(**{"together" if together else "one_by_one": len(run)})
                else:
                    outcomes.extend(_step(connection, inner, job) for job in run)
                    self._count(alone=len(run))
        self._count(batches=1, requests=len(batch))
        return outcomes


def _runs(batch: list[_Job]) -> list[list[_Job]]:
    """
    Consecutive jobs of one kind, in arrival order (order decides ties between ballots), a
    run ending before a job whose key is already in it.
    """
    runs: list[list[_Job]] = []
    keys: set[Hashable] = set()
    for job in batch:
        kind = job.together
        key = kind.key(job.payload) if kind is not None else None
        if runs and kind is not None and runs[-1][-1].together is kind and (key is None or key not in keys):
            runs[-1].append(job)
        else:
            runs.append([job])
            keys = set()
        if key is not None:
            keys.add(key)
    return runs


def _together(
    connection: Connection, store: Store, run: list[_Job], kind: Together
) -> tuple[list[_Outcome], bool]:
    """The run's outcomes, and whether they were written together (else one by one)."""
    savepoint = connection.begin_nested()
    try:
        values = kind.many(store, [job.payload for job in run])
        if len(values) != len(run):
            raise RuntimeError(f"{kind.name}: {len(values)} results for {len(run)} requests")
    except Exception as exc:
        savepoint.rollback()
        # Not an error anyone sees: a race on PostgreSQL, a key twice in one batch, a bad item.
        log.debug("%s: %d requests could not be written together (%r); one by one", kind.name, len(run), exc)
        return [_step(connection, store, job) for job in run], False
    savepoint.commit()
    return [_Outcome(value=value) for value in values], True


def _step(connection: Connection, store: Store, job: _Job) -> _Outcome:
    """
    One request's writes in a savepoint of the batch. An IntegrityError is a race lost to a
    writer outside this batch (another thread or worker on PostgreSQL): roll back to the
    savepoint and run the step again, when it finds what the winner wrote.
    """
    lost: sa.exc.DBAPIError | None = None
    for _round in range(RACE_ROUNDS):
        savepoint = connection.begin_nested()
        try:
            value = job.work(store)
        except sa.exc.DBAPIError as exc:
            savepoint.rollback()
            if not _lost_race(exc):
                return _Outcome(error=exc)
            lost = exc
            continue
        except Exception as exc:
            savepoint.rollback()
            return _Outcome(error=exc)
        savepoint.commit()
        return _Outcome(value=value)
    return _Outcome(error=lost)


def _lost_race(exc: sa.exc.DBAPIError) -> bool:
    """A race lost to another writer, which running the step again resolves."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


def _deliver(job: _Job, outcome: _Outcome) -> None:
    def settle() -> None:
        if job.future.done():  # the caller was cancelled (client went away)
            return
        if outcome.error is not None:
            job.future.set_exception(outcome.error)
        else:
            job.future.set_result(outcome.value)

    with contextlib.suppress(RuntimeError):  # the caller's event loop has closed: nobody waits
        job.loop.call_soon_threadsafe(settle)
