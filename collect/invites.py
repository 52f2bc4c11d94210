"""
The SMS channel's state: invitations and reminders out (through a given twilio `Client`),
delivery callbacks, and the conversation each reply advances. Not an adapter: it owns the
`sms_*` tables; replies become ballots only through `ingest()`.

Phone numbers are read from `contact` to send and compared as keyed hashes otherwise; none is
written to an `sms_*` table, a submission, a ballot or a log line.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

from collect.ballot import Answer, Problem, Receipt
from collect.campaign import CampaignSpec
from collect.channels import sms
from collect.channels.base import redact
from collect.channels.sms import InboundSms, ReplyProblem, SmsAdapter
from collect.dedupe.keys import keyed_hash, new_nonce, sha256_hex, token_for
from collect.ingest import Item, as_utc, ingest
from collect.phones import normalise_phone
from collect.store import Store
from collect.store.campaigns import LoadedCampaign, load_campaign
from collect.store.tables import (
    AUDIT,
    BALLOT,
    CAMPAIGN,
    CONTACT,
    INVITATION,
    RESPONDENT,
    SMS_CONVERSATION,
    SMS_INBOUND,
    SMS_MESSAGE,
    SMS_OPT_OUT,
)

log = logging.getLogger("collect.sms")

STATUS_PATH = "/sms/twilio/status"
INBOUND_PATH = "/sms/twilio"

# Twilio's MessageStatus values in the order a message moves through them. A callback only
# moves a message forward: they arrive out of order and repeat. Final states share a rank, so
# the first final state reported stays. `claimed` (ours) is the row taken before calling Twilio.
STATUS_RANK = {
    "claimed": 0,
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "receiving": 4,
    "received": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
    "error": 5,
    "read": 6,
}
OPTED_OUT = 21610  # Twilio: "Attempt to send to unsubscribed recipient": final, never retried
# A message row left `claimed` by a crash may or may not have reached Twilio; we do not text a
# citizen twice on a guess. `--resend-in-doubt` sends those after looking at Twilio's console.
IN_DOUBT = "claimed"


class TwilioUnreachable(RuntimeError):
    """Twilio kept failing (network, 429 or 5xx) after every retry: the run stops (exit 3)."""


class SmsNotPossible(ValueError):
    """The campaign cannot be texted now (no SMS channel, closed, unknown tier…): exit 2."""


def number_key(secret: bytes, e164: str) -> str:
    """A number's key for opt-outs and the inbound log: scoped to no campaign (STOP covers all)."""
    return keyed_hash(secret, "", "sms-number", e164)


def _insert(connection: Connection, table: sa.Table) -> Any:
    return (pg_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)


# --- Outbound: invitations and reminders ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviteOptions:
    """
    Args:
        rate: messages per second at most (Twilio queues above the sender's throughput anyway,
            but a burst of thousands of replies would then hit our webhook at once).
        reminder_after: a reminder goes to an unfinished respondent this long after the last text.
        max_reminders: at most this many reminders per respondent.
        sender: a From number, when no Messaging Service is configured.
    """

    tier: str | None = None
    dry_run: bool = False
    rate: float = 1.0
    reminders: bool = False
    reminder_after: timedelta = timedelta(days=3)
    max_reminders: int = 2
    max_questions: int = sms.MAX_SMS_QUESTIONS
    sender: str | None = None
    resend_in_doubt: bool = False
    max_attempts: int = 5
    retry_base: float = 1.0
    retry_cap: float = 60.0


@dataclass
class InviteReport:
    """What a run did; `planned` lists (roster-free) respondent ids and kinds in a dry run."""

    considered: int = 0
    invited: int = 0
    reminded: int = 0
    would_invite: int = 0
    would_remind: int = 0
    answered: int = 0
    opted_out: int = 0
    not_due: int = 0
    in_doubt: int = 0
    already_sent: int = 0
    link_mode: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # Twilio error code → messages

    @property
    def sent(self) -> int:
        return self.invited + self.reminded

    def as_dict(self) -> dict[str, Any]:
        return {
            "considered": self.considered,
            "invited": self.invited,
            "reminded": self.reminded,
            "would_invite": self.would_invite,
            "would_remind": self.would_remind,
            "answered": self.answered,
            "opted_out": self.opted_out,
            "not_due": self.not_due,
            "in_doubt": self.in_doubt,
            "already_sent": self.already_sent,
            "link_mode": self.link_mode,
            "refused": dict(sorted(self.refused.items())),
        }


@dataclass(frozen=True, slots=True)
class _Recipient:
    respondent_id: int
    key: str
    tier: str
    phone: str
    units: tuple[str, ...]  # rateable units not answered yet


class _Pacer:
    """At most `rate` sends a second, spaced evenly (a token bucket of one)."""

    def __init__(self, rate: float, sleep: Callable[[float], None], monotonic: Callable[[], float]) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.sleep, self.monotonic = sleep, monotonic
        self.next_at = 0.0

    def wait(self) -> None:
        now = self.monotonic()
        if self.next_at > now:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


