"""
`GET /metrics` on the real app and store (SQLite file and PostgreSQL): the campaign's facts
equal the database's, the write timings count the writes, the token is enforced, and the
Grafana dashboard in deploy/ asks only for metrics that exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import TestClient

from collect.campaign import CampaignSpec
from collect.channels.calls import load_profile_text
from collect.imports import import_calls
from collect.store import Store
from collect.web.app import create_app
from tests.channels.test_calls_files import PROFILE, calls, write_csv
from tests.conftest import count
from tests.web.conftest import api_key, make_env, variant

ROOT = Path(__file__).resolve().parents[2]


def scrape(client: TestClient, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {sorted labels: value} of one scrape."""
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def ballot(env: Any, ref: str, ticket: str) -> dict[str, Any]:
    return {
        "campaign": env.spec.code,
        "source_ref": ref,
        "answered_at": "2026-09-01T09:30:00+08:00",
        "transaction": ticket,
        "answers": [{"unit": "S01", "level": "satisfied"}],
    }


def test_the_facts_are_the_database_s(store: Store, branch_spec: CampaignSpec, tmp_path: Path) -> None:
    env = make_env(store, variant(branch_spec, open_tier=True), tmp_path)
    key = api_key(store)
    export = write_csv(tmp_path / "calls.csv", calls(6), "gbk")
    report = import_calls(store, env.spec.code, export, profile=load_profile_text(PROFILE), actor="test")
    with TestClient(env.app, base_url="https://testserver") as client:
        before = scrape(client).get("collect_write_seconds_count", {}).get((), 0.0)
        auth = {"Authorization": f"Bearer {key}"}
        for ref, ticket in (("a", "t1"), ("b", "t2"), ("c", "t1")):  # the third rates t1 again
            assert (
                client.post("/api/v1/ballots", json=ballot(env, ref, ticket), headers=auth).status_code == 201
            )
        # A fresh app for the facts: each app keeps them FACTS_TTL seconds.
    with TestClient(create_app(store.settings, store), base_url="https://testserver") as fresh:
        facts = scrape(fresh)
    with TestClient(env.app, base_url="https://testserver") as client:
        timings = scrape(client)
    ballots = facts["collect_ballots"]
    for (channel, status), n in _db_ballots(store).items():
        assert ballots[(("channel", channel), ("status", status))] == n
    assert ballots[(("channel", "api"), ("status", "counted"))] == 2  # tickets t1 and t2
    assert ballots[(("channel", "api"), ("status", "duplicate"))] == 1
    imported = facts["collect_import_rows"]
    assert imported[(("outcome", "accepted"),)] == report.accepted
    assert imported[(("outcome", "quarantined"),)] == report.quarantined
    assert timings["collect_write_seconds_count"][()] >= before + 3


def _db_ballots(store: Store) -> dict[tuple[str, str], int]:
    out = {}
    for channel in ("api", "phone", "web"):
        for status in ("counted", "duplicate", "superseded", "invalid", "pending_review"):
            n = count(
                store, "SELECT count(*) FROM ballot WHERE channel = :c AND status = :s", c=channel, s=status
            )
            if n:
                out[(channel, status)] = n
    return out


def test_the_token_is_required_when_set(store: Store, branch_spec: CampaignSpec, tmp_path: Path) -> None:
    settings = store.settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    app = create_app(settings, store)
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert answer.status_code == 200
        assert "# TYPE collect_ballots gauge" in answer.text


def test_the_dashboard_asks_only_for_exported_metrics(store: Store) -> None:
    with TestClient(create_app(store.settings, store), base_url="https://testserver") as client:
        text = client.get("/metrics").text
    exported = set(re.findall(r"^# TYPE (collect_\w+) ", text, re.M))
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    asked = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bcollect_\w+", target["expr"])
    }
    assert len(asked) >= 5
    assert asked <= exported, asked - exported
