"""
`/admin/imports`: an operator uploads a GBK call-centre export on the real app and store (SQLite
file and PostgreSQL), sees the dry run, imports it, downloads the quarantined rows, and finds
that the same file again adds nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from collect.campaign import CampaignSpec
from collect.store import Store
from collect.web.app import create_app
from tests.channels.test_calls_files import PROFILE, Call, calls, csv_text
from tests.conftest import count
from tests.store.factories import campaign_spec, save
from tests.web.conftest import PASSWORD, csrf_of, user

CODE = "calls-web"
PAGE = "/admin/imports"
NOW = datetime(2026, 9, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def app(store: Store, branch_spec: CampaignSpec) -> Any:
    save(store, campaign_spec(branch_spec, code=CODE, open_tier=True))
    user(store, "ops", "operator")
    user(store, "desk", "clerk")
    return create_app(store.settings, store, clock=lambda: NOW)


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
def ops(app: Any) -> Iterator[TestClient]:
    client = signed_in(app, "ops")
    yield client
    client.__exit__(None, None, None)


def export_bytes(rows: list[Call]) -> bytes:
    """A GBK export as the vendor sends it: title row, header, the calls, a totals row."""
    return csv_text(rows).encode("gbk")


def bad_rows() -> list[Call]:
    return [
        Call("C90001", "12345", "2026-09-01 11:00:00", "成功", "城东工商所", "1"),  # not a phone number
        Call("C90002", "13900090002", "2026-09-01 11:01:00", "成功", "城东工商所", "9"),  # no such answer
    ]


def upload(client: TestClient, name: str, content: bytes, profile: str | None = None) -> Any:
    page = client.get(PAGE)
    assert page.status_code == 200
    files: dict[str, Any] = {"file": (name, content, "text/csv")}
    if profile is not None:
        files["profile"] = ("acme.profile.toml", profile.encode(), "application/toml")
    return client.post(
        PAGE, data={"csrf": csrf_of(page.text), "campaign": CODE, "action": "preview"}, files=files
    )


def confirm(client: TestClient, preview: Any) -> Any:
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview.text))
    assert fields["sha256"]
    return client.post(PAGE, data={**fields, "action": "import"}, files={"none": ("", b"")})


def figure(answer: Any, key: str) -> int:
    found = re.search(rf'data-k="{key}">(\d+)<', answer.text)
    assert found is not None, answer.text
    return int(found.group(1))


def phone_submissions(store: Store) -> int:
    return count(store, "SELECT count(*) FROM submission WHERE channel = 'phone'")


def test_preview_import_download_and_the_same_file_again(store: Store, ops: TestClient) -> None:
    content = export_bytes(calls(12) + bad_rows())
    preview = upload(ops, "三季度电话调查.csv", content, profile=PROFILE)
    assert preview.status_code == 200, preview.text
    assert 'data-dry-run="yes"' in preview.text
    assert "gbk" in preview.text.lower()
    assert "acme" in preview.text  # the uploaded profile was used
    # 14 calls and the totals row (read, then skipped).
    assert figure(preview, "rows_read") == 15
    assert (figure(preview, "accepted"), figure(preview, "quarantined")) == (12, 2)
    assert phone_submissions(store) == 0  # a preview writes nothing

    imported = confirm(ops, preview)
    assert imported.status_code == 200, imported.text
    assert 'data-dry-run="no"' in imported.text
    assert (figure(imported, "accepted"), figure(imported, "quarantined")) == (12, 2)
    assert phone_submissions(store) == 14  # quarantined rows are kept too, with their reasons
    assert count(store, "SELECT count(*) FROM ballot WHERE channel = 'phone' AND status = 'counted'") == 12
    assert (
        count(store, "SELECT count(*) FROM audit_log WHERE action = 'import.calls' AND actor = 'web:ops'")
        == 1
    )

    listing = ops.get(PAGE)
    assert "三季度电话调查.csv" in listing.text
    link = re.search(r'href="(/admin/imports/quarantine/[0-9a-f]{64}\.csv)"', listing.text)
    assert link is not None
    download = ops.get(link.group(1))
    assert download.status_code == 200
    rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert sorted(r["call_id"] for r in rows) == ["C90001", "C90002"]
    assert all(r["reason"] for r in rows)
    assert "13900090002" not in download.text  # masked: where and why, never whom

    again = confirm(ops, upload(ops, "三季度电话调查.csv", content, profile=PROFILE))
    assert (figure(again, "accepted"), figure(again, "already_received")) == (0, 14)
    assert phone_submissions(store) == 14
    # The first run's list of quarantined rows is still the file's list.
    assert len(ops.get(link.group(1)).text.strip().splitlines()) == 1 + 2


def test_a_file_that_cannot_be_imported_says_why_and_writes_nothing(store: Store, ops: TestClient) -> None:
    pdf = upload(ops, "scan.pdf", b"%PDF-1.4")
    assert pdf.status_code == 400
    assert "scan.pdf" in pdf.text
    headerless = "编号,电话,备注\r\n1,13900000001,好\r\n".encode("gbk")
    refused = upload(ops, "other.csv", headerless)
    assert refused.status_code == 400
    assert "headers match no profile" in refused.text
    assert phone_submissions(store) == 0
    assert count(store, "SELECT count(*) FROM audit_log WHERE action = 'import.calls'") == 0


def test_only_operators_with_a_valid_form_import(store: Store, app: Any) -> None:
    clerk = signed_in(app, "desk")
    try:
        assert clerk.get(PAGE).status_code == 403
    finally:
        clerk.__exit__(None, None, None)
    ops = signed_in(app, "ops")
    try:
        forged = ops.post(
            PAGE,
            data={"campaign": CODE, "action": "preview"},
            files={"file": ("calls.csv", export_bytes(calls(3)), "text/csv")},
        )
        assert forged.status_code == 403
        assert ops.get(f"{PAGE}/quarantine/{'0' * 64}.csv").status_code == 404
    finally:
        ops.__exit__(None, None, None)
    assert phone_submissions(store) == 0


def test_the_page_is_listed_and_in_chinese(ops: TestClient, tmp_path: Path) -> None:
    page = ops.get(PAGE)
    assert '<html lang="zh-CN">' in page.text
    assert "电话调查导入" in page.text
    assert 'enctype="multipart/form-data"' in page.text
    assert f'<option value="{CODE}"' in page.text
