"""
`/admin/paper`: clerks key printed forms on a real app and store (SQLite file and PostgreSQL):
the serial checked as it is typed, the save through the same entry path as the import, double
entry with its disagreements settled by a third clerk, the clerk and the audit on every entry.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from collect.paper.ledger import issue_forms
from collect.paper.serials import (
    ALPHABET,
    canonical,
    format_serial,
    new_serial,
    normalise,
    sign,
)
from collect.store import Store
from collect.store.campaigns import save_campaign
from collect.store.tables import AUDIT, BALLOT, PAPER_ENTRY, PAPER_SERIAL, SUBMISSION
from collect.web.app import create_app
from tests.conftest import count
from tests.paper.helpers import ANSWER_HEADERS, CODE, spec
from tests.web.conftest import PASSWORD, csrf_of, user

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
PAGE = "/admin/paper"


@dataclass
class Desk:
    store: Store
    serials: list[str]

    def signature(self, serial: str) -> str:
        return sign(self.store.settings.secret(), CODE, serial)


@pytest.fixture
def desk(store: Store, tmp_path: Path) -> Desk:
    with store.engine.begin() as connection:
        save_campaign(connection, spec(), actor="test")
    issue_forms(
        store, CODE, distribution="单位", count=4, out=tmp_path / "forms.pdf", actor="test", batch="B1"
    )
    with store.engine.connect() as connection:
        serials = list(
            connection.execute(sa.select(PAPER_SERIAL.c.serial).order_by(PAPER_SERIAL.c.seq)).scalars()
        )
    for name, role in (("clerk-a", "clerk"), ("clerk-b", "clerk"), ("clerk-c", "clerk"), ("look", "viewer")):
        user(store, name, role)
    return Desk(store, serials)


@pytest.fixture
def app(desk: Desk) -> Any:
    return create_app(desk.store.settings, desk.store, clock=lambda: NOW)


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
def clerk(app: Any) -> Iterator[TestClient]:
    client = signed_in(app, "clerk-a")
    yield client
    client.__exit__(None, None, None)


def entry_page(client: TestClient, mode: str = "single") -> Any:
    page = client.get(PAGE, params={"campaign": CODE, "mode": mode})
    assert page.status_code == 200, page.text
    return page


def key(
    client: TestClient, desk: Desk, serial: str, *levels: int, mode: str = "single", **fields: str
) -> Any:
    page = entry_page(client, mode)
    page_id = re.search(r'name="page_id" value="([0-9a-f]+)"', page.text)
    assert page_id is not None
    data = {
        "csrf": csrf_of(page.text),
        "campaign": CODE,
        "mode": mode,
        "page_id": page_id.group(1),
        "serial": serial,
        "signature": fields.pop("signature", desk.signature(serial) if serial in desk.serials else ""),
        "answered_on": "2026-11-02",
        **dict(zip(ANSWER_HEADERS, (str(level) for level in levels), strict=True)),
        **fields,
    }
    return client.post(PAGE, data=data)


def outcome(answer: Any) -> tuple[str, str]:
    found = re.search(r'id="result" data-state="(\w+)" data-outcome="(\w+)"', answer.text)
    assert found is not None, answer.text
    return found.group(1), found.group(2)


def serial_said(client: TestClient, serial: str, signature: str | None = None) -> dict[str, Any]:
    params = {"campaign": CODE, "serial": serial} | ({"signature": signature} if signature else {})
    answer = client.get(f"{PAGE}/serial", params=params)
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


def never_issued(desk: Desk) -> str:
    """A well-formed serial (its check symbol right) that was never issued."""
    while True:
        serial = new_serial()
        if serial not in desk.serials:
            return serial


def one_slip(serial: str) -> str:
    """The serial with its first symbol changed: what a clerk's slip of the pen gives."""
    code = normalise(serial)
    other = next(c for c in ALPHABET if c != code[0])
    return format_serial(other + code[1:])