def send_invites(
    store: Store,
    campaign_code: str,
    client: Client | None,
    options: InviteOptions,
    *,
    now: datetime,
    actor: str,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    progress: Callable[[int, int], None] | None = None,
    jitter: Callable[[], float] = random.random,
) -> InviteReport:
    """
    Text every sampled respondent with a phone who has units left to rate and has not opted
    out: an invitation once, then (with `options.reminders`) reminders when due. Resumable: each
    message is claimed in the store before Twilio is called, so a re-run sends nothing twice.

    Raises:
        SmsNotPossible: the campaign does not take SMS, is closed, or the tier is unknown.
        TwilioUnreachable: Twilio failed every retry; what was sent so far is recorded.
    """
    if client is None and not options.dry_run:
        raise SmsNotPossible("Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    secret = store.settings.secret()
    with store.reader.connect() as connection:
        campaign = load_campaign(store, connection, campaign_code)
        if campaign is None:
            raise SmsNotPossible(f"campaign {campaign_code!r} does not exist")
        spec = campaign.spec
        _check_sendable(spec, options, now)
        recipients = _recipients(connection, campaign, options.tier)
        opted_out = _opted_out_numbers(connection, secret, [r.phone for r in recipients])
        conversations = {
            r.respondent_id: r
            for r in connection.execute(
                sa.select(SMS_CONVERSATION).where(SMS_CONVERSATION.c.campaign_id == campaign.id)
            )
        }
        messages: dict[int, dict[int, Any]] = {}
        for row in connection.execute(sa.select(SMS_MESSAGE).where(SMS_MESSAGE.c.campaign_id == campaign.id)):
            messages.setdefault(row.respondent_id, {})[row.round] = row

    report = InviteReport(considered=len(recipients))
    pacer = _Pacer(options.rate, sleep, monotonic)
    status_url = store.settings.public_url.rstrip("/") + STATUS_PATH
    for done, recipient in enumerate(recipients, start=1):
        if progress is not None:
            progress(done, len(recipients))
        if recipient.phone in opted_out:
            report.opted_out += 1
            continue
        conversation = conversations.get(recipient.respondent_id)
        sent = messages.get(recipient.respondent_id, {})
        if not recipient.units or (conversation is not None and conversation.state == "done"):
            report.answered += 1
            continue
        if conversation is not None and conversation.mode == "questions":
            left = {u for u, _a in conversation.questions[conversation.position :]}
            if not left & set(recipient.units):
                # Everything the conversation still asks was answered on another channel.
                report.answered += 1
                continue
        in_doubt = [r for r in sent.values() if r.status == IN_DOUBT]
        if in_doubt and not options.resend_in_doubt:
            report.in_doubt += 1
            continue
        round_ = _next_round(sent, conversation, options, now)
        if round_ is None:
            if 0 in sent:
                report.already_sent += 1 if not options.reminders else 0
                report.not_due += 1 if options.reminders else 0
            continue
        if options.dry_run:
            if round_ == 0:
                report.would_invite += 1
            else:
                report.would_remind += 1
            continue
        assert client is not None
        claim = _claim(store, campaign, spec, recipient, round_, options, now, secret, conversation)
        if claim is None:
            report.already_sent += 1  # another run took this message meanwhile
            continue
        message_id, body, kind = claim
        if kind == "link":
            report.link_mode += 1
        pacer.wait()
        outcome = _send(client, recipient.phone, body, options, f"{status_url}?m={message_id}", sleep, jitter)
        if isinstance(outcome, _Transient):
            _release(store, message_id)
            raise TwilioUnreachable(
                f"Twilio is unreachable ({outcome.detail}) after {options.max_attempts} attempts; "
                f"{report.sent} message(s) were sent and recorded: run the command again to go on"
            )
        _record_send(store, message_id, outcome, recipient, now, secret)
        if outcome.error_code is None:
            if round_ == 0:
                report.invited += 1
            else:
                report.reminded += 1
        elif outcome.error_code == OPTED_OUT:
            report.opted_out += 1
        else:
            key = str(outcome.error_code)
            report.refused[key] = report.refused.get(key, 0) + 1
    if not options.dry_run:
        with store.writing(), store.engine.begin() as connection:
            connection.execute(
                sa.insert(AUDIT).values(
                    at=now,
                    actor=actor,
                    action="sms.invite",
                    campaign_code=campaign_code,
                    target=options.tier,
                    detail=report.as_dict(),
                )
            )
    return report


def _check_sendable(spec: CampaignSpec, options: InviteOptions, now: datetime) -> None:
    if "sms" not in spec.channels:
        raise SmsNotPossible(f"campaign {spec.code} does not take SMS (channels: {', '.join(spec.channels)})")
    if options.tier is not None and spec.tier(options.tier) is None:
        raise SmsNotPossible(f"tier {options.tier!r} is not in campaign {spec.code}")
    if as_utc(now) > as_utc(spec.closes_at):
        raise SmsNotPossible(f"campaign {spec.code} closed on {sms.local_date(spec, spec.closes_at)}")
    if as_utc(now) < as_utc(spec.opens_at) - timedelta(days=1):
        # Replies before the opening are refused: invite at most a day ahead.
        raise SmsNotPossible(f"campaign {spec.code} opens on {sms.local_date(spec, spec.opens_at)}")


def _rateable(
    spec: CampaignSpec, tier_code: str, own_unit: str | None, assigned: list[str] | None
) -> list[str]:
    tier = spec.tier(tier_code)
    if tier is None:
        return []
    if tier.rates == "all_but_own":
        return [u.code for u in spec.units if u.code != own_unit]
    if tier.rates == "assigned":
        allowed = set(assigned or [])
        return [u.code for u in spec.units if u.code in allowed]
    return [u.code for u in spec.units]


def _recipients(connection: Connection, campaign: LoadedCampaign, tier: str | None) -> list[_Recipient]:
    """Sampled respondents with a phone contact, in a stable order, with units left to rate."""
    phone = (
        sa.select(sa.func.min(CONTACT.c.value))
        .where(CONTACT.c.respondent_id == RESPONDENT.c.id, CONTACT.c.kind == "phone")
        .scalar_subquery()
    )
    query = (
        sa.select(
            RESPONDENT.c.id,
            RESPONDENT.c.key,
            RESPONDENT.c.tier_code,
            RESPONDENT.c.own_unit,
            RESPONDENT.c.assigned_units,
            phone.label("phone"),
        )
        .where(RESPONDENT.c.campaign_id == campaign.id, RESPONDENT.c.in_sample.is_(True))
        .order_by(RESPONDENT.c.id)
    )
    if tier is not None:
        query = query.where(RESPONDENT.c.tier_code == tier)
    rows = [r for r in connection.execute(query).all() if r.phone is not None]
    answered: dict[str, set[str]] = {}
    for ballot in connection.execute(
        sa.select(BALLOT.c.voter_key, BALLOT.c.unit_code).where(
            BALLOT.c.campaign_id == campaign.id, BALLOT.c.status.in_(("counted", "pending_review"))
        )
    ):
        answered.setdefault(ballot.voter_key, set()).add(ballot.unit_code)
    out = []
    for row in rows:
        done = answered.get(row.key, set())
        units = tuple(
            u
            for u in _rateable(campaign.spec, row.tier_code, row.own_unit, row.assigned_units)
            if u not in done
        )
        out.append(_Recipient(row.id, row.key, row.tier_code, row.phone, units))
    return out


def _opted_out_numbers(connection: Connection, secret: bytes, phones: Iterable[str]) -> set[str]:
    by_key = {number_key(secret, p): p for p in phones}
    out: set[str] = set()
    keys = list(by_key)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for row in connection.execute(
            sa.select(SMS_OPT_OUT.c.number_key, SMS_OPT_OUT.c.opted_out_at, SMS_OPT_OUT.c.opted_in_at).where(
                SMS_OPT_OUT.c.number_key.in_(chunk)
            )
        ):
            if _is_opted_out(row.opted_out_at, row.opted_in_at):
                out.add(by_key[row.number_key])
    flagged = connection.execute(
        sa.select(CONTACT.c.value).where(CONTACT.c.kind == "phone", CONTACT.c.opted_out_at.is_not(None))
    ).scalars()
    out.update(p for p in flagged if p in set(by_key.values()))
    return out


def _is_opted_out(opted_out_at: datetime | None, opted_in_at: datetime | None) -> bool:
    if opted_out_at is None:
        return False
    return opted_in_at is None or as_utc(opted_in_at) < as_utc(opted_out_at)


def _next_round(
    sent: Mapping[int, Any], conversation: Any, options: InviteOptions, now: datetime
) -> int | None:
    """0 for the invitation; 1..M for a due reminder; None when nothing is due."""
    if 0 not in sent:
        return 0
    if not options.reminders or conversation is None:
        return None
    if any(r.error_code is not None or r.status == "error" for r in sent.values()):
        return None  # refused by Twilio (bad number, opted out): a reminder would fail again
    if conversation.reminders >= options.max_reminders:
        return None
    last = conversation.last_sent_at
    if last is not None and as_utc(now) - as_utc(last) < options.reminder_after:
        return None
    round_ = max(sent) + 1
    return round_ if round_ <= options.max_reminders else None


def _claim(
    store: Store,
    campaign: LoadedCampaign,
    spec: CampaignSpec,
    recipient: _Recipient,
    round_: int,
    options: InviteOptions,
    now: datetime,
    secret: bytes,
    conversation: Any,
) -> tuple[int, str, str] | None:
    """
    Take the message row (and start the conversation) before calling Twilio. None when another
    run holds this round already.
    """
    with store.writing(), store.engine.begin() as connection:
        if options.resend_in_doubt:
            connection.execute(
                sa.delete(SMS_MESSAGE).where(
                    SMS_MESSAGE.c.campaign_id == campaign.id,
                    SMS_MESSAGE.c.respondent_id == recipient.respondent_id,
                    SMS_MESSAGE.c.status == IN_DOUBT,
                )
            )
        if conversation is None:
            conversation = _start_conversation(
                connection, campaign, recipient, options.max_questions, now, secret
            )
        if conversation.mode == "link":
            url = ballot_link(connection, store, campaign.id, recipient.respondent_id, now)
            body, kind = sms.link_text(spec, url, reminder=round_ > 0), "link"
        elif round_ == 0 and conversation.position == 0:
            body, kind = sms.invite_text(spec, conversation.questions), "question"
        else:
            body, kind = sms.reminder_text(spec, conversation.questions, conversation.position), "question"
        message_id = connection.execute(
            _insert(connection, SMS_MESSAGE)
            .values(
                campaign_id=campaign.id,
                respondent_id=recipient.respondent_id,
                conversation_id=conversation.id,
                round=round_,
                kind=kind,
                status=IN_DOUBT,
                status_rank=STATUS_RANK[IN_DOUBT],
                attempts=0,
                segments=sms.segments(body),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["campaign_id", "respondent_id", "round"])
            .returning(SMS_MESSAGE.c.id)
        ).scalar_one_or_none()
    return None if message_id is None else (int(message_id), body, kind)


def _start_conversation(
    connection: Connection,
    campaign: LoadedCampaign,
    recipient: _Recipient,
    max_questions: int,
    now: datetime,
    secret: bytes,
) -> Any:
    questions = sms.questions_for(campaign.spec, recipient.units)
    mode = "questions" if len(questions) <= max_questions else "link"
    connection.execute(
        _insert(connection, SMS_CONVERSATION)
        .values(
            campaign_id=campaign.id,
            respondent_id=recipient.respondent_id,
            phone_key=keyed_hash(secret, campaign.spec.code, "phone", recipient.phone),
            mode=mode,
            questions=[list(q) for q in questions],
            position=0,
            pending=None,
            state="open",
            reminders=0,
            started_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "respondent_id"])
    )
    return connection.execute(
        sa.select(SMS_CONVERSATION).where(
            SMS_CONVERSATION.c.campaign_id == campaign.id,
            SMS_CONVERSATION.c.respondent_id == recipient.respondent_id,
        )
    ).one()


