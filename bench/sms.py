"""
Bench: signed `POST /sms/twilio` replies through the real app (signature check, routing, the
conversation, ingest(), TwiML) against a bare Starlette route that parses the same form and
answers a fixed TwiML; both under uvicorn, one worker, SQLite file, loopback only.

    .venv/bin/python bench/sms.py [--connections 20] [--requests 1000]

Each request is a distinct invited respondent answering their one question ("1"), signed
with Twilio's algorithm against COLLECT_PUBLIC_URL + path, as Twilio sends it. Prints both
rates and their ratio. Bounded: at most 5000 requests and 200 connections.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from bench.ingest import Result, Server, load, run_loop  # noqa: E402

SECRET = "bench-only-secret-key-0123456789abcdef"
AUTH_TOKEN = "bench-twilio-auth-token"
PUBLIC_URL = "http://127.0.0.1"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'


def baseline_app() -> Starlette:
    """The least a Twilio webhook can do: read the form, answer TwiML."""

    async def webhook(request: Request) -> Response:
        async with request.form() as form:
            _ = form.get("Body")
        return Response(TWIML, media_type="application/xml")

    return Starlette(routes=[Route("/sms/twilio", webhook, methods=["POST"])])


def sms_app_from_env() -> Starlette:
    """The real app, with the SMS routes added until create_app lists them itself."""
    from collect.settings import Settings
    from collect.web import sms
    from collect.web.app import create_app

    app = create_app(Settings())
    if not any(getattr(r, "path", None) == "/sms/twilio" for r in app.router.routes):
        app.router.routes.extend(sms.routes)
    return app


def prepare(directory: Path, respondents: int) -> tuple[dict[str, str], list[str]]:
    """A migrated SQLite file with an SMS campaign open now (one unit) and invited respondents."""
    import sqlalchemy as sa

    from collect.campaign import CampaignSpec, load_campaign_file
    from collect.dedupe.keys import keyed_hash
    from collect.settings import Settings
    from collect.store import Store
    from collect.store.campaigns import save_campaign
    from collect.store.migrate import upgrade
    from collect.store.tables import CAMPAIGN, CONTACT, RESPONDENT

    url = f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    env = {
        "COLLECT_DATABASE_URL": url,
        "COLLECT_SECRET_KEY": SECRET,
        "COLLECT_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    store = Store(Settings(database_url=url, secret_key=SECRET))
    data: dict[str, Any] = load_campaign_file(
        str(ROOT / "collect" / "examples" / "branch-office.toml")
    ).model_dump(mode="json")
    now = datetime.now(UTC)
    data.update(
        code="bench-sms",
        units=data["units"][:1],
        opens_at=(now - timedelta(days=1)).isoformat(),
        closes_at=(now + timedelta(days=30)).isoformat(),
    )
    spec = CampaignSpec.model_validate(data)
    phones = [f"+86139{i:08d}" for i in range(respondents)]
    secret = store.settings.secret()
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="bench")
        campaign_id = connection.execute(
            sa.select(CAMPAIGN.c.id).where(CAMPAIGN.c.code == spec.code)
        ).scalar_one()
        for i, phone in enumerate(phones):
            respondent = connection.execute(
                sa.insert(RESPONDENT)
                .values(
                    campaign_id=campaign_id,
                    tier_code="leaders",
                    key=keyed_hash(secret, spec.code, "roster_id", f"R{i}"),
                    phone_key=keyed_hash(secret, spec.code, "phone", phone),
                    in_sample=True,
                    created_at=now,
                )
                .returning(RESPONDENT.c.id)
            ).scalar_one()
            connection.execute(sa.insert(CONTACT).values(respondent_id=respondent, kind="phone", value=phone))
    store.dispose()
    return env, phones


def signed(phone: str, sid: str) -> tuple[dict[str, str], bytes]:
    from twilio.request_validator import RequestValidator

    form = {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": phone, "To": "+8610690000", "Body": "1"}
    validator = RequestValidator(AUTH_TOKEN)  # type: ignore[no-untyped-call]
    signature = validator.compute_signature(PUBLIC_URL + "/sms/twilio", form)  # type: ignore[no-untyped-call]
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": str(signature)}
    return headers, urlencode(form).encode()


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
    with tempfile.TemporaryDirectory(prefix="collect-bench-sms-") as tmp:
        env, phones = prepare(Path(tmp), args.requests + warm)
        run = secrets.token_hex(4)
        bodies = [signed(phone, f"SM{run}{i:024x}") for i, phone in enumerate(phones)]

        def make(offset: int) -> Any:
            def request(slot: int, n: int) -> tuple[str, str, dict[str, str], bytes]:
                headers, body = bodies[offset + n]
                return "POST", "/sms/twilio", headers, body

            return request

        results: list[Result] = []
        for name, target, ready in (
            ("bare Starlette form+TwiML", "bench.sms:baseline_app", None),
            ("POST /sms/twilio (signed)", "bench.sms:sms_app_from_env", "/healthz"),
        ):
            server = Server(target, env)
            try:
                server.wait_ready(ready or "/sms/twilio")
                # Warm-up on the first respondents, measured run on the others: each answers once.
                run_loop(load("warm-up", server.url, warm, min(args.connections, 10), make(0)))
                results.append(run_loop(load(name, server.url, args.requests, args.connections, make(warm))))
            finally:
                server.stop()
    print(
        f"uvicorn, 1 worker, SQLite file, loopback; {args.connections} connections; {args.requests} requests"
    )
    for result in results:
        print(result.line())
    baseline, real = results
    print(f"ratio sms/baseline: {real.rate / baseline.rate:.2f}")


if __name__ == "__main__":
    main()
