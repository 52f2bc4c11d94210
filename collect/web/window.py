"""
`/w/{code}` (poster scans) and `/t/{ticket}` (one-time tickets): rate the window that just
served you. Glue: `WindowAdapter` parses, `ingest()` decides and writes; this module adds what
an open channel needs around it (docs/window.md): posters, tickets, one rating per device per
window per day, rate limits, burst flags for review, and follow-up cases for low ratings.

Statuses: 200 form, thank-you or "already rated"; 400 the form again with its problems; 403 not
open yet, outside service hours, not offered, or a form without a valid CSRF token; 404 an
unknown poster or a ticket that fails its signature (one page for both: no oracle); 409 this
service was rated already (a reused ticket, a second scan the same day); 410 a replaced poster,
an expired ticket, a closed campaign; 429 too many ratings from one network or at one window.

Also the store side of posters (create, revoke, look up), used by `collect qr`.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import anyio.to_thread
import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collect.ballot import BallotSubmission, Problem, Receipt
from collect.campaign import CampaignSpec, Tier, Unit, Window
from collect.channels.web import answer_field
from collect.channels.window import (
    CALLBACK_WORKING_DAYS,
    FIX_WORKING_DAYS,
    Hours,
    Ticket,
    Via,
    WindowAdapter,
    WindowForm,
    add_working_days,
    device_day_transaction,
    local_day,
    low_answers,
    network_key,
    network_of,
    new_poster_code,
    rejection,
    ticket_key,
    ticket_transaction,
    top_answer,
    verify_ticket,
)
from collect.dedupe.keys import keyed_hash
from collect.dedupe.review import Finding, file_findings
from collect.ingest import Item, as_utc, ingest_in, ingest_stream
from collect.phones import normalise_phone
from collect.store import Store
from collect.store.campaigns import LoadedCampaign, load_campaign
from collect.store.group_commit import Together
from collect.store.tables import (
    AUDIT,
    BALLOT,
    CAMPAIGN,
    REVIEW_ITEM,
    WINDOW_CASE,
    WINDOW_CASE_CONTACT,
    WINDOW_POSTER,
    WINDOW_RATING,
    utcnow,
)
from collect.web.ballot import options
from collect.web.context import TEMPLATES, Page, WebContext, web
from collect.web.forms import BadForm, read_form
from collect.web.i18n import N_
from collect.web.ratelimit import TokenBucket
from collect.web.security import BODY_LIMITS, csp_hash

log = logging.getLogger("collect.web.window")

CSRF_PURPOSE = "window"
CSRF_MAX_AGE = 2 * 3600  # a citizen rates at the counter or on the way out, not tomorrow
BURST_REASON = "window_burst"
BURST_KIND = "window_burst"
# A rating is a few radio buttons and a comment: 16 KiB is generous.
BODY_LIMITS.setdefault("/w/", 16 << 10)
BODY_LIMITS.setdefault("/t/", 16 << 10)

WINDOW_CSS = Markup((TEMPLATES / "window" / "window.css").read_text(encoding="utf-8").strip())


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """
    The channel's limits. The defaults suit a busy service hall behind one public address (mobile
    carriers put many phones behind one address, so per-network limits are generous); the per-
    window limit and the burst rule catch a counter that rates itself.
    """

    max_ticket_valid: timedelta = timedelta(hours=24)
    hours: Hours = field(default_factory=Hours)  # for posters printed without their own service hours
    burst_count: int = 40  # this many top ratings …
    burst_seconds: int = 300  # … within this many seconds at one window, by poster: held for review
    network_rate: float = 20 / 60  # ratings a second per network, sustained …
    network_burst: int = 30  # … and at once
    page_rate: float = 2.0  # page views a second per network
    page_burst: int = 120
    window_rate: float = 12 / 60  # poster ratings a second per window (a window serves ~1 a minute)
    window_burst: int = 30
    cache_seconds: float = 5.0  # a revoked poster stops working within this long in each worker
    device_max_age: int = 400 * 24 * 3600  # the longest a browser keeps a cookie
    callback_max_age: int = 24 * 3600


@dataclass
class WindowState:
    """Per app (per worker): limiters and caches. Tests and benches set `app.state.window`."""

    config: WindowConfig = field(default_factory=WindowConfig)
    clock: Any = time.monotonic  # for the limiters
    posters: dict[str, tuple[float, PosterRow | None]] = field(default_factory=dict)
    windows: tuple[float, dict[str, list[LoadedCampaign]]] | None = None

    def __post_init__(self) -> None:
        c = self.config
        self.by_network = TokenBucket(c.network_rate, c.network_burst, clock=self.clock)
        self.pages = TokenBucket(c.page_rate, c.page_burst, clock=self.clock)
        self.by_window = TokenBucket(c.window_rate, c.window_burst, clock=self.clock)


def state(request: Request) -> WindowState:
    found = getattr(request.app.state, "window", None)
    if not isinstance(found, WindowState):
        found = WindowState()
        request.app.state.window = found
    return found


# --- Posters in the store --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PosterRow:
    id: int
    code: str
    campaign: str
    campaign_id: int
    unit: str
    window: str
    staff: str | None
    hours: str | None
    revoked_at: datetime | None
    replaced_by: str | None


class PosterError(ValueError):
    """A poster command that cannot be carried out (unknown campaign or code, already revoked)."""


def _poster_query() -> sa.Select[Any]:
    replacement = WINDOW_POSTER.alias("replacement")
    return (
        sa.select(
            WINDOW_POSTER.c.id,
            WINDOW_POSTER.c.code,
            CAMPAIGN.c.code.label("campaign"),
            WINDOW_POSTER.c.campaign_id,
            WINDOW_POSTER.c.unit_code,
            WINDOW_POSTER.c.window_code,
            WINDOW_POSTER.c.staff,
            WINDOW_POSTER.c.hours,
            WINDOW_POSTER.c.revoked_at,
            replacement.c.code.label("replaced_by"),
        )
        .join(CAMPAIGN, CAMPAIGN.c.id == WINDOW_POSTER.c.campaign_id)
        .outerjoin(replacement, replacement.c.id == WINDOW_POSTER.c.replaced_by)
    )


def _poster(row: Any) -> PosterRow:
    return PosterRow(
        int(row.id),
        row.code,
        row.campaign,
        int(row.campaign_id),
        row.unit_code,
        row.window_code,
        row.staff,
        row.hours,
        None if row.revoked_at is None else as_utc(row.revoked_at),
        row.replaced_by,
    )


def find_poster(store: Store, code: str) -> PosterRow | None:
    with store.reader.connect() as connection:
        row = connection.execute(_poster_query().where(WINDOW_POSTER.c.code == code)).first()
    return None if row is None else _poster(row)


def posters_of(store: Store, campaign: str, *, active: bool = True) -> list[PosterRow]:
    query = _poster_query().where(CAMPAIGN.c.code == campaign)
    if active:
        query = query.where(WINDOW_POSTER.c.revoked_at.is_(None))
    with store.reader.connect() as connection:
        rows = connection.execute(query.order_by(WINDOW_POSTER.c.id)).all()
    return [_poster(r) for r in rows]


def ensure_posters(
    store: Store, campaign: str, *, actor: str, staff: bool = False, hours: Hours | None = None
) -> list[PosterRow]:
    """
    One active poster per window (and per staff member of the window's unit with `staff`):
    existing ones are kept, so printing again prints the same codes. Returns them in spec order.
    """
    with store.writing(), store.engine.begin() as connection:
        loaded = load_campaign(store, connection, campaign)
        if loaded is None:
            raise PosterError(f"campaign {campaign!r} does not exist")
        spec = loaded.spec
        wanted = [
            (unit, window, person)
            for unit in spec.units
            for window in unit.windows
            for person in ([None, *unit.staff] if staff else [None])
        ]
        if not wanted:
            raise PosterError(f"campaign {campaign!r} has no service windows (units[].windows)")
        existing = {
            (r.window_code, r.staff): r
            for r in connection.execute(
                sa.select(WINDOW_POSTER).where(
                    WINDOW_POSTER.c.campaign_id == loaded.id, WINDOW_POSTER.c.revoked_at.is_(None)
                )
            )
        }
        created: list[str] = []
        for unit, window, person in wanted:
            if (window.code, person) in existing:
                continue
            code = new_poster_code()
            connection.execute(
                sa.insert(WINDOW_POSTER).values(
                    code=code,
                    campaign_id=loaded.id,
                    unit_code=unit.code,
                    window_code=window.code,
                    staff=person,
                    hours=hours.text() if hours is not None else None,
                    created_at=utcnow(),
                    created_by=actor,
                )
            )
            created.append(code)
        if created:
            _audit(connection, actor, "window.posters", campaign, None, {"created": created})
    by_key = {(p.window, p.staff): p for p in posters_of(store, campaign)}
    return [by_key[(w.code, person)] for _u, w, person in wanted]


def revoke_poster(store: Store, code: str, *, actor: str, reason: str = "") -> tuple[PosterRow, PosterRow]:
    """Revoke a poster and make its replacement (a new code for the same window): (old, new)."""
    with store.writing(), store.engine.begin() as connection:
        row = connection.execute(_poster_query().where(WINDOW_POSTER.c.code == code)).first()
        if row is None:
            raise PosterError(f"no poster has the code {code!r}")
        old = _poster(row)
        if old.revoked_at is not None:
            raise PosterError(f"poster {code} was revoked already (replaced by {old.replaced_by})")
        now = utcnow()
        new_code = new_poster_code()
        new_id = connection.execute(
            sa.insert(WINDOW_POSTER)
            .values(
                code=new_code,
                campaign_id=old.campaign_id,
                unit_code=old.unit,
                window_code=old.window,
                staff=old.staff,
                hours=old.hours,
                created_at=now,
                created_by=actor,
            )
            .returning(WINDOW_POSTER.c.id)
        ).scalar_one()
        connection.execute(
            sa.update(WINDOW_POSTER)
            .where(WINDOW_POSTER.c.id == old.id)
            .values(revoked_at=now, replaced_by=new_id)
        )
        _audit(
            connection,
            actor,
            "window.revoke",
            old.campaign,
            f"window_poster:{old.code}",
            {"replaced_by": new_code, "window": old.window, "reason": reason},
        )
    new = find_poster(store, new_code)
    revoked = find_poster(store, code)
    assert new is not None
    assert revoked is not None
    return revoked, new


def _audit(
    connection: Connection, actor: str, action: str, campaign: str, target: str | None, detail: dict[str, Any]
) -> None:
    connection.execute(
        sa.insert(AUDIT).values(
            at=utcnow(), actor=actor, action=action, campaign_code=campaign, target=target, detail=detail
        )
    )


def campaigns_with_window(store: Store, window: str) -> list[LoadedCampaign]:
    """Every campaign that has this window code, newest first (tickets name a window only)."""
    out: list[LoadedCampaign] = []
    with store.reader.connect() as connection:
        codes = connection.execute(sa.select(CAMPAIGN.c.code).order_by(CAMPAIGN.c.opens_at.desc())).scalars()
        for code in list(codes):
            loaded = load_campaign(store, connection, code)
            if loaded is not None and loaded.spec.window(window) is not None:
                out.append(loaded)
    return out


def choose_campaign(candidates: Sequence[LoadedCampaign], now: datetime) -> LoadedCampaign | None:
    """The campaign a ticket's window rates now: the open one, else the newest (for its page)."""
    usable = [c for c in candidates if "window_qr" in c.spec.channels]
    for loaded in usable:
        if as_utc(loaded.spec.opens_at) <= now <= as_utc(loaded.spec.closes_at):
            return loaded
    return usable[0] if usable else None


# --- Taking a rating: ingest, then the channel's own bookkeeping -----------------------------


@dataclass(frozen=True, slots=True)
class Taken:
    receipt: Receipt
    status: str | None  # the unit's ballot status, None when nothing was made
    case_id: int | None


@dataclass(frozen=True, slots=True)
class RatingFacts:
    campaign_id: int
    poster_id: int | None
    network: str | None
    top: bool
    low: str | None  # the low answer that opens a case, if any
    level: str | None
    burst_count: int
    burst_seconds: int


def recent_top(store: Store, campaign_id: int, window: str, since: datetime) -> int:
    """Top ratings by poster at this window since `since` (the burst rule reads this)."""
    with store.reader.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(WINDOW_RATING)
                .where(
                    WINDOW_RATING.c.campaign_id == campaign_id,
                    WINDOW_RATING.c.window_code == window,
                    WINDOW_RATING.c.rated_at >= since,
                    WINDOW_RATING.c.via == "poster",
                    WINDOW_RATING.c.top.is_(True),
                )
            ).scalar_one()
        )


