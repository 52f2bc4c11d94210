"""
The normalised store: SQLModel tables shared by SQLite and PostgreSQL.

Nothing here holds a phone number or a token in clear except `Contact` (used only to send).
Ballots carry a keyed hash (`voter_key`), never an identity. The one-vote rule is the partial
UNIQUE index `uq_ballot_counted`: at most one counted ballot per (campaign, unit, voter).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware() -> Any:
    return Field(
        sa_column_kwargs={"nullable": False}, sa_type=sa.DateTime(timezone=True), default_factory=utcnow
    )


class Campaign(SQLModel, table=True):
    """A campaign; `spec_json` is the full validated definition every score is computed from."""

    __tablename__ = "campaign"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True, index=True)
    name: str
    spec_json: str = Field(sa_type=sa.Text)
    spec_sha256: str = Field(max_length=64)
    opens_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    closes_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    created_at: datetime = _aware()
    updated_at: datetime = _aware()


class Unit(SQLModel, table=True):
    """A unit of a campaign, mirrored from the spec so SQL reports can join on it."""

    __tablename__ = "unit"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "code", name="uq_unit_code"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    code: str = Field(max_length=64)
    name: str
    group_code: str = Field(max_length=64)


class Tier(SQLModel, table=True):
    __tablename__ = "tier"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "code", name="uq_tier_code"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    code: str = Field(max_length=64)
    label: str
    weight: float
    quota: int | None = None
    source: str = Field(max_length=16)


class Respondent(SQLModel, table=True):
    """
    A person on a roster (sampling frame). `key` is HMAC(secret, roster id); `phone_key` is
    HMAC(secret, E.164 number), so SMS and call-centre rows resolve to the same person.
    """

    __tablename__ = "respondent"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "key", name="uq_respondent_key"),
        sa.Index("ix_respondent_phone_key", "campaign_id", "phone_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    tier_code: str = Field(max_length=64)
    key: str = Field(max_length=64)
    phone_key: str | None = Field(default=None, max_length=64)
    own_unit: str | None = Field(default=None, max_length=64)
    assigned_units: list[str] | None = Field(default=None, sa_column=Column(JSON))
    attributes: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # strata, size
    in_sample: bool = False
    created_at: datetime = _aware()


class Contact(SQLModel, table=True):
    """The one place a phone number is kept in clear: for sending invitations, nothing else."""

    __tablename__ = "contact"
    id: int | None = Field(default=None, primary_key=True)
    respondent_id: int = Field(foreign_key="respondent.id", index=True)
    kind: str = Field(max_length=16)  # phone | email
    value: str = Field(max_length=255)
    opted_out_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class Invitation(SQLModel, table=True):
    """
    A ballot link for one respondent. The token is HMAC(secret, nonce) and is not stored:
    only its SHA-256 (to look it up) and the nonce (to print the link again).
    """

    __tablename__ = "invitation"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    respondent_id: int = Field(foreign_key="respondent.id", index=True)
    nonce: str = Field(max_length=64)
    token_sha256: str = Field(max_length=64, unique=True)
    created_at: datetime = _aware()
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class Submission(SQLModel, table=True):
    """
    The raw inbox: every incoming thing from every channel, never deleted.

    status: accepted (ballots made) | rejected (reason, problems) | conflict (an external id
    seen before with different content). A redelivery of identical content adds no row; it
    bumps `deliveries`.
    """

    __tablename__ = "submission"
    __table_args__ = (
        sa.UniqueConstraint(
            "campaign_code", "channel", "external_id", "content_sha256", name="uq_submission_content"
        ),
        sa.Index("ix_submission_lookup", "campaign_code", "channel", "external_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_code: str = Field(max_length=64, index=True)
    channel: str = Field(max_length=16)
    external_id: str = Field(max_length=255)
    content_sha256: str = Field(max_length=64)
    received_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    answered_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=16, index=True)
    reason: str | None = Field(default=None, max_length=64)
    problems: list[dict[str, str]] | None = Field(default=None, sa_column=Column(JSON))
    receipt: str = Field(max_length=16, index=True)
    deliveries: int = 1
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Ballot(SQLModel, table=True):
    """
    One respondent's (or one transaction's) rating of one unit.

    status: counted | superseded | duplicate | invalid | pending_review; `reason` says why it
    is not counted. `voter_key` is the respondent key or, on open channels, a transaction key.
    """

    __tablename__ = "ballot"
    __table_args__ = (
        sa.Index(
            "uq_ballot_counted",
            "campaign_id",
            "unit_code",
            "voter_key",
            unique=True,
            sqlite_where=sa.text("status = 'counted'"),
            postgresql_where=sa.text("status = 'counted'"),
        ),
        sa.Index("ix_ballot_voter", "campaign_id", "unit_code", "voter_key"),
        sa.Index("ix_ballot_status", "campaign_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    submission_id: int = Field(foreign_key="submission.id", index=True)
    unit_code: str = Field(max_length=64)
    tier_code: str = Field(max_length=64)
    voter_key: str = Field(max_length=64)
    voter_kind: str = Field(max_length=16)  # respondent | transaction
    channel: str = Field(max_length=16)
    answered_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    received_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    comment: str | None = Field(default=None, sa_type=sa.Text)
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Answer(SQLModel, table=True):
    """One aspect of one ballot: a level code or points, or "don't know"."""

    __tablename__ = "answer"
    id: int | None = Field(default=None, primary_key=True)
    ballot_id: int = Field(foreign_key="ballot.id", index=True)
    aspect_code: str = Field(max_length=64)
    level_code: str | None = Field(default=None, max_length=64)
    points: int | None = None
    dont_know: bool = False


class AuditEntry(SQLModel, table=True):
    """Append-only log of operator actions: who, when, what, why."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _aware()
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64, index=True)
    campaign_code: str | None = Field(default=None, max_length=64, index=True)
    target: str | None = Field(default=None, max_length=255)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class User(SQLModel, table=True):
    """An operator console account; the password is kept as an argon2 hash."""

    __tablename__ = "app_user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    role: str = Field(max_length=16)
    password_hash: str
    created_at: datetime = _aware()
    disabled: bool = False


