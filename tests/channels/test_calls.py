"""The call-centre adapter as a table: rows of text in, ballots or rejections (with their reason) out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collect.ballot import BallotSubmission, Rejection
from collect.campaign import CampaignSpec
from collect.channels.calls import (
    CallExport,
    CallProfile,
    CallsAdapter,
    ProfileError,
    load_profile_text,
    locate_header,
    parse_call_time,
    profile_problems,
    profile_to_toml,
    propose_profile,
)
from tests.channels.test_calls_files import HEADER, LONG_HEADER, LONG_PROFILE, PROFILE, long_rows
from tests.store.factories import campaign_spec

RECEIVED = datetime(2026, 9, 20, tzinfo=UTC)
Item = BallotSubmission | Rejection


@pytest.fixture
def spec(branch_spec: CampaignSpec) -> CampaignSpec:
    return campaign_spec(branch_spec, code="calls-2026", open_tier=True)


def parse(
    spec: CampaignSpec,
    rows: Sequence[Sequence[str | None]],
    *,
    profile: str = PROFILE,
    header: Sequence[str] = HEADER,
    repeated: frozenset[str] = frozenset(),
    spreadsheet: bool = False,
) -> tuple[list[Item], CallsAdapter]:
    adapter = CallsAdapter(load_profile_text(profile))
    export = CallExport(
        campaign=spec.code,
        file_name="calls.csv",
        file_sha256="ab" * 32,
        header=header,
        rows=[(n + 3, list(r)) for n, r in enumerate(rows)],
        received_at=RECEIVED,
        repeated_call_ids=repeated,
        spreadsheet=spreadsheet,
    )
    return list(adapter.parse(export, spec)), adapter


def one(spec: CampaignSpec, row: Sequence[str | None], **kw: object) -> Item:
    items, _ = parse(spec, [row], **kw)  # type: ignore[arg-type]
    assert len(items) == 1
    return items[0]


GOOD = ["C1", "13800138000", "2026-09-01 10:00:00", "成功", "城东工商所", "1"]


def test_a_completed_call_is_a_phone_ballot_keyed_by_the_vendor_call_id(spec: CampaignSpec) -> None:
    item = one(spec, GOOD)
    assert isinstance(item, BallotSubmission)
    assert item.channel == "phone"
    assert item.source_ref == "acme:C1"
    assert item.identity is not None
    assert item.identity.kind == "phone"
    assert item.identity.value == "+8613800138000"
    assert [(a.unit, a.aspect, a.level) for a in item.answers] == [("S01", "overall", "satisfied")]
    # The call time, read in the campaign's zone (+08:00), is when the respondent answered.
    assert item.answered_at == datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
    assert item.received_at == RECEIVED
    assert item.meta["row"] == 3
    assert item.meta["file_sha256"] == "ab" * 32


def test_the_phone_number_is_redacted_from_raw(spec: CampaignSpec) -> None:
    item = one(spec, GOOD)
    assert "13800138000" not in repr(item.raw)
    assert item.raw["手机号码"] == "<redacted>"
    assert item.raw["测评单位"] == "城东工商所"
    # The row number lives in meta, not raw: an overlapping export must hash the same.
    assert "3" not in item.raw.values()


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("1", "satisfied"),
        ("１", "satisfied"),  # full-width digit
        ("2", "fairly_satisfied"),
        ("2.0", "fairly_satisfied"),  # Excel's float for a whole number
        ("满意", "satisfied"),
        ("比较满意", "fairly_satisfied"),
        (" 不满意 ", "dissatisfied"),
        ("E", "dissatisfied"),  # the level's SMS key
        ("５", "dissatisfied"),
    ],
)
def test_answer_codes(spec: CampaignSpec, text: str, level: str) -> None:
    item = one(spec, [*GOOD[:5], text])
    assert isinstance(item, BallotSubmission)
    assert item.answers[0].level == level


@pytest.mark.parametrize(
    ("unit_text", "code"),
    [
        ("城东工商所", "S01"),
        (" 城东 工商所　", "S01"),  # stray and full-width spaces
        ("城东所", "S01"),  # the profile's alias table
        ("S02", "S02"),  # a unit code
        ("消费者权益保护科", "O03"),
    ],
)
def test_unit_names_are_matched_tolerantly(spec: CampaignSpec, unit_text: str, code: str) -> None:
    item = one(spec, [*GOOD[:4], unit_text, "1"])
    assert isinstance(item, BallotSubmission)
    assert item.answers[0].unit == code


def test_full_width_parentheses_match_ascii_ones(branch_spec: CampaignSpec) -> None:
    data = branch_spec.model_dump(mode="json")
    data["code"] = "paren"
    data["units"][0]["name"] = "城东工商所(一分所)"
    spec = campaign_spec(CampaignSpec.model_validate(data), code="paren", open_tier=True)
    item = one(spec, [*GOOD[:4], "城东工商所（一分所） ", "1"])
    assert isinstance(item, BallotSubmission)
    assert item.answers[0].unit == "S01"


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        (["C1", "13800138000", "2026-09-01 10:00", "拒访", "城东工商所", ""], "not_completed", "outcome"),
        (["C1", "13800138000", "2026-09-01 10:00", "无人接听", "城东工商所", ""], "not_completed", "outcome"),
        (["C1", "13800138000", "2026-09-01 10:00", "空号", "城东工商所", ""], "not_completed", "outcome"),
        (["C1", "13800138000", "2026-09-01 10:00", "火星", "城东工商所", "1"], "not_completed", "outcome"),
        (["C1", "13800138000", "2026-09-01 10:00", "成功", "城东工商所", ""], "no_answers", "answers"),
        (["C1", "12345", "2026-09-01 10:00", "成功", "城东工商所", "1"], "invalid_phone", "phone"),
        (["C1", "", "2026-09-01 10:00", "成功", "城东工商所", "1"], "invalid_phone", "phone"),
        (["C1", "13800138000", "2026-09-01 10:00", "成功", "火星工商所", "1"], "unknown_unit", "unit"),
        (
            ["C1", "13800138000", "2026-09-01 10:00", "成功", "城东工商所", "7"],
            "unknown_code",
            "answers.总体评价",
        ),
        (["C1", "13800138000", "下午三点", "成功", "城东工商所", "1"], "bad_call_time", "called_at"),
    ],
)
def test_each_quarantine_reason(spec: CampaignSpec, row: list[str], reason: str, field: str) -> None:
    item = one(spec, row)
    assert isinstance(item, Rejection)
    assert item.reason == reason
    assert item.problems[0].field == field
    assert item.source_ref == "acme:C1"
    assert "13800138000" not in repr(item.raw) + repr(item.problems)


def test_every_problem_of_a_row_is_listed(spec: CampaignSpec) -> None:
    item = one(spec, ["C1", "12345", "whenever", "成功", "火星所", "9"])
    assert isinstance(item, Rejection)
    assert {p.code for p in item.problems} == {
        "invalid_phone",
        "bad_call_time",
        "unknown_unit",
        "unknown_code",
    }


def test_a_repeated_call_id_keeps_the_first_row_and_quarantines_the_others(spec: CampaignSpec) -> None:
    items, _ = parse(spec, [GOOD, GOOD, [*GOOD[:5], "2"]], repeated=frozenset({"C1"}))
    assert isinstance(items[0], BallotSubmission)
    assert items[0].source_ref == "acme:C1"
    for item, row in zip(items[1:], (4, 5), strict=True):
        assert isinstance(item, Rejection)
        assert item.reason == "duplicate_row"
        # Under its file row: re-importing this file finds the same reference again.
        assert item.source_ref == f"{'ab' * 8}#row={row}"


def test_blank_and_totals_rows_are_skipped_and_counted(spec: CampaignSpec) -> None:
    items, adapter = parse(
        spec, [GOOD, ["", None, "", "", "", ""], ["合计", "", "", "", "", "1"], ["总计:", None]]
    )
    assert len(items) == 1
    assert (adapter.stats.rows, adapter.stats.blank, adapter.stats.totals) == (4, 1, 2)


def test_merged_unit_cells_fill_down_in_spreadsheets_only(spec: CampaignSpec) -> None:
    second = ["C2", "13900139000", "2026-09-01 10:01:00", "成功", None, "2"]
    items, _ = parse(spec, [GOOD, second], spreadsheet=True)
    assert isinstance(items[1], BallotSubmission)
    assert items[1].answers[0].unit == "S01"
    # In a CSV an empty unit is missing, not merged: filling it would invent a unit.
    items, _ = parse(spec, [GOOD, second], spreadsheet=False)
    assert isinstance(items[1], Rejection)
    assert items[1].reason == "unknown_unit"


PARTIAL_PROFILE = """\
vendor = "acme"
[columns]
call_id = "呼叫编号"
phone = "手机号码"
called_at = "呼叫时间"
outcome = "通话结果"
[[answers]]
column = "城东工商所"
unit = "S01"
[[answers]]
column = "城西工商所"
unit = "S02"
"""
WIDE_HEADER = ("呼叫编号", "手机号码", "呼叫时间", "通话结果", "城东工商所", "城西工商所")


def _partial_spec(branch_spec: CampaignSpec, allow: bool) -> CampaignSpec:
    data = campaign_spec(branch_spec, code="p", open_tier=True).model_dump(mode="json")
    data["allow_partial"] = allow
    return CampaignSpec.model_validate(data)


@pytest.mark.parametrize("allow", [True, False])
def test_a_call_hung_up_part_way_counts_only_when_partial_ballots_are_allowed(
    branch_spec: CampaignSpec, allow: bool
) -> None:
    spec = _partial_spec(branch_spec, allow)
    row = ["C9", "13800138000", "2026-09-01 10:00:00", "中途挂断", "1", ""]
    item = one(spec, row, profile=PARTIAL_PROFILE, header=WIDE_HEADER)
    if allow:
        assert isinstance(item, BallotSubmission)
        assert [a.unit for a in item.answers] == ["S01"]
        assert item.meta["outcome"] == "partial"
    else:
        assert isinstance(item, Rejection)
        assert item.reason == "incomplete"
        assert "城西工商所" in item.problems[0].detail


def test_ivr_long_layout_is_pivoted_one_ballot_per_call(spec: CampaignSpec) -> None:
    rows = [
        *long_rows("A1", "13800138000", [("Q1", "1"), ("Q2", "3")]),
        *long_rows("A2", "13900139000", [("Q1", "２"), ("Q1", "4"), ("Q2", "5")], minute=5),  # Q1 re-asked
    ]
    items, _ = parse(spec, rows, profile=LONG_PROFILE, header=LONG_HEADER)
    assert [type(i) for i in items] == [BallotSubmission, BallotSubmission]
    first, second = items
    assert isinstance(first, BallotSubmission)
    assert isinstance(second, BallotSubmission)
    assert first.source_ref == "ivr:A1"
    assert [(a.unit, a.level) for a in first.answers] == [
        ("S01", "satisfied"),
        ("S02", "basically_satisfied"),
    ]
    assert [(a.unit, a.level) for a in second.answers] == [
        ("S01", "not_very_satisfied"),
        ("S02", "dissatisfied"),
    ]
    assert second.answered_at == datetime(2026, 9, 2, 1, 5, tzinfo=UTC)  # the first key press
    assert second.meta["rows"] == [5, 6, 7]


def test_ivr_hang_up_is_incomplete_without_partial_ballots(spec: CampaignSpec) -> None:
    rows = long_rows("A1", "13800138000", [("Q1", "1")])
    items, _ = parse(spec, rows, profile=LONG_PROFILE, header=LONG_HEADER)
    assert isinstance(items[0], Rejection)
    assert items[0].reason == "incomplete"


def test_points_scale_codes_and_dont_know(branch_spec: CampaignSpec) -> None:
    data = campaign_spec(branch_spec, code="pts", open_tier=True).model_dump(mode="json")
    data["scale"] = {"kind": "points", "min_points": 0, "max_points": 10, "dont_know": True}
    data["scoring"] = {"rule": "mean_points"}
    spec = CampaignSpec.model_validate(data)
    got = {}
    for text in ("10", "０", "７", "不了解", "11"):
        item = one(spec, [*GOOD[:5], text])
        got[text] = (
            (item.answers[0].points, item.answers[0].dont_know)
            if isinstance(item, BallotSubmission)
            else item.reason
        )
    assert got == {
        "10": (10, False),
        "０": (0, False),
        "７": (7, False),
        "不了解": (None, True),
        "11": "unknown_code",
    }


def test_the_profile_code_table_overrides_the_defaults(spec: CampaignSpec) -> None:
    profile = PROFILE + '\n[codes]\n"1" = "dissatisfied"\n"9" = "basically_satisfied"\n'
    first = one(spec, GOOD, profile=profile)
    nine = one(spec, [*GOOD[:5], "9"], profile=profile)
    assert isinstance(first, BallotSubmission)
    assert first.answers[0].level == "dissatisfied"
    assert isinstance(nine, BallotSubmission)
    assert nine.answers[0].level == "basically_satisfied"


@pytest.mark.parametrize(
    "text",
    [
        "2026-09-01 10:00:00",
        "2026/9/1 10:00",
        "2026年09月01日 10:00",
        "2026-09-01T10:00:00+08:00",
        "2026-09-01T02:00:00Z",
        "20260901100000",
        "46266.41666666667",  # Excel's serial day number
    ],
)
def test_call_time_formats(text: str) -> None:
    from collect.channels.calls import DEFAULT_TIME_FORMATS

    got = parse_call_time(text, DEFAULT_TIME_FORMATS, ZoneInfo("Asia/Shanghai"))
    assert got == datetime(2026, 9, 1, 2, 0, tzinfo=UTC)


def test_two_column_call_time(spec: CampaignSpec) -> None:
    profile = PROFILE.replace('called_at = "呼叫时间"', 'called_at = ["日期", "时间"]')
    header = ("呼叫编号", "手机号码", "日期", "时间", "通话结果", "测评单位", "总体评价")
    item = one(
        spec,
        ["C1", "13800138000", "2026-09-01", "10:00:00", "成功", "城东工商所", "1"],
        profile=profile,
        header=header,
    )
    assert isinstance(item, BallotSubmission)
    assert item.answered_at == datetime(2026, 9, 1, 2, 0, tzinfo=UTC)


def test_the_header_is_found_under_a_title(spec: CampaignSpec) -> None:
    profile = load_profile_text(PROFILE)
    head: list[list[str | None]] = [["标题", None], [], list(HEADER)]
    assert locate_header(head, profile) == 2
    assert locate_header([["标题"], ["呼叫编号", "手机号码"]], profile) is None


def test_a_proposed_profile_round_trips_through_toml(spec: CampaignSpec) -> None:
    proposal = propose_profile([["调查结果"], list(HEADER)], spec, vendor="v1")
    assert proposal is not None
    profile, index = proposal
    assert index == 1
    assert profile.columns.phone == "手机号码"
    assert profile.columns.unit == "测评单位"
    assert [a.column for a in profile.answers] == ["总体评价"]
    again = load_profile_text(profile_to_toml(profile, comment="check me"))
    assert again == profile
    assert profile_problems(again, spec) == []


def test_a_long_layout_is_proposed_from_question_and_key_columns(spec: CampaignSpec) -> None:
    proposal = propose_profile([list(LONG_HEADER)], spec, vendor="v1")
    assert proposal is not None
    assert proposal[0].layout == "long"
    assert proposal[0].columns.question == "题号"


def test_no_proposal_without_a_phone_and_time_column(spec: CampaignSpec) -> None:
    assert propose_profile([["姓名", "地址", "金额"]], spec, vendor="v1") is None


def test_profile_errors_name_their_keys(spec: CampaignSpec) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile_text('vendor = "a b"\nlayout = "long"\n[columns]\nphone = "p"\ncalled_at = "t"\n')
    text = str(caught.value)
    assert "vendor" in text
    assert "answers" in text
    bad = CallProfile.model_validate(
        {
            "vendor": "v",
            "columns": {"phone": "p", "called_at": "t", "unit": "u"},
            "answers": [{"column": "a", "aspect": "nope"}],
            "codes": {"1": "great"},
            "units": {"x": "Z99"},
        }
    )
    problems = profile_problems(bad, spec)
    assert any(p.startswith("answers[0].aspect") for p in problems)
    assert any(p.startswith("codes.1") for p in problems)
    assert any(p.startswith("units.x") for p in problems)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=8), max_size=6))
def test_parse_never_raises_on_any_text(rows: list[list[str | None]]) -> None:
    from collect.campaign import load_campaign_file
    from tests.conftest import EXAMPLES

    spec = campaign_spec(load_campaign_file(str(EXAMPLES / "branch-office.toml")), code="h", open_tier=True)
    items, adapter = parse(spec, rows)
    assert len(items) + adapter.stats.blank + adapter.stats.totals == len(rows)


def test_the_example_profile_fits_the_branch_office_campaign(branch_spec: CampaignSpec) -> None:
    from tests.conftest import EXAMPLES

    profile = load_profile_text((EXAMPLES / "phone-survey.profile.toml").read_text(encoding="utf-8"))
    assert profile_problems(profile, branch_spec) == []
    assert profile.units["城东所"] == "S01"