# Built once: a statement's construction costs about as much as its execution on SQLite.
_INSERT_RATING = sa.insert(WINDOW_RATING)


def take(store: Store, spec: CampaignSpec, item: Item, raw: WindowForm, facts: RatingFacts) -> Taken:
    """
    ingest the item, then, for the ratings the channel watches (a poster's top rating, which
    the burst rule counts; a flagged one; a low one, which opens a case): log it, file burst
    findings, open the case. One step of a group commit (WebContext.commit): all of it in the
    step's savepoint, so the rating and its case commit together.
    """
    with store.engine.connect() as connection:
        return _take(connection, store, spec, item, raw, facts)


def _ingest(store: Store, item: Item) -> Receipt:
    """A rating the page refuses (outside hours, a bad form): kept with its reason all the same."""
    with store.engine.connect() as connection:
        return ingest_in(connection, store, item)


_Call = tuple[CampaignSpec, Item, WindowForm, RatingFacts]


def _take_many(store: Store, calls: list[_Call]) -> list[Taken]:
    """
    take() for many waiting ratings at once: their ballots through one ingest_stream(), then
    each one's follow-up in order. The same as one by one, because two ratings of one voter
    never share a call (see _voter) and a follow-up changes only its own rating's rows and
    the burst findings, which it reads in order as one by one would.
    """
    receipts: dict[int, Receipt] = {}

    def receipt_in(item: Item, receipt: Receipt) -> None:
        receipts[id(item)] = receipt

    with store.engine.connect() as connection:
        ingest_stream(store, [item for _spec, item, _raw, _facts in calls], receipt_in, connection=connection)
        return [
            _follow_up(connection, spec, item, raw, facts, receipts[id(item)])
            for spec, item, raw, facts in calls
        ]


