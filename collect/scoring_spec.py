"""
The `[scoring]` table of a campaign: which rule of domain.md (A–E) turns ballots into scores,
and every parameter of it stated explicitly. Read by `aggregate/`; documented in docs/scoring.md.

A campaign without a `[scoring]` table gets rule A with the defaults below. Checks that need
the rest of the campaign (scale kind, group codes) are in `scoring_problems`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # campaign.py imports this module; only the type is needed here
    from collect.campaign import CampaignSpec

Rule = Literal["level_rates", "mean_points", "aspect_value_sum", "composite", "satisfaction_rate"]
BaseRule = Literal["level_rates", "mean_points", "aspect_value_sum"]
ChannelName = Literal["web", "window_qr", "sms", "phone", "paper", "api"]
MethodCode = str

#: Rule letter of domain.md for each rule name (shown in reports and docs).
RULE_LETTERS: Mapping[str, str] = {
    "level_rates": "A",
    "mean_points": "B",
    "aspect_value_sum": "C",
    "composite": "D",
    "satisfaction_rate": "E",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GradeBand(_Frozen):
    """
    One grade band: a published score at or above `min` (and below the next band up) gets it.
    `min` left out makes the catch-all lowest band (不合格); JSON cannot carry -inf.
    """

    min: float | None = None
    code: str = Field(min_length=1, max_length=32)
    zh: str
    en: str = ""


#: The bands of rule E (domain.md): 90–100 优秀, 80–89 良好, 60–79 合格, below 60 不合格.
DEFAULT_GRADE_BANDS: tuple[GradeBand, ...] = (
    GradeBand(min=90, code="excellent", zh="优秀", en="Excellent"),
    GradeBand(min=80, code="good", zh="良好", en="Good"),
    GradeBand(min=60, code="pass", zh="合格", en="Pass"),
    GradeBand(code="fail", zh="不合格", en="Fail"),
)


class PointsSpec(_Frozen):
    """Rule B: points scales. The mean of an aspect's points × `multiplier` (0–10 → 0–100)."""

    multiplier: float = Field(default=10.0, gt=0)


