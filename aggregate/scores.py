"""
Rules A–E of domain.md as lazy polars expressions: answers in, per-unit scores out.

Every rule has one shape: score = Σ over (method, tier) of an effective weight × a tier score,
where a tier score aggregates aspects (mean for A, B, E; sum for C) of the mean answer value
over the tier's valid answers ("don't know" excluded). Rule D adds a level (methods weighted per
group) and deductions; rule E maps the tier-weighted satisfaction rate to 100 − deduction.
No row loops: each step is a group-by over the answers, and nothing assumes row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from collect.campaign import CampaignSpec
from collect.scoring_spec import scoring_problems

#: The reader's output and the engine's input: one row per answer of a counted ballot.
INPUT_SCHEMA = pl.Schema(
    {
        "ballot_id": pl.Int64,
        "unit": pl.String,
        "group": pl.String,
        "tier": pl.String,
        "channel": pl.String,
        "aspect": pl.String,
        "level": pl.String,
        "points": pl.Int64,
        "dont_know": pl.Boolean,
    }
)

#: The method of every ballot when the rule is not composite (rule D): one method, weight 1.
SINGLE_METHOD = "all"

Policy = Literal["renormalise", "zero", "refuse"]


class ScoringError(ValueError):
    """The campaign or its inputs cannot be scored as stated; carries every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class ScoreFrames:
    """
    Everything one computation produces, collected (small: one row per unit, tier, level).

    units: unit, name, group, cast, valid, value (tier-weighted value before rule E's mapping
        and deductions), rate (rule E's satisfaction rate), rate_deduction, deductions, score
        (raw float), missing (tiers or methods without valid ballots), refused.
    parts: unit, method, tier, cast, valid, score, n_aspects, weight (as stated), tier_weight
        (applied within the method), method_weight (applied), eff_weight, quota, shortfall.
    methods: unit, method, cast, valid, score, weight (stated for the group), applied_weight.
    rates: unit, method, tier, level, rate (levels scales: mean over aspects of level shares).
    weighted_rates: unit, level, rate (Σ eff_weight × rate).
    counts: unit, method, tier, aspect, answer, n (what the explanation shows).
    ballots: one row per ballot (see `ballot_table`): what intervals and the inputs hash use.
    """

    units: pl.DataFrame
    parts: pl.DataFrame
    methods: pl.DataFrame
    rates: pl.DataFrame
    weighted_rates: pl.DataFrame
    counts: pl.DataFrame
    ballots: pl.DataFrame


def check_spec(spec: CampaignSpec) -> None:
    """Refuse a campaign whose `[scoring]` does not fit its scale or groups."""
    problems = [f"{path}: {message}" for path, message in scoring_problems(spec)]
    if spec.scoring.rule == "composite":
        unmapped = sorted(set(spec.channels) - set(spec.scoring.composite.methods))
        if unmapped:
            problems.append(f"scoring.composite.methods: no method for channel(s) {', '.join(unmapped)}")
    if problems:
        raise ScoringError(problems)


def _method_expr(spec: CampaignSpec) -> pl.Expr:
    if spec.scoring.rule != "composite":
        return pl.lit(SINGLE_METHOD, dtype=pl.String)
    mapping = dict(spec.scoring.composite.methods)
    return pl.col("channel").replace_strict(mapping, default=None, return_dtype=pl.String)


def _value_expr(spec: CampaignSpec) -> pl.Expr:
    """The number one valid answer contributes, per the rule (level value, points × k, satisfied 0/1)."""
    rule = spec.scoring.value_rule
    scale = spec.scale
    if rule in ("level_rates", "aspect_value_sum"):
        values = {level.code: float(level.value) for level in scale.levels}
        return pl.col("level").replace_strict(values, default=None, return_dtype=pl.Float64)
    if rule == "mean_points":
        return pl.col("points").cast(pl.Float64) * spec.scoring.points.multiplier
    # Rule E: 1 for an answer in the scale's satisfied levels (or at/above the satisfied point).
    if scale.kind == "levels":
        return pl.col("level").is_in(list(scale.satisfied)).cast(pl.Float64)
    threshold = scale.satisfied_min_points if scale.satisfied_min_points is not None else scale.max_points
    return (pl.col("points") >= threshold).cast(pl.Float64)


