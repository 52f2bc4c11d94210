"""
The web app on a real store (SQLite file and PostgreSQL), with real respondents and links:
rosters go in through `import_roster`, links come out of `issue_invitations`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from collect.access import create_api_key, create_user
from collect.campaign import CampaignSpec
from collect.roster import import_roster, issue_invitations
from collect.store import Store
from collect.store.campaigns import save_campaign
from collect.web.app import create_app

# Inside the branch-office example's window (2026-07-01 to 2026-12-31, +08:00).
DURING = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
AFTER_CLOSE = datetime(2027, 1, 5, tzinfo=UTC)
BEFORE_OPEN = datetime(2026, 6, 1, tzinfo=UTC)
PHONE_L1 = "+8613975318642"
PASSWORD = "correct horse battery"


@dataclass
class Clock:
    """The app's "now", moved by tests."""

    now: datetime = DURING

    def __call__(self) -> datetime:
        return self.now


def variant(base: CampaignSpec, **changes: Any) -> CampaignSpec:
    """A validated copy of `base` under a fresh code; `open_tier=True` adds a public tier."""
    data: dict[str, Any] = base.model_dump(mode="json")
    data["code"] = f"w-{secrets.token_hex(4)}"
    if changes.pop("open_tier", False):
        data["tiers"] = [
            *data["tiers"],
            {"code": "public", "zh": "社会公众", "en": "Public", "weight": 0.0, "source": "open"},
        ]
    data.update(changes)
    return CampaignSpec.model_validate(data)


@dataclass
class Env:
    store: Store
    spec: CampaignSpec
    clock: Clock
    app: Starlette
    links: dict[str, str] = field(default_factory=dict)  # roster id → /b/<token>


def load(store: Store, spec: CampaignSpec, tmp_path: Path) -> dict[str, str]:
    """Save the campaign, import small rosters, issue links; returns roster id → ballot path."""
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="test")
    leaders = tmp_path / f"{spec.code}-leaders.csv"
    leaders.write_text(f"id,phone,unit\nL1,{PHONE_L1},\nL2,,\nL3,,\n", encoding="utf-8")
    import_roster(store, spec.code, "leaders", leaders, actor="test")
    peers = tmp_path / f"{spec.code}-peers.csv"
    peers.write_text("id,phone,unit\nP1,,S01\n", encoding="utf-8")
    import_roster(store, spec.code, "peers", peers, actor="test")
    return {
        link.roster_id: urlsplit(link.url).path for link in issue_invitations(store, spec.code, actor="test")
    }


def make_env(store: Store, spec: CampaignSpec, tmp_path: Path) -> Env:
    clock = Clock()
    links = load(store, spec, tmp_path)
    return Env(store, spec, clock, create_app(store.settings, store, clock=clock), links)


@pytest.fixture
def env(store: Store, branch_spec: CampaignSpec, tmp_path: Path) -> Env:
    return make_env(store, variant(branch_spec, open_tier=True), tmp_path)


@pytest.fixture
def client(env: Env) -> Iterator[TestClient]:
    # https, as in production (public_url is https): Secure cookies, __Host- prefix, HSTS.
    with TestClient(env.app, base_url="https://testserver") as client:
        yield client


CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match is not None, "the page has no CSRF field"
    return match.group(1)


def ballot_form(
    spec: CampaignSpec, units: list[str] | None = None, level: str = "satisfied"
) -> dict[str, str]:
    codes = units if units is not None else [u.code for u in spec.units]
    return {f"a.{u}.{a.code}": level for u in codes for a in spec.aspects}


def vote(client: TestClient, path: str, fields: dict[str, str]) -> Any:
    """Open the ballot (as a browser would), then post `fields` with its CSRF token."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf": csrf_of(page.text), **fields})


def api_key(store: Store, name: str = "device") -> str:
    return create_api_key(store, f"{name}-{secrets.token_hex(3)}", actor="test")


def user(store: Store, name: str, role: str) -> str:
    create_user(store, name, role, PASSWORD, actor="test")
    return name
