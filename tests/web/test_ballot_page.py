"""The web ballot `/b/{token}`, end to end on both databases."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from collect.campaign import CampaignSpec
from collect.store import Store
from collect.store.tables import INVITATION, utcnow
from tests.conftest import count
from tests.web.conftest import AFTER_CLOSE, BEFORE_OPEN, Env, ballot_form, csrf_of, make_env, variant, vote


def counted(store: Store, spec: CampaignSpec, level: str | None = None) -> int:
    sql = (
        "SELECT count(*) FROM ballot b JOIN campaign c ON c.id = b.campaign_id "
        "JOIN answer a ON a.ballot_id = b.id WHERE c.code = :code AND b.status = 'counted'"
    )
    if level is None:
        return count(store, sql, code=spec.code)
    return count(store, sql + " AND a.level_code = :level", code=spec.code, level=level)


def test_a_ballot_is_counted_and_the_receipt_shown(env: Env, client: TestClient) -> None:
    page = client.get(env.links["L1"])
    assert page.status_code == 200
    assert all(unit.name in page.text for unit in env.spec.units)
    assert all(level.zh in page.text for level in env.spec.scale.levels)
    fields = {**ballot_form(env.spec), "a.S03.overall": "not_very_satisfied", "comment": "窗口服务很好"}
    done = client.post(env.links["L1"], data={"csrf": csrf_of(page.text), **fields})
    assert done.status_code == 200
    receipt = re.search(r'class="receipt">([0-9A-Z]{5}-[0-9A-Z]{5})<', done.text)
    assert receipt is not None
    assert counted(env.store, env.spec) == len(env.spec.units)
    assert counted(env.store, env.spec, "not_very_satisfied") == 1
    assert (
        count(
            env.store,
            "SELECT count(*) FROM submission WHERE receipt = :r AND channel = 'web'",
            r=receipt.group(1),
        )
        == 1
    )
    assert count(env.store, "SELECT count(*) FROM ballot WHERE comment = '窗口服务很好'") == len(
        env.spec.units
    )


def test_the_form_sent_twice_counts_once_with_one_receipt(env: Env, client: TestClient) -> None:
    page = client.get(env.links["L2"])
    data = {"csrf": csrf_of(page.text), **ballot_form(env.spec)}
    first = client.post(env.links["L2"], data=data)
    second = client.post(env.links["L2"], data=data)  # a double tap, or a refresh after submitting
    assert first.status_code == second.status_code == 200
    code = re.compile(r'class="receipt">([^<]+)<')
    assert code.findall(first.text) == code.findall(second.text)
    assert counted(env.store, env.spec) == len(env.spec.units)
    assert count(env.store, "SELECT count(*) FROM submission WHERE channel = 'web'") == 1


def test_without_a_csrf_token_nothing_is_stored(env: Env, client: TestClient) -> None:
    client.get(env.links["L1"])  # the cookie is there; the form field is not
    refused = client.post(env.links["L1"], data=ballot_form(env.spec))
    assert refused.status_code == 403
    forged = client.post(env.links["L1"], data={"csrf": "x.y.z", **ballot_form(env.spec)})
    assert forged.status_code == 403
    assert count(env.store, "SELECT count(*) FROM submission") == 0
    assert count(env.store, "SELECT count(*) FROM ballot") == 0


def test_a_token_from_another_browser_is_refused(env: Env, client: TestClient) -> None:
    token = csrf_of(client.get(env.links["L1"]).text)
    client.cookies.clear()  # another browser: no cookie, or its own
    client.get("/healthz")
    refused = client.post(env.links["L1"], data={"csrf": token, **ballot_form(env.spec)})
    assert refused.status_code == 403
    assert count(env.store, "SELECT count(*) FROM submission") == 0


def test_an_invalid_level_rerenders_the_form_naming_the_field(env: Env, client: TestClient) -> None:
    fields = {**ballot_form(env.spec), "a.S02.overall": "splendid"}
    del fields["a.O03.overall"]
    answer = vote(client, env.links["L1"], fields)
    assert answer.status_code == 400
    # Each problem sits inside its own question's block, and the rest of the answers stay chosen.
    s02 = answer.text.split('id="a.S02.overall"', 1)[1].split("</div>", 1)[0]
    assert "请在给出的选项中选择一项" in s02
    o03 = answer.text.split('id="a.O03.overall"', 1)[1].split("</div>", 1)[0]
    assert "请选择一项" in o03
    assert 'name="a.S01.overall" value="satisfied" checked' in answer.text
    assert counted(env.store, env.spec) == 0
    problems = count(
        env.store,
        "SELECT count(*) FROM submission WHERE status = 'rejected' AND reason = 'unknown_level'",
    )
    assert problems == 1
    # The corrected form (with the new token of the re-rendered page) counts.
    fixed = client.post(env.links["L1"], data={"csrf": csrf_of(answer.text), **ballot_form(env.spec)})
    assert fixed.status_code == 200
    assert counted(env.store, env.spec) == len(env.spec.units)


def test_a_second_visit_says_already_voted(env: Env, client: TestClient) -> None:
    stale = client.get(env.links["L1"])
    assert vote(client, env.links["L1"], ballot_form(env.spec)).status_code == 200
    again = client.get(env.links["L1"])
    assert again.status_code == 200
    assert "您已参加过评价" in again.text
    assert 'type="radio"' not in again.text
    # A stale tab's form still arrives: kept as superseded, answered 409, the first vote counts.
    late = client.post(
        env.links["L1"], data={"csrf": csrf_of(stale.text), **ballot_form(env.spec, level="dissatisfied")}
    )
    assert late.status_code == 409
    assert counted(env.store, env.spec, "satisfied") == len(env.spec.units)
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'superseded'") == len(env.spec.units)


def test_last_counts_lets_the_respondent_change_their_answers(
    store: Store, branch_spec: CampaignSpec, tmp_path: Path
) -> None:
    env = make_env(store, variant(branch_spec, policy="last_counts"), tmp_path)
    with TestClient(env.app, base_url="https://testserver") as client:
        assert vote(client, env.links["L1"], ballot_form(env.spec)).status_code == 200
        env.clock.now = env.clock.now.replace(hour=5)
        page = client.get(env.links["L1"])
        assert page.status_code == 200
        assert "替代此前的评价" in page.text  # "this new ballot replaces the earlier one"
        changed = client.post(
            env.links["L1"],
            data={"csrf": csrf_of(page.text), **ballot_form(env.spec, level="basically_satisfied")},
        )
        assert changed.status_code == 200
    assert counted(env.store, env.spec) == len(env.spec.units)
    assert counted(env.store, env.spec, "basically_satisfied") == len(env.spec.units)
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'superseded'") == len(env.spec.units)


def test_peers_do_not_see_their_own_unit(env: Env, client: TestClient) -> None:
    page = client.get(env.links["P1"])
    assert 'name="a.S01.overall"' not in page.text
    assert 'name="a.S02.overall"' in page.text
    # Posting their own unit anyway is refused by name, not counted.
    answer = client.post(env.links["P1"], data={"csrf": csrf_of(page.text), **ballot_form(env.spec)})
    assert answer.status_code == 400
    assert counted(env.store, env.spec) == 0


def test_unknown_and_withdrawn_links_get_the_same_404(env: Env, client: TestClient) -> None:
    unknown = client.get("/b/thisisnotatoken0000000000")
    with env.store.engine.begin() as connection:
        connection.execute(sa.update(INVITATION).values(revoked_at=utcnow()))
    revoked = client.get(env.links["L1"])
    assert unknown.status_code == revoked.status_code == 404
    assert unknown.text == revoked.text  # no oracle: a withdrawn link looks like a wrong one
    assert "测评链接无效" in unknown.text


def test_a_closed_campaign_answers_410_and_a_future_one_403(env: Env, client: TestClient) -> None:
    form = client.get(env.links["L1"])
    env.clock.now = AFTER_CLOSE
    closed = client.get(env.links["L1"])
    assert closed.status_code == 410
    assert "测评已结束" in closed.text
    late = client.post(env.links["L1"], data={"csrf": csrf_of(form.text), **ballot_form(env.spec)})
    assert late.status_code == 410
    # The late ballot is kept as evidence, rejected with its reason, never counted.
    assert count(env.store, "SELECT count(*) FROM submission WHERE reason = 'campaign_closed'") == 1
    assert counted(env.store, env.spec) == 0
    env.clock.now = BEFORE_OPEN
    early = client.get(env.links["L1"])
    assert early.status_code == 403
    assert "测评尚未开始" in early.text


def test_english_is_one_click_away_and_remembered(env: Env, client: TestClient) -> None:
    english = client.get(env.links["L1"] + "?lang=en")
    assert english.status_code == 200
    assert '<html lang="en">' in english.text
    assert "Fairly satisfied" in english.text
    assert "Submit" in english.text
    still = client.get(env.links["L1"])
    assert "Fairly satisfied" in still.text
    back = client.get(env.links["L1"] + "?lang=zh-CN")
    assert "比较满意" in back.text


def test_pages_are_small_private_and_locked_down(env: Env, client: TestClient) -> None:
    page = client.get(env.links["L1"])
    assert len(page.content) < 30_000
    assert page.headers["referrer-policy"] == "no-referrer"  # the URL carries the token
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["strict-transport-security"].startswith("max-age=")
    cookie = page.headers["set-cookie"]
    assert "__Host-collect_csrf=" in cookie
    assert "Secure" in cookie
    assert "HttpOnly" in cookie


def test_an_oversized_form_is_refused(env: Env, client: TestClient) -> None:
    page = client.get(env.links["L1"])
    answer = client.post(env.links["L1"], data={"csrf": csrf_of(page.text), "comment": "x" * 70_000})
    assert answer.status_code == 413
    assert count(env.store, "SELECT count(*) FROM submission") == 0