def prepared(answers: pl.LazyFrame, spec: CampaignSpec) -> pl.LazyFrame:
    """
    Answers with `method`, `valid` (a level or points, not "don't know") and `value` (null
    unless valid). Answers for units or tiers the campaign does not know are kept: `validate`
    reports them.
    """
    answered = (
        pl.col("level").is_not_null() if spec.scale.kind == "levels" else pl.col("points").is_not_null()
    )
    valid = answered & ~pl.col("dont_know").fill_null(False)
    return (
        answers.select(INPUT_SCHEMA.names())
        .cast(INPUT_SCHEMA)
        .with_columns(_method_expr(spec).alias("method"), valid.alias("valid"))
        .with_columns(pl.when(pl.col("valid")).then(_value_expr(spec)).alias("value"))
    )


def validate(fine: pl.DataFrame, spec: CampaignSpec) -> list[str]:
    """
    Problems in the answers themselves: unknown units, tiers, aspects, levels, points out of
    range, channels without a method (rule D). Checked on the per-category counts, not rows.
    """
    scale = spec.scale
    checks: list[tuple[str, pl.Expr]] = [
        ("unit", ~pl.col("unit").is_in([u.code for u in spec.units])),
        ("tier", ~pl.col("tier").is_in([t.code for t in spec.tiers])),
        ("aspect", ~pl.col("aspect").is_in([a.code for a in spec.aspects])),
    ]
    if scale.kind == "levels":
        checks.append(
            ("level", pl.col("level").is_not_null() & ~pl.col("level").is_in(list(scale.level_codes)))
        )
    else:
        checks.append(
            (
                "points",
                pl.col("points").is_not_null()
                & ~pl.col("points").is_between(scale.min_points, scale.max_points),
            )
        )
    if spec.scoring.rule == "composite":
        checks.append(("channel", pl.col("method").is_null()))
    checks = [(column, expr) for column, expr in checks if column in fine.columns]
    problems: list[str] = []
    for column, expr in checks:
        bad = fine.filter(expr.fill_null(True))[column].cast(pl.String).fill_null("(none)").unique().sort()
        if bad.len():
            shown = ", ".join(bad.head(5).to_list()) + (" …" if bad.len() > 5 else "")
            problems.append(f"answers name {column}(s) the campaign does not know: {shown}")
    return problems


def digit_base(spec: CampaignSpec) -> int:
    """Base of the per-aspect answer digits of `ballot_table` (0 none, 1 don't know, 2… answers)."""
    scale = spec.scale
    return len(scale.levels) + 2 if scale.kind == "levels" else scale.max_points - scale.min_points + 3


def signature_fits(spec: CampaignSpec) -> bool:
    """Whether a ballot's answers fit one Int64 signature (else the hash uses text lines)."""
    return bool(digit_base(spec) ** len(spec.aspects) < 2**62)


def ballot_table(data: pl.LazyFrame, spec: CampaignSpec) -> pl.LazyFrame:
    """
    One row per ballot, from the prepared answers in one pass: unit, method, tier, channel,
    `valid` (any valid answer), `n` (answers), per aspect i `v{i}` (its value, 0 when not
    valid) and `m{i}` (1 when valid), and `signature`: the answers as one base-b number, a
    digit per aspect (0 none, 1 don't know, 2… the level's position or the points), which with
    unit, tier, channel and n identifies the ballot's content for the inputs hash.
    """
    scale = spec.scale
    base = digit_base(spec)
    if scale.kind == "levels":
        digits = {code: i + 2 for i, code in enumerate(scale.level_codes)}
        answer = pl.col("level").replace_strict(digits, default=None, return_dtype=pl.Int64)
    else:
        answer = pl.col("points") - scale.min_points + 2
    digit = pl.when(pl.col("dont_know").fill_null(False)).then(pl.lit(1, pl.Int64)).otherwise(answer)
    fits = signature_fits(spec)
    place: pl.Expr = pl.lit(None, pl.Int64)
    columns: list[pl.Expr] = []
    # One string lookup per answer, then integer comparisons per aspect.
    position = {a.code: i for i, a in enumerate(spec.aspects)}
    data = data.with_columns(
        pl.col("aspect").replace_strict(position, default=None, return_dtype=pl.Int32).alias("_aspect")
    )
    for i in range(len(spec.aspects)):
        hit = pl.col("_aspect") == i
        counted = hit & pl.col("valid")
        columns += [
            pl.when(counted).then(pl.col("value")).otherwise(0.0).alias(f"v{i}"),
            counted.cast(pl.Int64).alias(f"m{i}"),
        ]
        if fits:
            place = pl.when(hit).then(pl.lit(base**i, pl.Int64)).otherwise(place)
    columns.append((digit * place).alias("signature") if fits else pl.lit(None, pl.Int64).alias("signature"))
    per_aspect = [f"v{i}" for i in range(len(spec.aspects))] + [f"m{i}" for i in range(len(spec.aspects))]
    return (
        data.with_columns(columns)
        .group_by("ballot_id")
        .agg(
            pl.col("unit").first(),
            pl.col("method").first(),
            pl.col("tier").first(),
            pl.col("channel").first(),
            pl.col("valid").any(),
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("signature").sum(),
            pl.col("signature").is_null().any().alias("unsigned"),
            *(pl.col(c).sum() for c in per_aspect),
        )
    )


