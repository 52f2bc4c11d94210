"""
One vote across channels, and the review queue: accepting a held ballot goes through the same
one-vote rule as ingest(); rejecting keeps it as invalid with the reason.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collect.cli.dedupe  # noqa: F401  (registers the commands)
from collect.ballot import BallotSubmission, Identity, IdentityKind
from collect.campaign import CampaignSpec, Channel
from collect.dedupe.review import ReviewError, decide, list_items, sync_held
from collect.ingest import ingest
from collect.store import Store
from collect.store.tables import AUDIT, BALLOT, REVIEW_ITEM, SUBMISSION
from tests.cli.helpers import invoke
from tests.store.factories import add_respondent, at, ballot, campaign_spec, issue_token, save

PHONE = "+8613800138000"


def statuses(store: Store, spec: CampaignSpec) -> dict[str, tuple[str, str | None]]:
    """Submission external id → (ballot status, reason), for one-unit ballots."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(SUBMISSION.c.external_id, BALLOT.c.status, BALLOT.c.reason)
            .join(BALLOT, BALLOT.c.submission_id == SUBMISSION.c.id)
            .where(SUBMISSION.c.campaign_code == spec.code)
        ).all()
    return {r.external_id: (r.status, r.reason) for r in rows}


def report(store: Store, code: str) -> dict[str, object]:
    result = invoke(["report", code, "--json"], url=store.url)
    assert result.code == 0, result.stdout + result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_phone_and_web_vote_one_counted_one_superseded(store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec)
    save(store, spec)
    person = add_respondent(store, spec, "L-7", "leaders", phone=PHONE)
    token = issue_token(store, spec, person)
    # The web vote arrives first, but the call (imported later) was answered earlier: it counts.
    ingest(store, ballot(spec, "web-1", Identity("token", token), answered_at=at(60), channel="web"))
    ingest(
        store, ballot(spec, "calls.csv#row=2", Identity("phone", PHONE), answered_at=at(5), channel="phone")
    )
    assert statuses(store, spec) == {
        "web-1": ("superseded", "earlier_answer_counts"),
        "calls.csv#row=2": ("counted", None),
    }
    data = report(store, spec.code)
    ballots = data["ballots"]
    assert isinstance(ballots, dict)
    assert ballots["by_channel"]["phone"]["counted"] == 1
    assert ballots["by_channel"]["web"]["superseded"] == 1
    assert ballots["total"]["received"] == 2
    forms = data["forms"]
    assert isinstance(forms, dict)
    assert forms["total"]["invalid_by_reason"] == {"earlier_answer_counts": 1}
    assert PHONE not in json.dumps(data)
    assert all(c["ok"] for c in data["checks"])  # type: ignore[attr-defined]


# Three people, each answering through up to three channels at distinct times.
CHANNELS: tuple[tuple[Channel, IdentityKind], ...] = (
    ("web", "token"),
    ("phone", "phone"),
    ("api", "roster_id"),
)
votes = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 500)),
    min_size=1,
    max_size=8,
    unique_by=lambda v: (v[0], v[1]),
)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=votes,
    order=st.randoms(use_true_random=False),
    policy=st.sampled_from(["first_counts", "last_counts"]),
)
def test_any_interleaving_gives_the_same_counted_set(
    store: Store, branch_spec: CampaignSpec, plan: list[tuple[int, int, int]], order: object, policy: str
) -> None:
    spec = campaign_spec(branch_spec, policy=policy)
    save(store, spec)
    tokens = {}
    for person in range(3):
        rid = add_respondent(store, spec, f"L-{person}", "leaders", phone=f"+86138001380{person:02d}")
        tokens[person] = issue_token(store, spec, rid)
    minutes = sorted({m for _, _, m in plan})
    items: list[BallotSubmission] = []
    for person, channel_index, minute in plan:
        channel, kind = CHANNELS[channel_index]
        value = {"token": tokens[person], "phone": f"+86138001380{person:02d}", "roster_id": f"L-{person}"}[
            kind
        ]
        # Distinct times for each of a person's votes (same minute, other channel included):
        # with equal times the arrival order would decide, by design.
        answered = at(minutes.index(minute) * 10 + person * 3 + channel_index)
        items.append(
            ballot(spec, f"{channel}-{person}", Identity(kind, value), answered_at=answered, channel=channel)
        )
    expected: dict[int, datetime] = {}
    for item, (person, _, _) in zip(items, plan, strict=True):
        best = expected.get(person)
        better = best is None or (
            item.answered_at < best if policy == "first_counts" else item.answered_at > best
        )
        if better:
            expected[person] = item.answered_at
    shuffled = list(items)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    for item in shuffled:
        ingest(store, item)
    got = statuses(store, spec)
    counted = {ref for ref, (status, _) in got.items() if status == "counted"}
    want = {
        item.source_ref
        for item, (p, _, _) in zip(items, plan, strict=True)
        if item.answered_at == expected[p]
    }
    assert counted == want
    assert len(got) == len(items)  # nobody's second vote is lost: it is kept as superseded


