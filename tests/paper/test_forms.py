"""
The printed PDF: Chinese is set in an embedded Noto Sans SC subset and renders as glyphs, not
tofu, in pdfium and (where installed: CI installs poppler-utils) poppler's pdftoppm.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pypdfium2  # type: ignore[import-untyped]
import pytest
import zxingcpp
from PIL import Image, ImageChops

from collect.campaign import load_campaign_file
from collect.paper.forms import (
    TITLE,
    FormLayoutError,
    Sheet,
    choice_labels,
    font_covers,
    plan_layout,
    render_forms,
)
from collect.paper.serials import QrPayload, new_serial, sign
from tests.conftest import EXAMPLES
from tests.paper.helpers import spec

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)


def _sheets(code: str, n: int) -> list[Sheet]:
    serials = [new_serial() for _ in range(n)]
    return [Sheet(i + 1, s, sign(b"k", code, s), "单位", "B1") for i, s in enumerate(serials)]


def _glyph_crops(pdf: Path, text: str, scale: float) -> list[Image.Image]:
    """Each character of `text` (first occurrence on page 1) as rendered by pdfium."""
    document = pypdfium2.PdfDocument(str(pdf))
    page = document[0]
    textpage = page.get_textpage()
    found = textpage.get_text_range()
    start = found.index(text)
    image = page.render(scale=scale).to_pil().convert("L")
    height = page.get_height()
    crops = []
    for i in range(len(text)):
        left, bottom, right, top = textpage.get_charbox(start + i)
        box = (
            int(left * scale),
            int((height - top) * scale),
            int(right * scale) + 1,
            int((height - bottom) * scale) + 1,
        )
        crops.append(image.crop(box))
    document.close()
    return crops


def _ink(image: Image.Image) -> int:
    """Dark pixels of a greyscale image."""
    return sum(image.convert("L").histogram()[:128])


def test_every_character_of_the_example_forms_is_in_the_font() -> None:
    for name in ("city-campaign", "branch-office", "department-survey"):
        campaign = load_campaign_file(str(EXAMPLES / f"{name}.toml"))
        text = (
            campaign.name + "".join(u.name for u in campaign.units) + "".join(a.zh for a in campaign.aspects)
        )
        assert font_covers(text + "".join(choice_labels(campaign)) + TITLE) == set()
    assert font_covers("满意\U0001f600") == {"\U0001f600"}  # the check can fail


def test_chinese_renders_as_distinct_glyphs_not_tofu(tmp_path: Path) -> None:
    campaign = spec()
    pdf = tmp_path / "forms.pdf"
    assert render_forms(campaign, _sheets(campaign.code, 2), pdf, printed_at=NOW) == 2
    data = pdf.read_bytes()
    # One embedded subset of our font (the "ABCDEF+" prefix marks a subset), no other font.
    fonts = set(re.findall(rb"/BaseFont\s*/([A-Z]{6}\+[A-Za-z0-9-]+)", data))
    assert fonts
    assert all(b"NotoSansSC" in f for f in fonts)
    assert b"/FontFile2" in data
    crops = _glyph_crops(pdf, TITLE, scale=4)
    assert all(_ink(c) > 20 for c in crops)
    # Tofu draws every missing character as the same box: six different characters must differ.
    for i, a in enumerate(crops):
        for b in crops[i + 1 :]:
            same = a.resize((40, 40)).point(lambda p: 255 if p > 128 else 0)
            other = b.resize((40, 40)).point(lambda p: 255 if p > 128 else 0)
            assert ImageChops.difference(same, other).getbbox() is not None
    # The QR code on the rendered page carries the printed serial.
    document = pypdfium2.PdfDocument(str(pdf))
    codes = zxingcpp.read_barcodes(document[1].render(scale=2).to_pil())
    document.close()
    payload = QrPayload.parse(codes[0].text)
    assert payload is not None
    assert payload.page == 1
    assert payload.campaign == campaign.code


def test_pdftoppm_renders_the_same_glyphs(tmp_path: Path) -> None:
    """A second, independent renderer agrees: poppler sees glyphs where pdfium does."""
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("pdftoppm is missing: CI must `apt-get install -y poppler-utils`")
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    campaign = spec()
    pdf = tmp_path / "forms.pdf"
    render_forms(campaign, _sheets(campaign.code, 1), pdf, printed_at=NOW)
    subprocess.run(
        ["pdftoppm", "-r", "288", "-gray", "-png", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")],
        check=True,
        timeout=60,
    )
    (png,) = tmp_path.glob("p*.png")
    poppler = Image.open(png).convert("L")
    for crop_pdfium, box in zip(_glyph_crops(pdf, TITLE, scale=4), _boxes(pdf, TITLE, 4), strict=True):
        crop = poppler.crop(box)
        assert _ink(crop) > 20
        # The same glyph at the same place: the two renderings agree on most ink pixels.
        a = crop_pdfium.point(lambda p: 255 if p > 128 else 0).convert("1")
        b = crop.resize(crop_pdfium.size).point(lambda p: 255 if p > 128 else 0).convert("1")
        differing = _ink(ImageChops.invert(ImageChops.logical_xor(a, b).convert("L")))
        assert differing < 0.25 * a.size[0] * a.size[1]


def _boxes(pdf: Path, text: str, scale: float) -> list[tuple[int, int, int, int]]:
    document = pypdfium2.PdfDocument(str(pdf))
    page = document[0]
    textpage = page.get_textpage()
    start = textpage.get_text_range().index(text)
    height = page.get_height()
    boxes = []
    for i in range(len(text)):
        left, bottom, right, top = textpage.get_charbox(start + i)
        boxes.append(
            (
                int(left * scale),
                int((height - top) * scale),
                int(right * scale) + 1,
                int((height - bottom) * scale) + 1,
            )
        )
    document.close()
    return boxes


def test_layouts_fit_the_example_campaigns_and_refuse_a_too_wide_scale() -> None:
    city = plan_layout(load_campaign_file(str(EXAMPLES / "city-campaign.toml")))
    assert city.kind == "matrix"
    assert city.pages == 2  # 36 units
    survey = plan_layout(load_campaign_file(str(EXAMPLES / "department-survey.toml")))
    assert survey.kind == "rows"
    assert survey.choices[-1] == "不了解"
    wide = spec().model_copy(
        update={
            "scale": spec().scale.model_copy(
                update={"kind": "points", "levels": (), "min_points": 0, "max_points": 40}
            )
        }
    )
    with pytest.raises(FormLayoutError):
        plan_layout(wide)
