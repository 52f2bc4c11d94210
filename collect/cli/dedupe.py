"""
`collect sample draw|replace`, `collect review list|accept|reject`, `collect dedupe scan`,
`collect report`: sampling, the review queue, photocopy detection and the reconciled report.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.table import Table

from collect.campaign import ALL_CHANNELS
from collect.cli import cli, pass_app
from collect.cli.campaign import actor_name
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed, Problems
from collect.dedupe.clusters import DEFAULT_ALPHA, scan
from collect.dedupe.report import LABELS, build_report, headline
from collect.dedupe.review import Decision, ReviewError, decide, list_items, sync_held
from collect.dedupe.sampling import METHODS, Method, SamplingError, draw_sample, replace_unreachable

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _allocation(text: str | None) -> dict[str, int] | None:
    """`重点企业=10,个体户=5,乡镇=3` (also ；/; and ，as separators)."""
    if text is None:
        return None
    allocation: dict[str, int] = {}
    for part in text.replace("，", ",").replace("；", ",").replace(";", ",").split(","):
        if not part.strip():
            continue
        name, sep, count = part.partition("=")
        if not sep or not name.strip() or not count.strip().isdigit():
            raise CommandFailed(f"--allocate: {part.strip()!r} is not STRATUM=COUNT")
        if name.strip() in allocation:
            raise CommandFailed(f"--allocate: stratum {name.strip()!r} is given twice")
        allocation[name.strip()] = int(count)
    if not allocation:
        raise CommandFailed("--allocate: no STRATUM=COUNT given")
    return allocation


@cli.group()
def sample() -> None:
    """Reproducible sample draws from a tier's roster (docs/sampling.md)."""


@sample.command("draw")
@click.argument("campaign")
@click.option("--tier", required=True, help='A tier with sampling = "draw".')
@click.option("--size", type=click.IntRange(min=1), help="Sample size (default: the sum of --allocate).")
@click.option(
    "--seed", required=True, help="Any text; may be a public value fixed in advance (lottery result)."
)
@click.option(
    "--method", type=click.Choice(METHODS), default=None, help="Default: simple (stratified with --allocate)."
)
@click.option("--strata", metavar="COLUMN", help="Roster column of the strata.")
@click.option("--size-column", metavar="COLUMN", help="Roster column of the size (PPS).")
@click.option(
    "--allocate", metavar="S=N,...", help="Fixed per-stratum sizes, e.g. 重点企业=10,个体户=5,乡镇=3."
)
@click.option(
    "--force", is_flag=True, help="Replace an earlier, different draw (refused once the tier has ballots)."
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the drawn roster ids (position, roster_id, stratum) to this CSV.",
)
@pass_app
def sample_draw(
    app: AppContext,
    campaign: str,
    tier: str,
    size: int | None,
    seed: str,
    method: str | None,
    strata: str | None,
    size_column: str | None,
    allocate: str | None,
    force: bool,
    out_file: Path | None,
) -> None:
    """Draw TIER's sample of CAMPAIGN and record the draw, its seed and the frame's hash."""
    allocation = _allocation(allocate)
    chosen = cast(Method, method or ("stratified" if allocation is not None else "simple"))
    if size is None:
        if allocation is None:
            raise CommandFailed("give --size N (or --allocate, whose counts add up to the size)")
        size = sum(allocation.values())
    try:
        result = draw_sample(
            app.store,
            campaign,
            tier,
            method=chosen,
            size=size,
            seed=seed,
            strata=strata,
            size_column=size_column,
            allocation=allocation,
            actor=actor_name(),
            force=force,
        )
    except SamplingError as exc:
        raise CommandFailed(str(exc)) from exc
    _print_draw(
        result.draw_id,
        result.new,
        campaign,
        tier,
        result.method,
        result.seed,
        result.frame_size,
        result.frame_sha256,
        len(result.picked),
    )
    strata_counts: dict[str, int] = {}
    for picked in result.picked:
        if picked.stratum is not None:
            strata_counts[picked.stratum] = strata_counts.get(picked.stratum, 0) + 1
    if strata_counts:
        out.print("  by stratum: " + ", ".join(f"{k} {v}" for k, v in sorted(strata_counts.items())))
    if out_file is not None:
        _write_members(out_file, [(p.roster_id, p.stratum) for p in result.picked])


def _print_draw(
    draw_id: int, new: bool, campaign: str, tier: str, method: str, seed: str, frame: int, sha: str, size: int
) -> None:
    state = "recorded" if new else "already recorded (same frame, method, parameters and seed)"
    out.print(f"draw {draw_id} {state}: {campaign}/{tier}, method {method}, {size} of {frame}")
    out.print(f"  seed: {seed}")
    out.print(f"  frame sha256: {sha}")


