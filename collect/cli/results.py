"""
`collect score CAMPAIGN`: the published results (contract.md), from the store through the
aggregate engine. Results go to stdout (or --out), problems to stderr.

Byte-identical output for the same inputs: pass `--computed-at` or set SOURCE_DATE_EPOCH,
the only field that otherwise changes between runs (docs/scoring.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from aggregate.html import to_html
from aggregate.inputs import DeductionsError, read_deductions
from aggregate.publish import explain, render_table, to_csv, to_json
from aggregate.reader import UnknownCampaign, load_spec, read_answers
from aggregate.result import ScoreResult, compute
from aggregate.scores import ScoringError
from aggregate.xlsx import to_xlsx
from collect.cli import cli, pass_app
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed, Problems

FORMATS = ("table", "json", "csv", "xlsx", "html")


def score_campaign(
    app: AppContext, code: str, *, deductions: Path | None = None, computed_at: str | None = None
) -> ScoreResult:
    """Read a campaign's counted ballots and score them; raises CommandFailed for bad input."""
    store = app.store
    try:
        stored = load_spec(store.engine, code)
    except UnknownCampaign:
        raise CommandFailed(f"unknown campaign '{code}' (see `collect campaign list`)") from None
    table = None
    if deductions is not None:
        try:
            table = read_deductions(deductions, stored.spec)
        except DeductionsError as exc:
            raise CommandFailed(f"{exc.source}: " + "; ".join(exc.problems)) from exc
    if store.settings.is_sqlite:
        # connectorx carries its own copy of SQLite. Two SQLite libraries with the same file open
        # in one process release each other's POSIX locks when either closes it ("disk I/O
        # error", or worse): close ours before connectorx opens the file.
        store.engine.dispose()
    answers = read_answers(store.url, stored)
    try:
        return compute(answers, stored.spec, deductions=table, computed_at=computed_at)
    except ScoringError as exc:
        raise CommandFailed(f"campaign {code} cannot be scored: " + "; ".join(exc.problems)) from exc


@cli.command("score")
@click.argument("campaign")
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout."
)
@click.option("--explain", "explain_unit", metavar="UNIT", help="Show every step of UNIT's score instead.")
@click.option(
    "--deductions",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CSV of deductions (unit,date,kind,points,note), e.g. rule D's inspections; "
    "part of the inputs hash.",
)
@click.option(
    "--computed-at",
    metavar="TIMESTAMP",
    help="Stamp to print as computed_at (default: SOURCE_DATE_EPOCH if set, else now).",
)
@click.option(
    "--lang",
    type=click.Choice(["zh-CN", "en"]),
    help="Labels of table, CSV, XLSX, HTML (default: campaign's).",
)
@pass_app
def score(
    app: AppContext,
    campaign: str,
    fmt: str,
    as_json: bool,
    out: Path | None,
    explain_unit: str | None,
    deductions: Path | None,
    computed_at: str | None,
    lang: str | None,
) -> None:
    """Score CAMPAIGN from its counted ballots: ranks, designations, grades, 95% intervals."""
    fmt = "json" if as_json else fmt
    result = score_campaign(app, campaign, deductions=deductions, computed_at=computed_at)
    if explain_unit is not None:
        try:
            text = explain(result, explain_unit)
        except KeyError:
            raise CommandFailed(f"unknown unit '{explain_unit}' in campaign {campaign}") from None
        _emit(text, out)
    elif fmt == "table":
        if out is None:
            # A pipe has no width: give the wide published table room instead of rich's 80.
            console = Console(highlight=False)
            if not console.is_terminal:
                console = Console(highlight=False, width=200)
            render_table(result, console, lang=lang)
        else:
            with out.open("w", encoding="utf-8") as handle:
                render_table(result, Console(file=handle, width=200, color_system=None), lang=lang)
    elif fmt == "json":
        _emit(to_json(result), out)
    elif fmt == "csv":
        _emit(to_csv(result, lang), out)
    elif fmt == "html":
        _emit(to_html(result, lang), out)
    else:
        if out is None:
            raise CommandFailed("--format xlsx needs --out FILE.xlsx")
        out.write_bytes(to_xlsx(result, lang))
    if result.refused:
        # missing_tier = "refuse": the table says which units were left without a score.
        Console(stderr=True, highlight=False).print(
            f"not scored (a weighted tier has no ballots): {', '.join(result.refused)}"
        )
        raise Problems()


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.write_text(text, encoding="utf-8", newline="")
