"""
The console's page registry and the one guard every page goes through.

`@admin_page(path, title=…, min_role=…)` registers a page; its wrapper loads the signed-in
account (from the database on every request, so a disabled user or a changed role takes
effect at once), sends visitors who are not signed in to the login page, answers 403 below
`min_role`, and checks the CSRF token of every POST before the page sees the form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import anyio.to_thread
import sqlalchemy as sa
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from collect.access import ROLE_RANK, Account, Role
from collect.store import Store
from collect.store.tables import USER
from collect.web.context import Page, web
from collect.web.forms import BadForm, read_form
from collect.web.security import BODY_LIMITS

CSRF_PURPOSE = "admin"
CSRF_MAX_AGE = 8 * 3600  # as long as a session
PREFIX = "/admin"

Handler = Callable[[Request, "AdminView"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class AdminPage:
    """One console page: where, what it is called (a msgid), who may open it."""

    path: str
    title: str
    min_role: Role
    handler: Handler
    methods: tuple[str, ...]
    nav: bool
    uploads: bool
    max_body: int | None

    @property
    def url(self) -> str:
        return PREFIX + self.path


REGISTRY: dict[str, AdminPage] = {}


class DuplicatePage(ValueError):
    """Two pages claim one path."""


def admin_page(
    path: str,
    *,
    title: str,
    min_role: Role,
    methods: tuple[str, ...] = ("GET",),
    nav: bool = True,
    uploads: bool = False,
    max_body: int | None = None,
) -> Callable[[Handler], Handler]:
    """
    Register a console page at `/admin{path}`.

    Args:
        title: an English msgid (mark it with `N_`), shown in the menu and the page heading.
        min_role: the least role that may open it (viewer < clerk < operator < admin).
        nav: list it in the menu (pages with path parameters should not be).
        uploads: POSTs are multipart with files (`view.files`); else plain forms (`view.form`).
        max_body: a larger body cap for this page's requests, in bytes (uploads).
    """
    if min_role not in ROLE_RANK:
        raise ValueError(f"unknown role {min_role!r}")

    def register(handler: Handler) -> Handler:
        if path in REGISTRY and REGISTRY[path].handler is not handler:
            raise DuplicatePage(f"an admin page is registered at {path!r} already")
        REGISTRY[path] = AdminPage(path, title, min_role, handler, methods, nav, uploads, max_body)
        if max_body is not None:
            BODY_LIMITS[PREFIX + path.split("{")[0]] = max_body
        return handler

    return register


def load_account(store: Store, user_id: int) -> Account | None:
    with store.reader.connect() as connection:
        row = connection.execute(
            sa.select(USER.c.id, USER.c.name, USER.c.role).where(
                USER.c.id == user_id, USER.c.disabled.is_(False)
            )
        ).first()
    return None if row is None else Account(row.id, row.name, cast(Role, row.role))


async def current_account(request: Request) -> Account | None:
    user_id = request.session.get("uid")
    if not isinstance(user_id, int):
        return None
    account = await anyio.to_thread.run_sync(load_account, web(request).store, user_id)
    if account is None:
        request.session.clear()
    return account


class AdminView:
    """What a page handler gets besides the request: the account, the form, `render`."""

    def __init__(self, request: Request, account: Account, page: AdminPage | None) -> None:
        self.request = request
        self.account = account
        self.page = page
        self.html = Page(request)
        self.form: dict[str, str] = {}
        self.files: FormData | None = None
        self._csrf = web(request).csrf.issue(request, CSRF_PURPOSE)

    def gettext(self, message: str) -> str:
        return self.html.gettext(message)

    def may(self, role: Role) -> bool:
        return ROLE_RANK[self.account.role] >= ROLE_RANK[role]

    def render(
        self,
        template: str,
        values: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        menu = [p for p in sorted(REGISTRY.values(), key=lambda p: p.path) if p.nav and self.may(p.min_role)]
        title = values.get("title") or (self.gettext(self.page.title) if self.page is not None else "")
        full = {
            "account": self.account,
            "menu": menu,
            "csrf": self._csrf.field,
            "current": self.request.url.path,
            **values,
            "title": title,
        }
        response = self.html.render(template, full, status=status, headers=headers)
        web(self.request).csrf.set_cookie(response, self._csrf)
        return response


def refuse(request: Request, status: int, kind: str, account: Account | None = None) -> Response:
    """The console's 400/401/403 pages (with the menu when someone is signed in)."""
    values = {"title": "", "kind": kind}
    if account is not None:
        return AdminView(request, account, None).render("admin/refused.html", values, status=status)
    return Page(request).render("admin/refused.html", {**values, "account": None}, status=status)


async def _handle(request: Request, view: AdminView, page: AdminPage, account: Account) -> Response:
    """Read and check the POSTed form (CSRF first), then the page."""
    if request.method not in ("GET", "HEAD"):
        ctx = web(request)
        try:
            if page.uploads:
                view.files = await request.form(
                    max_files=20, max_fields=1000, max_part_size=page.max_body or 1 << 20
                )
                form = {k: v for k, v in view.files.multi_items() if isinstance(v, str)}
            else:
                form = await read_form(request)
        except BadForm:
            return refuse(request, 400, "csrf", account)
        if ctx.csrf.verify(request, form, CSRF_PURPOSE, CSRF_MAX_AGE) is None:
            return refuse(request, 403, "csrf", account)
        view.form = form
    return await page.handler(request, view)


def guarded(page: AdminPage) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        account = await current_account(request)
        if account is None:
            if request.method in ("GET", "HEAD"):
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
            return refuse(request, 401, "login")
        if ROLE_RANK[account.role] < ROLE_RANK[page.min_role]:
            return refuse(request, 403, "role", account)
        view = AdminView(request, account, page)
        try:
            return await _handle(request, view, page, account)
        finally:
            if view.files is not None:
                await view.files.close()  # uploads spooled to disk are removed now, not at exit

    endpoint.__name__ = page.handler.__name__
    return endpoint
