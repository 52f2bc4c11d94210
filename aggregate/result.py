"""
One scoring run: engine input + campaign (+ deductions) → a `ScoreResult` every output renders.

`compute` is the single entry point the CLI, the demo and the tests use; nothing here reads the
database (see reader.py) or writes files (see publish.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from aggregate import ci as ci_module
from aggregate.inputs import inputs_sha256
from aggregate.rankings import rank_units
from aggregate.scores import ScoreFrames, score_frames
from collect.campaign import CampaignSpec


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """
    The published results of one campaign.

    units: one row per unit in published order (group, rank, unit), with raw `score` and
        published `score_pub`, `ci_lo_pub`/`ci_hi_pub`, `rank`, `designation`, `grade`,
        `below_threshold`, `inseparable`, `missing`, `refused`, `rate`, `deductions`.
    The other frames are those of `ScoreFrames`; `deductions` lists the rows applied.
    """

    spec: CampaignSpec
    computed_at: str
    inputs_sha256: str
    units: pl.DataFrame
    frames: ScoreFrames
    deductions: pl.DataFrame | None

    @property
    def campaign(self) -> str:
        return self.spec.code

    @property
    def refused(self) -> list[str]:
        """Units left without a score because `missing_tier = "refuse"` and a tier had no ballots."""
        return self.units.filter(pl.col("refused"))["unit"].to_list()


def computed_at_now(override: str | None = None) -> str:
    """
    The `computed_at` stamp: `override` if given, else SOURCE_DATE_EPOCH (the reproducible-builds
    convention) if set, else now. Everything else in the output depends on the inputs only.
    """
    if override:
        return override
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def compute(
    answers: pl.LazyFrame | pl.DataFrame,
    spec: CampaignSpec,
    *,
    deductions: pl.DataFrame | None = None,
    computed_at: str | None = None,
) -> ScoreResult:
    """
    Score a campaign.

    Args:
        answers: the engine input (scores.INPUT_SCHEMA): one row per answer of a counted ballot.
        deductions: validated deductions (inputs.read_deductions), subtracted from the score.
        computed_at: the stamp to print; see `computed_at_now`.

    Raises:
        scores.ScoringError: the campaign cannot be scored as stated.
    """
    lazy = answers.lazy()
    frames = score_frames(lazy, spec, deductions)
    interval = ci_module.interval(frames.ballots, frames.units, frames.parts, spec)
    units = rank_units(frames.units.join(interval, on="unit", how="left"), spec.scoring)
    return ScoreResult(
        spec=spec,
        computed_at=computed_at_now(computed_at),
        inputs_sha256=inputs_sha256(lazy, spec, deductions, ballots=frames.ballots),
        units=units,
        frames=frames,
        deductions=deductions,
    )
