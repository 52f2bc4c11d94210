"""
`POST /api/v1/ballots`: the JSON API for rating devices and integrations (body: see
`collect.channels.api`). Authenticated by API key (`Authorization: Bearer ck_…`).

Answers: 201 a new submission (`outcome` counted or not_counted, per-unit statuses); 200 a
redelivery of the same source_ref and content (the first receipt again); 400 not JSON or a bad
Idempotency-Key; 401 no or unknown key; 403 the campaign does not take API ballots; 404 unknown
campaign; 409 the source_ref was sent before with other content, or the Idempotency-Key was
used with another body; 413 body over 64 KiB; 422 invalid (every problem listed); 429 over the
key's rate (Retry-After). Errors use contract.md's shape. Responses with an Idempotency-Key are
kept and replayed (header `Idempotent-Replayed: true`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from collect.access import api_key_id
from collect.ballot import Receipt
from collect.channels.api import ApiAdapter, ApiBallotRequest, campaign_of, envelope_problems
from collect.dedupe.keys import sha256_hex
from collect.ingest import Item, as_utc, ingest_in, ingest_stream
from collect.store import Store
from collect.store.group_commit import Together
from collect.web import idempotency
from collect.web.context import WebContext, web
from collect.web.errors import api_error

# A revoked key keeps working for at most this long in each worker: the price of not reading
# the key table on every ballot.
API_KEY_CACHE_SECONDS = 30.0
_JSON = "application/json"


async def _api_key(ctx: WebContext, request: Request) -> int | Response:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return api_error(
            401,
            "unauthorized",
            "send the API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="collect"'},
        )
    digest = sha256_hex(key.strip())
    hit = ctx.api_keys.get(digest)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    found = await anyio.to_thread.run_sync(api_key_id, ctx.store, key.strip())
    if found is None:
        ctx.api_keys.pop(digest, None)
        return api_error(
            401,
            "invalid_api_key",
            "this API key is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="collect", error="invalid_token"'},
        )
    if len(ctx.api_keys) > 10_000:
        ctx.api_keys.clear()
    ctx.api_keys[digest] = (now + API_KEY_CACHE_SECONDS, found)
    return found


def _receipt_response(receipt: Receipt, campaign: str) -> tuple[int, dict[str, object]]:
    """Status and JSON body for what ingest() answered."""
    units = [{"unit": u.unit, "status": u.status, "reason": u.reason} for u in receipt.units]
    if receipt.problems or receipt.outcome in ("rejected", "conflict"):
        codes = {p.code for p in receipt.problems}
        if receipt.outcome == "conflict":
            status, error, detail = 409, "conflict", "this source_ref was received before with other content"
        elif codes == {"channel_disabled"}:
            status, error, detail = 403, "channel_disabled", f"campaign {campaign} does not take API ballots"
        elif codes == {"unknown_campaign"}:
            status, error, detail = 404, "unknown_campaign", f"campaign {campaign!r} does not exist"
        else:
            status, error, detail = (
                422,
                "invalid_ballot",
                f"{len(receipt.problems)} problem(s); nothing counted",
            )
        return status, {
            "error": error,
            "detail": detail,
            "errors": [p.as_dict() for p in receipt.problems],
            "receipt": receipt.code,
        }
    body: dict[str, object] = {
        "receipt": receipt.code,
        "outcome": receipt.outcome,
        "campaign": campaign,
        "units": units,
    }
    return (200 if receipt.outcome == "already_received" else 201), body


async def post_ballot(request: Request) -> Response:
    ctx = web(request)
    key_id = await _api_key(ctx, request)
    if isinstance(key_id, Response):
        return key_id
    wait = ctx.api_limiter.take(str(key_id))
    if wait > 0:
        return api_error(
            429,
            "too_many_requests",
            "slow down: this API key is over its request rate",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not (
        1 <= len(idempotency_key) <= idempotency.KEY_MAX and idempotency_key.isprintable()
    ):
        return api_error(
            400, "bad_idempotency_key", f"an Idempotency-Key is 1–{idempotency.KEY_MAX} printable characters"
        )
    try:
        body = await request.body()
    except ClientDisconnect:
        # The device hung up mid-request: nothing arrived, nobody to answer; it will retry.
        return Response(status_code=400)
    body_sha = hashlib.sha256(body).hexdigest()
    # Decoding and the spec lookup happen here, on the event loop (both cheap, the spec cached);
    # everything that touches the database then runs in one worker-thread call: one hop per
    # ballot instead of three, and on SQLite one queue for the one writer.
    ready = await _prepare(ctx, key_id, body)
    status, text, replayed = await ctx.commit_together(
        _TOGETHER, _execute, key_id, idempotency_key, body_sha, ready
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(text, status_code=status, media_type=_JSON, headers=headers)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A response decided before any database work (bad JSON, no campaign named)."""

    status: int
    payload: dict[str, object]


