"""The operator console: login, roles, CSRF, rate limit, and a dashboard that matches the store."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from collect.store.tables import USER
from collect.web.admin.pages import DuplicatePage, admin_page
from tests.conftest import count
from tests.web.conftest import PASSWORD, Env, api_key, ballot_form, csrf_of, user, vote


def login(client: TestClient, name: str, password: str = PASSWORD, next_: str = "/admin/") -> object:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={"csrf": csrf_of(page.text), "name": name, "password": password, "next": next_},
        follow_redirects=False,
    )


def test_the_console_needs_a_login(env: Env, client: TestClient) -> None:
    answer = client.get("/admin/", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login?next=/admin/"
    dashboard = client.get(f"/admin/campaigns/{env.spec.code}", follow_redirects=False)
    assert dashboard.status_code == 303
    assert client.post("/admin/audit", data={}).status_code in (401, 405)


def test_wrong_password_then_right(env: Env, client: TestClient) -> None:
    user(env.store, "ops", "operator")
    wrong = login(client, "ops", "not the password")
    assert wrong.status_code == 401  # type: ignore[attr-defined]
    assert "用户名或密码错误" in wrong.text  # type: ignore[attr-defined]
    right = login(client, "ops")
    assert right.status_code == 303  # type: ignore[attr-defined]
    assert right.headers["location"] == "/admin/"  # type: ignore[attr-defined]
    cookie = right.headers["set-cookie"]  # type: ignore[attr-defined]
    assert "collect_session=" in cookie
    assert "secure" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    listing = client.get("/admin/")
    assert listing.status_code == 200
    assert env.spec.code in listing.text
    assert (
        count(env.store, "SELECT count(*) FROM audit_log WHERE action = 'user.login' AND actor = 'ops'") == 1
    )


def test_login_is_rate_limited_per_address_and_name(env: Env, client: TestClient) -> None:
    user(env.store, "clerk1", "clerk")
    for _ in range(5):
        assert login(client, "clerk1", "wrong password").status_code == 401  # type: ignore[attr-defined]
    limited = login(client, "clerk1")  # even the right password waits now
    assert limited.status_code == 429  # type: ignore[attr-defined]
    assert int(limited.headers["retry-after"]) > 0  # type: ignore[attr-defined]
    user(env.store, "clerk2", "clerk")
    assert login(client, "clerk2").status_code == 303  # type: ignore[attr-defined]


def test_login_and_logout_need_csrf(env: Env, client: TestClient) -> None:
    user(env.store, "ops", "operator")
    client.get("/admin/login")
    forged = client.post("/admin/login", data={"name": "ops", "password": PASSWORD}, follow_redirects=False)
    assert forged.status_code == 403
    assert "collect_session" not in forged.headers.get("set-cookie", "")
    assert login(client, "ops").status_code == 303  # type: ignore[attr-defined]
    no_token = client.post("/admin/logout", data={}, follow_redirects=False)
    assert no_token.status_code == 403
    assert client.get("/admin/", follow_redirects=False).status_code == 200  # still signed in
    page = client.get("/admin/")
    out = client.post("/admin/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_roles_are_enforced(env: Env, client: TestClient) -> None:
    user(env.store, "watcher", "viewer")
    login(client, "watcher")
    assert client.get("/admin/").status_code == 200
    refused = client.get("/admin/audit")
    assert refused.status_code == 403
    assert 'href="/admin/audit"' not in client.get("/admin/").text  # not in the viewer's menu
    client.cookies.clear()
    user(env.store, "ops", "operator")
    login(client, "ops")
    audit = client.get("/admin/audit")
    assert audit.status_code == 200
    assert "user.login" in audit.text


def test_a_disabled_account_is_signed_out_at_once(env: Env, client: TestClient) -> None:
    user(env.store, "ops", "operator")
    login(client, "ops")
    with env.store.engine.begin() as connection:
        connection.execute(sa.update(USER).where(USER.c.name == "ops").values(disabled=True))
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_next_never_leaves_the_console(env: Env, client: TestClient) -> None:
    user(env.store, "ops", "operator")
    answer = login(client, "ops", next_="//evil.example/admin/")
    assert answer.headers["location"] == "/admin/"  # type: ignore[attr-defined]


def test_the_dashboard_matches_the_store(env: Env, client: TestClient) -> None:
    vote(client, env.links["L1"], ballot_form(env.spec))
    vote(client, env.links["P1"], ballot_form(env.spec, [u.code for u in env.spec.units if u.code != "S01"]))
    bad = vote(client, env.links["L2"], {**ballot_form(env.spec), "a.S01.overall": "nope"})
    assert bad.status_code == 400
    key = api_key(env.store)
    for n in range(3):
        client.post(
            "/api/v1/ballots",
            json={
                "campaign": env.spec.code,
                "source_ref": f"t{n}",
                "transaction": f"t{n}",
                "answers": [{"unit": "S02", "level": "satisfied"}],
            },
            headers={"Authorization": f"Bearer {key}"},
        )
    user(env.store, "look", "viewer")
    login(client, "look")
    page = client.get(f"/admin/campaigns/{env.spec.code}")
    assert page.status_code == 200
    html = page.text

    def cell(attrs: str) -> int:
        match = re.search(attrs + r">(\d+)", html)
        assert match is not None, attrs
        return int(match.group(1))

    with env.store.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT unit_code, tier_code, count(*) FROM ballot b JOIN campaign c ON c.id = b.campaign_id "
                "WHERE c.code = :code AND status = 'counted' GROUP BY unit_code, tier_code"
            ),
            {"code": env.spec.code},
        ).all()
    assert rows
    for unit, tier, n in rows:
        assert cell(f'data-unit="{unit}" data-tier="{tier}"') == n
    assert cell('data-channel="web" data-status="counted"') == len(env.spec.units) * 2 - 1
    assert cell('data-channel="api" data-status="counted"') == 3
    assert cell('data-tier="public" data-status="counted"') == 3
    assert cell('data-unit="S02"') == 5  # L1, P1 and three device ratings
    assert cell('data-submissions="rejected:unknown_level"') == 1
    assert client.get("/admin/campaigns/no-such").status_code == 404


def test_a_page_path_cannot_be_registered_twice() -> None:
    async def other(request: object, view: object) -> object:
        raise AssertionError

    with pytest.raises(DuplicatePage):
        admin_page("/audit", title="x", min_role="viewer")(other)  # type: ignore[arg-type]