def ballot_link(
    connection: Connection, store: Store, campaign_id: int, respondent_id: int, now: datetime
) -> str:
    """The respondent's web ballot link (the one `collect tokens issue` prints), made if missing."""
    secret = store.settings.secret()
    nonce = connection.execute(
        sa.select(INVITATION.c.nonce)
        .where(
            INVITATION.c.campaign_id == campaign_id,
            INVITATION.c.respondent_id == respondent_id,
            INVITATION.c.revoked_at.is_(None),
        )
        .order_by(INVITATION.c.id)
    ).scalar()
    if nonce is None:
        nonce = new_nonce()
        connection.execute(
            sa.insert(INVITATION).values(
                campaign_id=campaign_id,
                respondent_id=respondent_id,
                nonce=nonce,
                token_sha256=sha256_hex(token_for(secret, nonce)),
                created_at=now,
            )
        )
    return f"{store.settings.public_url.rstrip('/')}/b/{token_for(secret, nonce)}"


@dataclass(frozen=True, slots=True)
class _Sent:
    sid: str | None
    status: str
    attempts: int
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class _Transient:
    detail: str


def _send(
    client: Client,
    to: str,
    body: str,
    options: InviteOptions,
    status_callback: str,
    sleep: Callable[[float], None],
    jitter: Callable[[], float],
) -> _Sent | _Transient:
    """One message: retried on 429, 5xx and network errors with capped, jittered backoff only."""
    kwargs: dict[str, Any] = {"to": to, "body": body, "status_callback": status_callback}
    settings_sid = options.sender
    if settings_sid is not None and settings_sid.startswith("MG"):
        kwargs["messaging_service_sid"] = settings_sid
    elif settings_sid is not None:
        kwargs["from_"] = settings_sid
    detail = ""
    for attempt in range(1, options.max_attempts + 1):
        try:
            message = client.messages.create(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            status, code = int(exc.status), int(exc.code) if exc.code is not None else None
            if status != 429 and status < 500:
                # 4xx is final: a bad number (21211), an opted-out one (21610), a blocked one…
                return _Sent(None, "error", attempt, code if code is not None else status)
            detail = f"HTTP {status}" + (f", error {code}" if code else "")
        except requests.RequestException as exc:
            # The network (DNS, TLS, timeouts): as transient as a 503.
            detail = type(exc).__name__
        else:
            return _Sent(str(message.sid), str(message.status or "queued"), attempt)
        if attempt < options.max_attempts:
            wait = min(options.retry_cap, options.retry_base * 2 ** (attempt - 1))
            sleep(wait * (0.5 + jitter() / 2))  # jitter: many senders must not retry in step
    return _Transient(detail)


def _release(store: Store, message_id: int) -> None:
    """Twilio never took the message: free the round so the next run sends it."""
    with store.writing(), store.engine.begin() as connection:
        connection.execute(
            sa.delete(SMS_MESSAGE).where(SMS_MESSAGE.c.id == message_id, SMS_MESSAGE.c.status == IN_DOUBT)
        )


def _record_send(
    store: Store, message_id: int, sent: _Sent, recipient: _Recipient, now: datetime, secret: bytes
) -> None:
    with store.writing(), store.engine.begin() as connection:
        connection.execute(
            sa.update(SMS_MESSAGE)
            .where(SMS_MESSAGE.c.id == message_id)
            .values(sid=sent.sid, attempts=sent.attempts, sent_at=now, error_code=sent.error_code)
        )
        # A status callback may have come in before this answer: move forward only.
        _advance_status(connection, message_id, sent.status, now)
        message = connection.execute(sa.select(SMS_MESSAGE).where(SMS_MESSAGE.c.id == message_id)).one()
        if sent.error_code == OPTED_OUT:
            opt_out(connection, secret, recipient.phone, now, source="twilio_21610")
        if sent.error_code is None and message.conversation_id is not None:
            connection.execute(
                sa.update(SMS_CONVERSATION)
                .where(SMS_CONVERSATION.c.id == message.conversation_id)
                .values(
                    last_sent_at=now,
                    updated_at=now,
                    reminders=SMS_CONVERSATION.c.reminders + (1 if message.round > 0 else 0),
                )
            )


def _advance_status(connection: Connection, message_id: int, status: str, at: datetime) -> bool:
    rank = STATUS_RANK.get(status)
    if rank is None:
        return False
    updated = connection.execute(
        sa.update(SMS_MESSAGE)
        .where(SMS_MESSAGE.c.id == message_id, SMS_MESSAGE.c.status_rank < rank)
        .values(status=status, status_rank=rank, status_at=at)
    ).rowcount
    return bool(updated)


def opt_out(connection: Connection, secret: bytes, phone: str, at: datetime, *, source: str) -> None:
    """Record that a number wants no more texts (every campaign), and flag its contact rows."""
    key = number_key(secret, phone)
    connection.execute(
        _insert(connection, SMS_OPT_OUT)
        .values(number_key=key, source=source, opted_out_at=at)
        .on_conflict_do_update(index_elements=["number_key"], set_={"source": source, "opted_out_at": at})
    )
    connection.execute(
        sa.update(CONTACT).where(CONTACT.c.kind == "phone", CONTACT.c.value == phone).values(opted_out_at=at)
    )


def opt_in(connection: Connection, secret: bytes, phone: str, at: datetime) -> None:
    connection.execute(
        sa.update(SMS_OPT_OUT)
        .where(SMS_OPT_OUT.c.number_key == number_key(secret, phone))
        .values(opted_in_at=at)
    )
    connection.execute(
        sa.update(CONTACT)
        .where(CONTACT.c.kind == "phone", CONTACT.c.value == phone)
        .values(opted_out_at=None)
    )


# --- Delivery callbacks ---------------------------------------------------------------------


def record_status(store: Store, form: Mapping[str, str], message_id: str | None, now: datetime) -> bool:
    """
    A status callback (`MessageStatus`, `ErrorCode`). `message_id` is our row id from the
    callback URL, so a callback that beats the API's own answer still finds its message.

    Returns:
        True when the message moved forward; False for a stale, repeated or unknown callback.
    """
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    error = form.get("ErrorCode") or ""
    with store.writing(), store.engine.begin() as connection:
        row = None
        if message_id is not None and message_id.isdigit():
            row = connection.execute(
                sa.select(SMS_MESSAGE).where(SMS_MESSAGE.c.id == int(message_id))
            ).first()
            if row is not None and row.sid is not None and sid and row.sid != sid:
                row = None  # the id and the sid disagree: trust neither
        if row is None and sid:
            row = connection.execute(sa.select(SMS_MESSAGE).where(SMS_MESSAGE.c.sid == sid)).first()
        if row is None:
            return False
        if row.sid is None and sid:
            connection.execute(sa.update(SMS_MESSAGE).where(SMS_MESSAGE.c.id == row.id).values(sid=sid))
        moved = _advance_status(connection, row.id, status, now)
        if moved and error.isdigit():
            connection.execute(
                sa.update(SMS_MESSAGE).where(SMS_MESSAGE.c.id == row.id).values(error_code=int(error))
            )
            if int(error) == OPTED_OUT:
                for phone in connection.execute(
                    sa.select(CONTACT.c.value).where(
                        CONTACT.c.respondent_id == row.respondent_id, CONTACT.c.kind == "phone"
                    )
                ).scalars():
                    opt_out(connection, store.settings.secret(), phone, now, source="twilio_21610")
        return moved


# --- Inbound: replies -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What to answer Twilio: `reply` is texted back (None: an empty <Response/>)."""

    reply: str | None
    kind: str
    reason: str | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    campaign: LoadedCampaign
    respondent_id: int
    conversation: Any  # a sms_conversation row, or None


def handle_inbound(store: Store, form: Mapping[str, str], *, now: datetime) -> InboundResult:
    """
    One correctly signed reply: keywords, routing to the respondent's campaign, the
    conversation, ingest(), and the text to answer. A redelivered MessageSid gets the reply of
    the first delivery and changes nothing.
    """
    sid = (form.get("MessageSid") or form.get("SmsSid") or "")[:64]
    if not sid:
        return InboundResult(None, "refused", "no_message_sid")
    sender = normalise_phone(form.get("From", ""))
    done = _replay(store, sid, sender)
    if done is not None:
        return done
    secret = store.settings.secret()
    body = form.get("Body", "")
    with store.writing(), store.engine.begin() as connection:
        plan = _plan(connection, store, secret, sid, sender, body, form, now)
    if plan is None:
        # A concurrent delivery of the same MessageSid holds the row: answer as it does.
        return _await_reply(store, sid)
    return _finish(store, plan)


def _replay(store: Store, sid: str, sender: str | None) -> InboundResult | None:
    # Most deliveries are first deliveries: look without taking the write lock.
    with store.reader.connect() as connection:
        seen = connection.execute(
            sa.select(SMS_INBOUND.c.id).where(SMS_INBOUND.c.verified_sid == sid)
        ).scalar_one_or_none()
    if seen is None:
        return None
    with store.writing(), store.engine.begin() as connection:
        row = connection.execute(sa.select(SMS_INBOUND).where(SMS_INBOUND.c.id == seen)).one()
        connection.execute(
            sa.update(SMS_INBOUND)
            .where(SMS_INBOUND.c.id == row.id)
            .values(deliveries=SMS_INBOUND.c.deliveries + 1)
        )
    if row.status == "processing":
        # The first delivery stopped before answering (a crash, a timeout): finish it now, the
        # same way, from what it wrote down.
        # The number is not kept in the row: Twilio's redelivery brings it again.
        return _finish(store, _Plan.from_row(row, sender), replayed=True)
    return InboundResult(row.reply or None, row.kind, row.reason, replayed=True)


def _await_reply(store: Store, sid: str, timeout: float = 5.0) -> InboundResult:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.reader.connect() as connection:
            row = connection.execute(sa.select(SMS_INBOUND).where(SMS_INBOUND.c.verified_sid == sid)).first()
        if row is not None and row.status != "processing":
            return InboundResult(row.reply or None, row.kind, row.reason, replayed=True)
        time.sleep(0.05)
    return InboundResult(None, "processing", "in_progress", replayed=True)


@dataclass
class _Plan:
    """What a reply does, written down before ingest() runs (see `SmsInbound.answers`)."""

    inbound_id: int
    sid: str
    campaign: str | None
    kind: str
    reason: str | None
    sender: str | None
    form: dict[str, str]
    received_at: datetime
    answers: tuple[Answer, ...] = ()
    refusal: Problem | None = None
    tail: str | None = None  # the text after what ingest() says (next question, thanks…)
    head: str | None = None  # the text before it (a keyword's answer, help)
    finished: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "answers": sms.answers_to_json(self.answers),
            "refusal": self.refusal.as_dict() if self.refusal else None,
            "tail": self.tail,
            "head": self.head,
            "finished": self.finished,
            "form": redact(self.form, SmsAdapter.personal_fields),
        }

    @classmethod
    def from_row(cls, row: Any, sender: str | None) -> _Plan:
        data = row.answers or {}
        refusal = data.get("refusal")
        form = {str(k): str(v) for k, v in (data.get("form") or {}).items()}
        return cls(
            inbound_id=row.id,
            sid=row.message_sid,
            campaign=row.campaign_code,
            kind=row.kind,
            reason=row.reason,
            sender=sender,
            form=form,
            received_at=as_utc(row.received_at),
            answers=sms.answers_from_json(data.get("answers")),
            refusal=Problem(**refusal) if refusal else None,
            tail=data.get("tail"),
            head=data.get("head"),
            finished=bool(data.get("finished")),
        )