def _write_members(path: Path, rows: list[tuple[str, str | None]]) -> None:
    # The list names people: readable by its owner only, like the ballot-link files.
    path.touch(mode=0o600, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["position", "roster_id", "stratum"])
        for position, (roster_id, stratum) in enumerate(rows, start=1):
            writer.writerow([position, roster_id, stratum or ""])
    out.print(f"  {len(rows)} roster ids written to {path}")


@sample.command("replace")
@click.argument("campaign")
@click.argument("roster_ids", nargs=-1)
@click.option("--tier", required=True)
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A text file of roster ids, one a line.",
)
@click.option("--seed", default=None, help="Default: the original draw's seed (the next ones on its list).")
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="CSV of replacements."
)
@pass_app
def sample_replace(
    app: AppContext,
    campaign: str,
    roster_ids: tuple[str, ...],
    tier: str,
    from_file: Path | None,
    seed: str | None,
    out_file: Path | None,
) -> None:
    """Replace unreachable respondents (ROSTER_IDS) of TIER; the original draw stays as it was."""
    ids = list(roster_ids)
    if from_file is not None:
        ids += [
            line.strip() for line in from_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()
        ]
    try:
        result = replace_unreachable(app.store, campaign, tier, ids, seed=seed, actor=actor_name())
    except SamplingError as exc:
        raise CommandFailed(str(exc)) from exc
    _print_draw(
        result.draw_id,
        True,
        campaign,
        tier,
        "replacement",
        result.seed,
        result.frame_size,
        result.frame_sha256,
        len(result.picked),
    )
    if out_file is not None:
        _write_members(out_file, [(p.roster_id, p.stratum) for p in result.picked])


@cli.group()
def review() -> None:
    """The review queue: findings held for an operator's decision."""


