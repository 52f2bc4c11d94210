"""
`/admin/review`: the review queue in the console (复核). What the detectors held (copied
answer vectors, serials used twice or one slip off, bursts of top ratings at a window) is listed
with its evidence; an operator accepts (the ballot counts under the one-vote rule) or rejects
(it is invalid, with the item's reason), always with a note. The decision is
`collect.dedupe.review.decide`, as `collect review accept|reject` makes it: audited, one
transaction per item.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from collect.dedupe.report import LABELS
from collect.dedupe.review import Decision, ItemView, ReviewError, decide, list_items
from collect.store import Store
from collect.store.tables import CAMPAIGN
from collect.web.admin.pages import PREFIX, AdminView, admin_page
from collect.web.context import web
from collect.web.i18n import N_

STATUSES = ("open", "accepted", "rejected")
DECISIONS: dict[str, Decision] = {"accept": "accepted", "reject": "rejected"}
LIMIT = 500  # oldest first: a queue longer than this is worked through in order
# Evidence shown first, when an item has it (the rest follows in key order).
LEADING = (
    "rule",
    "observed",
    "expected",
    "p_value",
    "log10_p_value",
    "log10_threshold",
    "serial",
    "candidates",
)


def evidence_rows(item: ItemView) -> list[tuple[str, str]]:
    keys = [k for k in LEADING if k in item.evidence] + sorted(k for k in item.evidence if k not in LEADING)
    return [(k, _shown(item.evidence[k])) for k in keys]


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_shown(v)}" for k, v in value.items())
    return str(value)


def all_campaigns(store: Store) -> list[tuple[str, str]]:
    """(code, name) of every campaign: the queue is kept per campaign."""
    with store.reader.connect() as connection:
        rows = connection.execute(sa.select(CAMPAIGN.c.code, CAMPAIGN.c.name).order_by(CAMPAIGN.c.code)).all()
    return [(str(r.code), str(r.name)) for r in rows]


@admin_page("/review", title=N_("Review queue"), min_role="viewer", methods=("GET", "POST"))
async def review(request: Request, view: AdminView) -> Response:
    ctx = web(request)
    error = None
    if request.method == "POST":
        if not view.may("operator"):
            return view.render("admin/refused.html", {"title": "", "kind": "role"}, status=403)
        form = view.form
        note = form.get("note", "").strip()[:2000]
        decision = DECISIONS.get(form.get("decision", ""))
        item_id = form.get("item", "")
        if not note:
            error = view.gettext(N_("Say why: a decision needs a note."))
        elif decision is None or not item_id.isdigit():
            error = view.gettext(N_("Unknown review item or decision."))
        else:
            try:
                await ctx.write(
                    lambda: decide(
                        ctx.store, int(item_id), decision, note=note, actor=f"web:{view.account.name}"
                    )
                )
            except ReviewError as exc:
                error = str(exc)
            else:
                # Post/redirect/get: a reload does not decide again.
                return RedirectResponse(f"{PREFIX}/review?{request.url.query}", status_code=303)
    code = request.query_params.get("campaign", "")
    status = request.query_params.get("status", "open")
    status = status if status in STATUSES else "open"
    campaigns = await anyio.to_thread.run_sync(all_campaigns, ctx.store)
    items: list[ItemView] = []
    if code:
        try:
            items = await anyio.to_thread.run_sync(lambda: list_items(ctx.store, code, status=status))
        except ReviewError as exc:
            error = error or str(exc)
    shown = [
        {"item": item, "label": LABELS.get(item.reason, item.reason), "evidence": evidence_rows(item)}
        for item in items[:LIMIT]
    ]
    values = {
        "campaigns": campaigns,
        "campaign": code,
        "status": status,
        "statuses": STATUSES,
        "items": shown,
        "more": max(0, len(items) - LIMIT),
        "may_decide": view.may("operator"),
        "error": error,
    }
    return view.render("admin/review.html", values, status=400 if error else 200)
