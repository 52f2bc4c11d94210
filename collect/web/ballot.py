"""
`/b/{token}`: the web ballot of an invited respondent. Glue only: `lookup_token` says who may
rate what, `WebBallotAdapter` parses the form, `ingest()` decides and writes.

Statuses: 404 unknown or withdrawn link (the same page for both: no oracle); 403 not open yet,
not offered online, or not in the sample; 410 closed (the ballot existed and is gone for good);
400 the form re-rendered with each problem by its question; 403 a form without a valid CSRF
token (nothing is stored); 409 already voted (first counts) or a form sent twice with different
answers; 200 the confirmation with the receipt code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collect.ballot import BallotSubmission, Problem, Receipt, Rejection
from collect.campaign import DONT_KNOW, CampaignSpec, Unit
from collect.channels.web import WebBallotAdapter, WebBallotForm, answer_field
from collect.ingest import as_utc, ingest
from collect.roster import TokenBallot, lookup_token
from collect.web.context import Page, web
from collect.web.forms import BadForm, read_form
from collect.web.i18n import N_

CSRF_PURPOSE = "ballot"
# A respondent may open the link in the morning and answer at night.
CSRF_MAX_AGE = 24 * 3600

State = Literal["open", "not_open", "closed", "not_online", "not_sampled"]

PROBLEM_TEXT = {
    "required": N_("Please choose an answer."),
    "unknown_level": N_("Please choose one of the answers offered."),
    "out_of_range": N_("Please choose one of the answers offered."),
    "dont_know_not_offered": N_("Please choose one of the answers offered."),
    "not_asked": N_("This question is not on your ballot."),
    "bad_answer": N_("Please choose one of the answers offered."),
    "too_long": N_("The comment is too long: at most 1000 characters."),
    "no_answers": N_("Please answer the questions below."),
    "incomplete": N_("Please answer every question about this unit."),
    "own_unit": N_("You do not rate your own unit."),
    "unit_not_assigned": N_("This unit is not on your ballot."),
    "duplicate_answer": N_("This question was answered twice."),
}
DEFAULT_PROBLEM_TEXT = N_("This answer could not be accepted.")

UNIT_REASON_TEXT = {
    "earlier_answer_counts": N_("you had rated it already; your first answer counts"),
    "later_answer_counts": N_("a later answer of yours counts"),
    "not_sampled": N_("you are not in this round's sample"),
}


def campaign_state(ballot: TokenBallot, now: datetime) -> State:
    spec = ballot.spec
    if "web" not in spec.channels:
        return "not_online"
    if now < as_utc(spec.opens_at):
        return "not_open"
    if now > as_utc(spec.closes_at):
        return "closed"
    if ballot.not_sampled:
        return "not_sampled"
    return "open"


def units_to_ask(ballot: TokenBallot) -> tuple[Unit, ...]:
    """Under "last counts" every unit (a new ballot replaces the old); else those not answered yet."""
    if ballot.spec.policy == "last_counts":
        return ballot.units
    return tuple(u for u in ballot.units if u.code not in ballot.voted)


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Question:
    field: str
    label: str | None


def options(spec: CampaignSpec, lang: str, dont_know_label: str) -> list[Option]:
    scale = spec.scale
    if scale.kind == "levels":
        out = [
            Option(level.code, level.en if lang == "en" and level.en else level.zh) for level in scale.levels
        ]
    else:
        out = [Option(str(p), str(p)) for p in range(scale.max_points, scale.min_points - 1, -1)]
    if scale.dont_know:
        out.append(Option(DONT_KNOW, dont_know_label))
    return out


async def ballot_page(request: Request) -> Response:
    if request.method == "POST":
        return await _post(request)
    ctx = web(request)
    token = request.path_params["token"]
    ballot = await anyio.to_thread.run_sync(lookup_token, ctx.store, token)
    if ballot is None:
        return _message(Page(request), "unknown", status=404)
    page = Page(request, ballot.spec.lang)
    state = campaign_state(ballot, as_utc(ctx.clock()))
    if state != "open":
        return _state_page(page, ballot, state)
    units = units_to_ask(ballot)
    if not units:
        return _message(page, "already_voted", status=200, spec=ballot.spec)
    return _form(page, ballot, units, fields={}, problems=())


async def _post(request: Request) -> Response:
    ctx = web(request)
    token = request.path_params["token"]
    try:
        fields = await read_form(request)
    except BadForm:
        return _message(Page(request), "expired", status=400)
    form_id = ctx.csrf.verify(request, fields, CSRF_PURPOSE, CSRF_MAX_AGE)
    if form_id is None:
        # Not from our form in this browser (or too old): refused before anything is read or kept.
        return _message(Page(request), "expired", status=403)
    ballot = await anyio.to_thread.run_sync(lookup_token, ctx.store, token)
    if ballot is None:
        return _message(Page(request), "unknown", status=404)
    page = Page(request, ballot.spec.lang)
    received_at = as_utc(ctx.clock())
    state = campaign_state(ballot, received_at)
    asked = units_to_ask(ballot) if state == "open" else ballot.units
    raw = WebBallotForm(
        token=token,
        form_id=form_id,
        fields=fields,
        units=tuple(u.code for u in ballot.units),
        required=tuple(u.code for u in asked),
        received_at=received_at,
    )
    item = next(WebBallotAdapter().parse(raw, ballot.spec))
    # Everything that passed the CSRF check is kept, even past the close: a late ballot is
    # evidence too, and reports count it as rejected with its reason.
    receipt = await ctx.commit(ingest, item)
    if state != "open":
        return _state_page(page, ballot, state)
    codes = {p.code for p in receipt.problems}
    if codes & {"unknown_token", "revoked_token"}:
        return _message(page, "unknown", status=404)
    if "campaign_closed" in codes:
        return _state_page(page, ballot, "closed")
    if "campaign_not_open" in codes:
        return _state_page(page, ballot, "not_open")
    if "channel_disabled" in codes:
        return _state_page(page, ballot, "not_online")
    if receipt.outcome == "conflict":
        return _message(page, "conflict", status=409, spec=ballot.spec)
    if receipt.problems:
        return _form(page, ballot, asked, fields=fields, problems=receipt.problems, item=item, status=400)
    reasons = {u.reason for u in receipt.units if u.status != "counted"}
    if receipt.outcome == "not_counted" and reasons <= {"earlier_answer_counts"}:
        return _message(page, "already_voted", status=409, spec=ballot.spec, receipt=receipt.code)
    if receipt.outcome == "not_counted" and reasons == {"not_sampled"}:
        return _state_page(page, ballot, "not_sampled")
    return _done(page, ballot, receipt)


def _form(
    page: Page,
    ballot: TokenBallot,
    units: Sequence[Unit],
    *,
    fields: dict[str, str],
    problems: Sequence[Problem],
    item: BallotSubmission | Rejection | None = None,
    status: int = 200,
) -> Response:
    spec = ballot.spec
    ctx = page.context
    token = ctx.csrf.issue(page.request, CSRF_PURPOSE)
    errors, general = _place_problems(page, problems, item)
    show_aspects = len(spec.aspects) > 1
    questions = {
        unit.code: [
            Question(
                answer_field(unit.code, aspect.code),
                (aspect.en if page.lang == "en" and aspect.en else aspect.zh) if show_aspects else None,
            )
            for aspect in spec.aspects
        ]
        for unit in units
    }
    answered_before = [u for u in ballot.units if u.code in ballot.voted]
    values: dict[str, Any] = {
        "spec": spec,
        "title": spec.name,
        "units": units,
        "questions": questions,
        "options": options(
            spec, page.lang, spec.scale.dont_know_en if page.lang == "en" else spec.scale.dont_know_zh
        ),
        "fields": fields,
        "errors": errors,
        "general": general,
        "csrf": token.field,
        "required": not spec.allow_partial,
        "changing": spec.policy == "last_counts" and bool(answered_before),
        "answered_before": len(answered_before) if spec.policy == "first_counts" else 0,
        "closes": _local(spec, spec.closes_at),
        "comment": fields.get("comment", ""),
    }
    response = page.render("ballot/form.html", values, status=status)
    ctx.csrf.set_cookie(response, token)
    return response


def _place_problems(
    page: Page, problems: Sequence[Problem], item: BallotSubmission | Rejection | None
) -> tuple[dict[str, list[str]], list[str]]:
    """
    Each problem by its question: adapter problems name form fields; ingest's name answers by
    position (`answers[3].level`) or unit (`answers[S01]`), mapped back to the form here.
    """
    errors: dict[str, list[str]] = {}
    general: list[str] = []
    answers = item.answers if isinstance(item, BallotSubmission) else ()
    for problem in problems:
        text = page.gettext(PROBLEM_TEXT.get(problem.code, DEFAULT_PROBLEM_TEXT))
        field = problem.field
        if field.startswith("answers[") and "]" in field:
            inside = field[len("answers[") : field.index("]")]
            if inside.isdigit() and int(inside) < len(answers):
                answer = answers[int(inside)]
                field = answer_field(answer.unit, answer.aspect)
            else:
                field = f"unit:{inside}"
        if field.startswith(("a.", "unit:")) or field == "comment":
            errors.setdefault(field, []).append(text)
        else:
            general.append(text)
    return errors, general


def _done(page: Page, ballot: TokenBallot, receipt: Receipt) -> Response:
    names = {u.code: u.name for u in ballot.spec.units}
    not_counted = [
        (names.get(u.unit, u.unit), page.gettext(UNIT_REASON_TEXT.get(u.reason or "", DEFAULT_PROBLEM_TEXT)))
        for u in receipt.units
        if u.status not in ("counted", "pending_review")
    ]
    values = {
        "title": ballot.spec.name,
        "spec": ballot.spec,
        "receipt": receipt.code,
        "not_counted": not_counted,
        "changed": ballot.spec.policy == "last_counts" and bool(ballot.voted),
    }
    return page.render("ballot/done.html", values)


def _local(spec: CampaignSpec, moment: datetime) -> str:
    return as_utc(moment).astimezone(ZoneInfo(spec.timezone)).strftime("%Y-%m-%d %H:%M")


def _state_page(page: Page, ballot: TokenBallot, state: State) -> Response:
    status = {"not_open": 403, "closed": 410, "not_online": 403, "not_sampled": 403}.get(state, 400)
    return _message(page, state, status=status, spec=ballot.spec)


def _message(
    page: Page, kind: str, *, status: int, spec: CampaignSpec | None = None, receipt: str | None = None
) -> Response:
    values = {
        "kind": kind,
        "title": spec.name if spec is not None else "",
        "spec": spec,
        "opens": _local(spec, spec.opens_at) if spec is not None else "",
        "closes": _local(spec, spec.closes_at) if spec is not None else "",
        "receipt": receipt,
        "again": page.request.url.path,
    }
    return page.render("ballot/message.html", values, status=status)


routes = [Route("/b/{token}", ballot_page, methods=["GET", "POST"], name="ballot")]