def _plan(
    connection: Connection,
    store: Store,
    secret: bytes,
    sid: str,
    sender: str | None,
    body: str,
    form: Mapping[str, str],
    now: datetime,
) -> _Plan | None:
    """Decide what the reply does and move the conversation, in one transaction."""
    inserted = connection.execute(
        _insert(connection, SMS_INBOUND)
        .values(
            message_sid=sid,
            verified_sid=sid,
            number_key=number_key(secret, sender) if sender else None,
            body=body[:1600],
            kind="answer",
            status="processing",
            received_at=now,
            deliveries=1,
        )
        .on_conflict_do_nothing(index_elements=["verified_sid"])
        .returning(SMS_INBOUND.c.id)
    ).scalar_one_or_none()
    if inserted is None:
        return None
    plan = _Plan(int(inserted), sid, None, "answer", None, sender, dict(form), now)
    word = sms.keyword(body)
    target = _route(connection, store, secret, sender, now) if sender else None
    if target is not None:
        plan.campaign = target.campaign.spec.code
    spec = target.campaign.spec if target is not None else None
    lang = spec.lang if spec is not None else store.settings.lang

    if word == "stop" and sender is not None:
        opt_out(connection, secret, sender, now, source="keyword")
        plan.kind, plan.reason = "stop", "opted_out"
        plan.head = None if sms.is_twilio_keyword(body) else sms.text(lang, "stopped")
        return _save_plan(connection, plan, target)
    if word == "start" and sender is not None:
        opt_in(connection, secret, sender, now)
        plan.kind, plan.reason = "start", "opted_in"
        plan.head = None if sms.is_twilio_keyword(body) else sms.text(lang, "started")
        return _save_plan(connection, plan, target)
    if target is None or spec is None or sender is None:
        plan.kind, plan.reason = "refused", "unknown_sender"
        plan.campaign = _only_open_sms_campaign(connection, store, now)
        plan.refusal = Problem("From", "unknown_sender", "the number is on no roster of an SMS campaign")
        plan.head = sms.text(lang, "unknown")
        return _save_plan(connection, plan, None)
    if as_utc(now) > as_utc(spec.closes_at):
        plan.kind, plan.reason = "refused", "campaign_closed"
        plan.refusal = Problem("answered_at", "campaign_closed", "the reply came after the campaign closed")
        plan.head = sms.text(lang, "closed", name=spec.name, date=sms.local_date(spec, spec.closes_at))
        return _save_plan(connection, plan, target)
    if as_utc(now) < as_utc(spec.opens_at):
        plan.kind, plan.reason = "refused", "campaign_not_open"
        plan.refusal = Problem(
            "answered_at", "campaign_not_open", "the reply came before the campaign opened"
        )
        plan.head = sms.text(lang, "not_open", name=spec.name, date=sms.local_date(spec, spec.opens_at))
        return _save_plan(connection, plan, target)

    conversation = target.conversation
    if conversation is None:
        conversation = _conversation_for(connection, store, target, sender, now, secret)
    if conversation.mode == "link":
        plan.kind, plan.reason = "unclear", "link_mode"
        plan.head = sms.text(lang, "link_reply")
        url = ballot_link(connection, store, target.campaign.id, target.respondent_id, now)
        plan.tail = sms.link_text(spec, url)
        plan.refusal = Problem("Body", "link_mode", "this respondent answers through the web ballot link")
        return _save_plan(connection, plan, target)
    questions = [tuple(q) for q in conversation.questions]
    position = int(conversation.position)
    if word == "help":
        plan.kind, plan.reason = "help", None
        plan.head = (
            sms.help_text(spec, questions, position) if position < len(questions) else sms.text(lang, "done")
        )
        return _save_plan(connection, plan, target)

    parsed = sms.parse_reply(body, spec)
    step = (
        sms.advance(questions, position, sms.answers_from_json(conversation.pending), parsed)
        if not isinstance(parsed, ReplyProblem)
        else parsed
    )
    if isinstance(step, ReplyProblem):
        if step.code == "nothing_left":
            plan.kind, plan.reason, plan.head = "unclear", "nothing_left", sms.text(lang, "done")
        else:
            plan.kind, plan.reason = "unclear", step.code
            plan.head = sms.problem_text(spec, step)
            plan.tail = sms.help_text(spec, questions, position)
        plan.refusal = Problem("Body", "unclear_reply", f"{step.code}: {step.detail}")
        return _save_plan(connection, plan, target)

    plan.answers = step.complete
    plan.finished = step.position >= len(questions)
    if not plan.finished:
        plan.tail = sms.question_text(spec, questions, step.position)
    connection.execute(
        sa.update(SMS_CONVERSATION)
        .where(SMS_CONVERSATION.c.id == conversation.id)
        .values(
            position=step.position,
            pending=sms.answers_to_json(step.pending) or None,
            state="done" if plan.finished else "open",
            updated_at=now,
        )
    )
    return _save_plan(connection, plan, target, conversation.id)


