"""`collect sms invite|status` as the console script runs them: exit codes, output, resumability."""

from __future__ import annotations

import json

import pytest
from twilio.http import HttpClient

import collect.cli.sms as sms_cli
from collect.campaign import CampaignSpec
from collect.cli import cli
from collect.store import Store
from tests.channels.test_sms_fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PHONES,
    SERVICE_SID,
    FakeTwilioHttp,
    error,
    load_people,
    small_spec,
)
from tests.cli.helpers import CliResult, invoke

NOW = "2026-09-01T10:00:00+08:00"
TWILIO = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_MESSAGING_SERVICE_SID": SERVICE_SID,
}


@pytest.fixture(autouse=True)
def _sms_commands() -> None:
    # Until the lead adds `sms` to load_commands(), importing the module registers the group.
    assert "sms" in cli.commands


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> FakeTwilioHttp:
    fake = FakeTwilioHttp()

    def factory() -> HttpClient:
        return fake

    # The CLI's one documented seam for Twilio's HTTP client.
    monkeypatch.setattr(sms_cli, "http_client_factory", factory)
    return fake


def sms(store: Store, *args: str, **env: str) -> CliResult:
    when = ["--now", NOW] if args[0] == "invite" else []
    return invoke(["sms", *args, *when], url=store.settings.database_url, **{**TWILIO, **env})


def campaign(store: Store, branch_spec: CampaignSpec) -> str:
    spec = small_spec(branch_spec)
    load_people(store, spec, {"L1": PHONES[0], "L2": PHONES[1], "L3": None})
    return spec.code


def test_invite_texts_once_and_reruns_send_nothing(
    store: Store, branch_spec: CampaignSpec, http: FakeTwilioHttp
) -> None:
    code = campaign(store, branch_spec)
    first = sms(store, "invite", code, "--rate", "100/s")
    assert first.code == 0, first.stderr
    assert f"{code}: invited 2" in first.stdout
    assert http.recipients == [PHONES[0], PHONES[1]]
    again = sms(store, "invite", code, "--json")
    assert again.code == 0
    assert json.loads(again.stdout)["already_sent"] == 2
    assert len(http.sent) == 2
    status = sms(store, "status", code, "--json")
    assert json.loads(status.stdout)["delivery"] == {"queued": 2}


def test_dry_run_sends_nothing(store: Store, branch_spec: CampaignSpec, http: FakeTwilioHttp) -> None:
    code = campaign(store, branch_spec)
    result = sms(store, "invite", code, "--dry-run")
    assert result.code == 0
    assert "would invite 2" in result.stdout
    assert http.sent == []


def test_twilio_unreachable_exits_3(store: Store, branch_spec: CampaignSpec, http: FakeTwilioHttp) -> None:
    code = campaign(store, branch_spec)
    http.script = [error(503, 20503)] * 5
    result = sms(store, "invite", code, "--retry-base", "0")
    assert result.code == 3
    assert "unreachable" in result.stderr
    assert sms(store, "invite", code).code == 0  # Twilio is back: the run picks up
    assert http.recipients[-2:] == [PHONES[0], PHONES[1]]


def test_refused_numbers_exit_1_with_the_error_code(
    store: Store, branch_spec: CampaignSpec, http: FakeTwilioHttp
) -> None:
    code = campaign(store, branch_spec)
    http.script = [error(400, 21211)]
    result = sms(store, "invite", code)
    assert result.code == 1
    assert "error 21211" in result.stderr


def test_without_twilio_settings_exit_2(
    store: Store, branch_spec: CampaignSpec, http: FakeTwilioHttp
) -> None:
    code = campaign(store, branch_spec)
    result = invoke(["sms", "invite", code, "--now", NOW], url=store.settings.database_url)
    assert result.code == 2
    assert "TWILIO_ACCOUNT_SID" in result.stderr
    assert http.sent == []


def test_bad_rate_and_unknown_campaign_exit_2(store: Store, http: FakeTwilioHttp) -> None:
    assert sms(store, "invite", "nope", "--rate", "fast").code == 2
    unknown = sms(store, "invite", "nope")
    assert unknown.code == 2
    assert "does not exist" in unknown.stderr
