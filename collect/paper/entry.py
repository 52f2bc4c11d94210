"""
Keyed paper forms into the store: the serial checked against the issuance ledger, double entry,
then ingest(). Used by `collect import paper` and the data-entry page alike.

What a serial check decides (docs/paper.md): issued and first used → counted as usual; used
before with the same answers → a photocopy, kept as rejected `serial_reused`; used before with
other answers → both forms held for review (keying error or copy?); one slip away from an issued,
unreturned serial → held for review `serial_mistyped`; never issued → rejected `serial_unknown`;
wrong signature → rejected `signature_mismatch`. Nothing is dropped and nothing counts twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from collect.ballot import BallotSubmission, Identity, Problem, Receipt, Rejection
from collect.campaign import CampaignSpec
from collect.channels.paper import KeyedRows, PaperAdapter, PaperFileError, map_columns, parse_date
from collect.dedupe.keys import keyed_hash
from collect.dedupe.review import Finding, file_findings
from collect.ingest import ingest
from collect.paper.serials import (
    SerialFormatError,
    canonical,
    check_ok,
    neighbours,
    normalise,
    normalise_signature,
    one_off,
    sign,
)
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, BALLOT, PAPER_ENTRY, PAPER_PRINT, PAPER_SERIAL, SUBMISSION, utcnow
from collect.tables_io import TableFileError, read_table

Mode = Literal["single", "double"]
SerialStatus = Literal[
    "ok", "mistyped", "unknown", "bad_signature", "signature_mistyped", "malformed", "missing", "unserialed"
]
REVIEW_KIND = "paper_serial"
REUSE_KIND = "serial_reuse"
MAX_ROWS = 200_000


class EntryRefused(ValueError):
    """A file or campaign refused whole (exit 2); nothing was written."""


@dataclass(frozen=True, slots=True)
class SerialCheck:
    """What the ledger says of a serial as typed; `entered`: forms already taken in with it."""

    status: SerialStatus
    serial: str | None = None  # canonical, when it resolves to one issued serial
    serial_id: int | None = None
    distribution: str | None = None
    batch: str | None = None
    candidates: tuple[str, ...] = ()
    entered: int = 0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "serial": self.serial,
            "distribution": self.distribution,
            "batch": self.batch,
            "candidates": list(self.candidates),
            "entered": self.entered,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What became of one keyed form."""

    source_ref: str
    row: int | None
    state: str  # ingested | awaiting | disagreement | refused | already_entered
    outcome: str  # counted | not_counted | rejected | conflict | pending_review | awaiting | ...
    reason: str | None
    serial: SerialCheck
    submission_id: int | None = None
    detail: str = ""


