"""
The web app: web ballots, the JSON API, the operator console, health probes.

`create_app(settings)` is all a caller needs; it opens the store in the lifespan (or uses the
one given) and closes what it opened. In-process use, e.g. to cast demo ballots:

    with TestClient(create_app(settings, store)) as client:
        client.get(link)                                   # sets the CSRF cookie
        …

`collect serve --workers N` starts `collect.web.app:app_from_env` as a factory in each worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import anyio
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount

from collect.logs import RequestLog
from collect.metrics import WRITE_SECONDS, registry_for
from collect.settings import Settings
from collect.store import Store
from collect.store.group_commit import GroupWriter
from collect.web import admin, api, ballot, health, metrics, sms, window
from collect.web.context import TEMPLATES, WebContext, utc_now
from collect.web.errors import http_exception, server_error
from collect.web.i18n import load_translations
from collect.web.security import BodyLimit, Csrf, SecurityHeaders, csp_hash

log = logging.getLogger("collect.web")

SESSION_COOKIE = "collect_session"
SESSION_MAX_AGE = 8 * 3600  # one working day; then sign in again
# Concurrent database writers on PostgreSQL; SQLite gets one (it has one writer anyway).
PG_WRITERS = 10


def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """
    Build the app.

    Args:
        store: an open store to use (the caller closes it); None opens one from
            `settings.database_url` for the app's lifetime. Either way the schema must be
            migrated (`collect serve` does that before starting).
        clock: what "now" is (tests, the demo); the real UTC clock otherwise.

    Raises:
        MissingSecretKey: COLLECT_SECRET_KEY is not set; it signs CSRF tokens and sessions.
    """
    secret = settings.secret()
    https = settings.public_url.startswith("https://")
    css = (TEMPLATES / "style.css").read_text(encoding="utf-8")
    context = WebContext(
        settings=settings,
        translations=load_translations(),
        csrf=Csrf(secret, https=https),
        css=Markup(css),
        clock=clock or utc_now,
        store_=store,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = context.store_ is None
        if owned:
            context.store_ = Store(settings)
        writers = 1 if context.store.settings.is_sqlite else PG_WRITERS
        context.writes = anyio.CapacityLimiter(writers)
        # A second lifespan of the same app (two test clients at once) shares the first's writer.
        own_writer = context.writer is None
        if own_writer:
            context.writer = GroupWriter.for_store(context.store, on_written=WRITE_SECONDS.observe)
        app.state.store = context.store
        app.state.metrics = registry_for(context.store)
        try:
            yield
        finally:
            if own_writer and context.writer is not None:
                context.writer.close()
                context.writer = None
            if owned and context.store_ is not None:
                context.store_.dispose()
                context.store_ = None

    admin_mount = Mount(
        "/admin",
        routes=admin.routes(),
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret.decode(),
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_MAX_AGE,
                path="/admin",
                same_site="lax",
                https_only=https,
            )
        ],
    )
    app = Starlette(
        routes=[
            *health.routes,
            *metrics.routes,
            *ballot.routes,
            *api.routes,
            *sms.routes,
            *window.routes,
            admin_mount,
        ],
        middleware=[
            Middleware(RequestLog),
            Middleware(SecurityHeaders, style_hashes=(csp_hash(css),), https=https),
            Middleware(BodyLimit),
        ],
        exception_handlers={HTTPException: http_exception, 500: server_error},
        lifespan=lifespan,
    )
    app.state.web = context
    app.state.settings = settings
    return app


def app_from_env() -> Starlette:
    """The uvicorn factory for `collect serve`: settings from the environment."""
    return create_app(Settings())


__all__ = ["app_from_env", "create_app"]
