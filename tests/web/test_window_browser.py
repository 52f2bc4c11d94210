"""
A real phone browser on a poster URL: Debian's Chromium driven by Playwright (no browser
download), a phone-sized viewport on a throttled connection. Opens the page, votes, checks the
thank-you page and the stored ballot. Skips when Chromium or Playwright is not installed
(CI installs them: `apt-get install -y chromium`, and `playwright` comes with the dev extras).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn

from collect.settings import Settings
from collect.store import Store
from collect.store.migrate import upgrade
from collect.store.tables import BALLOT
from tests.conftest import TEST_SECRET
from tests.web.test_window_pages import WinEnv, make_winenv

CHROMIUM = os.environ.get("COLLECT_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A slow mobile line: 400 kbit/s down, 150 ms round trip (DevTools' "slow 3G" is of this order).
SLOW = {"offline": False, "latency": 150, "downloadThroughput": 400_000 / 8, "uploadThroughput": 200_000 / 8}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[WinEnv, str]]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    # Plain http on loopback: Secure cookies would not be kept by the browser.
    store = Store(Settings(database_url=url, secret_key=TEST_SECRET, public_url="http://127.0.0.1"))
    env = make_winenv(store)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(env.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield env, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.dispose()


def test_a_phone_rates_a_window_through_the_poster_url(served: tuple[WinEnv, str]) -> None:
    from playwright.sync_api import sync_playwright

    env, base = served
    poster = env.posters["SB-01"]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = chromium.new_context(
                viewport={"width": 360, "height": 740},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                locale="zh-CN",
            )
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", SLOW)
            page.goto(f"{base}/w/{poster.code}")
            loaded_ms = page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " return n.domContentLoadedEventEnd - n.startTime; }"
            )
            assert loaded_ms < 1000, f"the page took {loaded_ms:.0f} ms on a slow line"
            assert page.locator("h1").inner_text() == "社保1号窗口"
            # Big enough to tap: every choice at least 44 CSS pixels high.
            heights = [
                box["height"]
                for box in (label.bounding_box() for label in page.locator(".opts label").all())
                if box
            ]
            assert len(heights) == 5
            assert min(heights) >= 44
            page.get_by_label("满意", exact=True).check()
            page.locator("#comment").fill("办事很快")
            page.get_by_role("button", name="提交").click()
            page.wait_for_selector("#thanks")
            assert "谢谢：您的评价已收到。" in page.locator("#thanks").inner_text()
            receipt = page.locator(".receipt").inner_text()
            # Scanning again the same day: the page says it was rated.
            page.goto(f"{base}/w/{poster.code}")
            assert page.locator("#already_rated").count() == 1
        finally:
            chromium.close()
    with env.store.engine.connect() as connection:
        (ballot,) = connection.execute(sa.select(BALLOT)).all()
        stored_receipt = connection.execute(
            sa.text("SELECT receipt FROM submission WHERE id = :id"), {"id": ballot.submission_id}
        ).scalar_one()
    assert (ballot.status, ballot.unit_code, ballot.comment) == ("counted", "SB", "办事很快")
    assert ballot.meta == {"via": "poster", "window": "SB-01", "poster": poster.code}
    assert stored_receipt == receipt
