"""
`collect qr posters|revoke|ticket|ticket-key`: window posters with a QR code, their revocation,
and signed one-time tickets (docs/window.md).

Posters are A5 portrait: SVG and PDF carry the unit and window names in Chinese and the short
URL under the code; PNG is the code with its quiet zone alone (pure Python, no Pillow), for
screens and for a centre's own poster design. Error correction Q: a scuffed or taped-over
quarter of the code still reads.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import click
import qrcode.constants
import qrcode.image.pure
import qrcode.image.svg
from fpdf import FPDF
from qrcode.main import QRCode
from rich.console import Console
from rich.table import Table

from collect.campaign import CampaignSpec
from collect.channels.window import Hours, sign_ticket, ticket_key
from collect.cli import cli, pass_app
from collect.cli.campaign import actor_name
from collect.cli.context import AppContext
from collect.cli.errors import CommandFailed
from collect.store.campaigns import load_campaign
from collect.web.window import (
    PosterError,
    PosterRow,
    WindowConfig,
    campaigns_with_window,
    choose_campaign,
    ensure_posters,
    revoke_poster,
)

out = Console(highlight=False, soft_wrap=True)

FORMATS = ("svg", "png", "pdf")
PAGE_W, PAGE_H = 148.0, 210.0  # A5 portrait, mm
QR_MM = 92.0  # about 2.8 mm a module for a short URL: scans from an arm's length
QUIET = 4  # modules of white around the code, as the standard asks
PNG_BOX = 12  # pixels a module: 400+ px, sharp on a screen and on a label printer
HEADLINE = "请扫码评价本窗口服务"
HEADLINE_EN = "Scan to rate this window"
FOOTER = "匿名评价 · 一次服务评价一次 · 差评必回访"
# CJK fonts a printer's or a phone's SVG renderer is likely to have, then any sans-serif.
SVG_FONTS = "'Noto Sans SC','Source Han Sans SC','PingFang SC','Microsoft YaHei','SimHei',sans-serif"


def poster_url(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}/w/{code}"


def _qr(data: str, factory: Any = None, box: int = 10, border: int = 0) -> QRCode[Any]:
    # qrcode is untyped; its calls are typed here once.
    code: QRCode[Any] = QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_Q, box_size=box, border=border, image_factory=factory
    )
    code.add_data(data)  # type: ignore[no-untyped-call]
    code.make(fit=True)  # type: ignore[no-untyped-call]
    return code


@dataclass(frozen=True, slots=True)
class PosterText:
    """What a poster says, besides its code."""

    campaign: str
    unit: str
    window: str
    staff: str | None
    url: str
    hours: str | None


def poster_text(spec: CampaignSpec, poster: PosterRow, public_url: str) -> PosterText:
    found = spec.window(poster.window)
    unit_name, window_name = (found[0].name, found[1].name) if found else (poster.unit, poster.window)
    return PosterText(
        spec.name, unit_name, window_name, poster.staff, poster_url(public_url, poster.code), poster.hours
    )


def render_svg(text: PosterText) -> bytes:
    """An A5 poster as SVG: the code as one path (SvgPathImage), the names as text."""
    factory: Any = qrcode.image.svg.SvgPathImage
    image: Any = _qr(text.url).make_image(image_factory=factory)
    modules = int(image.width)
    path = str(image.path.get("d"))
    scale = QR_MM / (modules + 2 * QUIET)
    x0 = (PAGE_W - QR_MM) / 2
    y0 = 62.0
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W:g}mm" height="{PAGE_H:g}mm" '
        f'viewBox="0 0 {PAGE_W:g} {PAGE_H:g}" font-family="{SVG_FONTS}">',
        f"<title>{escape(text.unit)} {escape(text.window)}</title>",
        f'<rect width="{PAGE_W:g}" height="{PAGE_H:g}" fill="#fff"/>',
        f'<rect x="0" y="0" width="{PAGE_W:g}" height="14" fill="#0b57d0"/>',
        f'<text x="{PAGE_W / 2:g}" y="9.6" font-size="6" fill="#fff" text-anchor="middle" '
        f'font-weight="700">{escape(HEADLINE)}</text>',
        _svg_text(PAGE_W / 2, 28, 9, text.unit, bold=True),
        _svg_text(PAGE_W / 2, 42, 12, text.window, bold=True),
    ]
    if text.staff:
        lines.append(_svg_text(PAGE_W / 2, 52, 6.5, text.staff))
    lines += [
        f'<g transform="translate({x0 + QUIET * scale:.3f} {y0 + QUIET * scale:.3f}) scale({scale:.5f})">',
        f'<path d="{path}" fill="#000" shape-rendering="crispEdges"/>',
        "</g>",
        _svg_text(PAGE_W / 2, y0 + QR_MM + 9, 6.2, text.url, mono=True),
        _svg_text(PAGE_W / 2, y0 + QR_MM + 19, 4.6, f"{HEADLINE_EN} · {text.window}"),
        _svg_text(PAGE_W / 2, PAGE_H - 22, 4.6, FOOTER),
    ]
    if text.hours:
        lines.append(_svg_text(PAGE_W / 2, PAGE_H - 15, 4.2, f"评价时间 {text.hours}"))
    lines += [_svg_text(PAGE_W / 2, PAGE_H - 8, 3.8, text.campaign), "</svg>"]
    return ("\n".join(lines) + "\n").encode()


def _svg_text(x: float, y: float, size: float, value: str, *, bold: bool = False, mono: bool = False) -> str:
    weight = ' font-weight="700"' if bold else ""
    family = ' font-family="ui-monospace,Menlo,Consolas,monospace"' if mono else ""
    return (
        f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" text-anchor="middle"{weight}{family}>'
        f"{escape(value)}</text>"
    )


def render_png(text: PosterText) -> bytes:
    """The code alone with its quiet zone, as PNG through pypng (PyPNGImage): no Pillow."""
    image: Any = _qr(text.url, qrcode.image.pure.PyPNGImage, box=PNG_BOX, border=QUIET).make_image()
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def pdf_characters(texts: list[PosterText]) -> frozenset[str]:
    """Every character the posters print: one font subset serves them all (cutting it is slow)."""
    return frozenset(
        "".join(f"{t.campaign}{t.unit}{t.window}{t.staff or ''}{t.url}{t.hours or ''}" for t in texts)
        + HEADLINE
        + HEADLINE_EN
        + FOOTER
        + "评价时间 ·:/-_.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    )


def render_pdf(texts: list[PosterText], chars: frozenset[str] | None = None) -> bytes:
    """A5 posters as one PDF, a page each; Chinese in Noto Sans SC, cut to the text used."""
    # The paper forms' font: Noto Sans SC from justmytype-intl-cjk, subset and fixed in weight
    # (cached by character set, so the posters of one run share one cut).
    from collect.paper.forms import _static_font

    chars = chars or pdf_characters(texts)
    # The size in mm, not "A5": fpdf2 warns about its A5 dimensions, changed in 2.8.5.
    pdf = FPDF(orientation="P", unit="mm", format=(PAGE_W, PAGE_H))
    pdf.set_auto_page_break(False)
    pdf.set_creator("collect")
    with tempfile.TemporaryDirectory(prefix="collect-font-") as tmp:
        for style, weight in (("", 400), ("B", 700)):
            font = Path(tmp) / f"noto-sans-sc-{weight}.ttf"
            font.write_bytes(_static_font(chars, weight))
            pdf.add_font("NotoSansSC", style, str(font))
        for text in texts:
            _pdf_page(pdf, text)
        return bytes(pdf.output())


def _pdf_page(pdf: FPDF, text: PosterText) -> None:
    pdf.add_page()
    pdf.set_fill_color(11, 87, 208)
    pdf.rect(0, 0, PAGE_W, 14, "F")
    pdf.set_text_color(255, 255, 255)
    _pdf_line(pdf, 3, 8, HEADLINE, size=17, bold=True)
    pdf.set_text_color(0, 0, 0)
    _pdf_line(pdf, 22, 9, text.unit, size=24, bold=True)
    _pdf_line(pdf, 33, 11, text.window, size=32, bold=True)
    if text.staff:
        _pdf_line(pdf, 46, 7, text.staff, size=17)
    matrix: list[list[bool]] = _qr(text.url).get_matrix()  # type: ignore[no-untyped-call]
    module = QR_MM / (len(matrix) + 2 * QUIET)
    x0 = (PAGE_W - QR_MM) / 2 + QUIET * module
    y0 = 62.0 + QUIET * module
    pdf.set_fill_color(0, 0, 0)
    # Vector modules, runs merged into one rectangle each: crisp at any printer resolution.
    for r, row in enumerate(matrix):
        start: int | None = None
        for c, dark in enumerate([*row, False]):
            if dark and start is None:
                start = c
            elif not dark and start is not None:
                pdf.rect(x0 + start * module, y0 + r * module, (c - start) * module, module, "F")
                start = None
    _pdf_line(pdf, 62 + QR_MM + 4, 7, text.url, size=16)
    _pdf_line(pdf, 62 + QR_MM + 13, 6, f"{HEADLINE_EN} · {text.window}", size=12)
    _pdf_line(pdf, PAGE_H - 26, 6, FOOTER, size=12)
    if text.hours:
        _pdf_line(pdf, PAGE_H - 19, 6, f"评价时间 {text.hours}", size=11)
    _pdf_line(pdf, PAGE_H - 12, 6, text.campaign, size=10)


def _pdf_line(pdf: FPDF, y: float, h: float, value: str, *, size: float, bold: bool = False) -> None:
    pdf.set_font("NotoSansSC", "B" if bold else "", size)
    # Shrink a long name to fit the page rather than run off it.
    while pdf.get_string_width(value) > PAGE_W - 16 and size > 6:
        size -= 0.5
        pdf.set_font_size(size)
    pdf.set_xy(8, y)
    pdf.cell(PAGE_W - 16, h, value, align="C")


def _file_name(poster: PosterRow, fmt: str) -> str:
    return f"{poster.window}-{poster.code}.{fmt}"


def write_posters(
    spec: CampaignSpec, posters: list[PosterRow], directory: Path, fmt: str, public_url: str
) -> list[Path]:
    """One file per poster; returns the paths in order."""
    paths: list[Path] = []
    texts = [poster_text(spec, p, public_url) for p in posters]
    chars = pdf_characters(texts) if fmt == "pdf" else None
    for poster, text in zip(posters, texts, strict=True):
        path = directory / _file_name(poster, fmt)
        if fmt == "svg":
            path.write_bytes(render_svg(text))
        elif fmt == "png":
            path.write_bytes(render_png(text))
        else:
            path.write_bytes(render_pdf([text], chars))
        paths.append(path)
    return paths


def _spec(app: AppContext, campaign: str) -> CampaignSpec:
    store = app.store
    with store.reader.connect() as connection:
        loaded = load_campaign(store, connection, campaign)
    if loaded is None:
        raise CommandFailed(f"campaign {campaign!r} does not exist (collect campaign list)")
    return loaded.spec


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


@cli.group()
def qr() -> None:
    """Window QR: posters for service windows, their revocation, one-time rating tickets."""


@qr.command("posters")
@click.argument("campaign")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="svg", show_default=True)
@click.option("--staff", is_flag=True, help="Also one poster per staff member of each window's unit.")
@click.option("--hours", help="Service hours printed on new posters and checked on scans, e.g. 08:30-17:30.")
@click.option("--json", "as_json", is_flag=True, help="Print the posters as JSON.")
@pass_app
def qr_posters(
    app: AppContext, campaign: str, out_dir: Path, fmt: str, staff: bool, hours: str | None, as_json: bool
) -> None:
    """One printable poster per service window of CAMPAIGN (codes are kept: reprinting is safe)."""
    if not out_dir.is_dir():
        if out_dir.exists() or not out_dir.parent.is_dir():
            raise CommandFailed(f"{out_dir}: not a folder (its parent must exist)")
        out_dir.mkdir()
    try:
        parsed_hours = Hours.parse(hours) if hours else None
    except ValueError as exc:
        raise CommandFailed(f"--hours: {exc}") from exc
    spec = _spec(app, campaign)
    try:
        posters = ensure_posters(app.store, campaign, actor=actor_name(), staff=staff, hours=parsed_hours)
    except PosterError as exc:
        raise CommandFailed(str(exc)) from exc
    paths = write_posters(spec, posters, out_dir, fmt, app.settings.public_url)
    rows = [
        {
            "code": p.code,
            "unit": p.unit,
            "window": p.window,
            "staff": p.staff,
            "url": poster_url(app.settings.public_url, p.code),
            "file": str(path),
        }
        for p, path in zip(posters, paths, strict=True)
    ]
    if as_json:
        _json({"campaign": campaign, "format": fmt, "posters": rows})
        return
    table = Table("window", "unit", "staff", "code", "url", "file")
    for row in rows:
        table.add_row(row["window"], row["unit"], row["staff"] or "", row["code"], row["url"], row["file"])
    out.print(table)
    out.print(f"{len(rows)} poster(s) in {out_dir} ({fmt})")


@qr.command("revoke")
@click.argument("code")
@click.option("--reason", default="", help="Why (recorded in the audit log): torn, moved, tampered with …")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write the new poster here."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="svg", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def qr_revoke(app: AppContext, code: str, reason: str, out_dir: Path | None, fmt: str, as_json: bool) -> None:
    """Replace poster CODE: it stops working at once, and a new code is made for its window."""
    if out_dir is not None and not out_dir.is_dir():
        raise CommandFailed(f"{out_dir}: no such folder")
    try:
        old, new = revoke_poster(app.store, code.strip().lower(), actor=actor_name(), reason=reason)
    except PosterError as exc:
        raise CommandFailed(str(exc)) from exc
    url = poster_url(app.settings.public_url, new.code)
    path = None
    if out_dir is not None:
        path = write_posters(_spec(app, new.campaign), [new], out_dir, fmt, app.settings.public_url)[0]
    if as_json:
        _json({"revoked": old.code, "replaced_by": new.code, "window": new.window, "url": url, "file": path})
        return
    out.print(f"revoked {old.code} ({old.window}); new poster {new.code}: {url}")
    if path is not None:
        out.print(f"written to {path}")


def _duration(value: str) -> timedelta:
    text = value.strip().lower()
    units = {"m": 1, "h": 60, "d": 24 * 60}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "m")
    if not number.isdigit() or int(number) < 1:
        raise click.BadParameter(f"{value!r}: give minutes, or e.g. 30m, 2h, 1d")
    return timedelta(minutes=int(number) * units[unit])


@qr.command("ticket")
@click.argument("window")
@click.option(
    "--valid", "valid_text", default="2h", show_default=True, help="How long it can be used: 30m, 2h, 1d."
)
@click.option("--ref", help="Your reference for the transaction (queue number…): 1–32 of A-Z a-z 0-9 _ -.")
@click.option("--campaign", help="Check against this campaign (default: the one rating WINDOW now).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def qr_ticket(
    app: AppContext, window: str, valid_text: str, ref: str | None, campaign: str | None, as_json: bool
) -> None:
    """A signed one-time ticket URL for one service at WINDOW (COLLECT_PUBLIC_URL/t/<ticket>)."""
    valid = _duration(valid_text)
    limit = WindowConfig().max_ticket_valid
    if valid > limit:
        raise CommandFailed(f"--valid: at most {int(limit.total_seconds() // 3600)} hours")
    now = datetime.now(UTC)
    candidates = campaigns_with_window(app.store, window)
    if campaign is not None:
        candidates = [c for c in candidates if c.spec.code == campaign]
    chosen = choose_campaign(candidates, now)
    if chosen is None:
        where = f"campaign {campaign!r}" if campaign else "any campaign taking window ratings"
        raise CommandFailed(f"window {window!r} is not a window of {where}")
    try:
        ticket = sign_ticket(ticket_key(app.settings.secret()), window, now, valid, ref)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from exc
    url = f"{app.settings.public_url.rstrip('/')}/t/{ticket}"
    if as_json:
        _json(
            {
                "url": url,
                "ticket": ticket,
                "window": window,
                "campaign": chosen.spec.code,
                "expires_at": (now.replace(microsecond=0) + valid).isoformat(),
            }
        )
        return
    out.print(url)


@qr.command("ticket-key")
@pass_app
def qr_ticket_key(app: AppContext) -> None:
    """The key a queue system signs tickets with (hex; derived from COLLECT_SECRET_KEY: keep it secret)."""
    out.print(ticket_key(app.settings.secret()).hex())
