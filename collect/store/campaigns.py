"""
Campaigns in the store: saving a validated spec (with its units and tiers mirrored for SQL),
and loading it back for ingest(), cached briefly per process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.campaign import CampaignSpec
from collect.store.tables import AUDIT, BALLOT, CAMPAIGN, TIER, UNIT, utcnow

if TYPE_CHECKING:
    from collect.store.engine import Store


# Ingest reads the spec on every ballot; a few seconds of staleness after `campaign load`
# is harmless because changes that matter to counting are refused once ballots exist.
_CACHE_SECONDS = 5.0
_cache: dict[tuple[int, str], tuple[float, LoadedCampaign]] = {}


@dataclass(frozen=True, slots=True)
class LoadedCampaign:
    id: int
    spec: CampaignSpec
    spec_sha256: str


class CampaignLocked(Exception):
    """Scale, tiers or weights would change under existing ballots (use --force, recorded)."""


def load_campaign(store: Store, connection: Connection, code: str) -> LoadedCampaign | None:
    key = (id(store.root), code)  # one cache entry whatever transaction it is read in
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
        return hit[1]
    row = connection.execute(
        sa.select(CAMPAIGN.c.id, CAMPAIGN.c.spec_json, CAMPAIGN.c.spec_sha256).where(CAMPAIGN.c.code == code)
    ).first()
    if row is None:
        return None
    loaded = LoadedCampaign(row.id, CampaignSpec.model_validate_json(row.spec_json), row.spec_sha256)
    _cache[key] = (time.monotonic(), loaded)
    return loaded


def load_campaign_by_id(store: Store, connection: Connection, campaign_id: int) -> LoadedCampaign | None:
    code = connection.execute(
        sa.select(CAMPAIGN.c.code).where(CAMPAIGN.c.id == campaign_id)
    ).scalar_one_or_none()
    return None if code is None else load_campaign(store, connection, code)


def forget_cached(code: str) -> None:
    for key in [k for k in _cache if k[1] == code]:
        del _cache[key]


def _counting_part(spec: CampaignSpec) -> dict[str, Any]:
    """What may not change under existing ballots without --force."""
    dumped = spec.model_dump(mode="json")
    return {k: dumped[k] for k in ("scale", "tiers", "aspects", "policy")}


def save_campaign(connection: Connection, spec: CampaignSpec, *, actor: str, force: bool = False) -> str:
    """
    Create or update a campaign from its spec (idempotent).

    Returns:
        "created", "updated" or "unchanged".

    Raises:
        CampaignLocked: scale, tiers, weights, aspects or policy would change while ballots
            exist and `force` is not given.
    """
    sha = spec.sha256()
    existing = connection.execute(sa.select(CAMPAIGN).where(CAMPAIGN.c.code == spec.code)).first()
    if existing is not None and existing.spec_sha256 == sha:
        return "unchanged"
    now = utcnow()
    values = {
        "name": spec.name,
        "spec_json": spec.canonical_json(),
        "spec_sha256": sha,
        "opens_at": spec.opens_at,
        "closes_at": spec.closes_at,
        "updated_at": now,
    }
    if existing is None:
        campaign_id = connection.execute(
            sa.insert(CAMPAIGN).values(code=spec.code, created_at=now, **values).returning(CAMPAIGN.c.id)
        ).scalar_one()
        action = "created"
        detail: dict[str, Any] = {"spec_sha256": sha}
    else:
        campaign_id = existing.id
        old = CampaignSpec.model_validate_json(existing.spec_json)
        has_ballots = connection.execute(
            sa.select(sa.func.count()).select_from(BALLOT).where(BALLOT.c.campaign_id == campaign_id)
        ).scalar_one()
        counting_changed = _counting_part(old) != _counting_part(spec)
        if has_ballots and counting_changed and not force:
            raise CampaignLocked(
                f"campaign {spec.code} has {has_ballots} ballots: its scale, tiers, weights, aspects "
                "or policy cannot change without --force (the change is then recorded in the audit log)"
            )
        connection.execute(sa.update(CAMPAIGN).where(CAMPAIGN.c.id == campaign_id).values(**values))
        action = "updated"
        detail = {
            "from_sha256": existing.spec_sha256,
            "spec_sha256": sha,
            "forced": bool(force and counting_changed),
        }
    _mirror(connection, campaign_id, spec)
    connection.execute(
        sa.insert(AUDIT).values(
            at=now,
            actor=actor,
            action=f"campaign.{action}",
            campaign_code=spec.code,
            target=spec.code,
            detail=detail,
        )
    )
    forget_cached(spec.code)
    return action


def _mirror(connection: Connection, campaign_id: int, spec: CampaignSpec) -> None:
    """Keep `unit` and `tier` equal to the spec (rows of removed units stay: ballots refer to codes)."""
    units = {r.code: r for r in connection.execute(sa.select(UNIT).where(UNIT.c.campaign_id == campaign_id))}
    for unit in spec.units:
        if unit.code in units:
            connection.execute(
                sa.update(UNIT)
                .where(UNIT.c.id == units[unit.code].id)
                .values(name=unit.name, group_code=unit.group)
            )
        else:
            connection.execute(
                sa.insert(UNIT).values(
                    campaign_id=campaign_id, code=unit.code, name=unit.name, group_code=unit.group
                )
            )
    tiers = {r.code: r for r in connection.execute(sa.select(TIER).where(TIER.c.campaign_id == campaign_id))}
    for tier in spec.tiers:
        values = {"label": tier.zh, "weight": tier.weight, "quota": tier.quota, "source": tier.source}
        if tier.code in tiers:
            connection.execute(sa.update(TIER).where(TIER.c.id == tiers[tier.code].id).values(**values))
        else:
            connection.execute(sa.insert(TIER).values(campaign_id=campaign_id, code=tier.code, **values))
