"""
`collect import …`: operator files into the store through ingest(). `collect import calls` lives
here (the import itself is collect/imports.py, shared with /admin/imports); other importers add
their subcommands to the `import` group (`imports.import_group`).

An import is one transaction: every row is kept (counted, or quarantined with its reason) or,
when anything fails, nothing is. `--dry-run` runs the same import and rolls it back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable

from collect.cli import cli, pass_app
from collect.cli.campaign import actor_name
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed, Problems
from collect.imports import ImportRefused, ImportReport, import_calls, read_profile

__all__ = ["ImportRefused", "import_calls", "import_group", "read_profile"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

PROGRESS_FROM_ROWS = 5000


# ---------------------------------------------------------------------------------------------
# The commands


@cli.group("import")
def import_group() -> None:
    """Import operator files: call-centre exports (more importers add themselves here)."""


@import_group.command("calls")
@click.argument("campaign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The vendor's mapping profile (TOML). Without it one is proposed from the headers.",
)
@click.option("--dry-run", is_flag=True, help="Show what the import would do; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--quarantine-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every quarantined row with its reason to this CSV (phone numbers masked).",
)
@click.option(
    "--profile-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write a proposed profile (default: FILE.profile.toml beside the file).",
)
@pass_app
def import_calls_command(
    app: AppContext,
    campaign: str,
    file: Path,
    profile_path: Path | None,
    dry_run: bool,
    as_json: bool,
    quarantine_out: Path | None,
    profile_out: Path | None,
) -> None:
    """Import a call-centre / phone-survey / IVR export (CSV, XLSX, XLS) into CAMPAIGN."""
    try:
        profile = read_profile(profile_path) if profile_path is not None else None
        with _progress(enabled=not as_json) as on_progress:
            report = import_calls(
                app.store,
                campaign,
                file,
                profile=profile,
                dry_run=dry_run,
                actor=actor_name(),
                quarantine_out=quarantine_out,
                profile_out=profile_out,
                progress=on_progress,
            )
    except ImportRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        _print(report)
    if report.profile_written:
        err.print(
            f"proposed profile written to {report.profile_written}: check it, then pass --profile next time"
        )
    if report.quarantined:
        raise Problems()


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for large files, on a terminal only."""
    if not enabled or not err.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if total < PROGRESS_FROM_ROWS:
            return
        if task is None:
            bar.start()
            task = bar.add_task("rows", total=total)
        bar.update(task, completed=done)

    try:
        yield update
    finally:
        bar.stop()


def _print(report: ImportReport) -> None:
    title = f"{report.file} → {report.campaign}" + ("  (dry run: nothing written)" if report.dry_run else "")
    table = RichTable(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_row("rows read", str(report.rows_read))
    if report.blank or report.totals:
        table.add_row("  skipped: blank / totals", f"{report.blank} / {report.totals}")
    table.add_row("accepted", str(report.accepted))
    if report.already_received:
        table.add_row("already received (imported before)", str(report.already_received))
    table.add_row("quarantined", str(report.quarantined))
    for reason, n in sorted(report.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"  {reason}", str(n))
    out.print(table)
    out.print(
        f"{report.kind} {report.encoding or ''}, header on row {report.header_row}, "
        f"profile {report.vendor}, sha256 {report.sha256[:12]}"
    )
    for q in report.quarantine[:20]:
        out.print(f"  row {q.row}: {q.reason}: {q.field}: {q.detail}")
    if report.quarantined > 20:
        out.print(f"  … {report.quarantined - 20} more (--quarantine-out FILE.csv lists every row)")
