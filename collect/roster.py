"""
Rosters (sampling frames) and ballot links.

A roster row becomes a respondent keyed by HMAC(roster id); a phone number, if given, is
keyed too (so SMS and call-centre rows find the same person) and kept in clear only in
`contact`, for sending. A roster with any bad row is refused whole, every problem listed:
a sampling frame that is half in is worse than none.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from collect.ballot import Problem
from collect.campaign import CampaignSpec, Tier, Unit
from collect.dedupe.keys import keyed_hash, new_nonce, sha256_hex, token_for
from collect.phones import normalise_phone
from collect.store import Store
from collect.store.campaigns import load_campaign, load_campaign_by_id
from collect.store.tables import AUDIT, BALLOT, CONTACT, INVITATION, RESPONDENT, utcnow
from collect.tables_io import read_table

# Header names as operators write them, in Chinese or English, to the roster field.
HEADERS = {
    "id": "id",
    "roster_id": "id",
    "编号": "id",
    "序号": "id",
    "phone": "phone",
    "mobile": "phone",
    "手机": "phone",
    "手机号": "phone",
    "手机号码": "phone",
    "电话": "phone",
    "联系电话": "phone",
    "unit": "unit",
    "own_unit": "unit",
    "所属单位": "unit",
    "单位": "unit",
    "units": "units",
    "assigned_units": "units",
    "测评单位": "units",
    "name": "name",
    "姓名": "name",
}
# Names are personal data the store does not need: the roster id identifies the row.
_DROPPED = {"name"}


class RosterError(ValueError):
    """A roster refused whole; `problems` lists every bad row and field."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p.field}: {p.detail}" for p in problems[:200])
        more = f"\n  … and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{source}: roster refused, {len(problems)} problem(s):\n{lines}{more}")


@dataclass(frozen=True, slots=True)
class RosterRow:
    roster_id: str
    phone: str | None
    own_unit: str | None
    assigned_units: tuple[str, ...] | None
    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class RosterResult:
    added: int
    updated: int
    rows: int


def parse_roster(frame: pl.DataFrame, spec: CampaignSpec, tier: Tier, source: str) -> list[RosterRow]:
    """Check every row; raise RosterError listing all problems (row numbers as Excel shows them)."""
    columns = {c: HEADERS.get(c.strip().lower(), HEADERS.get(c.strip(), c.strip())) for c in frame.columns}
    if "id" not in columns.values():
        raise RosterError(
            source, [Problem("header", "no_id_column", f"no id column (编号/id) among {frame.columns}")]
        )
    frame = frame.rename(columns)
    problems: list[Problem] = []
    rows: list[RosterRow] = []
    ids = Counter(str(v).strip() for v in frame["id"].to_list() if v is not None)
    for number, record in enumerate(frame.iter_rows(named=True), start=2):
        values = {k: (str(v).strip() if v is not None else "") for k, v in record.items()}
        if not any(values.values()):
            continue  # blank line
        roster_id = values.get("id", "")
        where = f"row {number}"
        if not roster_id:
            problems.append(Problem(f"{where}.id", "missing_id", f"{where}: no id"))
            continue
        if ids[roster_id] > 1:
            problems.append(
                Problem(
                    f"{where}.id", "duplicate_id", f"{where}: id {roster_id!r} appears {ids[roster_id]} times"
                )
            )
        phone = None
        if values.get("phone"):
            phone = normalise_phone(values["phone"])
            if phone is None:
                problems.append(
                    Problem(
                        f"{where}.phone",
                        "invalid_phone",
                        f"{where}: {values['phone']!r} is not a valid phone number",
                    )
                )
        own_unit = values.get("unit") or None
        if own_unit is not None and spec.unit(own_unit) is None:
            own_unit = _unit_by_name(spec, own_unit)
            if own_unit is None:
                problems.append(
                    Problem(
                        f"{where}.unit",
                        "unknown_unit",
                        f"{where}: unit {values['unit']!r} is not in {spec.code}",
                    )
                )
        assigned: tuple[str, ...] | None = None
        if values.get("units"):
            assigned = tuple(
                u.strip()
                for u in values["units"].replace("；", ";").replace(",", ";").split(";")
                if u.strip()
            )
            unknown = [u for u in assigned if spec.unit(u) is None]
            if unknown:
                problems.append(
                    Problem(
                        f"{where}.units", "unknown_unit", f"{where}: units {unknown} are not in {spec.code}"
                    )
                )
        elif tier.rates == "assigned":
            problems.append(
                Problem(
                    f"{where}.units",
                    "no_assigned_units",
                    f"{where}: tier {tier.code} rates assigned units; none given",
                )
            )
        if tier.rates == "all_but_own" and own_unit is None:
            problems.append(
                Problem(
                    f"{where}.unit",
                    "no_own_unit",
                    f"{where}: tier {tier.code} rates all but their own unit; unit missing",
                )
            )
        attributes = {
            k: v for k, v in values.items() if k not in {"id", "phone", "unit", "units"} | _DROPPED and v
        }
        rows.append(RosterRow(roster_id, phone, own_unit, assigned, attributes))
    if problems:
        raise RosterError(source, problems)
    return rows


