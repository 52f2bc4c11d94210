"""
`collect paper print|ledger|entries` and `collect import paper|scans`: numbered forms, the
issuance ledger, keyed entry and scans (docs/paper.md).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table

from collect.cli import cli, pass_app
from collect.cli.campaign import actor_name
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed, Problems
from collect.cli.imports import import_group
from collect.paper.entry import EntryRefused, Mode, import_keyed, open_entries
from collect.paper.forms import FormLayoutError
from collect.paper.ledger import build_ledger, issue_forms
from collect.paper.scans import import_scans

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


@cli.group()
def paper() -> None:
    """Paper forms: print numbered forms, the issuance ledger, double-entry status."""


@paper.command("print")
@click.argument("campaign")
@click.option(
    "--channel", "channel", required=True, help="Distribution channel (units, booths, newspaper …)."
)
@click.option("--count", type=click.IntRange(min=1), required=True, help="How many forms.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--batch", help="Batch name (default: the date and the print run's number).")
@click.option(
    "--unserialed",
    is_flag=True,
    help="Forms without a serial (a newspaper form): judged by content only. Records the channel as such.",
)
@pass_app
def paper_print(
    app: AppContext,
    campaign: str,
    channel: str,
    count: int,
    out_file: Path,
    batch: str | None,
    unserialed: bool,
) -> None:
    """Print COUNT numbered forms of CAMPAIGN to a PDF and record every serial in the ledger."""
    if not out_file.parent.is_dir():
        raise CommandFailed(f"{out_file}: the folder {out_file.parent} does not exist")
    try:
        result = issue_forms(
            app.store,
            campaign,
            distribution=channel,
            count=count,
            out=out_file,
            actor=actor_name(),
            batch=batch,
            serialed=not unserialed,
        )
    except (EntryRefused, FormLayoutError) as exc:
        raise CommandFailed(str(exc)) from exc
    numbers = (
        f"forms No. {result.first_seq}–{result.last_seq}" if result.serialed else "forms without serials"
    )
    out.print(
        f"{out_file}: {result.count} {numbers}, {result.pages} pages, channel {result.distribution}, "
        f"batch {result.batch} (sha256 {result.file_sha256[:12]})"
    )


@paper.command("ledger")
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def paper_ledger(app: AppContext, campaign: str, as_json: bool) -> None:
    """Issued / returned / valid / invalid per distribution channel and batch (exit 1 if a check fails)."""
    try:
        ledger = build_ledger(app.store, campaign)
    except EntryRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        _json(ledger.as_dict())
    else:
        table = Table(title=f"paper ledger: {campaign}", header_style="bold")
        for name in ("channel", "batch", "issued", "returned", "not returned", "forms", "valid", "invalid"):
            table.add_column(name, justify="left" if name in ("channel", "batch") else "right")
        table.add_column("pending review", justify="right")
        table.add_column("awaiting entry", justify="right")
        table.add_column("scans linked / refused", justify="right")
        for row in [*ledger.rows, ledger.total]:
            issued = (
                (str(row.issued), str(row.returned), str(row.not_returned)) if row.serialed else ("—",) * 3
            )
            table.add_row(
                row.distribution,
                row.batch,
                *issued,
                str(row.forms),
                str(row.valid),
                str(row.invalid),
                str(row.pending_review),
                str(row.awaiting_entry),
                f"{row.scans_linked} / {row.scans_refused}",
            )
        out.print(table)
        for reason, n in sorted(ledger.total.invalid_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            out.print(f"  invalid: {reason} {n}")
        for check in ledger.checks:
            out.print(f"{'ok ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if not ledger.ok:
        raise Problems()


@paper.command("entries")
@click.argument("campaign")
@click.option("--state", type=click.Choice(["awaiting", "disagreement"]), help="Only forms in this state.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def paper_entries(app: AppContext, campaign: str, state: str | None, as_json: bool) -> None:
    """Double-entry forms not settled: awaiting a second clerk, or two clerks disagree (for a third)."""
    try:
        forms = open_entries(app.store, campaign, state=state)
    except EntryRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        _json({"campaign": campaign, "forms": forms})
        return
    if not forms:
        out.print("no double-entry forms waiting")
        return
    for form in forms:
        out.print(f"{form['form']}  {form['state']}  clerks {', '.join(form['clerks'])}")
        for difference in form["differences"]:
            out.print(f"    {difference}")


def _received_on(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError as exc:
        raise CommandFailed(f"--received-on {value!r}: give a date like 2026-10-05") from exc
    # Noon in Beijing time is the same calendar day everywhere a campaign of ours runs.
    return day.replace(hour=12, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


@import_group.command("paper")
@click.argument("campaign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--double-entry", is_flag=True, help="Entries wait for a second clerk's matching entry.")
@click.option("--clerk", help="Clerk id for a file without a 录入员/clerk column.")
@click.option(
    "--channel", "distribution", help="Distribution channel of unserialed forms without that column."
)
@click.option(
    "--received-on", help="Date the forms were received (default today); used when a form has no date."
)
@click.option("--dry-run", is_flag=True, help="Show what the import would do; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def import_paper(
    app: AppContext,
    campaign: str,
    file: Path,
    double_entry: bool,
    clerk: str | None,
    distribution: str | None,
    received_on: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import keyed paper forms (CSV/XLSX): serials checked, every row kept (exit 1 if any not counted)."""
    if not file.is_file():
        raise CommandFailed(f"{file}: no such file")
    mode: Mode = "double" if double_entry else "single"
    try:
        report = import_keyed(
            app.store,
            campaign,
            file,
            actor=actor_name(),
            mode=mode,
            clerk=clerk,
            distribution=distribution,
            received_at=_received_on(received_on),
            dry_run=dry_run,
        )
    except EntryRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        _json(report.as_dict())
    else:
        title = f"{report.file} → {report.campaign} ({report.mode} entry)" + (
            "  (dry run: nothing written)" if dry_run else ""
        )
        table = Table(title=title, header_style="bold")
        table.add_column("")
        table.add_column("forms", justify="right")
        table.add_row("rows", str(report.rows))
        for outcome, n in sorted(report.by_outcome.items()):
            table.add_row(outcome, str(n))
        for reason, n in sorted(report.by_reason.items()):
            table.add_row(f"  {reason}", str(n))
        out.print(table)
        for result in report.results[:200]:
            if result.outcome in ("counted", "already_received", "awaiting"):
                continue
            out.print(
                f"  row {result.row}: {result.outcome}: {result.reason or ''} "
                f"{result.serial.detail or ''} {result.detail}".rstrip()
            )
    if report.problems:
        raise Problems()


@import_group.command("scans")
@click.argument("campaign")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def import_scans_command(app: AppContext, campaign: str, directory: Path, as_json: bool) -> None:
    """Link scanned forms (PNG/JPEG/PDF) to their serials by QR code; refuse a second image of a serial."""
    try:
        report = import_scans(app.store, campaign, directory, actor=actor_name())
    except EntryRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        _json(report.as_dict())
    else:
        out.print(f"{report.pages} pages in {directory}")
        for status, n in sorted(report.by_status.items()):
            out.print(f"  {status}: {n}")
        for refused in report.refused[:200]:
            out.print(
                f"  {refused['path']}: {refused['status']}: {refused['reason']} {refused['serial'] or ''}"
            )
    if report.problems:
        raise Problems()
