"""
The review queue: findings held for an operator, and their decisions.

An item names a ballot or a whole submission (a form), a `kind` (which detector), a `reason`
(what a rejected ballot's reason becomes) and evidence JSON without personal data. Accepting
sends the held ballots through the same one-vote rule as ingest(); rejecting marks them
invalid with the reason. Nothing is deleted; every decision is in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.ingest import _loser, _new_wins, as_utc
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, BALLOT, CAMPAIGN, REVIEW_ITEM, utcnow

Decision = Literal["accepted", "rejected"]

# Ballot statuses a decision applies to. A paper detector (issue: serials) may file items for
# ballots ingest() already marked invalid with the item's reason (a reused serial); accepting
# such an item (a clerk confirms a keying error) promotes them like a held ballot.
_DECIDABLE = ("pending_review", "invalid")
_ROUNDS = 5


class ReviewError(ValueError):
    """A decision that cannot be made (unknown or already decided item); nothing is written."""


@dataclass(frozen=True, slots=True)
class Finding:
    """
    What a detector files. Exactly one of ballot_id / submission_id; `fingerprint` is stable
    across runs (same finding, same fingerprint), so filing again adds nothing.
    """

    kind: str
    reason: str
    fingerprint: str
    evidence: Mapping[str, Any]
    ballot_id: int | None = None
    submission_id: int | None = None
    hold: bool = True  # move counted ballots to pending_review until decided


@dataclass(frozen=True, slots=True)
class ItemView:
    id: int
    kind: str
    reason: str
    status: str
    ballot_id: int | None
    submission_id: int | None
    evidence: dict[str, Any]
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "reason": self.reason,
            "status": self.status,
            "ballot_id": self.ballot_id,
            "submission_id": self.submission_id,
            "evidence": self.evidence,
            "created_at": as_utc(self.created_at).isoformat(),
            "decided_by": self.decided_by,
            "decided_at": as_utc(self.decided_at).isoformat() if self.decided_at else None,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class DecisionResult:
    item_id: int
    decision: Decision
    ballots: tuple[tuple[int, str, str | None], ...]  # (ballot id, new status, reason)


def campaign_id_of(connection: Connection, code: str) -> int:
    found = connection.execute(sa.select(CAMPAIGN.c.id).where(CAMPAIGN.c.code == code)).scalar_one_or_none()
    if found is None:
        raise ReviewError(f"campaign {code!r} does not exist")
    return int(found)


def file_findings(connection: Connection, campaign_id: int, findings: Iterable[Finding]) -> int:
    """
    File findings in the caller's transaction; returns how many were new. A finding already
    filed (same kind and fingerprint) is left as it is, decided or not, and holds nothing again.
    """
    findings = list(findings)
    if not findings:
        return 0
    known = set(
        connection.execute(
            sa.select(REVIEW_ITEM.c.kind, REVIEW_ITEM.c.fingerprint).where(
                REVIEW_ITEM.c.campaign_id == campaign_id
            )
        )
    )
    new = [f for f in findings if (f.kind, f.fingerprint) not in known]
    # Two findings of one run with the same fingerprint are one finding.
    unique = list({(f.kind, f.fingerprint): f for f in new}.values())
    now = utcnow()
    if unique:
        connection.execute(
            sa.insert(REVIEW_ITEM),
            [
                {
                    "campaign_id": campaign_id,
                    "ballot_id": f.ballot_id,
                    "submission_id": f.submission_id,
                    "kind": f.kind,
                    "reason": f.reason,
                    "fingerprint": f.fingerprint,
                    "evidence": dict(f.evidence),
                    "status": "open",
                    "created_at": now,
                }
                for f in unique
            ],
        )
    for finding in unique:
        if finding.hold:
            connection.execute(
                sa.update(BALLOT)
                .where(_ballots_of(campaign_id, finding.ballot_id, finding.submission_id))
                .where(BALLOT.c.status == "counted")
                .values(status="pending_review", reason=finding.reason)
            )
    return len(unique)


def _ballots_of(campaign_id: int, ballot_id: int | None, submission_id: int | None) -> sa.ColumnElement[bool]:
    if ballot_id is not None:
        return sa.and_(BALLOT.c.campaign_id == campaign_id, BALLOT.c.id == ballot_id)
    return sa.and_(BALLOT.c.campaign_id == campaign_id, BALLOT.c.submission_id == submission_id)


def sync_held(store: Store, campaign: str) -> int:
    """
    One open item for each ballot ingest() held as pending_review (e.g. a burst flag on an open
    channel) that has none yet. Idempotent; returns how many items were added.
    """
    with store.engine.begin() as connection:
        campaign_id = campaign_id_of(connection, campaign)
        covered_ballots = sa.select(REVIEW_ITEM.c.ballot_id).where(
            REVIEW_ITEM.c.campaign_id == campaign_id, REVIEW_ITEM.c.ballot_id.is_not(None)
        )
        covered_submissions = sa.select(REVIEW_ITEM.c.submission_id).where(
            REVIEW_ITEM.c.campaign_id == campaign_id,
            REVIEW_ITEM.c.submission_id.is_not(None),
            REVIEW_ITEM.c.status == "open",
        )
        rows = connection.execute(
            sa.select(
                BALLOT.c.id,
                BALLOT.c.reason,
                BALLOT.c.channel,
                BALLOT.c.unit_code,
                BALLOT.c.tier_code,
                BALLOT.c.meta,
            )
            .where(
                BALLOT.c.campaign_id == campaign_id,
                BALLOT.c.status == "pending_review",
                BALLOT.c.id.not_in(covered_ballots),
                BALLOT.c.submission_id.not_in(covered_submissions),
            )
            .order_by(BALLOT.c.id)
        ).all()
        findings = [
            Finding(
                kind="held",
                reason=row.reason or "held",
                fingerprint=f"ballot:{row.id}",
                evidence={
                    "held_by": "ingest",
                    "flag": row.reason,
                    "channel": row.channel,
                    "unit": row.unit_code,
                    "tier": row.tier_code,
                    "distribution": (row.meta or {}).get("distribution"),
                },
                ballot_id=int(row.id),
                hold=False,
            )
            for row in rows
        ]
        return file_findings(connection, campaign_id, findings)


def list_items(
    store: Store, campaign: str, *, reason: str | None = None, status: str | None = None
) -> list[ItemView]:
    with store.engine.connect() as connection:
        campaign_id = campaign_id_of(connection, campaign)
        query = sa.select(REVIEW_ITEM).where(REVIEW_ITEM.c.campaign_id == campaign_id)
        if reason is not None:
            query = query.where(sa.or_(REVIEW_ITEM.c.reason == reason, REVIEW_ITEM.c.kind == reason))
        if status is not None:
            query = query.where(REVIEW_ITEM.c.status == status)
        rows = connection.execute(query.order_by(REVIEW_ITEM.c.id)).all()
    return [
        ItemView(
            id=int(r.id),
            kind=r.kind,
            reason=r.reason,
            status=r.status,
            ballot_id=r.ballot_id,
            submission_id=r.submission_id,
            evidence=dict(r.evidence or {}),
            created_at=r.created_at,
            decided_by=r.decided_by,
            decided_at=r.decided_at,
            note=r.note,
        )
        for r in rows
    ]


def decide(
    store: Store,
    item_id: int,
    decision: Decision,
    *,
    note: str,
    actor: str,
    reason: str | None = None,
) -> DecisionResult:
    """
    Accept or reject one open item, in one transaction (retried if a concurrent ingest wins a
    race for the counted slot in between).
    """
    if not note.strip():
        raise ReviewError("a decision needs a note saying why")
    for attempt in range(_ROUNDS):
        try:
            with store.engine.begin() as connection:
                return _decide(connection, store, item_id, decision, note=note, actor=actor, reason=reason)
        except sa.exc.IntegrityError:
            # Someone took the counted slot between our read and our write: decide again.
            if attempt == _ROUNDS - 1:
                raise
    raise AssertionError("unreachable")


def _decide(
    connection: Connection,
    store: Store,
    item_id: int,
    decision: Decision,
    *,
    note: str,
    actor: str,
    reason: str | None,
) -> DecisionResult:
    item = connection.execute(
        sa.select(REVIEW_ITEM).where(REVIEW_ITEM.c.id == item_id).with_for_update()
    ).first()
    if item is None:
        raise ReviewError(f"review item {item_id} does not exist")
    if item.status != "open":
        raise ReviewError(f"review item {item_id} was already {item.status} by {item.decided_by}")
    code = connection.execute(
        sa.select(CAMPAIGN.c.code).where(CAMPAIGN.c.id == item.campaign_id)
    ).scalar_one()
    campaign = load_campaign(store, connection, code)
    if campaign is None:
        raise ReviewError(f"campaign of item {item_id} is gone")
    ballots = connection.execute(
        sa.select(BALLOT)
        .where(_ballots_of(item.campaign_id, item.ballot_id, item.submission_id))
        .where(
            sa.or_(
                BALLOT.c.status == "pending_review",
                sa.and_(BALLOT.c.status == "invalid", BALLOT.c.reason == item.reason),
            )
        )
        .order_by(BALLOT.c.id)
    ).all()
    outcomes: list[tuple[int, str, str | None]] = []
    for ballot in ballots:
        if decision == "rejected":
            why = reason or item.reason
            connection.execute(
                sa.update(BALLOT).where(BALLOT.c.id == ballot.id).values(status="invalid", reason=why)
            )
            outcomes.append((int(ballot.id), "invalid", why))
        else:
            outcomes.append(_promote(connection, campaign.spec.policy, ballot))
    now = utcnow()
    connection.execute(
        sa.update(REVIEW_ITEM)
        .where(REVIEW_ITEM.c.id == item_id)
        .values(status=decision, decided_by=actor, decided_at=now, note=note)
    )
    connection.execute(
        sa.insert(AUDIT).values(
            at=now,
            actor=actor,
            action=f"review.{'accept' if decision == 'accepted' else 'reject'}",
            campaign_code=code,
            target=f"review_item:{item_id}",
            detail={
                "kind": item.kind,
                "reason": item.reason,
                "note": note,
                "ballots": [{"id": b, "status": s, "reason": r} for b, s, r in outcomes],
            },
        )
    )
    return DecisionResult(item_id, decision, tuple(outcomes))


def _promote(connection: Connection, policy: str, ballot: sa.Row[Any]) -> tuple[int, str, str | None]:
    """
    The one-vote rule of ingest(), applied to a held ballot: take the empty counted slot, or
    compare answered_at with the ballot holding it under the campaign's policy.
    """
    current = connection.execute(
        sa.select(BALLOT.c.id, BALLOT.c.answered_at)
        .where(
            BALLOT.c.campaign_id == ballot.campaign_id,
            BALLOT.c.unit_code == ballot.unit_code,
            BALLOT.c.voter_key == ballot.voter_key,
            BALLOT.c.status == "counted",
        )
        .with_for_update()
    ).first()
    if current is not None:
        if not _new_wins(policy, ballot.voter_kind, as_utc(ballot.answered_at), as_utc(current.answered_at)):
            status, why = _loser(policy, ballot.voter_kind)
            connection.execute(
                sa.update(BALLOT).where(BALLOT.c.id == ballot.id).values(status=status, reason=why)
            )
            return int(ballot.id), status, why
        status, why = _loser(policy, ballot.voter_kind)
        connection.execute(
            sa.update(BALLOT)
            .where(BALLOT.c.id == current.id, BALLOT.c.status == "counted")
            .values(status=status, reason=why)
        )
    # The partial UNIQUE index refuses a second counted ballot if a writer slipped in: the
    # IntegrityError rolls the whole decision back and decide() runs it again.
    connection.execute(
        sa.update(BALLOT).where(BALLOT.c.id == ballot.id).values(status="counted", reason=None)
    )
    return int(ballot.id), "counted", None


def decide_many(
    store: Store, item_ids: Sequence[int], decision: Decision, *, note: str, actor: str, reason: str | None
) -> list[DecisionResult]:
    """Each item in its own transaction: one refused item does not undo the others."""
    return [decide(store, i, decision, note=note, actor=actor, reason=reason) for i in item_ids]
