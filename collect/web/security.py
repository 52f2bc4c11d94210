"""
Protections every response or form gets: security headers, CSRF tokens, request body caps.

CSRF is a signed double-submit token: a random value in an HttpOnly cookie, and in each form a
token signed with COLLECT_SECRET_KEY that binds that value, the form's purpose and a form id.
A cross-site POST carries neither (SameSite=Lax keeps the cookie home), and a forged token fails
the signature. On https the cookie takes the `__Host-` prefix, so a sibling subdomain cannot
plant its own value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def csp_hash(text: str) -> str:
    """The CSP source for one inline block (the pages' CSS), so no 'unsafe-inline' is needed."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class SecurityHeaders:
    """
    Pure ASGI (no BaseHTTPMiddleware: it would cost the API path a task per request).

    `Referrer-Policy: no-referrer` matters beyond hygiene: ballot URLs carry the respondent's
    token, which must not leak to any site a page links to.
    """

    def __init__(self, app: ASGIApp, *, style_hashes: tuple[str, ...], https: bool) -> None:
        self.app = app
        styles = " ".join(style_hashes) or "'none'"
        csp = (
            "default-src 'none'; "
            f"style-src {styles}; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        headers = {
            "content-security-policy": csp,
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
            "cross-origin-opener-policy": "same-origin",
        }
        if https:
            headers["strict-transport-security"] = "max-age=31536000; includeSubDomains"
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
                if "cache-control" not in headers:
                    # Ballot pages carry tokens, console pages personal counts, API answers
                    # receipts: nothing here belongs in a shared cache or the back-forward cache.
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(Exception):
    """A request body over its route's cap; answered 413 by `BodyLimit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


# Caps by path prefix (longest match wins); `admin_page(max_body=…)` adds its own prefix.
BODY_LIMITS: dict[str, int] = {"/": 1 << 20, "/api/": 64 << 10, "/b/": 64 << 10}


def body_limit(path: str) -> int:
    prefix = max((p for p in BODY_LIMITS if path.startswith(p)), key=len, default="/")
    return BODY_LIMITS.get(prefix, 1 << 20)


class BodyLimit:
    """
    Refuses bodies over the cap with 413, by Content-Length before reading and by counting
    while reading (a chunked body has no length to check up front).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watch_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watch_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        detail = f"the request body exceeds {limit} bytes"
        if scope["path"].startswith("/api/"):
            body = json.dumps({"error": "payload_too_large", "detail": detail, "errors": []}).encode()
            kind = b"application/json"
        else:
            body, kind = detail.encode(), b"text/plain; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True, slots=True)
class CsrfToken:
    """What a form carries (`field`) and the cookie to set when the browser has none yet."""

    field: str
    form_id: str
    cookie: str | None


class Csrf:
    FIELD = "csrf"

    def __init__(self, secret: bytes, *, https: bool) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="collect.csrf")
        self.https = https
        self.cookie_name = "__Host-collect_csrf" if https else "collect_csrf"

    def issue(self, request: Request, purpose: str) -> CsrfToken:
        nonce = request.cookies.get(self.cookie_name)
        fresh = nonce is None or not (16 <= len(nonce) <= 64)
        if fresh:
            nonce = secrets.token_urlsafe(24)
        assert nonce is not None
        form_id = secrets.token_urlsafe(12)
        field = self._signer.dumps({"n": nonce, "p": purpose, "f": form_id})
        return CsrfToken(field=field, form_id=form_id, cookie=nonce if fresh else None)

    def verify(self, request: Request, form: Mapping[str, str], purpose: str, max_age: int) -> str | None:
        """The form id of a valid token for this browser and purpose; None otherwise."""
        nonce = request.cookies.get(self.cookie_name)
        token = form.get(self.FIELD)
        if not nonce or not token:
            return None
        try:
            data = self._signer.loads(token, max_age=max_age)
        except BadSignature:  # includes SignatureExpired
            return None
        if not isinstance(data, dict) or data.get("p") != purpose:
            return None
        if not secrets.compare_digest(str(data.get("n", "")), nonce):
            return None
        form_id = data.get("f")
        return form_id if isinstance(form_id, str) else None

    def set_cookie(self, response: Response, token: CsrfToken) -> None:
        if token.cookie is None:
            return
        response.set_cookie(
            self.cookie_name,
            token.cookie,
            max_age=7 * 24 * 3600,
            path="/",
            secure=self.https,
            httponly=True,
            samesite="lax",
        )
