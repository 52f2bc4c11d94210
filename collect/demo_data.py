"""
Synthetic respondents and answers for `collect demo`: a realistic spread, reproducible.

Every unit gets a latent quality; each respondent's level for a unit is drawn around it, so
the ranking has a clear top and bottom but also near-ties the confidence intervals flag.
All names and numbers are made up (phone numbers in the 138-0000 test range style).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from collect.campaign import CampaignSpec, Tier

DEMO_SEED = 20260701

# Strata of the service-recipient frame, as in the branch-office source: 10 key enterprises,
# 5 sole traders and 3 townships drawn from a larger frame.
RECIPIENT_STRATA = (("重点企业", 30, 10), ("个体工商户", 20, 5), ("乡镇", 9, 3))


@dataclass(frozen=True, slots=True)
class RosterFile:
    tier: str
    path: Path
    rows: int


def _phone(rng: random.Random) -> str:
    # Mobile prefixes that phonenumbers accepts as valid for CN.
    return f"1{rng.choice(('38', '39', '37', '50', '58', '86'))}{rng.randint(10_000_000, 99_999_999)}"


def write_rosters(spec: CampaignSpec, directory: Path, seed: int = DEMO_SEED) -> list[RosterFile]:
    """One CSV roster per roster tier, shaped like what an office would hand over."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    files: list[RosterFile] = []
    for tier in spec.tiers:
        if tier.source != "roster":
            continue
        rows = _roster_rows(spec, tier, rng)
        path = directory / f"{tier.code}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["编号", "手机号码", "所属单位", "类别", "规模"])
            writer.writerows(rows)
        files.append(RosterFile(tier.code, path, len(rows)))
    return files


def _roster_rows(spec: CampaignSpec, tier: Tier, rng: random.Random) -> list[list[str]]:
    prefix = tier.code[:3].upper()
    if tier.rates == "all_but_own":
        # Peer review: two representatives per unit rate every other unit.
        return [
            [f"{prefix}-{unit.code}-{k}", _phone(rng), unit.code, "科所代表", ""]
            for unit in spec.units
            for k in (1, 2)
        ]
    if tier.sampling == "draw":
        rows = []
        for stratum, size, _drawn in RECIPIENT_STRATA:
            for k in range(size):
                rows.append(
                    [f"{prefix}-{stratum[:2]}{k:03d}", _phone(rng), "", stratum, str(rng.randint(5, 500))]
                )
        return rows
    count = tier.quota or 10
    return [[f"{prefix}-{k:03d}", _phone(rng), "", tier.zh, ""] for k in range(1, count + 1)]


def unit_profiles(spec: CampaignSpec, seed: int = DEMO_SEED) -> dict[str, list[float]]:
    """Per unit, the probability of each level (best first), from a latent quality in [0, 1]."""
    rng = random.Random(seed + 1)
    levels = len(spec.scale.levels) or (spec.scale.max_points - spec.scale.min_points + 1)
    profiles: dict[str, list[float]] = {}
    for index, unit in enumerate(spec.units):
        # Spread qualities evenly, then jitter: a clear order with a few close neighbours.
        quality = 0.35 + 0.6 * (1 - index / max(len(spec.units) - 1, 1)) + rng.uniform(-0.08, 0.08)
        weights = [max(0.02, (1 - abs(quality - (1 - k / (levels - 1)))) ** 3) for k in range(levels)]
        total = sum(weights)
        profiles[unit.code] = [w / total for w in weights]
    return profiles


def draw_level(spec: CampaignSpec, profile: list[float], rng: random.Random) -> str:
    """A level code drawn from a unit's profile."""
    return rng.choices(spec.scale.level_codes, weights=profile, k=1)[0]
