"""
The group writer (collect.store.group_commit): many requests' writes in one transaction, on a
real SQLite file and PostgreSQL. What must hold: an answer only after COMMIT; one request's
failure undoes only its own writes; a failed COMMIT loses nobody's request; work that can go
together goes together, and falls back to one by one when it cannot.

Batches are made deterministic by parking the writer thread on a first job until the others
have queued behind it.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from collect.ballot import BallotSubmission, Identity, Receipt
from collect.campaign import CampaignSpec
from collect.ingest import ingest_in, ingest_stream
from collect.store import Store
from collect.store.group_commit import GroupWriter, Together
from collect.store.tables import AUDIT, utcnow
from tests.conftest import count
from tests.store.factories import add_respondent, at, ballot, campaign_spec, save


def _note(store: Store, target: str) -> str:
    """A job's writes: one audit row, through the store it is given (the batch's)."""
    with store.engine.connect() as connection:
        connection.execute(
            sa.insert(AUDIT).values(at=utcnow(), actor="test", action="gc.note", target=target)
        )
    return target


def _notes(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(AUDIT.c.target).where(AUDIT.c.action == "gc.note")).scalars()
        return sorted(str(r) for r in rows)


class Gate:
    """A first job that holds the writer until the test has queued the rest behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, store: Store) -> str:
        self.entered.set()
        assert self.release.wait(30), "the test never opened the gate"
        return _note(store, "gate")


@pytest.fixture
async def writer(store: Store) -> AsyncIterator[GroupWriter]:
    group = GroupWriter(store)
    try:
        yield group
    finally:
        group.close()


Job = Callable[[], Awaitable[Any]]


def note_job(writer: GroupWriter, target: str, **options: Any) -> Job:
    """A request that writes one audit row, not yet started."""
    return functools.partial(writer.run, functools.partial(_note, target=target), **options)


async def _queued_behind_gate(writer: GroupWriter, jobs: list[Job]) -> list[Any]:
    """Run `jobs` (coroutines' factories) so that they all land in one batch after the gate."""
    gate = Gate()
    first = asyncio.ensure_future(writer.run(gate))
    assert await asyncio.to_thread(gate.entered.wait, 30)
    rest = [asyncio.ensure_future(job()) for job in jobs]
    await asyncio.sleep(0.05)  # every job is on the queue before the gate opens
    gate.release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[0] == "gate"
    return list(results[1:])


async def test_an_answer_comes_only_after_commit(writer: GroupWriter, store: Store) -> None:
    assert await writer.run(lambda s: _note(s, "one")) == "one"
    # Another connection sees it at once: the future was resolved after COMMIT, not before.
    assert _notes(store) == ["one"]


async def test_one_failure_undoes_only_its_own_writes(writer: GroupWriter, store: Store) -> None:
    def failing(s: Store) -> str:
        _note(s, "doomed")
        raise ValueError("this request is bad")

    jobs = [note_job(writer, f"ok-{n}") for n in range(20)]
    jobs.insert(7, functools.partial(writer.run, failing))
    results = await _queued_behind_gate(writer, jobs)
    assert isinstance(results[7], ValueError)
    assert [r for i, r in enumerate(results) if i != 7] == [f"ok-{n}" for n in range(20)]
    assert _notes(store) == sorted(["gate", *(f"ok-{n}" for n in range(20))])


async def test_a_failed_commit_runs_each_request_again_alone(writer: GroupWriter, store: Store) -> None:
    # Fault injection on the real engine: the batch's COMMIT fails, as a full disk would make it
    # (the gate commits first, in a batch of its own).
    failures = {"skip": 1, "left": 1}

    def fail_once(connection: Any) -> None:
        if failures["skip"]:
            failures["skip"] -= 1
        elif failures["left"]:
            failures["left"] -= 1
            raise OSError("no space left on device")

    sa.event.listen(store.engine, "commit", fail_once)
    try:
        jobs = [note_job(writer, f"r-{n}") for n in range(10)]
        results = await _queued_behind_gate(writer, jobs)
    finally:
        sa.event.remove(store.engine, "commit", fail_once)
    assert failures["left"] == 0
    assert writer.stats.failed_commits == 1
    assert results == [f"r-{n}" for n in range(10)]
    # Nothing twice, nothing lost: the failed batch left nothing, each ran again alone.
    assert _notes(store) == sorted(["gate", *(f"r-{n}" for n in range(10))])


