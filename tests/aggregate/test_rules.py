"""Rules A–E of domain.md, each pinned to a worked example computed by hand."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from aggregate.inputs import empty_deductions
from aggregate.result import ScoreResult, compute
from aggregate.scores import ScoringError
from collect.campaign import CampaignSpec
from tests.aggregate.helpers import FIVE, Ballot, example, frame, level_ballots, variant, worked_a


def unit_row(result: ScoreResult, unit: str) -> dict[str, Any]:
    return result.units.filter(pl.col("unit") == unit).row(0, named=True)


def weighted(result: ScoreResult, unit: str) -> dict[str, float]:
    rows = result.frames.weighted_rates.filter(pl.col("unit") == unit)
    return dict(zip(rows["level"], rows["rate"], strict=True))


# --- Rule A ----------------------------------------------------------------------------------


def test_rule_a_worked_example_100_80_60_40_0() -> None:
    spec = example("branch-office")
    result = compute(frame(worked_a(), spec), spec)
    rates = weighted(result, "S01")
    expected = [0.55, 0.271667, 0.113333, 0.048333, 0.016667]
    assert [round(rates[level], 6) for level in FIVE] == expected
    assert math.isclose(sum(rates.values()), 1.0)
    row = unit_row(result, "S01")
    assert row["score_pub"] == 85.4667
    assert math.isclose(row["score"], 85.466666666, rel_tol=1e-9)


def test_rule_a_worked_example_100_75_50_25_0() -> None:
    spec = example("branch-office")
    levels = [
        {**lv.model_dump(mode="json"), "value": v}
        for lv, v in zip(spec.scale.levels, [100, 75, 50, 25, 0], strict=False)
    ]
    single_vote = variant(spec, scale={**spec.scale.model_dump(mode="json"), "levels": levels})
    row = unit_row(compute(frame(worked_a(), single_vote), single_vote), "S01")
    assert row["score_pub"] == 82.25


def test_rule_a_published_tier_rates() -> None:
    spec = example("branch-office")
    result = compute(frame(worked_a(), spec), spec)
    peers = result.frames.rates.filter((pl.col("unit") == "S01") & (pl.col("tier") == "peers"))
    assert dict(zip(peers["level"], peers["rate"], strict=True))["satisfied"] == 0.5
    tiers = result.frames.parts.filter(pl.col("unit") == "S01").sort("tier")
    assert tiers["cast"].to_list() == [5, 12, 18, 20]  # leaders, peers, recipients, supervisors


def test_rule_a_several_aspects_are_averaged() -> None:
    spec = variant(
        example("branch-office"),
        aspects=[{"code": "style", "zh": "作风"}, {"code": "speed", "zh": "效率"}],
    )
    ballots: list[Ballot] = [
        ("S01", tier, {"style": "satisfied", "speed": "basically_satisfied"}, "web")
        for tier in ("peers", "leaders")
    ] + [
        ("S01", tier, {"style": "fairly_satisfied", "speed": None}, "web")
        for tier in ("recipients", "supervisors")
    ]
    row = unit_row(compute(frame(ballots, spec), spec), "S01")
    # peers and leaders: (100 + 60) / 2 = 80; the others: 80 (don't know dropped) → 80.
    assert row["score_pub"] == 80.0


# --- Rule B ----------------------------------------------------------------------------------


def test_rule_b_mean_points_hand_computed() -> None:
    spec = example("department-survey")
    ballots: list[Ballot] = [
        ("D01", "recipients", {"lawful_duty": 8, "efficiency": 9, "integrity": None}, "phone"),
        ("D01", "recipients", {"lawful_duty": 10, "efficiency": 7, "integrity": 6}, "phone"),
        ("D01", "staff", {"lawful_duty": 10, "efficiency": 10, "integrity": 10}, "web"),
        ("D01", "deputies", {"lawful_duty": 7, "efficiency": 8, "integrity": 9}, "paper"),
        ("D01", "deputies", {"lawful_duty": 5, "efficiency": 6, "integrity": 7}, "paper"),
        ("D01", "inspectors", {"lawful_duty": 9, "efficiency": None, "integrity": 9}, "paper"),
    ]
    result = compute(frame(ballots, spec), spec)
    tiers = result.frames.parts.filter(pl.col("unit") == "D01")
    by_tier = dict(zip(tiers["tier"], tiers["score"], strict=True))
    # recipients: aspects 9, 8, 6 → ×10 → 90, 80, 60 → 76.67; staff 100; deputies 60/70/80 → 70;
    # inspectors: efficiency all "don't know" → (90 + 90) / 2 = 90.
    assert math.isclose(by_tier["recipients"], 230 / 3)
    assert by_tier["staff"] == 100.0
    assert math.isclose(by_tier["deputies"], 70.0)
    assert by_tier["inspectors"] == 90.0
    row = unit_row(result, "D01")
    # 0.65 × 76.667 + 0.05 × 100 + 0.20 × 70 + 0.10 × 90 = 77.8333
    assert math.isclose(row["score"], 0.65 * 230 / 3 + 5 + 14 + 9)
    assert row["score_pub"] == 77.83


# --- Rule C ----------------------------------------------------------------------------------


def test_rule_c_one_aspect_70_20_10_gives_19_9() -> None:
    spec = variant(example("city-campaign"), aspects=[{"code": "style", "zh": "工作作风"}])
    counts = {"satisfied": 70, "basically_satisfied": 20, "dissatisfied": 10}
    ballots = [("E01", "public", {"style": level}, "paper") for level, n in counts.items() for _ in range(n)]
    row = unit_row(compute(frame(ballots, spec), spec), "E01")
    assert row["score_pub"] == 19.9


def test_rule_c_sums_five_aspects() -> None:
    spec = example("city-campaign")
    aspects = [a.code for a in spec.aspects]
    counts = {"satisfied": 70, "basically_satisfied": 20, "dissatisfied": 10}
    answers = [level for level, n in counts.items() for _ in range(n)]
    # Aspect i shifts the answers by i ballots: every aspect is still 70/20/10 of 100.
    ballots: list[Ballot] = [
        ("E01", "public", {a: answers[(b + i) % 100] for i, a in enumerate(aspects)}, "paper")
        for b in range(100)
    ]
    row = unit_row(compute(frame(ballots, spec), spec), "E01")
    assert row["score_pub"] == 99.5  # 5 × 19.9; an aspect tops out at 22, so the maximum is 110


# --- Rule D ----------------------------------------------------------------------------------


def composite_spec(**scoring: Any) -> CampaignSpec:
    return variant(
        example("branch-office"),
        scoring={
            "rule": "composite",
            "threshold": 70,
            "composite": {
                "base_rule": "level_rates",
                "methods": {
                    "phone": "phone",
                    "sms": "phone",
                    "paper": "meeting",
                    "web": "online",
                    "window_qr": "online",
                    "api": "online",
                },
                "weights": {
                    "stations": {"phone": 0.7, "online": 0.3},
                    "offices": {"phone": 0.5, "meeting": 0.5},
                },
            },
            "ci": {"method": "none"},
            **scoring,
        },
    )


def composite_ballots() -> list[Ballot]:
    return [
        ("S01", "recipients", {"overall": "satisfied"}, "phone"),
        ("S01", "recipients", {"overall": "fairly_satisfied"}, "sms"),
        ("S01", "recipients", {"overall": "basically_satisfied"}, "web"),
        ("O01", "leaders", {"overall": "not_very_satisfied"}, "phone"),
        ("O01", "supervisors", {"overall": "dissatisfied"}, "phone"),
        ("O01", "peers", {"overall": "satisfied"}, "paper"),
    ]


def test_rule_d_composite_with_deductions_and_threshold() -> None:
    spec = composite_spec()
    deductions = pl.concat(
        [
            empty_deductions(),
            pl.DataFrame(
                {
                    "unit": ["S01", "S01", "O01"],
                    "date": ["2026-08-01", "2026-08-02", "2026-08-03"],
                    "kind": ["misconduct", "not_done", "misconduct"],
                    "points": [0.5, 0.1, 1.0],
                    "note": ["", "", ""],
                }
            ),
        ]
    )
    result = compute(frame(composite_ballots(), spec), spec, deductions=deductions)
    s01, o01 = unit_row(result, "S01"), unit_row(result, "O01")
    # S01 (station): phone (100 + 80) / 2 = 90 at 70 %, online 60 at 30 % → 81, − 0.6 = 80.4.
    assert math.isclose(s01["value"], 81.0)
    assert s01["score_pub"] == 80.4
    assert s01["below_threshold"] is False
    # O01 (office): phone = leaders 40 and supervisors 0, weights 0.2/0.3 renormalised → 16;
    # meeting (paper) 100; 0.5 × 16 + 0.5 × 100 = 58, − 1 = 57 → under 70: admonition talk.
    assert math.isclose(o01["value"], 58.0)
    assert o01["score_pub"] == 57.0
    assert o01["below_threshold"] is True
    methods = result.frames.methods.filter(pl.col("unit") == "O01")
    assert dict(zip(methods["method"], methods["score"], strict=True)) == pytest.approx(
        {"phone": 16.0, "meeting": 100.0}
    )


def test_rule_d_missing_method_follows_policy() -> None:
    ballots = [b for b in composite_ballots() if b[3] != "web"]  # S01 loses its online sub-score
    renormalised = composite_spec()
    assert unit_row(compute(frame(ballots, renormalised), renormalised), "S01")["score_pub"] == 90.0
    zero = composite_spec(missing_tier="zero")
    assert unit_row(compute(frame(ballots, zero), zero), "S01")["score_pub"] == 63.0
    refuse = composite_spec(missing_tier="refuse")
    row = unit_row(compute(frame(ballots, refuse), refuse), "S01")
    assert row["score"] is None
    assert row["refused"]
    assert row["missing"] == ["online"]


def test_rule_d_needs_weights_for_every_group() -> None:
    spec = variant(
        example("branch-office"),
        scoring={"rule": "composite", "composite": {"weights": {"stations": {"phone": 1.0}}}},
    )
    with pytest.raises(ScoringError, match="offices"):
        compute(frame(composite_ballots(), spec), spec)


# --- Rule E ----------------------------------------------------------------------------------


def meeting_spec(fraction: str = "exact") -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "code": "meeting",
            "name": "民主评议会",
            "opens_at": "2026-07-01T00:00:00+08:00",
            "closes_at": "2026-07-02T00:00:00+08:00",
            "scale": {
                "kind": "levels",
                "levels": [
                    {"code": "excellent", "zh": "优秀", "en": "Excellent", "value": 100},
                    {"code": "qualified", "zh": "合格", "en": "Qualified", "value": 60},
                ],
                "satisfied": ["excellent"],
            },
            "units": [
                {"code": "M1", "name": "班子成员甲"},
                {"code": "M2", "name": "评议表"},
                {"code": "M3", "name": "乙"},
            ],
            "tiers": [{"code": "members", "zh": "参会人员", "weight": 1.0}],
            "scoring": {
                "rule": "satisfaction_rate",
                "decimals": 2,
                "rate_deduction": {"threshold": 0.9, "points_per_point": 1, "fraction": fraction},
                "grades": [
                    {"min": 90, "code": "excellent", "zh": "优秀"},
                    {"min": 80, "code": "good", "zh": "良好"},
                    {"min": 60, "code": "pass", "zh": "合格"},
                    {"code": "fail", "zh": "不合格"},
                ],
            },
        }
    )


def test_rule_e_meeting_91_and_9_percent_and_100_percent() -> None:
    spec = meeting_spec()
    ballots = level_ballots("M1", "members", {"excellent": 30, "qualified": 3})
    ballots += level_ballots("M2", "members", {"excellent": 42})
    result = compute(frame(ballots, spec), spec)
    m1 = weighted(result, "M1")
    assert round(m1["excellent"] * 100) == 91
    assert round(m1["qualified"] * 100) == 9
    assert unit_row(result, "M1")["rate"] == pytest.approx(30 / 33)
    assert unit_row(result, "M1")["score_pub"] == 100.0  # ≥ 90 %: no deduction
    assert unit_row(result, "M1")["grade"] == "excellent"
    assert unit_row(result, "M2")["rate"] == 1.0
    assert unit_row(result, "M2")["score_pub"] == 100.0


@pytest.mark.parametrize(("fraction", "expected"), [("exact", 97.3), ("floor", 98.0), ("ceil", 97.0)])
def test_rule_e_fraction_of_a_point(fraction: str, expected: float) -> None:
    spec = meeting_spec(fraction)
    ballots = level_ballots("M3", "members", {"excellent": 873, "qualified": 127})  # 87.3 %: 2.7 below
    assert unit_row(compute(frame(ballots, spec), spec), "M3")["score_pub"] == expected


def test_rule_e_whole_points_are_not_overcounted_by_float_noise() -> None:
    spec = meeting_spec("ceil")
    ballots = level_ballots("M3", "members", {"excellent": 87, "qualified": 13})  # exactly 3 points below
    row = unit_row(compute(frame(ballots, spec), spec), "M3")
    assert row["score_pub"] == 97.0
    assert row["grade"] == "excellent"


def test_rule_e_grade_bands() -> None:
    spec = meeting_spec("exact")
    cases = {"M1": (79, 21), "M2": (69, 31), "M3": (50, 50)}  # 11, 21, 40 points off
    ballots: list[Ballot] = []
    for unit, (good, other) in cases.items():
        ballots += level_ballots(unit, "members", {"excellent": good, "qualified": other})
    result = compute(frame(ballots, spec), spec)
    assert [unit_row(result, u)["score_pub"] for u in cases] == [89.0, 79.0, 60.0]
    assert [unit_row(result, u)["grade"] for u in cases] == ["good", "pass", "pass"]


def test_rule_e_needs_the_fraction_stated() -> None:
    with pytest.raises(ValueError, match="fraction"):
        CampaignSpec.model_validate(
            {**meeting_spec().model_dump(mode="json"), "scoring": {"rule": "satisfaction_rate"}}
        )


# --- Common: missing tiers, ties, designations ------------------------------------------------


def partial_ballots() -> list[Ballot]:
    return level_ballots("S01", "peers", {"satisfied": 1, "basically_satisfied": 1}) + level_ballots(
        "S01", "leaders", {"fairly_satisfied": 1}
    )


@pytest.mark.parametrize(
    ("policy", "score", "refused"),
    [("renormalise", 80.0, False), ("zero", 32.0, False), ("refuse", None, True)],
)
def test_missing_tier_policy(policy: str, score: float | None, refused: bool) -> None:
    spec = variant(example("branch-office"), scoring={"missing_tier": policy})
    result = compute(frame(partial_ballots(), spec), spec)
    row = unit_row(result, "S01")
    # peers 80 and leaders 80: renormalised 80; zero: 0.2 × 80 + 0.2 × 80 = 32.
    assert row["score_pub"] == score
    assert row["refused"] is refused
    assert row["missing"] == ["recipients", "supervisors"]
    assert ("S01" in result.refused) is refused


def test_a_unit_without_ballots_has_no_score_and_no_rank() -> None:
    spec = example("branch-office")
    row = unit_row(compute(frame(worked_a(), spec), spec), "S04")
    assert row["score"] is None
    assert row["rank"] is None
    assert row["designation"] is None


def test_real_tie_from_different_ballots_shares_a_rank() -> None:
    # Both units score 146/3 exactly; summed as floats the two differ in the last digit.
    spec = variant(example("branch-office"), scoring={"top_n": 1, "bottom_n": 1})
    vals = {
        100: "satisfied",
        80: "fairly_satisfied",
        60: "basically_satisfied",
        40: "not_very_satisfied",
        0: "dissatisfied",
    }
    tiers = ["peers", "leaders", "recipients", "supervisors"]
    a = [(40, 60, 60), (40,), (100,), (0,)]
    b = [(0, 60, 60), (40, 80, 100), (40,), (0, 40, 100)]
    ballots: list[Ballot] = []
    for unit, pattern in (("S01", a), ("S02", b)):
        for tier, votes in zip(tiers, pattern, strict=True):
            ballots += [(unit, tier, {"overall": vals[v]}, "paper") for v in votes]
    ballots += level_ballots("S03", "peers", {"dissatisfied": 1})
    result = compute(frame(ballots, spec), spec)
    s01, s02 = unit_row(result, "S01"), unit_row(result, "S02")
    assert math.isclose(s01["score"], 146 / 3)
    assert math.isclose(s02["score"], 146 / 3)
    assert s01["score_pub"] == s02["score_pub"] == 48.6667
    assert s01["rank"] == s02["rank"] == 1
    assert s01["designation"] == s02["designation"] == "top"  # ties at the boundary are all included
    assert unit_row(result, "S03")["rank"] == 3  # "min" ranking: 1, 1, 3
    assert unit_row(result, "S03")["designation"] == "bottom"


def test_dense_ties() -> None:
    spec = variant(example("branch-office"), scoring={"ties": "dense"})
    ballots = level_ballots("S01", "peers", {"satisfied": 1}) + level_ballots(
        "S02", "peers", {"satisfied": 1}
    )
    ballots += level_ballots("S03", "peers", {"fairly_satisfied": 1})
    result = compute(frame(ballots, spec), spec)
    assert [unit_row(result, u)["rank"] for u in ("S01", "S02", "S03")] == [1, 1, 2]


def test_groups_are_ranked_separately_with_top_and_bottom() -> None:
    spec = example("branch-office")  # top 2, bottom 1 per group
    ballots: list[Ballot] = []
    for unit, level in [
        ("S01", "satisfied"),
        ("S02", "fairly_satisfied"),
        ("S03", "basically_satisfied"),
        ("S04", "dissatisfied"),
    ]:
        ballots += [
            (unit, t, {"overall": level}, "web") for t in ("peers", "leaders", "recipients", "supervisors")
        ]
    for unit, level in [("O01", "not_very_satisfied"), ("O02", "satisfied"), ("O03", "basically_satisfied")]:
        ballots += [
            (unit, t, {"overall": level}, "web") for t in ("peers", "leaders", "recipients", "supervisors")
        ]
    units = compute(frame(ballots, spec), spec).units
    stations = units.filter(pl.col("group") == "stations")
    assert stations["unit"].to_list() == ["S01", "S02", "S03", "S04"]
    assert stations["designation"].to_list() == ["top", "top", None, "bottom"]
    offices = units.filter(pl.col("group") == "offices")
    assert offices["unit"].to_list() == ["O02", "O03", "O01"]
    assert offices["rank"].to_list() == [1, 2, 3]
    assert offices["designation"].to_list() == ["top", "top", "bottom"]


def test_quota_shortfall_is_reported() -> None:
    spec = example("branch-office")
    parts = compute(frame(worked_a(), spec), spec).frames.parts.filter(pl.col("unit") == "S01").sort("tier")
    # quotas 5/12/18/20 (leaders, peers, recipients, supervisors) are exactly met by the example.
    assert parts["shortfall"].to_list() == [0, 0, 0, 0]
    parts = (
        compute(frame(partial_ballots(), spec), spec)
        .frames.parts.filter(pl.col("unit") == "S01")
        .sort("tier")
    )
    assert parts["shortfall"].to_list() == [4, 10, 18, 20]


def test_unknown_codes_are_refused_with_every_problem() -> None:
    spec = example("branch-office")
    ballots: list[Ballot] = [
        ("ZZ9", "peers", {"overall": "great"}, "web"),
        ("S01", "nobody", {"overall": "satisfied"}, "web"),
    ]
    with pytest.raises(ScoringError) as caught:
        compute(frame(ballots, spec), spec)
    text = str(caught.value)
    assert "ZZ9" in text
    assert "nobody" in text
    assert "great" in text


def test_rule_needs_a_fitting_scale() -> None:
    spec = variant(example("department-survey"), scoring={"rule": "level_rates"})
    with pytest.raises(ScoringError, match="levels scale"):
        compute(frame([], spec), spec)
