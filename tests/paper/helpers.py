"""A small paper campaign (open tier, five levels, three units × two aspects) and file writers."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from collect.campaign import CampaignSpec, check_campaign_text
from collect.store import Store
from collect.store.campaigns import save_campaign

CODE = "paper-2026"
CAMPAIGN_TOML = """
code = "paper-2026"
name = "2026年政风行风评议"
opens_at = 2026-10-01T00:00:00+08:00
closes_at = 2027-06-30T23:59:59+08:00
channels = ["paper", "web"]

[scale]
kind = "levels"
satisfied = ["satisfied", "fairly_satisfied"]
[[scale.levels]]
code = "satisfied"
zh = "满意"
en = "Satisfied"
value = 100
[[scale.levels]]
code = "fairly_satisfied"
zh = "比较满意"
en = "Fairly satisfied"
value = 80
[[scale.levels]]
code = "basically_satisfied"
zh = "基本满意"
en = "Basically satisfied"
value = 60
[[scale.levels]]
code = "not_very_satisfied"
zh = "不太满意"
en = "Not very satisfied"
value = 40
[[scale.levels]]
code = "dissatisfied"
zh = "不满意"
en = "Dissatisfied"
value = 0

[[aspects]]
code = "style"
zh = "工作作风"
[[aspects]]
code = "efficiency"
zh = "办事效率"

[[units]]
code = "U1"
name = "市场监管所"
[[units]]
code = "U2"
name = "税务分局"
[[units]]
code = "U3"
name = "不动产登记中心"

[[tiers]]
code = "public"
zh = "社会各界群众"
weight = 1.0
source = "open"
"""

ANSWER_HEADERS = ["U1/style", "U1/efficiency", "U2/style", "U2/efficiency", "U3/style", "U3/efficiency"]


def spec() -> CampaignSpec:
    return check_campaign_text(CAMPAIGN_TOML)


def load(store: Store) -> CampaignSpec:
    campaign = spec()
    with store.engine.begin() as connection:
        save_campaign(connection, campaign, actor="test")
    return campaign


def write_toml(path: Path) -> Path:
    path.write_text(CAMPAIGN_TOML, encoding="utf-8")
    return path


def write_entries(
    path: Path, rows: Sequence[dict[str, str]], *, headers: Sequence[str] | None = None
) -> Path:
    """A keyed-entry CSV: serial, signature, clerk, date and the six answers (level numbers)."""
    fields = list(headers or ["编号", "校验码", "录入员", "填表日期", *ANSWER_HEADERS])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def answers(*levels: int) -> dict[str, str]:
    """Six answers as box numbers (1 = 满意 … 5 = 不满意), U1/style first."""
    return {header: str(level) for header, level in zip(ANSWER_HEADERS, levels, strict=True)}
