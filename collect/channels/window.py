"""
On-site ratings at service windows (窗口即时评): poster scans and one-time tickets → ballots.

Pure, like every adapter: the signing helpers take the key as bytes, time comes in as an
argument, and nothing here reads settings or the store. The rule is one rating per service
(一次一评): a ticket is one transaction; a poster scan is one per device, window and day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import CampaignSpec, Channel, Scale
from collect.channels.base import answer_from_text, redact
from collect.channels.web import COMMENT_MAX, answer_field

Via = Literal["ticket", "poster"]

# Crockford's base32 without i, l, o, u, lower case: read off a poster without confusion.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
POSTER_CODE_LENGTH = 10  # 50 bits: not guessable by scanning, short enough for the printed URL
POSTER_CODE_RE = re.compile(rf"^[{_ALPHABET}]{{{POSTER_CODE_LENGTH}}}$")


def new_poster_code() -> str:
    """A fresh poster code: random, never derived from the unit or window code."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(POSTER_CODE_LENGTH))


# --- Tickets ---------------------------------------------------------------------------------
#
# `<window>~<issued unix s>~<valid minutes>~<ref>~<signature>`: the signature is
# base64url(HMAC-SHA256(ticket key, everything before the last "~"))[:24]. `~` is unreserved in
# URLs and in no window code, so a ticket needs no escaping. The ticket key is derived from
# COLLECT_SECRET_KEY, so a queue system holds a key that signs tickets and nothing else.

TICKET_SEP = "~"
TICKET_REF_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_WINDOW_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SIG_CHARS = 24  # 18 bytes of HMAC: 144 bits, far beyond guessing
MAX_TICKET_TEXT = 160
# Clocks of queue systems drift: a ticket "issued" a little in the future is still accepted.
CLOCK_SKEW = timedelta(minutes=5)


def ticket_key(secret: bytes) -> bytes:
    """The key integrators sign tickets with; `collect qr ticket-key` prints it (hex)."""
    return hmac.new(secret, b"collect window ticket key v1", hashlib.sha256).digest()


def _signature(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_SIG_CHARS]


@dataclass(frozen=True, slots=True)
class Ticket:
    """A verified ticket: which window, when issued, for how long, the issuer's reference."""

    window: str
    issued_at: datetime
    valid: timedelta
    ref: str
    text: str

    @property
    def expires_at(self) -> datetime:
        return self.issued_at + self.valid


