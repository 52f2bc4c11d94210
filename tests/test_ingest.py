"""
ingest() edge cases as a table: who counts when one person answers twice, eligibility,
rejections with every problem, conflicts, and all-or-nothing batches. Both databases.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.ingest import ingest, ingest_batch
from collect.store import Store
from tests.conftest import count
from tests.store.factories import (
    AFTER_CLOSE,
    BEFORE_OPEN,
    RECEIVED,
    add_respondent,
    at,
    ballot,
    ballot_statuses,
    campaign_spec,
    issue_token,
    save,
)

PHONE_R1 = "+8613975318642"
PHONE_OFF_ROSTER = "+8615866429371"


@dataclass(frozen=True)
class Step:
    """One submission and what ingest() must answer. `who` is resolved against the roster below."""

    ref: str
    who: str  # token:R1 | revoked:R1 | badtoken | roster:R1 | phone:R1 | phone:off | tx:X | anon
    minute: int
    outcome: str
    units: tuple[str, ...] = ("S01",)
    channel: Channel = "web"
    level: str = "satisfied"
    review: str | None = None
    problems: tuple[str, ...] = ()
    unit_statuses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    # (ref, unit, status, reason) for every ballot, in insertion order.
    ballots: tuple[tuple[str, str, str, str | None], ...]
    policy: str = "first_counts"
    open_tier: bool = False
    extra: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        "first counts: a call imported later but answered earlier counts, the web vote is superseded",
        (
            Step("web-1", "token:R1", 60, "counted", unit_statuses=("counted",)),
            Step("calls.xlsx#row=2", "phone:R1", 30, "counted", channel="phone", unit_statuses=("counted",)),
        ),
        (
            ("web-1", "S01", "superseded", "earlier_answer_counts"),
            ("calls.xlsx#row=2", "S01", "counted", None),
        ),
    ),
    Case(
        "last counts: a call imported later but answered earlier is superseded at once",
        (
            Step("web-1", "token:R1", 60, "counted"),
            Step("calls.xlsx#row=2", "phone:R1", 30, "not_counted", channel="phone"),
        ),
        (
            ("web-1", "S01", "counted", None),
            ("calls.xlsx#row=2", "S01", "superseded", "later_answer_counts"),
        ),
        policy="last_counts",
    ),
    Case(
        "last counts: a later answer replaces the earlier one",
        (
            Step("web-1", "roster:R1", 30, "counted"),
            Step("SM0001", "phone:R1", 60, "counted", channel="sms"),
        ),
        (
            ("web-1", "S01", "superseded", "later_answer_counts"),
            ("SM0001", "S01", "counted", None),
        ),
        policy="last_counts",
    ),
    Case(
        "first counts: a later answer is kept as superseded",
        (
            Step("paper-1", "roster:R5", 30, "counted", channel="paper"),
            Step("web-2", "token:R5", 60, "not_counted", unit_statuses=("superseded",)),
        ),
        (
            ("paper-1", "S01", "counted", None),
            ("web-2", "S01", "superseded", "earlier_answer_counts"),
        ),
    ),
    Case(
        "one ballot for two units: one counts, the other was already answered",
        (
            Step("web-1", "roster:R5", 30, "counted", units=("S02",)),
            Step(
                "web-2",
                "roster:R5",
                40,
                "counted",
                units=("S01", "S02"),
                unit_statuses=("counted", "superseded"),
            ),
        ),
        (
            ("web-1", "S02", "counted", None),
            ("web-2", "S01", "counted", None),
            ("web-2", "S02", "superseded", "earlier_answer_counts"),
        ),
    ),
    Case(
        "draw tier: a respondent not drawn is kept as invalid, a drawn one counts",
        (
            Step("web-1", "roster:R2", 30, "not_counted", unit_statuses=("invalid",)),
            Step("web-2", "roster:R3", 30, "counted"),
        ),
        (("web-1", "S01", "invalid", "not_sampled"), ("web-2", "S01", "counted", None)),
    ),
    Case(
        "all_but_own: a peer's own unit is refused, other units count",
        (
            Step("web-1", "roster:R4", 30, "rejected", units=("S01", "S02"), problems=("own_unit",)),
            Step("web-2", "roster:R4", 30, "counted", units=("S02",)),
        ),
        (("web-2", "S02", "counted", None),),
    ),
    Case(
        "unknown and revoked ballot links are refused",
        (
            Step("web-1", "badtoken", 30, "rejected", problems=("unknown_token",)),
            Step("web-2", "revoked:R1", 30, "rejected", problems=("revoked_token",)),
        ),
        (),
    ),
    Case(
        "unknown people are refused: roster id, and a phone number when no tier is open",
        (
            Step("web-1", "roster:R99", 30, "rejected", problems=("not_on_roster",)),
            Step("SM1", "phone:off", 30, "rejected", channel="sms", problems=("unknown_respondent",)),
            Step("qr-1", "tx:T1", 30, "rejected", channel="window_qr", problems=("no_open_tier",)),
        ),
        (),
    ),
    Case(
        "same source_ref with other content is a conflict, kept and not counted",
        (
            Step("SM1", "phone:R1", 30, "counted", channel="sms"),
            Step(
                "SM1", "phone:R1", 30, "conflict", channel="sms", level="dissatisfied", problems=("conflict",)
            ),
            Step("SM1", "phone:R1", 30, "already_received", channel="sms", unit_statuses=("counted",)),
        ),
        (("SM1", "S01", "counted", None),),
    ),
    Case(
        "a rejection lists every problem, not only the first",
        (
            Step(
                "web-1",
                "roster:R1",
                -1,
                "rejected",
                units=("Z99", "S01"),
                level="great",
                problems=("campaign_not_open", "unknown_unit", "unknown_level", "unknown_level"),
            ),
        ),
        (),
    ),
    Case(
        "open tier: one rating per transaction, the earliest, whatever the policy",
        (
            Step("qr-1", "tx:T1", 60, "counted", channel="window_qr"),
            Step("qr-2", "tx:T1", 30, "counted", channel="window_qr"),
            Step("qr-3", "tx:T1", 45, "not_counted", channel="window_qr", unit_statuses=("duplicate",)),
            Step("qr-4", "anon", 45, "counted", channel="window_qr"),
            Step("SM1", "phone:off", 45, "counted", channel="sms"),
        ),
        (
            ("qr-1", "S01", "duplicate", "transaction_already_rated"),
            ("qr-2", "S01", "counted", None),
            ("qr-3", "S01", "duplicate", "transaction_already_rated"),
            ("qr-4", "S01", "counted", None),
            ("SM1", "S01", "counted", None),
        ),
        policy="last_counts",
        open_tier=True,
    ),
    Case(
        "a ballot held for review neither counts nor blocks the respondent's counted ballot",
        (
            Step("web-1", "roster:R5", 30, "not_counted", review="burst", unit_statuses=("pending_review",)),
            Step("web-2", "roster:R5", 40, "counted"),
        ),
        (("web-1", "S01", "pending_review", "burst"), ("web-2", "S01", "counted", None)),
    ),
]


@dataclass
class Roster:
    spec: CampaignSpec
    campaign_id: int
    ids: dict[str, int]


def _roster(store: Store, base: CampaignSpec, case: Case) -> Roster:
    spec = campaign_spec(base, policy=case.policy, open_tier=case.open_tier)
    campaign_id = save(store, spec)
    ids = {
        "R1": add_respondent(store, spec, "R1", "leaders", phone=PHONE_R1),
        "R2": add_respondent(store, spec, "R2", "recipients", in_sample=False),
        "R3": add_respondent(store, spec, "R3", "recipients", in_sample=True),
        "R4": add_respondent(store, spec, "R4", "peers", own_unit="S01"),
        "R5": add_respondent(store, spec, "R5", "supervisors"),
    }
    return Roster(spec, campaign_id, ids)


def _identity(store: Store, roster: Roster, who: str) -> Identity | None:
    kind, _, name = who.partition(":")
    if kind == "token":
        return Identity("token", issue_token(store, roster.spec, roster.ids[name]))
    if kind == "revoked":
        return Identity("token", issue_token(store, roster.spec, roster.ids[name], revoked=True))
    if kind == "badtoken":
        return Identity("token", "no-such-token")
    if kind == "roster":
        return Identity("roster_id", name)
    if kind == "phone":
        return Identity("phone", PHONE_R1 if name == "R1" else PHONE_OFF_ROSTER)
    if kind == "tx":
        return Identity("transaction", name)
    assert kind == "anon"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ingest_cases(branch_store: Store, branch_spec: CampaignSpec, case: Case) -> None:
    store = branch_store
    roster = _roster(store, branch_spec, case)
    first_codes: dict[str, str] = {}
    for step in case.steps:
        item = ballot(
            roster.spec,
            step.ref,
            _identity(store, roster, step.who),
            units=step.units,
            level=step.level,
            answered_at=BEFORE_OPEN if step.minute < 0 else at(step.minute),
            channel=step.channel,
            review=step.review,
        )
        receipt = ingest(store, item)
        assert receipt.outcome == step.outcome, (step, receipt)
        assert sorted(p.code for p in receipt.problems) == sorted(step.problems), receipt.problems
        if step.unit_statuses:
            assert tuple(u.status for u in receipt.units) == step.unit_statuses
        if step.outcome == "already_received":
            assert receipt.code == first_codes[step.ref]
        first_codes.setdefault(step.ref, receipt.code)

    got = _with_reasons(store, roster.campaign_id)
    assert got == list(case.ballots)
    # Nothing is dropped: every distinct input is one row of the inbox.
    distinct = {(s.ref, s.channel, s.level, s.minute, s.units, s.who) for s in case.steps}
    assert count(
        store, "SELECT count(*) FROM submission WHERE campaign_code = :c", c=roster.spec.code
    ) == len(distinct)


def _with_reasons(store: Store, campaign_id: int) -> list[tuple[str, str, str, str | None]]:
    """(source_ref, unit, status, reason) of every ballot of the campaign, in insertion order."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT s.external_id, b.unit_code, b.status, b.reason FROM ballot b "
                "JOIN submission s ON s.id = b.submission_id WHERE b.campaign_id = :c ORDER BY b.id"
            ),
            {"c": campaign_id},
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_rejection_is_stored_with_every_problem(branch_store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec)
    save(branch_store, spec)
    add_respondent(branch_store, spec, "R1", "leaders")
    item = BallotSubmission(
        campaign=spec.code,
        channel="paper",
        source_ref="form-0042",
        identity=Identity("roster_id", "R1"),
        answers=(
            Answer("Z99", "overall", "satisfied"),
            Answer("S01", "speed", "satisfied"),
            Answer("S02", "overall", points=7),
            Answer("S02", "overall", "satisfied"),
        ),
        answered_at=AFTER_CLOSE,
        received_at=RECEIVED,
    )
    receipt = ingest(branch_store, item)
    expected = [
        ("answered_at", "campaign_closed"),
        ("answers[0].unit", "unknown_unit"),
        ("answers[1].aspect", "unknown_aspect"),
        ("answers[2].level", "unknown_level"),
        ("answers[3]", "duplicate_answer"),
        ("answers[S01]", "incomplete"),
    ]
    assert [(p.field, p.code) for p in receipt.problems] == expected
    with branch_store.engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT status, reason, problems FROM submission WHERE id = :i"),
            {"i": receipt.submission_id},
        ).one()
    assert (row.status, row.reason) == ("rejected", "campaign_closed")
    problems = row.problems if isinstance(row.problems, list) else json.loads(row.problems)
    assert [(p["field"], p["code"]) for p in problems] == expected
    assert all(p["detail"] for p in problems)
    assert count(branch_store, "SELECT count(*) FROM ballot") == 0


