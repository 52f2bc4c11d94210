"""The window adapter and its pure helpers: tickets, answers, service hours, deadlines, networks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collect.ballot import BallotSubmission, Rejection
from collect.campaign import CampaignSpec, load_campaign_file
from collect.channels.base import REDACTED
from collect.channels.window import (
    POSTER_CODE_RE,
    Hours,
    Ticket,
    WindowAdapter,
    WindowForm,
    add_working_days,
    device_day_transaction,
    low_answers,
    network_key,
    network_of,
    new_poster_code,
    sign_ticket,
    ticket_key,
    top_answer,
    verify_ticket,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "collect" / "examples"
KEY = ticket_key(b"test-secret")
NOW = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Tuesday
DAY = timedelta(hours=24)


@pytest.fixture
def spec() -> CampaignSpec:
    return load_campaign_file(str(EXAMPLES / "service-windows.toml"))


def test_a_ticket_verifies_until_it_expires() -> None:
    text = sign_ticket(KEY, "SB-01", NOW, timedelta(minutes=30), "A023")
    ticket = verify_ticket(KEY, text, NOW + timedelta(minutes=29), DAY)
    assert isinstance(ticket, Ticket)
    assert (ticket.window, ticket.ref, ticket.expires_at) == ("SB-01", "A023", NOW + timedelta(minutes=30))
    assert verify_ticket(KEY, text, NOW + timedelta(minutes=31), DAY) == "expired"


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda t: t.replace("SB-01", "SB-02", 1), "bad_signature"),  # another window, same signature
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "bad_signature"),
        (lambda t: t.replace("~30~", "~600~"), "bad_signature"),  # a longer life, unsigned
        (lambda t: t.rpartition("~")[0], "malformed"),
        (lambda t: "x" * 200, "malformed"),
        (lambda t: "", "malformed"),
    ],
)
def test_a_forged_ticket_is_refused(mangle: object, expected: str) -> None:
    text = sign_ticket(KEY, "SB-01", NOW, timedelta(minutes=30), "A023")
    assert callable(mangle)
    assert verify_ticket(KEY, mangle(text), NOW, DAY) == expected


def test_another_key_or_the_master_secret_does_not_verify() -> None:
    text = sign_ticket(KEY, "SB-01", NOW, timedelta(minutes=30))
    assert verify_ticket(ticket_key(b"other"), text, NOW, DAY) == "bad_signature"
    # The integrator's key is derived: the master secret itself does not sign tickets.
    assert verify_ticket(b"test-secret", text, NOW, DAY) == "bad_signature"


def test_ticket_times_are_bounded() -> None:
    early = sign_ticket(KEY, "SB-01", NOW + timedelta(minutes=10), timedelta(minutes=30))
    assert verify_ticket(KEY, early, NOW, DAY) == "not_yet_valid"
    skewed = sign_ticket(KEY, "SB-01", NOW + timedelta(minutes=3), timedelta(minutes=30))
    assert isinstance(verify_ticket(KEY, skewed, NOW, DAY), Ticket)  # clock skew is tolerated
    week = sign_ticket(KEY, "SB-01", NOW, timedelta(days=7))
    assert verify_ticket(KEY, week, NOW, DAY) == "too_long_valid"


def test_ticket_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="window code"):
        sign_ticket(KEY, "SB~01", NOW, DAY)
    with pytest.raises(ValueError, match="reference"):
        sign_ticket(KEY, "SB-01", NOW, DAY, "A 23")
    with pytest.raises(ValueError, match="one minute"):
        sign_ticket(KEY, "SB-01", NOW, timedelta(seconds=30))


def test_integrators_recipe_matches() -> None:
    """The three lines docs/window.md gives integrators make a ticket the server accepts."""
    import base64
    import hashlib
    import hmac

    payload = f"SB-01~{int(NOW.timestamp())}~120~Q0042"
    sig = base64.urlsafe_b64encode(hmac.new(KEY, payload.encode(), hashlib.sha256).digest()).decode()[:24]
    ticket = verify_ticket(KEY, f"{payload}~{sig}", NOW, DAY)
    assert isinstance(ticket, Ticket)
    assert ticket.ref == "Q0042"


def test_poster_codes_are_random_and_short() -> None:
    codes = {new_poster_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(POSTER_CODE_RE.match(c) for c in codes)


def form(spec: CampaignSpec, **fields: str) -> WindowForm:
    return WindowForm(
        via="poster",
        window="SB-01",
        unit="SB",
        poster="abcdefghjk",
        staff=None,
        transaction=device_day_transaction("SB-01", NOW.date(), "device-1"),
        form_id="f1",
        fields=fields,
        received_at=NOW + timedelta(seconds=42),
        tier="public",
    )


def test_a_rating_becomes_a_ballot_with_its_channel_facts(spec: CampaignSpec) -> None:
    raw = form(
        spec,
        **{"a.SB.overall": "not_satisfied", "comment": " 排队太久 ", "csrf": "t", "phone": "13800138000"},
    )
    (item,) = WindowAdapter().parse(raw, spec)
    assert isinstance(item, BallotSubmission)
    assert item.channel == "window_qr"
    assert item.identity is not None
    assert item.identity.kind == "transaction"
    assert item.answers[0].level == "not_satisfied"
    assert item.comment == "排队太久"
    assert item.meta == {"via": "poster", "window": "SB-01", "poster": "abcdefghjk"}
    assert item.tier == "public"
    assert item.answered_at == NOW  # to the minute: a double tap is the same submission
    # A phone number is never kept with a ballot, even when a client sends one.
    assert "phone" not in item.raw
    assert item.raw["csrf"] == REDACTED


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "required"),
        ({"a.SB.overall": "great"}, "unknown_level"),
        ({"a.SB.overall": "satisfied", "comment": "长" * 1001}, "too_long"),
    ],
)
def test_a_bad_rating_is_a_rejection(spec: CampaignSpec, fields: dict[str, str], code: str) -> None:
    (item,) = WindowAdapter().parse(form(spec, **fields), spec)
    assert isinstance(item, Rejection)
    assert code in {p.code for p in item.problems}
    assert item.source_ref == "poster-f1"


def test_top_and_low_answers(spec: CampaignSpec) -> None:
    assert top_answer(spec.scale) == "very_satisfied"
    assert low_answers(spec.scale) == {"not_satisfied", "very_dissatisfied"}
    points = spec.model_copy(update={"scale": spec.scale.model_copy(update={"kind": "points", "levels": ()})})
    assert top_answer(points.scale) == "10"
    assert low_answers(points.scale) == {"0", "1"}


def test_service_hours(spec: CampaignSpec) -> None:
    hours = Hours.parse("08:30-17:30")
    shanghai = timedelta(hours=8)
    assert hours.admits(spec, datetime(2026, 9, 1, 8, 30, tzinfo=UTC) - shanghai)
    assert hours.admits(spec, datetime(2026, 9, 1, 18, 29, tzinfo=UTC) - shanghai)  # an hour's grace
    assert not hours.admits(spec, datetime(2026, 9, 1, 18, 31, tzinfo=UTC) - shanghai)
    assert not hours.admits(spec, datetime(2026, 9, 1, 3, 0, tzinfo=UTC) - shanghai)
    for bad in ("8-17", "17:00-08:00", "25:00-26:00"):
        with pytest.raises(ValueError, match=r"HH:MM|before"):
            Hours.parse(bad)


def test_deadlines_count_working_days(spec: CampaignSpec) -> None:
    friday = datetime(2026, 9, 4, 8, 0, tzinfo=UTC)  # 16:00 Friday in Shanghai
    assert add_working_days(spec, friday, 1).astimezone(UTC) == datetime(2026, 9, 7, 8, 0, tzinfo=UTC)
    assert add_working_days(spec, friday, 15).astimezone(UTC) == datetime(2026, 9, 25, 8, 0, tzinfo=UTC)
    saturday = datetime(2026, 9, 5, 2, 0, tzinfo=UTC)
    assert add_working_days(spec, saturday, 1).astimezone(UTC) == datetime(2026, 9, 7, 2, 0, tzinfo=UTC)


def test_networks_are_trimmed_and_keyed() -> None:
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_of("testclient") is None
    key = network_key(b"s", "203.0.113.0/24", NOW.date())
    assert "203" not in key
    assert len(key) == 16
    # A new key every day: the log cannot follow a network from one day to the next.
    assert key != network_key(b"s", "203.0.113.0/24", NOW.date() + timedelta(days=1))
