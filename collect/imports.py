"""
Importing call-centre, phone-survey and IVR exports: the file read, its profile resolved, every
row through ingest_stream() in one transaction (all rows or none), each row counted or
quarantined with its reason. Shared by `collect import calls` and the console's `/admin/imports`.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.ballot import BallotSubmission, Receipt, Rejection
from collect.campaign import CampaignSpec
from collect.channels.calls import (
    CallExport,
    CallProfile,
    CallsAdapter,
    ProfileError,
    header_position,
    load_profile_text,
    locate_header,
    missing_headers,
    profile_problems,
    profile_to_toml,
    propose_profile,
)
from collect.channels.calls_files import Sniffed, Table, load, sniff
from collect.ingest import Displaced, ingest_stream
from collect.phones import mask_phone
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, SUBMISSION, utcnow
from collect.tables_io import TableFileError

QUARANTINE_SHOWN = 1000  # rows listed in --json and kept in memory for the report; the CSV gets all
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ImportRefused(ValueError):
    """The file is refused whole (exit 2); the message names the file, row and field."""


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    row: int
    call_id: str
    phone: str  # masked, never the number
    reason: str
    field: str
    detail: str
    source_ref: str


@dataclass
class ImportReport:
    """What an import did; printed as a table or JSON, and kept (counts only) in the audit log."""

    campaign: str
    file: str
    sha256: str
    kind: str
    encoding: str | None
    vendor: str
    dry_run: bool
    header_row: int = 0
    rows_read: int = 0
    blank: int = 0
    totals: int = 0
    calls: int = 0
    accepted: int = 0
    already_received: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    quarantine: list[QuarantinedRow] = field(default_factory=list)
    profile_written: str | None = None

    @property
    def quarantined(self) -> int:
        return sum(self.by_reason.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "file": self.file,
            "sha256": self.sha256,
            "kind": self.kind,
            "encoding": self.encoding,
            "vendor": self.vendor,
            "dry_run": self.dry_run,
            "header_row": self.header_row,
            "rows_read": self.rows_read,
            "skipped": {"blank": self.blank, "totals": self.totals},
            "calls": self.calls,
            "accepted": self.accepted,
            "already_received": self.already_received,
            "quarantined": self.quarantined,
            "by_reason": dict(sorted(self.by_reason.items())),
            "quarantine": [
                {
                    "row": q.row,
                    "call_id": q.call_id,
                    "phone": q.phone,
                    "reason": q.reason,
                    "field": q.field,
                    "detail": q.detail,
                }
                for q in self.quarantine[:QUARANTINE_SHOWN]
            ],
            "profile_written": self.profile_written,
        }


def read_profile(path: Path) -> CallProfile:
    if not path.is_file():
        raise ImportRefused(f"{path}: no such profile file")
    try:
        return load_profile_text(path.read_text(encoding="utf-8"), source=str(path))
    except UnicodeDecodeError as exc:
        raise ImportRefused(f"{path}: a profile must be UTF-8 text") from exc
    except ProfileError as exc:
        raise ImportRefused(str(exc)) from exc


def _proposed_vendor(head: Sniffed) -> str:
    # Exports of one vendor share their headers; the id keeps their call ids apart from another's.
    names = sorted({str(c).strip() for _n, cells in head.head for c in cells if c})
    return "calls-" + hashlib.sha256("\x1f".join(names).encode()).hexdigest()[:8]


def resolve_profile(
    sniffed: Sniffed, spec: CampaignSpec, profile: CallProfile | None
) -> tuple[CallProfile, int, bool]:
    """The profile to use and the header row number; `proposed` when it was guessed from the headers."""
    cells = [c for _n, c in sniffed.head]
    first, last = sniffed.head[0][0], sniffed.head[-1][0]
    if profile is not None:
        index = locate_header(cells, profile)
        if index is None:
            missing = ", ".join(missing_headers(cells, profile))
            raise ImportRefused(
                f"{sniffed.path}: rows {first}–{last}: headers match no profile: profile {profile.vendor!r} "
                f"expects the columns {missing}, not found in any header row"
            )
        return profile, sniffed.head[index][0], False
    proposal = propose_profile(cells, spec, vendor=_proposed_vendor(sniffed))
    if proposal is None:
        raise ImportRefused(
            f"{sniffed.path}: rows {first}–{last}: headers match no profile: no row names a phone number "
            "(e.g. 手机号码), a call time (呼叫时间) and an answer (满意度 or an aspect's name); "
            "write a profile (docs/imports.md) and pass --profile"
        )
    proposed, index = proposal
    return proposed, sniffed.head[index][0], True


def import_calls(
    store: Store,
    campaign_code: str,
    path: Path,
    *,
    profile: CallProfile | None = None,
    dry_run: bool = False,
    actor: str,
    now: datetime | None = None,
    quarantine_out: Path | None = None,
    profile_out: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    items_hook: Callable[[Iterator[BallotSubmission | Rejection]], Iterator[BallotSubmission | Rejection]]
    | None = None,
) -> ImportReport:
    """
    Import one call-centre export, all rows or none.

    Args:
        profile: the vendor's profile; None proposes one from the headers (written to
            `profile_out`, default `<file>.profile.toml`, unless that exists) and uses it.
        progress: called with (rows done, rows in the file) as rows are taken in.
        items_hook: wraps the item stream (tests use it to fail part-way).

    Raises:
        ImportRefused: the file or profile is refused whole; nothing was written.
    """
    received_at = now or datetime.now(UTC)
    with store.engine.connect() as connection:
        campaign = load_campaign(store, connection, campaign_code)
    if campaign is None:
        raise ImportRefused(f"campaign {campaign_code!r} does not exist")
    spec = campaign.spec
    try:
        sniffed = sniff(path)
    except TableFileError as exc:
        raise ImportRefused(str(exc)) from exc
    used, header_row, proposed = resolve_profile(sniffed, spec, profile)
    mismatches = profile_problems(used, spec)
    if mismatches:
        raise ImportRefused(
            f"profile {used.vendor!r} does not fit campaign {spec.code}:\n"
            + "\n".join(f"  {m}" for m in mismatches)
        )
    written = None
    if proposed:
        target = profile_out or path.with_name(path.name + ".profile.toml")
        if not target.exists():
            target.write_text(
                profile_to_toml(
                    used,
                    comment=f"Proposed from the headers of {path.name} for campaign {spec.code}.\n"
                    "Check every column, the code table and the unit aliases, then pass --profile.",
                ),
                encoding="utf-8",
            )
            written = str(target)
    try:
        table = load(sniffed, header_row)
    except TableFileError as exc:
        raise ImportRefused(str(exc)) from exc
    try:
        return _run(
            store,
            spec,
            table,
            used,
            dry_run=dry_run,
            actor=actor,
            received_at=received_at,
            quarantine_out=quarantine_out,
            progress=progress,
            items_hook=items_hook,
            written=written,
        )
    finally:
        table.close()


def _run(
    store: Store,
    spec: CampaignSpec,
    table: Table,
    profile: CallProfile,
    *,
    dry_run: bool,
    actor: str,
    received_at: datetime,
    quarantine_out: Path | None,
    progress: Callable[[int, int], None] | None,
    items_hook: Callable[[Iterator[BallotSubmission | Rejection]], Iterator[BallotSubmission | Rejection]]
    | None,
    written: str | None,
) -> ImportReport:
    repeated: frozenset[str] = frozenset()
    if profile.columns.call_id is not None and profile.layout == "wide":
        column = header_position(table.header, profile.columns.call_id)
        if column is not None:
            repeated = table.repeated(column)

    def rows() -> Iterator[tuple[int, list[str | None]]]:
        done = 0
        for batch in table.batches():
            yield from batch
            done += len(batch)
            if progress is not None:
                progress(done, table.data_rows)

    export = CallExport(
        campaign=spec.code,
        file_name=table.path.name,
        file_sha256=table.sha256,
        header=table.header,
        rows=rows(),
        received_at=received_at,
        repeated_call_ids=repeated,
        spreadsheet=table.kind != "csv",
    )
    adapter = CallsAdapter(profile)
    stream = adapter.parse(export, spec)
    if items_hook is not None:
        stream = items_hook(stream)
    report = ImportReport(
        campaign=spec.code,
        file=table.path.name,
        sha256=table.sha256,
        kind=table.kind,
        encoding=table.encoding,
        vendor=profile.vendor,
        dry_run=dry_run,
        header_row=table.header_row,
        profile_written=written,
    )
    # The quarantine file is written as rows are judged, under another name until the import
    # is through: a failed import leaves none behind, as it leaves nothing in the store.
    part = None if quarantine_out is None else quarantine_out.with_name(quarantine_out.name + ".part")
    with store.writing(), store.engine.connect() as connection, _QuarantineFile(part) as quarantine:
        outer = connection.begin()
        try:
            tally = _Tally(report, quarantine, connection)
            ingest_stream(store, stream, tally.receipt, connection=connection, on_displaced=tally.displaced)
            report.rows_read = adapter.stats.rows
            report.blank = adapter.stats.blank
            report.totals = adapter.stats.totals
            if not dry_run:
                connection.execute(
                    sa.insert(AUDIT).values(
                        at=utcnow(),
                        actor=actor,
                        action="import.calls",
                        campaign_code=spec.code,
                        target=table.path.name[:255],
                        detail={
                            "file": table.path.name,
                            "file_sha256": table.sha256,
                            "vendor": profile.vendor,
                            "rows_read": report.rows_read,
                            "accepted": report.accepted,
                            "already_received": report.already_received,
                            "quarantined": report.quarantined,
                            "by_reason": dict(report.by_reason),
                        },
                    )
                )
        except BaseException:
            outer.rollback()
            raise
        if dry_run:
            outer.rollback()
        else:
            outer.commit()
    if part is not None and quarantine_out is not None:
        part.replace(quarantine_out)
    return report


_ALREADY = {"earlier_answer_counts", "later_answer_counts", "transaction_already_rated"}
_RECENT = 20_000  # counted rows remembered (who, for the quarantine file) in case a later row displaces them


@dataclass(frozen=True, slots=True)
class _Sent:
    """What the report needs of a row once ingest() has answered for it."""

    row: int
    call_id: str
    phone: str  # masked
    source_ref: str

    @classmethod
    def of(cls, item: BallotSubmission | Rejection) -> _Sent:
        phone = ""
        if isinstance(item, BallotSubmission) and item.identity is not None:
            phone = mask_phone(item.identity.value)
        meta = item.meta
        return cls(int(meta.get("row", 0)), str(meta.get("call_id", "")), phone, item.source_ref)


class _QuarantineFile:
    """The --quarantine-out CSV, written row by row (or nowhere); removed if the import fails."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle: Any = None
        self._writer: Any = None

    def __enter__(self) -> _QuarantineFile:
        if self.path is not None:
            # Quarantined rows name where and why, never whom: the phone column is masked.
            self.path.unlink(missing_ok=True)
            self.path.touch(mode=0o600)
            self._handle = self.path.open("w", newline="", encoding="utf-8-sig")
            self._writer = csv.writer(self._handle)
            self._writer.writerow(["row", "call_id", "phone", "reason", "field", "detail", "source_ref"])
        return self

    def write(self, row: QuarantinedRow) -> None:
        if self._writer is not None:
            self._writer.writerow(
                [
                    _safe(str(v))
                    for v in (
                        row.row,
                        row.call_id,
                        row.phone,
                        row.reason,
                        row.field,
                        row.detail,
                        row.source_ref,
                    )
                ]
            )

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        if self._handle is not None:
            self._handle.close()
            if kind is not None and self.path is not None:
                self.path.unlink(missing_ok=True)


