"""`collect roster import`, `collect tokens issue`, `collect user create`, `collect apikey create`."""

from __future__ import annotations

import csv
from pathlib import Path

import click
from rich.console import Console

from collect.access import AccessError, create_api_key, create_user
from collect.cli import cli, pass_app
from collect.cli.campaign import actor_name
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed
from collect.roster import RosterError, import_roster, issue_invitations
from collect.tables_io import TableFileError

out = Console(highlight=False, soft_wrap=True)


@cli.group()
def roster() -> None:
    """Rosters (sampling frames) of respondents."""


@roster.command("import")
@click.argument("campaign")
@click.argument("tier")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def roster_import(app: AppContext, campaign: str, tier: str, file: Path) -> None:
    """Import FILE (CSV/XLSX: id, phone, unit, units, other columns as attributes) into TIER."""
    try:
        result = import_roster(app.store, campaign, tier, file, actor=actor_name())
    except (RosterError, TableFileError, LookupError) as exc:
        raise CommandFailed(str(exc).strip("'\"")) from exc
    out.print(f"roster {campaign}/{tier}: {result.rows} rows, {result.added} added, {result.updated} updated")


@cli.group()
def tokens() -> None:
    """Ballot links for invited respondents."""


@tokens.command("issue")
@click.argument("campaign")
@click.option("--tier", default=None, help="Only this tier.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def tokens_issue(app: AppContext, campaign: str, tier: str | None, out_file: Path) -> None:
    """Write one ballot link per sampled respondent to a CSV (roster_id, tier, url)."""
    try:
        links = issue_invitations(app.store, campaign, tier_code=tier, actor=actor_name())
    except LookupError as exc:
        raise CommandFailed(str(exc).strip("'\"")) from exc
    # The file holds live ballot links: readable by its owner only.
    out_file.touch(mode=0o600, exist_ok=True)
    with out_file.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["roster_id", "tier", "url"])
        for link in links:
            writer.writerow([link.roster_id, link.tier, link.url])
    new = sum(link.new for link in links)
    out.print(f"{len(links)} links written to {out_file} ({new} new)")


@cli.group()
def user() -> None:
    """Operator console accounts."""


@user.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "operator", "clerk", "viewer"]), required=True)
@click.password_option(help="Asked for when not given (at least 10 characters).")
@pass_app
def user_create(app: AppContext, name: str, role: str, password: str) -> None:
    """Create an operator account."""
    try:
        create_user(app.store, name, role, password, actor=actor_name())
    except AccessError as exc:
        raise CommandFailed(str(exc)) from exc
    out.print(f"user {name} created with role {role}")


@cli.group()
def apikey() -> None:
    """API keys for rating devices and integrations."""


@apikey.command("create")
@click.argument("name")
@pass_app
def apikey_create(app: AppContext, name: str) -> None:
    """Create an API key; it is printed once and never stored."""
    try:
        key = create_api_key(app.store, name, actor=actor_name())
    except AccessError as exc:
        raise CommandFailed(str(exc)) from exc
    click.echo(key)
    Console(stderr=True).print(
        f"API key {name!r} created; keep it now: it cannot be shown again.", style="dim"
    )