class ApiKey(SQLModel, table=True):
    """A key for rating devices and integrations; only its SHA-256 is kept (keys are random)."""

    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    prefix: str = Field(max_length=16)
    key_sha256: str = Field(max_length=64, unique=True)
    created_at: datetime = _aware()
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class IdempotencyRecord(SQLModel, table=True):
    """`Idempotency-Key` of the JSON API: same key + same body gives the stored response."""

    __tablename__ = "idempotency_record"
    __table_args__ = (sa.UniqueConstraint("api_key_id", "key", name="uq_idempotency_key"),)
    id: int | None = Field(default=None, primary_key=True)
    api_key_id: int = Field(foreign_key="api_key.id")
    key: str = Field(max_length=255)
    body_sha256: str = Field(max_length=64)
    status_code: int
    response_body: str = Field(sa_type=sa.Text)
    created_at: datetime = _aware()


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


# Core handles for the hot paths (ingest, imports, reports), where ORM objects cost too much.
CAMPAIGN = _table(Campaign)
UNIT = _table(Unit)
TIER = _table(Tier)
RESPONDENT = _table(Respondent)
CONTACT = _table(Contact)
INVITATION = _table(Invitation)
SUBMISSION = _table(Submission)
BALLOT = _table(Ballot)
ANSWER = _table(Answer)
AUDIT = _table(AuditEntry)
USER = _table(User)
API_KEY = _table(ApiKey)
IDEMPOTENCY = _table(IdempotencyRecord)


# --- Dedupe: sample draws and the review queue (issue 8) ---------------------------------


class SampleDraw(SQLModel, table=True):
    """
    One reproducible draw from a tier's roster (docs/sampling.md): redoable from the frame
    hash, method, params and seed. A replacement draw names the draw it tops up and never
    changes that draw's rows.
    """

    __tablename__ = "sample_draw"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    tier_code: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # draw | replacement
    method: str = Field(max_length=16)  # simple | systematic | stratified | pps
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seed: str = Field(max_length=255)
    frame_sha256: str = Field(max_length=64)
    frame_size: int
    size: int
    drawn_at: datetime = _aware()
    actor: str = Field(max_length=128)
    replaces_draw_id: int | None = Field(default=None, foreign_key="sample_draw.id")


class SampleMember(SQLModel, table=True):
    """Who a draw drew, in draw order; a replacement names the respondent it stands in for."""

    __tablename__ = "sample_member"
    __table_args__ = (sa.UniqueConstraint("draw_id", "respondent_id", name="uq_sample_member"),)
    id: int | None = Field(default=None, primary_key=True)
    draw_id: int = Field(foreign_key="sample_draw.id", index=True)
    respondent_id: int = Field(foreign_key="respondent.id", index=True)
    position: int
    stratum: str | None = Field(default=None, max_length=255)
    replaces_respondent_id: int | None = Field(default=None, foreign_key="respondent.id")