def _combine(
    parts: pl.LazyFrame, expected: pl.LazyFrame, keys: list[str], part: str, policy: Policy
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """
    Weighted combination of part scores (tiers in a method, methods in a unit) under a policy.

    `expected` lists (keys, part, weight) that should have a score; `parts` has (keys, part, score).
    Returns (expected rows with `applied` weight and `score`, per-key `score` with `missing`/`refused`).
    renormalise: present weights divided by their sum; zero: a missing part scores 0 at its
    weight; refuse: any missing weighted part leaves the key without a score.
    """
    present = pl.col("score").is_not_null() & (pl.col("weight") > 0)
    rows = expected.join(parts.select(*keys, part, "score"), on=[*keys, part], how="left").with_columns(
        pl.when(present).then(pl.col("weight")).otherwise(0.0).sum().over(keys).alias("_present_weight"),
        (~present & (pl.col("weight") > 0)).any().over(keys).alias("_any_missing"),
    )
    if policy == "renormalise":
        applied = pl.when(present).then(pl.col("weight") / pl.col("_present_weight")).otherwise(0.0)
    elif policy == "zero":
        applied = pl.col("weight")
    else:
        applied = pl.when(pl.col("_any_missing")).then(None).otherwise(pl.col("weight"))
    rows = rows.with_columns(
        pl.when(pl.col("_present_weight") > 0).then(applied).otherwise(None).cast(pl.Float64).alias("applied")
    )
    combined = rows.group_by(keys).agg(
        (pl.col("applied") * pl.col("score").fill_null(0.0)).sum().alias("score"),
        pl.col("applied").is_null().any().alias("_no_score"),
        pl.col(part).filter(~present & (pl.col("weight") > 0)).sort().alias("missing"),
        pl.col("_any_missing").first().alias("_any_missing"),
    )
    combined = combined.with_columns(
        pl.when(pl.col("_no_score")).then(None).otherwise(pl.col("score")).alias("score"),
        (pl.col("_any_missing") & pl.lit(policy == "refuse")).alias("refused"),
    ).drop("_no_score", "_any_missing")
    return rows.drop("_present_weight", "_any_missing"), combined


def _units_frame(spec: CampaignSpec) -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "unit": [u.code for u in spec.units],
            "name": [u.name for u in spec.units],
            "group": [u.group for u in spec.units],
        },
        schema={"unit": pl.String, "name": pl.String, "group": pl.String},
    )


def _tiers_frame(spec: CampaignSpec) -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "tier": [t.code for t in spec.tiers],
            "weight": [float(t.weight) for t in spec.tiers],
            "quota": [t.quota for t in spec.tiers],
        },
        schema={"tier": pl.String, "weight": pl.Float64, "quota": pl.Int64},
    )


def _method_weights_frame(spec: CampaignSpec) -> pl.LazyFrame:
    """(group, method, weight): stated per group for rule D, one method of weight 1 otherwise."""
    if spec.scoring.rule != "composite":
        rows = [(g, SINGLE_METHOD, 1.0) for g in sorted({u.group for u in spec.units})]
    else:
        rows = [
            (group, method, float(weight))
            for group, by_method in sorted(spec.scoring.composite.weights.items())
            for method, weight in sorted(by_method.items())
        ]
    return pl.LazyFrame(
        rows, schema={"group": pl.String, "method": pl.String, "weight": pl.Float64}, orient="row"
    )


def _deduction_points(value: pl.Expr, spec: CampaignSpec) -> pl.Expr:
    """Rule E: points off for the percentage points of satisfaction rate below the threshold."""
    rd = spec.scoring.rate_deduction
    # The rate's floating noise (0.87 read as 0.8699999999) must not cost a whole point under
    # "ceil": percentage points are cleaned to 9 decimals before they are treated.
    below = ((rd.threshold - value) * 100.0).round(9).clip(lower_bound=0.0)
    if rd.fraction == "floor":
        below = below.floor()
    elif rd.fraction == "ceil":
        below = below.ceil()
    return below * rd.points_per_point


