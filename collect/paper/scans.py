"""
Scanned forms: read each page's QR code (zxing-cpp), link the image to its serial, and refuse a
second, different image of a serial page: two sheets with one serial mean one is a photocopy.

Pages are PNG/JPEG files or pages of PDF files (rendered with pdfium). An image is known by its
SHA-256 (a PDF page by the file's hash and the page number), so re-running adds nothing. Reading
the tick boxes (OMR) is not done here: the answers still come from keyed entry.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pypdfium2  # type: ignore[import-untyped]
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from collect.dedupe.review import Finding, file_findings
from collect.paper.entry import EntryRefused
from collect.paper.serials import QrPayload, signature_ok
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, PAPER_ENTRY, PAPER_SCAN, PAPER_SERIAL, utcnow

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
PDF_SUFFIX = ".pdf"
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 60_000_000  # an A4 page at 600 dpi is 35 M; more is not a scan
PDF_DPI = 200
SCAN_KIND = "scan_reuse"


@dataclass(frozen=True, slots=True)
class Page:
    """One scanned page: where it came from, its identity, and the QR texts found on it."""

    path: str
    sha256: str
    codes: tuple[str, ...]
    error: str | None = None


@dataclass
class ScanReport:
    campaign: str
    directory: str
    pages: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    refused: list[dict[str, Any]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        # Pages seen on an earlier run were reported then; only this run's new findings count.
        return sum(
            n
            for status, n in self.by_status.items()
            if status != "linked" and not status.startswith("already_")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "directory": self.directory,
            "pages": self.pages,
            "by_status": dict(sorted(self.by_status.items())),
            "by_reason": dict(sorted(self.by_reason.items())),
            "refused": self.refused,
        }


def decode(image: Image.Image) -> tuple[str, ...]:
    """Every QR text on a page image."""
    found = zxingcpp.read_barcodes(
        image.convert("L"), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    return tuple(code.text for code in found)


def pages_of(path: Path) -> Iterator[Page]:
    """The pages of one file: an image is one page, a PDF one per page."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            yield Page(str(path), _sha_file(path), (), f"{size} bytes is more than {MAX_FILE_BYTES}")
            return
        data = path.read_bytes()
    except OSError as exc:
        yield Page(str(path), "", (), f"cannot read: {exc.strerror}")
        return
    digest = hashlib.sha256(data).hexdigest()
    if path.suffix.lower() == PDF_SUFFIX:
        try:
            document = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            yield Page(str(path), digest, (), f"not a readable PDF ({exc})")
            return
        try:
            for index in range(len(document)):
                bitmap = document[index].render(scale=PDF_DPI / 72, grayscale=True)
                page_sha = hashlib.sha256(f"{digest}#page={index + 1}".encode()).hexdigest()
                yield Page(f"{path}#page={index + 1}", page_sha, decode(bitmap.to_pil()))
        finally:
            document.close()
        return
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                yield Page(
                    str(path), digest, (), f"{image.width}×{image.height} pixels is too large for a scan"
                )
                return
            yield Page(str(path), digest, decode(image))
    except (OSError, Image.DecompressionBombError) as exc:
        yield Page(str(path), digest, (), f"not a readable image ({exc})")


def _sha_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def scan_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == PDF_SUFFIX)
    )


