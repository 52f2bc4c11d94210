"""
Confidence intervals of unit scores, stratified by tier (and, for rule D, method).

"analytic": each tier score is a mean (or sum) of per-aspect ratio means; its variance is
estimated by linearisation over ballots, n/(n−1) Σ dᵢ², and tiers add up as Σ w² var.
"bootstrap": ballots are resampled within each (unit, method, tier) stratum with a seed derived
from the campaign's seed and the stratum's codes, so adding a unit changes no other unit's
interval, and ballots are put in content order first, so their ids or order never matter.
Both give an interval of the tier-weighted value, clipped to the scale's range and then mapped
through rule E and the deductions (both monotone), so the interval matches the published score.
"""

from __future__ import annotations

import hashlib
from statistics import NormalDist

import numpy as np
import polars as pl

from aggregate.scores import final_score
from collect.campaign import CampaignSpec

KEYS = ["unit", "method", "tier"]


def value_range(spec: CampaignSpec) -> tuple[float, float]:
    """The lowest and highest tier-weighted value the rule can give (before rule E and deductions)."""
    rule = spec.scoring.value_rule
    if rule == "satisfaction_rate":
        return 0.0, 1.0
    if rule == "mean_points":
        k = spec.scoring.points.multiplier
        return spec.scale.min_points * k, spec.scale.max_points * k
    values = [float(level.value) for level in spec.scale.levels]
    low, high = min(values), max(values)
    if rule == "aspect_value_sum":
        n = len(spec.aspects)
        return min(low, n * low), max(high, n * high)
    return low, high


def _mean_aspects(spec: CampaignSpec) -> bool:
    return spec.scoring.value_rule != "aspect_value_sum"


def analytic_variance(ballots: pl.DataFrame, parts: pl.DataFrame, spec: CampaignSpec) -> pl.LazyFrame:
    """Per unit: `var` of the tier-weighted value (null when a weighted tier has < 2 valid ballots)."""
    n_aspects = len(spec.aspects)
    valid = ballots.lazy().filter(pl.col("valid"))
    counts = [pl.col(f"m{i}").sum().over(KEYS) for i in range(n_aspects)]
    present = (
        pl.sum_horizontal([(c > 0).cast(pl.Int64) for c in counts]) if _mean_aspects(spec) else pl.lit(1)
    )
    # dᵢ = Σ over the ballot's valid answers of (value − aspect mean) / (answers to the aspect × aspects)
    influence = (
        pl.sum_horizontal(
            [
                pl.when(counts[i] > 0)
                .then(
                    pl.col(f"m{i}")
                    * (pl.col(f"v{i}") - pl.col(f"v{i}").sum().over(KEYS) / counts[i])
                    / counts[i]
                )
                .otherwise(0.0)
                for i in range(n_aspects)
            ]
        )
        / present
    )
    per_tier = (
        valid.with_columns(influence.alias("d"))
        .group_by(KEYS)
        .agg((pl.col("d") ** 2).sum().alias("ss"), pl.len().alias("nb"))
        .with_columns(
            pl.when(pl.col("nb") > 1).then(pl.col("ss") * pl.col("nb") / (pl.col("nb") - 1)).alias("var_t")
        )
    )
    weighted = parts.lazy().filter(pl.col("eff_weight") > 0).select(*KEYS, "eff_weight")
    return (
        weighted.join(per_tier, on=KEYS, how="left")
        .group_by("unit")
        .agg(
            (pl.col("eff_weight") ** 2 * pl.col("var_t")).sum().alias("var"),
            pl.col("var_t").is_null().any().alias("_unknown"),
        )
        .select("unit", pl.when(~pl.col("_unknown")).then(pl.col("var")).alias("var"))
    )


