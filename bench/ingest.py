"""
Bench: `POST /api/v1/ballots` against a bare Starlette hello route, both under uvicorn (one
worker, SQLite file, loopback only), driven by an asyncio load loop speaking raw HTTP/1.1
keep-alive (an httpx loop tops out below the server's hello rate, so it would measure itself).

    .venv/bin/python bench/ingest.py [--connections 100] [--requests 4000] [--units 1]

Each ballot comes from a distinct respondent (a transaction on an open tier), with an
Idempotency-Key, as a rating device sends it. Each connection has its own API key (a device),
so the per-key rate limit is exercised, not hit. Prints both rates, their ratio (target ≥ 0.6)
and p50/p99 latency. The client shares the machine with the server; `--wrk` adds wrk's hello
figure when wrk is installed, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

SECRET = "bench-only-secret-key-0123456789abcdef"


def hello_app() -> Starlette:
    """The baseline: the least a Starlette route can do."""

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello)])


def prepare(directory: Path, keys: int, url: str | None = None) -> tuple[dict[str, str], str, list[str]]:
    """
    A migrated database (a SQLite file, or `url`: an empty PostgreSQL database) with a campaign
    open now (with an open tier), and API keys.
    """
    from collect.access import create_api_key
    from collect.campaign import CampaignSpec, load_campaign_file
    from collect.settings import Settings
    from collect.store import Store
    from collect.store.campaigns import save_campaign
    from collect.store.migrate import upgrade

    url = url or f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    env = {
        "COLLECT_DATABASE_URL": url,
        "COLLECT_SECRET_KEY": SECRET,
        "COLLECT_PUBLIC_URL": "http://127.0.0.1",
    }
    store = Store(Settings(database_url=url, secret_key=SECRET))
    data: dict[str, Any] = load_campaign_file(
        str(ROOT / "collect" / "examples" / "branch-office.toml")
    ).model_dump(mode="json")
    now = datetime.now(UTC)
    data.update(
        code="bench",
        opens_at=(now - timedelta(days=1)).isoformat(),
        closes_at=(now + timedelta(days=30)).isoformat(),
    )
    data["tiers"] = [*data["tiers"], {"code": "public", "zh": "社会公众", "weight": 0.0, "source": "open"}]
    spec = CampaignSpec.model_validate(data)
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="bench")
    api_keys = [create_api_key(store, f"device-{i}", actor="bench") for i in range(keys)]
    store.dispose()
    return env, spec.units[0].code, api_keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn in a subprocess on loopback (one worker unless told); stopped on exit."""

    def __init__(self, target: str, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                target,
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
                "--app-dir",
                str(ROOT),
            ],
            env={**os.environ, **env},
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code < 500:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit("the server did not come up in 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self) -> str:
        codes = ", ".join(f"{k}×{v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.name:<28} {self.rate:8.0f} req/s   p50 {self.pct(0.50):6.1f} ms   "
            f"p99 {self.pct(0.99):6.1f} ms   ({self.requests} requests: {codes})"
        )


class Connection:
    """
    A bare HTTP/1.1 keep-alive connection. httpx tops out near 600 requests/s here (its pool
    serialises under 50 concurrent requests); a load loop slower than the server would measure
    the client, so the loop speaks the few bytes of HTTP it needs itself.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readuntil(b"\r\n")
        length, close = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def load(name: str, url: str, total: int, connections: int, make: Any) -> Result:
    """`connections` loops, each on its own keep-alive connection, until `total` are done."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = iter(range(total))
    host, port = url.removeprefix("http://").split(":")

    async def worker(slot: int) -> None:
        connection = Connection(host, int(port))
        for n in counter:
            method, path, headers, body = make(slot, n)
            started = time.perf_counter()
            try:
                status = await connection.request(method, path, headers, body)
            except (OSError, asyncio.IncompleteReadError):
                # Counted as status 0 and reported: a dropped connection is a failed request.
                statuses[0] += 1
                await connection.close()
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    return Result(name, total, time.perf_counter() - started, latencies, statuses)


def run_loop(coroutine: Any) -> Result:
    """uvloop when installed (uvicorn[standard] brings it): the client needs every cycle it can get."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[no-any-return]
    return uvloop.run(coroutine)  # type: ignore[no-any-return]


def wrk_hello(url: str, connections: int) -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d5s", "--latency", url + "/"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rate = next((line for line in out.splitlines() if line.startswith("Requests/sec")), "?")
    return f"wrk hello ({connections} conns, 5 s): {rate.split(':')[-1].strip()} req/s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (50–200)")
    parser.add_argument("--requests", type=int, default=4000, help="measured requests per target")
    parser.add_argument("--units", type=int, default=1, help="units rated per ballot")
    parser.add_argument(
        "--wrk", action="store_true", help="also measure the hello route with wrk, if installed"
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers for both servers")
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database (postgresql+psycopg://…) instead of a SQLite file",
    )
    args = parser.parse_args()
    if not 1 <= args.connections <= 1000 or not 1 <= args.requests <= 100_000:
        parser.error("keep --connections within 1–1000 and --requests within 1–100000")

    with tempfile.TemporaryDirectory(prefix="collect-bench-") as tmp:
        env, _first_unit, keys = prepare(Path(tmp), args.connections, args.database_url)
        from collect.campaign import load_campaign_file

        units = [u.code for u in load_campaign_file(str(ROOT / "collect/examples/branch-office.toml")).units][
            : args.units
        ]
        run = secrets.token_hex(3)

        def hello(slot: int, n: int) -> tuple[str, str, dict[str, str], bytes]:
            return "GET", "/", {}, b""

        def ballot(slot: int, n: int) -> tuple[str, str, dict[str, str], bytes]:
            ref = f"{run}-{n}"
            body = {
                "campaign": "bench",
                "source_ref": ref,
                "transaction": f"ticket-{ref}",
                "answers": [{"unit": u, "level": "satisfied"} for u in units],
            }
            headers = {
                "Authorization": f"Bearer {keys[slot]}",
                "Idempotency-Key": ref,
                "Content-Type": "application/json",
            }
            return "POST", "/api/v1/ballots", headers, json.dumps(body).encode()

        results: list[Result] = []
        extra: str | None = None

        def healthz(slot: int, n: int) -> tuple[str, str, dict[str, str], bytes]:
            return "GET", "/healthz", {}, b""

        for name, target, ready, make in (
            ("hello (bare Starlette)", "bench.ingest:hello_app", "/", hello),
            # Our app's middleware and routing with no database work: the ceiling any ballot
            # route of this app could reach, which places the ratio's target in context.
            ("GET /healthz (no database)", "collect.web.app:app_from_env", "/healthz", healthz),
            ("POST /api/v1/ballots", "collect.web.app:app_from_env", "/healthz", ballot),
        ):
            server = Server(target, env, args.workers)
            try:
                server.wait_ready(ready)
                warm = min(500, args.requests // 4)

                def warm_make(slot: int, n: int, make: Any = make) -> tuple[str, str, dict[str, str], bytes]:
                    return make(slot, n + 10**7)  # type: ignore[no-any-return]  # refs of their own

                run_loop(load("warm-up", server.url, warm, min(args.connections, 20), warm_make))
                results.append(run_loop(load(name, server.url, args.requests, args.connections, make)))
                if args.wrk and make is hello:
                    extra = wrk_hello(server.url, args.connections)
            finally:
                server.stop()

    print(
        f"uvicorn, {args.workers} worker(s), {'PostgreSQL' if args.database_url else 'SQLite file'}, "
        "loopback; "
        f"{args.connections} connections; asyncio client; "
        f"{args.units} unit(s) per ballot"
    )
    for result in results:
        print(result.line())
    hello_result, healthz_result, api_result = results
    print(f"ratio api/hello: {api_result.rate / hello_result.rate:.2f} (target ≥ 0.6)")
    print(
        f"ratio healthz/hello: {healthz_result.rate / hello_result.rate:.2f} (the app's own ceiling); "
        f"api/healthz: {api_result.rate / healthz_result.rate:.2f}"
    )
    if extra:
        print(extra)
    if any(code >= 400 for code in api_result.statuses):
        print(f"warning: some ballots were refused: {dict(api_result.statuses)}")
    mean = statistics.fmean(api_result.latencies) * 1000
    print(f"(API latency mean {mean:.1f} ms)")


if __name__ == "__main__":
    main()