def import_scans(store: Store, campaign: str, directory: Path, *, actor: str) -> ScanReport:
    """
    Link every scanned page under `directory` to its serial. Each page's outcome is kept in
    `paper_scan` (linked, refused with a reason, or unreadable); one transaction for all.

    Raises:
        EntryRefused: no such campaign or directory.
    """
    if not directory.is_dir():
        raise EntryRefused(f"{directory}: no such directory")
    files = scan_files(directory)
    report = ScanReport(campaign, str(directory))
    secret = store.settings.secret()
    with store.writing(), store.engine.begin() as connection:
        loaded = load_campaign(store, connection, campaign)
        if loaded is None:
            raise EntryRefused(f"campaign {campaign!r} does not exist")
        cid = loaded.id
        findings: list[Finding] = []
        for file in files:
            for page in pages_of(file):
                report.pages += 1
                status, reason, serial_id, serial, number = _judge(connection, secret, campaign, cid, page)
                if status == "already_linked":
                    report.by_status[status] += 1
                    continue
                known = connection.execute(
                    sa.select(PAPER_SCAN.c.status, PAPER_SCAN.c.reason).where(
                        PAPER_SCAN.c.campaign_id == cid,
                        PAPER_SCAN.c.image_sha256 == page.sha256,
                        PAPER_SCAN.c.page == number,
                    )
                ).first()
                if known is not None:
                    report.by_status["already_" + str(known.status)] += 1
                    continue
                connection.execute(
                    sa.insert(PAPER_SCAN).values(
                        campaign_id=cid,
                        serial_id=serial_id,
                        serial_read=serial,
                        page=number,
                        image_sha256=page.sha256 or hashlib.sha256(page.path.encode()).hexdigest(),
                        path=page.path[-1024:],
                        status=status,
                        reason=reason,
                        scanned_at=utcnow(),
                        actor=actor,
                    )
                )
                report.by_status[status] += 1
                if reason:
                    report.by_reason[reason] += 1
                    report.refused.append(
                        {"path": page.path, "status": status, "reason": reason, "serial": serial}
                    )
                if reason == "scan_image_mismatch" and serial_id is not None:
                    findings.extend(_findings(connection, cid, serial_id, serial, number, page))
        file_findings(connection, cid, findings)
        connection.execute(
            sa.insert(AUDIT).values(
                at=utcnow(),
                actor=actor,
                action="import.scans",
                campaign_code=campaign,
                target=str(directory)[-255:],
                detail={
                    "pages": report.pages,
                    "by_status": dict(report.by_status),
                    "by_reason": dict(report.by_reason),
                },
            )
        )
    return report


def _judge(
    connection: sa.Connection, secret: bytes, campaign: str, campaign_id: int, page: Page
) -> tuple[str, str | None, int | None, str | None, int]:
    """(status, reason, serial id, serial, page number) of one page."""
    if page.error is not None:
        return "unreadable", "unreadable_file", None, None, 1
    payloads = [p for p in (QrPayload.parse(t) for t in page.codes) if p is not None]
    if not payloads:
        return "unreadable", "no_form_code", None, None, 1
    payload = payloads[0]
    if payload.campaign != campaign:
        return "refused", "other_campaign", None, payload.serial, payload.page
    if not signature_ok(secret, campaign, payload.serial, payload.signature):
        return "refused", "signature_mismatch", None, payload.serial, payload.page
    row = connection.execute(
        sa.select(PAPER_SERIAL.c.id).where(
            PAPER_SERIAL.c.campaign_id == campaign_id, PAPER_SERIAL.c.serial == payload.serial
        )
    ).first()
    if row is None:
        return "refused", "serial_unknown", None, payload.serial, payload.page
    linked = connection.execute(
        sa.select(PAPER_SCAN.c.image_sha256).where(
            PAPER_SCAN.c.serial_id == row.id,
            PAPER_SCAN.c.page == payload.page,
            PAPER_SCAN.c.status == "linked",
        )
    ).first()
    if linked is not None:
        if linked.image_sha256 == page.sha256:
            return "already_linked", None, int(row.id), payload.serial, payload.page
        # Another image of the same serial page: another sheet with the same serial.
        return "refused", "scan_image_mismatch", int(row.id), payload.serial, payload.page
    return "linked", None, int(row.id), payload.serial, payload.page


def _findings(
    connection: sa.Connection, campaign_id: int, serial_id: int, serial: str | None, number: int, page: Page
) -> list[Finding]:
    """Hold the serial's forms: a second sheet exists, so which one was keyed must be checked."""
    linked = connection.execute(
        sa.select(PAPER_SCAN.c.image_sha256, PAPER_SCAN.c.path).where(
            PAPER_SCAN.c.serial_id == serial_id, PAPER_SCAN.c.page == number, PAPER_SCAN.c.status == "linked"
        )
    ).first()
    submissions = connection.execute(
        sa.select(PAPER_ENTRY.c.submission_id)
        .where(
            PAPER_ENTRY.c.campaign_id == campaign_id,
            PAPER_ENTRY.c.serial_id == serial_id,
            PAPER_ENTRY.c.submission_id.is_not(None),
        )
        .distinct()
    ).scalars()
    evidence = {
        "serial": serial,
        "page": number,
        "linked_image_sha256": linked.image_sha256 if linked else None,
        "linked_image": linked.path if linked else None,
        "other_image_sha256": page.sha256,
        "other_image": page.path,
        "note": "two different sheets carry this serial: compare the images; a photocopy does not count",
    }
    return [
        Finding(
            kind=SCAN_KIND,
            reason="serial_reused",
            fingerprint=f"{page.sha256[:40]}:submission:{submission_id}",
            evidence=evidence,
            submission_id=int(submission_id),
            hold=True,
        )
        for submission_id in submissions
    ]
