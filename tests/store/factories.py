"""
Test setup for the store and ingest tests: campaigns, respondents and ballots, all synthetic.

Respondents are inserted straight into `respondent` (there is no roster import yet); that is
setup, not ballot writing: every submission and ballot in these tests goes through ingest().
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import collect.store.tables  # noqa: F401  (registers every table on the metadata)
from collect.ballot import Answer, BallotSubmission, Identity
from collect.campaign import CampaignSpec, Channel
from collect.dedupe.keys import keyed_hash, new_nonce, sha256_hex, token_for
from collect.ingest import as_utc
from collect.store import Store
from collect.store.campaigns import save_campaign

RESPONDENT = SQLModel.metadata.tables["respondent"]
CONTACT = SQLModel.metadata.tables["contact"]
INVITATION = SQLModel.metadata.tables["invitation"]
CAMPAIGN = SQLModel.metadata.tables["campaign"]
BALLOT = SQLModel.metadata.tables["ballot"]
SUBMISSION = SQLModel.metadata.tables["submission"]

# Inside the branch-office example's window (2026-07-01 to 2026-12-31, +08:00).
T0 = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
BEFORE_OPEN = datetime(2026, 6, 1, tzinfo=UTC)
AFTER_CLOSE = datetime(2027, 2, 1, tzinfo=UTC)
RECEIVED = datetime(2026, 9, 20, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """A time inside the campaign window, `minutes` after T0."""
    return T0 + timedelta(minutes=minutes)


def campaign_spec(
    base: CampaignSpec,
    *,
    code: str | None = None,
    policy: str = "first_counts",
    open_tier: bool = False,
) -> CampaignSpec:
    """
    A validated copy of `base` under a fresh code, with the given policy and, optionally, an
    open tier "public" (weight 0) so phone numbers off the roster and transactions can vote.
    """
    data: dict[str, Any] = base.model_dump(mode="json")
    data["code"] = code or f"t-{secrets.token_hex(5)}"
    data["policy"] = policy
    if open_tier:
        data["tiers"] = [
            *data["tiers"],
            {"code": "public", "zh": "社会公众", "weight": 0.0, "source": "open"},
        ]
    return CampaignSpec.model_validate(data)


def save(store: Store, spec: CampaignSpec) -> int:
    """Save the campaign and return its id."""
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="test")
        return int(
            connection.execute(sa.select(CAMPAIGN.c.id).where(CAMPAIGN.c.code == spec.code)).scalar_one()
        )


def add_respondent(
    store: Store,
    spec: CampaignSpec,
    roster_id: str,
    tier: str,
    *,
    phone: str | None = None,
    in_sample: bool = True,
    own_unit: str | None = None,
    assigned_units: Sequence[str] | None = None,
) -> int:
    """Put one person on the campaign's roster, keyed as the roster import will key them."""
    secret = store.settings.secret()
    with store.engine.begin() as connection:
        campaign_id = connection.execute(
            sa.select(CAMPAIGN.c.id).where(CAMPAIGN.c.code == spec.code)
        ).scalar_one()
        return int(
            connection.execute(
                sa.insert(RESPONDENT)
                .values(
                    campaign_id=campaign_id,
                    tier_code=tier,
                    key=keyed_hash(secret, spec.code, "roster_id", roster_id),
                    phone_key=keyed_hash(secret, spec.code, "phone", phone) if phone else None,
                    own_unit=own_unit,
                    assigned_units=list(assigned_units) if assigned_units is not None else None,
                    in_sample=in_sample,
                    created_at=datetime.now(UTC),
                )
                .returning(RESPONDENT.c.id)
            ).scalar_one()
        )


def add_contact(store: Store, respondent_id: int, phone: str) -> None:
    """The clear phone number, where the sending code keeps it (and only there)."""
    with store.engine.begin() as connection:
        connection.execute(sa.insert(CONTACT).values(respondent_id=respondent_id, kind="phone", value=phone))


