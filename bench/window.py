"""
Bench: ratings through `POST /w/{code}` (CSRF check, device cookie, rate limits, the burst
check, ingest(), the rating log, the thank-you page) against a bare Starlette route that parses
the same form and answers a small HTML page; both under uvicorn, one worker, SQLite file,
loopback only.

    .venv/bin/python bench/window.py [--connections 20] [--requests 1000]

Each rating is a distinct phone (its own device and CSRF cookies, fetched with a GET of the
page before the clock starts) rating one of the campaign's five windows "satisfied". Limits are
raised for the run (every phone shares 127.0.0.1). Prints both rates and their ratio (target
≥ 0.5). Bounded: at most 5000 requests and 200 connections.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from bench.ingest import Result, Server, load, run_loop  # noqa: E402

SECRET = "bench-only-secret-key-0123456789abcdef"
PUBLIC_URL = "http://127.0.0.1"
THANKS = "<!doctype html><title>ok</title><p>谢谢：您的评价已收到。</p>"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def baseline_app() -> Starlette:
    """The least a rating page can do: read the form, answer a page."""

    async def rate(request: Request) -> Response:
        async with request.form() as form:
            _ = form.get("a.SB.overall")
        return HTMLResponse(THANKS)

    return Starlette(routes=[Route("/w/{code}", rate, methods=["GET", "POST"])])


def window_app_from_env() -> Starlette:
    """The real app with the window routes (until create_app lists them) and bench limits."""
    from collect.settings import Settings
    from collect.web import window
    from collect.web.app import create_app

    app = create_app(Settings())
    if not any(getattr(r, "path", None) == "/w/{code}" for r in app.router.routes):
        app.router.routes.extend(window.routes)
    # One address for every simulated phone: the per-network limits would stop the run.
    app.state.window = window.WindowState(
        config=window.WindowConfig(
            network_rate=1e6,
            network_burst=10**6,
            page_rate=1e6,
            page_burst=10**6,
            window_rate=1e6,
            window_burst=10**6,
        )
    )
    return app


def prepare(directory: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A migrated SQLite file with the service-windows campaign open now and its posters."""
    from collect.campaign import CampaignSpec, load_campaign_file
    from collect.channels.window import Hours
    from collect.settings import Settings
    from collect.store import Store
    from collect.store.campaigns import save_campaign
    from collect.store.migrate import upgrade
    from collect.web.window import ensure_posters

    url = f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    env = {"COLLECT_DATABASE_URL": url, "COLLECT_SECRET_KEY": SECRET, "COLLECT_PUBLIC_URL": PUBLIC_URL}
    store = Store(Settings(database_url=url, secret_key=SECRET))
    data: dict[str, Any] = load_campaign_file(str(ROOT / "collect/examples/service-windows.toml")).model_dump(
        mode="json"
    )
    now = datetime.now(UTC)
    data.update(
        code="bench-window",
        opens_at=(now - timedelta(days=1)).isoformat(),
        closes_at=(now + timedelta(days=30)).isoformat(),
    )
    spec = CampaignSpec.model_validate(data)
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="bench")
    # Open all day, so the bench runs at any hour.
    posters = ensure_posters(store, spec.code, actor="bench", hours=Hours.parse("00:00-24:00"))
    store.dispose()
    return env, [(p.code, p.unit) for p in posters]


def phones(base: str, posters: list[tuple[str, str]], count: int) -> list[tuple[str, str, bytes]]:
    """`count` phones, each having opened a poster page: (path, cookie header, form body)."""
    out: list[tuple[str, str, bytes]] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(count):
            code, unit = posters[n % len(posters)]
            client.cookies.clear()
            page = client.get(f"/w/{code}")
            match = CSRF_RE.search(page.text)
            if page.status_code != 200 or match is None:
                raise SystemExit(f"GET /w/{code} answered {page.status_code}")
            cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
            body = urlencode(
                {"csrf": match.group(1), f"a.{unit}.overall": "satisfied", "comment": ""}
            ).encode()
            out.append((f"/w/{code}", cookie, body))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=20, help="concurrent connections (1–200)")
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per target (≤ 5000)")
    args = parser.parse_args()
    if not 1 <= args.connections <= 200 or not 1 <= args.requests <= 5000:
        parser.error("keep --connections within 1–200 and --requests within 1–5000")
    warm = min(100, args.requests // 4)
    with tempfile.TemporaryDirectory(prefix="collect-bench-window-") as tmp:
        env, posters = prepare(Path(tmp))
        results: dict[str, Result] = {}
        prepared: list[tuple[str, str, bytes]] = []

        def make(offset: int) -> Any:
            def request(slot: int, n: int) -> tuple[str, str, dict[str, str], bytes]:
                path, cookie, body = prepared[offset + n]
                headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
                return "POST", path, headers, body

            return request

        # The real app first: its pages hand out the phones' cookies and tokens, which the
        # baseline then receives too (the same requests, byte for byte).
        for name, target, ready in (
            ("POST /w/{code}", "bench.window:window_app_from_env", "/healthz"),
            ("bare Starlette form+page", "bench.window:baseline_app", f"/w/{posters[0][0]}"),
        ):
            server = Server(target, env)
            try:
                server.wait_ready(ready)
                if not prepared:
                    prepared.extend(phones(server.url, posters, warm + args.requests))
                # Warm-up on the first phones, measured run on the others: each rates once.
                run_loop(load("warm-up", server.url, warm, min(args.connections, 10), make(0)))
                results[name] = run_loop(load(name, server.url, args.requests, args.connections, make(warm)))
            finally:
                server.stop()
    print(
        f"uvicorn, 1 worker, SQLite file, loopback; {args.connections} connections; {args.requests} requests"
    )
    real, baseline = results["POST /w/{code}"], results["bare Starlette form+page"]
    for result in (baseline, real):
        print(result.line())
    print(f"ratio window/baseline: {real.rate / baseline.rate:.2f} (target ≥ 0.5)")


if __name__ == "__main__":
    main()
