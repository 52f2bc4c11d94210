"""
What every route needs, built once per app: settings, store, templates and catalogues, CSRF,
rate limits and the clock. Routes reach it with `web(request)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import jinja2
from babel.support import Translations
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from collect.settings import Settings
from collect.store import Store
from collect.store.campaigns import LoadedCampaign, load_campaign
from collect.store.group_commit import GroupWriter, Together
from collect.web.i18n import LANG_COOKIE, chosen_lang
from collect.web.ratelimit import FailureLimiter, TokenBucket
from collect.web.security import Csrf

TEMPLATES = Path(__file__).resolve().parent / "templates"
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,  # a misspelt variable is an error in tests, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


@dataclass
class WebContext:
    settings: Settings
    translations: Mapping[str, Translations]
    csrf: Csrf
    css: Markup
    clock: Callable[[], datetime] = utc_now
    templates: Jinja2Templates = field(default_factory=make_templates)
    # A rating device sends one ballot a minute; an integration replaying a backlog is told to
    # slow down (429 with Retry-After) rather than starve everyone else.
    api_limiter: TokenBucket = field(default_factory=lambda: TokenBucket(rate=50.0, burst=200))
    # Per (address, name): 5 failed logins in 15 minutes; per address: 30, against name spraying.
    login_by_name: FailureLimiter = field(default_factory=lambda: FailureLimiter(5, 15 * 60))
    login_by_address: FailureLimiter = field(default_factory=lambda: FailureLimiter(30, 15 * 60))
    store_: Store | None = None
    owns_store: bool = False
    writes: anyio.CapacityLimiter | None = None
    writer: GroupWriter | None = None
    api_keys: dict[str, tuple[float, int]] = field(default_factory=dict)
    campaigns: dict[str, tuple[float, LoadedCampaign]] = field(default_factory=dict)

    @property
    def https(self) -> bool:
        return self.settings.public_url.startswith("https://")

    @property
    def store(self) -> Store:
        if self.store_ is None:
            raise RuntimeError("the app's store is opened by its lifespan: use `with TestClient(app)`")
        return self.store_

    async def write(self, func: Callable[..., T], *args: Any) -> T:
        """
        Run a writing call (ingest) in a worker thread. On SQLite writes go one at a time
        through this limiter: SQLite has one writer anyway, and queueing here is far cheaper
        than threads polling the file lock through busy_timeout.
        """
        return await anyio.to_thread.run_sync(func, *args, limiter=self.writes)

    async def commit(self, func: Callable[..., T], *args: Any) -> T:
        """
        Run `func(store, *args)` on a writer thread, committed together with the other
        requests waiting to write (see collect.store.group_commit). `store` is the store inside
        that shared transaction: `func` must do all its database work through it, and must not
        wait on anything outside the database (the batch holds the write lock meanwhile).
        """
        if self.writer is None:
            raise RuntimeError("the app's writer is started by its lifespan: use `with TestClient(app)`")
        return await self.writer.run(lambda store: func(store, *args))

    async def commit_together(self, together: Together, func: Callable[..., T], *args: Any) -> T:
        """commit(), and when others of `together`'s kind wait too, all of them set-based."""
        if self.writer is None:
            raise RuntimeError("the app's writer is started by its lifespan: use `with TestClient(app)`")
        return await self.writer.run(lambda store: func(store, *args), together=together, payload=args)

    async def campaign(self, code: str) -> LoadedCampaign | None:
        """A campaign's spec, cached for a few seconds (as ingest caches it)."""
        hit = self.campaigns.get(code)
        now = time.monotonic()
        if hit is not None and now - hit[0] < 5.0:
            return hit[1]

        def load() -> LoadedCampaign | None:
            with self.store.reader.connect() as connection:
                return load_campaign(self.store, connection, code)

        loaded = await anyio.to_thread.run_sync(load)
        if loaded is not None:
            self.campaigns[code] = (now, loaded)
        return loaded


def web(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


class Page:
    """One HTML page in the language the visitor chose; `render` sets the language cookie."""

    def __init__(self, request: Request, default_lang: str | None = None) -> None:
        self.request = request
        self.context = web(request)
        self.lang, self._chosen = chosen_lang(request, default_lang or self.context.settings.lang)
        self.translations = self.context.translations[self.lang]

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def render(
        self,
        name: str,
        values: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        full = {
            "lang": self.lang,
            "gettext": self.translations.gettext,
            "ngettext": self.translations.ngettext,
            "css": self.context.css,
            **values,
        }
        response = self.context.templates.TemplateResponse(
            self.request, name, full, status_code=status, headers=dict(headers or {})
        )
        if self._chosen:
            response.set_cookie(
                LANG_COOKIE,
                self.lang,
                max_age=365 * 24 * 3600,
                path="/",
                secure=self.context.https,
                httponly=True,
                samesite="lax",
            )
        return response