class _Tally:
    """
    Counts rows by what became of them as ingest_stream() answers, keeping nothing per row but
    the last counted ones: a row counted at first and displaced by a later row (an earlier call
    of the same person for the same unit) moves from accepted to quarantined when that happens.
    """

    def __init__(self, report: ImportReport, quarantine: _QuarantineFile, connection: Connection) -> None:
        self.report, self.quarantine, self.connection = report, quarantine, connection
        self.recent: OrderedDict[int, _Sent] = OrderedDict()
        self.moved: set[int] = set()  # counted rows since quarantined (grows only with those)
        self.first_id: int | None = None  # the import's first submission (ids grow within it)

    def receipt(self, item: BallotSubmission | Rejection, receipt: Receipt) -> None:
        report = self.report
        report.calls += 1
        if receipt.outcome != "already_received" and (
            self.first_id is None or receipt.submission_id < self.first_id
        ):
            self.first_id = receipt.submission_id
        sent = _Sent.of(item)
        if receipt.outcome == "already_received":
            report.already_received += 1
        elif receipt.outcome == "counted":
            lost = [u.reason for u in receipt.units if u.status != "counted" and u.reason]
            if not lost:
                report.accepted += 1
                self.recent[receipt.submission_id] = sent
                if len(self.recent) > _RECENT:
                    self.recent.popitem(last=False)
                return
            # One of its units was counted already: the row is quarantined, as one whose
            # only unit was (the report speaks of rows, not of units).
            self.moved.add(receipt.submission_id)
            self._not_counted(sent, lost[0])
        elif receipt.outcome in ("rejected", "conflict"):
            problems = [(p.code, p.field, p.detail) for p in receipt.problems]
            if not problems and isinstance(item, Rejection):
                problems = [(p.code, p.field, p.detail) for p in item.problems]
            reason = (
                "conflict" if receipt.outcome == "conflict" else (problems[0][0] if problems else "rejected")
            )
            field_name = problems[0][1] if problems else ""
            self._quarantine(sent, reason, field_name, "; ".join(p[2] for p in problems))
        else:
            reasons = [u.reason for u in receipt.units if u.status != "counted" and u.reason]
            self._not_counted(sent, reasons[0] if reasons else "not_counted")

    def displaced(self, event: Displaced) -> None:
        submission_id = event.submission_id
        if submission_id in self.moved:
            return
        sent = self.recent.pop(submission_id, None)
        if sent is None:
            sent = self._ours(submission_id)
            if sent is None:
                return  # a ballot of another import or channel: not a row of this report
        self.moved.add(submission_id)
        self.report.accepted -= 1
        self._not_counted(sent, event.reason)

    def _ours(self, submission_id: int) -> _Sent | None:
        """A row counted further back in this file (the phone number is no longer known)."""
        if self.first_id is None or submission_id < self.first_id:
            return None
        row = self.connection.execute(
            sa.select(SUBMISSION.c.external_id, SUBMISSION.c.meta).where(SUBMISSION.c.id == submission_id)
        ).one()
        meta = row.meta or {}
        if meta.get("file_sha256") != self.report.sha256 or meta.get("vendor") != self.report.vendor:
            return None
        return _Sent(int(meta.get("row", 0)), str(meta.get("call_id", "")), "", row.external_id)

    def _not_counted(self, sent: _Sent, unit_reason: str) -> None:
        if unit_reason in _ALREADY:
            detail = f"{unit_reason}: the respondent's vote for this unit is already counted"
            self._quarantine(sent, "already_counted", "respondent", detail)
        else:
            self._quarantine(sent, unit_reason, "respondent", unit_reason)

    def _quarantine(self, sent: _Sent, reason: str, field_name: str, detail: str) -> None:
        self.report.by_reason[reason] += 1
        row = QuarantinedRow(sent.row, sent.call_id, sent.phone, reason, field_name, detail, sent.source_ref)
        if len(self.report.quarantine) < QUARANTINE_SHOWN:
            self.report.quarantine.append(row)
        self.quarantine.write(row)


def _safe(text: str) -> str:
    """A cell Excel will not run as a formula (engineering-notes: spreadsheets and CSV safety)."""
    return "'" + text if text.startswith(_FORMULA_START) else text
