"""The campaign list, a campaign's live dashboard, and the audit log."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from collect.campaign import CampaignSpec
from collect.ingest import as_utc
from collect.store import Store
from collect.store.tables import AUDIT, BALLOT, CAMPAIGN, SUBMISSION
from collect.web.admin.pages import AdminView, admin_page
from collect.web.context import web
from collect.web.i18n import N_


@dataclass(frozen=True, slots=True)
class CampaignRow:
    code: str
    name: str
    opens_at: datetime
    closes_at: datetime
    counted: int


def campaign_rows(store: Store) -> list[CampaignRow]:
    counted = (
        sa.select(BALLOT.c.campaign_id, sa.func.count().label("n"))
        .where(BALLOT.c.status == "counted")
        .group_by(BALLOT.c.campaign_id)
        .subquery()
    )
    with store.reader.connect() as connection:
        rows = connection.execute(
            sa.select(
                CAMPAIGN.c.code, CAMPAIGN.c.name, CAMPAIGN.c.opens_at, CAMPAIGN.c.closes_at, counted.c.n
            )
            .outerjoin(counted, counted.c.campaign_id == CAMPAIGN.c.id)
            .order_by(CAMPAIGN.c.opens_at.desc(), CAMPAIGN.c.code)
        ).all()
    return [CampaignRow(r.code, r.name, as_utc(r.opens_at), as_utc(r.closes_at), int(r.n or 0)) for r in rows]


@dataclass
class Dashboard:
    """Live counts of one campaign, read straight from the store on each request."""

    spec: CampaignSpec
    ballots_by_status: dict[str, int] = field(default_factory=dict)
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)  # channel → status → n
    by_tier: dict[str, dict[str, int]] = field(default_factory=dict)  # tier → status → n
    counted: dict[tuple[str, str], int] = field(default_factory=dict)  # (unit, tier) → counted
    not_counted: list[tuple[str, str, int]] = field(default_factory=list)  # status, reason, n
    submissions: list[tuple[str, str, int]] = field(default_factory=list)  # status, reason, n

    @property
    def statuses(self) -> list[str]:
        order = ["counted", "pending_review", "superseded", "duplicate", "invalid"]
        return [s for s in order if s in self.ballots_by_status] + sorted(
            set(self.ballots_by_status) - set(order)
        )

    def unit_total(self, unit: str) -> int:
        return sum(n for (u, _t), n in self.counted.items() if u == unit)


def read_dashboard(store: Store, code: str) -> Dashboard | None:
    with store.reader.connect() as connection:
        row = connection.execute(
            sa.select(CAMPAIGN.c.id, CAMPAIGN.c.spec_json).where(CAMPAIGN.c.code == code)
        ).first()
        if row is None:
            return None
        board = Dashboard(CampaignSpec.model_validate_json(row.spec_json))
        by_channel: dict[str, dict[str, int]] = defaultdict(dict)
        by_tier: dict[str, dict[str, int]] = defaultdict(dict)
        grouped = connection.execute(
            sa.select(
                BALLOT.c.channel,
                BALLOT.c.tier_code,
                BALLOT.c.unit_code,
                BALLOT.c.status,
                BALLOT.c.reason,
                sa.func.count().label("n"),
            )
            .where(BALLOT.c.campaign_id == row.id)
            .group_by(
                BALLOT.c.channel, BALLOT.c.tier_code, BALLOT.c.unit_code, BALLOT.c.status, BALLOT.c.reason
            )
        ).all()
        reasons: dict[tuple[str, str], int] = defaultdict(int)
        for r in grouped:
            n = int(r.n)
            board.ballots_by_status[r.status] = board.ballots_by_status.get(r.status, 0) + n
            by_channel[r.channel][r.status] = by_channel[r.channel].get(r.status, 0) + n
            by_tier[r.tier_code][r.status] = by_tier[r.tier_code].get(r.status, 0) + n
            if r.status == "counted":
                key = (r.unit_code, r.tier_code)
                board.counted[key] = board.counted.get(key, 0) + n
            else:
                reasons[(r.status, r.reason or "")] += n
        board.by_channel, board.by_tier = dict(by_channel), dict(by_tier)
        board.not_counted = sorted(
            ((s, why, n) for (s, why), n in reasons.items()), key=lambda x: (-x[2], x[0], x[1])
        )
        board.submissions = [
            (r.status, r.reason or "", int(r.n))
            for r in connection.execute(
                sa.select(SUBMISSION.c.status, SUBMISSION.c.reason, sa.func.count().label("n"))
                .where(SUBMISSION.c.campaign_code == code)
                .group_by(SUBMISSION.c.status, SUBMISSION.c.reason)
                .order_by(sa.func.count().desc(), SUBMISSION.c.status)
            )
        ]
    return board


@admin_page("/", title=N_("Campaigns"), min_role="viewer")
async def campaigns(request: Request, view: AdminView) -> Response:
    rows = await anyio.to_thread.run_sync(campaign_rows, web(request).store)
    now = as_utc(web(request).clock())
    return view.render("admin/campaigns.html", {"rows": rows, "now": now})


@admin_page("/campaigns/{code}", title=N_("Campaign dashboard"), min_role="viewer", nav=False)
async def dashboard(request: Request, view: AdminView) -> Response:
    code = request.path_params["code"]
    board = await anyio.to_thread.run_sync(read_dashboard, web(request).store, code)
    if board is None:
        raise HTTPException(404)
    spec = board.spec
    values: dict[str, Any] = {
        "title": spec.name,
        "board": board,
        "spec": spec,
        "quota_tiers": [t for t in spec.tiers if t.source == "roster" or board.by_tier.get(t.code)],
    }
    return view.render("admin/dashboard.html", values)


def audit_rows(store: Store, limit: int = 200) -> list[Any]:
    with store.reader.connect() as connection:
        return list(connection.execute(sa.select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)).all())


@admin_page("/audit", title=N_("Audit log"), min_role="operator")
async def audit(request: Request, view: AdminView) -> Response:
    rows = await anyio.to_thread.run_sync(audit_rows, web(request).store)
    return view.render("admin/audit.html", {"rows": rows})
