"""
Publication rounding: half away from zero ("half-up", as the sources' tables do), at the edge only.

Raw scores are floats; the same value reached by different ballots can differ in the 15th digit
(1.00499999999 instead of 1.005). So a value is first cleaned to `GUARD` decimals past the
published ones, then rounded half away from zero to a whole number of 10^-decimals steps
(`steps`, exact integers: ranks compare these). The published float is parsed from the decimal
text of those steps, so it is the double nearest the printed decimal (19.9, never
19.900000000000002, which polars' float division can give) and never -0.0.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import polars as pl

#: Extra decimals kept before the publication rounding, to drop floating-point noise.
GUARD = 6


def steps(expr: pl.Expr, decimals: int) -> pl.Expr:
    """`expr` in whole 10^-decimals steps (Int64), rounded half away from zero after the guard."""
    scaled = (expr * 10.0**decimals).round(GUARD, mode="half_to_even")
    return ((scaled.abs() + 0.5).floor() * scaled.sign()).cast(pl.Int64)


def from_steps(count: pl.Expr, decimals: int) -> pl.Expr:
    """The Float64 nearest the decimal `count` × 10^-decimals, via its text."""
    if decimals == 0:
        return count.cast(pl.Float64)
    magnitude = count.abs()
    text = pl.concat_str(
        (magnitude // 10**decimals).cast(pl.String),
        pl.lit("."),
        (magnitude % 10**decimals).cast(pl.String).str.zfill(decimals),
    )
    value = text.cast(pl.Float64)
    return pl.when(count < 0).then(-value).otherwise(value).name.keep()


def publish(expr: pl.Expr, decimals: int) -> pl.Expr:
    """The published value of `expr`: `decimals` decimals, half away from zero (0.5 → 1, -2.5 → -3)."""
    return from_steps(steps(expr, decimals), decimals)


def publish_value(value: float | None, decimals: int) -> float | None:
    """`publish` for one Python float (reports, explanations); same result as the expression."""
    if value is None:
        return None
    scaled = round(value * 10.0**decimals, GUARD)
    whole = Decimal(repr(scaled)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(whole.scaleb(-decimals)) + 0.0
