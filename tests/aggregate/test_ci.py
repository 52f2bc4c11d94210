"""Confidence intervals: analytic and bootstrap agree roughly, are reproducible, flag overlaps."""

from __future__ import annotations

import math

import polars as pl
import pytest

from aggregate.result import compute
from tests.aggregate.helpers import Ballot, example, frame, level_ballots, variant, worked_a


def interval(method: str, ballots: list[Ballot], **ci: object) -> tuple[float, float, float]:
    spec = variant(example("branch-office"), scoring={"ci": {"method": method, **ci}})
    row = compute(frame(ballots, spec), spec).units.filter(pl.col("unit") == "S01").row(0, named=True)
    return row["ci_lo"], row["score"], row["ci_hi"]


def test_analytic_interval_of_a_single_tier_is_the_normal_interval_of_the_mean() -> None:
    spec = variant(
        example("branch-office"),
        tiers=[{"code": "peers", "zh": "互评", "weight": 1.0}],
        scoring={"ci": {"method": "analytic"}},
    )
    ballots = level_ballots("S01", "peers", {"satisfied": 6, "fairly_satisfied": 3, "basically_satisfied": 3})
    row = compute(frame(ballots, spec), spec).units.filter(pl.col("unit") == "S01").row(0, named=True)
    values = [100] * 6 + [80] * 3 + [60] * 3
    mean = sum(values) / 12
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 11)
    half = 1.959963984540054 * sd / math.sqrt(12)
    assert row["ci_lo"] == pytest.approx(mean - half)
    assert row["ci_hi"] == pytest.approx(mean + half)


def test_bootstrap_is_reproducible_and_close_to_analytic() -> None:
    ballots = worked_a()
    lo_a, score, hi_a = interval("analytic", ballots)
    lo_b, _, hi_b = interval("bootstrap", ballots, resamples=4000, seed=7)
    assert interval("bootstrap", ballots, resamples=4000, seed=7)[0] == lo_b
    assert lo_b < score < hi_b
    assert lo_b == pytest.approx(lo_a, abs=1.5)
    assert hi_b == pytest.approx(hi_a, abs=1.5)
    assert interval("bootstrap", ballots, resamples=4000, seed=8)[0] != lo_b


def test_intervals_are_clipped_to_the_scale() -> None:
    ballots = level_ballots("S01", "peers", {"satisfied": 9, "dissatisfied": 1})
    lo, _, hi = interval("analytic", ballots)
    assert lo >= 0.0
    assert hi == 100.0


def test_no_interval_when_a_weighted_tier_has_one_ballot_or_method_none() -> None:
    ballots = worked_a()[:-20] + level_ballots("S01", "supervisors", {"satisfied": 1})
    assert interval("analytic", ballots)[0] is None
    assert interval("none", worked_a())[0] is None


def test_neighbours_with_overlapping_intervals_are_flagged() -> None:
    spec = variant(example("branch-office"), scoring={"ci": {"method": "analytic"}})
    close = level_ballots("S01", "peers", {"satisfied": 5, "fairly_satisfied": 5})
    close += level_ballots("S02", "peers", {"satisfied": 4, "fairly_satisfied": 6})
    far = level_ballots("S03", "peers", {"dissatisfied": 30, "not_very_satisfied": 1})
    units = compute(frame(close + far, spec), spec).units.filter(pl.col("group") == "stations")
    flags = dict(zip(units["unit"], units["inseparable"].to_list(), strict=True))
    assert flags["S01"] == ["S02"]
    assert flags["S02"] == ["S01"]
    assert flags["S03"] == []
