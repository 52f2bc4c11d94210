"""
The one-vote rule under real concurrency: many ingest() calls for one respondent and unit at
the same moment, on SQLite and PostgreSQL. The UNIQUE index must let exactly one count, and
the right one (by answered_at), every round; nothing may be lost.

Threads meet at a barrier before calling ingest(), so the calls really overlap.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from collect.ballot import BallotSubmission, Identity, Receipt
from collect.campaign import CampaignSpec
from collect.ingest import ingest
from collect.store import Store
from tests.store.factories import BALLOT, SUBMISSION, add_respondent, at, ballot, campaign_spec, save

WRITERS = 50
ROUNDS = 100
BARRIER_TIMEOUT = 60.0  # a broken barrier fails the test instead of hanging it


@dataclass
class Arena:
    store: Store
    specs: dict[str, CampaignSpec]
    ids: dict[str, int]


@pytest.fixture
def arena(branch_store: Store, branch_spec: CampaignSpec) -> Arena:
    specs = {p: campaign_spec(branch_spec, policy=p) for p in ("first_counts", "last_counts")}
    ids = {p: save(branch_store, s) for p, s in specs.items()}
    return Arena(branch_store, specs, ids)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=WRITERS) as executor:
        yield executor


def _contenders(spec: CampaignSpec, round_no: int, rng: random.Random) -> list[BallotSubmission]:
    """WRITERS ballots of one respondent for one unit, answered at distinct, shuffled times."""
    minutes = rng.sample(range(WRITERS * 10), WRITERS)
    return [
        ballot(spec, f"round-{round_no}-{i}", Identity("roster_id", f"R{round_no}"), answered_at=at(m))
        for i, m in enumerate(minutes)
    ]


def _all_at_once(pool: ThreadPoolExecutor, store: Store, items: list[BallotSubmission]) -> list[Receipt]:
    barrier = threading.Barrier(len(items), timeout=BARRIER_TIMEOUT)

    def one(item: BallotSubmission) -> Receipt:
        barrier.wait()
        return ingest(store, item)

    return list(pool.map(one, items))


def _round_state(store: Store, campaign_id: int, round_no: int) -> list[tuple[str, str]]:
    """(status, source_ref) of this round's ballots."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(BALLOT.c.status, SUBMISSION.c.external_id)
            .join(SUBMISSION, SUBMISSION.c.id == BALLOT.c.submission_id)
            .where(
                BALLOT.c.campaign_id == campaign_id,
                SUBMISSION.c.external_id.like(f"round-{round_no}-%"),
            )
        ).all()
    return [(r[0], r[1]) for r in rows]


def _check_round(arena: Arena, policy: str, round_no: int, items: list[BallotSubmission]) -> None:
    rows = _round_state(arena.store, arena.ids[policy], round_no)
    statuses = Counter(status for status, _ref in rows)
    assert statuses == {"counted": 1, "superseded": WRITERS - 1}, (round_no, statuses)
    pick = min if policy == "first_counts" else max
    winner = pick(items, key=lambda item: item.answered_at)
    counted = next(ref for status, ref in rows if status == "counted")
    assert counted == winner.source_ref, (round_no, policy)


@pytest.mark.slow
def test_concurrent_ballots_one_counts(arena: Arena, pool: ThreadPoolExecutor) -> None:
    rng = random.Random(20260901)
    for round_no in range(ROUNDS):
        policy = ("first_counts", "last_counts")[round_no % 2]
        spec = arena.specs[policy]
        add_respondent(arena.store, spec, f"R{round_no}", "leaders")
        items = _contenders(spec, round_no, rng)
        receipts = _all_at_once(pool, arena.store, items)
        assert all(r.outcome in {"counted", "not_counted"} for r in receipts)
        assert len({r.submission_id for r in receipts}) == WRITERS  # none lost, none merged
        _check_round(arena, policy, round_no, items)
    with arena.store.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(SUBMISSION)).scalar_one()
    assert total == WRITERS * ROUNDS


@pytest.mark.slow
async def test_concurrent_ballots_under_asyncio_gather(arena: Arena) -> None:
    # As a web handler would: ingest() is synchronous, run off the event loop in threads.
    rng = random.Random(7)
    for round_no in range(20):
        policy = ("first_counts", "last_counts")[round_no % 2]
        spec = arena.specs[policy]
        add_respondent(arena.store, spec, f"R{round_no}", "leaders")
        items = _contenders(spec, round_no, rng)
        receipts = await asyncio.gather(*(asyncio.to_thread(ingest, arena.store, item) for item in items))
        assert len({r.submission_id for r in receipts}) == WRITERS
        _check_round(arena, policy, round_no, items)


@pytest.mark.slow
def test_concurrent_identical_redeliveries_make_one_submission(
    arena: Arena, pool: ThreadPoolExecutor
) -> None:
    # Twilio retrying one MessageSid 20 times at once: one submission, 20 deliveries, one receipt.
    spec = arena.specs["first_counts"]
    for round_no in range(10):
        add_respondent(arena.store, spec, f"R{round_no}", "leaders")
        item = ballot(spec, f"SM{round_no:032x}", Identity("roster_id", f"R{round_no}"), channel="sms")
        receipts = _all_at_once(pool, arena.store, [item] * 20)
        assert Counter(r.outcome for r in receipts) == {"counted": 1, "already_received": 19}
        assert len({r.code for r in receipts}) == 1
        assert len({r.submission_id for r in receipts}) == 1
        with arena.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(SUBMISSION.c.deliveries).where(SUBMISSION.c.external_id == item.source_ref)
            ).all()
            ballots = connection.execute(
                sa.select(sa.func.count())
                .select_from(BALLOT)
                .where(BALLOT.c.submission_id == receipts[0].submission_id)
            ).scalar_one()
        assert [r[0] for r in rows] == [20]
        assert ballots == 1