def sign_ticket(
    key: bytes, window: str, issued_at: datetime, valid: timedelta, ref: str | None = None
) -> str:
    """
    A signed one-time ticket for one service at `window`.

    Args:
        ref: the issuer's reference for the transaction (queue number + random); random if None.
    """
    if not _WINDOW_RE.match(window):
        raise ValueError(f"{window!r} is not a window code")
    ref = ref if ref is not None else secrets.token_urlsafe(6)
    if not TICKET_REF_RE.match(ref):
        raise ValueError("a ticket reference is 1–32 of A–Z a–z 0–9 _ -")
    minutes = int(valid.total_seconds() // 60)
    if minutes < 1:
        raise ValueError("a ticket is valid for at least one minute")
    payload = TICKET_SEP.join([window, str(int(issued_at.timestamp())), str(minutes), ref])
    return f"{payload}{TICKET_SEP}{_signature(key, payload)}"


TicketProblemCode = Literal["malformed", "bad_signature", "expired", "not_yet_valid", "too_long_valid"]


def verify_ticket(key: bytes, text: str, now: datetime, max_valid: timedelta) -> Ticket | TicketProblemCode:
    """
    The ticket, or why it is refused. The signature is checked before anything else is believed,
    so a forged ticket learns nothing about which windows exist.
    """
    if len(text) > MAX_TICKET_TEXT:
        return "malformed"
    payload, sep, signature = text.rpartition(TICKET_SEP)
    parts = payload.split(TICKET_SEP)
    if not sep or len(parts) != 4:
        return "malformed"
    if not hmac.compare_digest(_signature(key, payload).encode(), signature.encode()):
        return "bad_signature"
    window, issued, minutes, ref = parts
    if not (_WINDOW_RE.match(window) and issued.isdigit() and minutes.isdigit() and TICKET_REF_RE.match(ref)):
        return "malformed"
    issued_at = datetime.fromtimestamp(int(issued), tz=now.tzinfo)
    valid = timedelta(minutes=int(minutes))
    if valid > max_valid:
        # The issuer may choose a shorter life, never a longer one than the campaign allows.
        return "too_long_valid"
    if issued_at - CLOCK_SKEW > now:
        return "not_yet_valid"
    if now > issued_at + valid:
        return "expired"
    return Ticket(window, issued_at, valid, ref, text)


# --- Who rated: one transaction --------------------------------------------------------------


def ticket_transaction(ticket: Ticket) -> str:
    """The transaction a ticket stands for: the whole signed text, so each ticket counts once."""
    return f"ticket:{ticket.text}"


def local_day(spec: CampaignSpec, moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(spec.timezone)).date()


def device_day_transaction(window: str, day: date, device: str) -> str:
    """A poster scan's transaction: this device at this window on this (campaign-local) day."""
    return f"poster:{window}:{day.isoformat()}:{device}"


def network_of(address: str) -> str | None:
    """
    The network an address belongs to, for rate limits: IPv4 /24 and IPv6 /64 (one subscriber
    line). Carrier-grade NAT puts many phones behind one address, so limits per network must be
    generous; a single address is not a person.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def network_key(secret: bytes, network: str, day: date) -> str:
    """A keyed hash of a network, changing daily: counts distinct networks, never names one."""
    message = f"window-network\x1f{day.isoformat()}\x1f{network}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:16]


# --- The scale: which levels are "perfect" and which open a case -----------------------------


def top_answer(scale: Scale) -> str:
    """The best answer: the level with the highest value, or the highest points."""
    if scale.kind == "levels":
        return max(scale.levels, key=lambda level: level.value).code
    return str(scale.max_points)


def low_answers(scale: Scale) -> frozenset[str]:
    """
    The campaign's lowest two levels (by value), which open a follow-up case; on a points scale
    the two lowest points. "Don't know" is never low.
    """
    if scale.kind == "levels":
        ordered = sorted(scale.levels, key=lambda level: level.value)
        return frozenset(level.code for level in ordered[:2])
    return frozenset({str(scale.min_points), str(scale.min_points + 1)})


def answer_value(answer: Answer) -> str | None:
    """An answer as `top_answer`/`low_answers` name it."""
    if answer.level is not None:
        return answer.level
    if answer.points is not None:
        return str(answer.points)
    return None


# --- Service hours and follow-up deadlines ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hours:
    """A window's service hours, campaign-local; ratings are taken until `grace` after closing."""

    opens: tuple[int, int] = (7, 0)
    closes: tuple[int, int] = (21, 0)
    grace: timedelta = timedelta(hours=1)

    @classmethod
    def parse(cls, text: str) -> Hours:
        """`08:30-17:30` → Hours; ValueError otherwise."""
        match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
        if match is None:
            raise ValueError(f"{text!r}: give service hours as HH:MM-HH:MM, e.g. 08:30-17:30")
        oh, om, ch, cm = (int(g) for g in match.groups())
        if not (0 <= oh <= 23 and 0 <= ch <= 24 and om < 60 and cm < 60 and (oh, om) < (ch, cm)):
            raise ValueError(f"{text!r}: opening must come before closing, within one day")
        return cls((oh, om), (ch, cm))

    def text(self) -> str:
        return f"{self.opens[0]:02d}:{self.opens[1]:02d}-{self.closes[0]:02d}:{self.closes[1]:02d}"

    def admits(self, spec: CampaignSpec, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(spec.timezone))
        minutes = local.hour * 60 + local.minute
        start = self.opens[0] * 60 + self.opens[1]
        end = self.closes[0] * 60 + self.closes[1] + int(self.grace.total_seconds() // 60)
        return start <= minutes < end


def add_working_days(spec: CampaignSpec, start: datetime, days: int) -> datetime:
    """
    `start` plus `days` working days (Monday to Friday, campaign-local), same clock time. The 好差评
    rule: call back within 1 working day, fix within 15. Public holidays and their make-up
    working days are not modelled: a deadline over a holiday falls early, never late.
    """
    zone = ZoneInfo(spec.timezone)
    cursor = start.astimezone(zone)
    left = days
    while left > 0:
        cursor = cursor + timedelta(days=1)  # wall-clock arithmetic: same local time
        if cursor.weekday() < 5:
            left -= 1
    return cursor


CALLBACK_WORKING_DAYS = 1
FIX_WORKING_DAYS = 15


# --- The adapter -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowForm:
    """
    One posted rating of a window.

    Args:
        transaction: the ticket's or the device-day's transaction (see above); kept only as
            ingest()'s keyed hash.
        form_id: the rendered form's id (from its signed CSRF token): a double tap re-sends the
            same form, which ingest() answers as already received.
        flag: a reason to hold the ballot for review (a burst at this window).
    """

    via: Via
    window: str
    unit: str
    poster: str | None
    staff: str | None
    transaction: str
    form_id: str
    fields: Mapping[str, str]
    received_at: datetime
    tier: str
    flag: str | None = None


class WindowAdapter:
    channel: ClassVar[Channel] = "window_qr"
    # The CSRF token is of no use to a reader; a phone number never belongs in the ballot form,
    # and if a client sends one anyway it is not kept.
    personal_fields: ClassVar[frozenset[str]] = frozenset({"csrf", "phone", "contact"})

    def parse(self, raw: WindowForm, spec: CampaignSpec) -> Iterator[BallotSubmission | Rejection]:
        problems: list[Problem] = []
        answers: list[Answer] = []
        for aspect in spec.aspects:
            name = answer_field(raw.unit, aspect.code)
            value = raw.fields.get(name, "").strip()
            if not value:
                if not spec.allow_partial:
                    problems.append(Problem(name, "required", f"{raw.unit}/{aspect.code} is not answered"))
                continue
            parsed = answer_from_text(spec, raw.unit, aspect.code, value, name)
            if isinstance(parsed, Problem):
                problems.append(parsed)
            else:
                answers.append(parsed)
        if not answers and not problems:
            problems.append(Problem("answers", "no_answers", "the ballot has no answers"))
        comment = raw.fields.get("comment", "").strip() or None
        if comment is not None and len(comment) > COMMENT_MAX:
            problems.append(
                Problem(
                    "comment", "too_long", f"the comment has {len(comment)} characters, at most {COMMENT_MAX}"
                )
            )
        kept = _kept(spec, raw)
        meta: dict[str, str] = {"via": raw.via, "window": raw.window}
        if raw.poster is not None:
            meta["poster"] = raw.poster
        if raw.staff is not None:
            meta["staff"] = raw.staff
        source_ref = f"{raw.via}-{raw.form_id}"
        if problems:
            yield Rejection(
                campaign=spec.code,
                channel=self.channel,
                source_ref=source_ref,
                problems=tuple(problems),
                received_at=raw.received_at,
                raw=kept,
                meta=meta,
            )
            return
        yield BallotSubmission(
            campaign=spec.code,
            channel=self.channel,
            source_ref=source_ref,
            identity=Identity("transaction", raw.transaction),
            answers=tuple(answers),
            # To the minute: a double tap on Send arrives twice within a second or two, and the
            # same answers at the same minute are one submission (answered as already received).
            answered_at=raw.received_at.replace(second=0, microsecond=0),
            received_at=raw.received_at,
            raw=kept,
            comment=comment,
            tier=raw.tier,
            meta=meta,
            review=raw.flag,
        )


def rejection(
    spec: CampaignSpec, raw: WindowForm, code: str, detail: str, field: str = "window"
) -> Rejection:
    """A rating refused before parsing (outside service hours …): kept as evidence all the same."""
    meta = {"via": raw.via, "window": raw.window}
    return Rejection(
        campaign=spec.code,
        channel=WindowAdapter.channel,
        source_ref=f"{raw.via}-{raw.form_id}",
        problems=(Problem(field, code, detail),),
        received_at=raw.received_at,
        raw=_kept(spec, raw),
        meta=meta,
    )


def _kept(spec: CampaignSpec, raw: WindowForm) -> dict[str, object]:
    # Only the form's own fields are kept: anything else a client adds is not ours to store.
    known = {answer_field(raw.unit, a.code) for a in spec.aspects} | {"comment", "csrf"}
    return redact({k: v for k, v in raw.fields.items() if k in known}, WindowAdapter.personal_fields)


__all__ = [
    "CALLBACK_WORKING_DAYS",
    "FIX_WORKING_DAYS",
    "Hours",
    "Ticket",
    "WindowAdapter",
    "WindowForm",
    "add_working_days",
    "device_day_transaction",
    "low_answers",
    "network_of",
    "new_poster_code",
    "sign_ticket",
    "ticket_key",
    "top_answer",
    "verify_ticket",
]
