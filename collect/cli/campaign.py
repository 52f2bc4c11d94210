"""`collect campaign check|load|list|show` and `collect db upgrade`."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from collect.campaign import CampaignFileError, CampaignSpec, load_campaign_file
from collect.cli import cli, pass_app
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed
from collect.store.campaigns import CampaignLocked, save_campaign
from collect.store.tables import BALLOT, CAMPAIGN, SUBMISSION

out = Console(highlight=False, soft_wrap=True)


def actor_name() -> str:
    """Who runs a CLI command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "cli:unknown"


@cli.group()
def campaign() -> None:
    """Campaign definitions (TOML): check, load, list, show."""


@campaign.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def campaign_check(file: Path) -> None:
    """Validate FILE and print every problem with its key path and line (exit 2 if any)."""
    if not file.is_file():
        raise CommandFailed(f"{file}: no such file")
    spec = load_campaign_file(str(file))  # CampaignFileError → exit 2 with every problem
    out.print(
        f"{file}: ok — {spec.code}: {len(spec.units)} units in {len(spec.groups)} groups, "
        f"{len(spec.tiers)} tiers, {len(spec.aspects)} aspects, scale {spec.scale.kind}, {spec.policy}"
    )


@campaign.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--force", is_flag=True, help="Change scale, tiers, weights or policy under existing ballots (recorded)."
)
@pass_app
def campaign_load(app: AppContext, file: Path, force: bool) -> None:
    """Create or update a campaign from FILE (idempotent)."""
    if not file.is_file():
        raise CommandFailed(f"{file}: no such file")
    spec = load_campaign_file(str(file))
    try:
        with app.store.engine.begin() as connection:
            action = save_campaign(connection, spec, actor=actor_name(), force=force)
    except CampaignLocked as exc:
        raise CommandFailed(str(exc)) from exc
    out.print(f"campaign {spec.code}: {action} (spec sha256 {spec.sha256()[:12]})")


@campaign.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def campaign_list(app: AppContext, as_json: bool) -> None:
    """List campaigns with their ballot counts."""
    counted = (
        sa.select(sa.func.count())
        .where(BALLOT.c.campaign_id == CAMPAIGN.c.id, BALLOT.c.status == "counted")
        .scalar_subquery()
    )
    received = (
        sa.select(sa.func.count()).where(SUBMISSION.c.campaign_code == CAMPAIGN.c.code).scalar_subquery()
    )
    with app.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                CAMPAIGN.c.code, CAMPAIGN.c.name, CAMPAIGN.c.opens_at, CAMPAIGN.c.closes_at, received, counted
            ).order_by(CAMPAIGN.c.code)
        ).all()
    items = [
        {
            "code": r[0],
            "name": r[1],
            "opens_at": str(r[2]),
            "closes_at": str(r[3]),
            "received": r[4],
            "counted": r[5],
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    table = Table("code", "name", "opens", "closes", "received", "counted")
    for item in items:
        table.add_row(
            *(str(item[k]) for k in ("code", "name", "opens_at", "closes_at", "received", "counted"))
        )
    out.print(table)


@campaign.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="The stored spec as JSON.")
@pass_app
def campaign_show(app: AppContext, code: str, as_json: bool) -> None:
    """Show a campaign's stored definition."""
    with app.store.engine.connect() as connection:
        row = connection.execute(sa.select(CAMPAIGN).where(CAMPAIGN.c.code == code)).first()
    if row is None:
        raise CommandFailed(f"campaign {code!r} does not exist (see `collect campaign list`)")
    spec = CampaignSpec.model_validate_json(row.spec_json)
    if as_json:
        click.echo(json.dumps(spec.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    out.print(f"[bold]{spec.code}[/bold] {spec.name}  ({spec.opens_at} → {spec.closes_at}, {spec.timezone})")
    out.print(f"policy {spec.policy}; channels {', '.join(spec.channels)}; spec sha256 {row.spec_sha256}")
    scale = Table("level", "中文", "value", title=f"scale ({spec.scale.kind})")
    for level in spec.scale.levels:
        scale.add_row(level.code, level.zh, f"{level.value:g}")
    if spec.scale.kind == "points":
        scale.add_row("points", f"{spec.scale.min_points}–{spec.scale.max_points}", "")
    if spec.scale.dont_know:
        scale.add_row("dont_know", spec.scale.dont_know_zh, "excluded")
    out.print(scale)
    tiers = Table("tier", "中文", "weight", "quota", "source", "rates", title="tiers")
    for tier in spec.tiers:
        tiers.add_row(
            tier.code,
            tier.zh,
            f"{tier.weight:g}",
            str(tier.quota or ""),
            f"{tier.source}/{tier.sampling}",
            tier.rates,
        )
    out.print(tiers)
    units = Table("unit", "name", "group", "windows", title="units")
    for unit in spec.units:
        units.add_row(unit.code, unit.name, unit.group, ", ".join(w.code for w in unit.windows))
    out.print(units)


@cli.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_app
def db_upgrade(app: AppContext, revision: str) -> None:
    """Apply migrations."""
    from collect.store.migrate import upgrade

    app.store_unmigrated().ping()
    upgrade(app.settings.database_url, revision)
    out.print(f"database at {revision}")


__all__ = ["CampaignFileError", "campaign", "db"]