class ReviewItem(SQLModel, table=True):
    """
    A finding held for an operator: a ballot or a whole submission (form), why (`kind`,
    `reason`) and the evidence, without personal data. `fingerprint` makes detection
    idempotent: re-running a scan finds the existing item instead of adding one.
    """

    __tablename__ = "review_item"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "kind", "fingerprint", name="uq_review_fingerprint"),
        sa.Index("ix_review_status", "campaign_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    ballot_id: int | None = Field(default=None, foreign_key="ballot.id", index=True)
    submission_id: int | None = Field(default=None, foreign_key="submission.id", index=True)
    kind: str = Field(max_length=32)  # held | content_cluster | (paper:) serial_reuse, ...
    reason: str = Field(max_length=64)  # what a rejected ballot's reason becomes
    fingerprint: str = Field(max_length=128)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="open", max_length=16)  # open | accepted | rejected
    created_at: datetime = _aware()
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    note: str | None = Field(default=None, sa_type=sa.Text)


SAMPLE_DRAW = _table(SampleDraw)
SAMPLE_MEMBER = _table(SampleMember)
REVIEW_ITEM = _table(ReviewItem)


# --- SMS: conversations, outbound messages and their delivery, opt-outs, inbound log (issue 5) ---
# None of these tables holds a phone number: numbers live in `contact` only. A number is
# referred to by `phone_key` (the respondent's campaign-scoped key) or `number_key` (a keyed
# hash scoped to no campaign, because an opt-out covers every campaign).