async def test_work_of_one_kind_goes_together(writer: GroupWriter, store: Store) -> None:
    calls: list[list[Any]] = []

    def many(s: Store, payloads: list[Any]) -> list[Any]:
        calls.append(payloads)
        return [_note(s, f"many-{p}") for p in payloads]

    kind = Together("notes", many)
    jobs = [note_job(writer, f"alone-{n}", together=kind, payload=n) for n in range(12)]
    results = await _queued_behind_gate(writer, jobs)
    assert calls == [list(range(12))]  # one call for the twelve, in arrival order
    assert (writer.stats.together, writer.stats.one_by_one) == (12, 0)
    assert results == [f"many-{n}" for n in range(12)]
    assert count(store, "SELECT count(*) FROM audit_log WHERE target LIKE 'alone-%'") == 0


async def test_work_that_cannot_go_together_goes_one_by_one(writer: GroupWriter, store: Store) -> None:
    def many(s: Store, payloads: list[Any]) -> list[Any]:
        for p in payloads:
            _note(s, f"many-{p}")
        raise RuntimeError("these cannot be written together")

    kind = Together("notes", many)
    jobs = [note_job(writer, f"alone-{n}", together=kind, payload=n) for n in range(6)]
    results = await _queued_behind_gate(writer, jobs)
    assert results == [f"alone-{n}" for n in range(6)]
    assert (writer.stats.together, writer.stats.one_by_one) == (0, 6)
    # The failed attempt's writes were rolled back with its savepoint.
    assert count(store, "SELECT count(*) FROM audit_log WHERE target LIKE 'many-%'") == 0
    assert count(store, "SELECT count(*) FROM audit_log WHERE target LIKE 'alone-%'") == 6


async def test_close_finishes_what_is_queued(store: Store) -> None:
    group = GroupWriter(store)
    pending = [asyncio.ensure_future(note_job(group, f"late-{n}")()) for n in range(5)]
    await asyncio.sleep(0)  # queued
    await asyncio.to_thread(group.close)
    assert await asyncio.gather(*pending) == [f"late-{n}" for n in range(5)]
    with pytest.raises(RuntimeError, match="closed"):
        await group.run(lambda s: _note(s, "after"))


def _ingest_alone(store: Store, item: BallotSubmission) -> Receipt:
    with store.engine.connect() as connection:
        return ingest_in(connection, store, item)


def _ingest_together(store: Store, items: list[BallotSubmission]) -> list[Receipt]:
    receipts: list[Receipt] = []
    with store.engine.connect() as connection:
        ingest_stream(store, items, lambda _item, receipt: receipts.append(receipt), connection=connection)
    return receipts


@pytest.mark.slow
async def test_the_writer_keeps_one_vote(branch_store: Store, branch_spec: CampaignSpec) -> None:
    """
    The writer as the app shapes it, requests written together or alone: one person's ballots
    for one unit still leave exactly one counted, the earliest, every round. On PostgreSQL ten
    threads race each other (one request per transaction: batches of several deadlocked here
    on slot locks); on SQLite one thread writes batches.
    """
    spec = campaign_spec(branch_spec, policy="first_counts")
    campaign_id = save(branch_store, spec)
    kind = Together("ballots", _ingest_together)
    group = GroupWriter.for_store(branch_store)
    rng = random.Random(20261124)
    try:
        for round_no in range(8):
            add_respondent(branch_store, spec, f"R{round_no}", "leaders")
            minutes = rng.sample(range(500), 40)
            items = [
                ballot(spec, f"g{round_no}-{n}", Identity("roster_id", f"R{round_no}"), answered_at=at(m))
                for n, m in enumerate(minutes)
            ]
            receipts = await asyncio.gather(
                *(
                    group.run(functools.partial(_ingest_alone, item=item), together=kind, payload=item)
                    if n % 3
                    else group.run(functools.partial(_ingest_alone, item=item))
                    for n, item in enumerate(items)
                )
            )
            assert len({r.submission_id for r in receipts}) == len(items)  # none lost, none merged
            earliest = min(range(len(items)), key=lambda n: minutes[n])
            counted = count(
                branch_store,
                "SELECT count(*) FROM ballot b JOIN submission s ON s.id = b.submission_id "
                "WHERE b.campaign_id = :c AND s.external_id LIKE :round AND b.status = 'counted'",
                c=campaign_id,
                round=f"g{round_no}-%",
            )
            assert counted == 1, round_no
            winner = count(
                branch_store,
                "SELECT count(*) FROM ballot b JOIN submission s ON s.id = b.submission_id "
                "WHERE s.external_id = :ref AND b.status = 'counted'",
                ref=f"g{round_no}-{earliest}",
            )
            assert winner == 1, round_no
    finally:
        group.close()
    assert group.stats.requests == 8 * 40
