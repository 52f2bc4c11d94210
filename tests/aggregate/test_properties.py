"""
Invariants that must hold for any ballots: order, ids and file splits never change a result;
"don't know" changes no score; scores stay within the scale's range for weights summing to 1.
"""

from __future__ import annotations

import itertools
import math

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregate.publish import to_json
from aggregate.result import compute
from tests.aggregate.helpers import FIVE, Ballot, example, frame, variant

STAMP = "2026-12-31T16:00:00Z"
BRANCH = example("branch-office")  # bootstrap intervals: the strictest case for order-independence
DEPT = example("department-survey")
CITY = example("city-campaign")

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

branch_ballots = st.lists(
    st.tuples(
        st.sampled_from(["S01", "S02", "S03", "O01"]),
        st.sampled_from([t.code for t in BRANCH.tiers]),
        st.sampled_from(FIVE),
        st.sampled_from(["web", "sms", "phone", "paper"]),
    ).map(lambda t: (t[0], t[1], {"overall": t[2]}, t[3])),
    min_size=1,
    max_size=60,
)

points_answer = st.one_of(st.integers(0, 10), st.none())
dept_ballots = st.lists(
    st.tuples(
        st.sampled_from(["D01", "D02", "D03"]),
        st.sampled_from([t.code for t in DEPT.tiers]),
        st.tuples(points_answer, points_answer, points_answer),
    ).map(
        lambda t: (
            t[0],
            t[1],
            dict(zip(["lawful_duty", "efficiency", "integrity"], t[2], strict=True)),
            "phone",
        )
    ),
    min_size=1,
    max_size=40,
)


@PROPERTY
@given(
    ballots=branch_ballots,
    seed=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(0, 60), max_size=3),
)
def test_permuting_and_splitting_ballots_changes_nothing(
    ballots: list[Ballot], seed: object, cuts: list[int]
) -> None:
    reference = to_json(compute(frame(ballots, BRANCH), BRANCH, computed_at=STAMP))
    shuffled = list(ballots)
    seed.shuffle(shuffled)  # type: ignore[attr-defined]
    # Several "files", each numbered from its own id range, read in any order.
    bounds = sorted({0, len(shuffled), *(c for c in cuts if c < len(shuffled))})
    files = [
        frame(shuffled[a:b], BRANCH, first_id=10_000 * (i + 1))
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    combined = pl.concat(list(reversed(files)))
    assert to_json(compute(combined, BRANCH, computed_at=STAMP)) == reference


@PROPERTY
@given(ballots=dept_ballots, extra=st.integers(1, 5))
def test_dont_know_changes_no_score(ballots: list[Ballot], extra: int) -> None:
    base = compute(frame(ballots, DEPT), DEPT).units
    units = sorted({b[0] for b in ballots})
    tiers = [t.code for t in DEPT.tiers]
    unknowing: list[Ballot] = [
        (
            units[i % len(units)],
            tiers[i % len(tiers)],
            dict.fromkeys(["lawful_duty", "efficiency", "integrity"]),
            "web",
        )
        for i in range(extra)
    ]
    more = compute(frame(ballots + unknowing, DEPT), DEPT).units
    columns = ["unit", "score_pub", "ci_lo_pub", "ci_hi_pub", "rank"]
    assert base.select(columns).equals(more.select(columns))


@PROPERTY
@given(ballots=dept_ballots)
def test_rule_b_scores_lie_within_0_and_100(ballots: list[Ballot]) -> None:
    for row in compute(frame(ballots, DEPT), DEPT).units.iter_rows(named=True):
        if row["score"] is not None:
            assert -1e-9 <= row["score"] <= 100 + 1e-9
            assert (
                0 <= row["ci_lo_pub"] <= row["score_pub"] <= row["ci_hi_pub"] <= 100
                if row["ci_lo_pub"] is not None
                else True
            )


@PROPERTY
@given(
    ballots=branch_ballots,
    raw_weights=st.lists(st.integers(0, 20), min_size=4, max_size=4).filter(lambda w: sum(w) > 0),
    policy=st.sampled_from(["renormalise", "zero"]),
)
def test_rule_a_scores_lie_within_the_level_values(
    ballots: list[Ballot], raw_weights: list[int], policy: str
) -> None:
    total = sum(raw_weights)
    tiers = [
        {**t.model_dump(mode="json"), "weight": w / total}
        for t, w in zip(BRANCH.tiers, raw_weights, strict=True)
    ]
    weights_sum = sum(t["weight"] for t in tiers)
    tiers[-1]["weight"] += 1.0 - weights_sum  # exact sum 1 despite the division
    spec = variant(BRANCH, tiers=tiers, scoring={"missing_tier": policy, "ci": {"method": "analytic"}})
    result = compute(frame(ballots, spec), spec)
    for row in result.units.iter_rows(named=True):
        if row["score"] is not None:
            assert 0.0 <= row["score_pub"] <= 100.0
    scored = result.units.filter(pl.col("score").is_not_null())["unit"]
    rates = (
        result.frames.weighted_rates.filter(pl.col("unit").is_in(scored))
        .group_by("unit")
        .agg(pl.col("rate").sum())
    )
    if policy == "renormalise":
        assert all(math.isclose(r, 1.0) for r in rates["rate"])


@PROPERTY
@given(
    answers=st.lists(
        st.tuples(
            st.sampled_from(["E01", "C01", "U01"]),
            st.lists(
                st.sampled_from(["satisfied", "basically_satisfied", "dissatisfied"]), min_size=5, max_size=5
            ),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_rule_c_scores_lie_between_55_and_110(answers: list[tuple[str, list[str]]]) -> None:
    aspects = [a.code for a in CITY.aspects]
    ballots: list[Ballot] = [
        (u, "public", dict(zip(aspects, levels, strict=True)), "paper") for u, levels in answers
    ]
    for row in compute(frame(ballots, CITY), CITY).units.iter_rows(named=True):
        if row["score"] is not None:
            assert 55.0 <= row["score_pub"] <= 110.0
