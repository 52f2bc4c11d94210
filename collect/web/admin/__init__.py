"""
The operator console, `/admin`.

How to add a page (imports, paper entry, review, cases …):

1. Write `collect/web/admin/<area>.py`::

       from collect.web.admin.pages import AdminView, admin_page
       from collect.web.i18n import N_

       @admin_page("/review", title=N_("Review"), min_role="clerk", methods=("GET", "POST"))
       async def review(request: Request, view: AdminView) -> Response:
           if request.method == "POST":
               ...  # view.form holds the posted fields; its CSRF token is checked already
           return view.render("admin/review.html", {"items": ...})

2. Add `"<area>"` to `PAGE_MODULES` below.
3. Add `templates/admin/<area>.html` (`{% extends "admin/base.html" %}`); every form in it
   carries `<input type="hidden" name="csrf" value="{{ csrf }}">`.
4. Add the page's English texts and their Chinese to `collect/locale/*/LC_MESSAGES/messages.po`
   (tests/web/test_i18n.py fails on a text without a translation).

The decorator does login, the role check (viewer < clerk < operator < admin) and CSRF; the page
shows in the menu of everyone whose role reaches `min_role` (unless `nav=False`).
"""

from __future__ import annotations

import importlib

from starlette.routing import BaseRoute, Route

from collect.web.admin.auth import login, logout
from collect.web.admin.pages import PREFIX, REGISTRY, guarded

PAGE_MODULES = ("dashboard", "cases", "paper", "imports", "review")


def routes() -> list[BaseRoute]:
    """Every console route; the page modules register themselves when imported."""
    for name in PAGE_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    out: list[BaseRoute] = [
        Route("/login", login, methods=["GET", "POST"], name="admin_login"),
        Route("/logout", logout, methods=["POST"], name="admin_logout"),
    ]
    for page in sorted(REGISTRY.values(), key=lambda p: p.path):
        out.append(Route(page.path, guarded(page), methods=list(page.methods)))
    return out


__all__ = ["PREFIX", "routes"]