@review.command("list")
@click.argument("campaign")
@click.option("--reason", default=None, help="Only items of this reason or kind.")
@click.option("--status", type=click.Choice(["open", "accepted", "rejected"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def review_list(
    app: AppContext, campaign: str, reason: str | None, status: str | None, as_json: bool
) -> None:
    """List review items (ballots held by ingest get an item first)."""
    try:
        sync_held(app.store, campaign)
        items = list_items(app.store, campaign, reason=reason, status=status)
    except ReviewError as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        _json([i.as_dict() for i in items])
        return
    table = Table("id", "status", "kind", "reason", "ballot", "form", "evidence", title=f"review {campaign}")
    for item in items:
        ev = item.evidence
        summary = (
            f"observed {ev['observed']}, expected {ev['expected']:.3g}, log10 p {ev['log10_p_value']} "
            f"< {ev['log10_threshold']}"
            if "observed" in ev
            else ", ".join(f"{k}={v}" for k, v in ev.items() if v is not None)
        )
        table.add_row(
            str(item.id),
            item.status,
            item.kind,
            item.reason,
            str(item.ballot_id or ""),
            str(item.submission_id or ""),
            summary,
        )
    out.print(table)
    out.print(f"{len(items)} items, {sum(i.status == 'open' for i in items)} open")


def _decide(app: AppContext, ids: tuple[int, ...], decision: Decision, note: str, reason: str | None) -> None:
    failed = 0
    for item_id in ids:
        try:
            result = decide(app.store, item_id, decision, note=note, actor=actor_name(), reason=reason)
        except ReviewError as exc:
            err.print(f"item {item_id}: {exc}")
            failed += 1
            continue
        changes = ", ".join(f"ballot {b} → {s}" + (f" ({r})" if r else "") for b, s, r in result.ballots)
        out.print(f"item {item_id} {decision}: {changes or 'no held ballot'}")
    if failed:
        if failed == len(ids):
            raise CommandFailed(f"{failed} of {len(ids)} items could not be decided")
        raise Problems()


@review.command("accept")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--note", required=True, help="Why (kept in the audit log).")
@pass_app
def review_accept(app: AppContext, ids: tuple[int, ...], note: str) -> None:
    """Accept: held ballots go through the one-vote rule (campaign policy by answered_at)."""
    _decide(app, ids, "accepted", note, None)


@review.command("reject")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--note", required=True, help="Why (kept in the audit log).")
@click.option("--reason", default=None, help="The invalid reason to record (default: the item's reason).")
@pass_app
def review_reject(app: AppContext, ids: tuple[int, ...], note: str, reason: str | None) -> None:
    """Reject: held ballots become invalid with the item's reason; nothing is deleted."""
    _decide(app, ids, "rejected", note, reason)


@cli.group()
def dedupe() -> None:
    """Detection of photocopies and other suspect ballots."""


@dedupe.command("scan")
@click.argument("campaign")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=click.Choice(list(ALL_CHANNELS)),
    help="Only these channels (repeatable).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=DEFAULT_ALPHA,
    show_default=True,
    help="Family-wise error rate of the cluster test.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def dedupe_scan(
    app: AppContext, campaign: str, channels: tuple[str, ...], alpha: float, as_json: bool
) -> None:
    """Find clusters of identical answer vectors; file one review item per form (idempotent)."""
    try:
        result = scan(app.store, campaign, channels=list(channels) or None, alpha=alpha)
    except ReviewError as exc:
        raise CommandFailed(str(exc)) from exc
    summary = {
        "campaign": campaign,
        "forms": result.forms,
        "serialed_forms_skipped": result.serialed_skipped,
        "distinct_vectors": result.distinct_vectors,
        "positions": result.positions,
        "alpha": result.alpha,
        "log10_vectors_tested": round(result.log10_vectors_tested, 3),
        "log10_threshold": round(result.log10_threshold, 3),
        "clusters": [
            {
                "vector_sha256": c.vector_sha256,
                "observed": c.observed,
                "expected": c.expected,
                "log10_p_value": round(c.log10_p, 3),
                "by_distribution": c.distribution,
            }
            for c in result.clusters
        ],
        "flagged_forms": result.flagged_forms,
        "new_review_items": result.new_items,
    }
    if as_json:
        _json(summary)
        return
    if result.serialed_skipped:
        out.print(
            f"{result.serialed_skipped:,} serialed forms left to the issuance ledger (collect paper ledger)"
        )
    out.print(
        f"{result.forms:,} forms, {result.distinct_vectors:,} distinct answer vectors over "
        f"{result.positions} questions; threshold p < {alpha:g} / 10^{result.log10_vectors_tested:.1f} "
        f"(log10 {result.log10_threshold:.1f})"
    )
    for c in result.clusters:
        out.print(
            f"  cluster {c.vector_sha256[:12]}: {c.observed} identical forms, {c.expected:.3g} expected, "
            f"log10 p {c.log10_p:.1f}"
        )
    out.print(
        f"{result.flagged_forms} forms in {len(result.clusters)} clusters; "
        f"{result.new_items} new review items"
    )


@cli.command("report")
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def report(app: AppContext, campaign: str, as_json: bool) -> None:
    """Received / valid / invalid by reason, channel, distribution; quota fill; checks (exit 1: failed)."""
    try:
        built = build_report(app.store, campaign)
    except ReviewError as exc:
        raise CommandFailed(str(exc)) from exc
    if as_json:
        _json(built.as_dict())
    else:
        _print_report(built.as_dict())
    if not built.ok:
        err.print("reconciliation failed: " + "; ".join(c.name for c in built.checks if not c.ok))
        raise Problems()


def _print_report(data: dict[str, Any]) -> None:
    forms = data["forms"]
    out.print(f"[bold]{data['campaign']}[/bold] forms: {headline(forms['total'])}")
    for title, key in (("by channel", "by_channel"), ("by distribution channel", "by_distribution")):
        out.print(f"  {title}:")
        for name, counts in forms[key].items():
            out.print(f"    {name}: {headline(counts)}")
    table = Table(
        "ballots",
        "received",
        "counted",
        "superseded",
        "duplicate",
        "invalid",
        "pending",
        title="ballots (one per unit rated)",
    )
    rows = [("all", data["ballots"]["total"]), *data["ballots"]["by_channel"].items()]
    for name, counts in rows:
        table.add_row(
            name,
            *(
                f"{counts[k]:,}"
                for k in ("received", "counted", "superseded", "duplicate", "invalid", "pending_review")
            ),
        )
    out.print(table)
    for key, n in data["ballots"]["total"]["by_reason"].items():
        status, _, reason = key.partition(":")
        out.print(f"  {status}: {LABELS.get(reason, reason)} {n:,}")
    quota = Table("tier", "unit", "counted", "quota", "fill", title="quota fill")
    for row in data["quota"]:
        if row["quota"]:
            quota.add_row(
                row["tier"], row["unit"], str(row["counted"]), str(row["quota"]), f"{row['fill']:.0%}"
            )
    if quota.row_count:
        out.print(quota)
    for draw in data["samples"]:
        out.print(
            f"draw {draw['draw']} ({draw['kind']}) {draw['tier']}: {draw['method']}, {draw['size']} of "
            f"{draw['frame_size']}, seed {draw['seed']!r}, frame {draw['frame_sha256'][:16]}…"
            + (f", replaces draw {draw['replaces_draw']}" if draw["replaces_draw"] else "")
        )
    if data["review"]:
        out.print("review items: " + ", ".join(f"{k} {v}" for k, v in sorted(data["review"].items())))
    for check in data["checks"]:
        mark = "[green]ok[/green]  " if check["ok"] else "[red]FAIL[/red]"
        out.print(f"{mark} {check['name']}: {check['detail']}")
