"""
The one normalised shape every channel produces, and what ingest() answers.

Adapters build these from outside input; they never hash, never read settings and never touch
the database. Identities arrive raw (`Identity`) and are keyed by ingest(), which is the only
place the secret key meets a phone number or a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from collect.campaign import Channel

IdentityKind = Literal["token", "roster_id", "phone", "transaction"]
Outcome = Literal["counted", "not_counted", "already_received", "conflict", "rejected"]
BallotStatus = Literal["counted", "superseded", "duplicate", "invalid", "pending_review"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: a level code, or whole points, or "don't know", for one unit and aspect."""

    unit: str
    aspect: str
    level: str | None = None
    points: int | None = None
    dont_know: bool = False


@dataclass(frozen=True, slots=True)
class Identity:
    """
    Who answered, as the channel knows it. `token`: a web ballot link; `roster_id`: an id from
    the roster; `phone`: an E.164 number; `transaction`: one service transaction (a ticket id,
    or a device-per-window-per-day key) on open channels.
    """

    kind: IdentityKind
    value: str

    def __repr__(self) -> str:
        # Never let a phone number or token reach a log line through a repr.
        return f"Identity(kind={self.kind!r}, value=<redacted>)"


@dataclass(frozen=True, slots=True)
class BallotSubmission:
    """
    One incoming ballot from any channel.

    Args:
        source_ref: the channel's idempotency key (MessageSid, "calls.xlsx#row=17", a serial):
            the same (campaign, channel, source_ref) with the same content adds nothing twice.
        answered_at: when the respondent answered, as the channel records it (call time,
            arrival of the SMS, date keyed for paper). "First/last counts" uses this time.
        raw: the input as received, personal fields already redacted by the adapter.
        meta: channel facts kept with the ballot (poster id, ticket or poster, serial, ...).
        review: a reason to hold the ballot for review instead of counting it (burst flags).
    """

    campaign: str
    channel: Channel
    source_ref: str
    identity: Identity | None
    answers: tuple[Answer, ...]
    answered_at: datetime
    received_at: datetime
    raw: Mapping[str, Any] = field(default_factory=dict)
    comment: str | None = None
    tier: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    review: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with an input, where: `code` is stable (translated for operators)."""

    field: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input an adapter could not turn into a ballot; ingest() keeps it with its problems."""

    campaign: str
    channel: Channel
    source_ref: str
    problems: tuple[Problem, ...]
    received_at: datetime
    raw: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return self.problems[0].code if self.problems else "rejected"


@dataclass(frozen=True, slots=True)
class UnitResult:
    """What became of the ballot for one unit."""

    unit: str
    status: BallotStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """
    ingest()'s answer. `code` is a short receipt the respondent can quote; `outcome`:
    counted (at least one unit counted), not_counted (kept, none counted: second vote, not
    sampled), already_received (a redelivery: nothing added), conflict (same source_ref,
    other content: kept, not counted) or rejected (kept with its problems).
    """

    outcome: Outcome
    code: str
    submission_id: int
    units: tuple[UnitResult, ...] = ()
    problems: tuple[Problem, ...] = ()
    reason: str | None = None

    @property
    def counted_units(self) -> tuple[str, ...]:
        return tuple(u.unit for u in self.units if u.status == "counted")
