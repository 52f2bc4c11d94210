"""
The one SMS fake, at Twilio's HTTP client (style.md), and shared setup for the SMS tests:
campaigns cut to a few units, respondents with phones, webhooks signed with Twilio's algorithm.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
import twilio.http
import twilio.http.response
from starlette.applications import Starlette
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from collect.campaign import CampaignSpec
from collect.settings import Settings
from collect.store import Store
from collect.store.tables import SMS_INBOUND, SUBMISSION
from collect.web import sms as sms_routes
from collect.web.app import create_app
from tests.conftest import TEST_SECRET
from tests.store.factories import add_contact, add_respondent, save

AUTH_TOKEN = "test-twilio-auth-token"
ACCOUNT_SID = "AC" + "0" * 32
SERVICE_SID = "MG" + "1" * 32
PUBLIC_URL = "https://collect.example.gov.cn"
DURING = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
AFTER_CLOSE = datetime(2027, 1, 5, tzinfo=UTC)
PHONES = ["+8613975318642", "+8618602497135", "+8615866429371", "+8617730586214"]


@dataclass
class Canned:
    status: int
    body: dict[str, Any]


class FakeTwilioHttp(twilio.http.HttpClient):
    """Records every request; answers from `script` first (429, 5xx, 21610…), then 201 queued."""

    def __init__(self, script: list[Canned | Exception] | None = None) -> None:
        super().__init__(logging.getLogger("fake-twilio"), is_async=False)
        self.sent: list[dict[str, Any]] = []
        self.script = list(script or [])

    def request(self, method: str, uri: str, *args: Any, **kwargs: Any) -> twilio.http.response.Response:
        self.sent.append({"method": method, "uri": uri, **kwargs})
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return twilio.http.response.Response(step.status, json.dumps(step.body))
        sid = f"SM{len(self.sent):032x}"
        return twilio.http.response.Response(201, json.dumps({"sid": sid, "status": "queued"}))

    @property
    def bodies(self) -> list[str]:
        return [str(r["data"]["Body"]) for r in self.sent]

    @property
    def recipients(self) -> list[str]:
        return [str(r["data"]["To"]) for r in self.sent]


def error(status: int, code: int) -> Canned:
    return Canned(status, {"code": code, "message": f"error {code}", "status": status})


def client_with(http: FakeTwilioHttp) -> Client:
    return Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)  # type: ignore[no-untyped-call]


def sms_settings(store: Store) -> Settings:
    return Settings(
        database_url=store.settings.database_url,
        secret_key=TEST_SECRET,
        public_url=PUBLIC_URL,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID,
    )


def sms_store(store: Store) -> Store:
    """The test store reopened with Twilio settings (same database)."""
    return Store(sms_settings(store))


def small_spec(base: CampaignSpec, *, units: int = 3, **changes: Any) -> CampaignSpec:
    """The branch-office campaign cut to `units` units under a fresh code; `changes` override."""
    data: dict[str, Any] = base.model_dump(mode="json")
    data["code"] = f"s-{secrets.token_hex(4)}"
    data["units"] = data["units"][:units]
    data.update(changes)
    return CampaignSpec.model_validate(data)


@dataclass
class People:
    spec: CampaignSpec
    campaign_id: int
    ids: dict[str, int] = field(default_factory=dict)  # roster id → respondent id


def load_people(
    store: Store, spec: CampaignSpec, phones: dict[str, str | None], tier: str = "leaders"
) -> People:
    """Save the campaign and put each roster id on `tier`, with its phone (contact row) if any."""
    people = People(spec, save(store, spec))
    for roster_id, phone in phones.items():
        respondent = add_respondent(store, spec, roster_id, tier, phone=phone)
        if phone is not None:
            add_contact(store, respondent, phone)
        people.ids[roster_id] = respondent
    return people


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    validator = RequestValidator(token)  # type: ignore[no-untyped-call]
    return str(validator.compute_signature(url, params))  # type: ignore[no-untyped-call]


def inbound_form(sid: str, phone: str, body: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "MessagingServiceSid": SERVICE_SID,
        "From": phone,
        "To": "+8610690000",
        "Body": body,
        "NumMedia": "0",
        "FromCity": "HANGZHOU",
    }


def sms_app(store: Store, clock: Any) -> Starlette:
    """The real app, with the SMS routes added if the lead has not wired them into create_app yet."""
    app = create_app(store.settings, store, clock=clock)
    if not any(getattr(r, "path", None) == "/sms/twilio" for r in app.router.routes):
        app.router.routes.extend(sms_routes.routes)
    return app


@dataclass
class Clock:
    now: datetime = DURING

    def __call__(self) -> datetime:
        return self.now


class Phone:
    """A citizen's phone texting the app: signed posts, fresh MessageSids."""

    def __init__(self, client: TestClient, number: str) -> None:
        self.client, self.number, self.count = client, number, 0

    def text(self, body: str, *, sid: str | None = None) -> Any:
        self.count += 1
        sid = sid or f"SM{secrets.token_hex(16)}"
        form = inbound_form(sid, self.number, body)
        url = PUBLIC_URL + "/sms/twilio"
        return self.client.post("/sms/twilio", data=form, headers={"X-Twilio-Signature": sign(url, form)})


def reply_text(response: Any) -> str:
    """The text inside the TwiML <Message>, or "" for an empty <Response/>."""
    body = str(response.text)
    start = body.find("<Message>")
    return "" if start < 0 else body[start + len("<Message>") : body.find("</Message>")]


def inbound_rows(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(SMS_INBOUND).order_by(SMS_INBOUND.c.id)))


def submissions(store: Store, campaign: str) -> list[Any]:
    with store.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(SUBMISSION).where(SUBMISSION.c.campaign_code == campaign).order_by(SUBMISSION.c.id)
            )
        )


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_the_fake_replays_its_script_then_queues() -> None:
    http = FakeTwilioHttp([error(429, 20429)])
    first = http.request("POST", "https://api.twilio.com/x", data={"To": "+1", "Body": "b"})
    second = http.request("POST", "https://api.twilio.com/x", data={"To": "+1", "Body": "b"})
    assert (first.status_code, second.status_code) == (429, 201)
    assert http.recipients == ["+1", "+1"]


def test_signatures_are_twilios() -> None:
    params = {"Body": "1", "From": PHONES[0]}
    url = PUBLIC_URL + "/sms/twilio"
    validator = RequestValidator(AUTH_TOKEN)  # type: ignore[no-untyped-call]
    assert validator.validate(url, params, sign(url, params))  # type: ignore[no-untyped-call]
    assert not validator.validate(url, {**params, "Body": "5"}, sign(url, params))  # type: ignore[no-untyped-call]


def iter_sent_to(http: FakeTwilioHttp, phone: str) -> Iterator[str]:
    return (body for to, body in zip(http.recipients, http.bodies, strict=True) if to == phone)
