"""
ingest(): the only code that writes submissions and ballots.

Every channel's ballot goes through the same steps, in one transaction:
validate against the campaign → idempotency (same channel + source_ref + content adds
nothing) → resolve who voted (token, roster id, phone, or transaction) → eligibility →
the one-vote rule, enforced by the partial UNIQUE index `uq_ballot_counted` → a receipt.
Nothing is dropped: a rejected or conflicting input is kept in `submission` with its reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from collect.ballot import (
    Answer,
    BallotStatus,
    BallotSubmission,
    Identity,
    Outcome,
    Problem,
    Receipt,
    Rejection,
    UnitResult,
)
from collect.campaign import DONT_KNOW, CampaignSpec, Tier
from collect.dedupe.keys import keyed_hash, new_receipt, new_receipts, sha256_hex
from collect.store import Store
from collect.store.campaigns import LoadedCampaign, load_campaign
from collect.store.tables import ANSWER, BALLOT, INVITATION, RESPONDENT, SUBMISSION

# A concurrent writer can win the race for the counted slot between our read and our insert;
# we then decide again against what it wrote. Two rounds suffice; more means a bug.
_MAX_RACE_ROUNDS = 5

Item = BallotSubmission | Rejection

# The hot path runs these for every ballot: built once, with bind parameters, so each call
# costs an execute and not the construction and cache-key walk of a new statement.
_bp = sa.bindparam
_PREVIOUS = (
    sa.select(SUBMISSION.c.id, SUBMISSION.c.content_sha256, SUBMISSION.c.receipt, SUBMISSION.c.status)
    .where(
        SUBMISSION.c.campaign_code == _bp("campaign"),
        SUBMISSION.c.channel == _bp("channel"),
        SUBMISSION.c.external_id == _bp("external_id"),
    )
    .order_by(SUBMISSION.c.id)
)
_INSERT_SUBMISSION = sa.insert(SUBMISSION).returning(SUBMISSION.c.id)
_INSERT_ANSWERS = sa.insert(ANSWER)
_INVITATION_BY_TOKEN = sa.select(INVITATION).where(INVITATION.c.token_sha256 == _bp("token_sha256"))
_RESPONDENT_BY_ID = sa.select(RESPONDENT).where(RESPONDENT.c.id == _bp("id"))
_RESPONDENT_BY_KEY = sa.select(RESPONDENT).where(
    RESPONDENT.c.campaign_id == _bp("campaign_id"), RESPONDENT.c.key == _bp("key")
)
_RESPONDENT_BY_PHONE = (
    sa.select(RESPONDENT)
    .where(RESPONDENT.c.campaign_id == _bp("campaign_id"), RESPONDENT.c.phone_key == _bp("phone_key"))
    .order_by(RESPONDENT.c.id)
)
_COUNTED = (
    sa.select(BALLOT.c.id, BALLOT.c.answered_at, BALLOT.c.submission_id)
    .where(
        BALLOT.c.campaign_id == _bp("campaign_id"),
        BALLOT.c.unit_code == _bp("unit_code"),
        BALLOT.c.voter_key == _bp("voter_key"),
        BALLOT.c.status == "counted",
    )
    .with_for_update()
)
_INSERT_BALLOT = sa.insert(BALLOT).returning(BALLOT.c.id)
_SLOT_COLUMNS = [BALLOT.c.campaign_id, BALLOT.c.unit_code, BALLOT.c.voter_key]
# A literal, not a bind parameter: PostgreSQL must see that it matches the index predicate.
_SLOT_WHERE = sa.text("status = 'counted'")
_INSERT_COUNTED = {
    "sqlite": sqlite_insert(BALLOT)
    .on_conflict_do_nothing(index_elements=_SLOT_COLUMNS, index_where=_SLOT_WHERE)
    .returning(BALLOT.c.id),
    "postgresql": pg_insert(BALLOT)
    .on_conflict_do_nothing(index_elements=_SLOT_COLUMNS, index_where=_SLOT_WHERE)
    .returning(BALLOT.c.id),
}


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Voter:
    key: str
    kind: str  # respondent | transaction
    tier: Tier
    respondent: sa.Row[Any] | None


class _Refused(Exception):
    """Internal: the submission is rejected with these problems."""

    def __init__(self, *problems: Problem) -> None:
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Displaced:
    """
    A counted ballot that a ballot taken in later lost its count to (an earlier answer under
    first_counts, a later one under last_counts): its receipt said counted, it no longer is.
    """

    submission_id: int
    unit: str
    status: BallotStatus
    reason: str


_OnDisplaced = Callable[[Displaced], None]


def ingest(store: Store, item: Item) -> Receipt:
    """
    Take one ballot (or one adapter rejection) into the store, in one transaction.

    Returns:
        The receipt: what became of the submission and of each unit's ballot.
    """
    for attempt in range(_MAX_RACE_ROUNDS):
        try:
            with store.writing(), store.engine.begin() as connection:
                return _ingest_one(connection, store, item)
        except sa.exc.IntegrityError:
            # Two identical deliveries raced on uq_submission_content: the next round finds the
            # winner and answers already_received. Anything else fails again and is raised.
            if attempt == _MAX_RACE_ROUNDS - 1:
                raise
    raise AssertionError("unreachable")


def ingest_in(connection: Connection, store: Store, item: Item) -> Receipt:
    """
    ingest() as one step of a transaction the caller owns, inside a savepoint the caller made
    (the group writer, collect.store.group_commit): no savepoint of its own. An IntegrityError
    (on PostgreSQL, a race lost to another writer) goes to the caller, which rolls back to its
    savepoint and runs the step again; the next round then finds the winner.
    """
    return _ingest_one(connection, store, item)


def ingest_batch(store: Store, items: Iterable[Item]) -> list[Receipt]:
    """
    Take many items in one transaction (an import batch): all of them or none.

    Each item runs in its own savepoint, so a race lost on one row is retried without
    undoing the others.
    """
    receipts: list[Receipt] = []
    with store.writing(), store.engine.begin() as connection:
        for item in items:
            receipts.append(_in_savepoint(connection, store, item))
    return receipts


def _in_savepoint(
    connection: Connection, store: Store, item: Item, on_displaced: _OnDisplaced | None = None
) -> Receipt:
    for _attempt in range(_MAX_RACE_ROUNDS):
        savepoint = connection.begin_nested()
        try:
            receipt = _ingest_one(connection, store, item, on_displaced)
        except sa.exc.IntegrityError:
            savepoint.rollback()
            continue
        savepoint.commit()
        return receipt
    raise RuntimeError(f"ingest kept losing races for {item.source_ref!r}")


def content_sha256(store: Store, item: Item) -> str:
    """What makes two deliveries "the same": everything the respondent said, not when it arrived."""
    return _content_sha256(item, _identity_hash(store.settings.secret(), item))


def _identity_hash(secret: bytes, item: Item) -> str | None:
    """
    The keyed hash of the item's identity under its campaign. For a roster id, a phone number
    or a transaction it is also the key ingest() looks the voter up by (see _voter_keys).
    """
    if isinstance(item, Rejection) or item.identity is None:
        return None
    # Keyed, so the hash of a submission cannot be used to test guesses of a phone number.
    return keyed_hash(secret, item.campaign, item.identity.kind, item.identity.value)


def _content_sha256(item: Item, identity: str | None) -> str:
    if isinstance(item, Rejection):
        body: dict[str, Any] = {"rejection": [p.as_dict() for p in item.problems], "raw": item.raw}
    else:
        body = {
            "identity": identity,
            "answers": sorted(
                ([a.unit, a.aspect, a.level, a.points, a.dont_know] for a in item.answers), key=_sort_key
            ),
            "answered_at": as_utc(item.answered_at).isoformat(),
            "comment": item.comment,
            "tier": item.tier,
        }
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, default=str, ensure_ascii=False).encode()
    ).hexdigest()


def _sort_key(row: list[Any]) -> list[tuple[bool, Any]]:
    # A level and points (or "don't know") for the same unit and aspect must be rejected, not
    # crash the sort on None < "satisfied". None sorts last; other rows keep their old order.
    return [(value is None, "" if value is None else value) for value in row]


def _ingest_one(
    connection: Connection, store: Store, item: Item, on_displaced: _OnDisplaced | None = None
) -> Receipt:
    sha = content_sha256(store, item)
    previous = connection.execute(
        _PREVIOUS, {"campaign": item.campaign, "channel": item.channel, "external_id": item.source_ref[:255]}
    ).all()
    for row in previous:
        if row.content_sha256 == sha:
            return _replay(connection, row.id)
    if previous:
        # Same source_ref, other content: a tampered retry or an export that changed under the
        # same call id. Kept for an operator to look at, never counted.
        problem = Problem(
            "source_ref",
            "conflict",
            f"{item.source_ref!r} was received before with different content (submission {previous[0].id})",
        )
        return _store_rejection(connection, item, sha, (problem,), status="conflict")

    if isinstance(item, Rejection):
        return _store_rejection(connection, item, sha, item.problems)

    campaign = load_campaign(store, connection, item.campaign)
    if campaign is None:
        problem = Problem("campaign", "unknown_campaign", f"campaign {item.campaign!r} does not exist")
        return _store_rejection(connection, item, sha, (problem,))
    try:
        _check_answers(campaign.spec, item)
        voter = _resolve_voter(connection, store, campaign, item)
        _check_eligibility(campaign.spec, voter, item)
    except _Refused as refused:
        return _store_rejection(connection, item, sha, refused.problems)

    code = new_receipt()
    submission_id = _insert_submission(connection, item, sha, code, status="accepted")
    results = tuple(
        _cast_ballot(connection, campaign, voter, item, submission_id, unit, answers, on_displaced)
        for unit, answers in _by_unit(item.answers)
    )
    outcome: Outcome = "counted" if any(r.status == "counted" for r in results) else "not_counted"
    return Receipt(outcome=outcome, code=code, submission_id=submission_id, units=results)


def _replay(connection: Connection, submission_id: int) -> Receipt:
    """A redelivery: count the delivery, add nothing, answer as the first time."""
    connection.execute(
        sa.update(SUBMISSION)
        .where(SUBMISSION.c.id == submission_id)
        .values(deliveries=SUBMISSION.c.deliveries + 1)
    )
    row = connection.execute(sa.select(SUBMISSION).where(SUBMISSION.c.id == submission_id)).one()
    ballots = connection.execute(
        sa.select(BALLOT.c.unit_code, BALLOT.c.status, BALLOT.c.reason)
        .where(BALLOT.c.submission_id == submission_id)
        .order_by(BALLOT.c.id)
    ).all()
    problems = tuple(Problem(**p) for p in (row.problems or []))
    return Receipt(
        outcome="already_received",
        code=row.receipt,
        submission_id=submission_id,
        units=tuple(UnitResult(b.unit_code, cast(BallotStatus, b.status), b.reason) for b in ballots),
        problems=problems,
        reason=row.reason,
    )


def _insert_submission(
    connection: Connection,
    item: Item,
    sha: str,
    code: str,
    *,
    status: str,
    problems: Sequence[Problem] = (),
) -> int:
    row = _submission_row(item, sha, code, status, problems)
    return int(connection.execute(_INSERT_SUBMISSION, row).scalar_one())


def _submission_row(
    item: Item, sha: str, code: str, status: str, problems: Sequence[Problem], deliveries: int = 1
) -> dict[str, Any]:
    answered_at = as_utc(item.answered_at) if isinstance(item, BallotSubmission) else None
    return {
        "campaign_code": item.campaign[:64],
        "channel": item.channel,
        "external_id": item.source_ref[:255],
        "content_sha256": sha,
        "received_at": as_utc(item.received_at),
        "answered_at": answered_at,
        "payload": dict(item.raw),
        "status": status,
        "reason": problems[0].code if problems else None,
        "problems": [p.as_dict() for p in problems] or None,
        "receipt": code,
        "deliveries": deliveries,
        "meta": dict(item.meta) or None,
    }


def _store_rejection(
    connection: Connection, item: Item, sha: str, problems: Sequence[Problem], *, status: str = "rejected"
) -> Receipt:
    code = new_receipt()
    submission_id = _insert_submission(connection, item, sha, code, status=status, problems=problems)
    return Receipt(
        outcome="conflict" if status == "conflict" else "rejected",
        code=code,
        submission_id=submission_id,
        problems=tuple(problems),
        reason=problems[0].code if problems else status,
    )


def _by_unit(answers: Sequence[Answer]) -> list[tuple[str, list[Answer]]]:
    grouped: dict[str, list[Answer]] = {}
    for answer in answers:
        grouped.setdefault(answer.unit, []).append(answer)
    return sorted(grouped.items())


def _check_answers(spec: CampaignSpec, item: BallotSubmission) -> None:
    """Every answer must fit the campaign; collect all problems, not just the first."""
    problems: list[Problem] = []
    if item.channel not in spec.channels:
        problems.append(Problem("channel", "channel_disabled", f"channel {item.channel!r} is not enabled"))
    answered_at = as_utc(item.answered_at)
    if answered_at < as_utc(spec.opens_at):
        problems.append(
            Problem(
                "answered_at",
                "campaign_not_open",
                f"answered {answered_at:%Y-%m-%d %H:%M} UTC, before the campaign opens",
            )
        )
    if answered_at > as_utc(spec.closes_at):
        problems.append(
            Problem(
                "answered_at",
                "campaign_closed",
                f"answered {answered_at:%Y-%m-%d %H:%M} UTC, after the campaign closed",
            )
        )
    if not item.answers:
        problems.append(Problem("answers", "no_answers", "the ballot has no answers"))
    seen: set[tuple[str, str]] = set()
    for i, answer in enumerate(item.answers):
        where = f"answers[{i}]"
        if spec.unit(answer.unit) is None:
            problems.append(
                Problem(
                    f"{where}.unit", "unknown_unit", f"unit {answer.unit!r} is not in campaign {spec.code}"
                )
            )
        if spec.aspect(answer.aspect) is None:
            problems.append(
                Problem(
                    f"{where}.aspect",
                    "unknown_aspect",
                    f"aspect {answer.aspect!r} is not asked in {spec.code}",
                )
            )
        if (answer.unit, answer.aspect) in seen:
            problems.append(
                Problem(where, "duplicate_answer", f"{answer.unit}/{answer.aspect} is answered twice")
            )
        seen.add((answer.unit, answer.aspect))
        problems.extend(_check_value(spec, answer, where))
    if not spec.allow_partial:
        for unit in {a.unit for a in item.answers if spec.unit(a.unit) is not None}:
            missing = sorted(
                {a.code for a in spec.aspects} - {a.aspect for a in item.answers if a.unit == unit}
            )
            if missing:
                problems.append(
                    Problem(
                        f"answers[{unit}]",
                        "incomplete",
                        f"unit {unit}: aspects {', '.join(missing)} not answered",
                    )
                )
    if problems:
        raise _Refused(*problems)


def _check_value(spec: CampaignSpec, answer: Answer, where: str) -> list[Problem]:
    scale = spec.scale
    given = sum([answer.level is not None, answer.points is not None, answer.dont_know])
    if given != 1:
        return [Problem(where, "bad_answer", "give exactly one of a level, points or don't know")]
    if answer.dont_know or answer.level == DONT_KNOW:
        if not scale.dont_know:
            return [Problem(where, "dont_know_not_offered", 'this campaign does not offer "don\'t know"')]
        return []
    if scale.kind == "levels":
        if answer.level is None or scale.level(answer.level) is None:
            shown = answer.level if answer.level is not None else answer.points
            return [
                Problem(
                    f"{where}.level",
                    "unknown_level",
                    f"{shown!r} is not a level of this scale ({', '.join(scale.level_codes)})",
                )
            ]
        return []
    if answer.points is None or not scale.min_points <= answer.points <= scale.max_points:
        shown = answer.points if answer.points is not None else answer.level
        return [
            Problem(
                f"{where}.points",
                "out_of_range",
                f"{shown!r} is outside {scale.min_points}–{scale.max_points}",
            )
        ]
    return []


def _resolve_voter(
    connection: Connection, store: Store, campaign: LoadedCampaign, item: BallotSubmission
) -> _Voter:
    spec, secret = campaign.spec, store.settings.secret()
    identity = _identity_of(item)
    invitation = respondent = None
    key = None
    if identity.kind == "token":
        invitation = connection.execute(
            _INVITATION_BY_TOKEN, {"token_sha256": sha256_hex(identity.value)}
        ).first()
        if _invitation_problem(campaign.id, invitation) is None:
            assert invitation is not None
            respondent = connection.execute(_RESPONDENT_BY_ID, {"id": invitation.respondent_id}).one()
    else:
        key = keyed_hash(secret, spec.code, _key_kind(identity), identity.value)
        if identity.kind == "roster_id":
            respondent = connection.execute(
                _RESPONDENT_BY_KEY, {"campaign_id": campaign.id, "key": key}
            ).first()
        elif identity.kind == "phone":
            respondent = connection.execute(
                _RESPONDENT_BY_PHONE, {"campaign_id": campaign.id, "phone_key": key}
            ).first()
    return _decide_voter(spec, campaign.id, item, identity, key, invitation, respondent)


def _identity_of(item: BallotSubmission) -> Identity:
    # An anonymous device rating: the submission itself is the transaction.
    return item.identity or Identity("transaction", f"{item.channel}:{item.source_ref}")


def _key_kind(identity: Identity) -> str:
    return identity.kind if identity.kind in ("roster_id", "phone") else "transaction"


def _invitation_problem(campaign_id: int, invitation: sa.Row[Any] | None) -> Problem | None:
    if invitation is None or invitation.campaign_id != campaign_id:
        return Problem("token", "unknown_token", "this ballot link is not valid")
    if invitation.revoked_at is not None:
        return Problem("token", "revoked_token", "this ballot link has been withdrawn")
    return None


def _decide_voter(
    spec: CampaignSpec,
    campaign_id: int,
    item: BallotSubmission,
    identity: Identity,
    key: str | None,
    invitation: sa.Row[Any] | None,
    respondent: sa.Row[Any] | None,
) -> _Voter:
    """
    Who voted, given what the store holds for the identity (looked up one by one by
    _resolve_voter, or for a whole chunk at once by the bulk path).

    Args:
        key: the keyed hash of a roster id, phone number or transaction (None for a token).
        respondent: for a token, the invitation's respondent; for a roster id, the respondent
            with that key; for a phone number, the first respondent with that phone key.
    """
    if identity.kind == "token":
        problem = _invitation_problem(campaign_id, invitation)
        if problem is not None:
            raise _Refused(problem)
        assert respondent is not None
    elif identity.kind == "roster_id":
        if respondent is None:
            raise _Refused(
                Problem("respondent", "not_on_roster", "this respondent id is on no roster of the campaign")
            )
    elif identity.kind == "phone":
        assert key is not None
        if respondent is None:
            tier = _open_tier(spec, item)
            if tier is None:
                raise _Refused(
                    Problem("respondent", "unknown_respondent", "this number is on no roster of the campaign")
                )
            return _Voter(key, "respondent", tier, None)
    else:
        assert key is not None
        tier = _open_tier(spec, item)
        if tier is None:
            raise _Refused(Problem("tier", "no_open_tier", "this campaign has no tier open to the public"))
        return _Voter(key, "transaction", tier, None)

    tier = spec.tier(respondent.tier_code)
    if tier is None:
        raise _Refused(
            Problem("tier", "unknown_tier", f"tier {respondent.tier_code!r} is no longer in the campaign")
        )
    return _Voter(respondent.key, "respondent", tier, respondent)


def _open_tier(spec: CampaignSpec, item: BallotSubmission) -> Tier | None:
    if item.tier is not None:
        tier = spec.tier(item.tier)
        return tier if tier is not None and tier.source == "open" else None
    open_tiers = spec.open_tiers
    return open_tiers[0] if len(open_tiers) == 1 else None


def _check_eligibility(spec: CampaignSpec, voter: _Voter, item: BallotSubmission) -> None:
    """Which units may this respondent rate (tier.rates)? A unit they may not rate is refused."""
    respondent = voter.respondent
    if respondent is None:
        return
    problems: list[Problem] = []
    units = sorted({a.unit for a in item.answers})
    if voter.tier.rates == "all_but_own" and respondent.own_unit in units:
        problems.append(
            Problem(f"answers[{respondent.own_unit}]", "own_unit", "respondents do not rate their own unit")
        )
    if voter.tier.rates == "assigned":
        assigned = set(respondent.assigned_units or [])
        for unit in units:
            if unit not in assigned:
                problems.append(
                    Problem(
                        f"answers[{unit}]",
                        "unit_not_assigned",
                        f"unit {unit} is not assigned to this respondent",
                    )
                )
    if problems:
        raise _Refused(*problems)


def _cast_ballot(
    connection: Connection,
    campaign: LoadedCampaign,
    voter: _Voter,
    item: BallotSubmission,
    submission_id: int,
    unit: str,
    answers: Sequence[Answer],
    on_displaced: _OnDisplaced | None = None,
) -> UnitResult:
    """Write one unit's ballot and decide, against the database, whether it counts."""
    row = _ballot_row(campaign.id, voter, item, submission_id, unit)
    status, reason = _initial_status(campaign.spec, voter, item)
    if status != "counted":
        return _insert_ballot(connection, row, answers, status, reason)
    return _settle_counted(connection, campaign.spec.policy, voter.kind, row, answers, on_displaced)


