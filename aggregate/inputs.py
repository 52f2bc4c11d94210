"""
The inputs of a score besides the ballots' rows: the deductions file (rule D) and the hash that
identifies ballots + campaign + deductions, so an auditor can tell two results came from the
same inputs. The hash covers ballot content, not database ids: the same ballots imported in
another order, split over several files or held in another database hash the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from aggregate.scores import ballot_table, prepared, signature_fits
from collect.campaign import ALL_CHANNELS, CampaignSpec

#: Bumped whenever the canonical form below changes (old hashes then no longer compare).
HASH_VERSION = "collect-score-inputs/2"

DEDUCTION_COLUMNS = ("unit", "date", "kind", "points", "note")

_CHUNK = 200_000


class DeductionsError(ValueError):
    """A deductions file that cannot be used; `problems` names each row (1-based, header = 1)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def read_deductions(path: str | Path, spec: CampaignSpec) -> pl.DataFrame:
    """
    Read a deductions CSV (UTF-8, with header unit,date,kind,points,note), e.g. rule D's
    daily-inspection deductions: 0.5–1 per person-time of misconduct, 0.1 per instance.

    Returns:
        columns unit, date, kind, points (Float64, ≥ 0: points taken off), note; in file order.

    Raises:
        DeductionsError: with every bad row (line number as a spreadsheet shows it).
    """
    source = str(path)
    try:
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
    except (pl.exceptions.ComputeError, OSError, UnicodeDecodeError) as exc:
        raise DeductionsError(source, [f"cannot read as UTF-8 CSV: {exc}"]) from exc
    frame = frame.rename({c: c.strip().lstrip("\ufeff").lower() for c in frame.columns})
    missing = [c for c in DEDUCTION_COLUMNS if c not in frame.columns]
    if missing:
        raise DeductionsError(
            source, [f"missing column(s) {', '.join(missing)}; expected {','.join(DEDUCTION_COLUMNS)}"]
        )
    frame = frame.select(
        pl.col("unit").str.strip_chars(),
        pl.col("date").str.strip_chars(),
        pl.col("kind").str.strip_chars().fill_null(""),
        pl.col("points").str.strip_chars().alias("points_text"),
        pl.col("points").str.strip_chars().cast(pl.Float64, strict=False).alias("points"),
        pl.col("note").fill_null(""),
    ).with_row_index("line", offset=2)
    units = {u.code for u in spec.units}
    problems: list[str] = []
    bad_unit = frame.filter(~pl.col("unit").is_in(list(units)) | pl.col("unit").is_null())
    problems += [
        f"line {r['line']}: unit '{r['unit']}' is not in campaign {spec.code}"
        for r in bad_unit.iter_rows(named=True)
    ]
    bad_points = frame.filter(
        pl.col("points").is_null() | ~pl.col("points").is_finite() | (pl.col("points") < 0)
    )
    problems += [
        f"line {r['line']}: points '{r['points_text']}' must be a number ≥ 0 (points taken off)"
        for r in bad_points.iter_rows(named=True)
    ]
    if problems:
        raise DeductionsError(source, problems)
    return frame.select(DEDUCTION_COLUMNS)


def empty_deductions() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "unit": pl.String,
            "date": pl.String,
            "kind": pl.String,
            "points": pl.Float64,
            "note": pl.String,
        }
    )


def canonical_ballots(answers: pl.LazyFrame) -> pl.LazyFrame:
    """
    One text line per ballot: unit, tier, channel and its answers sorted by aspect; lines
    sorted. The general canonical form, used when the compact one below cannot hold a ballot.
    """
    answer = pl.concat_str(
        pl.col("aspect"),
        pl.lit("="),
        pl.when(pl.col("dont_know").fill_null(False))
        .then(pl.lit("?"))
        .when(pl.col("level").is_not_null())
        .then(pl.lit("L:") + pl.col("level"))
        .otherwise(pl.lit("P:") + pl.col("points").cast(pl.String).fill_null("")),
    )
    return (
        answers.select("ballot_id", "unit", "tier", "channel", answer.alias("answer"))
        .group_by("ballot_id")
        .agg(
            pl.col("unit").first(),
            pl.col("tier").first(),
            pl.col("channel").first(),
            pl.col("answer").sort().str.join(";"),
        )
        .select(pl.concat_str("unit", "tier", "channel", "answer", separator="\t").alias("line"))
        .sort("line")
    )


def compact_ballots(ballots: pl.DataFrame, spec: CampaignSpec) -> pl.DataFrame | None:
    """
    Each ballot (rows of `scores.ballot_table`) as five integers: unit, tier and channel (their
    positions in the spec and in ALL_CHANNELS), number of answers, and its answers signature.
    Sorted; the spec, hashed alongside, pins what the positions mean. None when a signature
    does not fit in 62 bits or a code is unknown: the text form is used then.
    """
    if not signature_fits(spec) or ballots["unsigned"].any():
        return None
    position: dict[str, dict[str, int]] = {
        "unit": {u.code: i for i, u in enumerate(spec.units)},
        "tier": {t.code: i for i, t in enumerate(spec.tiers)},
        "channel": {c: i for i, c in enumerate(ALL_CHANNELS)},
    }
    rows = ballots.select(
        *(pl.col(c).replace_strict(m, default=None, return_dtype=pl.Int64) for c, m in position.items()),
        "n",
        "signature",
    )
    if any(rows[c].null_count() for c in position):
        return None
    return rows.sort(["unit", "tier", "channel", "n", "signature"])


def inputs_sha256(
    answers: pl.LazyFrame,
    spec: CampaignSpec,
    deductions: pl.DataFrame | None,
    ballots: pl.DataFrame | None = None,
) -> str:
    """
    SHA-256 of the campaign spec (canonical JSON), the canonical ballots and the deductions.

    Args:
        ballots: `scores.ballot_table` of the same answers, when already computed (saves a pass).
    """
    if ballots is None:
        ballots = ballot_table(prepared(answers, spec), spec).collect()
    digest = hashlib.sha256()
    digest.update(f"{HASH_VERSION}\nspec\n".encode())
    digest.update(spec.canonical_json().encode())
    compact = compact_ballots(ballots, spec)
    if compact is not None:
        digest.update(b"\nballots int64le unit,tier,channel,n,answers\n")
        digest.update(compact.to_numpy().astype("<i8").tobytes())
    else:
        digest.update(b"\nballots text\n")
        lines = canonical_ballots(answers).collect()["line"]
        for start in range(0, len(lines), _CHUNK):
            digest.update(lines.slice(start, _CHUNK).str.join("\n").item().encode())
            digest.update(b"\n")
    digest.update(b"deductions\n")
    if deductions is not None and deductions.height:
        ordered = deductions.select(DEDUCTION_COLUMNS).sort(DEDUCTION_COLUMNS)
        digest.update(ordered.write_csv(line_terminator="\n").encode())
    return digest.hexdigest()
