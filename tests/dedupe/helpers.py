"""Synthetic campaigns for the dedupe tests: rosters, forms with planted photocopies."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from collect.ballot import Answer, BallotSubmission
from collect.campaign import CampaignSpec
from tests.store.factories import RECEIVED, at

LEVELS = ("satisfied", "fairly_satisfied", "basically_satisfied", "not_very_satisfied", "dissatisfied")
# A plausible skew: most people are satisfied, few are not. Independent across units (the null).
WEIGHTS = (0.45, 0.25, 0.15, 0.1, 0.05)
UNITS = ("S01", "S02", "S03", "S04", "O01", "O02", "O03")
DISTRIBUTIONS = ("units", "booths", "county", "volunteers", "newspaper")


@dataclass(frozen=True)
class Form:
    ref: str
    levels: tuple[str, ...]
    distribution: str
    copy_of: str | None = None


def synthetic_forms(n_forms: int, planted: Sequence[int], seed: int) -> list[Form]:
    """
    `n_forms` forms in all; for each k in `planted`, one original and k photocopies of it
    (copies are extra forms with the original's answers, mostly mailed via the newspaper).
    """
    rng = random.Random(seed)
    n_copies = sum(planted)
    forms = [
        Form(f"f{i:06d}", tuple(rng.choices(LEVELS, WEIGHTS, k=len(UNITS))), rng.choice(DISTRIBUTIONS))
        for i in range(n_forms - n_copies)
    ]
    originals = rng.sample(forms, len(planted))
    for original, copies in zip(originals, planted, strict=True):
        forms.extend(
            Form(f"{original.ref}-c{j}", original.levels, "newspaper", copy_of=original.ref)
            for j in range(copies)
        )
    return forms


def answers_frame(forms: Sequence[Form]) -> pl.LazyFrame:
    """The frame clusters.find_clusters reads from the store, built directly."""
    rows = [
        (i, unit, level, f'{{"distribution": "{form.distribution}"}}')
        for i, form in enumerate(forms, start=1)
        for unit, level in zip(UNITS, form.levels, strict=True)
    ]
    return pl.LazyFrame(
        {
            "submission_id": [r[0] for r in rows],
            "unit_code": [r[1] for r in rows],
            "aspect_code": ["overall"] * len(rows),
            "level_code": [r[2] for r in rows],
            "points": pl.Series([None] * len(rows), dtype=pl.Int64),
            "dont_know": [False] * len(rows),
            "meta": [r[3] for r in rows],
        }
    )


def paper_submission(spec: CampaignSpec, form: Form, minute: int) -> BallotSubmission:
    """An unserialed paper form: no identity, so each form is its own transaction (open tier)."""
    return BallotSubmission(
        campaign=spec.code,
        channel="paper",
        source_ref=form.ref,
        identity=None,
        answers=tuple(
            Answer(unit=u, aspect="overall", level=level) for u, level in zip(UNITS, form.levels, strict=True)
        ),
        answered_at=at(minute),
        received_at=RECEIVED,
        tier="public",
        meta={"distribution": form.distribution},
    )


def write_roster(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    pl.DataFrame(list(rows)).write_csv(path)
    return path
