"""
The printed form: A4 PDF pages with the campaign's units × aspects grid, one tick box per level,
and (for numbered forms) a QR code plus the serial and signature in plain text on every page.

Chinese is set in Noto Sans SC (SIL OFL 1.1, installed from PyPI by `justmytype-intl-cjk`). The
font is a 17 MB variable font whose default instance is Thin: we cut it down to the characters
of the document and fix the weight (fontTools) before fpdf2 embeds it as a subset, which takes
about a second instead of a minute and leaves a PDF of tens of kilobytes per hundred forms.
"""

from __future__ import annotations

import io
import string
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import qrcode.constants
from fontTools import subset  # type: ignore[import-untyped]
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from fontTools.varLib import instancer  # type: ignore[import-untyped]
from fpdf import FPDF
from qrcode.main import QRCode

from collect.campaign import CampaignSpec
from collect.paper.serials import QrPayload

FONT_PACKAGE = "justmytype_intl_cjk"
FONT_FILE = "fonts/ofl/notosanssc/NotoSansSC[wght].ttf"
FAMILY = "NotoSansSC"

PAGE_W, PAGE_H = 210.0, 297.0  # A4, mm
MARGIN = 12.0
QR_SIZE = 26.0  # mm: 25 modules at ~1 mm each, readable from a 150 dpi scan
ROW_H = 6.6
BOX = 3.8  # the tick box itself
MIN_BOX_W = 8.0
MAX_BOX_W = 18.0
MIN_LABEL_W = 46.0
COMMENT_H = 28.0

TITLE = "满意度测评表"
NOTE_SERIALED = "本表编号唯一，复印、涂改编号无效。请在每行选一项，在方框内打“✓”。"
NOTE_UNSERIALED = "请在每行选一项，在方框内打“✓”。"
NUMBER = "编号"
SIGNATURE = "校验码"
CHANNEL = "发放渠道"
BATCH = "批次"
DATE = "填表日期：        年      月      日"
UNIT = "被评单位"
ASPECT = "测评内容"
COMMENT = "意见和建议："
PAGE = "第 {page} / {pages} 页"
FORM_NO = "No. {seq:06d}"
# Every fixed text above, so the font subset always covers them.
_FIXED = (
    "".join(
        [
            TITLE,
            NOTE_SERIALED,
            NOTE_UNSERIALED,
            NUMBER,
            SIGNATURE,
            CHANNEL,
            BATCH,
            DATE,
            UNIT,
            ASPECT,
            COMMENT,
        ]
    )
    + "第页/No.：—…✓·\\"
    + string.printable
)


class FormLayoutError(ValueError):
    """The campaign's scale does not fit on an A4 form (too many answer choices)."""


@dataclass(frozen=True, slots=True)
class Sheet:
    """One form to print: its number, and for numbered forms the serial and signature."""

    seq: int | None
    serial: str | None
    signature: str | None
    distribution: str
    batch: str


@dataclass(frozen=True, slots=True)
class _Row:
    label: str
    sublabel: str | None  # the aspect, in the one-row-per-unit-and-aspect layout