def _voter(call: _Call) -> tuple[str, str, str] | None:
    item = call[1]
    if not isinstance(item, BallotSubmission) or item.identity is None:
        return None
    return (item.campaign, item.identity.kind, item.identity.value)


TOGETHER = Together("window ratings", _take_many, key=_voter)


def _take(
    connection: Connection, store: Store, spec: CampaignSpec, item: Item, raw: WindowForm, facts: RatingFacts
) -> Taken:
    return _follow_up(connection, spec, item, raw, facts, ingest_in(connection, store, item))


def _follow_up(
    connection: Connection,
    spec: CampaignSpec,
    item: Item,
    raw: WindowForm,
    facts: RatingFacts,
    receipt: Receipt,
) -> Taken:
    """What a watched rating adds after its ballot: the rating log, burst findings, a case."""
    if receipt.outcome in ("rejected", "conflict") or not isinstance(item, BallotSubmission):
        return Taken(receipt, None, None)
    unit_status = receipt.units[0].status if receipt.units else None
    watched = facts.low is not None or raw.flag is not None or (facts.top and raw.via == "poster")
    if not watched:
        # Most ratings: nothing more to write.
        return Taken(receipt, unit_status, None)
    ballot = connection.execute(
        sa.select(BALLOT.c.id, BALLOT.c.status).where(BALLOT.c.submission_id == receipt.submission_id)
    ).first()
    if ballot is None:
        return Taken(receipt, unit_status, None)
    if receipt.outcome == "already_received":
        # A double tap: the same page again, with the case the first one opened.
        case_id = connection.execute(
            sa.select(WINDOW_CASE.c.id).where(WINDOW_CASE.c.ballot_id == ballot.id)
        ).scalar_one_or_none()
        return Taken(receipt, ballot.status, case_id)
    flagged = raw.flag is not None
    connection.execute(
        _INSERT_RATING,
        {
            "campaign_id": facts.campaign_id,
            "submission_id": receipt.submission_id,
            "ballot_id": ballot.id,
            "unit_code": raw.unit,
            "window_code": raw.window,
            "poster_id": facts.poster_id,
            "via": raw.via,
            "top": facts.top,
            "low": facts.low is not None,
            "network_key": facts.network,
            "flagged": flagged,
            "rated_at": raw.received_at,
        },
    )
    if flagged:
        _file_burst(connection, facts, raw)
    case_id = None
    if facts.low is not None and ballot.status in ("counted", "pending_review"):
        case_id = _open_case(connection, spec, facts, raw, item, int(ballot.id))
    return Taken(receipt, ballot.status, case_id)