async def _prepare(ctx: WebContext, key_id: int, body: bytes) -> _Answer | tuple[Item, str]:
    """The item to ingest and its campaign code, or the answer to give without ingesting."""
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _Answer(400, {"error": "invalid_json", "detail": f"the body is not JSON: {exc}", "errors": []})
    problems = envelope_problems(decoded)
    if problems:
        # No campaign to file it under: answered, not kept.
        return _Answer(
            422,
            {
                "error": "invalid_ballot",
                "detail": f"{len(problems)} problem(s)",
                "errors": [p.as_dict() for p in problems],
            },
        )
    code = campaign_of(decoded)
    if code is None or not isinstance(decoded, dict):  # envelope_problems said so already
        raise AssertionError("envelope checks let a body without a campaign through")
    raw = ApiBallotRequest(body=decoded, client=f"key{key_id}", received_at=as_utc(ctx.clock()))
    adapter = ApiAdapter()
    campaign = await ctx.campaign(code)
    item = (
        adapter.unknown_campaign(raw, code) if campaign is None else next(adapter.parse(raw, campaign.spec))
    )
    return item, code


def _execute(
    store: Store,
    key_id: int,
    idempotency_key: str | None,
    body_sha: str,
    ready: _Answer | tuple[Item, str],
) -> tuple[int, str, bool]:
    """
    On a writer thread, as one step of a group commit: replay a kept response, or ingest and
    keep the response. All on the step's own connection and savepoint; a race lost on
    PostgreSQL raises IntegrityError and the writer runs the step again.
    """
    with store.engine.connect() as connection:
        if idempotency_key is not None:
            stored = idempotency.find(connection, key_id, idempotency_key)
            if stored is not None:
                return _replayed(stored, body_sha)
        if isinstance(ready, _Answer):
            status, payload = ready.status, ready.payload
        else:
            item, code = ready
            status, payload = _receipt_response(ingest_in(connection, store, item), code)
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        if idempotency_key is not None:
            kept = idempotency.StoredResponse(body_sha, status, text)
            idempotency.keep_many(connection, [(key_id, idempotency_key, kept)])
    return status, text, False


_Call = tuple[int, str | None, str, "_Answer | tuple[Item, str]"]


def _execute_many(store: Store, calls: list[_Call]) -> list[tuple[int, str, bool]]:
    """
    _execute() for many waiting requests at once: one lookup of their Idempotency-Keys, one
    ingest_stream() of their ballots, one insert of their kept responses. The answers are
    those _execute() would give one by one in the same order (ingest_stream is proven equal
    to ingest_batch); anything unusual raises and the group writer runs them one by one.
    """
    keys = [(key_id, key) for key_id, key, _sha, _ready in calls if key is not None]
    if len(set(keys)) != len(keys):
        raise _OneByOne("an Idempotency-Key twice in one batch: the second must replay the first")
    with store.engine.connect() as connection:
        kept_before = idempotency.find_many(connection, keys)
        answers: list[tuple[int, str, bool] | None] = [None] * len(calls)
        payloads: dict[int, tuple[int, dict[str, object]]] = {}
        waiting: dict[int, tuple[int, str]] = {}  # id(item) → (call index, campaign code)
        items: list[Item] = []
        for index, (key_id, key, body_sha, ready) in enumerate(calls):
            stored = kept_before.get((key_id, key)) if key is not None else None
            if stored is not None:
                answers[index] = _replayed(stored, body_sha)
            elif isinstance(ready, _Answer):
                payloads[index] = (ready.status, ready.payload)
            else:
                item, code = ready
                waiting[id(item)] = (index, code)
                items.append(item)

        def receipt_in(item: Item, receipt: Receipt) -> None:
            index, code = waiting[id(item)]
            payloads[index] = _receipt_response(receipt, code)

        ingest_stream(store, items, receipt_in, connection=connection)
        kept: list[tuple[int, str, idempotency.StoredResponse]] = []
        for index, (status, payload) in payloads.items():
            key_id, key, body_sha, _ready = calls[index]
            text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            answers[index] = (status, text, False)
            if key is not None:
                kept.append((key_id, key, idempotency.StoredResponse(body_sha, status, text)))
        idempotency.keep_many(connection, kept)
    if any(answer is None for answer in answers):
        raise _OneByOne("a request got no answer")
    return [answer for answer in answers if answer is not None]


class _OneByOne(Exception):
    """Internal: these requests cannot be written together; the group writer takes them singly."""


def _call_key(call: _Call) -> tuple[int, str] | None:
    key_id, key, _sha, _ready = call
    return None if key is None else (key_id, key)


_TOGETHER = Together("api ballots", _execute_many, key=_call_key)


def _replayed(stored: idempotency.StoredResponse, body_sha: str) -> tuple[int, str, bool]:
    if stored.body_sha256 != body_sha:
        body = {
            "error": "idempotency_key_reused",
            "detail": "this Idempotency-Key was used with a different body",
            "errors": [],
        }
        return 409, json.dumps(body), False
    return stored.status_code, stored.body, True


routes = [Route("/api/v1/ballots", post_ballot, methods=["POST"])]