def _sha(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()


def verify_serial(
    connection: Connection,
    secret: bytes,
    campaign_id: int,
    campaign: str,
    typed: str,
    signature: str | None,
) -> SerialCheck:
    """
    Check a serial (and signature, when typed) against the ledger, as a clerk types it.
    Read-only; the data-entry page calls it on every keystroke pause.
    """
    if not typed.strip():
        return SerialCheck("missing", detail="no serial")
    try:
        code = normalise(typed)
    except SerialFormatError as exc:
        return SerialCheck("malformed", detail=str(exc))
    serial = canonical(code)
    row = connection.execute(
        sa.select(PAPER_SERIAL.c.id, PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch).where(
            PAPER_SERIAL.c.campaign_id == campaign_id, PAPER_SERIAL.c.serial == serial
        )
    ).first()
    if row is not None and check_ok(serial):
        entered = _entered(connection, campaign_id, int(row.id))
        found = SerialCheck("ok", serial, int(row.id), row.distribution, row.batch, entered=entered)
        if signature is None or not signature.strip():
            return found
        try:
            typed_signature = normalise_signature(signature)
        except SerialFormatError as exc:
            return replace(found, status="bad_signature", detail=str(exc))
        expected = sign(secret, campaign, serial)
        if typed_signature == expected:
            return found
        if one_off(typed_signature, expected):
            return replace(found, status="signature_mistyped", detail="the signature is one symbol off")
        return replace(
            found, status="bad_signature", detail=f"signature {typed_signature} does not match {serial}"
        )
    # Not an issued serial: a slip of the pen away from one that is issued and not yet back?
    near = list(neighbours(code))
    rows = connection.execute(
        sa.select(PAPER_SERIAL.c.id, PAPER_SERIAL.c.serial, PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch)
        .where(PAPER_SERIAL.c.campaign_id == campaign_id, PAPER_SERIAL.c.serial.in_(near))
        .order_by(PAPER_SERIAL.c.serial)
    ).all()
    unreturned = [r for r in rows if _entered(connection, campaign_id, int(r.id)) == 0]
    if signature and signature.strip():
        # A typed signature that fits one candidate settles which serial the clerk meant.
        try:
            typed_signature = normalise_signature(signature)
            fitting = [r for r in unreturned if sign(secret, campaign, r.serial) == typed_signature]
            unreturned = fitting or unreturned
        except SerialFormatError:
            pass
    if unreturned:
        first = unreturned[0]
        one = len(unreturned) == 1
        return SerialCheck(
            "mistyped",
            first.serial if one else None,
            int(first.id) if one else None,
            first.distribution if one else None,
            first.batch if one else None,
            candidates=tuple(r.serial for r in unreturned),
            detail=f"{serial} was never issued; one slip away from {', '.join(r.serial for r in unreturned)}",
        )
    why = "its check symbol is wrong" if not check_ok(serial) else "it is not in the issuance ledger"
    return SerialCheck("unknown", serial, detail=f"{serial} was never issued: {why}")


def _entered(connection: Connection, campaign_id: int, serial_id: int) -> int:
    return int(
        connection.execute(
            sa.select(sa.func.count())
            .select_from(PAPER_ENTRY)
            .where(
                PAPER_ENTRY.c.campaign_id == campaign_id,
                PAPER_ENTRY.c.serial_id == serial_id,
                PAPER_ENTRY.c.state == "ingested",
            )
        ).scalar_one()
    )


def unserialed_channels(connection: Connection, campaign_id: int) -> set[str]:
    """Distribution channels recorded as printing forms without a serial (e.g. the newspaper)."""
    return set(
        connection.execute(
            sa.select(PAPER_PRINT.c.distribution).where(
                PAPER_PRINT.c.campaign_id == campaign_id, PAPER_PRINT.c.serialed.is_(False)
            )
        ).scalars()
    )


@dataclass
class EntrySession:
    """
    One batch of entries in one transaction (an import file, or one page save). Every entry is
    checked, recorded in `paper_entry` and, when it is complete, handed to ingest().
    """

    store: Store
    connection: Connection
    spec: CampaignSpec
    campaign_id: int
    actor: str
    mode: Mode = "single"
    _proxy: Store = field(init=False)
    _unserialed: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self._proxy = self.store.in_transaction(self.connection)
        self._unserialed = unserialed_channels(self.connection, self.campaign_id)

    @property
    def secret(self) -> bytes:
        return self.store.settings.secret()

    def check(self, item: BallotSubmission | Rejection) -> SerialCheck:
        typed = str(item.meta.get("serial_typed") or "")
        if not typed:
            distribution = item.meta.get("distribution")
            if distribution in self._unserialed:
                return SerialCheck("unserialed", distribution=str(distribution))
            return SerialCheck(
                "missing",
                detail="no serial, and the form's distribution channel "
                f"({distribution or 'not given'}) is not one printed without serials",
            )
        return verify_serial(
            self.connection,
            self.secret,
            self.campaign_id,
            self.spec.code,
            typed,
            str(item.meta.get("signature_typed") or "") or None,
        )

    # -- one entry ------------------------------------------------------------------------

    def enter(self, item: BallotSubmission | Rejection) -> EntryResult:
        check = self.check(item)
        content = self._content(item, check)
        content_sha = _sha({**content, "clerk": item.meta.get("clerk"), "source_ref": item.source_ref})
        row = item.meta.get("row")
        seen = self.connection.execute(
            sa.select(PAPER_ENTRY.c.state, PAPER_ENTRY.c.reason, PAPER_ENTRY.c.submission_id).where(
                PAPER_ENTRY.c.campaign_id == self.campaign_id,
                PAPER_ENTRY.c.source_ref == item.source_ref[:255],
                PAPER_ENTRY.c.content_sha256 == content_sha,
            )
        ).first()
        if seen is not None:
            # Re-importing a file, or a page saved twice: the entry is there already.
            return EntryResult(
                item.source_ref,
                row,
                "already_entered",
                "already_received",
                seen.reason,
                check,
                seen.submission_id,
            )
        if self.mode == "double":
            return self._double(item, check, content, content_sha)
        return self._take_in(item, check, content, content_sha, clerks=[str(item.meta.get("clerk"))])

    def _content(self, item: BallotSubmission | Rejection, check: SerialCheck) -> dict[str, Any]:
        """What two clerks keying one form must agree on, without personal data."""
        raw = dict(item.raw)
        answers = dict(sorted((raw.get("answers") or {}).items()))
        day = parse_date(str(raw.get("answered_on") or ""))
        roster = str(item.identity.value) if isinstance(item, BallotSubmission) and item.identity else ""
        comment = str(raw.get("comment") or "")
        content = {
            "serial": check.serial or str(item.meta.get("serial_typed") or "").upper(),
            "signature": str(item.meta.get("signature_typed") or "").upper(),
            "answers": answers,
            "answers_sha256": _sha(answers),
            "answered_on": day.isoformat() if day else str(raw.get("answered_on") or ""),
            "tier": str(raw.get("tier") or ""),
            "roster_key": keyed_hash(self.secret, self.spec.code, "roster_id", roster) if roster else "",
            "comment_sha256": hashlib.sha256(comment.encode()).hexdigest() if comment else "",
            "problems": [p.as_dict() for p in item.problems] if isinstance(item, Rejection) else [],
        }
        content["form_sha256"] = _sha(content)
        return content

    def _take_in(
        self,
        item: BallotSubmission | Rejection,
        check: SerialCheck,
        content: dict[str, Any],
        content_sha: str,
        *,
        clerks: Sequence[str],
        settles: Sequence[int] = (),
        form_key: str | None = None,
    ) -> EntryResult:
        """Decide by the serial, ingest, record the entry and file review findings."""
        prepared, findings_for_previous = self._prepare(item, check, content, clerks)
        receipt = ingest(self._proxy, prepared)
        entry_id = self._record(item, check, content, content_sha, "ingested", receipt, form_key=form_key)
        for other in settles:
            self.connection.execute(
                sa.update(PAPER_ENTRY)
                .where(PAPER_ENTRY.c.id == other)
                .values(state="settled", submission_id=receipt.submission_id, reason=receipt.reason)
            )
        self._file(prepared, check, receipt, findings_for_previous, entry_id)
        outcome: str = receipt.outcome
        units = {u.status for u in receipt.units}
        if receipt.outcome == "not_counted" and units == {"pending_review"}:
            outcome = "pending_review"
        reasons = [u.reason for u in receipt.units if u.reason]
        reason = receipt.reason or (reasons[0] if reasons else None)
        return EntryResult(
            item.source_ref, item.meta.get("row"), "ingested", outcome, reason, check, receipt.submission_id
        )

    def _prepare(
        self,
        item: BallotSubmission | Rejection,
        check: SerialCheck,
        content: dict[str, Any],
        clerks: Sequence[str],
    ) -> tuple[BallotSubmission | Rejection, list[int]]:
        meta = {
            **{k: v for k, v in item.meta.items() if k not in ("serial_typed", "signature_typed")},
            "clerk": "+".join(sorted(set(clerks))),
            "serial": check.serial,
            "serial_typed": str(item.meta.get("serial_typed") or "") or None,
            "serial_check": check.status,
            "serialed": check.status != "unserialed",
            "distribution": check.distribution or item.meta.get("distribution"),
            "batch": check.batch,
            "entry_mode": self.mode,
        }
        if check.candidates:
            meta["serial_candidates"] = list(check.candidates)
        if isinstance(item, Rejection):
            return replace(item, meta=meta), []

        def rejected(code: str, detail: str) -> Rejection:
            return Rejection(
                campaign=item.campaign,
                channel="paper",
                source_ref=item.source_ref,
                problems=(Problem("serial", code, detail),),
                received_at=item.received_at,
                raw=item.raw,
                meta=meta,
            )

        status = check.status
        if status == "missing":
            return rejected("serial_missing", check.detail), []
        if status == "malformed":
            return rejected("serial_malformed", check.detail), []
        if status == "unknown":
            return rejected("serial_unknown", check.detail), []
        if status == "bad_signature":
            return rejected(
                "signature_mismatch", check.detail or "the signature does not match the serial"
            ), []
        if status == "unserialed":
            return replace(item, meta=meta), []
        identity = item.identity
        if identity is None and check.serial is not None:
            # One serial, one ballot: the serial is the transaction of an open tier.
            identity = Identity("transaction", f"paper-serial:{check.serial}")
        prepared = replace(item, identity=identity, meta=meta)
        if status in ("mistyped", "signature_mistyped"):
            reason = "serial_mistyped" if status == "mistyped" else "signature_mistyped"
            return replace(prepared, review=reason), []
        assert check.serial_id is not None
        previous = self.connection.execute(
            sa.select(PAPER_ENTRY.c.submission_id, PAPER_ENTRY.c.entry_json)
            .where(
                PAPER_ENTRY.c.campaign_id == self.campaign_id,
                PAPER_ENTRY.c.serial_id == check.serial_id,
                PAPER_ENTRY.c.state == "ingested",
            )
            .order_by(PAPER_ENTRY.c.id)
        ).all()
        if not previous:
            return prepared, []
        if any((p.entry_json or {}).get("answers_sha256") == content["answers_sha256"] for p in previous):
            # Same serial, same answers: a photocopy of a filled-in form (or the same sheet keyed
            # twice). The vote is the same either way; it counts once.
            first = previous[0].submission_id
            return rejected(
                "serial_reused",
                f"{check.serial} was taken in before (submission {first}) with the same answers: a photocopy",
            ), []
        # Same serial, other answers: a keying error or a copy filled in differently. A person
        # must look at the sheets: both forms are held.
        held = [int(p.submission_id) for p in previous if p.submission_id is not None]
        return replace(prepared, review="serial_reused_different_answers"), held

    def _record(
        self,
        item: BallotSubmission | Rejection,
        check: SerialCheck,
        content: dict[str, Any],
        content_sha: str,
        state: str,
        receipt: Receipt | None,
        *,
        reason: str | None = None,
        form_key: str | None = None,
    ) -> int:
        entry_id = self.connection.execute(
            sa.insert(PAPER_ENTRY)
            .values(
                campaign_id=self.campaign_id,
                serial_id=check.serial_id,
                serial_typed=(str(item.meta.get("serial_typed") or "")[:32] or None),
                serial_check=check.status,
                form_key=form_key,
                clerk=str(item.meta.get("clerk") or "")[:128],
                source_ref=item.source_ref[:255],
                mode=self.mode,
                content_sha256=content_sha,
                entry_json={**content, "row": item.meta.get("row")},
                state=state,
                reason=(receipt.reason if receipt is not None else reason),
                distribution=(check.distribution or item.meta.get("distribution")),
                batch=check.batch,
                submission_id=receipt.submission_id if receipt is not None else None,
                entered_at=utcnow(),
            )
            .returning(PAPER_ENTRY.c.id)
        ).scalar_one()
        return int(entry_id)

    def _file(
        self,
        item: BallotSubmission | Rejection,
        check: SerialCheck,
        receipt: Receipt,
        previous: Sequence[int],
        entry_id: int,
    ) -> None:
        """Hand dedupe's review queue what it needs: which serial, why, and where it went out."""
        if receipt.outcome in ("already_received", "rejected", "conflict"):
            return
        evidence: dict[str, Any] = {
            "serial": check.serial,
            "serial_typed": item.meta.get("serial_typed"),
            "serial_check": check.status,
            "candidates": list(check.candidates),
            "distribution": check.distribution,
            "batch": check.batch,
            "paper_entry": entry_id,
            "detail": check.detail,
        }
        findings: list[Finding] = []
        if isinstance(item, BallotSubmission) and item.review in ("serial_mistyped", "signature_mistyped"):
            findings.append(
                Finding(
                    kind=REVIEW_KIND,
                    reason=item.review,
                    fingerprint=f"submission:{receipt.submission_id}",
                    evidence=evidence,
                    submission_id=receipt.submission_id,
                    hold=False,
                )
            )
        if previous:
            forms = [*previous, receipt.submission_id]
            for submission_id in forms:
                findings.append(
                    Finding(
                        kind=REUSE_KIND,
                        reason="serial_reused_different_answers",
                        fingerprint=f"{check.serial}:submission:{submission_id}",
                        evidence={
                            **evidence,
                            "forms": forms,
                            "note": "compare the sheets: keep one, reject the other",
                        },
                        submission_id=submission_id,
                        hold=True,  # the earlier form is counted: hold it too until decided
                    )
                )
        if findings:
            file_findings(self.connection, self.campaign_id, findings)

    # -- double entry -------------------------------------------------------------------------

    def _double(
        self,
        item: BallotSubmission | Rejection,
        check: SerialCheck,
        content: dict[str, Any],
        content_sha: str,
    ) -> EntryResult:
        clerk = str(item.meta.get("clerk") or "")
        row = item.meta.get("row")
        if isinstance(item, Rejection):
            # A keying error is the clerk's to fix, not the form's: nothing is taken in yet.
            self._record(item, check, content, content_sha, "refused", None, reason=item.reason)
            return EntryResult(item.source_ref, row, "refused", "refused", item.reason, check)
        form = str(item.meta.get("form") or "")
        if form:
            key = f"form:{form}"
        elif content["serial"]:
            # Without receipt numbers a clerk's n-th keying of a serial is the n-th sheet with it.
            mine = self.connection.execute(
                sa.select(sa.func.count())
                .select_from(PAPER_ENTRY)
                .where(
                    PAPER_ENTRY.c.campaign_id == self.campaign_id,
                    PAPER_ENTRY.c.mode == "double",
                    PAPER_ENTRY.c.clerk == clerk[:128],
                    PAPER_ENTRY.c.form_key.like(f"serial:{content['serial']}#%"),
                )
            ).scalar_one()
            key = f"serial:{content['serial']}#{int(mine) + 1}"
        else:
            self._record(item, check, content, content_sha, "refused", None, reason="form_number_missing")
            return EntryResult(
                item.source_ref,
                row,
                "refused",
                "refused",
                "form_number_missing",
                check,
                detail="double entry of a form without a serial needs its receipt number (收件号)",
            )
        others = self.connection.execute(
            sa.select(PAPER_ENTRY.c.id, PAPER_ENTRY.c.clerk, PAPER_ENTRY.c.state, PAPER_ENTRY.c.entry_json)
            .where(PAPER_ENTRY.c.campaign_id == self.campaign_id, PAPER_ENTRY.c.form_key == key[:128])
            .order_by(PAPER_ENTRY.c.id)
        ).all()
        if any(o.state in ("ingested", "settled") for o in others):
            self._record(
                item,
                check,
                content,
                content_sha,
                "refused",
                None,
                reason="form_already_settled",
                form_key=key,
            )
            return EntryResult(item.source_ref, row, "refused", "refused", "form_already_settled", check)
        if any(o.clerk == clerk for o in others):
            self._record(
                item,
                check,
                content,
                content_sha,
                "refused",
                None,
                reason="already_entered_by_clerk",
                form_key=key,
            )
            return EntryResult(item.source_ref, row, "refused", "refused", "already_entered_by_clerk", check)
        match = next(
            (o for o in others if (o.entry_json or {}).get("form_sha256") == content["form_sha256"]), None
        )
        if match is not None:
            result = self._take_in(
                item,
                check,
                content,
                content_sha,
                clerks=[clerk, str(match.clerk)],
                settles=[int(match.id)],
                form_key=key[:128],
            )
            self.connection.execute(
                sa.update(PAPER_ENTRY)
                .where(PAPER_ENTRY.c.campaign_id == self.campaign_id, PAPER_ENTRY.c.form_key == key[:128])
                .where(PAPER_ENTRY.c.state == "disagreement")
                .values(state="settled", submission_id=result.submission_id)
            )
            return result
        state = "disagreement" if others else "awaiting"
        self._record(item, check, content, content_sha, state, None, reason=state, form_key=key)
        if others:
            self.connection.execute(
                sa.update(PAPER_ENTRY)
                .where(PAPER_ENTRY.c.id.in_([int(o.id) for o in others]))
                .values(state="disagreement", reason="disagreement")
            )
            diff = differences(dict(others[0].entry_json or {}), content)
            return EntryResult(
                item.source_ref, row, state, state, state, check, detail="; ".join(diff) or "the forms differ"
            )
        return EntryResult(item.source_ref, row, state, state, None, check)


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where two keyings of one form differ, without personal data (roster id, comment text)."""
    out: list[str] = []
    for name in ("serial", "signature", "answered_on", "tier"):
        if a.get(name) != b.get(name):
            out.append(f"{name}: {a.get(name) or '—'} ≠ {b.get(name) or '—'}")
    left, right = a.get("answers") or {}, b.get("answers") or {}
    for position in sorted(set(left) | set(right)):
        if left.get(position) != right.get(position):
            out.append(f"{position}: {left.get(position) or '—'} ≠ {right.get(position) or '—'}")
    if a.get("roster_key") != b.get("roster_key"):
        out.append("roster id differs")
    if a.get("comment_sha256") != b.get("comment_sha256"):
        out.append("comment differs")
    return out


# -- import of a keyed file ------------------------------------------------------------------


@dataclass
class ImportReport:
    """What `collect import paper` did, for the table, --json and the audit log."""

    campaign: str
    file: str
    sha256: str
    mode: Mode
    dry_run: bool
    rows: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    results: list[EntryResult] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Forms not counted: rejected, held, refused rows, disagreements (exit 1 when any)."""
        fine = {"counted", "already_received", "awaiting"}
        return sum(n for outcome, n in self.by_outcome.items() if outcome not in fine)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "file": self.file,
            "sha256": self.sha256,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_reason": dict(sorted(self.by_reason.items())),
            "forms": [
                {
                    "row": r.row,
                    "source_ref": r.source_ref,
                    "state": r.state,
                    "outcome": r.outcome,
                    "reason": r.reason,
                    "serial": r.serial.as_dict(),
                    "submission_id": r.submission_id,
                    "detail": r.detail,
                }
                for r in self.results
                if r.outcome not in ("counted", "already_received")
            ],
        }