def _ballot_row(
    campaign_id: int, voter: _Voter, item: BallotSubmission, submission_id: int | None, unit: str
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "submission_id": submission_id,
        "unit_code": unit,
        "tier_code": voter.tier.code,
        "voter_key": voter.key,
        "voter_kind": voter.kind,
        "channel": item.channel,
        "answered_at": as_utc(item.answered_at),
        "received_at": as_utc(item.received_at),
        "comment": item.comment,
        "meta": dict(item.meta) or None,
    }


def _settle_counted(
    connection: Connection,
    policy: str,
    voter_kind: str,
    row: dict[str, Any],
    answers: Sequence[Answer],
    on_displaced: _OnDisplaced | None = None,
) -> UnitResult:
    """Insert a ballot that counts unless the slot's counted ballot wins: decided against the database."""
    unit, answered_at = row["unit_code"], row["answered_at"]
    _lock_slot(connection, row)
    for _round in range(_MAX_RACE_ROUNDS):
        current = connection.execute(
            _COUNTED, {"campaign_id": row["campaign_id"], "unit_code": unit, "voter_key": row["voter_key"]}
        ).first()
        if current is None:
            result = _try_insert_counted(connection, row, answers)
            if result is not None:
                return result
            continue  # another writer took the slot since we looked: decide against it
        new_wins = _new_wins(policy, voter_kind, answered_at, as_utc(current.answered_at))
        if not new_wins:
            status, reason = _loser(policy, voter_kind)
            return _insert_ballot(connection, row, answers, status, reason)
        # The displaced ballot gets what it would have got had it arrived second: one rule
        # for both arrival orders (a transaction's later rating is a duplicate, not superseded).
        displaced_status, displaced_reason = _loser(policy, voter_kind)
        demoted = connection.execute(
            sa.update(BALLOT)
            .where(BALLOT.c.id == current.id, BALLOT.c.status == "counted")
            .values(status=displaced_status, reason=displaced_reason)
        ).rowcount
        if demoted == 1:
            if on_displaced is not None:
                on_displaced(Displaced(int(current.submission_id), unit, displaced_status, displaced_reason))
            result = _try_insert_counted(connection, row, answers)
            if result is not None:
                return result
    raise RuntimeError(f"one-vote decision for unit {unit} did not settle")


