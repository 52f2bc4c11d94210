"""
XLSX output for Excel and WPS: one sheet per unit group, zh-CN headers, frozen header row,
number formats with the published decimals. Document properties carry a fixed date (the
result's `computed_at`), so the same inputs give the same file.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import xlsxwriter  # type: ignore[import-untyped]  # ships no type information

from aggregate.publish import flat_rows, labels, safe_text
from aggregate.result import ScoreResult

_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def _sheet_name(name: str, used: set[str]) -> str:
    """Excel sheet names: ≤ 31 characters, none of []:*?/\\, unique ignoring case."""
    base = _SHEET_BAD.sub("_", name).strip("'")[:31] or "Sheet"
    candidate, n = base, 2
    while candidate.lower() in used:
        suffix = f"~{n}"
        candidate, n = base[: 31 - len(suffix)] + suffix, n + 1
    used.add(candidate.lower())
    return candidate


def _created(result: ScoreResult) -> datetime:
    try:
        return (
            datetime.fromisoformat(result.computed_at.replace("Z", "+00:00"))
            .astimezone(UTC)
            .replace(tzinfo=None)
        )
    except ValueError:
        return datetime(2000, 1, 1)


def to_xlsx(result: ScoreResult, lang: str | None = None) -> bytes:
    """The workbook as bytes."""
    spec = result.spec
    lab = labels(spec, lang)
    headers, rows = flat_rows(result, lang)
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
    )
    workbook.set_properties(
        {"title": spec.name, "created": _created(result), "comments": result.inputs_sha256}
    )
    header_format = workbook.add_format(
        {"bold": True, "text_wrap": True, "valign": "top", "bg_color": "#DDEBF7", "border": 1}
    )
    score_format = workbook.add_format(
        {"num_format": "0." + "0" * spec.scoring.decimals if spec.scoring.decimals else "0"}
    )
    rate_format = workbook.add_format(
        {"num_format": "0." + "0" * spec.scoring.rate_decimals if spec.scoring.rate_decimals else "0"}
    )
    int_format = workbook.add_format({"num_format": "0"})
    language = "en" if (lang or spec.lang) == "en" else "zh-CN"
    group_names = {g.code: (g.en if language == "en" and g.en else g.zh) for g in spec.groups}
    score_columns = {lab["score"], lab["ci_lo"], lab["ci_hi"], lab["deductions"]}
    int_columns = {lab["rank"], lab["cast"], lab["valid"], lab["shortfall"]}
    used: set[str] = set()
    for group in sorted({row[0] for row in rows}):
        sheet = workbook.add_worksheet(_sheet_name(group_names.get(group, group), used))
        sheet.freeze_panes(1, 0)
        sheet.set_row(0, 36)
        for col, header in enumerate(headers):
            sheet.write_string(0, col, header, header_format)
            sheet.set_column(col, col, 16 if col == 3 else 11)
        for r, row in enumerate((row for row in rows if row[0] == group), start=1):
            for col, value in enumerate(row):
                _write(
                    sheet,
                    r,
                    col,
                    value,
                    headers[col],
                    score_columns,
                    int_columns,
                    score_format,
                    rate_format,
                    int_format,
                )
        sheet.autofilter(0, 0, max(1, sum(1 for row in rows if row[0] == group)), len(headers) - 1)
    workbook.close()
    return buffer.getvalue()


def _write(
    sheet: Any,
    r: int,
    col: int,
    value: object,
    header: str,
    score_columns: set[str],
    int_columns: set[str],
    score_format: Any,
    rate_format: Any,
    int_format: Any,
) -> None:
    if value is None:
        sheet.write_blank(r, col, None)
    elif isinstance(value, bool):
        sheet.write_boolean(r, col, value)
    elif isinstance(value, str):
        sheet.write_string(r, col, safe_text(value))
    elif isinstance(value, int):
        sheet.write_number(r, col, value, int_format)
    elif isinstance(value, float):
        fmt = score_format if header in score_columns or header.endswith(("得分", "Score")) else rate_format
        if header in int_columns:
            fmt = int_format
        sheet.write_number(r, col, value, fmt)
    else:
        sheet.write_string(r, col, str(value))
