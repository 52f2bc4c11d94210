"""`collect sms invite|status`: text the sampled respondents through Twilio, and see how it went."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from collect.channels.sms import MAX_SMS_QUESTIONS
from collect.cli import Exit, cli, pass_app
from collect.cli.campaign import actor_name
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed, stderr
from collect.invites import (
    InviteOptions,
    InviteReport,
    SmsNotPossible,
    TwilioUnreachable,
    delivery_counts,
    inbound_counts,
    send_invites,
)

out = Console(highlight=False, soft_wrap=True)

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute))?\s*$")


def _default_http_client() -> HttpClient:
    # Twilio's API answers in well under a second; 30 s means the network is gone.
    return TwilioHttpClient(timeout=30)


# The one seam for the Twilio HTTP client (tests put a recording fake here): everything above
# it, the twilio Client included, is the real code.
http_client_factory: Callable[[], HttpClient] = _default_http_client


def parse_rate(text: str) -> float:
    """`10/s`, `10`, `600/m` → messages per second."""
    match = _RATE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r}: give messages per second or minute, e.g. 10/s or 600/m")
    per = match.group(2) or "s"
    return float(match.group(1)) / (60.0 if per.startswith("m") else 1.0)


@cli.group()
def sms() -> None:
    """SMS through Twilio: invitations, reminders, delivery."""


@sms.command("invite")
@click.argument("campaign")
@click.option("--tier", help="Only this tier's sampled respondents.")
@click.option("--dry-run", is_flag=True, help="Count who would be texted; send and record nothing.")
@click.option("--rate", default="1/s", show_default=True, help="At most this many messages: N/s or N/m.")
@click.option("--reminders", is_flag=True, help="Also remind respondents who have not finished.")
@click.option(
    "--remind-after",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Days since the last text.",
)
@click.option(
    "--max-reminders",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Reminders per respondent.",
)
@click.option(
    "--max-questions",
    type=click.IntRange(min=1),
    default=MAX_SMS_QUESTIONS,
    show_default=True,
    help="More questions than this: text the web ballot link instead of asking by SMS.",
)
@click.option(
    "--from",
    "sender",
    help="Sender number or Messaging Service SID (default: TWILIO_MESSAGING_SERVICE_SID).",
)
@click.option(
    "--resend-in-doubt",
    is_flag=True,
    help="Send again the messages an interrupted run left unconfirmed (check Twilio's log first).",
)
@click.option(
    "--retry-base", type=float, default=1.0, show_default=True, help="First wait (s) before retrying 429/5xx."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--now", "now_text", hidden=True, help="Pretend it is this time (ISO 8601): tests, drills.")
@pass_app
def sms_invite(
    app: AppContext,
    campaign: str,
    tier: str | None,
    dry_run: bool,
    rate: str,
    reminders: bool,
    remind_after: int,
    max_reminders: int,
    max_questions: int,
    sender: str | None,
    resend_in_doubt: bool,
    retry_base: float,
    as_json: bool,
    now_text: str | None,
) -> int:
    """
    Text each sampled respondent of CAMPAIGN who has a phone, has units left to rate and has
    not opted out: the questions with their reply codes, or the web ballot link when there are
    too many. Re-running sends nothing twice; --reminders adds reminders when due.
    """
    settings = app.settings
    now = datetime.fromisoformat(now_text) if now_text else datetime.now(UTC)
    options = InviteOptions(
        tier=tier,
        dry_run=dry_run,
        rate=parse_rate(rate),
        reminders=reminders,
        reminder_after=timedelta(days=remind_after),
        max_reminders=max_reminders,
        max_questions=max_questions,
        sender=sender or settings.twilio_messaging_service_sid,
        resend_in_doubt=resend_in_doubt,
        retry_base=max(0.0, retry_base),
    )
    client = None
    if not dry_run:
        token = settings.twilio_auth_token
        if not settings.twilio_account_sid or token is None or not token.get_secret_value():
            raise CommandFailed("Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if options.sender is None:
            raise CommandFailed("no sender: set TWILIO_MESSAGING_SERVICE_SID or give --from +86…")
        client = Client(  # type: ignore[no-untyped-call]
            settings.twilio_account_sid, token.get_secret_value(), http_client=http_client_factory()
        )
    store = app.store
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task(f"sms {campaign}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = send_invites(
                store, campaign, client, options, now=now, actor=actor_name(), progress=advance
            )
    except SmsNotPossible as exc:
        raise CommandFailed(str(exc)) from exc
    except TwilioUnreachable as exc:
        stderr.print(f"error: {exc}")
        return int(Exit.UNREACHABLE)
    _print_report(campaign, report, dry_run=dry_run, as_json=as_json)
    if report.refused or report.in_doubt:
        return int(Exit.PROBLEMS)
    return int(Exit.OK)


def _print_report(campaign: str, report: InviteReport, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({"campaign": campaign, "dry_run": dry_run, **report.as_dict()}))
        return
    if dry_run:
        out.print(
            f"{campaign}: dry run — would invite {report.would_invite}, remind {report.would_remind} "
            f"(of {report.considered} sampled with a phone)"
        )
    else:
        out.print(
            f"{campaign}: invited {report.invited}, reminded {report.reminded} "
            f"(of {report.considered} sampled with a phone; {report.link_mode} by web link)"
        )
    out.print(
        f"  skipped: answered {report.answered}, opted out {report.opted_out}, already texted "
        f"{report.already_sent}, reminder not due {report.not_due}"
    )
    if report.in_doubt:
        stderr.print(
            f"{report.in_doubt} message(s) in doubt: an earlier run stopped while sending them. "
            "Check Twilio's message log, then re-run with --resend-in-doubt to send them."
        )
    for code, n in sorted(report.refused.items()):
        stderr.print(
            f"{n} message(s) refused by Twilio with error {code} (https://www.twilio.com/docs/errors/{code})"
        )


@sms.command("status")
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def sms_status(app: AppContext, campaign: str, as_json: bool) -> None:
    """Outbound messages by delivery state, and replies by kind and reason."""
    delivery = delivery_counts(app.store, campaign)
    replies = inbound_counts(app.store, campaign)
    if as_json:
        out.print_json(json.dumps({"campaign": campaign, "delivery": delivery, "replies": replies}))
        return
    out.print(
        f"{campaign}: outbound " + (", ".join(f"{k} {v}" for k, v in sorted(delivery.items())) or "none")
    )
    out.print(f"{campaign}: replies " + (", ".join(f"{k} {v}" for k, v in sorted(replies.items())) or "none"))