def final_score(value: pl.Expr, deductions: pl.Expr, spec: CampaignSpec) -> pl.Expr:
    """The unit's raw score from its tier-weighted value: rule E's mapping, then deductions."""
    score = value
    if spec.scoring.rule == "satisfaction_rate":
        rd = spec.scoring.rate_deduction
        score = rd.base - _deduction_points(value, spec)
        if rd.floor_at_zero:
            score = score.clip(lower_bound=0.0)
    return score - deductions


def score_frames(
    answers: pl.LazyFrame, spec: CampaignSpec, deductions: pl.DataFrame | None = None
) -> ScoreFrames:
    """
    Compute every rule's tables for one campaign.

    Args:
        answers: the engine input (INPUT_SCHEMA), one row per answer of a counted ballot.
        deductions: per-unit deductions (columns unit, points), already validated; rule D.

    Raises:
        ScoringError: the campaign's scoring does not fit it, or answers name unknown codes.
    """
    check_spec(spec)
    scoring = spec.scoring
    data = prepared(answers, spec)
    keys = ["unit", "method", "tier"]
    # The only two passes over the answers (millions of rows); everything after works on
    # per-category counts and per-ballot rows. A ballot is for one unit, tier and channel.
    # Only the columns that can vary: channels matter only through rule D's methods, and a
    # scale has either levels or points (the other column is null throughout).
    fine_keys = [*keys, "aspect", "level" if spec.scale.kind == "levels" else "points", "valid"]
    if scoring.rule == "composite":
        fine_keys.append("channel")
    fine, per_ballot = pl.collect_all(
        [
            data.group_by(fine_keys).agg(pl.len().alias("n"), pl.col("value").first()),
            ballot_table(data, spec),
        ]
    )
    problems = validate(fine, spec)
    if problems:
        raise ScoringError(problems)

    aggregate_aspects = pl.sum if scoring.value_rule == "aspect_value_sum" else pl.mean
    fine_lazy = fine.lazy()
    ballots = (
        per_ballot.lazy()
        .group_by(keys)
        .agg(pl.len().alias("cast"), pl.col("valid").sum().alias("valid"))
        .with_columns(pl.col("cast").cast(pl.Int64), pl.col("valid").cast(pl.Int64))
    )
    cells = (
        fine_lazy.filter(pl.col("valid"))
        .group_by([*keys, "aspect"])
        .agg(
            pl.col("n").sum().alias("n"),
            ((pl.col("value") * pl.col("n")).sum() / pl.col("n").sum()).alias("mean"),
        )
    )
    tier_scores = cells.group_by(keys).agg(
        aggregate_aspects("mean").alias("score"), pl.col("aspect").n_unique().alias("n_aspects")
    )

    units = _units_frame(spec)
    tiers = _tiers_frame(spec)
    method_weights = _method_weights_frame(spec)
    unit_methods = units.join(method_weights, on="group").select("unit", "method", pl.col("weight"))

    if scoring.rule == "composite":
        # Within a method, the tiers that answered through it share its weight (docs/scoring.md).
        expected_tiers = ballots.select(keys).join(tiers.select("tier", "weight"), on="tier")
        tier_policy: Policy = "renormalise"
    else:
        expected_tiers = unit_methods.select("unit", "method").join(
            tiers.select("tier", "weight"), how="cross"
        )
        tier_policy = scoring.missing_tier
    tier_rows, method_scores = _combine(tier_scores, expected_tiers, ["unit", "method"], "tier", tier_policy)
    method_rows, unit_scores = _combine(method_scores, unit_methods, ["unit"], "method", scoring.missing_tier)
    if scoring.rule != "composite":
        # One method of weight 1: what is missing (and refused) are the unit's tiers.
        unit_scores = unit_scores.drop("missing", "refused").join(
            method_scores.select("unit", "missing", "refused"), on="unit", how="left"
        )

    parts = (
        tier_rows.rename({"applied": "tier_weight"})
        .drop("score")
        .join(
            method_rows.select("unit", "method", pl.col("applied").alias("method_weight")),
            on=["unit", "method"],
        )
        .join(tier_scores, on=keys, how="left")
        .join(ballots, on=keys, how="left")
        .join(tiers.select("tier", "quota"), on="tier", how="left")
        .with_columns(
            pl.col("cast").fill_null(0).cast(pl.Int64),
            pl.col("valid").fill_null(0).cast(pl.Int64),
            (pl.col("method_weight") * pl.col("tier_weight")).alias("eff_weight"),
        )
        .with_columns(
            pl.when(pl.col("quota").is_not_null())
            .then((pl.col("quota") - pl.col("valid")).clip(lower_bound=0))
            .alias("shortfall")
        )
    )

    methods = (
        method_rows.rename({"applied": "applied_weight"})
        .join(
            ballots.group_by("unit", "method").agg(pl.col("cast").sum(), pl.col("valid").sum()),
            on=["unit", "method"],
            how="left",
        )
        .with_columns(pl.col("cast").fill_null(0).cast(pl.Int64), pl.col("valid").fill_null(0).cast(pl.Int64))
    )

    if deductions is None:
        deduction_totals = pl.LazyFrame(schema={"unit": pl.String, "deductions": pl.Float64})
    else:
        deduction_totals = (
            deductions.lazy()
            .group_by("unit")
            .agg(pl.col("points").cast(pl.Float64).sum().alias("deductions"))
        )
    unit_ballots = (
        per_ballot.lazy().group_by("unit").agg(pl.len().alias("cast"), pl.col("valid").sum().alias("valid"))
    )
    unit_table = (
        units.join(unit_scores.rename({"score": "value"}), on="unit", how="left")
        .join(unit_ballots, on="unit", how="left")
        .join(deduction_totals, on="unit", how="left")
        .with_columns(
            pl.col("cast").fill_null(0).cast(pl.Int64),
            pl.col("valid").fill_null(0).cast(pl.Int64),
            pl.col("deductions").fill_null(0.0),
            pl.col("missing").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("refused").fill_null(False),
        )
        .with_columns(
            (pl.col("value") if scoring.rule == "satisfaction_rate" else pl.lit(None, pl.Float64)).alias(
                "rate"
            ),
            (
                _deduction_points(pl.col("value"), spec)
                if scoring.rule == "satisfaction_rate"
                else pl.lit(None, pl.Float64)
            ).alias("rate_deduction"),
            final_score(pl.col("value"), pl.col("deductions"), spec).alias("score"),
        )
    )

    if spec.scale.kind == "levels":
        aspect_rates = (
            fine_lazy.filter(pl.col("valid"))
            .group_by([*keys, "aspect", "level"])
            .agg(pl.col("n").sum())
            .with_columns((pl.col("n") / pl.col("n").sum().over([*keys, "aspect"])).alias("rate"))
        )
        rates = (
            aspect_rates.group_by([*keys, "level"])
            .agg(pl.col("rate").sum().alias("rate_sum"))
            .join(tier_scores.select(*keys, "n_aspects"), on=keys)
            # An aspect without a given level contributes a rate of 0 to the mean over aspects.
            .select(*keys, "level", (pl.col("rate_sum") / pl.col("n_aspects")).alias("rate"))
        )
        weighted_rates = (
            rates.join(parts.select(*keys, "eff_weight"), on=keys)
            .group_by("unit", "level")
            .agg((pl.col("rate") * pl.col("eff_weight").fill_null(0.0)).sum().alias("rate"))
        )
    else:
        rates = pl.LazyFrame(
            schema={**dict.fromkeys(keys, pl.String), "level": pl.String, "rate": pl.Float64}
        )
        weighted_rates = pl.LazyFrame(schema={"unit": pl.String, "level": pl.String, "rate": pl.Float64})

    answer_label = (
        pl.when(~pl.col("valid"))
        .then(pl.lit("dont_know"))
        .otherwise(pl.col("level") if spec.scale.kind == "levels" else pl.col("points").cast(pl.String))
    )
    counts = fine_lazy.group_by([*keys, "aspect", answer_label.alias("answer")]).agg(pl.col("n").sum())

    unit_frame, part_frame, method_frame, rate_frame, weighted_frame, count_frame = pl.collect_all(
        [
            unit_table.sort("group", "unit"),
            parts.sort(keys),
            methods.sort("unit", "method"),
            rates.sort([*keys, "level"]),
            weighted_rates.sort("unit", "level"),
            counts.sort([*keys, "aspect", "answer"]),
        ]
    )
    return ScoreFrames(
        units=unit_frame,
        parts=part_frame,
        methods=method_frame,
        rates=rate_frame,
        weighted_rates=weighted_frame,
        counts=count_frame,
        ballots=per_ballot,
    )