_SLOT_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:slot, 0))")


def _lock_slot(connection: Connection, row: dict[str, Any]) -> None:
    """
    On PostgreSQL, make writers of one (campaign, unit, voter) slot take turns until commit.

    Without it the decide-demote-insert loop is correct but can starve: under READ COMMITTED
    each writer may keep finding the slot changed by another (seen with 50 writers on one
    slot). Held to the end of the transaction; units are cast in sorted order, so two
    submissions of one voter take their slot locks in the same order and cannot deadlock.
    SQLite needs nothing: its writers are already serialised by BEGIN IMMEDIATE.
    """
    if connection.dialect.name != "postgresql":
        return
    slot = f"{row['campaign_id']}|{row['unit_code']}|{row['voter_key']}"
    connection.execute(_SLOT_LOCK, {"slot": slot})


def _initial_status(
    spec: CampaignSpec, voter: _Voter, item: BallotSubmission
) -> tuple[BallotStatus, str | None]:
    respondent = voter.respondent
    if respondent is not None and voter.tier.sampling == "draw" and not respondent.in_sample:
        return "invalid", "not_sampled"
    if item.review is not None:
        return "pending_review", item.review
    return "counted", None


def _new_wins(policy: str, voter_kind: str, new: datetime, current: datetime) -> bool:
    # A ticket or device-day is one service transaction: the first rating is the rating.
    if voter_kind == "transaction" or policy == "first_counts":
        return new < current
    return new >= current