def _save_plan(
    connection: Connection, plan: _Plan, target: _Target | None, conversation_id: int | None = None
) -> _Plan:
    if conversation_id is None and target is not None and target.conversation is not None:
        conversation_id = target.conversation.id
    connection.execute(
        sa.update(SMS_INBOUND)
        .where(SMS_INBOUND.c.id == plan.inbound_id)
        .values(
            campaign_code=plan.campaign,
            conversation_id=conversation_id,
            kind=plan.kind,
            reason=plan.reason,
            answers=plan.as_json(),
        )
    )
    return plan


def _finish(store: Store, plan: _Plan, *, replayed: bool = False) -> InboundResult:
    """Take the ballot (or the refusal) in through ingest(), then write down the reply."""
    receipt: Receipt | None = None
    item: Item | None = None
    spec: CampaignSpec | None = None
    if plan.campaign is not None:
        with store.reader.connect() as connection:
            loaded = load_campaign(store, connection, plan.campaign)
        spec = loaded.spec if loaded is not None else None
    if plan.campaign is not None and plan.refusal is not None:
        item = SmsAdapter.refusal(plan.campaign, plan.form, plan.refusal, plan.received_at)
    elif spec is not None and plan.answers and plan.sender is not None:
        inbound = InboundSms(plan.sid, plan.sender, plan.form, plan.received_at, plan.answers)
        item = next(iter(SmsAdapter().parse(inbound, spec)))
    if item is not None:
        receipt = ingest(store, item)
    lang = spec.lang if spec is not None else store.settings.lang
    parts = [plan.head or ""]
    if spec is not None and plan.kind == "answer":
        parts.extend(_receipt_texts(spec, receipt))
        if plan.finished:
            counted = receipt is not None and receipt.counted_units
            parts.append(
                sms.text(lang, "thanks", receipt=receipt.code)
                if counted and receipt
                else sms.text(lang, "done")
            )
        elif not any(parts):
            parts.append(sms.text(lang, "recorded"))
    parts.append(plan.tail or "")
    reply = sms.join_texts(lang, [p for p in parts if p]) or None
    status = "rejected" if plan.kind in ("refused", "unclear") else "answered"
    with store.writing(), store.engine.begin() as connection:
        connection.execute(
            sa.update(SMS_INBOUND)
            .where(SMS_INBOUND.c.id == plan.inbound_id)
            .values(
                status=status,
                submission_id=receipt.submission_id if receipt is not None else None,
                reply=reply or "",
            )
        )
    log.info("sms reply %s: %s %s", plan.sid, plan.kind, plan.reason or "")
    return InboundResult(reply, plan.kind, plan.reason, replayed=replayed)


