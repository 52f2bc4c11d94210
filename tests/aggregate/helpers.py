"""Build engine input frames and campaign variants for the aggregate tests (synthetic data only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from aggregate.scores import INPUT_SCHEMA
from collect.campaign import CampaignSpec, load_campaign_file

EXAMPLES = Path(__file__).resolve().parents[2] / "collect" / "examples"
FIVE = ["satisfied", "fairly_satisfied", "basically_satisfied", "not_very_satisfied", "dissatisfied"]

#: domain.md rule A worked example: votes per tier for the five levels, weights 20/20/30/30.
WORKED_A: dict[str, list[int]] = {
    "peers": [6, 3, 2, 1, 0],
    "leaders": [3, 2, 0, 0, 0],
    "recipients": [9, 4, 3, 1, 1],
    "supervisors": [12, 5, 2, 1, 0],
}

# One ballot: (unit, tier, {aspect: level code | points | None for "don't know"}, channel)
Ballot = tuple[str, str, Mapping[str, str | int | None], str]


def example(name: str) -> CampaignSpec:
    return load_campaign_file(str(EXAMPLES / f"{name}.toml"))


def variant(spec: CampaignSpec, **changes: Any) -> CampaignSpec:
    """A validated copy of `spec` with top-level keys (or `scoring` keys) replaced."""
    data = spec.model_dump(mode="json")
    scoring = changes.pop("scoring", None)
    data.update(changes)
    if scoring is not None:
        data["scoring"] = {**data["scoring"], **scoring}
    return CampaignSpec.model_validate(data)


def frame(ballots: Iterable[Ballot], spec: CampaignSpec, first_id: int = 1) -> pl.DataFrame:
    groups = {u.code: u.group for u in spec.units}
    rows: list[dict[str, Any]] = []
    for offset, (unit, tier, answers, channel) in enumerate(ballots):
        for aspect, answer in answers.items():
            rows.append(
                {
                    "ballot_id": first_id + offset,
                    "unit": unit,
                    "group": groups.get(unit, "default"),
                    "tier": tier,
                    "channel": channel,
                    "aspect": aspect,
                    "level": answer if isinstance(answer, str) else None,
                    "points": answer if isinstance(answer, int) else None,
                    "dont_know": answer is None,
                }
            )
    return pl.DataFrame(rows, schema=INPUT_SCHEMA)


def level_ballots(unit: str, tier: str, counts: Mapping[str, int], channel: str = "paper") -> list[Ballot]:
    """`counts[level]` single-aspect ("overall") ballots of each level."""
    return [(unit, tier, {"overall": level}, channel) for level, n in counts.items() for _ in range(n)]


def worked_a(unit: str = "S01") -> list[Ballot]:
    ballots: list[Ballot] = []
    for tier, counts in WORKED_A.items():
        ballots += level_ballots(unit, tier, dict(zip(FIVE, counts, strict=True)))
    return ballots