class SmsConversation(SQLModel, table=True):
    """
    One respondent's SMS ballot in one campaign: the questions in order and how far they got.

    `questions` is a list of [unit, aspect]; `position` the index of the next one to ask;
    `pending` holds answers of a unit whose aspects are not all answered yet (a ballot is
    ingested per unit, once complete). `mode`: questions (asked by SMS) | link (web ballot).
    `state`: open | done | stopped (opted out).
    """

    __tablename__ = "sms_conversation"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "respondent_id", name="uq_sms_conversation"),
        sa.Index("ix_sms_conversation_phone", "campaign_id", "phone_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    respondent_id: int = Field(foreign_key="respondent.id", index=True)
    phone_key: str = Field(max_length=64)
    mode: str = Field(max_length=16)
    questions: list[list[str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    position: int = 0
    pending: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    state: str = Field(default="open", max_length=16)
    reminders: int = 0
    started_at: datetime = _aware()
    updated_at: datetime = _aware()
    last_sent_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class SmsMessage(SQLModel, table=True):
    """
    One outbound SMS (invitation round 0, reminders 1..M). The UNIQUE (campaign, respondent,
    round) row is claimed before Twilio is called, so a re-run never sends a round twice.

    `status` follows Twilio (accepted, queued, sending, sent, delivered, undelivered, failed)
    plus ours: claimed (about to call Twilio; a crash leaves it in doubt) and error (refused by
    the API). `status_rank` only grows: callbacks arrive out of order and repeat.
    """

    __tablename__ = "sms_message"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "respondent_id", "round", name="uq_sms_message_round"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    respondent_id: int = Field(foreign_key="respondent.id", index=True)
    conversation_id: int | None = Field(default=None, foreign_key="sms_conversation.id")
    round: int = 0
    kind: str = Field(max_length=16)  # question | link
    sid: str | None = Field(default=None, max_length=64, unique=True)
    status: str = Field(max_length=16, index=True)
    status_rank: int = 0
    error_code: int | None = None
    attempts: int = 0
    segments: int | None = None
    created_at: datetime = _aware()
    sent_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    status_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class SmsOptOut(SQLModel, table=True):
    """
    A number that said STOP/退订 (or that Twilio refused with 21610): never texted again until it
    opts back in (START). Kept apart from `contact`, which a roster re-import rewrites.
    """

    __tablename__ = "sms_opt_out"
    id: int | None = Field(default=None, primary_key=True)
    number_key: str = Field(max_length=64, unique=True)
    source: str = Field(max_length=32)  # keyword | twilio_21610
    opted_out_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    opted_in_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class SmsInbound(SQLModel, table=True):
    """
    Every webhook delivery to `POST /sms/twilio`, verified or not, with what we answered.

    `verified_sid` is the MessageSid of a correctly signed request and NULL otherwise: UNIQUE, so
    a redelivery finds the first row and gets the same reply, while unsigned posts (which anyone
    can make up) never block a genuine one. `answers` keeps what the reply was parsed into, so a
    delivery interrupted before its ballot was taken in is finished the same way.
    """

    __tablename__ = "sms_inbound"
    id: int | None = Field(default=None, primary_key=True)
    message_sid: str = Field(max_length=64, index=True)
    verified_sid: str | None = Field(default=None, max_length=64, unique=True)
    number_key: str | None = Field(default=None, max_length=64)
    campaign_code: str | None = Field(default=None, max_length=64, index=True)
    conversation_id: int | None = Field(default=None, foreign_key="sms_conversation.id")
    body: str = Field(default="", sa_type=sa.Text)
    kind: str = Field(max_length=16)  # answer | stop | start | help | unclear | refused
    status: str = Field(max_length=16)  # processing | answered | rejected
    reason: str | None = Field(default=None, max_length=64)
    answers: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    submission_id: int | None = Field(default=None, foreign_key="submission.id")
    reply: str | None = Field(default=None, sa_type=sa.Text)
    received_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    deliveries: int = 1


SMS_CONVERSATION = _table(SmsConversation)
SMS_MESSAGE = _table(SmsMessage)
SMS_OPT_OUT = _table(SmsOptOut)
SMS_INBOUND = _table(SmsInbound)


# --- Paper forms: print runs, the issuance ledger, keyed entries and scans (issue 7) ---------
# No personal data: a roster id keyed on a form is kept only as a keyed hash (entry_json), and
# clerk names are operator accounts, not respondents.


class PaperPrint(SQLModel, table=True):
    """
    One `collect paper print` run: which distribution channel and batch, how many forms, and the
    SHA-256 of the PDF handed to the printer. `serialed = False` records a channel whose forms
    carry no serial (a newspaper form): its ballots are judged by content only.
    """

    __tablename__ = "paper_print"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    distribution: str = Field(max_length=64)
    batch: str = Field(max_length=64)
    serialed: bool = True
    count: int
    first_seq: int | None = None
    last_seq: int | None = None
    file_name: str = Field(max_length=255)
    file_sha256: str | None = Field(default=None, max_length=64)
    printed_at: datetime = _aware()
    printed_by: str = Field(max_length=128)


class PaperSerial(SQLModel, table=True):
    """
    The issuance ledger: one row per printed serial (`P-8F3K2-Q7`), with the form number, the
    distribution channel and batch it went out through, when and by whom. The signature is not
    kept: it is recomputed from COLLECT_SECRET_KEY.
    """

    __tablename__ = "paper_serial"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "serial", name="uq_paper_serial"),
        sa.UniqueConstraint("campaign_id", "seq", name="uq_paper_serial_seq"),
        sa.Index("ix_paper_serial_channel", "campaign_id", "distribution", "batch"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    print_id: int = Field(foreign_key="paper_print.id", index=True)
    serial: str = Field(max_length=16)
    seq: int
    distribution: str = Field(max_length=64)
    batch: str = Field(max_length=64)
    issued_at: datetime = _aware()
    printed_by: str = Field(max_length=128)


class PaperEntry(SQLModel, table=True):
    """
    One keying of one paper form (an import row or a save on the data-entry page), by a clerk.

    `serial_check`: ok | mistyped | unknown | bad_signature | malformed | missing | unserialed.
    `state`: ingested (handed to ingest(); `submission_id` says what became of it) | awaiting
    (double entry: waits for a second clerk) | disagreement (two clerks differ: a third keys it)
    | settled (double entry: matched by another entry, which was ingested). `form_key` pairs the
    entries of one sheet in double entry. `entry_json` is the keyed content, roster id as a keyed
    hash; `source_ref` makes re-importing a file add nothing.
    """

    __tablename__ = "paper_entry"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "source_ref", "content_sha256", name="uq_paper_entry_source"),
        sa.Index("ix_paper_entry_serial", "campaign_id", "serial_id"),
        sa.Index("ix_paper_entry_form", "campaign_id", "form_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    serial_id: int | None = Field(default=None, foreign_key="paper_serial.id")
    serial_typed: str | None = Field(default=None, max_length=32)
    serial_check: str = Field(max_length=16)
    form_key: str | None = Field(default=None, max_length=128)
    clerk: str = Field(max_length=128)
    source_ref: str = Field(max_length=255)
    mode: str = Field(max_length=8)  # single | double
    content_sha256: str = Field(max_length=64)
    entry_json: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    distribution: str | None = Field(default=None, max_length=64)
    batch: str | None = Field(default=None, max_length=64)
    submission_id: int | None = Field(default=None, foreign_key="submission.id", index=True)
    entered_at: datetime = _aware()


class PaperScan(SQLModel, table=True):
    """
    A scanned page linked to its serial by the QR code. At most one image is linked per serial
    and page (partial UNIQUE index): a second, different image of the same serial is a
    photocopy's tell and is kept as `refused`. `status`: linked | refused | unreadable.
    """

    __tablename__ = "paper_scan"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "image_sha256", "page", name="uq_paper_scan_image"),
        sa.Index(
            "uq_paper_scan_linked",
            "serial_id",
            "page",
            unique=True,
            sqlite_where=sa.text("status = 'linked'"),
            postgresql_where=sa.text("status = 'linked'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    serial_id: int | None = Field(default=None, foreign_key="paper_serial.id")
    serial_read: str | None = Field(default=None, max_length=32)
    page: int = 1
    image_sha256: str = Field(max_length=64)
    path: str = Field(max_length=1024)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    scanned_at: datetime = _aware()
    actor: str = Field(max_length=128)


PAPER_PRINT = _table(PaperPrint)
PAPER_SERIAL = _table(PaperSerial)
PAPER_ENTRY = _table(PaperEntry)
PAPER_SCAN = _table(PaperScan)


# --- Window QR: posters, the rating log for burst checks, follow-up cases (issue 6) ----------
# No IP address, cookie or device id is kept anywhere: a rating's network is a keyed hash that
# changes daily, and a callback number lives only in `window_case_contact`, apart from ballots.


class WindowPoster(SQLModel, table=True):
    """
    A printed QR poster: a short random code (`/w/<code>`) for one window (and optionally one
    staff member). Revoking sets `revoked_at` and names the poster that replaces it.
    """

    __tablename__ = "window_poster"
    __table_args__ = (sa.Index("ix_window_poster_window", "campaign_id", "window_code"),)
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    unit_code: str = Field(max_length=64)
    window_code: str = Field(max_length=64)
    staff: str | None = Field(default=None, max_length=128)
    hours: str | None = Field(default=None, max_length=16)  # HH:MM-HH:MM service hours, local
    created_at: datetime = _aware()
    created_by: str = Field(max_length=128)
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    replaced_by: int | None = Field(default=None, foreign_key="window_poster.id")


class WindowRating(SQLModel, table=True):
    """
    A rating the window channel watches (a poster top rating, a flagged or a low one), for
    burst checks and their evidence:
    `top` (the best level), `low` (a case was due), `network_key` (keyed, daily), `flagged`.
    """

    __tablename__ = "window_rating"
    __table_args__ = (sa.Index("ix_window_rating_recent", "campaign_id", "window_code", "rated_at"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    submission_id: int = Field(foreign_key="submission.id")
    ballot_id: int | None = Field(default=None, foreign_key="ballot.id")
    unit_code: str = Field(max_length=64)
    window_code: str = Field(max_length=64)
    poster_id: int | None = Field(default=None, foreign_key="window_poster.id")
    via: str = Field(max_length=8)  # ticket | poster
    top: bool = False
    low: bool = False
    network_key: str | None = Field(default=None, max_length=16)
    flagged: bool = False
    rated_at: datetime = Field(sa_type=sa.DateTime(timezone=True))


class WindowCase(SQLModel, table=True):
    """
    A follow-up case (回访、整改) opened by a rating in the campaign's lowest two levels: call
    back within 1 working day (when the citizen left a number), fix within 15.
    `status`: open | called_back | resolved.
    """

    __tablename__ = "window_case"
    __table_args__ = (sa.Index("ix_window_case_status", "campaign_id", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    ballot_id: int = Field(foreign_key="ballot.id", unique=True)
    unit_code: str = Field(max_length=64)
    window_code: str = Field(max_length=64)
    staff: str | None = Field(default=None, max_length=128)
    via: str = Field(max_length=8)
    level_code: str = Field(max_length=64)
    comment: str | None = Field(default=None, sa_type=sa.Text)
    opened_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    callback_due: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    fix_due: datetime = Field(sa_type=sa.DateTime(timezone=True))
    status: str = Field(default="open", max_length=16)
    called_back_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    resolved_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    handled_by: str | None = Field(default=None, max_length=128)
    note: str | None = Field(default=None, sa_type=sa.Text)


class WindowCaseContact(SQLModel, table=True):
    """
    The number a citizen left to be called back about a case: E.164, kept apart from the ballot,
    and erased (`phone` NULL, `erased_at` set) once the case is resolved.
    """

    __tablename__ = "window_case_contact"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="window_case.id", unique=True)
    phone: str | None = Field(default=None, max_length=32)
    created_at: datetime = _aware()
    erased_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


WINDOW_POSTER = _table(WindowPoster)
WINDOW_RATING = _table(WindowRating)
WINDOW_CASE = _table(WindowCase)
WINDOW_CASE_CONTACT = _table(WindowCaseContact)