def _receipt_texts(spec: CampaignSpec, receipt: Receipt | None) -> list[str]:
    """What ingest() decided, unit by unit, in the respondent's words."""
    if receipt is None:
        return []
    lang = spec.lang
    out: list[str] = []
    if receipt.outcome in ("rejected", "conflict"):
        units = sorted({p.field for p in receipt.problems})
        return [sms.text(lang, "refused", unit=", ".join(units) or "—")]
    not_sampled = False
    for unit in receipt.units:
        name = sms.unit_name(spec, unit.unit)
        if unit.reason == "earlier_answer_counts":
            out.append(sms.text(lang, "already", unit=name))
        elif unit.reason == "later_answer_counts":
            out.append(sms.text(lang, "later", unit=name))
        elif unit.reason == "not_sampled":
            not_sampled = True
        elif unit.status not in ("counted", "pending_review"):
            out.append(sms.text(lang, "refused", unit=name))
    if not_sampled:
        out.append(sms.text(lang, "not_sampled"))
    return out


def _route(connection: Connection, store: Store, secret: bytes, sender: str, now: datetime) -> _Target | None:
    """
    The respondent a number belongs to, in the campaign it is most likely answering: one with
    an open SMS conversation first, then an open campaign, then the latest texted.
    """
    campaigns: dict[int, LoadedCampaign] = {}
    for code in connection.execute(sa.select(CAMPAIGN.c.code)).scalars():
        loaded = load_campaign(store, connection, code)
        if loaded is not None and "sms" in loaded.spec.channels:
            campaigns[loaded.id] = loaded
    if not campaigns:
        return None
    pairs = [
        sa.and_(
            RESPONDENT.c.campaign_id == cid,
            RESPONDENT.c.phone_key == keyed_hash(secret, c.spec.code, "phone", sender),
        )
        for cid, c in campaigns.items()
    ]
    respondents = connection.execute(
        sa.select(RESPONDENT.c.id, RESPONDENT.c.campaign_id).where(sa.or_(*pairs)).order_by(RESPONDENT.c.id)
    ).all()
    if not respondents:
        return None
    first_per_campaign: dict[int, int] = {}
    for r in respondents:
        first_per_campaign.setdefault(r.campaign_id, r.id)  # as ingest() resolves a shared number
    conversations = {
        c.respondent_id: c
        for c in connection.execute(
            sa.select(SMS_CONVERSATION).where(
                SMS_CONVERSATION.c.respondent_id.in_(list(first_per_campaign.values()))
            )
        )
    }

    def rank(item: tuple[int, int]) -> tuple[bool, bool, datetime, int]:
        campaign_id, respondent_id = item
        spec = campaigns[campaign_id].spec
        conversation = conversations.get(respondent_id)
        is_open = as_utc(spec.opens_at) <= as_utc(now) <= as_utc(spec.closes_at)
        last = conversation.last_sent_at or conversation.started_at if conversation is not None else None
        return (
            conversation is not None and conversation.state == "open" and is_open,
            is_open,
            as_utc(last) if last is not None else as_utc(spec.opens_at),
            campaign_id,
        )

    campaign_id, respondent_id = max(first_per_campaign.items(), key=rank)
    conversation = conversations.get(respondent_id)
    return _Target(campaigns[campaign_id], respondent_id, conversation)


