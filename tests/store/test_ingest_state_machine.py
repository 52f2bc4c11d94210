"""
ingest() as a state machine: whatever order of valid ballots, redeliveries, conflicting
redeliveries, invalid ballots and adapter rejections arrives, the store matches a plain model.

The model decides who counts as domain.md says (by answered_at, not arrival), and after every
step the whole store of the example's campaigns must equal what the model predicts: every
submission with its status and delivery count, every ballot with its status and reason.
Each example gets campaigns of its own (fresh codes), so one migrated database serves them all.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Receipt, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.ingest import ingest
from collect.store import Store
from collect.store.migrate import upgrade
from tests.conftest import make_settings
from tests.store.factories import (
    AFTER_CLOSE,
    BALLOT,
    BEFORE_OPEN,
    RECEIVED,
    SUBMISSION,
    add_respondent,
    at,
    campaign_spec,
    save,
)

Policy = Literal["first_counts", "last_counts"]
POLICIES: tuple[Policy, Policy] = ("first_counts", "last_counts")
UNITS = ("S01", "S02")
CHANNELS: tuple[Channel, ...] = ("web", "sms", "phone", "paper")
PHONE_R1 = "+8613975318642"
PHONE_OFF_ROSTER = "+8615866429371"


@dataclass(frozen=True)
class Voter:
    """Someone who votes in the examples, and how ingest() must treat them."""

    name: str
    identities: tuple[Identity | None, ...]
    kind: Literal["respondent", "transaction"] = "respondent"
    not_sampled: bool = False
    own_unit: str | None = None


VOTERS = (
    # R1 answers by roster id on paper and by phone number in a call export: one person.
    Voter("R1", (Identity("roster_id", "R1"), Identity("phone", PHONE_R1))),
    Voter("R2", (Identity("roster_id", "R2"),)),
    Voter("R3", (Identity("roster_id", "R3"),), not_sampled=True),
    Voter("R4", (Identity("roster_id", "R4"),), own_unit="S01"),
    Voter("P9", (Identity("phone", PHONE_OFF_ROSTER),)),  # off the roster: the open tier
    Voter("T1", (Identity("transaction", "ticket-0001"),), kind="transaction"),
    Voter("anon", (None,), kind="transaction"),  # each anonymous rating is its own transaction
)


@dataclass
class Sent:
    """One distinct input (campaign, channel, source_ref, content) and what became of it."""

    item: BallotSubmission | Rejection
    status: str  # accepted | rejected | conflict
    receipt: str
    deliveries: int = 1
    problems: tuple[str, ...] = ()


@dataclass
class Competitor:
    ref: str
    channel: str
    unit: str
    answered_at: datetime
    seq: int


@dataclass
class Model:
    """What the store must hold for one campaign."""

    spec: CampaignSpec
    campaign_id: int
    sent: dict[tuple[str, str, str], Sent] = field(default_factory=dict)  # (channel, ref, content)
    # (channel, ref, unit) -> (status, reason) for ballots that never compete for the slot.
    fixed: dict[tuple[str, str, str], tuple[str, str | None]] = field(default_factory=dict)
    # (voter, unit) -> ballots competing for the one counted slot
    groups: dict[tuple[str, str], list[Competitor]] = field(default_factory=dict)
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)

    def winner(self, group: tuple[str, str]) -> Competitor:
        ballots = self.groups[group]
        if self.kinds[group] == "transaction" or self.spec.policy == "first_counts":
            # The earliest answer; between equal times the first to arrive (it was there first).
            return min(ballots, key=lambda b: (b.answered_at, b.seq))
        # The latest answer; between equal times the last to arrive replaces the one before.
        return max(ballots, key=lambda b: (b.answered_at, b.seq))

    def loser(self, group: tuple[str, str]) -> tuple[str, str]:
        if self.kinds[group] == "transaction":
            return "duplicate", "transaction_already_rated"
        if self.spec.policy == "first_counts":
            return "superseded", "earlier_answer_counts"
        return "superseded", "later_answer_counts"

    def expected_ballots(self) -> dict[tuple[str, str, str], tuple[str, str | None]]:
        expected = dict(self.fixed)
        for group, ballots in self.groups.items():
            win = self.winner(group)
            for b in ballots:
                key = (b.channel, b.ref, b.unit)
                expected[key] = ("counted", None) if b is win else self.loser(group)
        return expected


def content_of(item: BallotSubmission | Rejection) -> str:
    """The part of an input that makes two deliveries "the same" (received_at is not in it)."""
    if isinstance(item, Rejection):
        return repr((item.problems, sorted(item.raw.items())))
    return repr((item.identity, item.identity and item.identity.value, item.answers, item.answered_at))


def machine_for(store: Store, base: CampaignSpec) -> type[RuleBasedStateMachine]:
    class IngestMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.models: dict[str, Model] = {}
            for policy in POLICIES:
                spec = campaign_spec(base, policy=policy, open_tier=True)
                model = Model(spec, save(store, spec))
                add_respondent(store, spec, "R1", "leaders", phone=PHONE_R1)
                add_respondent(store, spec, "R2", "supervisors")
                add_respondent(store, spec, "R3", "recipients", in_sample=False)
                add_respondent(store, spec, "R4", "peers", own_unit="S01")
                self.models[policy] = model
            self.seq = 0

        # -- helpers -------------------------------------------------------------------------

        def _ref(self, channel: str) -> str:
            self.seq += 1
            return f"{channel}-{self.seq:04d}-{secrets.token_hex(2)}"

        def _take(self, model: Model, item: BallotSubmission | Rejection) -> Receipt:
            """Ingest one item and check the receipt against the model, then record it."""
            self.seq += 1
            receipt = ingest(store, item)
            key = (item.channel, item.source_ref, content_of(item))
            before = model.sent.get(key)
            if before is not None:
                # A redelivery: the first answer again, and nothing added.
                assert receipt.outcome == "already_received"
                assert receipt.code == before.receipt
                assert tuple(p.code for p in receipt.problems) == before.problems
                before.deliveries += 1
                return receipt
            seen_ref = any(k[0] == item.channel and k[1] == item.source_ref for k in model.sent)
            if seen_ref:
                assert receipt.outcome == "conflict"
                assert [p.code for p in receipt.problems] == ["conflict"]
                model.sent[key] = Sent(item, "conflict", receipt.code, problems=("conflict",))
                return receipt
            if isinstance(item, Rejection):
                assert receipt.outcome == "rejected"
                assert receipt.problems == item.problems
                codes = tuple(p.code for p in item.problems)
                model.sent[key] = Sent(item, "rejected", receipt.code, problems=codes)
                return receipt
            expected = self._expected_problems(item)
            if expected:
                assert receipt.outcome == "rejected"
                assert Counter(p.code for p in receipt.problems) == Counter(expected)
                model.sent[key] = Sent(item, "rejected", receipt.code, problems=tuple(expected))
                return receipt
            model.sent[key] = Sent(item, "accepted", receipt.code)
            self._record_ballots(model, item, receipt)
            return receipt

        def _voter(self, item: BallotSubmission) -> Voter:
            return next(v for v in VOTERS if item.identity in v.identities)

        def _expected_problems(self, item: BallotSubmission) -> list[str]:
            problems: list[str] = []
            if item.answered_at < BEFORE_OPEN + timedelta(days=1):
                problems.append("campaign_not_open")
            if item.answered_at > AFTER_CLOSE - timedelta(days=1):
                problems.append("campaign_closed")
            for answer in item.answers:
                if answer.unit not in UNITS:
                    problems.append("unknown_unit")
                if answer.level not in {"satisfied", "dissatisfied"}:
                    problems.append("unknown_level")
            # Eligibility is judged only once the ballot itself is valid.
            voter = self._voter(item)
            if not problems and voter.own_unit in {a.unit for a in item.answers}:
                problems.append("own_unit")
            return problems

        def _record_ballots(self, model: Model, item: BallotSubmission, receipt: Receipt) -> None:
            voter = self._voter(item)
            units = sorted({a.unit for a in item.answers})
            assert [u.unit for u in receipt.units] == units
            name = f"anon:{item.source_ref}" if voter.name == "anon" else voter.name
            for result in receipt.units:
                key = (item.channel, item.source_ref, result.unit)
                if voter.not_sampled:  # judged before any review flag: it could never count
                    model.fixed[key] = ("invalid", "not_sampled")
                elif item.review is not None:
                    model.fixed[key] = ("pending_review", item.review)
                else:
                    group = (name, result.unit)
                    model.kinds[group] = voter.kind
                    model.groups.setdefault(group, []).append(
                        Competitor(item.source_ref, item.channel, result.unit, item.answered_at, self.seq)
                    )
                    won = model.winner(group).ref == item.source_ref
                    assert result.status == ("counted" if won else model.loser(group)[0]), (result, group)
                    continue
                assert (result.status, result.reason) == model.fixed[key]
            counted = any(u.status == "counted" for u in receipt.units)
            assert receipt.outcome == ("counted" if counted else "not_counted")

        # -- rules ---------------------------------------------------------------------------

        @rule(
            policy=st.sampled_from(POLICIES),
            voter=st.sampled_from(VOTERS),
            which=st.integers(0, 1),
            units=st.sampled_from([("S01",), ("S02",), ("S01", "S02")]),
            level=st.sampled_from(["satisfied", "dissatisfied"]),
            minute=st.integers(0, 4).map(lambda m: m * 10),  # few values: ties happen
            channel=st.sampled_from(CHANNELS),
            review=st.sampled_from([None, None, None, None, "burst"]),
        )
        def submit_valid(
            self,
            policy: Policy,
            voter: Voter,
            which: int,
            units: tuple[str, ...],
            level: str,
            minute: int,
            channel: Channel,
            review: str | None,
        ) -> None:
            model = self.models[policy]
            identity = voter.identities[which % len(voter.identities)]
            item = BallotSubmission(
                campaign=model.spec.code,
                channel=channel,
                source_ref=self._ref(channel),
                identity=identity,
                answers=tuple(Answer(u, "overall", level) for u in units),
                answered_at=at(minute),
                received_at=RECEIVED,
                review=review,
            )
            self._take(model, item)

        @rule(
            policy=st.sampled_from(POLICIES),
            voter=st.sampled_from(VOTERS[:2]),
            unknown_unit=st.booleans(),
            bad_level=st.booleans(),
            when=st.sampled_from(["inside", "before", "after"]),
        )
        def submit_invalid(
            self, policy: Policy, voter: Voter, unknown_unit: bool, bad_level: bool, when: str
        ) -> None:
            if not (unknown_unit or bad_level or when != "inside"):
                unknown_unit = True
            model = self.models[policy]
            answers = [Answer("S01", "overall", "great" if bad_level else "satisfied")]
            if unknown_unit:
                answers.append(Answer("Z99", "overall", "satisfied"))
            answered_at = {"inside": at(5), "before": BEFORE_OPEN, "after": AFTER_CLOSE}[when]
            item = BallotSubmission(
                campaign=model.spec.code,
                channel="paper",
                source_ref=self._ref("paper"),
                identity=voter.identities[0],
                answers=tuple(answers),
                answered_at=answered_at,
                received_at=RECEIVED,
            )
            self._take(model, item)

        @rule(policy=st.sampled_from(POLICIES), row=st.integers(1, 500))
        def adapter_rejection(self, policy: Policy, row: int) -> None:
            model = self.models[policy]
            problems = (
                Problem("unit_code", "unknown_unit", f"row {row}: unit_code 'A19' is not in the campaign"),
                Problem("phone", "bad_phone", f"row {row}: not a phone number"),
            )
            ref = self._ref("phone")
            self._take(model, Rejection(model.spec.code, "phone", ref, problems, RECEIVED, raw={"row": row}))

        @rule(data=st.data(), policy=st.sampled_from(POLICIES), later=st.integers(0, 3))
        def redeliver(self, data: st.DataObject, policy: Policy, later: int) -> None:
            model = self.models[policy]
            if not model.sent:
                return
            sent = data.draw(st.sampled_from(list(model.sent.values())))
            # Same content, another arrival time: still the same submission.
            self._take(model, _replace(sent.item, received_at=RECEIVED + timedelta(hours=later)))

        @rule(data=st.data(), policy=st.sampled_from(POLICIES), change=st.sampled_from(["level", "time"]))
        def redeliver_changed(self, data: st.DataObject, policy: Policy, change: str) -> None:
            model = self.models[policy]
            ballots = [s for s in model.sent.values() if isinstance(s.item, BallotSubmission)]
            if not ballots:
                return
            sent = data.draw(st.sampled_from(ballots))
            item = sent.item
            assert isinstance(item, BallotSubmission)
            if change == "level":
                flipped = tuple(
                    Answer(a.unit, a.aspect, "dissatisfied" if a.level == "satisfied" else "satisfied")
                    for a in item.answers
                )
                changed = _replace(item, answers=flipped)
            else:
                changed = _replace(item, answered_at=item.answered_at + timedelta(minutes=1))
            self._take(model, changed)

        # -- invariants ----------------------------------------------------------------------

        @invariant()
        def store_matches_model(self) -> None:
            for model in self.models.values():
                _check_store(store, model)

    return IngestMachine


def _replace(item: BallotSubmission | Rejection, **changes: Any) -> BallotSubmission | Rejection:
    return dataclasses.replace(item, **changes)


def _check_store(store: Store, model: Model) -> None:
    with store.engine.connect() as connection:
        submissions = connection.execute(
            sa.select(
                SUBMISSION.c.channel,
                SUBMISSION.c.external_id,
                SUBMISSION.c.status,
                SUBMISSION.c.receipt,
                SUBMISSION.c.deliveries,
            ).where(SUBMISSION.c.campaign_code == model.spec.code)
        ).all()
        ballots = connection.execute(
            sa.select(
                SUBMISSION.c.channel,
                SUBMISSION.c.external_id,
                BALLOT.c.unit_code,
                BALLOT.c.voter_key,
                BALLOT.c.status,
                BALLOT.c.reason,
            )
            .join(SUBMISSION, SUBMISSION.c.id == BALLOT.c.submission_id)
            .where(BALLOT.c.campaign_id == model.campaign_id)
        ).all()

    # Every distinct (source_ref, content) is one row of the inbox, with its receipt and deliveries.
    got_submissions = Counter((r[0], r[1], r[2], r[3], r[4]) for r in submissions)
    want_submissions = Counter(
        (i.item.channel, i.item.source_ref, i.status, i.receipt, i.deliveries) for i in model.sent.values()
    )
    assert got_submissions == want_submissions

    # Counts reconcile: submissions = accepted + rejected + conflict; ballots by their five statuses.
    by_status = Counter(r[2] for r in submissions)
    assert set(by_status) <= {"accepted", "rejected", "conflict"}
    assert sum(by_status.values()) == len(model.sent)
    ballot_status = Counter(r[4] for r in ballots)
    assert set(ballot_status) <= {"counted", "superseded", "duplicate", "invalid", "pending_review"}

    # At most one counted ballot per (unit, voter).
    counted = Counter((r[2], r[3]) for r in ballots if r[4] == "counted")
    assert all(n == 1 for n in counted.values()), counted

    # And exactly the ballot the model says counts; every other with the model's status and reason.
    got_ballots = {(r[0], r[1], r[2]): (r[4], r[5]) for r in ballots}
    assert len(got_ballots) == len(ballots)
    assert got_ballots == model.expected_ballots()


@pytest.mark.slow
def test_ingest_state_machine_sqlite(sqlite_url: str, branch_spec: CampaignSpec) -> None:
    upgrade(sqlite_url)
    store = Store(make_settings(sqlite_url))
    try:
        run_state_machine_as_test(
            machine_for(store, branch_spec),
            settings=settings(
                max_examples=40,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        store.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_ingest_state_machine_postgres(pg_url: str, branch_spec: CampaignSpec) -> None:
    upgrade(pg_url)
    store = Store(make_settings(pg_url))
    try:
        run_state_machine_as_test(
            machine_for(store, branch_spec),
            settings=settings(
                max_examples=12,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        store.dispose()