def _file_burst(connection: Connection, facts: RatingFacts, raw: WindowForm) -> None:
    """
    The whole burst goes to review, not just the ratings after the threshold: the earlier top
    ratings in the same span are held too (moved from counted to pending_review) with the same
    evidence, so the forty ratings are judged together.
    """
    since = raw.received_at - timedelta(seconds=facts.burst_seconds)
    rows = connection.execute(
        sa.select(
            WINDOW_RATING.c.id,
            WINDOW_RATING.c.ballot_id,
            WINDOW_RATING.c.rated_at,
            WINDOW_RATING.c.network_key,
            BALLOT.c.status,
        )
        .join(BALLOT, BALLOT.c.id == WINDOW_RATING.c.ballot_id)
        .where(
            WINDOW_RATING.c.campaign_id == facts.campaign_id,
            WINDOW_RATING.c.window_code == raw.window,
            WINDOW_RATING.c.rated_at >= since,
            WINDOW_RATING.c.via == "poster",
            WINDOW_RATING.c.top.is_(True),
        )
        .order_by(WINDOW_RATING.c.rated_at, WINDOW_RATING.c.id)
    ).all()
    evidence = {
        "rule": f"{facts.burst_count} top ratings within {facts.burst_seconds} s at one window",
        "window": raw.window,
        "unit": raw.unit,
        "poster": raw.poster,
        "level": facts.level,
        "top_ratings": len(rows),
        "first_at": as_utc(rows[0].rated_at).isoformat() if rows else None,
        "last_at": raw.received_at.isoformat(),
        "networks": len({r.network_key for r in rows if r.network_key}),
    }
    findings = [
        Finding(
            kind=BURST_KIND,
            reason=BURST_REASON,
            fingerprint=f"ballot:{r.ballot_id}",
            evidence=evidence,
            ballot_id=int(r.ballot_id),
            hold=True,
        )
        for r in rows
        # A second rating of the same service (duplicate) counts for nothing: nothing to review.
        if r.status in ("counted", "pending_review")
    ]
    # An item sync_held() filed already (kind "held") covers a ballot as well as ours would.
    covered = {
        f"ballot:{b}"
        for b in connection.execute(
            sa.select(REVIEW_ITEM.c.ballot_id).where(
                REVIEW_ITEM.c.campaign_id == facts.campaign_id,
                REVIEW_ITEM.c.ballot_id.in_([r.ballot_id for r in rows]),
            )
        ).scalars()
    }
    file_findings(connection, facts.campaign_id, [f for f in findings if f.fingerprint not in covered])
    connection.execute(
        sa.update(WINDOW_RATING).where(WINDOW_RATING.c.id.in_([r.id for r in rows])).values(flagged=True)
    )
    log.warning(
        "burst at window %s of %s: %d top ratings in %d s held for review",
        raw.window,
        raw.unit,
        len(rows),
        facts.burst_seconds,
    )


