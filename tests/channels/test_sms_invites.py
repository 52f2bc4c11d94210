"""
Invitations and reminders through the real twilio Client with a fake HTTP client: rate,
retries (429/5xx only), 21610 final, resumable runs, reminders, opt-outs, no number kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from collect.campaign import CampaignSpec
from collect.invites import (
    InviteOptions,
    InviteReport,
    TwilioUnreachable,
    handle_inbound,
    number_key,
    record_status,
    send_invites,
)
from collect.store import Store
from collect.store.tables import SMS_MESSAGE, SMS_OPT_OUT
from tests.channels.test_sms_fakes import (
    DURING,
    PHONES,
    SERVICE_SID,
    FakeTwilioHttp,
    client_with,
    error,
    inbound_form,
    load_people,
    small_spec,
    sms_store,
)
from tests.test_privacy import _runs


@pytest.fixture
def s_store(store: Store) -> Iterator[Store]:
    reopened = sms_store(store)
    yield reopened
    reopened.dispose()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def run(
    store: Store, code: str, http: FakeTwilioHttp, clock: FakeTime | None = None, **options: object
) -> InviteReport:
    clock = clock or FakeTime()
    now = options.pop("now", DURING)
    opts = InviteOptions(sender=SERVICE_SID, **options)  # type: ignore[arg-type]
    return send_invites(
        store,
        code,
        client_with(http),
        opts,
        now=now,  # type: ignore[arg-type]
        actor="test",
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        jitter=lambda: 1.0,
    )


def statuses(store: Store) -> list[tuple[int, str, int | None]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(SMS_MESSAGE.c.round, SMS_MESSAGE.c.status, SMS_MESSAGE.c.error_code).order_by(
                SMS_MESSAGE.c.id
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def test_invites_the_sampled_with_a_phone_once(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0], "L2": None, "L3": PHONES[1]})
    http = FakeTwilioHttp()
    report = run(s_store, spec.code, http, rate=2.0)
    assert http.recipients == [PHONES[0], PHONES[1]]
    data = http.sent[0]["data"]
    assert data["MessagingServiceSid"] == SERVICE_SID
    assert "第1/3题" in data["Body"]
    assert report.invited == 2
    again = run(s_store, spec.code, http, rate=2.0)
    assert len(http.sent) == 2  # resumable: a re-run sends nothing twice
    assert again.already_sent == 2


def test_the_send_rate_spaces_messages(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {f"L{i}": p for i, p in enumerate(PHONES)})
    clock = FakeTime()
    run(s_store, spec.code, FakeTwilioHttp(), clock, rate=2.0)
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5])  # four messages at 2/s


def test_429_and_5xx_are_retried_with_backoff(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    http = FakeTwilioHttp([error(429, 20429), error(503, 20503), requests.ConnectionError("reset")])
    clock = FakeTime()
    report = run(s_store, spec.code, http, clock, rate=0, retry_base=1.0)
    assert len(http.sent) == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]  # doubling (jitter pinned to its top)
    assert report.invited == 1
    assert statuses(s_store) == [(0, "queued", None)]


def test_other_4xx_are_final_and_not_retried(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    http = FakeTwilioHttp([error(400, 21211)])
    report = run(s_store, spec.code, http, rate=0)
    assert len(http.sent) == 1
    assert report.refused == {"21211": 1}
    assert statuses(s_store) == [(0, "error", 21211)]
    run(s_store, spec.code, http, rate=0, reminders=True, now=DURING + timedelta(days=9))
    assert len(http.sent) == 1  # no reminder to a number Twilio refused


def test_21610_records_the_opt_out_and_is_final(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    http = FakeTwilioHttp([error(400, 21610)])
    report = run(s_store, spec.code, http, rate=0)
    assert report.opted_out == 1
    other = small_spec(branch_spec)  # another campaign, same number: not texted either
    load_people(s_store, other, {"X1": PHONES[0]})
    run(s_store, other.code, http, rate=0)
    assert len(http.sent) == 1


def test_twilio_down_stops_the_run_and_a_rerun_resumes(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0], "L2": PHONES[1]})
    http = FakeTwilioHttp([error(500, 20500)] * 3)
    with pytest.raises(TwilioUnreachable):
        run(s_store, spec.code, http, rate=0, max_attempts=3)
    assert statuses(s_store) == []  # the claim is released: nothing reached Twilio
    run(s_store, spec.code, http, rate=0)
    assert http.recipients == [PHONES[0]] * 3 + [PHONES[0], PHONES[1]]


def test_stop_then_an_invite_run_sends_nothing(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    result = handle_inbound(s_store, inbound_form("SM" + "e" * 32, PHONES[0], "退订"), now=DURING)
    assert result.kind == "stop"
    assert result.reply is not None
    http = FakeTwilioHttp()
    report = run(s_store, spec.code, http, rate=0)
    assert http.sent == []
    assert report.opted_out == 1
    handle_inbound(s_store, inbound_form("SM" + "f" * 32, PHONES[0], "START"), now=DURING)
    run(s_store, spec.code, http, rate=0)
    assert http.recipients == [PHONES[0]]  # opted back in


def test_reminders_after_n_days_at_most_m(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    http = FakeTwilioHttp()
    run(s_store, spec.code, http, rate=0)
    for days in (1, 3, 4, 6, 8, 20):
        run(
            s_store,
            spec.code,
            http,
            rate=0,
            reminders=True,
            max_reminders=2,
            now=DURING + timedelta(days=days),
        )
    # Invitation on day 0, reminders on day 3 and day 6; none after the second.
    assert len(http.bodies) == 3
    assert "提醒" not in http.bodies[0]
    assert all("提醒" in b for b in http.bodies[1:])
    assert [r for r, _s, _e in statuses(s_store)] == [0, 1, 2]


def test_no_reminder_once_answered(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec, units=1)
    load_people(s_store, spec, {"L1": PHONES[0]})
    http = FakeTwilioHttp()
    run(s_store, spec.code, http, rate=0)
    assert "感谢" in (
        handle_inbound(s_store, inbound_form("SM" + "1" * 32, PHONES[0], "1"), now=DURING).reply or ""
    )
    report = run(s_store, spec.code, http, rate=0, reminders=True, now=DURING + timedelta(days=5))
    assert len(http.sent) == 1
    assert report.answered == 1


def test_too_many_questions_send_the_web_link(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec, units=7)
    load_people(s_store, spec, {"L1": PHONES[0]})
    http = FakeTwilioHttp()
    report = run(s_store, spec.code, http, rate=0, max_questions=5)
    assert report.link_mode == 1
    assert "https://collect.example.gov.cn/b/" in http.bodies[0]
    reply = handle_inbound(s_store, inbound_form("SM" + "2" * 32, PHONES[0], "1"), now=DURING).reply or ""
    assert "链接" in reply
    assert "/b/" in reply


def test_dry_run_sends_and_records_nothing(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0], "L2": PHONES[1]})
    http = FakeTwilioHttp()
    report = run(s_store, spec.code, http, dry_run=True)
    assert report.would_invite == 2
    assert http.sent == []
    assert statuses(s_store) == []


def test_status_callbacks_out_of_order_never_regress(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    run(s_store, spec.code, FakeTwilioHttp(), rate=0)
    sid = "SM" + f"{1:032x}"
    moved = [
        record_status(s_store, {"MessageSid": sid, "MessageStatus": s}, None, DURING)
        for s in ("sent", "delivered", "sent", "queued", "undelivered", "delivered")
    ]
    assert moved == [True, True, False, False, False, False]
    assert statuses(s_store) == [(0, "delivered", None)]
    assert not record_status(s_store, {"MessageSid": "SMunknown", "MessageStatus": "sent"}, None, DURING)


def test_a_callback_before_the_api_answer_finds_its_row(s_store: Store, branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0]})
    run(s_store, spec.code, FakeTwilioHttp(), rate=0)
    with s_store.engine.connect() as connection:
        row_id = connection.execute(sa.select(SMS_MESSAGE.c.id)).scalar_one()
    form = {"MessageSid": "SM" + f"{1:032x}", "MessageStatus": "failed", "ErrorCode": "21610"}
    assert record_status(s_store, form, str(row_id), DURING)
    with s_store.engine.connect() as connection:
        keys = connection.execute(sa.select(SMS_OPT_OUT.c.number_key)).scalars().all()
    assert keys == [number_key(s_store.settings.secret(), PHONES[0])]


def test_no_phone_number_outside_contact_after_a_whole_sms_flow(
    s_store: Store, branch_spec: CampaignSpec
) -> None:
    spec = small_spec(branch_spec)
    load_people(s_store, spec, {"L1": PHONES[0], "L2": PHONES[1]})
    run(s_store, spec.code, FakeTwilioHttp([error(400, 21610)]), rate=0)
    for sid, phone, body in [
        ("SM01", PHONES[1], "1"),
        ("SM02", PHONES[1], "很好"),
        ("SM03", PHONES[1], "2 3"),
        ("SM04", PHONES[2], "1"),  # unknown sender
        ("SM05", PHONES[1], "STOP"),
    ]:
        handle_inbound(s_store, inbound_form(sid, phone, body), now=DURING)
    with s_store.engine.connect() as connection:
        inspector = sa.inspect(connection)
        for table in inspector.get_table_names():
            if table == "contact":
                continue
            reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
            for row in connection.execute(sa.select(reflected)):
                text = repr(tuple(row))
                for phone in PHONES:
                    assert not any(run_ in text for run_ in _runs(phone)), (table, phone)