def test_adapter_rejection_is_kept_and_replayed(branch_store: Store, branch_spec: CampaignSpec) -> None:
    problems = (
        Problem("unit_code", "unknown_unit", "row 17: unit_code 'A19' is not in the campaign"),
        Problem("level", "unknown_level", "row 17: level '好' is not a level"),
    )
    rejection = Rejection(branch_spec.code, "phone", "calls.xlsx#row=17", problems, RECEIVED, raw={"row": 17})
    first = ingest(branch_store, rejection)
    again = ingest(branch_store, rejection)
    assert first.outcome == "rejected"
    assert first.problems == problems
    assert (again.outcome, again.code, again.problems) == ("already_received", first.code, problems)
    assert count(branch_store, "SELECT count(*) FROM submission") == 1
    assert count(branch_store, "SELECT deliveries FROM submission") == 2


def test_unknown_campaign_is_kept(branch_store: Store, branch_spec: CampaignSpec) -> None:
    item = ballot(campaign_spec(branch_spec), "web-1", Identity("roster_id", "R1"))  # never saved
    receipt = ingest(branch_store, item)
    assert (receipt.outcome, receipt.reason) == ("rejected", "unknown_campaign")
    assert count(branch_store, "SELECT count(*) FROM submission WHERE status = 'rejected'") == 1


