"""`/healthz`: the process answers. `/readyz`: and its database does (503 otherwise)."""

from __future__ import annotations

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collect.store.engine import DatabaseUnreachable
from collect.web.context import web
from collect.web.errors import api_error

READY_TIMEOUT = 3.0  # seconds; a probe that hangs is as bad as one that fails


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    store = web(request).store
    try:
        with anyio.fail_after(READY_TIMEOUT):
            # abandon_on_cancel: a hung connect must not hold the probe past its timeout.
            await anyio.to_thread.run_sync(store.ping, abandon_on_cancel=True)
    except DatabaseUnreachable as exc:
        return api_error(503, "database_unreachable", str(exc))
    except TimeoutError:
        return api_error(503, "database_unreachable", f"no answer from the database in {READY_TIMEOUT:g} s")
    return JSONResponse({"status": "ready"})


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
