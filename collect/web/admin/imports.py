"""
`/admin/imports`: operators upload a call-centre / phone-survey export, see what the import would
do (a dry run: encoding, header row, profile, rows by outcome, the quarantined rows with their
reasons), then confirm it. The import is `collect.imports.import_calls`, exactly as the CLI runs
it: one transaction, all rows or none, idempotent (the same file again adds nothing).

The uploaded file waits between preview and confirmation in a directory of this machine
(`uploads_dir`: beside the SQLite file, else one per database under the system's temporary
directory), named by its SHA-256; several workers of one box share it. Files above MAX_UPLOAD go
through `collect import calls` instead, where a progress bar shows how far a long import is.
Past imports are the audit log's `import.calls` entries; each one's quarantined rows (phone
numbers masked) can be downloaded as CSV.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from collect.imports import ImportRefused, ImportReport, import_calls, read_profile
from collect.ingest import as_utc
from collect.settings import Settings
from collect.store import Store
from collect.store.campaigns import load_campaign
from collect.store.tables import AUDIT, CAMPAIGN
from collect.web.admin.pages import AdminView, admin_page
from collect.web.context import web
from collect.web.i18n import N_

MAX_UPLOAD = 64 << 20  # bytes; larger exports go through the CLI
SUFFIXES = (".csv", ".txt", ".xlsx", ".xls")
_SHA = re.compile(r"^[0-9a-f]{64}$")
HISTORY = 50


def phone_campaigns(store: Store) -> list[tuple[str, str]]:
    """(code, name) of the campaigns that take phone-survey ballots."""
    with store.reader.connect() as connection:
        rows = connection.execute(sa.select(CAMPAIGN.c.code, CAMPAIGN.c.name).order_by(CAMPAIGN.c.code)).all()
        out = []
        for row in rows:
            loaded = load_campaign(store, connection, row.code)
            if loaded is not None and "phone" in loaded.spec.channels:
                out.append((str(row.code), str(row.name)))
        return out


def history(store: Store, uploads: Path) -> list[dict[str, Any]]:
    """The newest imports, from the audit log (counts only: no row, no phone number)."""
    with store.reader.connect() as connection:
        rows = connection.execute(
            sa.select(AUDIT.c.at, AUDIT.c.actor, AUDIT.c.campaign_code, AUDIT.c.detail)
            .where(AUDIT.c.action == "import.calls")
            .order_by(AUDIT.c.id.desc())
            .limit(HISTORY)
        ).all()
    out = []
    for row in rows:
        detail = dict(row.detail or {})
        sha = str(detail.get("file_sha256", ""))
        out.append(
            {
                "at": as_utc(row.at).strftime("%Y-%m-%d %H:%M"),
                "actor": row.actor,
                "campaign": row.campaign_code,
                "file": detail.get("file", ""),
                "sha256": sha,
                "rows": detail.get("rows_read", 0),
                "accepted": detail.get("accepted", 0),
                "already_received": detail.get("already_received", 0),
                "quarantined": detail.get("quarantined", 0),
                "by_reason": dict(sorted((detail.get("by_reason") or {}).items())),
                "quarantine_csv": (_quarantine_path(uploads, sha).is_file() if _SHA.match(sha) else False),
            }
        )
    return out


def uploads_dir(settings: Settings) -> Path:
    """Where uploads wait: per database, so two stores on one machine never share a file."""
    url = make_url(settings.database_url)
    if settings.is_sqlite and url.database and url.database != ":memory:":
        database = Path(url.database).resolve()
        return database.with_name(database.name + ".imports")
    tag = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"collect-imports-{tag}"


def _stored(uploads: Path, sha: str, suffix: str) -> Path:
    return uploads / f"{sha}{suffix}"


def _quarantine_path(uploads: Path, sha: str) -> Path:
    return uploads / f"{sha}.quarantine.csv"


def keep_upload(uploads: Path, upload: UploadFile) -> tuple[str, Path]:
    """Copy the uploaded file under its SHA-256 (the same file twice is one file)."""
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise ImportRefused(f"{upload.filename!r}: upload a CSV, XLSX or XLS export ({', '.join(SUFFIXES)})")
    uploads.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    upload.file.seek(0)
    for block in iter(lambda: upload.file.read(1 << 20), b""):
        digest.update(block)
    sha = digest.hexdigest()
    target = _stored(uploads, sha, suffix)
    if not target.exists():
        upload.file.seek(0)
        part = target.with_name(target.name + ".part")
        with part.open("wb") as handle:
            shutil.copyfileobj(upload.file, handle)
        part.replace(target)
    return sha, target


def find_upload(uploads: Path, sha: str) -> Path | None:
    if not _SHA.match(sha):
        return None
    return next((p for p in (_stored(uploads, sha, s) for s in SUFFIXES) if p.is_file()), None)


def run_import(
    store: Store,
    campaign: str,
    path: Path,
    *,
    original_name: str,
    profile_text: bytes | None,
    dry_run: bool,
    actor: str,
    now: datetime,
) -> ImportReport:
    """
    The CLI's import on the stored upload, under the name the operator gave it (call ids and
    the report name the file as it was uploaded).
    """
    named = path.parent / f"{path.stem}.d" / _safe_name(original_name, path.suffix)
    named.parent.mkdir(mode=0o700, exist_ok=True)
    if not named.exists():
        named.hardlink_to(path)
    # The profile given with the preview is the one the confirmation uses.
    profile_file = named.parent / "profile.toml"
    if profile_text:
        profile_file.write_bytes(profile_text)
    elif dry_run:
        profile_file.unlink(missing_ok=True)
    profile = read_profile(profile_file) if profile_file.is_file() else None
    final = _quarantine_path(path.parent, path.stem)
    fresh = final.with_name(final.name + ".new")
    report = import_calls(
        store,
        campaign,
        named,
        profile=profile,
        dry_run=dry_run,
        actor=actor,
        now=now,
        quarantine_out=None if dry_run else fresh,
        profile_out=named.parent / "proposed.profile.toml",
    )
    if fresh.is_file():
        # A repeated import quarantines nothing new (its rows are already received): the first
        # run's list stays the file's list.
        if report.quarantined or not final.is_file():
            fresh.replace(final)
        else:
            fresh.unlink()
    return report


def _safe_name(name: str, suffix: str) -> str:
    stem = re.sub(r"[^\w.\-]+", "_", Path(name).stem, flags=re.UNICODE).strip("._") or "export"
    return f"{stem[:100]}{suffix}"


@admin_page(
    "/imports",
    title=N_("Phone-survey imports"),
    min_role="operator",
    methods=("GET", "POST"),
    uploads=True,
    max_body=MAX_UPLOAD + (1 << 20),
)
async def imports(request: Request, view: AdminView) -> Response:
    ctx = web(request)
    uploads = uploads_dir(ctx.settings)
    error = None
    report: ImportReport | None = None
    upload: dict[str, str] = {}
    if request.method == "POST":
        form = view.form
        campaign = form.get("campaign", "")
        confirm = form.get("action") == "import"
        try:
            if confirm:
                sha = form.get("sha256", "")
                found = find_upload(uploads, sha)
                if found is None:
                    raise ImportRefused(view.gettext(N_("The uploaded file is gone: upload it again.")))
                stored = found
            else:
                files = view.files
                export = files.get("file") if files is not None else None
                if not isinstance(export, UploadFile) or not export.filename:
                    raise ImportRefused(view.gettext(N_("Choose the export file to upload.")))
                sha, stored = await anyio.to_thread.run_sync(keep_upload, uploads, export)
                upload = {"name": export.filename, "sha256": sha}
            name = form.get("name") or upload.get("name") or stored.name
            upload = {"name": name, "sha256": sha, "campaign": campaign}
            profile_text = await _profile_bytes(view)
            report = await ctx.write(
                lambda: run_import(
                    ctx.store,
                    campaign,
                    stored,
                    original_name=name,
                    profile_text=profile_text,
                    dry_run=not confirm,
                    actor=f"web:{view.account.name}",
                    now=as_utc(ctx.clock()),
                )
            )
        except ImportRefused as exc:
            error = str(exc)
    campaigns = await anyio.to_thread.run_sync(phone_campaigns, ctx.store)
    past = await anyio.to_thread.run_sync(history, ctx.store, uploads)
    values = {
        "campaigns": campaigns,
        "report": report,
        "upload": upload,
        "error": error,
        "history": past,
        "max_mb": MAX_UPLOAD >> 20,
    }
    return view.render("admin/imports.html", values, status=400 if error else 200)


async def _profile_bytes(view: AdminView) -> bytes | None:
    """An uploaded vendor profile (TOML), when the operator gave one."""
    files = view.files
    given = files.get("profile") if files is not None else None
    if isinstance(given, UploadFile) and given.filename:
        data = await given.read()
        return data or None
    return None


@admin_page("/imports/quarantine/{sha}", title=N_("Quarantined rows"), min_role="operator", nav=False)
async def quarantine_csv(request: Request, view: AdminView) -> Response:
    """An import's quarantined rows as CSV: where and why, phone numbers masked."""
    sha = request.path_params["sha"].removesuffix(".csv")
    path = _quarantine_path(uploads_dir(web(request).settings), sha) if _SHA.match(sha) else None
    if path is None or not path.is_file():
        return view.render("admin/refused.html", {"title": "", "kind": "missing"}, status=404)
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=f"quarantine-{sha[:12]}.csv",
        headers={"Cache-Control": "no-store"},
    )