def _unit_by_name(spec: CampaignSpec, name: str) -> str | None:
    match = [u for u in spec.units if u.name == name]
    return match[0].code if len(match) == 1 else None


def import_roster(
    store: Store, campaign_code: str, tier_code: str, path: Path, *, actor: str
) -> RosterResult:
    """Read, check and upsert a roster file for one tier, in one transaction."""
    secret = store.settings.secret()
    with store.engine.begin() as connection:
        campaign = load_campaign(store, connection, campaign_code)
        if campaign is None:
            raise LookupError(f"campaign {campaign_code!r} does not exist")
        tier = campaign.spec.tier(tier_code)
        if tier is None:
            raise LookupError(f"tier {tier_code!r} is not in campaign {campaign_code}")
        if tier.source != "roster":
            raise LookupError(f"tier {tier_code!r} is open to the public and has no roster")
        rows = parse_roster(read_table(path), campaign.spec, tier, str(path))
        existing = {
            r.key: r.id
            for r in connection.execute(
                sa.select(RESPONDENT.c.key, RESPONDENT.c.id).where(RESPONDENT.c.campaign_id == campaign.id)
            )
        }
        added = updated = 0
        for row in rows:
            key = keyed_hash(secret, campaign_code, "roster_id", row.roster_id)
            values: dict[str, Any] = {
                "tier_code": tier_code,
                "phone_key": keyed_hash(secret, campaign_code, "phone", row.phone) if row.phone else None,
                "own_unit": row.own_unit,
                "assigned_units": list(row.assigned_units) if row.assigned_units is not None else None,
                "attributes": row.attributes or None,
            }
            if key in existing:
                respondent_id = existing[key]
                connection.execute(
                    sa.update(RESPONDENT).where(RESPONDENT.c.id == respondent_id).values(**values)
                )
                connection.execute(
                    sa.delete(CONTACT).where(
                        CONTACT.c.respondent_id == respondent_id, CONTACT.c.kind != "opt_out"
                    )
                )
                updated += 1
            else:
                respondent_id = connection.execute(
                    sa.insert(RESPONDENT)
                    .values(
                        campaign_id=campaign.id,
                        key=key,
                        in_sample=tier.sampling == "all",
                        created_at=utcnow(),
                        **values,
                    )
                    .returning(RESPONDENT.c.id)
                ).scalar_one()
                added += 1
            contacts = [{"respondent_id": respondent_id, "kind": "roster_id", "value": row.roster_id}]
            if row.phone:
                contacts.append({"respondent_id": respondent_id, "kind": "phone", "value": row.phone})
            connection.execute(sa.insert(CONTACT), contacts)
        connection.execute(
            sa.insert(AUDIT).values(
                at=utcnow(),
                actor=actor,
                action="roster.import",
                campaign_code=campaign_code,
                target=tier_code,
                detail={
                    "file": path.name,
                    "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "added": added,
                    "updated": updated,
                },
            )
        )
    return RosterResult(added=added, updated=updated, rows=len(rows))


@dataclass(frozen=True, slots=True)
class IssuedLink:
    roster_id: str
    tier: str
    url: str
    new: bool