def test_the_page_is_keyboard_first_and_its_script_allowed_by_hash(desk: Desk, clerk: TestClient) -> None:
    page = entry_page(clerk)
    assert '<html lang="zh-CN">' in page.text
    assert "纸质问卷录入" in page.text
    assert re.search(r'name="serial" value="" maxlength="32" autofocus', page.text)
    assert page.text.count('class="box"') == len(ANSWER_HEADERS)
    assert "1 满意" in page.text  # the box numbers as printed
    assert "x 不了解" in page.text
    script = re.search(r"<script>(.*?)</script>", page.text, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    csp = page.headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in csp
    assert "unsafe-inline" not in csp
    assert "connect-src 'self'" in csp


def test_a_keyed_form_counts_once_and_the_clerk_is_on_it(desk: Desk, clerk: TestClient) -> None:
    saved = key(clerk, desk, desk.serials[0], 1, 2, 1, 1, 3, 2)
    assert saved.status_code == 200
    assert outcome(saved) == ("ingested", "counted")
    assert "已保存：计入统计。" in saved.text
    assert 'value="2026-11-02"' in saved.text  # the pile's date stays for the next sheet
    assert re.search(r'name="serial" value=""', saved.text)  # the next sheet starts blank
    statuses = count(desk.store, "SELECT count(*) FROM ballot WHERE channel = 'paper' AND status = 'counted'")
    assert statuses == 3  # one ballot per unit
    with desk.store.engine.connect() as connection:
        entry = connection.execute(sa.select(PAPER_ENTRY.c.clerk, PAPER_ENTRY.c.state)).one()
        audit = connection.execute(
            sa.select(AUDIT.c.actor, AUDIT.c.detail).where(AUDIT.c.action == "paper.entry")
        ).one()
    assert (entry.clerk, entry.state) == ("clerk-a", "ingested")
    assert audit.actor == "web:clerk-a"
    assert audit.detail["outcome"] == "counted"
    # The same sheet keyed again on a fresh page is a second use of the serial: a photocopy.
    again = key(clerk, desk, desk.serials[0], 1, 2, 1, 1, 3, 2)
    assert outcome(again) == ("ingested", "rejected")
    assert "serial_reused" in again.text
    assert count(desk.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == 3


def test_a_save_sent_twice_is_one_entry(desk: Desk, clerk: TestClient) -> None:
    page = entry_page(clerk)
    page_id = re.search(r'name="page_id" value="([0-9a-f]+)"', page.text)
    assert page_id is not None
    serial = desk.serials[1]
    data = {
        "csrf": csrf_of(page.text),
        "campaign": CODE,
        "mode": "single",
        "page_id": page_id.group(1),
        "serial": serial,
        "signature": desk.signature(serial),
        "answered_on": "2026-11-02",
        **dict.fromkeys(ANSWER_HEADERS, "2"),
    }
    first, second = clerk.post(PAGE, data=data), clerk.post(PAGE, data=data)
    assert outcome(first) == ("ingested", "counted")
    assert outcome(second) == ("already_entered", "already_received")
    assert count(desk.store, "SELECT count(*) FROM submission WHERE channel = 'paper'") == 1


def test_the_serial_is_checked_as_it_is_typed(desk: Desk, clerk: TestClient) -> None:
    issued = desk.serials[0]
    said = serial_said(clerk, issued.lower().replace("-", " "), desk.signature(issued))
    assert (said["shown"], said["serial"], said["distribution"]) == ("ok", issued, "单位")
    assert said["message"] == "已发放，尚未录入。"
    forged = never_issued(desk)
    assert serial_said(clerk, forged)["shown"] == "unknown"
    slip = serial_said(clerk, one_slip(desk.serials[2]))
    assert slip["shown"] == "mistyped"
    assert slip["candidates"] == [desk.serials[2]]
    expected = desk.signature(issued)
    wrong = "".join(ALPHABET[(ALPHABET.index(c) + 7) % 32] for c in expected)
    assert serial_said(clerk, issued, wrong)["shown"] == "bad_signature"
    assert serial_said(clerk, "???")["shown"] == "malformed"
    key(clerk, desk, issued, 1, 1, 1, 1, 1, 1)
    after = serial_said(clerk, issued)
    assert (after["shown"], after["entered"]) == ("entered", 1)
    assert "复印件" in after["message"]
    assert canonical(issued) == issued


def test_forged_and_mistyped_serials_are_kept_not_counted(desk: Desk, clerk: TestClient) -> None:
    forged = never_issued(desk)
    answer = key(clerk, desk, forged, 1, 1, 1, 1, 1, 1)
    assert outcome(answer) == ("ingested", "rejected")
    assert "serial_unknown" in answer.text
    slip = key(clerk, desk, one_slip(desk.serials[3]), 2, 2, 2, 2, 2, 2, signature="")
    assert outcome(slip) == ("ingested", "pending_review")
    with desk.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(SUBMISSION.c.status, SUBMISSION.c.reason).order_by(SUBMISSION.c.id)
        ).all()
        held = connection.execute(
            sa.select(sa.func.count()).select_from(BALLOT).where(BALLOT.c.status == "pending_review")
        ).scalar_one()
    assert tuple(rows[0]) == ("rejected", "serial_unknown")
    assert held == 3
    assert count(desk.store, "SELECT count(*) FROM ballot WHERE status = 'counted'") == 0


def test_a_bad_box_is_kept_as_invalid_with_its_reason(desk: Desk, clerk: TestClient) -> None:
    answer = key(clerk, desk, desk.serials[0], 1, 9, 1, 1, 1, 1)
    assert answer.status_code == 200  # kept: a rejected form is still a received form
    state, result = outcome(answer)
    assert (state, result) == ("ingested", "rejected")
    with desk.store.engine.connect() as connection:
        reason = connection.execute(sa.select(SUBMISSION.c.reason)).scalar_one()
    assert reason == "unknown_level"
    assert f"({reason})" in answer.text


def test_double_entry_agreement_and_a_disagreement_settled_by_a_third_clerk(desk: Desk, app: Any) -> None:
    a, b, c = (signed_in(app, name) for name in ("clerk-a", "clerk-b", "clerk-c"))
    try:
        agreed = desk.serials[0]
        assert outcome(key(a, desk, agreed, 1, 1, 2, 2, 3, 3, mode="double")) == ("awaiting", "awaiting")
        assert count(desk.store, "SELECT count(*) FROM submission WHERE channel = 'paper'") == 0
        assert outcome(key(b, desk, agreed, 1, 1, 2, 2, 3, 3, mode="double")) == ("ingested", "counted")
        assert count(desk.store, "SELECT count(*) FROM submission WHERE channel = 'paper'") == 1
        # The same clerk cannot be both keyings of a sheet (known by its receipt number).
        numbered = desk.serials[2]
        assert outcome(key(a, desk, numbered, 2, 2, 2, 2, 2, 2, mode="double", form="R-17")) == (
            "awaiting",
            "awaiting",
        )
        refused = key(a, desk, numbered, 3, 2, 2, 2, 2, 2, mode="double", form="R-17")
        assert outcome(refused) == ("refused", "refused")
        assert "already_entered_by_clerk" in refused.text
        assert refused.status_code == 400
        disputed = desk.serials[1]
        key(a, desk, disputed, 1, 1, 1, 1, 1, 1, mode="double")
        assert outcome(key(b, desk, disputed, 1, 1, 1, 1, 1, 2, mode="double")) == (
            "disagreement",
            "disagreement",
        )
        listing = c.get(f"{PAGE}/disagreements", params={"campaign": CODE})
        assert listing.status_code == 200
        assert disputed in listing.text
        assert "U3/efficiency: 1 ≠ 2" in listing.text or "U3/efficiency" in listing.text
        assert "clerk-a, clerk-b" in listing.text
        settled = key(c, desk, disputed, 1, 1, 1, 1, 1, 1, mode="double")
        assert outcome(settled) == ("ingested", "counted")
        assert disputed not in c.get(f"{PAGE}/disagreements", params={"campaign": CODE}).text
        assert count(desk.store, "SELECT count(*) FROM submission WHERE channel = 'paper'") == 2
        with desk.store.engine.connect() as connection:
            clerks = (
                connection.execute(sa.select(PAPER_ENTRY.c.clerk).order_by(PAPER_ENTRY.c.id)).scalars().all()
            )
        assert set(clerks) == {"clerk-a", "clerk-b", "clerk-c"}
    finally:
        for client in (a, b, c):
            client.__exit__(None, None, None)


def test_csrf_login_and_role_are_enforced(desk: Desk, app: Any) -> None:
    with TestClient(app, base_url="https://testserver") as anonymous:
        assert anonymous.get(PAGE, follow_redirects=False).status_code == 303
    viewer = signed_in(app, "look")
    try:
        assert viewer.get(PAGE, params={"campaign": CODE}).status_code == 403
    finally:
        viewer.__exit__(None, None, None)
    clerk = signed_in(app, "clerk-a")
    try:
        forged = clerk.post(
            PAGE, data={"campaign": CODE, "serial": desk.serials[0], **dict.fromkeys(ANSWER_HEADERS, "1")}
        )
        assert forged.status_code in (400, 403)
        assert count(desk.store, "SELECT count(*) FROM submission") == 0
        listing = clerk.get(PAGE)
        assert "2026年政风行风评议" in listing.text  # the campaign chooser
        assert clerk.get(PAGE, params={"campaign": "nope"}).status_code == 404
    finally:
        clerk.__exit__(None, None, None)