def _campaign(store: Store, connection: Connection, code: str) -> tuple[int, CampaignSpec]:
    loaded = load_campaign(store, connection, code)
    if loaded is None:
        raise EntryRefused(f"campaign {code!r} does not exist")
    if "paper" not in loaded.spec.channels:
        raise EntryRefused(
            f"campaign {code!r} does not take paper forms (channels: {', '.join(loaded.spec.channels)})"
        )
    return loaded.id, loaded.spec


@contextmanager
def entry_session(
    store: Store, campaign: str, *, actor: str, mode: Mode = "single", dry_run: bool = False
) -> Iterator[EntrySession]:
    """One transaction for a batch of entries: all of them or none (a dry run rolls back)."""
    with store.writing(), store.engine.connect() as connection:
        outer = connection.begin()
        try:
            campaign_id, spec = _campaign(store, connection, campaign)
            yield EntrySession(store, connection, spec, campaign_id, actor, mode)
        except BaseException:
            outer.rollback()
            raise
        if dry_run:
            outer.rollback()
        else:
            outer.commit()


def import_keyed(
    store: Store,
    campaign: str,
    path: Path,
    *,
    actor: str,
    mode: Mode = "single",
    clerk: str | None = None,
    distribution: str | None = None,
    received_at: datetime | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """
    Import a spreadsheet of keyed forms (CSV/XLSX/XLS): every row checked, entered and kept.

    Raises:
        EntryRefused: the file or campaign is refused whole; nothing was written.
    """
    try:
        frame = read_table(path)
    except TableFileError as exc:
        raise EntryRefused(str(exc)) from exc
    if frame.height > MAX_ROWS:
        raise EntryRefused(f"{path}: {frame.height} rows is more than the {MAX_ROWS} allowed in one file")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    report = ImportReport(campaign, path.name, sha, mode, dry_run)
    now = received_at or datetime.now(UTC)
    with entry_session(store, campaign, actor=actor, mode=mode, dry_run=dry_run) as session:
        try:
            map_columns(frame.columns, session.spec)
        except PaperFileError as exc:
            raise EntryRefused(f"{path}: {exc}") from exc
        keyed = KeyedRows(
            campaign=campaign,
            file_name=path.name,
            header=frame.columns,
            # Row 1 is the header, as the spreadsheet shows it.
            rows=((i + 2, list(values)) for i, values in enumerate(frame.iter_rows())),
            received_at=now,
            clerk=clerk,
            distribution=distribution,
        )
        for item in PaperAdapter().parse(keyed, session.spec):
            result = session.enter(item)
            report.rows += 1
            report.results.append(result)
            report.by_outcome[result.outcome] += 1
            if result.reason and result.outcome not in ("counted", "already_received"):
                report.by_reason[result.reason] += 1
        if not dry_run:
            session.connection.execute(
                sa.insert(AUDIT).values(
                    at=utcnow(),
                    actor=actor,
                    action="import.paper",
                    campaign_code=campaign,
                    target=path.name[:255],
                    detail={
                        "file_sha256": sha,
                        "mode": mode,
                        "rows": report.rows,
                        "by_outcome": dict(report.by_outcome),
                        "by_reason": dict(report.by_reason),
                    },
                )
            )
    return report


def open_entries(store: Store, campaign: str, *, state: str | None = None) -> list[dict[str, Any]]:
    """Double-entry forms not settled yet (awaiting a second clerk, or in disagreement), by form."""
    with store.engine.connect() as connection:
        campaign_id, _spec = _campaign(store, connection, campaign)
        states = [state] if state else ["awaiting", "disagreement"]
        rows = connection.execute(
            sa.select(
                PAPER_ENTRY.c.id,
                PAPER_ENTRY.c.form_key,
                PAPER_ENTRY.c.clerk,
                PAPER_ENTRY.c.state,
                PAPER_ENTRY.c.source_ref,
                PAPER_ENTRY.c.serial_check,
                PAPER_ENTRY.c.entry_json,
            )
            .where(PAPER_ENTRY.c.campaign_id == campaign_id, PAPER_ENTRY.c.state.in_(states))
            .order_by(PAPER_ENTRY.c.form_key, PAPER_ENTRY.c.id)
        ).all()
    forms: dict[str, list[Any]] = {}
    for r in rows:
        forms.setdefault(str(r.form_key), []).append(r)
    out = []
    for key, entries in forms.items():
        first = dict(entries[0].entry_json or {})
        diffs = sorted({d for e in entries[1:] for d in differences(first, dict(e.entry_json or {}))})
        out.append(
            {
                "form": key,
                "state": "disagreement" if any(e.state == "disagreement" for e in entries) else "awaiting",
                "serial": first.get("serial"),
                "clerks": [e.clerk for e in entries],
                "entries": [{"id": e.id, "clerk": e.clerk, "source_ref": e.source_ref} for e in entries],
                "differences": diffs,
            }
        )
    return out


def submission_outcomes(
    connection: Connection, submission_ids: Sequence[int]
) -> dict[int, tuple[str, str | None]]:
    """Each submission's form outcome (valid | pending_review | invalid) and reason, as the report has it."""
    if not submission_ids:
        return {}
    out: dict[int, tuple[str, str | None]] = {}
    ids = sorted(set(submission_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        subs = connection.execute(
            sa.select(SUBMISSION.c.id, SUBMISSION.c.status, SUBMISSION.c.reason).where(
                SUBMISSION.c.id.in_(chunk)
            )
        ).all()
        ballots = connection.execute(
            sa.select(BALLOT.c.submission_id, BALLOT.c.status, BALLOT.c.reason)
            .where(BALLOT.c.submission_id.in_(chunk))
            .order_by(BALLOT.c.id)
        ).all()
        by_sub: dict[int, list[Any]] = {}
        for b in ballots:
            by_sub.setdefault(int(b.submission_id), []).append(b)
        for s in subs:
            mine = by_sub.get(int(s.id), [])
            if s.status != "accepted":
                out[int(s.id)] = ("invalid", s.reason or s.status)
            elif any(b.status == "counted" for b in mine):
                out[int(s.id)] = ("valid", None)
            elif any(b.status == "pending_review" for b in mine):
                out[int(s.id)] = (
                    "pending_review",
                    next(b.reason for b in mine if b.status == "pending_review"),
                )
            else:
                reasons = sorted(str(b.reason) for b in mine if b.reason)
                out[int(s.id)] = ("invalid", reasons[0] if reasons else "not_counted")
    return out
