"""
`/admin/paper`: keyboard-first data entry of paper forms for clerks (纸质问卷录入).

Serial → answers grid (box numbers as printed: 1 … n, x for "don't know") → save → the next
form, with the cursor back in the serial field. The serial is checked against the issuance
ledger while it is typed (`/admin/paper/serial`): unknown, already entered, a slip away from an
issued one, a signature that does not fit: shown at once, before anything is saved.

A save is one row of the same keyed format `collect import paper` reads, through the same
adapter and the same `EntrySession` (collect/paper/entry.py): the checks, double entry and the
review findings are theirs, not this page's. Every entry carries the signed-in clerk; every save
is in the audit log. In double-entry mode two clerks key each sheet; where they disagree the
sheet is listed at `/admin/paper/disagreements` for a third clerk, whose keying settles it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from collect.campaign import CampaignSpec
from collect.channels.paper import KeyedRows, PaperAdapter
from collect.ingest import as_utc
from collect.paper.entry import (
    EntryRefused,
    EntryResult,
    Mode,
    entry_session,
    open_entries,
    verify_serial,
)
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, CAMPAIGN, utcnow
from collect.web.admin.pages import AdminView, admin_page
from collect.web.context import WebContext, web
from collect.web.i18n import N_
from collect.web.security import csp_hash

FIELDS = ("serial", "signature", "form", "distribution", "answered_on", "tier", "roster_id", "comment")
MODES: tuple[Mode, ...] = ("single", "double")
# What the clerk is told of a serial as typed (status → message), as the ledger decides it.
SERIAL_TEXTS = {
    "ok": N_("Issued; not entered yet."),
    "entered": N_("Already entered: a second sheet with this serial is a copy unless it is a keying error."),
    "mistyped": N_("Never issued: one slip away from an issued serial. Check the sheet."),
    "unknown": N_("Never issued: possibly forged."),
    "bad_signature": N_("The signature does not fit this serial."),
    "signature_mistyped": N_("The signature is one symbol off."),
    "malformed": N_("Not a serial."),
    "missing": N_("No serial: only forms of a channel printed without serials."),
}
OUTCOME_TEXTS = {
    "counted": N_("Saved: counted."),
    "not_counted": N_("Saved: kept, not counted."),
    "pending_review": N_("Saved: held for review."),
    "rejected": N_("Saved: kept as invalid."),
    "conflict": N_("Saved: kept as a conflict."),
    "already_received": N_("This form was saved already."),
    "awaiting": N_("Saved: waiting for the second clerk."),
    "disagreement": N_("Saved: the two clerks disagree; a third clerk settles it."),
    "refused": N_("Not saved."),
}


# Check-as-you-type and one key per box. Inline, allowed by its hash (no 'unsafe-inline'); the
# page works without it (the save runs the same checks).
PAGE_SCRIPT = """(function () {
  var form = document.getElementById("entry");
  if (!form) return;
  var serial = form.elements.serial, signature = form.elements.signature;
  var out = document.getElementById("serial-status"), timer = null;
  function check() {
    var typed = serial.value.trim();
    if (!typed) { out.textContent = ""; out.className = ""; return; }
    var query = "?campaign=" + encodeURIComponent(form.elements.campaign.value) +
      "&serial=" + encodeURIComponent(typed);
    if (signature.value.trim()) query += "&signature=" + encodeURIComponent(signature.value.trim());
    fetch(form.getAttribute("data-check") + query, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        out.textContent = d.message + (d.detail ? " (" + d.detail + ")" : "");
        out.className = d.ok ? "ok" : "err";
        out.setAttribute("data-status", d.shown || "");
      })
      .catch(function () {});
  }
  function later() { clearTimeout(timer); timer = setTimeout(check, 250); }
  serial.addEventListener("input", later);
  signature.addEventListener("input", later);
  var boxes = form.querySelectorAll("input.box");
  Array.prototype.forEach.call(boxes, function (box, i) {
    box.addEventListener("input", function () {
      if (box.value.length < box.maxLength && box.value.toLowerCase() !== "x") return;
      var next = boxes[i + 1] || form.elements.comment;
      next.focus();
      if (next.select) next.select();
    });
  });
})();"""
SCRIPT_HASH = csp_hash(PAGE_SCRIPT)


@dataclass(frozen=True, slots=True)
class Cell:
    """One answer box of the grid: a unit's aspect, keyed as the printed box number."""

    name: str  # the form field, `unit/aspect` as the keyed format names it
    unit: str
    aspect: str