def _loser(policy: str, voter_kind: str) -> tuple[BallotStatus, str]:
    if voter_kind == "transaction":
        return "duplicate", "transaction_already_rated"
    if policy == "first_counts":
        return "superseded", "earlier_answer_counts"
    return "superseded", "later_answer_counts"


def _try_insert_counted(
    connection: Connection, row: dict[str, Any], answers: Sequence[Answer]
) -> UnitResult | None:
    """Insert as counted; None when the UNIQUE index says someone else holds the slot."""
    statement = _INSERT_COUNTED[connection.dialect.name]
    ballot_id = connection.execute(
        statement, {**row, "status": "counted", "reason": None}
    ).scalar_one_or_none()
    if ballot_id is None:
        return None
    _insert_answers(connection, ballot_id, answers)
    return UnitResult(row["unit_code"], "counted", None)


def _insert_ballot(
    connection: Connection,
    row: dict[str, Any],
    answers: Sequence[Answer],
    status: BallotStatus,
    reason: str | None,
) -> UnitResult:
    ballot_id = connection.execute(_INSERT_BALLOT, {**row, "status": status, "reason": reason}).scalar_one()
    _insert_answers(connection, ballot_id, answers)
    return UnitResult(row["unit_code"], status, reason)


def _insert_answers(connection: Connection, ballot_id: int, answers: Sequence[Answer]) -> None:
    connection.execute(_INSERT_ANSWERS, _answer_rows(ballot_id, answers))