def issue_invitations(
    store: Store, campaign_code: str, *, tier_code: str | None = None, actor: str
) -> list[IssuedLink]:
    """
    One ballot link per sampled respondent; re-running prints the same links (tokens derive from
    stored nonces) and only creates links for respondents who have none.
    """
    secret = store.settings.secret()
    base = store.settings.public_url.rstrip("/")
    links: list[IssuedLink] = []
    with store.engine.begin() as connection:
        campaign = load_campaign(store, connection, campaign_code)
        if campaign is None:
            raise LookupError(f"campaign {campaign_code!r} does not exist")
        if tier_code is not None and campaign.spec.tier(tier_code) is None:
            raise LookupError(f"tier {tier_code!r} is not in campaign {campaign_code}")
        query = (
            sa.select(RESPONDENT.c.id, RESPONDENT.c.tier_code, CONTACT.c.value.label("roster_id"))
            .join(CONTACT, sa.and_(CONTACT.c.respondent_id == RESPONDENT.c.id, CONTACT.c.kind == "roster_id"))
            .where(RESPONDENT.c.campaign_id == campaign.id, RESPONDENT.c.in_sample.is_(True))
            .order_by(RESPONDENT.c.tier_code, CONTACT.c.value)
        )
        if tier_code is not None:
            query = query.where(RESPONDENT.c.tier_code == tier_code)
        nonces = {
            r.respondent_id: r.nonce
            for r in connection.execute(
                sa.select(INVITATION.c.respondent_id, INVITATION.c.nonce).where(
                    INVITATION.c.campaign_id == campaign.id, INVITATION.c.revoked_at.is_(None)
                )
            )
        }
        created = 0
        for row in connection.execute(query).all():
            nonce = nonces.get(row.id)
            new = nonce is None
            if nonce is None:
                nonce = new_nonce()
                connection.execute(
                    sa.insert(INVITATION).values(
                        campaign_id=campaign.id,
                        respondent_id=row.id,
                        nonce=nonce,
                        token_sha256=sha256_hex(token_for(secret, nonce)),
                        created_at=utcnow(),
                    )
                )
                created += 1
            links.append(
                IssuedLink(row.roster_id, row.tier_code, f"{base}/b/{token_for(secret, nonce)}", new)
            )
        connection.execute(
            sa.insert(AUDIT).values(
                at=utcnow(),
                actor=actor,
                action="tokens.issue",
                campaign_code=campaign_code,
                target=tier_code,
                detail={"links": len(links), "created": created},
            )
        )
    return links


@dataclass(frozen=True, slots=True)
class TokenBallot:
    """What a web ballot page needs for one token: who may rate what, and what is already in."""

    campaign_id: int
    spec: CampaignSpec
    tier: Tier
    units: tuple[Unit, ...]
    voted: dict[str, str]  # unit code → ballot status of this respondent's latest ballot
    not_sampled: bool


def lookup_token(store: Store, token: str) -> TokenBallot | None:
    """None for an unknown or revoked token (the page answers 404 either way: no oracle)."""
    with store.reader.connect() as connection:
        invitation = connection.execute(
            sa.select(INVITATION).where(
                INVITATION.c.token_sha256 == sha256_hex(token), INVITATION.c.revoked_at.is_(None)
            )
        ).first()
        if invitation is None:
            return None
        respondent = connection.execute(
            sa.select(RESPONDENT).where(RESPONDENT.c.id == invitation.respondent_id)
        ).one()
        campaign = load_campaign_by_id(store, connection, invitation.campaign_id)
        if campaign is None:
            return None
        tier = campaign.spec.tier(respondent.tier_code)
        if tier is None:
            return None
        if tier.rates == "all_but_own":
            units = tuple(u for u in campaign.spec.units if u.code != respondent.own_unit)
        elif tier.rates == "assigned":
            assigned = set(respondent.assigned_units or [])
            units = tuple(u for u in campaign.spec.units if u.code in assigned)
        else:
            units = campaign.spec.units
        voted = {
            r.unit_code: r.status
            for r in connection.execute(
                sa.select(BALLOT.c.unit_code, BALLOT.c.status)
                .where(BALLOT.c.campaign_id == campaign.id, BALLOT.c.voter_key == respondent.key)
                .order_by(BALLOT.c.id)
            )
        }
        return TokenBallot(
            campaign_id=campaign.id,
            spec=campaign.spec,
            tier=tier,
            units=units,
            voted=voted,
            not_sampled=tier.sampling == "draw" and not respondent.in_sample,
        )
