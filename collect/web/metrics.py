"""
`GET /metrics` (Prometheus text format; what it holds: collect/metrics.py).

`COLLECT_METRICS_TOKEN`, when set, is required as `Authorization: Bearer …`: the counts are not
personal data, but they are a campaign's running results, not for everyone who can reach the
port. Without it, keep /metrics off the public proxy (deploy/README.md).
"""

from __future__ import annotations

import hmac

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collect.web.context import web


async def metrics(request: Request) -> Response:
    expected = web(request).settings.metrics_token
    if expected is not None and expected.get_secret_value():
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected.get_secret_value()):
            return Response("unauthorized\n", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    body = await anyio.to_thread.run_sync(generate_latest, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
