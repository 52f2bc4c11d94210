"""
`POST /sms/twilio` and `/sms/twilio/status` through the real app on a real store: signed with
Twilio's algorithm, replies read from the TwiML, ballots checked in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from collect.ballot import Identity
from collect.campaign import CampaignSpec
from collect.ingest import ingest
from collect.invites import InviteOptions, number_key, send_invites
from collect.store import Store
from collect.store.tables import BALLOT, SMS_MESSAGE, SMS_OPT_OUT
from tests.channels.test_sms_fakes import (
    AFTER_CLOSE,
    PHONES,
    PUBLIC_URL,
    Clock,
    FakeTwilioHttp,
    People,
    Phone,
    client_with,
    inbound_form,
    inbound_rows,
    load_people,
    reply_text,
    sign,
    small_spec,
    sms_app,
    sms_store,
    submissions,
)
from tests.store.factories import ballot, issue_token


@pytest.fixture
def s_store(store: Store) -> Iterator[Store]:
    reopened = sms_store(store)
    yield reopened
    reopened.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(s_store: Store, clock: Clock) -> Iterator[TestClient]:
    with TestClient(sms_app(s_store, clock), base_url="https://testserver") as client:
        yield client


def counted(store: Store, campaign_id: int) -> list[tuple[str, str, str]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(BALLOT.c.unit_code, BALLOT.c.channel, BALLOT.c.status)
            .where(BALLOT.c.campaign_id == campaign_id)
            .order_by(BALLOT.c.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def one_unit(s_store: Store, branch_spec: CampaignSpec, **changes: object) -> People:
    return load_people(s_store, small_spec(branch_spec, units=1, **changes), {"L1": PHONES[0]})


@pytest.mark.parametrize(
    ("body", "level"),
    [
        ("1", "satisfied"),
        ("１", "satisfied"),
        (" 2。", "fairly_satisfied"),
        ("【3】", "basically_satisfied"),
        ("比较满意", "fairly_satisfied"),
        ("不满意！", "dissatisfied"),
        ("d", "not_very_satisfied"),
        ("Ｂ", "fairly_satisfied"),
        ("Fairly satisfied", "fairly_satisfied"),
    ],
)
def test_a_reply_in_any_form_is_counted(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient, body: str, level: str
) -> None:
    people = one_unit(s_store, branch_spec)
    response = Phone(client, PHONES[0]).text(body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "感谢您的评价" in reply_text(response)
    assert counted(s_store, people.campaign_id) == [("S01", "sms", "counted")]
    with s_store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT level_code FROM answer")).scalar_one() == level


def test_dont_know_by_zero_or_words(s_store: Store, branch_spec: CampaignSpec, client: TestClient) -> None:
    scale = {**branch_spec.scale.model_dump(mode="json"), "dont_know": True}
    people = one_unit(s_store, branch_spec, scale=scale)
    assert "感谢" in reply_text(Phone(client, PHONES[0]).text("不了解"))
    with s_store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT dont_know FROM answer")).scalar_one()
    assert counted(s_store, people.campaign_id) == [("S01", "sms", "counted")]


def test_a_redelivered_message_sid_adds_nothing_and_gets_the_same_twiml(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = load_people(s_store, small_spec(branch_spec, units=2), {"L1": PHONES[0]})
    phone = Phone(client, PHONES[0])
    first = phone.text("1", sid="SM" + "a" * 32)
    again = phone.text("1", sid="SM" + "a" * 32)
    assert first.status_code == again.status_code == 200
    assert again.text == first.text
    assert "第2/2题" in reply_text(first)  # the conversation moved on once, not twice
    assert counted(s_store, people.campaign_id) == [("S01", "sms", "counted")]
    assert len(submissions(s_store, people.spec.code)) == 1
    rows = inbound_rows(s_store)
    assert [(r.deliveries, r.status) for r in rows] == [(2, "answered")]


def test_a_tampered_body_with_the_old_signature_is_refused_and_kept(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = one_unit(s_store, branch_spec)
    form = inbound_form("SM" + "b" * 32, PHONES[0], "5")
    signature = sign(PUBLIC_URL + "/sms/twilio", form)
    tampered = {**form, "Body": "1"}
    response = client.post("/sms/twilio", data=tampered, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    assert counted(s_store, people.campaign_id) == []
    kept = submissions(s_store, people.spec.code)
    assert [(s.status, s.reason) for s in kept] == [("rejected", "signature")]
    assert kept[0].payload["From"] == "<redacted>"
    assert [(r.status, r.reason, r.verified_sid) for r in inbound_rows(s_store)] == [
        ("rejected", "signature", None)
    ]
    # The genuine delivery of that MessageSid is still taken: the forgery blocked nothing.
    genuine = client.post("/sms/twilio", data=form, headers={"X-Twilio-Signature": signature})
    assert genuine.status_code == 200
    assert counted(s_store, people.campaign_id) == [("S01", "sms", "counted")]


def test_a_missing_signature_is_refused_and_kept(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = one_unit(s_store, branch_spec)
    response = client.post("/sms/twilio", data=inbound_form("SM" + "c" * 32, PHONES[0], "1"))
    assert response.status_code == 403
    assert counted(s_store, people.campaign_id) == []
    assert [(s.status, s.reason) for s in submissions(s_store, people.spec.code)] == [
        ("rejected", "signature")
    ]


def test_a_signature_over_the_request_url_instead_of_public_url_fails(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    # Behind a TLS proxy the app sees http://: only COLLECT_PUBLIC_URL + path is trusted.
    one_unit(s_store, branch_spec)
    form = inbound_form("SM" + "d" * 32, PHONES[0], "1")
    wrong = sign("http://testserver/sms/twilio", form)
    assert client.post("/sms/twilio", data=form, headers={"X-Twilio-Signature": wrong}).status_code == 403


def test_conversation_across_three_units_interrupted_and_resumed(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient, clock: Clock
) -> None:
    people = load_people(s_store, small_spec(branch_spec, units=3), {"L1": PHONES[0]})
    http = FakeTwilioHttp()
    send_invites(
        s_store, people.spec.code, client_with(http), InviteOptions(rate=0), now=clock.now, actor="t"
    )
    assert "第1/3题" in http.bodies[0]
    assert "城东工商所" in http.bodies[0]
    phone = Phone(client, PHONES[0])
    first = reply_text(phone.text("1"))
    assert first.startswith("已记录")
    assert "第2/3题" in first
    assert "城西工商所" in first
    # Interrupted: an unreadable reply and a HELP change nothing, each answered with help.
    unclear = reply_text(phone.text("很好"))
    assert "未能识别" in unclear
    assert "第2/3题" in unclear
    assert "第2/3题" in reply_text(phone.text("帮助"))
    # Days later a reminder asks the question they stopped at.
    clock.now += timedelta(days=4)
    send_invites(
        s_store,
        people.spec.code,
        client_with(http),
        InviteOptions(rate=0, reminders=True),
        now=clock.now,
        actor="t",
    )
    assert "提醒" in http.bodies[1]
    assert "第2/3题" in http.bodies[1]
    # Resumed, the rest in one compact reply.
    last = reply_text(phone.text("2，3"))
    assert "感谢您的评价" in last
    assert counted(s_store, people.campaign_id) == [
        ("S01", "sms", "counted"),
        ("S02", "sms", "counted"),
        ("S03", "sms", "counted"),
    ]
    with s_store.engine.connect() as connection:
        levels = connection.execute(
            sa.text(
                "SELECT b.unit_code, a.level_code FROM answer a"
                " JOIN ballot b ON b.id = a.ballot_id ORDER BY 1"
            )
        ).all()
    assert [tuple(r) for r in levels] == [
        ("S01", "satisfied"),
        ("S02", "fairly_satisfied"),
        ("S03", "basically_satisfied"),
    ]
    assert "已完成" in reply_text(phone.text("1"))  # nothing left to answer
    # The unreadable reply is kept with its reason, never counted.
    reasons = [s.reason for s in submissions(s_store, people.spec.code) if s.status == "rejected"]
    assert reasons == ["unclear_reply", "unclear_reply"]


def test_a_compact_reply_answers_every_unit_at_once(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = load_people(s_store, small_spec(branch_spec, units=3), {"L1": PHONES[0]})
    reply = reply_text(Phone(client, PHONES[0]).text("1 2 1"))
    assert "感谢您的评价" in reply
    assert [u for u, _c, s in counted(s_store, people.campaign_id) if s == "counted"] == ["S01", "S02", "S03"]
    assert len(submissions(s_store, people.spec.code)) == 1  # one reply, one submission


def test_too_many_answers_are_refused_with_help(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = load_people(s_store, small_spec(branch_spec, units=2), {"L1": PHONES[0]})
    reply = reply_text(Phone(client, PHONES[0]).text("1 2 3"))
    assert "您回复了3个答案，但只剩2题" in reply
    assert counted(s_store, people.campaign_id) == []


def test_several_aspects_make_one_ballot_per_unit(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    aspects = [{"code": "style", "zh": "工作作风"}, {"code": "speed", "zh": "办事效率"}]
    people = load_people(s_store, small_spec(branch_spec, units=2, aspects=aspects), {"L1": PHONES[0]})
    phone = Phone(client, PHONES[0])
    first = reply_text(phone.text("1"))
    assert "第2/4题" in first
    assert "办事效率" in first
    assert counted(s_store, people.campaign_id) == []  # S01 is not complete yet
    assert "第3/4题" in reply_text(phone.text("2"))
    assert counted(s_store, people.campaign_id) == [("S01", "sms", "counted")]
    assert "感谢" in reply_text(phone.text("1 1"))
    assert [u for u, _c, _s in counted(s_store, people.campaign_id)] == ["S01", "S02"]


def test_a_reply_after_close_is_kept_with_its_reason_and_answered_politely(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient, clock: Clock
) -> None:
    people = one_unit(s_store, branch_spec)
    clock.now = AFTER_CLOSE
    reply = reply_text(Phone(client, PHONES[0]).text("1"))
    assert "测评已于2026-12-31结束" in reply
    assert counted(s_store, people.campaign_id) == []
    assert [(s.status, s.reason) for s in submissions(s_store, people.spec.code)] == [
        ("rejected", "campaign_closed")
    ]
    assert [(r.kind, r.reason) for r in inbound_rows(s_store)] == [("refused", "campaign_closed")]


def test_an_unknown_sender_is_kept_and_answered_politely(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = one_unit(s_store, branch_spec)
    reply = reply_text(Phone(client, PHONES[3]).text("1"))
    assert "未找到本号码的测评邀请" in reply
    assert counted(s_store, people.campaign_id) == []
    rows = inbound_rows(s_store)
    assert [(r.kind, r.reason) for r in rows] == [("refused", "unknown_sender")]
    assert rows[0].number_key is not None


def test_a_respondent_who_voted_on_the_web_first_is_told_they_already_answered(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = one_unit(s_store, branch_spec)
    token = issue_token(s_store, people.spec, people.ids["L1"])
    web_vote = ballot(people.spec, "form-1", Identity("token", token), level="dissatisfied")
    assert ingest(s_store, web_vote).outcome == "counted"
    reply = reply_text(Phone(client, PHONES[0]).text("1"))
    assert "您已评价过“城东工商所”" in reply
    assert counted(s_store, people.campaign_id) == [("S01", "web", "counted"), ("S01", "sms", "superseded")]


def test_stop_is_recorded_silently_and_tuiding_is_confirmed(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    one_unit(s_store, branch_spec)
    stop = Phone(client, PHONES[0]).text("STOP")
    assert stop.status_code == 200
    assert reply_text(stop) == ""
    assert "<Response" in stop.text
    assert "退订" in reply_text(Phone(client, PHONES[0]).text("退订"))
    secret = s_store.settings.secret()
    with s_store.engine.connect() as connection:
        keys = connection.execute(sa.select(SMS_OPT_OUT.c.number_key)).scalars().all()
    assert keys == [number_key(secret, PHONES[0])]


def test_english_campaigns_answer_in_english(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    load_people(s_store, small_spec(branch_spec, units=2, lang="en"), {"L1": PHONES[0]})
    phone = Phone(client, PHONES[0])
    assert "Q2/2" in reply_text(phone.text("satisfied"))
    assert "Sorry, we could not read" in reply_text(phone.text("great"))
    assert "Thank you" in reply_text(phone.text("e"))


def test_status_callbacks_never_regress(
    s_store: Store, branch_spec: CampaignSpec, client: TestClient
) -> None:
    people = one_unit(s_store, branch_spec)
    http = FakeTwilioHttp()
    send_invites(
        s_store, people.spec.code, client_with(http), InviteOptions(rate=0), now=Clock().now, actor="t"
    )
    callback = str(http.sent[0]["data"]["StatusCallback"])
    assert callback.startswith(PUBLIC_URL + "/sms/twilio/status?m=")
    path = callback[len(PUBLIC_URL) :]
    sid = "SM" + f"{1:032x}"

    def post(status: str) -> int:
        form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1"}
        response = client.post(path, data=form, headers={"X-Twilio-Signature": sign(callback, form)})
        return int(response.status_code)

    assert [post(s) for s in ("delivered", "sent", "queued", "delivered", "failed")] == [204] * 5
    with s_store.engine.connect() as connection:
        assert connection.execute(sa.select(SMS_MESSAGE.c.status)).scalar_one() == "delivered"
    forged = client.post(path, data={"MessageSid": sid, "MessageStatus": "failed"})
    assert forged.status_code == 403
