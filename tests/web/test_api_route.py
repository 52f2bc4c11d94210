"""`POST /api/v1/ballots`: keys, idempotency, every problem listed, one vote across channels."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from starlette.testclient import TestClient

from collect.campaign import CampaignSpec
from collect.settings import Settings
from collect.store import Store
from collect.store.group_commit import GroupWriter
from collect.web.app import create_app
from collect.web.ratelimit import TokenBucket
from tests.conftest import TEST_SECRET, count
from tests.web.conftest import PHONE_L1, Env, api_key, ballot_form, csrf_of, make_env, variant, vote

URL = "/api/v1/ballots"


def body(env: Env, ref: str = "kiosk-7/0001", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "campaign": env.spec.code,
        "source_ref": ref,
        "answered_at": "2026-09-01T10:04:00+08:00",
        "transaction": f"ticket-{ref}",
        "answers": [
            {"unit": "S01", "aspect": "overall", "level": "satisfied"},
            {"unit": "S02", "level": "dissatisfied"},
        ],
    }
    data.update(changes)
    return data


def auth(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def test_a_key_is_required_and_checked(env: Env, client: TestClient) -> None:
    missing = client.post(URL, json=body(env))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"] == "unauthorized"
    wrong = client.post(URL, json=body(env), headers=auth("ck_not-a-key"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_api_key"
    assert count(env.store, "SELECT count(*) FROM submission") == 0


def test_a_device_ballot_is_counted(env: Env, client: TestClient) -> None:
    answer = client.post(URL, json=body(env), headers=auth(api_key(env.store)))
    assert answer.status_code == 201
    data = answer.json()
    assert data["outcome"] == "counted"
    assert [u["status"] for u in data["units"]] == ["counted", "counted"]
    assert (
        count(
            env.store,
            "SELECT count(*) FROM ballot WHERE channel = 'api' AND status = 'counted' "
            "AND tier_code = 'public'",
        )
        == 2
    )
    assert count(env.store, "SELECT count(*) FROM submission WHERE receipt = :r", r=data["receipt"]) == 1


def test_the_same_idempotency_key_and_body_replays_the_response(env: Env, client: TestClient) -> None:
    key = api_key(env.store)
    first = client.post(URL, json=body(env), headers=auth(key, "retry-1"))
    again = client.post(URL, json=body(env), headers=auth(key, "retry-1"))
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(env.store, "SELECT count(*) FROM submission") == 1
    assert count(env.store, "SELECT deliveries FROM submission") == 1  # the replay never reached ingest


def test_the_same_idempotency_key_with_another_body_is_409(env: Env, client: TestClient) -> None:
    key = api_key(env.store)
    assert client.post(URL, json=body(env), headers=auth(key, "k-1")).status_code == 201
    other = client.post(URL, json=body(env, ref="kiosk-7/0002"), headers=auth(key, "k-1"))
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"
    assert count(env.store, "SELECT count(*) FROM submission") == 1
    # Keys are per API key: another integration may use the same Idempotency-Key.
    mine = client.post(
        URL, json=body(env, ref="kiosk-8/0001"), headers=auth(api_key(env.store, "other"), "k-1")
    )
    assert mine.status_code == 201


def test_a_redelivered_source_ref_is_already_received_and_a_changed_one_conflicts(
    env: Env, client: TestClient
) -> None:
    key = api_key(env.store)
    first = client.post(URL, json=body(env), headers=auth(key))
    again = client.post(URL, json=body(env), headers=auth(key))
    assert again.status_code == 200
    assert again.json()["outcome"] == "already_received"
    assert again.json()["receipt"] == first.json()["receipt"]
    changed = body(env)
    changed["answers"][0]["level"] = "dissatisfied"
    conflict = client.post(URL, json=changed, headers=auth(key))
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "conflict"
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == 2


def test_every_problem_is_listed_with_its_field(env: Env, client: TestClient) -> None:
    bad = {
        "campaign": env.spec.code,
        "answered_at": "yesterday",
        "colour": "blue",
        "respondent": {"phone": "12345"},
        "answers": [
            {"unit": "S99", "level": "satisfied"},
            {"unit": "S01", "level": "splendid"},
            {"unit": "S02", "points": 7},
            {"unit": "S03", "level": "satisfied", "dont_know": True},
        ],
        "comment": 5,
    }
    answer = client.post(URL, json=bad, headers=auth(api_key(env.store)))
    assert answer.status_code == 422
    data = answer.json()
    assert set(data) >= {"error", "detail", "errors"}
    found = {(e["field"], e["code"]) for e in data["errors"]}
    assert found == {
        ("colour", "unknown_field"),
        ("source_ref", "required"),
        ("answered_at", "bad_time"),
        ("respondent.phone", "invalid_phone"),
        ("answers[0].unit", "unknown_unit"),
        ("answers[1].level", "unknown_level"),
        ("answers[2].points", "bad_points"),
        ("answers[3]", "bad_answer"),
        ("comment", "not_a_string"),
    }
    # Kept, redacted, never counted.
    assert count(env.store, "SELECT count(*) FROM submission WHERE status = 'rejected'") == 1
    assert count(env.store, "SELECT count(*) FROM ballot") == 0
    with env.store.engine.connect() as connection:
        payload = connection.exec_driver_sql("SELECT payload FROM submission").scalar_one()
    assert "12345" not in (payload if isinstance(payload, str) else json.dumps(payload))


def test_malformed_bodies(env: Env, client: TestClient) -> None:
    key = api_key(env.store)
    not_json = client.post(
        URL, content=b"{not json", headers={**auth(key), "content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"] == "invalid_json"
    no_campaign = client.post(URL, json=[1, 2], headers=auth(key))
    assert no_campaign.status_code == 422
    assert no_campaign.json()["errors"][0]["field"] == "body"
    unknown = client.post(URL, json=body(env, campaign="no-such-campaign"), headers=auth(key))
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_campaign"
    huge = client.post(URL, json=body(env, comment="x" * 70_000), headers=auth(key))
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"


def test_over_the_rate_limit_is_429(env: Env, client: TestClient) -> None:
    env.app.state.web.api_limiter = TokenBucket(rate=0.01, burst=1)
    key = api_key(env.store)
    assert client.post(URL, json=body(env, ref="a"), headers=auth(key)).status_code == 201
    limited = client.post(URL, json=body(env, ref="b"), headers=auth(key))
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert count(env.store, "SELECT count(*) FROM submission") == 1


def test_a_campaign_without_the_api_channel_answers_403(
    store: Store, branch_spec: CampaignSpec, tmp_path: Path
) -> None:
    env = make_env(store, variant(branch_spec, open_tier=True, channels=["web", "sms"]), tmp_path)
    with TestClient(env.app, base_url="https://testserver") as client:
        answer = client.post(URL, json=body(env), headers=auth(api_key(env.store)))
    assert answer.status_code == 403
    assert answer.json()["error"] == "channel_disabled"


def test_one_vote_across_channels(env: Env, client: TestClient) -> None:
    """An API ballot by phone for a roster respondent, then their web ballot: the web one is not counted."""
    stale = client.get(env.links["L1"])  # the respondent opened the web ballot earlier
    by_phone = body(env, ref="call-1", respondent={"phone": "139 7531 8642"})
    del by_phone["transaction"]
    by_phone["answers"] = [{"unit": u.code, "level": "fairly_satisfied"} for u in env.spec.units]
    first = client.post(URL, json=by_phone, headers=auth(api_key(env.store)))
    assert first.status_code == 201
    assert first.json()["outcome"] == "counted"
    assert PHONE_L1.endswith("13975318642")
    # The web page knows: nothing left to rate.
    assert "您已参加过评价" in client.get(env.links["L1"]).text
    # The form from the open tab arrives an hour after the call: kept as superseded, answered 409.
    env.clock.now += timedelta(hours=1)
    late = client.post(env.links["L1"], data={"csrf": csrf_of(stale.text), **ballot_form(env.spec)})
    assert late.status_code == 409
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == len(env.spec.units)
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'counted' AND channel = 'web'") == 0
    assert count(
        env.store, "SELECT count(*) FROM ballot WHERE status = 'superseded' AND channel = 'web'"
    ) == len(env.spec.units)
    assert vote(client, env.links["L2"], ballot_form(env.spec)).status_code == 200  # others still vote


async def test_async_client_with_lifespan(store: Store, branch_spec: CampaignSpec, tmp_path: Path) -> None:
    env = make_env(store, variant(branch_spec, open_tier=True), tmp_path)
    key = api_key(env.store)
    async with LifespanManager(env.app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).status_code == 200
            answer = await client.post(URL, json=body(env), headers=auth(key, "async-1"))
            assert answer.status_code == 201
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == 2


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'missing' / 'dir' / 'c.db'}", secret_key=TEST_SECRET
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"] == "database_unreachable"


TICKET_ORDER = (3, 1, 4, 0, 5, 2)  # dup-n is answered at 09:1n


async def test_concurrent_ballots_written_together_answer_as_one_by_one(
    store: Store, branch_spec: CampaignSpec, tmp_path: Path
) -> None:
    """
    A burst of API ballots that the group writer takes in one batch (parked behind a gate so
    the batch is certain): new ballots, one ticket rated by many devices, a device resending
    with its Idempotency-Key, and bad bodies. Every answer is the one a lone request gets.
    """
    env = make_env(store, variant(branch_spec, open_tier=True), tmp_path)
    keys = [api_key(env.store, f"d{n}") for n in range(4)]
    fresh = [body(env, f"new-{n}") for n in range(40)]
    # One ticket rated from six devices, answered at different minutes: the earliest counts.
    same_ticket = [
        body(env, f"dup-{n}", transaction="ticket-shared", answered_at=f"2026-09-01T09:{10 + n:02d}:00+08:00")
        for n in TICKET_ORDER
    ]
    resent = [body(env, f"resent-{n}") for n in range(10)]
    requests: list[tuple[dict[str, str], bytes]] = []
    requests += [(auth(keys[n % 4], f"new-{n}"), json.dumps(b).encode()) for n, b in enumerate(fresh)]
    requests += [(auth(keys[n % 4], f"dup-{n}"), json.dumps(b).encode()) for n, b in enumerate(same_ticket)]
    for n, b in enumerate(resent):  # the same request twice in the same burst
        requests += [(auth(keys[0], f"resent-{n}"), json.dumps(b).encode())] * 2
    requests.append((auth(keys[1], "broken"), b"{not json"))
    bad_level = body(env, "bad-level", answers=[{"unit": "S01", "level": "ecstatic"}])
    requests.append((auth(keys[2], "bad-level"), json.dumps(bad_level).encode()))

    gate_entered, gate_open = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def gate(_store: Store) -> None:
        loop.call_soon_threadsafe(gate_entered.set)
        asyncio.run_coroutine_threadsafe(gate_open.wait(), loop).result(30)

    async with LifespanManager(env.app) as manager:
        # One writer thread (PostgreSQL gets several), so the whole burst is one batch whatever
        # the database; several threads racing are tests/store/test_race.py's business.
        env.app.state.web.writer.close()
        writer = env.app.state.web.writer = GroupWriter(env.store, threads=1)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            parked = asyncio.ensure_future(writer.run(gate))
            await gate_entered.wait()
            sent = [
                asyncio.ensure_future(
                    client.post(URL, content=content, headers={**headers, "Content-Type": "application/json"})
                )
                for headers, content in requests
            ]
            for _tick in range(300):  # until every request has reached the writer's queue
                if writer.waiting() == len(requests):
                    break
                await asyncio.sleep(0.02)
            assert writer.waiting() == len(requests)
            gate_open.set()
            await parked
            answers = await asyncio.gather(*sent)
        stats = writer.stats

    # The gate, then the whole burst; a resent request starts a new run of its batch (it must
    # see its first delivery's response), so nothing fell back to one by one. (A run can end
    # up one request long: that one is written alone.)
    assert stats.batches == 2
    assert stats.one_by_one == 0
    assert stats.together + stats.alone == len(requests) + 1  # and the gate
    assert stats.together > len(requests) // 2
    fresh_answers = answers[:40]
    assert {a.status_code for a in fresh_answers} == {201}
    assert {a.json()["outcome"] for a in fresh_answers} == {"counted"}
    ticket_answers = answers[40:46]
    # As one by one: each answer is the decision at its arrival (the order the writer took
    # them, which the submission ids record): a rating counts, displacing the counted one, when
    # it is earlier than every rating before it. Minute 10 (dup-0) counts in the end.
    minutes = {f"dup-{n}": 10 + n for n in range(6)}
    with env.store.engine.connect() as connection:
        arrival = connection.execute(
            sa.text("SELECT external_id FROM submission WHERE external_id LIKE :refs ORDER BY id"),
            {"refs": "%:dup-%"},
        ).scalars()
        earliest, expected = 99, {}
        for external_id in arrival:
            ref = external_id.partition(":")[2]  # the API files refs under their key: key7:dup-3
            expected[ref] = "counted" if minutes[ref] < earliest else "not_counted"
            earliest = min(earliest, minutes[ref])
    sent_refs = [f"dup-{n}" for n in TICKET_ORDER]
    assert {ref: a.json()["outcome"] for ref, a in zip(sent_refs, ticket_answers, strict=True)} == expected
    pairs = answers[46:66]
    for first, again in zip(pairs[0::2], pairs[1::2], strict=True):
        assert first.status_code == again.status_code == 201
        replayed = [a.headers.get("idempotent-replayed") for a in (first, again)]
        assert sorted(replayed, key=str) == [None, "true"]  # whichever reached the writer second
        assert again.json() == first.json()
    assert answers[66].status_code == 400
    assert answers[67].status_code == 422
    assert answers[67].json()["errors"][0]["field"].startswith("answers")
    # The store holds exactly what one-by-one requests would have left.
    assert count(env.store, "SELECT count(*) FROM submission WHERE status = 'accepted'") == 40 + 6 + 10
    assert count(env.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == 2 * 40 + 2 * 10 + 2
    counted_ticket = count(
        env.store,
        "SELECT count(*) FROM ballot b JOIN submission s ON s.id = b.submission_id "
        "WHERE s.external_id LIKE :ref AND b.status = 'counted'",
        ref="%:dup-0",
    )
    assert counted_ticket == 2
    assert count(env.store, "SELECT count(*) FROM idempotency_record") == 40 + 6 + 10 + 2