def paper_campaigns(store: Store) -> list[tuple[str, str]]:
    """(code, name) of the campaigns that take paper forms."""
    with store.reader.connect() as connection:
        rows = connection.execute(sa.select(CAMPAIGN.c.code, CAMPAIGN.c.name).order_by(CAMPAIGN.c.code)).all()
        out = []
        for row in rows:
            loaded = load_campaign(store, connection, row.code)
            if loaded is not None and "paper" in loaded.spec.channels:
                out.append((str(row.code), str(row.name)))
        return out


def grid(spec: CampaignSpec) -> list[tuple[str, list[Cell]]]:
    """The answer boxes, unit by unit, in the order of the printed form."""
    return [
        (unit.name, [Cell(f"{unit.code}/{aspect.code}", unit.code, aspect.code) for aspect in spec.aspects])
        for unit in spec.units
    ]


def check_serial(store: Store, campaign: str, serial: str, signature: str | None) -> dict[str, Any]:
    """The ledger's word on a serial as typed, for the page (read-only)."""
    with store.reader.connect() as connection:
        loaded = load_campaign(store, connection, campaign)
        if loaded is None:
            raise EntryRefused(f"campaign {campaign!r} does not exist")
        check = verify_serial(connection, store.settings.secret(), loaded.id, campaign, serial, signature)
    shown = "entered" if check.status == "ok" and check.entered else check.status
    return {**check.as_dict(), "shown": shown, "ok": shown == "ok"}


def save_entry(
    store: Store,
    campaign: str,
    values: dict[str, str],
    answers: dict[str, str],
    *,
    clerk: str,
    mode: Mode,
    page_id: str,
    received_at: datetime,
) -> EntryResult:
    """
    Enter one keyed form as the import does, in one transaction with its audit entry.

    `page_id` is the rendered form's own id: the source_ref of the entry, so a save sent twice
    (a double click, a reload) is one entry.
    """
    header = [*FIELDS, "clerk", *answers]
    row = [values.get(name, "") or None for name in FIELDS] + [clerk] + [v or None for v in answers.values()]
    with entry_session(store, campaign, actor=f"web:{clerk}", mode=mode) as session:
        keyed = KeyedRows(
            campaign=campaign,
            file_name=f"page:{page_id}",
            header=header,
            rows=[(1, row)],
            received_at=received_at,
        )
        (item,) = list(PaperAdapter().parse(keyed, session.spec))
        result = session.enter(item)
        if result.state != "already_entered":
            session.connection.execute(
                sa.insert(AUDIT).values(
                    at=utcnow(),
                    actor=f"web:{clerk}",
                    action="paper.entry",
                    campaign_code=campaign,
                    target=item.source_ref[:255],
                    detail={
                        "mode": mode,
                        "state": result.state,
                        "outcome": result.outcome,
                        "reason": result.reason,
                        "serial_check": result.serial.status,
                    },
                )
            )
    return result


def _mode(value: str | None) -> Mode:
    return "double" if value == "double" else "single"


async def _spec(store: Store, code: str) -> CampaignSpec | None:
    def load() -> CampaignSpec | None:
        with store.reader.connect() as connection:
            loaded = load_campaign(store, connection, code)
        return loaded.spec if loaded is not None and "paper" in loaded.spec.channels else None

    return await anyio.to_thread.run_sync(load)