@dataclass(frozen=True, slots=True)
class Layout:
    """How the grid is drawn: `matrix` (a row per unit, aspects side by side) or `rows`."""

    kind: Literal["matrix", "rows"]
    choices: tuple[str, ...]  # printed box labels, in order: what the index keyed by a clerk means
    aspects: tuple[str, ...]
    label_w: float
    box_w: float
    rows: tuple[_Row, ...]
    rows_first_page: int
    rows_per_page: int

    @property
    def pages(self) -> int:
        rest = max(0, len(self.rows) - self.rows_first_page)
        return 1 + -(-rest // self.rows_per_page) if rest else 1


def choice_labels(spec: CampaignSpec) -> tuple[str, ...]:
    """The tick-box labels of the scale, in the order printed (and keyed by index: 1, 2, …)."""
    scale = spec.scale
    if scale.kind == "levels":
        labels = [level.zh for level in scale.levels]
    else:
        labels = [str(p) for p in range(scale.min_points, scale.max_points + 1)]
    if scale.dont_know:
        labels.append(scale.dont_know_zh)
    return tuple(labels)


def plan_layout(spec: CampaignSpec) -> Layout:
    """
    Fit the grid to the page: side by side aspects when the boxes stay at least 8 mm wide,
    otherwise one row per unit and aspect.

    Raises:
        FormLayoutError: even one row per unit and aspect does not fit the choices.
    """
    choices = choice_labels(spec)
    aspects = tuple(a.zh for a in spec.aspects)
    width = PAGE_W - 2 * MARGIN
    # Page 1 carries the title block, later pages a short header; both keep the footer clear.
    first = int((PAGE_H - MARGIN - 62.0 - 14.0) // ROW_H)
    later = int((PAGE_H - MARGIN - 40.0 - 14.0) // ROW_H)
    columns = len(aspects) * len(choices)
    box_w = (width - MIN_LABEL_W) / columns
    if box_w >= MIN_BOX_W and len(aspects) > 1:
        box_w = min(box_w, MAX_BOX_W)
        rows = tuple(_Row(u.name, None) for u in spec.units)
        return Layout("matrix", choices, aspects, width - box_w * columns, box_w, rows, first - 1, later - 1)
    box_w = min(MAX_BOX_W, (width - MIN_LABEL_W) / len(choices))
    if box_w < MIN_BOX_W:
        raise FormLayoutError(
            f"{len(choices)} answer choices do not fit an A4 row (at most "
            f"{int((width - MIN_LABEL_W) // MIN_BOX_W)})"
        )
    if len(aspects) == 1:
        rows = tuple(_Row(u.name, None) for u in spec.units)
    else:
        rows = tuple(_Row(u.name, a) for u in spec.units for a in aspects)
    return Layout("rows", choices, aspects, width - box_w * len(choices), box_w, rows, first, later)


def _font_source() -> Path:
    return Path(str(files(FONT_PACKAGE) / FONT_FILE))


@lru_cache(maxsize=16)
def _static_font(characters: frozenset[str], weight: int) -> bytes:
    """Noto Sans SC cut to `characters`, fixed at `weight`: a small static TrueType font."""
    # From bytes, not the path: a lazily read font keeps its file open in every copy fontTools makes.
    with TTFont(io.BytesIO(_font_source().read_bytes()), lazy=True) as font:
        return _cut(font, characters, weight)


def _cut(font: TTFont, characters: frozenset[str], weight: int) -> bytes:
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(characters)))
    subsetter.subset(font)
    static = instancer.instantiateVariableFont(font, {"wght": weight}, static=True)
    out = io.BytesIO()
    static.save(out)
    return out.getvalue()


def font_covers(text: str) -> set[str]:
    """The characters of `text` that Noto Sans SC has no glyph for (empty: it covers them all)."""
    with TTFont(io.BytesIO(_font_source().read_bytes()), lazy=True) as font:
        cmap = font.getBestCmap()
    return {c for c in text if not c.isspace() and ord(c) not in cmap}


def _document_text(spec: CampaignSpec, sheets: Sequence[Sheet], layout: Layout) -> str:
    parts: list[str] = [_FIXED, spec.name, *layout.choices, *layout.aspects]
    parts.extend(u.name for u in spec.units)
    parts.extend({f"{s.distribution}{s.batch}" for s in sheets})
    return "".join(parts)


class _Pdf(FPDF):
    """fpdf2 with our two weights of Noto Sans SC loaded from subset files."""

    def __init__(self, text: str, workdir: Path) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.set_auto_page_break(False)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        characters = frozenset(text)
        for style, weight in (("", 400), ("B", 700)):
            path = workdir / f"noto-sans-sc-{weight}.ttf"
            path.write_bytes(_static_font(characters, weight))
            self.add_font(FAMILY, style, str(path))
        self.set_font(FAMILY, "", 10)

    def fit_text(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        text: str,
        size: float,
        align: str = "L",
        least: float = 6.0,
    ) -> None:
        """One line in a box, the font shrunk (down to `least` pt) and then cut with … to fit."""
        self.set_font_size(size)
        while self.get_string_width(text) > w - 1.0 and size > least:
            size -= 0.5
            self.set_font_size(size)
        shown = text
        while self.get_string_width(shown) > w - 1.0 and len(shown) > 1:
            shown = shown[:-2] + "…"
        self.set_xy(x, y)
        self.cell(w, h, shown, align=align)


def render_forms(
    spec: CampaignSpec, sheets: Sequence[Sheet], out: Path | io.BufferedIOBase, *, printed_at: datetime
) -> int:
    """
    Write `sheets` as one PDF, each form on its own page(s).

    Returns:
        The number of pages written.
    """
    layout = plan_layout(spec)
    local = printed_at.astimezone(ZoneInfo(spec.timezone))
    with tempfile.TemporaryDirectory(prefix="collect-font-") as tmp:
        pdf = _Pdf(_document_text(spec, sheets, layout), Path(tmp))
        pdf.set_title(f"{spec.name} {TITLE}")
        pdf.set_creator("collect")
        pdf.set_creation_date(printed_at)
        for sheet in sheets:
            _draw_form(pdf, spec, sheet, layout, local)
        pages = pdf.page_no()
        if isinstance(out, Path):
            pdf.output(str(out))
        else:
            out.write(bytes(pdf.output()))
    return pages


def _draw_form(pdf: _Pdf, spec: CampaignSpec, sheet: Sheet, layout: Layout, local: datetime) -> None:
    remaining = list(layout.rows)
    for page in range(1, layout.pages + 1):
        pdf.add_page()
        top = _draw_header(pdf, spec, sheet, layout, page, local)
        capacity = layout.rows_first_page if page == 1 else layout.rows_per_page
        chunk, remaining = remaining[:capacity], remaining[capacity:]
        bottom = _draw_grid(pdf, layout, chunk, top)
        if page == layout.pages and bottom + COMMENT_H + 4 < PAGE_H - MARGIN - 12:
            pdf.set_font(FAMILY, "", 9)
            pdf.rect(MARGIN, bottom + 4, PAGE_W - 2 * MARGIN, COMMENT_H)
            pdf.fit_text(MARGIN + 1, bottom + 5, 60, 5, COMMENT, 9)
        _draw_footer(pdf, sheet, layout, page)


def _draw_header(
    pdf: _Pdf, spec: CampaignSpec, sheet: Sheet, layout: Layout, page: int, local: datetime
) -> float:
    text_w = PAGE_W - 2 * MARGIN - QR_SIZE - 8
    if sheet.serial is not None and sheet.signature is not None:
        payload = QrPayload(spec.code, sheet.serial, sheet.signature, page).text()
        _draw_qr(pdf, payload, PAGE_W - MARGIN - QR_SIZE, MARGIN)
        pdf.set_font(FAMILY, "B", 10)
        pdf.fit_text(
            PAGE_W - MARGIN - QR_SIZE - 6, MARGIN + QR_SIZE + 1, QR_SIZE + 6, 5, sheet.serial, 10, "C"
        )
        pdf.set_font(FAMILY, "", 8)
        pdf.fit_text(
            PAGE_W - MARGIN - QR_SIZE - 6,
            MARGIN + QR_SIZE + 6,
            QR_SIZE + 6,
            4,
            f"{SIGNATURE} {sheet.signature}",
            8,
            "C",
        )
    y = MARGIN
    if page == 1:
        pdf.set_font(FAMILY, "B", 15)
        pdf.fit_text(MARGIN, y, text_w, 9, spec.name, 15)
        pdf.set_font(FAMILY, "B", 13)
        pdf.fit_text(MARGIN, y + 9, text_w, 8, TITLE, 13)
        pdf.set_font(FAMILY, "", 9)
        number = f"{NUMBER} {sheet.serial}" if sheet.serial else ""
        if sheet.seq is not None:
            number = f"{FORM_NO.format(seq=sheet.seq)}   {number}"
        pdf.fit_text(MARGIN, y + 19, text_w, 5, number, 9)
        pdf.fit_text(
            MARGIN, y + 25, text_w, 5, f"{CHANNEL}：{sheet.distribution}   {BATCH}：{sheet.batch}", 9
        )
        pdf.fit_text(MARGIN, y + 31, text_w, 5, DATE, 9)
        note = NOTE_SERIALED if sheet.serial else NOTE_UNSERIALED
        pdf.fit_text(MARGIN, y + 40, PAGE_W - 2 * MARGIN, 5, note, 9)
        return MARGIN + 48.0
    pdf.set_font(FAMILY, "B", 11)
    pdf.fit_text(MARGIN, y, text_w, 7, f"{spec.name} {TITLE}", 11)
    pdf.set_font(FAMILY, "", 9)
    pdf.fit_text(MARGIN, y + 8, text_w, 5, f"{NUMBER} {sheet.serial or ''}", 9)
    return MARGIN + 34.0


def _draw_qr(pdf: _Pdf, payload: str, x: float, y: float) -> None:
    # Vector modules, not an image: crisp at any printer resolution, and no image library.
    # Level M survives a fold or a coffee ring; the page margin is its quiet zone.
    matrix = qr_matrix(payload)
    module = QR_SIZE / len(matrix)
    pdf.set_fill_color(0, 0, 0)
    for row_index, row in enumerate(matrix):
        run_start: int | None = None
        # Runs of dark modules as one rectangle each: fewer PDF operators, no hairline seams.
        for col_index, dark in enumerate([*row, False]):
            if dark and run_start is None:
                run_start = col_index
            elif not dark and run_start is not None:
                pdf.rect(
                    x + run_start * module,
                    y + row_index * module,
                    (col_index - run_start) * module,
                    module,
                    "F",
                )
                run_start = None


def qr_matrix(payload: str) -> list[list[bool]]:
    """The QR modules of `payload` (no quiet zone), error correction M."""
    # qrcode is untyped; its calls are typed here once.
    code: QRCode[Any] = QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(payload)  # type: ignore[no-untyped-call]
    code.make(fit=True)  # type: ignore[no-untyped-call]
    matrix: list[list[bool]] = code.get_matrix()  # type: ignore[no-untyped-call]
    return matrix


def _draw_grid(pdf: _Pdf, layout: Layout, rows: Iterable[_Row], top: float) -> float:
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)
    x0 = MARGIN
    y = top
    header_h = 12.0 if layout.kind == "matrix" else 7.0
    pdf.set_font(FAMILY, "B", 9)
    if layout.kind == "matrix":
        pdf.rect(x0, y, layout.label_w, header_h)
        pdf.fit_text(x0, y, layout.label_w, header_h, f"{UNIT} \\ {ASPECT}", 9, "C")
        span = layout.box_w * len(layout.choices)
        for i, aspect in enumerate(layout.aspects):
            ax = x0 + layout.label_w + i * span
            pdf.rect(ax, y, span, header_h / 2)
            pdf.fit_text(ax, y, span, header_h / 2, aspect, 8.5, "C")
            for j, choice in enumerate(layout.choices):
                pdf.rect(ax + j * layout.box_w, y + header_h / 2, layout.box_w, header_h / 2)
                pdf.fit_text(
                    ax + j * layout.box_w,
                    y + header_h / 2,
                    layout.box_w,
                    header_h / 2,
                    choice,
                    7,
                    "C",
                    least=4.5,
                )
    else:
        label = UNIT if layout.rows and layout.rows[0].sublabel is None else f"{UNIT} / {ASPECT}"
        pdf.rect(x0, y, layout.label_w, header_h)
        pdf.fit_text(x0, y, layout.label_w, header_h, label, 9, "C")
        for j, choice in enumerate(layout.choices):
            bx = x0 + layout.label_w + j * layout.box_w
            pdf.rect(bx, y, layout.box_w, header_h)
            pdf.fit_text(bx, y, layout.box_w, header_h, choice, 7.5, "C", least=4.5)
    y += header_h
    boxes = len(layout.choices) * (len(layout.aspects) if layout.kind == "matrix" else 1)
    pdf.set_font(FAMILY, "", 9)
    for row in rows:
        pdf.rect(x0, y, layout.label_w, ROW_H)
        text = row.label if row.sublabel is None else f"{row.label} · {row.sublabel}"
        pdf.fit_text(x0 + 0.5, y, layout.label_w - 0.5, ROW_H, text, 9)
        for k in range(boxes):
            bx = x0 + layout.label_w + k * layout.box_w
            pdf.rect(bx, y, layout.box_w, ROW_H)
            pdf.rect(bx + (layout.box_w - BOX) / 2, y + (ROW_H - BOX) / 2, BOX, BOX)
        y += ROW_H
    return y


def _draw_footer(pdf: _Pdf, sheet: Sheet, layout: Layout, page: int) -> None:
    pdf.set_font(FAMILY, "", 8)
    text = PAGE.format(page=page, pages=layout.pages)
    if sheet.serial:
        text = f"{sheet.serial} · {text}"
    pdf.fit_text(MARGIN, PAGE_H - MARGIN - 5, PAGE_W - 2 * MARGIN, 5, text, 8, "C")