def _stratum_seed(seed: int, unit: str, method: str, tier: str) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{unit}\x1f{method}\x1f{tier}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def bootstrap_bounds(ballots: pl.DataFrame, parts: pl.DataFrame, spec: CampaignSpec) -> pl.DataFrame:
    """
    Per unit: percentile bounds `lo`, `hi` of the tier-weighted value over `resamples` resamples.

    The loop runs over strata (units × tiers), not rows; each stratum is one matrix product.
    Meant for campaigns of modest size: cost grows with ballots × resamples.
    """
    ci = spec.scoring.ci
    aspects = [a.code for a in spec.aspects]
    content = [f"v{i}" for i in range(len(aspects))] + [f"m{i}" for i in range(len(aspects))]
    # Content order, not ballot ids: the same ballots in any order resample the same way.
    ballots = ballots.filter(pl.col("valid")).select(*KEYS, *content).sort([*KEYS, *content])
    weights = {
        (row["unit"], row["method"], row["tier"]): float(row["eff_weight"])
        for row in parts.filter(pl.col("eff_weight") > 0).iter_rows(named=True)
    }
    draws: dict[str, np.ndarray] = {}
    alpha = 1.0 - ci.level
    for (unit, method, tier), stratum in ballots.group_by(KEYS, maintain_order=True):
        weight = weights.get((str(unit), str(method), str(tier)))
        if weight is None:
            continue
        n = stratum.height
        values = stratum.select([f"v{i}" for i in range(len(aspects))]).to_numpy()
        answered = stratum.select([f"m{i}" for i in range(len(aspects))]).to_numpy()
        rng = np.random.RandomState(_stratum_seed(ci.seed, str(unit), str(method), str(tier)))
        picks = rng.randint(0, n, size=(ci.resamples, n))
        offsets = (picks + np.arange(ci.resamples)[:, None] * n).ravel()
        times = np.bincount(offsets, minlength=ci.resamples * n).reshape(ci.resamples, n).astype(np.float64)
        sums, counts = times @ values, times @ answered
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / counts, np.nan)
        tier_scores = np.nanmean(means, axis=1) if _mean_aspects(spec) else np.nansum(means, axis=1)
        draws[str(unit)] = draws.get(str(unit), np.zeros(ci.resamples)) + weight * tier_scores
    units = sorted(draws)
    lows = [float(np.quantile(draws[u], alpha / 2)) for u in units]
    highs = [float(np.quantile(draws[u], 1 - alpha / 2)) for u in units]
    return pl.DataFrame(
        {"unit": units, "lo": lows, "hi": highs},
        schema={"unit": pl.String, "lo": pl.Float64, "hi": pl.Float64},
    )


def interval(
    ballots: pl.DataFrame, units: pl.DataFrame, parts: pl.DataFrame, spec: CampaignSpec
) -> pl.DataFrame:
    """
    Per unit: `ci_lo`, `ci_hi` of the raw score (null for method "none", for a unit without a
    score, or when the data cannot estimate it), in the same units as `score`.
    """
    ci = spec.scoring.ci
    empty = units.select(
        "unit", pl.lit(None, pl.Float64).alias("ci_lo"), pl.lit(None, pl.Float64).alias("ci_hi")
    )
    if ci.method == "none":
        return empty
    low, high = value_range(spec)
    if ci.method == "analytic":
        z = NormalDist().inv_cdf(0.5 + ci.level / 2)
        var = analytic_variance(ballots, parts, spec).collect()
        bounds = (
            units.select("unit", "value")
            .join(var, on="unit", how="left")
            .select(
                "unit",
                (pl.col("value") - z * pl.col("var").sqrt()).alias("lo"),
                (pl.col("value") + z * pl.col("var").sqrt()).alias("hi"),
            )
        )
    else:
        bounds = units.select("unit").join(bootstrap_bounds(ballots, parts, spec), on="unit", how="left")
    return (
        units.select("unit", "value", "deductions")
        .join(bounds, on="unit", how="left")
        .select(
            "unit",
            pl.when(pl.col("value").is_not_null())
            .then(final_score(pl.col("lo").clip(low, high), pl.col("deductions"), spec))
            .alias("ci_lo"),
            pl.when(pl.col("value").is_not_null())
            .then(final_score(pl.col("hi").clip(low, high), pl.col("deductions"), spec))
            .alias("ci_hi"),
        )
        .sort("unit")
    )
