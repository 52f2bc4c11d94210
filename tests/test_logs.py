"""
Logs: JSON lines with the request's id, and no phone number or token anywhere, even with every
logger at DEBUG while the whole demo runs (rosters with phones, ballot links, API keys, the GBK
phone-survey import, the console).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from starlette.testclient import TestClient

from collect.campaign import CampaignSpec, load_campaign_file
from collect.demo import run_demo
from collect.demo_data import write_rosters
from collect.logs import configure, redact_path, scrub
from collect.settings import Settings
from collect.store.migrate import upgrade
from collect.web.app import create_app
from tests.conftest import EXAMPLES, TEST_SECRET

NOW = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    configure("DEBUG", "json", stream)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool", "httpx", "httpcore", "uvicorn", "collect"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        for name in ("sqlalchemy.engine", "sqlalchemy.pool", "httpx", "httpcore", "uvicorn", "collect"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_scrubbing() -> None:
    assert redact_path("/b/Zx9_kQ-abc?lang=en") == "/b/[redacted]"
    assert redact_path("/t/eyJ3IjoiU0ItMDEifQ.sig") == "/t/[redacted]"
    assert redact_path("/w/P7Q2K") == "/w/P7Q2K"  # a poster's public code is no secret
    assert scrub("call +86 139 1234 5678 or 13912345678, key ck_abcdefghijkl") == (
        "call [phone] or [phone], key ck_[redacted]"
    )
    assert scrub("Authorization: Bearer s3cr3t-t0ken") == "Authorization: Bearer [redacted]"
    assert scrub("order 20260901123456789 total 1390") == "order 20260901123456789 total 1390"


def test_a_request_s_lines_carry_its_id(tmp_path: Path, captured: io.StringIO) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    app = create_app(Settings(database_url=url, secret_key=TEST_SECRET))
    with TestClient(app) as client:
        given = client.get("/readyz", headers={"X-Request-ID": "lb-7f3a"})
        made = client.get("/b/not-a-real-token-but-secret-shaped")
    assert given.headers["x-request-id"] == "lb-7f3a"
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    entries = lines(captured)
    mine = [e for e in entries if e.get("request_id") == "lb-7f3a"]
    assert any(e.get("path") == "/readyz" and e.get("status") == 200 for e in mine)
    other = [e for e in entries if e.get("request_id") == made.headers["x-request-id"]]
    assert any(e.get("path") == "/b/[redacted]" for e in other)
    assert "not-a-real-token" not in captured.getvalue()
    # A header that is not a plain id is not echoed (log injection, header smuggling).
    with TestClient(app) as client:
        odd = client.get("/healthz", headers={"X-Request-ID": "x\\ny {evil}"})
    assert re.fullmatch(r"[0-9a-f]{16}", odd.headers["x-request-id"])


def test_the_demo_at_debug_logs_no_phone_number_or_token(tmp_path: Path, captured: io.StringIO) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    settings = Settings(database_url=url, secret_key=TEST_SECRET)
    store = run_demo(settings, Console(file=io.StringIO(), width=200), now=NOW)
    store.dispose()
    text = captured.getvalue()
    assert len(text.splitlines()) > 100  # it did log, at DEBUG, from many loggers
    loggers = {e["logger"] for e in lines(captured)}
    assert any(str(name).startswith("sqlalchemy") for name in loggers)
    # Every phone number the demo's rosters hold, as written and in E.164.
    phones: set[str] = set()
    for roster in write_rosters(_spec(), tmp_path / "rosters"):
        phones.update(re.findall(r"1[3-9]\d{9}", roster.path.read_text(encoding="utf-8")))
    assert len(phones) > 20
    leaked = sorted(p for p in phones if p in text)
    assert leaked == []
    assert not re.search(r"/b/(?!\[redacted\])[A-Za-z0-9_-]{8,}", text)
    assert not re.search(r"\bck_(?!\[redacted\])", text)


def _spec() -> CampaignSpec:
    return load_campaign_file(str(EXAMPLES / "branch-office.toml"))