def _open_case(
    connection: Connection,
    spec: CampaignSpec,
    facts: RatingFacts,
    raw: WindowForm,
    item: BallotSubmission,
    ballot_id: int,
) -> int:
    opened = raw.received_at
    return int(
        connection.execute(
            sa.insert(WINDOW_CASE)
            .values(
                campaign_id=facts.campaign_id,
                ballot_id=ballot_id,
                unit_code=raw.unit,
                window_code=raw.window,
                staff=raw.staff,
                via=raw.via,
                level_code=facts.low or "",
                comment=item.comment,
                opened_at=opened,
                callback_due=None,
                fix_due=add_working_days(spec, opened, FIX_WORKING_DAYS).astimezone(UTC),
                status="open",
            )
            .returning(WINDOW_CASE.c.id)
        ).scalar_one()
    )


def attach_contact(store: Store, spec: CampaignSpec, case_id: int, phone: str, now: datetime) -> bool:
    """Keep the number a citizen left for a call back; the call is due within 1 working day."""
    with store.writing(), store.engine.begin() as connection:
        case = connection.execute(
            sa.select(WINDOW_CASE.c.id, WINDOW_CASE.c.status).where(WINDOW_CASE.c.id == case_id)
        ).first()
        if case is None or case.status == "resolved":
            return False
        existing = connection.execute(
            sa.select(WINDOW_CASE_CONTACT.c.id).where(WINDOW_CASE_CONTACT.c.case_id == case_id)
        ).scalar_one_or_none()
        if existing is None:
            connection.execute(
                sa.insert(WINDOW_CASE_CONTACT).values(case_id=case_id, phone=phone, created_at=now)
            )
        else:
            connection.execute(
                sa.update(WINDOW_CASE_CONTACT)
                .where(WINDOW_CASE_CONTACT.c.id == existing)
                .values(phone=phone, erased_at=None)
            )
        connection.execute(
            sa.update(WINDOW_CASE)
            .where(WINDOW_CASE.c.id == case_id)
            .values(callback_due=add_working_days(spec, now, CALLBACK_WORKING_DAYS).astimezone(UTC))
        )
    return True


def rated_already(store: Store, spec: CampaignSpec, campaign_id: int, unit: str, transaction: str) -> bool:
    """Has this transaction a ballot that counts (or awaits review)? Keyed exactly as ingest() keys it."""
    key = keyed_hash(store.settings.secret(), spec.code, "transaction", transaction)
    with store.reader.connect() as connection:
        found = connection.execute(
            sa.select(BALLOT.c.id)
            .where(
                BALLOT.c.campaign_id == campaign_id,
                BALLOT.c.unit_code == unit,
                BALLOT.c.voter_key == key,
                BALLOT.c.status.in_(("counted", "pending_review")),
            )
            .limit(1)
        ).first()
    return found is not None


# --- Pages -----------------------------------------------------------------------------------

Kind = Literal[
    "unknown",
    "replaced",
    "ticket_expired",
    "ticket_early",
    "not_open",
    "closed",
    "not_offered",
    "outside_hours",
    "already_rated",
    "expired",
    "conflict",
    "busy",
    "callback_saved",
]
STATUS = {
    "unknown": 404,
    "replaced": 410,
    "ticket_expired": 410,
    "ticket_early": 403,
    "not_open": 403,
    "closed": 410,
    "not_offered": 403,
    "outside_hours": 403,
    "already_rated": 200,
    "expired": 403,
    "conflict": 409,
    "busy": 429,
    "callback_saved": 200,
}
PROBLEM_TEXT = {
    "required": N_("Please choose a rating."),
    "unknown_level": N_("Please choose one of the ratings offered."),
    "out_of_range": N_("Please choose one of the ratings offered."),
    "bad_answer": N_("Please choose one of the ratings offered."),
    "too_long": N_("The comment is too long: at most 1000 characters."),
}
DEFAULT_PROBLEM_TEXT = N_("This rating could not be accepted.")


