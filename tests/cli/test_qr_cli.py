"""`collect qr posters|revoke|ticket|ticket-key`: the printed codes decode back to their URLs."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pypdfium2  # type: ignore[import-untyped]
import pytest
import zxingcpp
from PIL import Image

import collect.cli.qr  # noqa: F401  (registers `collect qr` until load_commands lists it)
from collect.channels.window import Ticket, ticket_key, verify_ticket
from collect.settings import Settings
from collect.store import Store
from tests.cli.helpers import invoke
from tests.conftest import TEST_SECRET, count

EXAMPLE = Path(__file__).resolve().parents[2] / "collect" / "examples" / "service-windows.toml"
PUBLIC = "https://c.example.cn"
PATH_MODULE = re.compile(r"M(\d+),(\d+)H(\d+)V(\d+)H\d+z")


def decode(pixels: np.ndarray) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(pixels)]


def svg_pixels(svg: str, scale: int = 8) -> np.ndarray:
    """Rasterise the poster's QR path (one square per module, as SvgPathImage writes it)."""
    match = re.search(r'<path d="([^"]+)"', svg)
    assert match is not None
    squares = [tuple(int(v) for v in m) for m in PATH_MODULE.findall(match.group(1))]
    assert squares
    size = max(x2 for _x, _y, x2, _y2 in squares) + 8  # 4 modules of quiet zone each side
    grid = np.full((size * scale, size * scale), 255, dtype=np.uint8)
    for x, y, x2, y2 in squares:
        grid[(y + 4) * scale : (y2 + 4) * scale, (x + 4) * scale : (x2 + 4) * scale] = 0
    return grid


@pytest.fixture
def loaded(sqlite_url: str) -> str:
    assert invoke(["campaign", "load", str(EXAMPLE)], url=sqlite_url).code == 0
    return sqlite_url


def test_posters_in_every_format_decode_to_their_url(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "posters"
    for fmt in ("svg", "png", "pdf"):
        result = invoke(
            ["qr", "posters", "windows-2026", "--out", str(out), "--format", fmt, "--json"], url=loaded
        )
        assert result.code == 0, result.stderr
        report = json.loads(result.stdout)
        assert len(report["posters"]) == 5  # one per window
        for poster in report["posters"]:
            assert poster["url"] == f"{PUBLIC}/w/{poster['code']}"
            assert poster["code"] not in (poster["unit"], poster["window"])
            data = Path(poster["file"]).read_bytes()
            if fmt == "svg":
                text = data.decode()
                assert decode(svg_pixels(text)) == [poster["url"]]
                assert poster["url"] in text  # the short URL in text under the code
                assert "社保1号窗口" in text or poster["window"] != "SB-01"
                assert "Noto Sans SC" in text
            elif fmt == "png":
                assert data[:8] == b"\x89PNG\r\n\x1a\n"
                assert decode(np.asarray(Image.open(io.BytesIO(data)).convert("L"))) == [poster["url"]]
            else:
                page = pypdfium2.PdfDocument(data)[0]
                assert abs(page.get_width() - 419.5) < 1  # A5: 148 mm in points
                image = page.render(scale=2).to_pil().convert("L")
                assert decode(np.asarray(image)) == [poster["url"]]
                assert "不动产登记服务区" in page.get_textpage().get_text_range() or poster["unit"] != "BDC"
    # Printing again keeps the codes: posters already on counters stay valid.
    again = invoke(["qr", "posters", "windows-2026", "--out", str(out), "--json"], url=loaded)
    assert [p["code"] for p in json.loads(again.stdout)["posters"]] == [p["code"] for p in report["posters"]]


def test_staff_posters(loaded: str, tmp_path: Path) -> None:
    result = invoke(
        ["qr", "posters", "windows-2026", "--out", str(tmp_path), "--staff", "--json"], url=loaded
    )
    staff = [p["staff"] for p in json.loads(result.stdout)["posters"] if p["staff"]]
    assert staff == ["王丽", "陈刚", "王丽", "陈刚"]  # the SB unit's two staff at each of its two windows


def test_revoke_replaces_a_poster(loaded: str, tmp_path: Path) -> None:
    posters = json.loads(
        invoke(["qr", "posters", "windows-2026", "--out", str(tmp_path), "--json"], url=loaded).stdout
    )
    code = posters["posters"][0]["code"]
    result = invoke(["qr", "revoke", code, "--reason", "torn", "--out", str(tmp_path), "--json"], url=loaded)
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["revoked"] == code
    assert answer["replaced_by"] != code
    assert answer["window"] == "SB-01"
    assert Path(answer["file"]).is_file()
    again = invoke(["qr", "revoke", code], url=loaded)
    assert again.code == 2
    assert "revoked already" in again.stderr
    assert invoke(["qr", "revoke", "nosuchcode"], url=loaded).code == 2
    store = Store(Settings(database_url=loaded, secret_key=TEST_SECRET))
    try:
        assert count(store, "SELECT count(*) FROM audit_log WHERE action = 'window.revoke'") == 1
        assert count(store, "SELECT count(*) FROM window_poster WHERE revoked_at IS NULL") == 5
    finally:
        store.dispose()


def test_ticket_makes_a_signed_one_time_url(loaded: str) -> None:
    result = invoke(["qr", "ticket", "SB-01", "--valid", "30m", "--ref", "A023", "--json"], url=loaded)
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["url"] == f"{PUBLIC}/t/{answer['ticket']}"
    assert answer["campaign"] == "windows-2026"
    ticket = verify_ticket(
        ticket_key(TEST_SECRET.encode()), answer["ticket"], datetime.now(UTC), timedelta(hours=24)
    )
    assert isinstance(ticket, Ticket)
    assert (ticket.window, ticket.ref, ticket.valid) == ("SB-01", "A023", timedelta(minutes=30))
    plain = invoke(["qr", "ticket", "SB-01"], url=loaded)
    assert plain.stdout.strip().startswith(f"{PUBLIC}/t/SB-01~")


@pytest.mark.parametrize(
    "args",
    [
        ["qr", "ticket", "NO-SUCH"],
        ["qr", "ticket", "SB-01", "--valid", "3d"],
        ["qr", "ticket", "SB-01", "--valid", "soon"],
        ["qr", "ticket", "SB-01", "--ref", "has space"],
        ["qr", "ticket", "SB-01", "--campaign", "other"],
        ["qr", "posters", "nope", "--out", "."],
    ],
)
def test_bad_usage_exits_2(loaded: str, args: list[str]) -> None:
    result = invoke(args, url=loaded)
    assert result.code == 2
    assert result.stderr.strip()


def test_ticket_key_is_derived_not_the_secret(loaded: str) -> None:
    result = invoke(["qr", "ticket-key"], url=loaded)
    assert result.code == 0
    assert result.stdout.strip() == ticket_key(TEST_SECRET.encode()).hex()
    assert TEST_SECRET not in result.stdout