class CompositeSpec(_Frozen):
    """
    Rule D: a unit's score combines sub-scores of collection methods (电话抽样, 集中测评, 网上评议).

    `methods` maps each ballot channel to a collection method; `weights` gives, per unit group,
    the weight of each method (summing to 1). Each method's sub-score is `base_rule` over that
    method's ballots, tier weights renormalised over the tiers present in the method.
    """

    base_rule: BaseRule = "level_rates"
    methods: dict[ChannelName, MethodCode] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]  # literal keys, typed as str by mypy
            "phone": "phone",
            "sms": "phone",
            "paper": "meeting",
            "web": "online",
            "window_qr": "online",
            "api": "online",
        }
    )
    weights: dict[str, dict[MethodCode, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> CompositeSpec:
        problems: list[str] = []
        known = set(self.methods.values())
        for group, by_method in sorted(self.weights.items()):
            unknown = sorted(set(by_method) - known)
            if unknown:
                problems.append(f"weights.{group}: unknown method(s) {', '.join(unknown)}")
            if any(w < 0 or not math.isfinite(w) for w in by_method.values()):
                problems.append(f"weights.{group}: a weight must be a finite number ≥ 0")
            total = sum(by_method.values())
            if not math.isclose(total, 1.0, abs_tol=1e-9):
                problems.append(f"weights.{group}: method weights sum to {total:g}, not 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RateDeductionSpec(_Frozen):
    """
    Rule E: satisfaction-rate deduction. rate = tier-weighted share of answers in the scale's
    `satisfied` levels (or ≥ `satisfied_min_points`); score = `base` − `points_per_point` × the
    percentage points below `threshold`, treated per `fraction`.

    `fraction` must be stated (domain.md): "exact" deducts fractions of a point, "floor" only
    whole percentage points started below (89.5% → 0), "ceil" every started one (89.5% → 1).
    """

    threshold: float = Field(default=0.90, gt=0, le=1)
    points_per_point: float = Field(default=1.0, ge=0)
    base: float = 100.0
    fraction: Literal["exact", "floor", "ceil"] | None = None
    floor_at_zero: bool = True


class CISpec(_Frozen):
    """
    Confidence interval of every score. "analytic": normal interval from the linearised
    variance, stratified by tier (fast, default); "bootstrap": resample ballots within each unit
    and tier, `resamples` times, from `seed` (small campaigns); "none": no interval.
    """

    method: Literal["analytic", "bootstrap", "none"] = "analytic"
    level: float = Field(default=0.95, gt=0, lt=1)
    resamples: int = Field(default=1000, ge=100, le=100_000)
    seed: int = Field(default=20260701, ge=0)


class ScoringSpec(_Frozen):
    """
    How ballots become published scores. `rule` picks a rule of domain.md:
    level_rates (A), mean_points (B), aspect_value_sum (C), composite (D), satisfaction_rate (E).
    """

    rule: Rule = "level_rates"
    #: Decimals of published scores; rounding is half away from zero ("half-up"), at the edge only.
    decimals: int = Field(default=4, ge=0, le=6)
    #: Decimals of published rates (0.271667).
    rate_decimals: int = Field(default=6, ge=0, le=6)
    #: A unit with no valid ballot in a weighted tier (or, rule D, method): spread the weight
    #: over the rest, count the missing part as 0, or publish no score for the unit.
    missing_tier: Literal["renormalise", "zero", "refuse"] = "renormalise"
    #: Ties share a rank: "min" is competition ranking (1, 2, 2, 4), "dense" is (1, 2, 2, 3).
    ties: Literal["min", "dense"] = "min"
    #: Designations per group, on rank: ranks ≤ top_n are "top", the bottom_n last ranks "bottom".
    top_n: int = Field(default=0, ge=0)
    bottom_n: int = Field(default=0, ge=0)
    #: A flag on published scores below this (rule D: under 70 → admonition talk); None = no flag.
    threshold: float | None = None
    #: Grade bands (rule E); empty = no grades. Ordered by `min`, highest first, when applied.
    grades: tuple[GradeBand, ...] = ()
    points: PointsSpec = PointsSpec()
    composite: CompositeSpec = CompositeSpec()
    rate_deduction: RateDeductionSpec = RateDeductionSpec()
    ci: CISpec = CISpec()

    @model_validator(mode="after")
    def _consistent(self) -> ScoringSpec:
        problems: list[str] = []
        if self.rule == "satisfaction_rate" and self.rate_deduction.fraction is None:
            problems.append(
                "rule satisfaction_rate: state rate_deduction.fraction (exact, floor or ceil): "
                "how a fraction of a percentage point is treated"
            )
        if self.rule == "composite" and not self.composite.weights:
            problems.append("rule composite: give composite.weights for every unit group")
        codes = [band.code for band in self.grades]
        if len(set(codes)) != len(codes):
            problems.append("grades: duplicate grade codes")
        if sum(band.min is None for band in self.grades) > 1:
            problems.append("grades: only one band may leave out min (the lowest)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def letter(self) -> str:
        return RULE_LETTERS[self.rule]

    @property
    def value_rule(self) -> BaseRule | Literal["satisfaction_rate"]:
        """The rule that turns answers into a unit's (sub-)score: rule D delegates to its base rule."""
        return self.composite.base_rule if self.rule == "composite" else self.rule

    def sorted_grades(self) -> tuple[GradeBand, ...]:
        return tuple(
            sorted(self.grades, key=lambda band: -math.inf if band.min is None else band.min, reverse=True)
        )


def scoring_problems(spec: CampaignSpec) -> list[tuple[str, str]]:
    """
    Problems between `[scoring]` and the rest of the campaign, as (key path, message).

    Pydantic validates `ScoringSpec` alone; these checks need the scale and the groups. The
    engine refuses a campaign with any of them; `collect campaign check` should list them.
    """
    scoring = spec.scoring
    problems: list[tuple[str, str]] = []
    rule = scoring.value_rule
    if rule in ("level_rates", "aspect_value_sum") and spec.scale.kind != "levels":
        problems.append(("scoring.rule", f"rule {rule} needs a levels scale with values, not points"))
    if rule == "mean_points" and spec.scale.kind != "points":
        problems.append(("scoring.rule", "rule mean_points needs a points scale (e.g. 0–10)"))
    if rule == "satisfaction_rate":
        if spec.scale.kind == "levels" and not spec.scale.satisfied:
            problems.append(
                ("scale.satisfied", "rule satisfaction_rate: name the levels that count as satisfied")
            )
        if spec.scale.kind == "points" and spec.scale.satisfied_min_points is None:
            problems.append(
                ("scale.satisfied_min_points", "rule satisfaction_rate: give the lowest satisfied point")
            )
    if scoring.rule == "composite":
        groups = {unit.group for unit in spec.units}
        missing = sorted(groups - set(scoring.composite.weights))
        if missing:
            problems.append(
                ("scoring.composite.weights", f"no method weights for group(s) {', '.join(missing)}")
            )
        unknown = sorted(set(scoring.composite.weights) - {g.code for g in spec.groups})
        if unknown:
            problems.append(("scoring.composite.weights", f"unknown group(s) {', '.join(unknown)}"))
    return problems
