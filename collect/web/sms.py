"""
Twilio webhooks: `POST /sms/twilio` (replies) and `POST /sms/twilio/status` (delivery).

Glue only: the signature is checked against COLLECT_PUBLIC_URL + the path (behind a TLS proxy
the request's own URL says http:// and every signature would fail); `collect.invites` decides
and `ingest()` writes. Exempt from CSRF: Twilio's signature is the authentication. Replies are
TwiML (`application/xml`): a text/plain body would be texted to the citizen verbatim.
"""

from __future__ import annotations

import functools
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.twiml.messaging_response import MessagingResponse

from collect.invites import INBOUND_PATH, STATUS_PATH, handle_inbound, record_status, record_unsigned
from collect.web.context import web

log = logging.getLogger("collect.web.sms")

# A Twilio SMS webhook is a couple of kilobytes; anything far larger is not Twilio.
MAX_BODY = 64 << 10
MAX_FIELDS = 200
XML = "application/xml"


def twiml(reply: str | None) -> Response:
    """The reply as TwiML; None or "" gives an empty <Response/> (Twilio then sends nothing)."""
    response = MessagingResponse()  # type: ignore[no-untyped-call]
    if reply:
        response.message(reply)  # type: ignore[no-untyped-call]
    return Response(str(response), media_type=XML)


async def _form(request: Request) -> dict[str, str] | Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return Response(status_code=413)
    async with request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_BODY) as form:
        return {key: value for key, value in form.multi_items() if isinstance(value, str)}


def signature_problem(request: Request, path: str, form: dict[str, str]) -> str | None:
    """None when the request is Twilio's; otherwise why not (kept with the refused request)."""
    settings = web(request).settings
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        return "no X-Twilio-Signature header"
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        log.error("TWILIO_AUTH_TOKEN is not set: every Twilio webhook is refused")
        return "TWILIO_AUTH_TOKEN is not configured"
    url = settings.public_url.rstrip("/") + path
    if request.url.query:
        url += "?" + request.url.query
    # twilio ships no type hints (pyproject's override): these calls are untyped to mypy.
    settings_header = request.headers.get("x-twilio-webhooks-signature-settings")
    algorithm = get_signature_algorithm(settings_header)  # type: ignore[no-untyped-call]
    validator = RequestValidator(token.get_secret_value())  # type: ignore[no-untyped-call]
    if not validator.validate(url, form, signature, algorithm):  # type: ignore[no-untyped-call]
        return "X-Twilio-Signature does not match"
    return None


async def inbound(request: Request) -> Response:
    ctx = web(request)
    form = await _form(request)
    if isinstance(form, Response):
        return form
    now = ctx.clock()
    problem = signature_problem(request, INBOUND_PATH, form)
    if problem is not None:
        await ctx.write(functools.partial(record_unsigned, ctx.store, form, now=now, detail=problem))
        return Response(status_code=403)
    result = await ctx.write(functools.partial(handle_inbound, ctx.store, form, now=now))
    # 200 with TwiML even for an unreadable reply: a 4xx never reaches the citizen.
    return twiml(result.reply)


async def status(request: Request) -> Response:
    ctx = web(request)
    form = await _form(request)
    if isinstance(form, Response):
        return form
    problem = signature_problem(request, STATUS_PATH, form)
    if problem is not None:
        log.warning("sms status callback refused: %s", problem)
        return Response(status_code=403)
    await ctx.write(
        functools.partial(record_status, ctx.store, form, request.query_params.get("m"), ctx.clock())
    )
    # Twilio does not read the body of a status callback; 204 says "taken" without one.
    return Response(status_code=204)


routes = [
    Route(INBOUND_PATH, inbound, methods=["POST"]),
    Route(STATUS_PATH, status, methods=["POST"]),
]
