"""
Signing in and out of the console.

Failed logins are limited in-process (see `collect.web.ratelimit`): 5 per address and name and
30 per address in 15 minutes; over either, 429 with Retry-After, before the password is checked.
A successful login starts a new session (the old cookie's contents are dropped).
"""

from __future__ import annotations

import math

import anyio.to_thread
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from collect.access import Account, authenticate
from collect.store import Store
from collect.store.tables import AUDIT, utcnow
from collect.web.admin.pages import CSRF_MAX_AGE, CSRF_PURPOSE, PREFIX, current_account, refuse
from collect.web.context import Page, web
from collect.web.forms import BadForm, read_form

LOGIN_PURPOSE = "admin-login"
NAME_MAX = 128
PASSWORD_MAX = 1024  # argon2 hashes any length; a megabyte password is a denial of service


def _safe_next(target: str | None) -> str:
    """Only paths inside the console: `next=//evil.example` must not become an open redirect."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


def _audit(store: Store, actor: str, action: str, detail: dict[str, str]) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            sa.insert(AUDIT).values(at=utcnow(), actor=actor[:128], action=action, detail=detail)
        )


def _login_form(request: Request, *, status: int = 200, error: str | None = None, name: str = "") -> Response:
    ctx = web(request)
    page = Page(request)
    token = ctx.csrf.issue(request, LOGIN_PURPOSE)
    values = {
        "title": page.gettext("Sign in"),
        "csrf": token.field,
        "error": error,
        "name": name,
        "next": _safe_next(request.query_params.get("next")),
        "account": None,
    }
    response = page.render("admin/login.html", values, status=status)
    ctx.csrf.set_cookie(response, token)
    return response


async def login(request: Request) -> Response:
    if request.method == "GET":
        if await current_account(request) is not None:
            return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        return _login_form(request)
    ctx = web(request)
    try:
        form = await read_form(request)
    except BadForm:
        return refuse(request, 400, "csrf")
    if ctx.csrf.verify(request, form, LOGIN_PURPOSE, CSRF_MAX_AGE) is None:
        return refuse(request, 403, "csrf")
    name = form.get("name", "").strip()[:NAME_MAX]
    password = form.get("password", "")[:PASSWORD_MAX]
    address = request.client.host if request.client else "unknown"
    by_name, by_address = f"{address}\x1f{name.lower()}", address
    wait = max(ctx.login_by_name.retry_after(by_name), ctx.login_by_address.retry_after(by_address))
    page = Page(request)
    if wait > 0:
        response = _login_form(
            request,
            status=429,
            name=name,
            error=page.gettext("Too many failed sign-ins. Please wait and try again."),
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    account: Account | None = None
    if name and password:
        account = await anyio.to_thread.run_sync(authenticate, ctx.store, name, password)
    if account is None:
        ctx.login_by_name.fail(by_name)
        ctx.login_by_address.fail(by_address)
        return _login_form(request, status=401, name=name, error=page.gettext("Wrong name or password."))
    ctx.login_by_name.clear(by_name)
    request.session.clear()
    request.session["uid"] = account.id
    await ctx.write(_audit, ctx.store, account.name, "user.login", {"address": address})
    return RedirectResponse(_safe_next(form.get("next")), status_code=303)


async def logout(request: Request) -> Response:
    ctx = web(request)
    try:
        form = await read_form(request)
    except BadForm:
        return refuse(request, 400, "csrf")
    if ctx.csrf.verify(request, form, CSRF_PURPOSE, CSRF_MAX_AGE) is None:
        return refuse(request, 403, "csrf")
    account = await current_account(request)
    request.session.clear()
    if account is not None:
        await ctx.write(_audit, ctx.store, account.name, "user.logout", {})
    return RedirectResponse(f"{PREFIX}/login", status_code=303)
