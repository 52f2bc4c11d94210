"""contract.md's JSON error shape, and the pages for HTTP errors outside the ballot routes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from collect.ballot import Problem
from collect.web.context import Page


def api_error(
    status: int,
    error: str,
    detail: str,
    problems: Iterable[Problem] = (),
    *,
    headers: Mapping[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    """`{"error": code, "detail": text, "errors": [{field, code, detail}, …]}`, every problem listed."""
    body: dict[str, object] = {"error": error, "detail": detail, "errors": [p.as_dict() for p in problems]}
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "too_many_requests",
}


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if request.url.path.startswith("/api/"):
        return api_error(
            exc.status_code, _CODES.get(exc.status_code, "error"), str(exc.detail), headers=headers
        )
    page = Page(request)
    return page.render(
        "error.html", {"title": "", "status": exc.status_code}, status=exc.status_code, headers=headers
    )


async def server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server log (uvicorn logs it); the client learns nothing of it.
    if request.url.path.startswith("/api/"):
        return api_error(500, "internal_error", "the server failed; the request may be retried")
    return Response("500 Internal Server Error", status_code=500, media_type="text/plain")
