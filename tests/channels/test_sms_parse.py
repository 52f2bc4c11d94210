"""Reading SMS replies and moving the conversation: pure, tables of text → answers or problems."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collect.ballot import Answer, BallotSubmission, Rejection
from collect.campaign import CampaignSpec, load_campaign_file
from collect.channels.sms import (
    InboundSms,
    ReplyProblem,
    ReplyValue,
    SmsAdapter,
    advance,
    invite_text,
    keyword,
    parse_reply,
    questions_for,
    reply_codes,
    segments,
)
from tests.channels.test_sms_fakes import PHONES, inbound_form, small_spec
from tests.conftest import EXAMPLES

L = ReplyValue  # short rows below


def levels(*codes: str) -> tuple[ReplyValue, ...]:
    return tuple(L(level=c) for c in codes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", levels("satisfied")),
        ("１", levels("satisfied")),
        ("  5 ", levels("dissatisfied")),
        ("满意", levels("satisfied")),
        ("不满意", levels("dissatisfied")),
        ("比较满意、满意", levels("fairly_satisfied", "satisfied")),
        ("不满意满意", levels("dissatisfied", "satisfied")),
        ("1 2 1", levels("satisfied", "fairly_satisfied", "satisfied")),
        ("1，2，1。", levels("satisfied", "fairly_satisfied", "satisfied")),
        ("１２１", levels("satisfied", "fairly_satisfied", "satisfied")),
        ("【3】", levels("basically_satisfied")),
        ("a", levels("satisfied")),
        ("Ｅ", levels("dissatisfied")),
        ("ab", levels("satisfied", "fairly_satisfied")),
        ("Not very satisfied", levels("not_very_satisfied")),
    ],
)
def test_replies_on_a_levels_scale(
    branch_spec: CampaignSpec, text: str, expected: tuple[ReplyValue, ...]
) -> None:
    assert parse_reply(text, branch_spec) == expected


def test_dont_know_when_offered(branch_spec: CampaignSpec) -> None:
    scale = {**branch_spec.scale.model_dump(mode="json"), "dont_know": True}
    spec = small_spec(branch_spec, scale=scale)
    assert parse_reply("0", spec) == (L(dont_know=True),)
    assert parse_reply("不了解", spec) == (L(dont_know=True),)
    assert parse_reply("1 0", spec) == (L(level="satisfied"), L(dont_know=True))
    assert "0不了解" in reply_codes(spec)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("。。", "empty"),
        ("7", "out_of_range"),
        ("很满意", "unrecognised"),
        ("0", "dont_know_not_offered"),
        ("不了解", "dont_know_not_offered"),
        ("1 x", "unrecognised"),
    ],
)
def test_unreadable_replies_say_why(branch_spec: CampaignSpec, text: str, code: str) -> None:
    parsed = parse_reply(text, branch_spec)
    assert isinstance(parsed, ReplyProblem)
    assert parsed.code == code


def test_points_scales_read_whole_numbers(branch_spec: CampaignSpec) -> None:
    scale = {"kind": "points", "min_points": 0, "max_points": 10, "dont_know": True}
    spec = small_spec(branch_spec, scale=scale)
    assert parse_reply("10", spec) == (L(points=10),)
    assert parse_reply("8分 ９ 0", spec) == (L(points=8), L(points=9), L(points=0))
    assert parse_reply("不了解", spec) == (L(dont_know=True),)
    problem = parse_reply("11", spec)
    assert isinstance(problem, ReplyProblem)
    assert problem.code == "out_of_range"


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("STOP", "stop"),
        ("stop ", "stop"),
        ("退订", "stop"),
        ("TD", "stop"),
        ("ｔｄ。", "stop"),
        ("START", "start"),
        ("HELP", "help"),
        ("帮助", "help"),
        ("？", "help"),
        ("1", None),
        ("stop it", None),
    ],
)
def test_keywords_are_whole_messages(text: str, word: str | None) -> None:
    assert keyword(text) == word


def test_a_compact_reply_completes_units_and_keeps_the_rest(branch_spec: CampaignSpec) -> None:
    aspects = [{"code": "style", "zh": "工作作风"}, {"code": "speed", "zh": "办事效率"}]
    spec = small_spec(branch_spec, units=2, aspects=aspects)
    questions = questions_for(spec, ["S01", "S02"])
    assert questions == (("S01", "style"), ("S01", "speed"), ("S02", "style"), ("S02", "speed"))
    step = advance(questions, 0, (), levels("satisfied", "fairly_satisfied", "dissatisfied"))
    assert not isinstance(step, ReplyProblem)
    assert step.position == 3
    assert [a.unit for a in step.complete] == ["S01", "S01"]
    assert step.pending == (Answer("S02", "style", level="dissatisfied"),)
    last = advance(questions, step.position, step.pending, levels("satisfied"))
    assert not isinstance(last, ReplyProblem)
    assert [(a.unit, a.aspect) for a in last.complete] == [("S02", "style"), ("S02", "speed")]
    too_many = advance(questions, 3, step.pending, levels("satisfied", "satisfied"))
    assert isinstance(too_many, ReplyProblem)
    assert (too_many.code, too_many.given, too_many.left) == ("too_many", 2, 1)


def test_the_adapter_keeps_no_phone_number(branch_spec: CampaignSpec) -> None:
    when = datetime(2026, 9, 1, tzinfo=UTC)
    form = inbound_form("SM1", PHONES[0], "1")
    answers = (Answer("S01", "overall", level="satisfied"),)
    [item] = SmsAdapter().parse(InboundSms("SM1", PHONES[0], form, when, answers), branch_spec)
    assert isinstance(item, BallotSubmission)
    assert (item.channel, item.source_ref, item.answered_at) == ("sms", "SM1", when)
    assert item.identity is not None
    assert item.identity.kind == "phone"
    assert PHONES[0][3:] not in repr(item.raw) + repr(item.meta) + repr(item.identity)
    assert item.raw["FromCity"] == "<redacted>"
    bad = SmsAdapter.bad_signature("c", form, when, "no X-Twilio-Signature header")
    assert isinstance(bad, Rejection)
    assert (bad.reason, bad.source_ref) == ("signature", "SM1#unsigned")
    assert PHONES[0] not in repr(bad.raw)


def test_invitations_fit_a_few_segments_and_carry_the_codes(branch_spec: CampaignSpec) -> None:
    spec = small_spec(branch_spec, units=3)
    body = invite_text(spec, questions_for(spec, ["S01", "S02", "S03"]))
    assert "1满意 2比较满意 3基本满意 4不太满意 5不满意" in body
    assert "回复TD退订" in body
    assert segments(body) <= 4
    assert segments("x" * 160) == 1
    assert segments("满" * 71) == 2


# Hypothesis and function-scoped fixtures do not mix: the example campaign, read once.
BRANCH = load_campaign_file(str(EXAMPLES / "branch-office.toml"))


@given(st.text(max_size=200))
def test_parse_never_raises(text: str) -> None:
    result = parse_reply(text, BRANCH)
    assert isinstance(result, ReplyProblem | tuple)
    assert keyword(text) in (None, "stop", "start", "help")