def _answer_rows(ballot_id: int, answers: Sequence[Answer]) -> list[dict[str, Any]]:
    return [
        {
            "ballot_id": ballot_id,
            "aspect_code": a.aspect,
            "level_code": None if a.dont_know or a.level == DONT_KNOW else a.level,
            "points": a.points,
            "dont_know": a.dont_know or a.level == DONT_KNOW,
        }
        for a in answers
    ]


# ---------------------------------------------------------------------------------------------
# The set-based path: ingest_stream()
#
# The same decisions as _ingest_one(), taken for a chunk of items at once: a few queries read
# what the chunk needs (earlier submissions of its external ids, its respondents, the counted
# ballots of its slots), the decisions are made in memory in arrival order, and the rows go in
# with a few multi-row statements. tests/store/test_ingest_bulk.py holds it to ingest_batch().

# Rows per IN (...) list: far below SQLite's 32766 bound parameters, whatever the chunk size.
_IN_LIST = 5000
_BULK_PREVIOUS = sa.select(
    SUBMISSION.c.id,
    SUBMISSION.c.external_id,
    SUBMISSION.c.content_sha256,
    SUBMISSION.c.receipt,
    SUBMISSION.c.status,
    SUBMISSION.c.reason,
    SUBMISSION.c.problems,
)
_BULK_SUBMISSION_BALLOTS = sa.select(
    BALLOT.c.id,
    BALLOT.c.submission_id,
    BALLOT.c.unit_code,
    BALLOT.c.status,
    BALLOT.c.reason,
    BALLOT.c.answered_at,
)
_BULK_COUNTED = sa.select(
    BALLOT.c.id,
    BALLOT.c.submission_id,
    BALLOT.c.campaign_id,
    BALLOT.c.unit_code,
    BALLOT.c.voter_key,
    BALLOT.c.status,
    BALLOT.c.reason,
    BALLOT.c.answered_at,
)
# RETURNING rows are matched to their parameters by a natural key, not by position:
# sort_by_parameter_order=True makes SQLAlchemy send one statement per row on SQLite (measured).
_BULK_INSERT_SUBMISSIONS = sa.insert(SUBMISSION).returning(
    SUBMISSION.c.id, SUBMISSION.c.external_id, SUBMISSION.c.content_sha256
)
# Every ballot of a chunk in one statement: the index guard only ever skips a counted one.
_BULK_INSERT_BALLOTS = {
    dialect: statement.on_conflict_do_nothing(
        index_elements=_SLOT_COLUMNS, index_where=_SLOT_WHERE
    ).returning(BALLOT.c.id, BALLOT.c.submission_id, BALLOT.c.unit_code)
    for dialect, statement in (("sqlite", sqlite_insert(BALLOT)), ("postgresql", pg_insert(BALLOT)))
}
_BULK_DEMOTE = (
    sa.update(BALLOT)
    .where(BALLOT.c.id == _bp("b_id"), BALLOT.c.status == "counted")
    .values(status=_bp("b_status"), reason=_bp("b_reason"))
)
_BULK_DELIVERIES = (
    sa.update(SUBMISSION)
    .where(SUBMISSION.c.id == _bp("s_id"))
    .values(deliveries=SUBMISSION.c.deliveries + _bp("s_more"))
)