def _only_open_sms_campaign(connection: Connection, store: Store, now: datetime) -> str | None:
    """Where a stranger's reply is counted as refused: the one open SMS campaign, if just one."""
    open_codes = []
    for code in connection.execute(sa.select(CAMPAIGN.c.code)).scalars():
        loaded = load_campaign(store, connection, code)
        if loaded is None or "sms" not in loaded.spec.channels:
            continue
        if as_utc(loaded.spec.opens_at) <= as_utc(now) <= as_utc(loaded.spec.closes_at):
            open_codes.append(code)
    return open_codes[0] if len(open_codes) == 1 else None


def _conversation_for(
    connection: Connection, store: Store, target: _Target, sender: str, now: datetime, secret: bytes
) -> Any:
    """
    A respondent who texts in before (or without) an invitation starts a conversation over
    every unit they may rate: what they answered elsewhere is for ingest() to decide (and for
    the reply to say "you have already answered"), not silently skipped.
    """
    respondent = connection.execute(
        sa.select(RESPONDENT).where(RESPONDENT.c.id == target.respondent_id)
    ).one()
    spec = target.campaign.spec
    units = tuple(_rateable(spec, respondent.tier_code, respondent.own_unit, respondent.assigned_units))
    recipient = _Recipient(respondent.id, respondent.key, respondent.tier_code, sender, units)
    return _start_conversation(connection, target.campaign, recipient, sms.MAX_SMS_QUESTIONS, now, secret)