def held(store: Store, spec: CampaignSpec, ref: str, minute: int, flag: str = "burst") -> None:
    receipt = ingest(
        store,
        ballot(
            spec,
            ref,
            Identity("phone", PHONE),
            answered_at=at(minute),
            channel="web",
            tier="public",
            review=flag,
        ),
    )
    assert receipt.units[0].status == "pending_review"


def test_review_list_accept_and_reject(store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    held(store, spec, "w-1", 10)
    held(store, spec, "w-2", 20)
    listed = invoke(["review", "list", spec.code, "--json"], url=store.url)
    assert listed.code == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [i["kind"] for i in items] == ["held", "held"]
    assert [i["reason"] for i in items] == ["burst", "burst"]
    assert PHONE not in listed.stdout
    # Listing again adds nothing.
    assert len(json.loads(invoke(["review", "list", spec.code, "--json"], url=store.url).stdout)) == 2
    no_note = invoke(["review", "accept", str(items[1]["id"])], url=store.url)
    assert no_note.code == 2
    accepted = invoke(
        ["review", "accept", str(items[1]["id"]), "--note", "checked: a real citizen"], url=store.url
    )
    assert accepted.code == 0, accepted.stderr
    assert statuses(store, spec)["w-2"] == ("counted", None)
    # The earlier ballot, accepted too, takes the slot under first_counts; the other is superseded.
    assert invoke(["review", "accept", str(items[0]["id"]), "--note", "also real"], url=store.url).code == 0
    assert statuses(store, spec) == {"w-1": ("counted", None), "w-2": ("superseded", "earlier_answer_counts")}
    again = invoke(["review", "reject", str(items[0]["id"]), "--note", "changed my mind"], url=store.url)
    assert again.code == 2
    assert "already accepted" in again.stderr
    with store.engine.connect() as connection:
        audit = connection.execute(
            sa.select(AUDIT.c.action, AUDIT.c.detail).where(
                AUDIT.c.campaign_code == spec.code, AUDIT.c.action.like("review.%")
            )
        ).all()
    assert [a.action for a in audit] == ["review.accept", "review.accept"]
    assert audit[0].detail["note"] == "checked: a real citizen"
    data = report(store, spec.code)
    assert data["review"] == {"accepted": 2}


def test_reject_marks_invalid_with_the_reason(store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    held(store, spec, "w-1", 10)
    sync_held(store, spec.code)
    [item] = list_items(store, spec.code)
    result = invoke(
        ["review", "reject", str(item.id), "--note", "500 votes in a minute from one device"], url=store.url
    )
    assert result.code == 0, result.stderr
    assert statuses(store, spec) == {"w-1": ("invalid", "burst")}
    data = report(store, spec.code)
    assert data["forms"]["total"]["invalid_by_reason"] == {"burst": 1}  # type: ignore[index]
    assert data["ok"] is True


@pytest.mark.parametrize(("policy", "winner"), [("first_counts", "early"), ("last_counts", "late")])
def test_accept_applies_the_policy_against_the_counted_ballot(
    store: Store, branch_spec: CampaignSpec, policy: str, winner: str
) -> None:
    spec = campaign_spec(branch_spec, policy=policy, open_tier=True)
    save(store, spec)
    held(store, spec, "late", 50)
    ingest(
        store,
        ballot(spec, "early", Identity("phone", PHONE), answered_at=at(5), channel="sms", tier="public"),
    )
    [item] = (sync_held(store, spec.code), list_items(store, spec.code))[1]
    decide(store, item.id, "accepted", note="ok", actor="test")
    got = statuses(store, spec)
    assert got[winner] == ("counted", None)
    loser = "late" if winner == "early" else "early"
    assert got[loser][0] == "superseded"
    with pytest.raises(ReviewError, match="needs a note"):
        decide(store, item.id, "rejected", note="  ", actor="test")


def test_report_fails_when_a_ballot_has_an_unknown_status(store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    held(store, spec, "w-1", 10)
    with store.engine.begin() as connection:  # tampering, as a bad manual fix would
        connection.execute(sa.update(BALLOT).values(status="lost"))
    result = invoke(["report", spec.code], url=store.url)
    assert result.code == 1
    assert "FAIL" in result.stdout
    assert "reconciliation failed" in result.stderr


def test_review_items_hold_no_personal_data(store: Store, branch_spec: CampaignSpec) -> None:
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    held(store, spec, "w-1", 10)
    sync_held(store, spec.code)
    with store.engine.connect() as connection:
        evidence = connection.execute(sa.select(REVIEW_ITEM.c.evidence)).scalar_one()
    assert PHONE not in json.dumps(evidence)
    assert evidence["channel"] == "web"