def ingest_stream(
    store: Store,
    items: Iterable[Item],
    on_receipt: Callable[[Item, Receipt], None],
    *,
    connection: Connection | None = None,
    chunk: int = 5000,
    on_displaced: _OnDisplaced | None = None,
) -> int:
    """
    Take a stream of items (an import) in one transaction, a chunk at a time: all or none.

    The store ends exactly as ingest_batch() would leave it for the same items in the same
    order, and every receipt is the one ingest_batch() would give; only ids and receipt codes
    differ. Nothing is kept from one chunk to the next, so memory does not grow with the stream.

    Args:
        on_receipt: called with each item and its receipt, in stream order, as its chunk is
            written (still inside the transaction: a later failure rolls everything back).
        connection: a connection inside a transaction the caller owns, holding
            `store.writing()`; without one, ingest_stream() opens and commits its own.
        on_displaced: called, after the receipts of the chunk that did it, for every counted
            ballot (of this stream or from before) that an item of the stream displaced.

    Returns:
        The number of items taken.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    if connection is None:
        with store.writing(), store.engine.begin() as own:
            return ingest_stream(
                store, items, on_receipt, connection=own, chunk=chunk, on_displaced=on_displaced
            )
    taken = 0
    for batch in _chunks(items, chunk):
        _take_chunk(connection, store, batch, on_receipt, on_displaced)
        taken += len(batch)
    return taken


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Unsettled(Exception):
    """Internal: another writer changed what the chunk read; take the chunk row by row."""


def _take_chunk(
    connection: Connection,
    store: Store,
    items: list[Item],
    on_receipt: Callable[[Item, Receipt], None],
    on_displaced: _OnDisplaced | None,
) -> None:
    displaced: list[Displaced] = []
    savepoint = connection.begin_nested()
    try:
        receipts = _Chunk(connection, store, items, displaced.append).run()
    except (sa.exc.IntegrityError, _Unsettled):
        # A concurrent writer (another process, on PostgreSQL) stored one of these submissions
        # since we read: undo the chunk and take it as ingest_batch() does, item by item.
        savepoint.rollback()
        displaced.clear()
        receipts = [_in_savepoint(connection, store, item, displaced.append) for item in items]
    else:
        savepoint.commit()
    for item, receipt in zip(items, receipts, strict=True):
        on_receipt(item, receipt)
    if on_displaced is not None:
        for event in displaced:
            on_displaced(event)


class _Ballot:
    """A ballot as the chunk sees it: read from the store (`id` set) or to be inserted."""

    __slots__ = (
        "answered_at",
        "answers",
        "id",
        "reason",
        "row",
        "rule",
        "status",
        "sub",
        "submission_id",
        "unit",
    )

    def __init__(
        self,
        unit: str,
        status: BallotStatus,
        reason: str | None,
        answered_at: datetime,
        *,
        id: int | None = None,
        submission_id: int | None = None,
        row: dict[str, Any] | None = None,
        answers: Sequence[Answer] = (),
        sub: _Sub | None = None,
        rule: tuple[str, str] | None = None,
    ) -> None:
        self.unit, self.status, self.reason, self.answered_at = unit, status, reason, answered_at
        self.id, self.submission_id, self.row, self.answers, self.sub = id, submission_id, row, answers, sub
        self.rule = rule  # (policy, voter kind): how to decide again if another writer wins the slot


class _Sub:
    """A submission as the chunk sees it: read from the store (`id` set) or to be inserted."""

    __slots__ = (
        "ballots",
        "code",
        "conflicts_with",
        "deliveries",
        "id",
        "item",
        "problems",
        "results",
        "sha",
        "status",
    )

    def __init__(
        self,
        sha: str,
        status: str,
        problems: tuple[Problem, ...],
        *,
        id: int | None = None,
        code: str = "",
        item: Item | None = None,
    ) -> None:
        self.sha, self.status, self.problems, self.id, self.code, self.item = (
            sha,
            status,
            problems,
            id,
            code,
            item,
        )
        self.deliveries = 0  # added by this chunk
        self.ballots: list[_Ballot] = []
        self.results: list[UnitResult] = []
        self.conflicts_with: _Sub | None = None

    @property
    def reason(self) -> str | None:
        return self.problems[0].code if self.problems else None


class _Chunk:
    """One chunk of ingest_stream(): read, decide in memory in arrival order, write."""

    def __init__(
        self, connection: Connection, store: Store, items: list[Item], on_displaced: _OnDisplaced
    ) -> None:
        self.connection, self.store, self.items, self.on_displaced = connection, store, items, on_displaced
        secret = store.settings.secret()
        self.identity_hashes = [_identity_hash(secret, item) for item in items]
        self.shas = [_content_sha256(item, h) for item, h in zip(items, self.identity_hashes, strict=True)]
        self.campaigns: dict[str, LoadedCampaign | None] = {}
        # (campaign, channel, external id) → its submissions in id order, as _PREVIOUS finds them
        self.previous: dict[tuple[str, str, str], list[_Sub]] = {}
        self.stored_ballots: dict[int, _Ballot] = {}
        self.counted: dict[tuple[int, str, str], _Ballot] = {}
        self.displaced: list[_Ballot] = []
        self.new: list[_Sub] = []  # in arrival order

    # -- reading -------------------------------------------------------------------------------

    def run(self) -> list[Receipt]:
        self._read_previous()
        verdicts = self._validate()
        self._read_counted(verdicts)
        entries = [self._decide(i, item, verdicts[i]) for i, item in enumerate(self.items)]
        self._write()
        for ballot in self.displaced:
            submission_id = ballot.submission_id if ballot.sub is None else ballot.sub.id
            assert submission_id is not None
            assert ballot.reason is not None
            self.on_displaced(Displaced(submission_id, ballot.unit, ballot.status, ballot.reason))
        return [self._receipt(entry) for entry in entries]

    def _campaign(self, code: str) -> LoadedCampaign | None:
        if code not in self.campaigns:
            self.campaigns[code] = load_campaign(self.store, self.connection, code)
        return self.campaigns[code]

    def _read_previous(self) -> None:
        wanted: dict[tuple[str, str], set[str]] = {}
        for item in self.items:
            wanted.setdefault((item.campaign, item.channel), set()).add(item.source_ref[:255])
        rows: list[tuple[str, str, Any]] = []
        for (campaign, channel), refs in wanted.items():
            for part in _pieces(sorted(refs)):
                rows.extend(
                    (campaign, channel, row)
                    for row in self.connection.execute(
                        _BULK_PREVIOUS.where(
                            SUBMISSION.c.campaign_code == campaign,
                            SUBMISSION.c.channel == channel,
                            SUBMISSION.c.external_id.in_(part),
                        )
                    )
                )
        rows.sort(key=lambda r: int(r[2].id))
        for campaign, channel, row in rows:
            problems = tuple(Problem(**p) for p in (row.problems or []))
            sub = _Sub(row.content_sha256, row.status, problems, id=int(row.id), code=row.receipt)
            self.previous.setdefault((campaign, channel, row.external_id), []).append(sub)
        # A redelivery of a stored submission answers with its ballots as they are now.
        replayed: dict[int, _Sub] = {}
        for item, sha in zip(self.items, self.shas, strict=True):
            for sub in self.previous.get((item.campaign, item.channel, item.source_ref[:255]), ()):
                if sub.sha == sha and sub.status == "accepted":
                    assert sub.id is not None
                    replayed[sub.id] = sub
        for part in _pieces(sorted(replayed)):
            for row in self.connection.execute(
                _BULK_SUBMISSION_BALLOTS.where(BALLOT.c.submission_id.in_(part)).order_by(BALLOT.c.id)
            ):
                replayed[row.submission_id].ballots.append(self._stored_ballot(row))

    def _stored_ballot(self, row: Any) -> _Ballot:
        ballot = self.stored_ballots.get(row.id)
        if ballot is None:
            ballot = _Ballot(
                row.unit_code,
                cast(BallotStatus, row.status),
                row.reason,
                as_utc(row.answered_at),
                id=int(row.id),
                submission_id=int(row.submission_id),
            )
            self.stored_ballots[ballot.id] = ballot  # type: ignore[index]
        return ballot

    def _validate(self) -> list[_Voter | tuple[Problem, ...] | None]:
        """Each new ballot's voter, or the problems that refuse it (None: not a ballot to judge)."""
        secret = self.store.settings.secret()
        judged: list[tuple[int, BallotSubmission, LoadedCampaign, Identity, str | None]] = []
        tokens: set[str] = set()
        keys: dict[int, set[str]] = {}
        phone_keys: dict[int, set[str]] = {}
        for i, item in enumerate(self.items):
            if isinstance(item, Rejection):
                continue
            stored = self.previous.get((item.campaign, item.channel, item.source_ref[:255]), ())
            if any(sub.sha == self.shas[i] for sub in stored):
                continue  # a redelivery: nothing to judge
            campaign = self._campaign(item.campaign)
            if campaign is None:
                continue
            identity = _identity_of(item)
            key = None
            if identity.kind == "token":
                tokens.add(sha256_hex(identity.value))
            else:
                # The content hash already keyed the identity under this campaign's code.
                key = self.identity_hashes[i] if item.identity is not None else None
                if key is None:
                    key = keyed_hash(secret, campaign.spec.code, _key_kind(identity), identity.value)
                if identity.kind == "roster_id":
                    keys.setdefault(campaign.id, set()).add(key)
                elif identity.kind == "phone":
                    phone_keys.setdefault(campaign.id, set()).add(key)
            judged.append((i, item, campaign, identity, key))

        invitations: dict[str, sa.Row[Any]] = {}
        for part in _pieces(sorted(tokens)):
            for row in self.connection.execute(
                sa.select(INVITATION).where(INVITATION.c.token_sha256.in_(part))
            ):
                invitations[row.token_sha256] = row
        by_id: dict[int, sa.Row[Any]] = {}
        for part in _pieces(sorted({int(r.respondent_id) for r in invitations.values()})):
            for row in self.connection.execute(sa.select(RESPONDENT).where(RESPONDENT.c.id.in_(part))):
                by_id[row.id] = row
        by_key: dict[tuple[int, str], sa.Row[Any]] = {}
        for campaign_id, wanted in keys.items():
            for part in _pieces(sorted(wanted)):
                for row in self.connection.execute(
                    sa.select(RESPONDENT).where(
                        RESPONDENT.c.campaign_id == campaign_id, RESPONDENT.c.key.in_(part)
                    )
                ):
                    by_key[(campaign_id, row.key)] = row
        by_phone: dict[tuple[int, str], sa.Row[Any]] = {}
        for campaign_id, wanted in phone_keys.items():
            for part in _pieces(sorted(wanted)):
                for row in self.connection.execute(
                    sa.select(RESPONDENT)
                    .where(RESPONDENT.c.campaign_id == campaign_id, RESPONDENT.c.phone_key.in_(part))
                    .order_by(RESPONDENT.c.id)
                ):
                    by_phone.setdefault(
                        (campaign_id, row.phone_key), row
                    )  # the first, as _RESPONDENT_BY_PHONE

        verdicts: list[_Voter | tuple[Problem, ...] | None] = [None] * len(self.items)
        for i, item, campaign, identity, key in judged:
            invitation = respondent = None
            if identity.kind == "token":
                invitation = invitations.get(sha256_hex(identity.value))
                if invitation is not None:
                    respondent = by_id.get(invitation.respondent_id)
            elif identity.kind == "roster_id":
                respondent = by_key.get((campaign.id, cast(str, key)))
            elif identity.kind == "phone":
                respondent = by_phone.get((campaign.id, cast(str, key)))
            try:
                _check_answers(campaign.spec, item)
                voter = _decide_voter(campaign.spec, campaign.id, item, identity, key, invitation, respondent)
                _check_eligibility(campaign.spec, voter, item)
            except _Refused as refused:
                verdicts[i] = refused.problems
            else:
                verdicts[i] = voter
        return verdicts

    def _read_counted(self, verdicts: list[_Voter | tuple[Problem, ...] | None]) -> None:
        """The counted ballot of every slot the chunk's ballots compete for, locked on PostgreSQL."""
        slots: dict[tuple[int, str], set[str]] = {}
        for item, verdict in zip(self.items, verdicts, strict=True):
            if not isinstance(verdict, _Voter):
                continue
            assert isinstance(item, BallotSubmission)
            campaign = self.campaigns[item.campaign]
            assert campaign is not None
            if _initial_status(campaign.spec, verdict, item)[0] != "counted":
                continue
            for answer in item.answers:
                slots.setdefault((campaign.id, answer.unit), set()).add(verdict.key)
        # Per (campaign, unit), so each part is a range scan of uq_ballot_counted.
        parts = [
            sa.and_(
                BALLOT.c.campaign_id == campaign_id, BALLOT.c.unit_code == unit, BALLOT.c.voter_key.in_(part)
            )
            for (campaign_id, unit), keys in slots.items()
            for part in _pieces(sorted(keys))
        ]
        for start in range(0, len(parts), 50):
            statement = _BULK_COUNTED.where(BALLOT.c.status == "counted", sa.or_(*parts[start : start + 50]))
            for row in self.connection.execute(statement.with_for_update()):
                self.counted[(row.campaign_id, row.unit_code, row.voter_key)] = self._stored_ballot(row)

    # -- deciding, in arrival order --------------------------------------------------------------

    def _decide(
        self, i: int, item: Item, verdict: _Voter | tuple[Problem, ...] | None
    ) -> tuple[_Sub, tuple[UnitResult, ...] | None]:
        """What _ingest_one() does for the item, against the chunk's view of the store."""
        sha = self.shas[i]
        previous = self.previous.get((item.campaign, item.channel, item.source_ref[:255]), [])
        for sub in previous:
            if sub.sha == sha:
                sub.deliveries += 1
                return sub, tuple(UnitResult(b.unit, b.status, b.reason) for b in sub.ballots)
        if previous:
            sub = _Sub(sha, "conflict", (), item=item)
            sub.conflicts_with = previous[0]
        elif isinstance(item, Rejection):
            sub = _Sub(sha, "rejected", item.problems, item=item)
        elif (campaign := self.campaigns.get(item.campaign)) is None:
            problem = Problem("campaign", "unknown_campaign", f"campaign {item.campaign!r} does not exist")
            sub = _Sub(sha, "rejected", (problem,), item=item)
        elif isinstance(verdict, tuple):
            sub = _Sub(sha, "rejected", verdict, item=item)
        else:
            assert isinstance(verdict, _Voter)
            sub = _Sub(sha, "accepted", (), item=item)
            for unit, answers in _by_unit(item.answers):
                self._cast(sub, campaign, verdict, item, unit, answers)
        self.new.append(sub)
        # Stored under the truncated campaign code, as _insert_submission() stores it.
        self.previous.setdefault((item.campaign[:64], item.channel, item.source_ref[:255]), []).append(sub)
        return sub, None

    def _cast(
        self,
        sub: _Sub,
        campaign: LoadedCampaign,
        voter: _Voter,
        item: BallotSubmission,
        unit: str,
        answers: Sequence[Answer],
    ) -> None:
        """_cast_ballot() in memory: the slot's counted ballot is the one the chunk last left there."""
        spec = campaign.spec
        row = _ballot_row(campaign.id, voter, item, None, unit)
        status, reason = _initial_status(spec, voter, item)
        slot = (campaign.id, unit, voter.key)
        current = self.counted.get(slot) if status == "counted" else None
        if current is not None:
            if _new_wins(spec.policy, voter.kind, row["answered_at"], current.answered_at):
                # As _settle_counted(): the displaced ballot gets what it would have got second.
                current.status, current.reason = _loser(spec.policy, voter.kind)
                self.displaced.append(current)
            else:
                status, reason = _loser(spec.policy, voter.kind)
        ballot = _Ballot(
            unit,
            status,
            reason,
            row["answered_at"],
            row=row,
            answers=answers,
            sub=sub,
            rule=(spec.policy, voter.kind),
        )
        if status == "counted":
            self.counted[slot] = ballot
        sub.ballots.append(ballot)
        sub.results.append(UnitResult(unit, status, reason))

    # -- writing ---------------------------------------------------------------------------------

    def _write(self) -> None:
        connection = self.connection
        # Displaced stored ballots first: the index admits one counted ballot per slot.
        demote = [
            {"b_id": b.id, "b_status": b.status, "b_reason": b.reason}
            for b in self.displaced
            if b.id is not None
        ]
        # Locked when read (PostgreSQL), or no other writer at all (SQLite): all still counted.
        if demote and connection.execute(_BULK_DEMOTE, demote).rowcount != len(demote):
            raise _Unsettled("a counted ballot changed under the chunk")
        redelivered = [{"s_id": s.id, "s_more": s.deliveries} for s in self._stored_subs() if s.deliveries]
        if redelivered:
            connection.execute(_BULK_DELIVERIES, redelivered)

        new = self.new
        codes = iter(new_receipts(len(new)))
        for sub in new:
            sub.code = next(codes)
        # A conflict names the submission it conflicts with: insert those once the others have ids.
        self._insert_submissions([s for s in new if s.conflicts_with is None])
        for sub in new:
            if sub.conflicts_with is not None:
                assert sub.item is not None
                sub.problems = (
                    Problem(
                        "source_ref",
                        "conflict",
                        f"{sub.item.source_ref!r} was received before with different content "
                        f"(submission {sub.conflicts_with.id})",
                    ),
                )
        self._insert_submissions([s for s in new if s.conflicts_with is not None])

        ballots = [b for sub in new for b in sub.ballots]
        if not ballots:
            return
        params = []
        for ballot in ballots:
            assert ballot.row is not None
            assert ballot.sub is not None
            ballot.row["submission_id"] = ballot.sub.id
            params.append({**ballot.row, "status": ballot.status, "reason": ballot.reason})
        ids = {
            (row.submission_id, row.unit_code): int(row.id)
            for row in connection.execute(_BULK_INSERT_BALLOTS[connection.dialect.name], params)
        }
        answers: list[dict[str, Any]] = []
        lost: list[_Ballot] = []
        for ballot in ballots:
            assert ballot.sub is not None
            ballot.id = ids.get((ballot.sub.id, ballot.unit))
            if ballot.id is None:
                assert ballot.status == "counted"
                lost.append(ballot)
            else:
                answers.extend(_answer_rows(ballot.id, ballot.answers))
        if answers:
            connection.execute(_INSERT_ANSWERS, answers)
        for ballot in lost:
            # Another process took the slot since we read it: decide this one against the database.
            assert ballot.row is not None
            assert ballot.sub is not None
            assert ballot.rule is not None
            result = _settle_counted(connection, *ballot.rule, ballot.row, ballot.answers, self.on_displaced)
            ballot.status, ballot.reason = result.status, result.reason
            results = ballot.sub.results
            results[[r.unit for r in results].index(ballot.unit)] = result

    def _stored_subs(self) -> Iterator[_Sub]:
        seen: set[int] = set()
        for subs in self.previous.values():
            for sub in subs:
                if sub.id is not None and sub.item is None and sub.id not in seen:
                    seen.add(sub.id)
                    yield sub

    def _insert_submissions(self, subs: list[_Sub]) -> None:
        if not subs:
            return
        params = []
        for sub in subs:
            assert sub.item is not None
            params.append(
                _submission_row(sub.item, sub.sha, sub.code, sub.status, sub.problems, 1 + sub.deliveries)
            )
        ids = {
            (row.external_id, row.content_sha256): int(row.id)
            for row in self.connection.execute(_BULK_INSERT_SUBMISSIONS, params)
        }
        for sub, row in zip(subs, params, strict=True):
            # (campaign, channel, external id, content) is unique, and one chunk writes one campaign
            # and channel per external id and content (a second delivery is a replay, not a row).
            sub.id = ids[(row["external_id"], row["content_sha256"])]

    def _receipt(self, entry: tuple[_Sub, tuple[UnitResult, ...] | None]) -> Receipt:
        sub, replayed = entry
        assert sub.id is not None
        if replayed is not None:
            return Receipt(
                outcome="already_received",
                code=sub.code,
                submission_id=sub.id,
                units=replayed,
                problems=sub.problems,
                reason=sub.reason,
            )
        if sub.status == "accepted":
            counted = any(r.status == "counted" for r in sub.results)
            return Receipt(
                outcome="counted" if counted else "not_counted",
                code=sub.code,
                submission_id=sub.id,
                units=tuple(sub.results),
            )
        return Receipt(
            outcome="conflict" if sub.status == "conflict" else "rejected",
            code=sub.code,
            submission_id=sub.id,
            problems=sub.problems,
            reason=sub.problems[0].code if sub.problems else sub.status,
        )


def _pieces(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _IN_LIST):
        yield values[start : start + _IN_LIST]