class _Boom(Exception):
    pass


def test_batch_failing_midway_writes_nothing(branch_store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec)
    save(branch_store, spec)
    add_respondent(branch_store, spec, "R1", "leaders")
    add_respondent(branch_store, spec, "R5", "supervisors")

    def rows() -> Iterator[BallotSubmission | Rejection]:
        yield ballot(spec, "calls.xlsx#row=2", Identity("roster_id", "R1"), channel="phone")
        yield ballot(
            spec, "calls.xlsx#row=3", Identity("roster_id", "R5"), channel="phone", answered_at=at(5)
        )
        yield Rejection(spec.code, "phone", "calls.xlsx#row=4", (Problem("level", "bad", "x"),), RECEIVED)
        yield ballot(
            spec, "calls.xlsx#row=5", Identity("roster_id", "R1"), channel="phone", answered_at=at(-5)
        )
        raise _Boom("the file turned out to be truncated at row 6")

    with pytest.raises(_Boom):
        ingest_batch(branch_store, rows())
    for table in ("submission", "ballot", "answer"):
        assert count(branch_store, f"SELECT count(*) FROM {table}") == 0, table

    # The same rows without the failure: all of them, decided as one-by-one ingest would.
    receipts = ingest_batch(branch_store, _take(rows(), 4))
    assert [r.outcome for r in receipts] == ["counted", "counted", "rejected", "counted"]
    assert [s[2] for s in ballot_statuses(branch_store, _campaign_id(branch_store, spec.code))] == [
        "superseded",
        "counted",
        "counted",
    ]


def _take(items: Iterator[BallotSubmission | Rejection], n: int) -> list[BallotSubmission | Rejection]:
    return [next(items) for _ in range(n)]


def _campaign_id(store: Store, code: str) -> int:
    return count(store, "SELECT id FROM campaign WHERE code = :c", c=code)


def test_batch_redelivers_within_itself(branch_store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec)
    save(branch_store, spec)
    add_respondent(branch_store, spec, "R1", "leaders")
    item = ballot(spec, "calls.xlsx#row=2", Identity("roster_id", "R1"), channel="phone")
    receipts = ingest_batch(branch_store, [item, item])
    assert [r.outcome for r in receipts] == ["counted", "already_received"]
    assert receipts[0].code == receipts[1].code
    assert count(branch_store, "SELECT deliveries FROM submission") == 2
