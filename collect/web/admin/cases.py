"""
`/admin/cases`: follow-up cases opened by low window ratings (回访、整改), with their deadlines
(call back within 1 working day, fix within 15). Operators record the call back and the fix;
resolving a case erases the callback number. Every change goes to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio.to_thread
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from collect.campaign import CampaignSpec
from collect.ingest import as_utc
from collect.store import Store
from collect.store.tables import AUDIT, CAMPAIGN, WINDOW_CASE, WINDOW_CASE_CONTACT, utcnow
from collect.web.admin.pages import PREFIX, AdminView, admin_page
from collect.web.context import web
from collect.web.i18n import N_

STATUSES = ("open", "called_back", "resolved")
SHOWN = (N_("open"), N_("called_back"), N_("resolved"), N_("ticket"), N_("poster"))  # for extraction
LIMIT = 500  # newest first; a campaign with more open cases has a bigger problem than paging


@dataclass(frozen=True, slots=True)
class CaseRow:
    id: int
    campaign: str
    unit: str
    window: str
    staff: str | None
    via: str
    level: str
    comment: str | None
    opened: str
    callback_due: str | None
    fix_due: str
    callback_overdue: bool
    fix_overdue: bool
    status: str
    phone: str | None
    note: str | None
    handled_by: str | None


def _label(spec: CampaignSpec, code: str, lang: str) -> str:
    level = spec.scale.level(code)
    if level is None:
        return code
    return level.en if lang == "en" and level.en else level.zh


def read_cases(
    store: Store, *, status: str | None, campaign: str | None, now: datetime, lang: str, with_phone: bool
) -> list[CaseRow]:
    query = (
        sa.select(
            WINDOW_CASE,
            CAMPAIGN.c.code.label("campaign_code"),
            CAMPAIGN.c.spec_json,
            WINDOW_CASE_CONTACT.c.phone,
        )
        .join(CAMPAIGN, CAMPAIGN.c.id == WINDOW_CASE.c.campaign_id)
        .outerjoin(WINDOW_CASE_CONTACT, WINDOW_CASE_CONTACT.c.case_id == WINDOW_CASE.c.id)
        .order_by(WINDOW_CASE.c.opened_at.desc(), WINDOW_CASE.c.id.desc())
        .limit(LIMIT)
    )
    if status:
        query = query.where(WINDOW_CASE.c.status == status)
    if campaign:
        query = query.where(CAMPAIGN.c.code == campaign)
    with store.reader.connect() as connection:
        rows = connection.execute(query).all()
    specs: dict[str, CampaignSpec] = {}
    out: list[CaseRow] = []
    for r in rows:
        spec = specs.get(r.campaign_code)
        if spec is None:
            spec = specs[r.campaign_code] = CampaignSpec.model_validate_json(r.spec_json)
        zone = ZoneInfo(spec.timezone)
        callback_due = as_utc(r.callback_due) if r.callback_due is not None else None
        fix_due = as_utc(r.fix_due)
        unit = spec.unit(r.unit_code)
        found = spec.window(r.window_code)
        out.append(
            CaseRow(
                id=int(r.id),
                campaign=r.campaign_code,
                unit=unit.name if unit is not None else r.unit_code,
                window=found[1].name if found is not None else r.window_code,
                staff=r.staff,
                via=r.via,
                level=_label(spec, r.level_code, lang),
                comment=r.comment,
                opened=as_utc(r.opened_at).astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                callback_due=callback_due.astimezone(zone).strftime("%Y-%m-%d %H:%M")
                if callback_due
                else None,
                fix_due=fix_due.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                callback_overdue=callback_due is not None and r.status == "open" and now > callback_due,
                fix_overdue=r.status != "resolved" and now > fix_due,
                status=r.status,
                # Operators call back; clerks and viewers see that a number was left, not which.
                phone=(r.phone if with_phone else "✓") if r.phone else None,
                note=r.note,
                handled_by=r.handled_by,
            )
        )
    return out


class CaseError(ValueError):
    """A change a case cannot take (unknown, or already resolved)."""


def update_case(store: Store, case_id: int, action: str, *, note: str, actor: str) -> None:
    """`called_back` or `resolved` (which erases the callback number), with a note; audited."""
    if action not in ("called_back", "resolved"):
        raise CaseError(f"unknown action {action!r}")
    now = utcnow()
    with store.writing(), store.engine.begin() as connection:
        case = connection.execute(
            sa.select(WINDOW_CASE.c.id, WINDOW_CASE.c.status, CAMPAIGN.c.code)
            .join(CAMPAIGN, CAMPAIGN.c.id == WINDOW_CASE.c.campaign_id)
            .where(WINDOW_CASE.c.id == case_id)
        ).first()
        if case is None:
            raise CaseError(f"case {case_id} does not exist")
        if case.status == "resolved":
            raise CaseError(f"case {case_id} is resolved already")
        values: dict[str, Any] = {"status": action, "handled_by": actor, "note": note}
        values["called_back_at" if action == "called_back" else "resolved_at"] = now
        connection.execute(sa.update(WINDOW_CASE).where(WINDOW_CASE.c.id == case_id).values(**values))
        if action == "resolved":
            # The number was given for this call back only: gone once the matter is closed.
            connection.execute(
                sa.update(WINDOW_CASE_CONTACT)
                .where(WINDOW_CASE_CONTACT.c.case_id == case_id, WINDOW_CASE_CONTACT.c.phone.is_not(None))
                .values(phone=None, erased_at=now)
            )
        connection.execute(
            sa.insert(AUDIT).values(
                at=now,
                actor=actor,
                action=f"case.{action}",
                campaign_code=case.code,
                target=f"window_case:{case_id}",
                detail={"from": case.status, "note": note},
            )
        )


@admin_page("/cases", title=N_("Follow-up cases"), min_role="clerk", methods=("GET", "POST"))
async def cases(request: Request, view: AdminView) -> Response:
    ctx = web(request)
    error = None
    if request.method == "POST":
        if not view.may("operator"):
            return view.render("admin/refused.html", {"title": "", "kind": "role"}, status=403)
        form = view.form
        note = form.get("note", "").strip()[:2000]
        case_id = form.get("case", "")
        if not note:
            error = view.gettext(N_("Say what was done: a note is required."))
        elif not case_id.isdigit():
            error = view.gettext(N_("Unknown case."))
        else:
            try:
                await anyio.to_thread.run_sync(
                    lambda: update_case(
                        ctx.store,
                        int(case_id),
                        form.get("action", ""),
                        note=note,
                        actor=f"web:{view.account.name}",
                    )
                )
            except CaseError as exc:
                error = str(exc)
            else:
                # Post/redirect/get: a reload does not send the change again.
                return RedirectResponse(f"{PREFIX}/cases?{request.url.query}", status_code=303)
    status = request.query_params.get("status", "open")
    status = status if status in STATUSES else ""
    campaign = request.query_params.get("campaign") or None
    now = as_utc(ctx.clock())
    rows = await anyio.to_thread.run_sync(
        lambda: read_cases(
            ctx.store,
            status=status or None,
            campaign=campaign,
            now=now,
            lang=view.html.lang,
            with_phone=view.may("operator"),
        )
    )
    values = {
        "rows": rows,
        "status": status,
        "statuses": STATUSES,
        "campaign": campaign or "",
        "may_act": view.may("operator"),
        "error": error,
    }
    return view.render("admin/cases.html", values, status=400 if error else 200)
