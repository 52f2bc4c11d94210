"""
A generator of call-centre exports as operators receive them: every encoding, CSV/XLSX, a title
row above the header, merged unit cells, blank rows, a totals row, and IVR long layouts.
Files are written into a test's tmp_path; nothing large is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import xlsxwriter  # type: ignore[import-untyped]

from collect.channels.calls_files import load, sniff

HEADER = ("呼叫编号", "手机号码", "呼叫时间", "通话结果", "测评单位", "总体评价")
TITLE = "2026年第三季度满意度电话抽样调查结果"

PROFILE = """\
vendor = "acme"
fill_down = ["unit"]

[columns]
call_id = "呼叫编号"
phone = "手机号码"
called_at = "呼叫时间"
outcome = "通话结果"
unit = "测评单位"

[[answers]]
column = "总体评价"
aspect = "overall"

[units]
"城东所" = "S01"
"""

LONG_PROFILE = """\
vendor = "ivr"
layout = "long"

[columns]
call_id = "通话ID"
phone = "被叫号码"
called_at = "按键时间"
unit = "测评单位"
question = "题号"
answer = "按键"

[[answers]]
question = "Q1"
aspect = "overall"
unit = "S01"

[[answers]]
question = "Q2"
aspect = "overall"
unit = "S02"
"""


@dataclass(frozen=True)
class Call:
    call_id: str
    phone: str
    called_at: str
    outcome: str
    unit: str
    answer: str

    def cells(self) -> list[str]:
        return [self.call_id, self.phone, self.called_at, self.outcome, self.unit, self.answer]


def calls(n: int, *, start: int = 0, minute: int = 0) -> list[Call]:
    """`n` completed calls from distinct (valid) numbers, spread over the units, answers 1–5."""
    units = ["城东工商所", "城西工商所", "城南工商所", "城北工商所", "注册登记科"]
    return [
        Call(
            f"C{i:05d}",
            f"139{i:08d}",
            f"2026-09-01 {10 + (minute + i) // 60 % 10:02d}:{(minute + i) % 60:02d}:00",
            "成功",
            units[i % len(units)],
            str(i % 5 + 1),
        )
        for i in range(start, start + n)
    ]


def csv_text(
    rows: Sequence[Call] | Sequence[Sequence[str]],
    *,
    title: bool = True,
    blank_every: int = 0,
    totals: bool = True,
    header: Sequence[str] = HEADER,
) -> str:
    lines = []
    if title:
        lines.append(TITLE + "," * (len(header) - 1))
    lines.append(",".join(header))
    for i, row in enumerate(rows):
        cells = row.cells() if isinstance(row, Call) else [str(c) for c in cast(Sequence[str], row)]
        lines.append(",".join(cells))
        if blank_every and i % blank_every == blank_every - 1:
            lines.append("," * (len(header) - 1))
    if totals:
        lines.append("合计,,,,," + str(len(rows)))
    return "\r\n".join(lines) + "\r\n"


def write_csv(
    path: Path,
    rows: Sequence[Call] | Sequence[Sequence[str]],
    encoding: str = "gbk",
    *,
    title: bool = True,
    blank_every: int = 0,
    totals: bool = True,
    header: Sequence[str] = HEADER,
) -> Path:
    """`encoding`: utf-8, utf-8-sig (with BOM), gbk (no BOM), gb18030."""
    text = csv_text(rows, title=title, blank_every=blank_every, totals=totals, header=header)
    path.write_bytes(text.encode(encoding))
    return path


def write_xlsx(path: Path, rows: Sequence[Call], *, merge_units: bool = True, numbers: bool = True) -> Path:
    """A title merged over the header, units merged down runs of equal units, phones as numbers, totals."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("结果")
    sheet.merge_range(0, 0, 0, len(HEADER) - 1, TITLE)
    sheet.write_row(2, 0, HEADER)  # row 2 (Excel's row 3): a blank row between title and header
    r = 3
    i = 0
    ordered = sorted(rows, key=lambda c: c.unit) if merge_units else list(rows)
    while i < len(ordered):
        run = 1
        while merge_units and i + run < len(ordered) and ordered[i + run].unit == ordered[i].unit:
            run += 1
        for k in range(run):
            call = ordered[i + k]
            sheet.write(r + k, 0, call.call_id)
            if numbers and call.phone.isdigit():
                sheet.write_number(r + k, 1, int(call.phone))
            else:
                sheet.write(r + k, 1, call.phone)
            sheet.write(r + k, 2, call.called_at)
            sheet.write(r + k, 3, call.outcome)
            if numbers and call.answer.isdigit():
                sheet.write_number(r + k, 5, int(call.answer))
            else:
                sheet.write(r + k, 5, call.answer)
        if run > 1:
            sheet.merge_range(r, 4, r + run - 1, 4, ordered[i].unit)
        else:
            sheet.write(r, 4, ordered[i].unit)
        r += run
        i += run
    r += 1  # a blank row before the totals
    sheet.write(r, 0, "合计")
    sheet.write_number(r, 5, len(rows))
    book.close()
    return path


def long_rows(
    call_id: str, phone: str, presses: Sequence[tuple[str, str]], *, minute: int = 0
) -> list[list[str]]:
    """One IVR call as event rows: (question, key) in order, a second apart."""
    return [
        [call_id, phone, f"2026-09-02 09:{minute:02d}:{k:02d}", "", question, key]
        for k, (question, key) in enumerate(presses)
    ]


LONG_HEADER = ("通话ID", "被叫号码", "按键时间", "测评单位", "题号", "按键")


# The reader on its own: what it makes of each kind of file.


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gbk", "gb18030"), ("gb18030", "gb18030")],
)
def test_each_encoding_is_detected_and_decoded_once(tmp_path: Path, encoding: str, detected: str) -> None:
    path = write_csv(tmp_path / "c.csv", calls(3), encoding)
    sniffed = sniff(path)
    assert (sniffed.kind, sniffed.encoding) == ("csv", detected)
    table = load(sniffed, header_row=2)
    try:
        rows = list(table.rows())
        assert table.header[0] == "呼叫编号"
        assert [r[0] for r in rows] == [3, 4, 5, 6]  # line numbers as an editor shows them
        assert rows[0][1][4] == "城东工商所"
        assert rows[-1][1][0] == "合计"
        assert len(table.sha256) == 64
    finally:
        table.close()


def test_tabs_quoted_newlines_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text('a\tb\tc\n1\t"two\nlines"\t3\n4\t5\n6\t7\t8\t9\n', encoding="utf-8")
    table = load(sniff(path), header_row=1)
    try:
        assert list(table.rows()) == [
            (2, ["1", "two\nlines", "3"]),
            (4, ["4", "5", None]),
            (5, ["6", "7", "8"]),
        ]
        assert table.repeated(0) == frozenset()
    finally:
        table.close()


def test_xlsx_rows_keep_their_sheet_numbers(tmp_path: Path) -> None:
    sniffed = sniff(write_xlsx(tmp_path / "c.xlsx", calls(2), merge_units=False))
    assert sniffed.kind == "xlsx"
    assert sniffed.head[1][0] == 3  # the header, under the title and a blank row
    table = load(sniffed, header_row=3)
    rows = list(table.rows())
    assert rows[0] == (4, ["C00000", "13900000000", "2026-09-01 10:00:00", "成功", "城东工商所", "1"])
    assert rows[-1][1][0] == "合计"
