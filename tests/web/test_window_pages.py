"""
`/w/{code}` and `/t/{ticket}` on a real store (SQLite file and PostgreSQL): posters, tickets,
one rating per device per window per day, rate limits, bursts held for review, cases.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette
from starlette.testclient import TestClient

import collect.web.admin.cases  # noqa: F401  (registers /admin/cases until the package lists it)
from collect.campaign import CampaignSpec, load_campaign_file
from collect.channels.window import sign_ticket, ticket_key
from collect.dedupe.review import list_items
from collect.store import Store
from collect.store.campaigns import save_campaign
from collect.store.tables import BALLOT, SUBMISSION, WINDOW_CASE, WINDOW_CASE_CONTACT, WINDOW_RATING
from collect.web import window
from collect.web.app import create_app
from collect.web.window import PosterRow, WindowConfig, WindowState, ensure_posters, revoke_poster
from tests.conftest import count
from tests.web.conftest import PASSWORD, csrf_of, user

EXAMPLE = Path(__file__).resolve().parents[2] / "collect" / "examples" / "service-windows.toml"
DURING = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
CLIENT = ("203.0.113.77", 50000)
FIELD = "a.SB.overall"


@dataclass
class Ticks:
    """The app's clock and the limiters' clock, moved together by tests."""

    now: datetime = DURING

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - DURING).total_seconds()

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class WinEnv:
    store: Store
    spec: CampaignSpec
    clock: Ticks
    app: Starlette
    posters: dict[str, PosterRow]


def window_app(store: Store, clock: Ticks, config: WindowConfig | None = None) -> Starlette:
    app = create_app(store.settings, store, clock=clock)
    if not any(getattr(r, "path", None) == "/w/{code}" for r in app.router.routes):
        app.router.routes.extend(window.routes)  # until create_app lists them itself
    app.state.window = WindowState(config=config or WindowConfig(cache_seconds=0), clock=clock.monotonic)
    return app


def make_winenv(store: Store, config: WindowConfig | None = None) -> WinEnv:
    spec = load_campaign_file(str(EXAMPLE))
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="test")
    posters = {p.window: p for p in ensure_posters(store, spec.code, actor="test")}
    clock = Ticks()
    return WinEnv(store, spec, clock, window_app(store, clock, config), posters)


@pytest.fixture
def wenv(store: Store) -> WinEnv:
    return make_winenv(store)


def browser(env: WinEnv, address: tuple[str, int] = CLIENT) -> TestClient:
    return TestClient(env.app, base_url="https://testserver", client=address)


@pytest.fixture
def phone(wenv: WinEnv) -> Iterator[TestClient]:
    with browser(wenv) as client:
        yield client


def rate(client: TestClient, path: str, level: str = "very_satisfied", unit: str = "SB", **extra: str) -> Any:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf": csrf_of(page.text), f"a.{unit}.overall": level, **extra})


def ballots(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(BALLOT).order_by(BALLOT.c.id)).all())


def ticket_path(env: WinEnv, window: str = "SB-01", issued: datetime | None = None, minutes: int = 30) -> str:
    key = ticket_key(env.store.settings.secret())
    return "/t/" + sign_ticket(key, window, issued or env.clock.now, timedelta(minutes=minutes))


# --- The page --------------------------------------------------------------------------------


def test_the_poster_page_is_small_chinese_and_names_the_window(wenv: WinEnv, phone: TestClient) -> None:
    page = phone.get(f"/w/{wenv.posters['SB-01'].code}")
    assert page.status_code == 200
    assert len(page.content) < 30 * 1024
    assert '<html lang="zh-CN">' in page.text
    assert "社保1号窗口" in page.text
    assert "社保服务区" in page.text
    assert "非常满意" in page.text
    assert "<script" not in page.text  # no JS at all, let alone a framework
    # The channel's own CSS is allowed by its hash, not by 'unsafe-inline'.
    csp = page.headers["content-security-policy"]
    assert csp.count("'sha256-") == 2
    assert "unsafe-inline" not in csp
    english = phone.get(f"/w/{wenv.posters['SB-01'].code}?lang=en")
    assert '<html lang="en">' in english.text
    assert "Very satisfied" in english.text
    assert "Rate the service you just received" in english.text


def test_a_poster_rating_counts_once_per_device_per_day(wenv: WinEnv, phone: TestClient) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    done = rate(phone, path, "satisfied", comment="很快")
    assert done.status_code == 200
    assert "谢谢：您的评价已收到。" in done.text
    (ballot,) = ballots(wenv.store)
    assert (ballot.status, ballot.channel, ballot.unit_code, ballot.tier_code) == (
        "counted",
        "window_qr",
        "SB",
        "public",
    )
    assert ballot.meta == {"via": "poster", "window": "SB-01", "poster": wenv.posters["SB-01"].code}
    assert ballot.comment == "很快"
    # The same phone, the same day: the page says so, and a forced post is kept as duplicate.
    again = phone.get(path)
    assert "您已评价过本次服务" in again.text
    token = csrf_of(phone.get(f"/w/{wenv.posters['SB-02'].code}").text)
    forced = phone.post(path, data={"csrf": token, FIELD: "very_satisfied"})
    assert forced.status_code == 409
    assert [b.status for b in ballots(wenv.store)] == ["counted", "duplicate"]
    # Another window the same day counts; the same window the next day counts.
    assert rate(phone, f"/w/{wenv.posters['SB-02'].code}").status_code == 200
    wenv.clock.advance(days=1)
    assert rate(phone, path).status_code == 200
    assert [b.status for b in ballots(wenv.store)] == ["counted", "duplicate", "counted", "counted"]
    # A double tap (the same form sent twice) is one submission, answered with the same receipt.
    wenv.clock.advance(days=1)
    page = phone.get(path)
    form = {"csrf": csrf_of(page.text), FIELD: "satisfied"}
    first, second = phone.post(path, data=form), phone.post(path, data=form)
    receipt = re.search(r'class="receipt">([^<]+)<', first.text)
    assert receipt is not None
    assert receipt.group(1) in second.text
    assert len(ballots(wenv.store)) == 5


def test_a_form_needs_its_csrf_token_and_a_rating(wenv: WinEnv, phone: TestClient) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    phone.get(path)
    assert phone.post(path, data={FIELD: "satisfied"}).status_code == 403
    page = phone.get(path)
    missing = phone.post(path, data={"csrf": csrf_of(page.text)})
    assert missing.status_code == 400
    assert "请选择一项评价。" in missing.text
    assert count(wenv.store, "SELECT count(*) FROM ballot") == 0
    assert count(wenv.store, "SELECT count(*) FROM submission WHERE status = 'rejected'") == 1


def test_unknown_and_revoked_posters(wenv: WinEnv, phone: TestClient) -> None:
    assert phone.get("/w/0000000000").status_code == 404
    assert phone.get("/w/SB-01").status_code == 404  # the window code is not the poster code
    old = wenv.posters["SB-01"]
    path = f"/w/{old.code}"
    page = phone.get(path)
    revoked, new = revoke_poster(wenv.store, old.code, actor="test", reason="torn")
    assert revoked.replaced_by == new.code
    gone = phone.get(path)
    assert gone.status_code == 410
    assert "该二维码已更换" in gone.text
    # A form opened before the revocation is refused too, and nothing is kept.
    assert phone.post(path, data={"csrf": csrf_of(page.text), FIELD: "satisfied"}).status_code == 410
    assert rate(phone, f"/w/{new.code}").status_code == 200
    assert ballots(wenv.store)[0].meta["poster"] == new.code


def test_campaign_window_and_service_hours(wenv: WinEnv, phone: TestClient) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    page = phone.get(path)
    wenv.clock.now = datetime(2026, 9, 1, 19, 0, tzinfo=UTC)  # 03:00 in Shanghai
    night = phone.get(path)
    assert night.status_code == 403
    assert "不在服务时间内" in night.text
    assert "07:00-21:00" in night.text
    late = phone.post(path, data={"csrf": csrf_of(page.text), FIELD: "very_satisfied"})
    assert late.status_code == 403
    # Kept as evidence, never counted.
    assert count(wenv.store, "SELECT count(*) FROM ballot") == 0
    assert count(wenv.store, "SELECT count(*) FROM submission WHERE reason = 'outside_service_hours'") == 1
    wenv.clock.now = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)
    closed = phone.get(path)
    assert closed.status_code == 410
    assert "评价已结束" in closed.text
    wenv.clock.now = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    assert phone.get(path).status_code == 403


# --- Tickets ---------------------------------------------------------------------------------


def test_a_ticket_counts_once(wenv: WinEnv, phone: TestClient) -> None:
    path = ticket_path(wenv)
    assert rate(phone, path, "basically_satisfied").status_code == 200
    (ballot,) = ballots(wenv.store)
    assert ballot.meta == {"via": "ticket", "window": "SB-01"}
    assert ballot.status == "counted"
    assert "您已评价过本次服务" in phone.get(path).text
    # The same ticket in another browser (a photo of it passed around): kept as duplicate.
    with browser(wenv, ("198.51.100.9", 4000)) as other:
        page = other.get(path)
        assert "您已评价过本次服务" in page.text
        token = csrf_of(other.get(ticket_path(wenv, "SB-02")).text)
        reused = other.post(path, data={"csrf": token, FIELD: "very_satisfied"})
    assert reused.status_code == 409
    assert [b.status for b in ballots(wenv.store)] == ["counted", "duplicate"]
    assert ballots(wenv.store)[1].reason == "transaction_already_rated"


def test_expired_forged_and_wrong_window_tickets(wenv: WinEnv, phone: TestClient) -> None:
    expired = ticket_path(wenv, issued=wenv.clock.now - timedelta(hours=1), minutes=30)
    answer = phone.get(expired)
    assert answer.status_code == 410
    assert "评价凭条已过期" in answer.text
    good = ticket_path(wenv)
    forged = good.replace("SB-01", "SB-02", 1)
    assert phone.get(forged).status_code == 404
    other_key = "/t/" + sign_ticket(ticket_key(b"someone else"), "SB-01", wenv.clock.now, timedelta(hours=1))
    assert phone.get(other_key).status_code == 404
    # Correctly signed, but for a window no campaign has: the same page as a forgery.
    nowhere = phone.get(ticket_path(wenv, "NO-SUCH-WINDOW"))
    assert nowhere.status_code == 404
    assert "该二维码无效" in nowhere.text
    # A form opened in time, sent after the ticket expired: refused, nothing kept.
    short = ticket_path(wenv, minutes=5)
    page = phone.get(short)
    wenv.clock.advance(minutes=6)
    assert phone.post(short, data={"csrf": csrf_of(page.text), FIELD: "satisfied"}).status_code == 410
    assert ballots(wenv.store) == []


def test_ticket_and_poster_ratings_are_distinguishable(wenv: WinEnv, phone: TestClient) -> None:
    rate(phone, f"/w/{wenv.posters['SB-01'].code}")
    rate(phone, ticket_path(wenv), "very_dissatisfied")
    vias = sorted(b.meta["via"] for b in ballots(wenv.store))
    assert vias == ["poster", "ticket"]
    with wenv.store.engine.connect() as connection:
        logged = sorted(connection.execute(sa.select(WINDOW_RATING.c.via)).scalars())
    assert logged == ["poster", "ticket"]
    with wenv.store.engine.connect() as connection:
        (case_via,) = connection.execute(sa.select(WINDOW_CASE.c.via)).scalars()
    assert case_via == "ticket"


# --- Abuse control ---------------------------------------------------------------------------


def test_rate_limit_per_network_answers_429_with_a_friendly_page(store: Store) -> None:
    env = make_winenv(store, WindowConfig(cache_seconds=0, network_burst=3, network_rate=1 / 60))
    path = f"/w/{env.posters['SB-01'].code}"
    statuses = []
    for _ in range(4):
        with browser(env) as device:  # a fresh phone each time, one network
            statuses.append(rate(device, path).status_code)
    assert statuses == [200, 200, 200, 429]
    with browser(env) as device:
        page = device.get(path)
        refused = device.post(path, data={"csrf": csrf_of(page.text), FIELD: "satisfied"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "当前评价过于频繁" in refused.text
    # Another network is not held up.
    with browser(env, ("198.51.100.9", 4000)) as device:
        assert rate(device, path).status_code == 200
    # And the limit lifts with time.
    env.clock.advance(minutes=2)
    with browser(env) as device:
        assert rate(device, path).status_code == 200


def test_rate_limit_per_window(store: Store) -> None:
    env = make_winenv(store, WindowConfig(cache_seconds=0, window_burst=2, window_rate=1 / 60))
    path = f"/w/{env.posters['SB-01'].code}"
    statuses = []
    for i in range(3):
        with browser(env, (f"198.51.{i}.9", 4000)) as device:
            statuses.append(rate(device, path).status_code)
    assert statuses == [200, 200, 429]
    with browser(env, ("198.51.9.9", 4000)) as device:
        assert rate(device, f"/w/{env.posters['SB-02'].code}").status_code == 200


def test_a_burst_of_top_ratings_is_held_for_review(wenv: WinEnv) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    # 40 "very satisfied" in under five minutes, each from a fresh phone (cookies cleared).
    for i in range(40):
        with browser(wenv, (f"198.51.100.{i % 3}", 4000)) as device:
            assert rate(device, path).status_code == 200
        wenv.clock.advance(seconds=7)
    statuses = [b.status for b in ballots(wenv.store)]
    assert statuses == ["pending_review"] * 40
    items = list_items(wenv.store, wenv.spec.code, reason="window_burst")
    assert len(items) == 40
    evidence = items[-1].evidence
    assert evidence["top_ratings"] == 40
    assert evidence["window"] == "SB-01"
    assert evidence["networks"] == 1  # three addresses, one /24 network
    # The 41st is held at once; a low rating in the burst is not a "perfect" one and counts.
    with browser(wenv, ("192.0.2.1", 4000)) as device:
        rate(device, path)
    with browser(wenv, ("192.0.2.2", 4000)) as device:
        rate(device, path, "satisfied")
    assert [b.status for b in ballots(wenv.store)][-2:] == ["pending_review", "counted"]
    # Held ballots do not count until accepted.
    assert count(wenv.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == 1
    # Another window is not affected.
    with browser(wenv, ("192.0.2.3", 4000)) as device:
        rate(device, f"/w/{wenv.posters['SB-02'].code}")
    assert ballots(wenv.store)[-1].status == "counted"


def test_top_ratings_spread_out_are_not_a_burst(wenv: WinEnv) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    for i in range(45):
        with browser(wenv, (f"198.51.{i}.1", 4000)) as device:
            assert rate(device, path).status_code == 200
        wenv.clock.advance(seconds=10)  # 45 in 7.5 minutes: never 40 within 5
    assert {b.status for b in ballots(wenv.store)} == {"counted"}
    assert list_items(wenv.store, wenv.spec.code) == []


# --- Cases -----------------------------------------------------------------------------------


def test_a_low_rating_opens_a_case_with_deadlines_and_a_separate_contact(
    wenv: WinEnv, phone: TestClient
) -> None:
    wenv.clock.now = datetime(2026, 9, 4, 8, 0, tzinfo=UTC)  # Friday 16:00 in Shanghai
    done = rate(phone, f"/w/{wenv.posters['SB-01'].code}", "very_dissatisfied", comment="材料被退回三次")
    assert "需要回访吗" in done.text
    with wenv.store.engine.connect() as connection:
        case = connection.execute(sa.select(WINDOW_CASE)).one()
    assert (case.window_code, case.level_code, case.comment, case.status) == (
        "SB-01",
        "very_dissatisfied",
        "材料被退回三次",
        "open",
    )
    assert case.callback_due is None  # no number left yet: nobody to call
    fix_due = case.fix_due if case.fix_due.tzinfo else case.fix_due.replace(tzinfo=UTC)
    assert fix_due == datetime(2026, 9, 25, 8, 0, tzinfo=UTC)  # 15 working days
    bad = phone.post(
        f"/w/{wenv.posters['SB-01'].code}",
        data={"csrf": csrf_of(done.text), "case": _case_token(done.text), "phone": "12345"},
    )
    assert bad.status_code == 400
    saved = phone.post(
        f"/w/{wenv.posters['SB-01'].code}",
        data={"csrf": csrf_of(done.text), "case": _case_token(done.text), "phone": "138 0013 8000"},
    )
    assert saved.status_code == 200
    assert "我们会回访您" in saved.text
    with wenv.store.engine.connect() as connection:
        contact = connection.execute(sa.select(WINDOW_CASE_CONTACT)).one()
        case = connection.execute(sa.select(WINDOW_CASE)).one()
        kept = [str(r) for r in connection.execute(sa.select(BALLOT)).all()]
        kept += [str(r) for r in connection.execute(sa.select(SUBMISSION)).all()]
    assert contact.phone == "+8613800138000"
    callback_due = case.callback_due if case.callback_due.tzinfo else case.callback_due.replace(tzinfo=UTC)
    assert callback_due == datetime(2026, 9, 7, 8, 0, tzinfo=UTC)  # Monday: one working day
    assert not any("13800138000" in text or "0013 8000" in text for text in kept)


def _case_token(html: str) -> str:
    match = re.search(r'name="case" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def test_a_good_rating_or_a_duplicate_opens_no_case(wenv: WinEnv, phone: TestClient) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    assert "需要回访吗" not in rate(phone, path, "basically_satisfied").text
    token = csrf_of(phone.get(f"/w/{wenv.posters['SB-02'].code}").text)
    phone.post(path, data={"csrf": token, FIELD: "very_dissatisfied"})  # a duplicate
    assert count(wenv.store, "SELECT count(*) FROM window_case") == 0


def _login(client: TestClient, name: str) -> None:
    page = client.get("/admin/login")
    answer = client.post(
        "/admin/login",
        data={"csrf": csrf_of(page.text), "name": name, "password": PASSWORD, "next": "/admin/cases"},
        follow_redirects=False,
    )
    assert answer.status_code == 303


def test_operators_see_and_close_cases(wenv: WinEnv, phone: TestClient) -> None:
    done = rate(phone, f"/w/{wenv.posters['GJJ-01'].code}", "not_satisfied", "GJJ", comment="态度差")
    phone.post(
        f"/w/{wenv.posters['GJJ-01'].code}",
        data={"csrf": csrf_of(done.text), "case": _case_token(done.text), "phone": "13800138000"},
    )
    wenv.clock.advance(days=3)  # past the callback deadline
    with browser(wenv) as desk:
        _login(desk, user(wenv.store, "clerk1", "clerk"))
        listed = desk.get("/admin/cases")
        assert listed.status_code == 200
        assert "公积金综合窗口" in listed.text
        assert "态度差" in listed.text
        assert "已超期" in listed.text
        assert "+8613800138000" not in listed.text  # a clerk sees that a number was left, not which
        case_id = re.search(r'data-case="(\d+)"', listed.text)
        assert case_id is not None
        refused = desk.post("/admin/cases", data={"csrf": csrf_of(listed.text), "case": case_id.group(1)})
        assert refused.status_code == 403
    with browser(wenv) as desk:
        _login(desk, user(wenv.store, "ops1", "operator"))
        listed = desk.get("/admin/cases")
        assert "+8613800138000" in listed.text
        token = csrf_of(listed.text)
        no_note = desk.post(
            "/admin/cases", data={"csrf": token, "case": case_id.group(1), "action": "resolved"}
        )
        assert no_note.status_code == 400
        desk.post(
            "/admin/cases",
            data={"csrf": token, "case": case_id.group(1), "action": "called_back", "note": "已致电道歉"},
        )
        desk.post(
            "/admin/cases",
            data={"csrf": token, "case": case_id.group(1), "action": "resolved", "note": "窗口已整改"},
        )
        assert 'data-status="resolved"' in desk.get("/admin/cases?status=all").text
    with wenv.store.engine.connect() as connection:
        contact = connection.execute(sa.select(WINDOW_CASE_CONTACT)).one()
    assert contact.phone is None  # erased once resolved
    assert contact.erased_at is not None
    assert count(wenv.store, "SELECT count(*) FROM audit_log WHERE action LIKE 'case.%'") == 2


# --- Privacy ---------------------------------------------------------------------------------


def test_no_address_or_cookie_is_kept(wenv: WinEnv, phone: TestClient) -> None:
    path = f"/w/{wenv.posters['SB-01'].code}"
    rate(phone, path, "very_dissatisfied")
    rate(phone, ticket_path(wenv))
    cookies = [c.value for c in phone.cookies.jar if c.value]
    assert cookies
    with wenv.store.engine.connect() as connection:
        cells: list[str] = []
        for table in sa.inspect(connection).get_table_names():
            reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
            for row in connection.execute(sa.select(reflected)):
                cells.extend(str(v) for v in row if v is not None)
    text = "\n".join(cells)
    assert "203.0.113" not in text
    for value in cookies:
        assert value[:20] not in text


async def test_ratings_written_together_are_as_one_by_one(wenv: WinEnv) -> None:
    """
    Ratings from many phones reach the writer at once (parked behind a gate, so they are one
    batch) and are written together: each still gets its own page, a second rating from one
    phone is a duplicate, a low rating opens its case.
    """
    path = f"/w/{wenv.posters['SB-01'].code}"
    levels = ["very_satisfied"] * 6 + ["very_dissatisfied"] + ["satisfied"] * 5
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    parked_threads = threading.Semaphore(0)

    def gate(_store: Store) -> None:
        parked_threads.release()
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(30)

    async with LifespanManager(wenv.app) as manager:
        phones = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app, client=(f"198.51.{n}.7", 4000)),
                base_url="https://testserver",
            )
            for n in range(len(levels))
        ]
        try:
            tokens = [csrf_of((await phone.get(path)).text) for phone in phones]
            second_form = csrf_of((await phones[0].get(path)).text)  # a second tab on the first phone
            writer = wenv.app.state.web.writer
            # Every writer thread parked (PostgreSQL has several), so nothing is taken early.
            parked = [asyncio.ensure_future(writer.run(gate)) for _thread in range(writer.threads)]
            for _thread in range(writer.threads):
                assert await asyncio.to_thread(parked_threads.acquire, True, 30)
            posts = [
                asyncio.ensure_future(phone.post(path, data={"csrf": token, FIELD: level}))
                for phone, token, level in zip(phones, tokens, levels, strict=True)
            ]
            # The first phone rates the same window twice in the same instant.
            posts.append(
                asyncio.ensure_future(phones[0].post(path, data={"csrf": second_form, FIELD: "satisfied"}))
            )
            for _tick in range(300):
                if writer.waiting() == len(posts):
                    break
                await asyncio.sleep(0.02)
            assert writer.waiting() == len(posts)
            release.set()
            await asyncio.gather(*parked)
            answers = await asyncio.gather(*posts)
        finally:
            for phone in phones:
                await phone.aclose()
    if wenv.store.settings.is_sqlite:
        assert writer.stats.together >= len(levels)  # written together, not one by one
    else:
        assert writer.stats.alone == len(posts) + writer.threads  # PostgreSQL: a transaction each
    assert writer.stats.one_by_one == 0
    assert [a.status_code for a in answers[1:-1]] == [200] * (len(levels) - 1)
    # The first phone's two ratings: whichever the writer took second is the duplicate.
    assert sorted([answers[0].status_code, answers[-1].status_code]) == [200, 409]
    statuses = sorted(b.status for b in ballots(wenv.store))
    assert statuses == ["counted"] * len(levels) + ["duplicate"]
    with wenv.store.engine.connect() as connection:
        (case_level,) = connection.execute(sa.select(WINDOW_CASE.c.level_code)).scalars()
    assert case_level == "very_dissatisfied"