def _csp(context: WebContext) -> str:
    # The pages' shared CSS and this channel's own, each allowed by its hash: no 'unsafe-inline'.
    styles = f"{csp_hash(str(context.css))} {csp_hash(str(WINDOW_CSS))}"
    return (
        f"default-src 'none'; style-src {styles}; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


@dataclass
class Where:
    """What a page is about: the campaign, the unit and window, how the citizen came."""

    loaded: LoadedCampaign
    unit: Unit
    window: Window
    via: Via
    poster: PosterRow | None = None
    ticket: Ticket | None = None

    @property
    def spec(self) -> CampaignSpec:
        return self.loaded.spec

    @property
    def staff(self) -> str | None:
        return self.poster.staff if self.poster is not None else None

    @property
    def tier(self) -> Tier | None:
        tiers = self.spec.open_tiers
        return tiers[0] if tiers else None


def _render(
    page: Page,
    template: str,
    values: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    full = {"window_css": WINDOW_CSS, **values}
    all_headers = {"content-security-policy": _csp(page.context), **(headers or {})}
    return page.render(template, full, status=status, headers=all_headers)


def _message(
    page: Page,
    kind: Kind,
    where: Where | None = None,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    spec = where.spec if where is not None else None
    values: dict[str, Any] = {
        "kind": kind,
        "title": spec.name if spec is not None else "",
        "where": where,
        "opens": _local(spec, spec.opens_at) if spec is not None else "",
        "closes": _local(spec, spec.closes_at) if spec is not None else "",
        "again": page.request.url.path,
        "hours": "",
        "receipt": None,
        **extra,
    }
    return _render(page, "window/message.html", values, status=status or STATUS[kind], headers=headers)


def _local(spec: CampaignSpec, moment: datetime) -> str:
    return as_utc(moment).astimezone(ZoneInfo(spec.timezone)).strftime("%Y-%m-%d %H:%M")


def _state(where: Where, now: datetime, hours: Hours | None) -> Kind | None:
    spec = where.spec
    if "window_qr" not in spec.channels or where.tier is None:
        return "not_offered"
    if now < as_utc(spec.opens_at):
        return "not_open"
    if now > as_utc(spec.closes_at):
        return "closed"
    if hours is not None and not hours.admits(spec, now):
        return "outside_hours"
    return None


def _hours(request: Request, where: Where) -> Hours | None:
    """Service hours apply to poster scans; a ticket is itself the proof of a service."""
    if where.via != "poster":
        return None
    if where.poster is not None and where.poster.hours:
        return Hours.parse(where.poster.hours)
    return state(request).config.hours


# --- Device cookie: one rating per device per window per day ---------------------------------


def _device_signer(ctx: WebContext) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(ctx.settings.secret(), salt="collect.window.device")


def _device_cookie_name(ctx: WebContext) -> str:
    return "__Host-collect_dev" if ctx.https else "collect_dev"


@dataclass
class Device:
    id: str
    rated: dict[str, str]  # window → the local day it was rated (for the page; ingest enforces)
    fresh: bool


def _device(request: Request, config: WindowConfig) -> Device | None:
    ctx = web(request)
    value = request.cookies.get(_device_cookie_name(ctx))
    if not value:
        return None
    try:
        data = _device_signer(ctx).loads(value, max_age=config.device_max_age)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("d"), str) or not 16 <= len(data["d"]) <= 64:
        return None
    rated = data.get("r")
    marks = {str(k): str(v) for k, v in rated.items()} if isinstance(rated, dict) else {}
    return Device(data["d"], marks, fresh=False)


def _set_device(
    response: Response, request: Request, device: Device, today: date, config: WindowConfig
) -> None:
    ctx = web(request)
    # Only today's marks: yesterday's are of no use and the cookie stays small.
    device.rated = {w: d for w, d in device.rated.items() if d == today.isoformat()}
    response.set_cookie(
        _device_cookie_name(ctx),
        _device_signer(ctx).dumps({"d": device.id, "r": device.rated}),
        max_age=config.device_max_age,
        path="/",
        secure=ctx.https,
        httponly=True,
        samesite="lax",
    )


# --- Rate limits -----------------------------------------------------------------------------


def _network(request: Request, today: date) -> str | None:
    # Behind a proxy, uvicorn --proxy-headers puts the client's address here. Only a keyed hash
    # of its network is kept, in memory and in the rating log; the address itself nowhere.
    host = request.client.host if request.client is not None else None
    network = network_of(host) if host else None
    return None if network is None else network_key(web(request).settings.secret(), network, today)


def _limited(page: Page, bucket: TokenBucket, key: str | None, where: Where | None = None) -> Response | None:
    if key is None:
        return None
    wait = bucket.take(key)
    if wait <= 0:
        return None
    seconds = max(1, math.ceil(wait))
    return _message(page, "busy", where, headers={"Retry-After": str(seconds)}, retry=seconds)


# --- Routes ----------------------------------------------------------------------------------


async def _poster_where(request: Request, code: str) -> Where | Kind:
    ctx, st = web(request), state(request)
    now = time.monotonic()
    hit = st.posters.get(code)
    if hit is not None and now - hit[0] < st.config.cache_seconds:
        poster = hit[1]
    else:
        # Only well-formed codes reach the database; anything else is simply unknown.
        poster = await anyio.to_thread.run_sync(find_poster, ctx.store, code) if code.isalnum() else None
        st.posters[code] = (now, poster)
        if len(st.posters) > 10_000:
            st.posters.clear()
    if poster is None:
        return "unknown"
    if poster.revoked_at is not None:
        return "replaced"
    loaded = await ctx.campaign(poster.campaign)
    found = loaded.spec.window(poster.window) if loaded is not None else None
    if loaded is None or found is None:
        return "unknown"
    unit, window = found
    return Where(loaded, unit, window, "poster", poster=poster)


async def _ticket_where(request: Request, text: str) -> Where | Kind:
    ctx, st = web(request), state(request)
    checked = verify_ticket(
        ticket_key(ctx.settings.secret()), text, as_utc(ctx.clock()), st.config.max_ticket_valid
    )
    if checked in ("malformed", "bad_signature", "too_long_valid"):
        return "unknown"
    if checked == "expired":
        return "ticket_expired"
    if checked == "not_yet_valid":
        return "ticket_early"
    assert isinstance(checked, Ticket)
    now = time.monotonic()
    cached = st.windows
    if cached is None or now - cached[0] >= st.config.cache_seconds:
        cached = (now, {})
        st.windows = cached
    candidates = cached[1].get(checked.window)
    if candidates is None:
        candidates = await anyio.to_thread.run_sync(campaigns_with_window, ctx.store, checked.window)
        cached[1][checked.window] = candidates
    loaded = choose_campaign(candidates, as_utc(ctx.clock()))
    found = loaded.spec.window(checked.window) if loaded is not None else None
    if loaded is None or found is None:
        return "unknown"
    unit, window = found
    return Where(loaded, unit, window, "ticket", ticket=checked)


async def poster_page(request: Request) -> Response:
    return await _page(request, "poster", request.path_params["code"])


async def ticket_page(request: Request) -> Response:
    return await _page(request, "ticket", request.path_params["ticket"])


async def _page(request: Request, via: Via, key: str) -> Response:
    ctx, st = web(request), state(request)
    page = Page(request)
    received_at = as_utc(ctx.clock())
    network = _network(request, received_at.date())
    if request.method == "POST":
        # Counted before anything else is read: a flood costs a dictionary lookup per request.
        limited = _limited(page, st.by_network, network)
        if limited is not None:
            return limited
        return await _post(request, page, via, key, received_at, network)
    limited = _limited(page, st.pages, network)
    if limited is not None:
        return limited
    where = await (_poster_where(request, key) if via == "poster" else _ticket_where(request, key))
    if isinstance(where, str):
        return _message(page, where)
    page = Page(request, where.spec.lang)
    hours = _hours(request, where)
    problem = _state(where, received_at, hours)
    if problem is not None:
        return _message(page, problem, where, hours=hours.text() if hours else "")
    device = _device(request, st.config) if via == "poster" else None
    today = local_day(where.spec, received_at)
    transaction = _transaction(where, device, today)
    if device is not None and device.rated.get(where.window.code) == today.isoformat():
        return _message(page, "already_rated", where)
    if transaction is not None and await anyio.to_thread.run_sync(
        rated_already, ctx.store, where.spec, where.loaded.id, where.unit.code, transaction
    ):
        return _message(page, "already_rated", where)
    if via == "poster" and device is None:
        device = Device(secrets.token_urlsafe(18), {}, fresh=True)
    response = _form(page, where, fields={}, problems=())
    if device is not None and device.fresh:
        _set_device(response, request, device, today, st.config)
    return response


def _transaction(where: Where, device: Device | None, today: date) -> str | None:
    if where.ticket is not None:
        return ticket_transaction(where.ticket)
    if device is None:
        return None
    return device_day_transaction(where.window.code, today, device.id)


async def _post(
    request: Request, page: Page, via: Via, key: str, received_at: datetime, network: str | None
) -> Response:
    ctx, st = web(request), state(request)
    try:
        fields = await read_form(request)
    except BadForm:
        return _message(page, "expired", status=400)
    if fields.get("case"):
        return await _callback(request, page, fields)
    form_id = ctx.csrf.verify(request, fields, CSRF_PURPOSE, CSRF_MAX_AGE)
    if form_id is None:
        # Not from our form in this browser (or too old): refused before anything is kept.
        return _message(page, "expired")
    where = await (_poster_where(request, key) if via == "poster" else _ticket_where(request, key))
    if isinstance(where, str):
        return _message(page, where)
    page = Page(request, where.spec.lang)
    spec = where.spec
    device = _device(request, st.config) if via == "poster" else None
    if via == "poster":
        if device is None:
            # The form sets the device cookie; a post without it did not come from that form.
            return _message(page, "expired", where)
        limited = _limited(page, st.by_window, f"{spec.code}\x1f{where.window.code}", where)
        if limited is not None:
            return limited
    today = local_day(spec, received_at)
    transaction = _transaction(where, device, today)
    assert transaction is not None
    tier = where.tier
    raw = WindowForm(
        via=via,
        window=where.window.code,
        unit=where.unit.code,
        poster=where.poster.code if where.poster is not None else None,
        staff=where.staff,
        transaction=transaction,
        form_id=form_id,
        fields=fields,
        received_at=received_at,
        tier=tier.code if tier is not None else "",
    )
    hours = _hours(request, where)
    problem = _state(where, received_at, hours)
    field_name = answer_field(where.unit.code, spec.aspects[0].code)
    level = fields.get(field_name, "").strip() or None
    top = len(spec.aspects) == 1 and level == top_answer(spec.scale)
    lows = low_answers(spec.scale)
    given = [fields.get(answer_field(where.unit.code, a.code), "").strip() for a in spec.aspects]
    low = next((value for value in given if value in lows), None)
    facts = RatingFacts(
        campaign_id=where.loaded.id,
        poster_id=where.poster.id if where.poster is not None else None,
        network=network,
        top=top,
        low=low,
        level=level,
        burst_count=st.config.burst_count,
        burst_seconds=st.config.burst_seconds,
    )
    if problem is not None:
        # Kept all the same (a rating at 3 a.m. is evidence too), then the page says why not.
        if problem == "outside_hours":
            shown = hours.text() if hours is not None else ""
            item: Item = rejection(spec, raw, "outside_service_hours", f"outside service hours {shown}")
        else:
            item = next(WindowAdapter().parse(raw, spec))
        await ctx.commit(_ingest, item)
        return _message(page, problem, where, hours=hours.text() if hours else "")
    if via == "poster" and top:
        since = received_at - timedelta(seconds=st.config.burst_seconds)
        recent = await anyio.to_thread.run_sync(
            recent_top, ctx.store, where.loaded.id, where.window.code, since
        )
        if recent + 1 >= st.config.burst_count:
            raw = replace(raw, flag=BURST_REASON)
    item = next(WindowAdapter().parse(raw, spec))
    taken = await ctx.commit_together(TOGETHER, take, spec, item, raw, facts)
    receipt = taken.receipt
    if receipt.outcome == "conflict":
        return _message(page, "conflict", where)
    if receipt.problems:
        return _form(page, where, fields=fields, problems=receipt.problems, status=400)
    if taken.status == "duplicate":
        return _message(page, "already_rated", where, status=409, receipt=receipt.code)
    response = _done(page, where, receipt, taken.case_id)
    if device is not None:
        device.rated[where.window.code] = today.isoformat()
        _set_device(response, request, device, today, st.config)
    return response


def _form(
    page: Page,
    where: Where,
    *,
    fields: Mapping[str, str],
    problems: Sequence[Problem],
    status: int = 200,
) -> Response:
    spec = where.spec
    ctx = page.context
    token = ctx.csrf.issue(page.request, CSRF_PURPOSE)
    errors: dict[str, list[str]] = {}
    for problem in problems:
        errors.setdefault(problem.field, []).append(
            page.gettext(PROBLEM_TEXT.get(problem.code, DEFAULT_PROBLEM_TEXT))
        )
    show_aspects = len(spec.aspects) > 1
    questions = [
        (
            answer_field(where.unit.code, aspect.code),
            (aspect.en if page.lang == "en" and aspect.en else aspect.zh) if show_aspects else None,
        )
        for aspect in spec.aspects
    ]
    values = {
        "title": spec.name,
        "spec": spec,
        "where": where,
        "questions": questions,
        "options": options(
            spec, page.lang, spec.scale.dont_know_en if page.lang == "en" else spec.scale.dont_know_zh
        ),
        "fields": fields,
        "errors": errors,
        "csrf": token.field,
        "required": not spec.allow_partial,
        "comment": fields.get("comment", ""),
    }
    response = _render(page, "window/form.html", values, status=status)
    ctx.csrf.set_cookie(response, token)
    return response


def _callback_signer(ctx: WebContext) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(ctx.settings.secret(), salt="collect.window.callback")


def _done(page: Page, where: Where, receipt: Receipt, case_id: int | None) -> Response:
    ctx = page.context
    values: dict[str, Any] = {
        "title": where.spec.name,
        "where": where,
        "receipt": receipt.code,
        "case": _callback_signer(ctx).dumps({"c": case_id, "s": where.spec.code}) if case_id else None,
        "csrf": None,
        "phone": "",
        "phone_error": None,
    }
    token = ctx.csrf.issue(page.request, CSRF_PURPOSE) if case_id else None
    if token is not None:
        values["csrf"] = token.field
    response = _render(page, "window/done.html", values)
    if token is not None:
        ctx.csrf.set_cookie(response, token)
    return response


async def _callback(request: Request, page: Page, fields: Mapping[str, str]) -> Response:
    """The number a citizen leaves after a low rating, to be called back about it."""
    ctx, st = web(request), state(request)
    if ctx.csrf.verify(request, fields, CSRF_PURPOSE, CSRF_MAX_AGE) is None:
        return _message(page, "expired")
    try:
        data = _callback_signer(ctx).loads(fields["case"], max_age=st.config.callback_max_age)
    except BadSignature:
        return _message(page, "expired")
    if not isinstance(data, dict) or not isinstance(data.get("c"), int) or not isinstance(data.get("s"), str):
        return _message(page, "expired")
    loaded = await ctx.campaign(data["s"])
    if loaded is None:
        return _message(page, "expired")
    page = Page(request, loaded.spec.lang)
    phone = normalise_phone(fields.get("phone", "")[:40])
    if phone is None:
        values = {
            "title": loaded.spec.name,
            "where": None,
            "receipt": None,
            "case": fields["case"],
            "csrf": fields.get("csrf"),
            "phone": fields.get("phone", "")[:40],
            "phone_error": page.gettext(N_("Please give a valid phone number, e.g. 138 0013 8000.")),
        }
        return _render(page, "window/done.html", values, status=400)
    saved = await ctx.write(attach_contact, ctx.store, loaded.spec, data["c"], phone, as_utc(ctx.clock()))
    if not saved:
        return _message(page, "expired")
    return _message(page, "callback_saved")


routes = [
    Route("/w/{code}", poster_page, methods=["GET", "POST"], name="window_poster"),
    Route("/t/{ticket}", ticket_page, methods=["GET", "POST"], name="window_ticket"),
]

__all__ = [
    "PosterError",
    "PosterRow",
    "WindowConfig",
    "WindowState",
    "ensure_posters",
    "find_poster",
    "posters_of",
    "revoke_poster",
    "routes",
]