@admin_page("/paper", title=N_("Paper forms entry"), min_role="clerk", methods=("GET", "POST"))
async def paper_entry(request: Request, view: AdminView) -> Response:
    ctx = web(request)
    source = view.form if request.method == "POST" else dict(request.query_params)
    code = source.get("campaign", "")
    mode = _mode(source.get("mode"))
    spec = await _spec(ctx.store, code) if code else None
    if spec is None:
        campaigns = await anyio.to_thread.run_sync(paper_campaigns, ctx.store)
        error = view.gettext(N_("Unknown campaign, or it takes no paper forms.")) if code else None
        return view.render(
            "admin/paper.html",
            {"spec": None, "campaigns": campaigns, "error": error, "mode": mode},
            status=404 if code else 200,
        )
    result: EntryResult | None = None
    error = None
    kept: dict[str, str] = {}
    if request.method == "POST":
        form = view.form
        values = {name: form.get(name, "").strip() for name in FIELDS}
        answers = {
            cell.name: form.get(cell.name, "").strip() for _unit, cells in grid(spec) for cell in cells
        }
        page_id = form.get("page_id", "")
        if not (16 <= len(page_id) <= 64 and page_id.isalnum()):
            error = view.gettext(N_("The form has expired: open the page again."))
        else:
            try:
                result = await ctx.write(
                    lambda: save_entry(
                        ctx.store,
                        spec.code,
                        values,
                        answers,
                        clerk=view.account.name,
                        mode=mode,
                        page_id=page_id,
                        received_at=as_utc(ctx.clock()),
                    )
                )
            except EntryRefused as exc:
                error = str(exc)
        if result is not None and result.state == "refused":
            kept = {**values, **answers}  # the clerk corrects and saves again
        # After a save the session's choices stay for the next sheet of the pile.
        kept |= {k: values[k] for k in ("distribution", "answered_on", "tier") if values.get(k)}
    levels = spec.scale.levels if spec.scale.kind == "levels" else ()
    values_out = {
        "spec": spec,
        "grid": grid(spec),
        "levels": levels,
        "mode": mode,
        "modes": MODES,
        "kept": kept,
        "result": result,
        "result_text": view.gettext(OUTCOME_TEXTS.get(result.outcome, OUTCOME_TEXTS["refused"]))
        if result
        else None,
        "serial_texts": {k: view.gettext(v) for k, v in SERIAL_TEXTS.items()},
        "error": error,
        "page_id": secrets.token_hex(12),
        "campaigns": [],
        "script": Markup(PAGE_SCRIPT),
    }
    status = 400 if error or (result is not None and result.state == "refused") else 200
    return view.render(
        "admin/paper.html", values_out, status=status, headers={"content-security-policy": _csp(ctx)}
    )


def _csp(ctx: WebContext) -> str:
    return (
        f"default-src 'none'; style-src {csp_hash(str(ctx.css))}; script-src {SCRIPT_HASH}; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


@admin_page("/paper/serial", title=N_("Serial check"), min_role="clerk", nav=False)
async def serial_check(request: Request, view: AdminView) -> Response:
    """JSON for the page's check-as-you-type: the ledger's word on the serial typed so far."""
    ctx = web(request)
    params = request.query_params
    try:
        found = await anyio.to_thread.run_sync(
            lambda: check_serial(
                ctx.store,
                params.get("campaign", ""),
                params.get("serial", ""),
                params.get("signature") or None,
            )
        )
    except EntryRefused as exc:
        return JSONResponse({"error": "unknown_campaign", "detail": str(exc)}, status_code=404)
    shown = str(found["shown"])
    found["message"] = view.gettext(SERIAL_TEXTS[shown])
    return JSONResponse(found, headers={"Cache-Control": "no-store"})


@admin_page("/paper/disagreements", title=N_("Double entry: disagreements"), min_role="clerk")
async def disagreements(request: Request, view: AdminView) -> Response:
    ctx = web(request)
    code = request.query_params.get("campaign", "")
    campaigns = await anyio.to_thread.run_sync(paper_campaigns, ctx.store)
    forms: list[dict[str, Any]] = []
    if code:
        try:
            forms = await anyio.to_thread.run_sync(
                lambda: open_entries(ctx.store, code, state="disagreement")
            )
        except EntryRefused:
            forms = []
    return view.render(
        "admin/paper_disagreements.html", {"campaigns": campaigns, "campaign": code, "forms": forms}
    )