def record_unsigned(store: Store, form: Mapping[str, str], *, now: datetime, detail: str) -> None:
    """
    Keep a post that failed the signature check: in the inbound log and, when its campaign can
    be told, as a rejected submission (`rejected:signature`), never counted, never answered.
    """
    secret = store.settings.secret()
    sid = (form.get("MessageSid") or form.get("SmsSid") or "no-sid")[:64]
    sender = normalise_phone(form.get("From", ""))
    with store.reader.connect() as connection:
        target = _route(connection, store, secret, sender, now) if sender else None
        campaign = (
            target.campaign.spec.code
            if target is not None
            else _only_open_sms_campaign(connection, store, now)
        )
    submission_id = None
    if campaign is not None:
        submission_id = ingest(store, SmsAdapter.bad_signature(campaign, form, now, detail)).submission_id
    with store.writing(), store.engine.begin() as connection:
        connection.execute(
            sa.insert(SMS_INBOUND).values(
                message_sid=sid,
                verified_sid=None,
                number_key=number_key(secret, sender) if sender else None,
                campaign_code=campaign,
                body=form.get("Body", "")[:1600],
                kind="refused",
                status="rejected",
                reason="signature",
                answers={"detail": detail},
                submission_id=submission_id,
                reply="",
                received_at=now,
                deliveries=1,
            )
        )
    log.warning("sms webhook refused: %s (MessageSid %s)", detail, sid)


def inbound_counts(store: Store, campaign_code: str) -> dict[str, int]:
    """Replies by kind/reason for a campaign (reports, `collect sms status`)."""
    with store.reader.connect() as connection:
        rows = connection.execute(
            sa.select(SMS_INBOUND.c.kind, SMS_INBOUND.c.reason, sa.func.count())
            .where(SMS_INBOUND.c.campaign_code == campaign_code)
            .group_by(SMS_INBOUND.c.kind, SMS_INBOUND.c.reason)
        ).all()
    return {f"{kind}:{reason}" if reason else kind: int(n) for kind, reason, n in rows}


def delivery_counts(store: Store, campaign_code: str) -> dict[str, int]:
    with store.reader.connect() as connection:
        rows = connection.execute(
            sa.select(SMS_MESSAGE.c.status, sa.func.count())
            .join(CAMPAIGN, CAMPAIGN.c.id == SMS_MESSAGE.c.campaign_id)
            .where(CAMPAIGN.c.code == campaign_code)
            .group_by(SMS_MESSAGE.c.status)
        ).all()
    return {status: int(n) for status, n in rows}


__all__ = [
    "INBOUND_PATH",
    "STATUS_PATH",
    "InboundResult",
    "InviteOptions",
    "InviteReport",
    "SmsNotPossible",
    "TwilioUnreachable",
    "handle_inbound",
    "number_key",
    "record_status",
    "record_unsigned",
    "send_invites",
]
