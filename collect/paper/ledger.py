"""
The issuance ledger: printing records every serial before the PDF exists, and `collect paper
ledger` reconciles what went out with what came back, per distribution channel and batch.

Reconciliation (must hold, checked not assumed): issued = returned + not returned, per channel
and batch; every form keyed = valid + invalid + pending review + awaiting entry; every paper
submission of the campaign is one entry's (none taken in behind the ledger's back).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from collect.paper.entry import EntryRefused, submission_outcomes
from collect.paper.forms import Sheet, plan_layout, render_forms
from collect.paper.serials import new_serial, sign
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, PAPER_ENTRY, PAPER_PRINT, PAPER_SCAN, PAPER_SERIAL, SUBMISSION

MAX_PRINT = 20_000  # forms per run: a bigger PDF is better split into batches anyway
_NAME = re.compile(r"^[^\x00-\x1f/\\]{1,64}$")
NO_SERIAL = "(unknown serial)"


@dataclass(frozen=True, slots=True)
class PrintResult:
    print_id: int
    distribution: str
    batch: str
    count: int
    first_seq: int | None
    last_seq: int | None
    pages: int
    file_sha256: str
    serialed: bool


def issue_forms(
    store: Store,
    campaign: str,
    *,
    distribution: str,
    count: int,
    out: Path,
    actor: str,
    batch: str | None = None,
    serialed: bool = True,
    now: datetime | None = None,
) -> PrintResult:
    """
    Record `count` new serials for `distribution` and write their forms to `out`, in one
    transaction: if the PDF cannot be written, no serial is issued; if the ledger cannot be
    committed, the PDF is removed. `serialed=False` prints one master form without a serial
    (for a newspaper) and records the channel as unserialed.

    Raises:
        EntryRefused: unknown campaign, bad channel or batch name, count out of range.
    """
    if not _NAME.match(distribution):
        raise EntryRefused(f"--channel {distribution!r}: give a name of 1–64 characters without / or \\")
    if batch is not None and not _NAME.match(batch):
        raise EntryRefused(f"--batch {batch!r}: give a name of 1–64 characters without / or \\")
    if not 1 <= count <= MAX_PRINT:
        raise EntryRefused(f"--count {count}: print 1 to {MAX_PRINT} forms per run")
    printed_at = now or datetime.now(UTC)
    secret = store.settings.secret() if serialed else b""
    written = False
    try:
        with store.writing(), store.engine.begin() as connection:
            loaded = load_campaign(store, connection, campaign)
            if loaded is None:
                raise EntryRefused(f"campaign {campaign!r} does not exist")
            spec = loaded.spec
            if "paper" not in spec.channels:
                raise EntryRefused(f"campaign {campaign!r} does not take paper forms")
            plan_layout(spec)  # FormLayoutError before anything is recorded
            kinds = set(
                connection.execute(
                    sa.select(PAPER_PRINT.c.serialed).where(
                        PAPER_PRINT.c.campaign_id == loaded.id, PAPER_PRINT.c.distribution == distribution
                    )
                ).scalars()
            )
            if kinds and kinds != {serialed}:
                raise EntryRefused(
                    f"channel {distribution!r} was printed {'with' if not serialed else 'without'} serials "
                    "before: one channel is one or the other"
                )
            print_id = int(
                connection.execute(
                    sa.insert(PAPER_PRINT)
                    .values(
                        campaign_id=loaded.id,
                        distribution=distribution,
                        batch=batch or "",
                        serialed=serialed,
                        count=count,
                        file_name=out.name[:255],
                        printed_at=printed_at,
                        printed_by=actor,
                    )
                    .returning(PAPER_PRINT.c.id)
                ).scalar_one()
            )
            batch = batch or f"{printed_at:%Y%m%d}-{print_id}"
            sheets: list[Sheet] = []
            first_seq = last_seq = None
            if serialed:
                taken = int(
                    connection.execute(
                        sa.select(sa.func.coalesce(sa.func.max(PAPER_SERIAL.c.seq), 0)).where(
                            PAPER_SERIAL.c.campaign_id == loaded.id
                        )
                    ).scalar_one()
                )
                serials = _fresh_serials(connection, loaded.id, count)
                first_seq, last_seq = taken + 1, taken + count
                connection.execute(
                    sa.insert(PAPER_SERIAL),
                    [
                        {
                            "campaign_id": loaded.id,
                            "print_id": print_id,
                            "serial": serial,
                            "seq": taken + i,
                            "distribution": distribution,
                            "batch": batch,
                            "issued_at": printed_at,
                            "printed_by": actor,
                        }
                        for i, serial in enumerate(serials, start=1)
                    ],
                )
                sheets = [
                    Sheet(taken + i, serial, sign(secret, spec.code, serial), distribution, batch)
                    for i, serial in enumerate(serials, start=1)
                ]
            else:
                sheets = [Sheet(None, None, None, distribution, batch)] * count
            tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            try:
                pages = render_forms(spec, sheets, tmp, printed_at=printed_at)
                digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
                tmp.replace(out)
                written = True
            finally:
                tmp.unlink(missing_ok=True)
            connection.execute(
                sa.update(PAPER_PRINT)
                .where(PAPER_PRINT.c.id == print_id)
                .values(batch=batch, first_seq=first_seq, last_seq=last_seq, file_sha256=digest)
            )
            connection.execute(
                sa.insert(AUDIT).values(
                    at=printed_at,
                    actor=actor,
                    action="paper.print",
                    campaign_code=spec.code,
                    target=f"paper_print:{print_id}",
                    detail={
                        "distribution": distribution,
                        "batch": batch,
                        "count": count,
                        "serialed": serialed,
                        "first_seq": first_seq,
                        "last_seq": last_seq,
                        "file": out.name,
                        "file_sha256": digest,
                    },
                )
            )
    except BaseException:
        if written:
            out.unlink(missing_ok=True)  # forms whose serials are not in the ledger must not be printed
        raise
    return PrintResult(print_id, distribution, batch, count, first_seq, last_seq, pages, digest, serialed)


def _fresh_serials(connection: sa.Connection, campaign_id: int, count: int) -> list[str]:
    """`count` serials not issued before in the campaign (a clash is rare: 2^30 to choose from)."""
    chosen: set[str] = set()
    while len(chosen) < count:
        batch = {new_serial() for _ in range(count - len(chosen))} - chosen
        for start in range(0, len(batch), 500):
            part = sorted(batch)[start : start + 500]
            clash = set(
                connection.execute(
                    sa.select(PAPER_SERIAL.c.serial).where(
                        PAPER_SERIAL.c.campaign_id == campaign_id, PAPER_SERIAL.c.serial.in_(part)
                    )
                ).scalars()
            )
            chosen.update(set(part) - clash)
    return sorted(chosen)[:count]


@dataclass
class LedgerRow:
    distribution: str
    batch: str
    serialed: bool
    issued: int = 0
    returned: int = 0
    not_returned: int = 0
    forms: int = 0
    valid: int = 0
    invalid: int = 0
    pending_review: int = 0
    awaiting_entry: int = 0
    scans_linked: int = 0
    scans_refused: int = 0
    invalid_by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution,
            "batch": self.batch,
            "serialed": self.serialed,
            "issued": self.issued if self.serialed else None,
            "returned": self.returned if self.serialed else None,
            "not_returned": self.not_returned if self.serialed else None,
            "forms": self.forms,
            "valid": self.valid,
            "invalid": self.invalid,
            "pending_review": self.pending_review,
            "awaiting_entry": self.awaiting_entry,
            "scans_linked": self.scans_linked,
            "scans_refused": self.scans_refused,
            "invalid_by_reason": dict(sorted(self.invalid_by_reason.items())),
        }


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    name: str
    ok: bool
    detail: str


@dataclass
class Ledger:
    campaign: str
    rows: list[LedgerRow]
    total: LedgerRow
    checks: list[LedgerCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "rows": [r.as_dict() for r in self.rows],
            "total": self.total.as_dict(),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "ok": self.ok,
        }


def build_ledger(store: Store, campaign: str) -> Ledger:
    """Issued / returned / valid / invalid per distribution channel and batch, with the checks."""
    with store.reader.connect() as connection:
        loaded = load_campaign(store, connection, campaign)
        if loaded is None:
            raise EntryRefused(f"campaign {campaign!r} does not exist")
        cid = loaded.id
        rows: dict[tuple[str, str], LedgerRow] = {}
        for r in connection.execute(
            sa.select(PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch, sa.func.count())
            .where(PAPER_SERIAL.c.campaign_id == cid)
            .group_by(PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch)
        ):
            rows[(r[0], r[1])] = LedgerRow(r[0], r[1], True, issued=int(r[2]))
        for r in connection.execute(
            sa.select(PAPER_PRINT.c.distribution, PAPER_PRINT.c.batch).where(
                PAPER_PRINT.c.campaign_id == cid, PAPER_PRINT.c.serialed.is_(False)
            )
        ):
            rows.setdefault((r[0], ""), LedgerRow(r[0], "", False))
        # Returned: a serial with at least one form keyed (taken in, or waiting for its second clerk).
        keyed_serials = (
            sa.select(PAPER_ENTRY.c.serial_id)
            .where(
                PAPER_ENTRY.c.campaign_id == cid,
                PAPER_ENTRY.c.serial_id.is_not(None),
                PAPER_ENTRY.c.state.in_(["ingested", "awaiting", "disagreement"]),
            )
            .distinct()
        )
        for counted, column in (("returned", PAPER_SERIAL.c.id.in_(keyed_serials)), ("not_returned", None)):
            query = sa.select(PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch, sa.func.count()).where(
                PAPER_SERIAL.c.campaign_id == cid
            )
            query = query.where(column if column is not None else PAPER_SERIAL.c.id.not_in(keyed_serials))
            for r in connection.execute(query.group_by(PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch)):
                setattr(rows[(r[0], r[1])], counted, int(r[2]))
        entries = connection.execute(
            sa.select(
                PAPER_ENTRY.c.serial_id,
                PAPER_ENTRY.c.serial_check,
                PAPER_ENTRY.c.state,
                PAPER_ENTRY.c.distribution,
                PAPER_ENTRY.c.batch,
                PAPER_ENTRY.c.submission_id,
                PAPER_ENTRY.c.form_key,
            ).where(
                PAPER_ENTRY.c.campaign_id == cid,
                PAPER_ENTRY.c.state.in_(["ingested", "awaiting", "disagreement"]),
            )
        ).all()
        outcomes = submission_outcomes(
            connection, [int(e.submission_id) for e in entries if e.submission_id is not None]
        )
        awaiting_forms: set[str] = set()
        key: tuple[str, str]
        for e in entries:
            if e.serial_id is not None:
                key = (str(e.distribution), str(e.batch))
            elif e.serial_check == "unserialed":
                key = (str(e.distribution), "")
            else:
                key = (NO_SERIAL, "")
            row = rows.setdefault(
                key, LedgerRow(key[0], key[1], key[0] != NO_SERIAL and e.serial_check != "unserialed")
            )
            if e.state != "ingested":
                # Two clerks' keyings of one form are one form awaiting its entry.
                if (e.form_key or "") in awaiting_forms:
                    continue
                awaiting_forms.add(e.form_key or "")
                row.forms += 1
                row.awaiting_entry += 1
                continue
            row.forms += 1
            outcome, reason = outcomes.get(int(e.submission_id), ("invalid", "missing_submission"))
            if outcome == "valid":
                row.valid += 1
            elif outcome == "pending_review":
                row.pending_review += 1
            else:
                row.invalid += 1
                row.invalid_by_reason[str(reason)] += 1
        scan_rows = connection.execute(
            sa.select(PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch, PAPER_SCAN.c.status, sa.func.count())
            .select_from(PAPER_SCAN.outerjoin(PAPER_SERIAL, PAPER_SERIAL.c.id == PAPER_SCAN.c.serial_id))
            .where(PAPER_SCAN.c.campaign_id == cid)
            .group_by(PAPER_SERIAL.c.distribution, PAPER_SERIAL.c.batch, PAPER_SCAN.c.status)
        ).all()
        for distribution, batch, status, n in scan_rows:
            key = (str(distribution), str(batch)) if distribution is not None else (NO_SERIAL, "")
            row = rows.setdefault(key, LedgerRow(key[0], key[1], distribution is not None))
            if status == "linked":
                row.scans_linked += int(n)
            else:
                row.scans_refused += int(n)
        paper_submissions = int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(SUBMISSION)
                .where(SUBMISSION.c.campaign_code == campaign, SUBMISSION.c.channel == "paper")
            ).scalar_one()
        )
        linked_submissions = int(
            connection.execute(
                sa.select(sa.func.count(sa.distinct(PAPER_ENTRY.c.submission_id))).where(
                    PAPER_ENTRY.c.campaign_id == cid, PAPER_ENTRY.c.submission_id.is_not(None)
                )
            ).scalar_one()
        )
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[0] == NO_SERIAL, k[0], k[1]))]
    total = LedgerRow("(all)", "", True)
    for row in ordered:
        for name in (
            "issued",
            "returned",
            "not_returned",
            "forms",
            "valid",
            "invalid",
            "pending_review",
            "awaiting_entry",
            "scans_linked",
            "scans_refused",
        ):
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.invalid_by_reason.update(row.invalid_by_reason)
    checks = [
        LedgerCheck(
            "issued = returned + not returned (every channel and batch)",
            all(r.issued == r.returned + r.not_returned for r in ordered),
            f"{total.issued} = {total.returned} + {total.not_returned}",
        ),
        LedgerCheck(
            "forms = valid + invalid + pending review + awaiting entry",
            all(r.forms == r.valid + r.invalid + r.pending_review + r.awaiting_entry for r in ordered),
            f"{total.forms} = {total.valid} + {total.invalid} + {total.pending_review} "
            f"+ {total.awaiting_entry}",
        ),
        LedgerCheck(
            "every paper submission comes from a keyed entry",
            paper_submissions == linked_submissions,
            f"{paper_submissions} paper submissions, {linked_submissions} from entries",
        ),
    ]
    return Ledger(campaign, ordered, total, checks)
