"""
`/admin/review`: the review queue in the console, on the real app and store (SQLite file and
PostgreSQL): items held by the copy detector listed with their evidence, accepted or rejected
by an operator with a note, audited; viewers see, but do not decide.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from collect.campaign import CampaignSpec
from collect.dedupe.clusters import scan
from collect.dedupe.review import list_items
from collect.ingest import ingest_batch
from collect.store import Store
from collect.web.app import create_app
from tests.conftest import count
from tests.dedupe.helpers import paper_submission, synthetic_forms
from tests.store.factories import campaign_spec, save
from tests.web.conftest import DURING, PASSWORD, csrf_of, user

PAGE = "/admin/review"


@pytest.fixture
def held(store: Store, branch_spec: CampaignSpec) -> str:
    """A campaign whose 400 paper forms include 30 copies of one form: 31 items held."""
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    forms = synthetic_forms(400, [30], seed=11)
    ingest_batch(store, [paper_submission(spec, form, i) for i, form in enumerate(forms)])
    assert scan(store, spec.code).new_items == 31
    user(store, "ops", "operator")
    user(store, "look", "viewer")
    return spec.code


def signed_in(app: Any, name: str) -> TestClient:
    client = TestClient(app, base_url="https://testserver")
    client.__enter__()
    page = client.get("/admin/login")
    answer = client.post(
        "/admin/login",
        data={"csrf": csrf_of(page.text), "name": name, "password": PASSWORD, "next": "/admin/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    return client


@pytest.fixture
def app(store: Store, held: str) -> Any:
    return create_app(store.settings, store, clock=lambda: DURING)


@pytest.fixture
def ops(app: Any) -> Iterator[TestClient]:
    client = signed_in(app, "ops")
    yield client
    client.__exit__(None, None, None)


def decide(client: TestClient, code: str, item: int, decision: str, note: str) -> Any:
    page = client.get(PAGE, params={"campaign": code})
    return client.post(
        f"{PAGE}?campaign={code}",
        data={"csrf": csrf_of(page.text), "item": str(item), "decision": decision, "note": note},
        follow_redirects=False,
    )


def test_items_are_listed_with_their_evidence(store: Store, held: str, ops: TestClient) -> None:
    page = ops.get(PAGE, params={"campaign": held})
    assert page.status_code == 200
    assert "复核队列" in page.text
    assert len(re.findall(r'<tr data-item="\d+" data-status="open">', page.text)) == 31
    assert "photocopies: identical answers" in page.text
    for key in ("observed", "expected", "log10_p_value", "log10_threshold"):
        assert f"<dt>{key}</dt>" in page.text
    assert "<dd>31</dd>" in page.text  # observed: the 30 copies and their original


def test_an_operator_decides_with_a_note(store: Store, held: str, ops: TestClient) -> None:
    first, second = (item.id for item in list_items(store, held)[:2])
    refused = decide(ops, held, first, "reject", "  ")
    assert refused.status_code == 400
    assert "请说明理由" in refused.text
    assert decide(ops, held, first, "reject", "a photocopy of form 17").status_code == 303
    assert decide(ops, held, second, "accept", "the original, on file").status_code == 303
    statuses = {item.id: (item.status, item.decided_by, item.note) for item in list_items(store, held)}
    assert statuses[first] == ("rejected", "web:ops", "a photocopy of form 17")
    assert statuses[second] == ("accepted", "web:ops", "the original, on file")
    invalid = count(
        store, "SELECT count(*) FROM ballot WHERE status = 'invalid' AND reason = 'identical_answers'"
    )
    assert invalid > 0
    assert count(store, "SELECT count(*) FROM audit_log WHERE actor = 'web:ops'") >= 2
    # Decided once: a second decision on the same item is refused and changes nothing.
    again = decide(ops, held, first, "accept", "changed my mind")
    assert again.status_code == 400
    assert [i.status for i in list_items(store, held) if i.id == first] == ["rejected"]
    decided = ops.get(PAGE, params={"campaign": held, "status": "rejected"})
    assert "a photocopy of form 17" in decided.text
    assert len(re.findall(r'data-status="open"', ops.get(PAGE, params={"campaign": held}).text)) == 29


def test_a_viewer_sees_but_does_not_decide(store: Store, held: str, app: Any) -> None:
    viewer = signed_in(app, "look")
    try:
        page = viewer.get(PAGE, params={"campaign": held})
        assert page.status_code == 200
        assert 'name="decision"' not in page.text
        item = list_items(store, held)[0].id
        assert decide(viewer, held, item, "accept", "I think so").status_code == 403
    finally:
        viewer.__exit__(None, None, None)
    assert {i.status for i in list_items(store, held)} == {"open"}