def issue_token(store: Store, spec: CampaignSpec, respondent_id: int, *, revoked: bool = False) -> str:
    """An invitation (ballot link) for a respondent; returns the token the link carries."""
    nonce = new_nonce()
    token = token_for(store.settings.secret(), nonce)
    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        campaign_id = connection.execute(
            sa.select(CAMPAIGN.c.id).where(CAMPAIGN.c.code == spec.code)
        ).scalar_one()
        connection.execute(
            sa.insert(INVITATION).values(
                campaign_id=campaign_id,
                respondent_id=respondent_id,
                nonce=nonce,
                token_sha256=sha256_hex(token),
                created_at=now,
                revoked_at=now if revoked else None,
            )
        )
    return token


def ballot(
    spec: CampaignSpec,
    source_ref: str,
    identity: Identity | None,
    *,
    units: Sequence[str] = ("S01",),
    level: str = "satisfied",
    answered_at: datetime = T0,
    channel: Channel = "web",
    tier: str | None = None,
    review: str | None = None,
    raw: dict[str, Any] | None = None,
) -> BallotSubmission:
    """A ballot rating each of `units` at `level` on the campaign's one aspect."""
    return BallotSubmission(
        campaign=spec.code,
        channel=channel,
        source_ref=source_ref,
        identity=identity,
        answers=tuple(Answer(unit=u, aspect="overall", level=level) for u in units),
        answered_at=answered_at,
        received_at=RECEIVED,
        raw=raw or {},
        tier=tier,
        review=review,
    )


def ballot_statuses(store: Store, campaign_id: int) -> list[tuple[str, str, str, datetime, str]]:
    """(unit, voter_key, status, answered_at, submission external id) of every ballot, in id order."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                BALLOT.c.unit_code,
                BALLOT.c.voter_key,
                BALLOT.c.status,
                BALLOT.c.answered_at,
                SUBMISSION.c.external_id,
            )
            .join(SUBMISSION, SUBMISSION.c.id == BALLOT.c.submission_id)
            .where(BALLOT.c.campaign_id == campaign_id)
            .order_by(BALLOT.c.id)
        ).all()
    return [(r[0], r[1], r[2], as_utc(r[3]), r[4]) for r in rows]


def store_tables(
    store: Store, *campaign_codes: str
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[int, tuple[Any, ...]], dict[int, str]]:
    """
    Campaigns' submission, ballot and answer rows without ids or receipt codes, sorted, for
    comparing two stores fed the same items. Rows point to their submission by its natural key.

    Returns:
        The tables; each submission id's natural key (channel, external id, content hash); each
        submission id's receipt code.
    """
    answer = SQLModel.metadata.tables["answer"]
    with store.engine.connect() as connection:
        subs = connection.execute(
            sa.select(SUBMISSION)
            .where(SUBMISSION.c.campaign_code.in_(campaign_codes))
            .order_by(SUBMISSION.c.id)
        ).all()
        names = {int(s.id): (s.channel, s.external_id, s.content_sha256) for s in subs}
        codes = {int(s.id): str(s.receipt) for s in subs}
        ballots = connection.execute(
            sa.select(BALLOT).where(BALLOT.c.submission_id.in_(list(names))).order_by(BALLOT.c.id)
        ).all()
        ballot_names = {int(b.id): (*names[b.submission_id], b.unit_code) for b in ballots}
        answers = connection.execute(
            sa.select(answer).where(answer.c.ballot_id.in_(list(ballot_names))).order_by(answer.c.id)
        ).all()

    def when(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    tables: dict[str, list[tuple[Any, ...]]] = {
        "submission": sorted(
            (
                names[s.id],
                when(s.received_at),
                when(s.answered_at),
                repr(s.payload),
                s.status,
                s.reason,
                s.deliveries,
                repr(s.meta),
                s.problems,  # last: the caller may rewrite submission ids named in a detail
            )
            for s in subs
        ),
        "ballot": sorted(
            (
                ballot_names[b.id],
                b.tier_code,
                b.voter_key,
                b.voter_kind,
                b.channel,
                when(b.answered_at),
                when(b.received_at),
                b.status,
                b.reason or "",
                b.comment or "",
                repr(b.meta),
            )
            for b in ballots
        ),
        "answer": sorted(
            (ballot_names[a.ballot_id], a.aspect_code, a.level_code or "", a.points or 0, a.dont_know)
            for a in answers
        ),
    }
    return tables, names, codes
