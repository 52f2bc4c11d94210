"""
Ranks, designations, grades and flags, all on the published (rounded) score.

Ranking on raw floats would split real ties (the same score reached by different ballots can
differ in the 15th digit), so every comparison here uses the value the table prints.
"""

from __future__ import annotations

import polars as pl

from aggregate.rounding import publish
from collect.scoring_spec import ScoringSpec


def grade_expr(score: pl.Expr, scoring: ScoringSpec) -> pl.Expr:
    """The grade code of a published score: the highest band whose `min` it reaches."""
    bands = scoring.sorted_grades()
    if not bands:
        return pl.lit(None, pl.String)
    # Built from the lowest band up, so the highest band reached wins (the outermost `when`).
    expr: pl.Expr = pl.lit(None, pl.String)
    for band in reversed(bands):
        condition = score.is_not_null() if band.min is None else score >= band.min
        expr = pl.when(condition).then(pl.lit(band.code)).otherwise(expr)
    return expr


def rank_units(units: pl.DataFrame, scoring: ScoringSpec) -> pl.DataFrame:
    """
    Add `score_pub`, `ci_lo_pub`, `ci_hi_pub`, `rank`, `designation`, `grade`,
    `below_threshold` and `inseparable` (neighbours in rank whose published intervals overlap).

    Units are ranked within their group, high to low; units without a score get no rank.
    "top" goes to ranks ≤ top_n, "bottom" to the bottom_n lowest ranks counted from the
    bottom (ties at the boundary all included); a unit that would be both is "top".
    """
    d = scoring.decimals
    ranked = units.with_columns(
        publish(pl.col("score"), d).alias("score_pub"),
        publish(pl.col("ci_lo"), d).alias("ci_lo_pub"),
        publish(pl.col("ci_hi"), d).alias("ci_hi_pub"),
    ).with_columns(
        pl.col("score_pub").rank(scoring.ties, descending=True).over("group").cast(pl.Int64).alias("rank"),
        pl.col("score_pub")
        .rank(scoring.ties, descending=False)
        .over("group")
        .cast(pl.Int64)
        .alias("_rank_up"),
    )
    designation = (
        pl.when(pl.col("rank") <= scoring.top_n)
        .then(pl.lit("top"))
        .when(pl.col("_rank_up") <= scoring.bottom_n)
        .then(pl.lit("bottom"))
        .otherwise(pl.lit(None, pl.String))
    )
    threshold = (
        pl.lit(None, pl.Boolean)
        if scoring.threshold is None
        else pl.when(pl.col("score_pub").is_not_null()).then(pl.col("score_pub") < scoring.threshold)
    )
    ranked = (
        ranked.with_columns(
            designation.alias("designation"),
            grade_expr(pl.col("score_pub"), scoring).alias("grade"),
            threshold.alias("below_threshold"),
        )
        .drop("_rank_up")
        # Published order: group, rank, then unit code to break ties the same way every time.
        .sort("group", "rank", "unit", nulls_last=True)
    )
    return ranked.with_columns(_inseparable(ranked).alias("inseparable"))


def _inseparable(ranked: pl.DataFrame) -> pl.Series:
    """For each unit, the ranked neighbours (above, below) whose published intervals overlap."""

    def overlaps(shift: int) -> pl.Expr:
        other_lo = pl.col("ci_lo_pub").shift(shift).over("group")
        other_hi = pl.col("ci_hi_pub").shift(shift).over("group")
        other_unit = pl.col("unit").shift(shift).over("group")
        hit = (
            pl.col("rank").is_not_null()
            & pl.col("rank").shift(shift).over("group").is_not_null()
            & (pl.col("ci_lo_pub") <= other_hi)
            & (other_lo <= pl.col("ci_hi_pub"))
        )
        return pl.when(hit).then(other_unit)

    frame = ranked.select(overlaps(1).alias("above"), overlaps(-1).alias("below"))
    return frame.select(pl.concat_list("above", "below").list.drop_nulls().alias("inseparable")).to_series()
