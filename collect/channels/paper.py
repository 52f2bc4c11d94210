"""
Paper forms keyed in by clerks: one spreadsheet row (or one data-entry page save) per form.

Pure, like every adapter: rows in, `BallotSubmission`s (serial as typed, in `meta`) or
`Rejection`s out. Whether the serial was issued, reused or mistyped needs the ledger, so
`collect.paper.entry` decides that before anything reaches ingest(). Row numbers are 1-based, as
a spreadsheet shows them (the header is row 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.channels.base import REDACTED

# Column headers as clerks write them (Chinese or English) → field.
HEADERS: Mapping[str, str] = {
    "编号": "serial",
    "表格编号": "serial",
    "序列号": "serial",
    "serial": "serial",
    "校验码": "signature",
    "签名": "signature",
    "signature": "signature",
    "录入员": "clerk",
    "clerk": "clerk",
    "收件号": "form",
    "收件编号": "form",
    "form": "form",
    "填表日期": "answered_on",
    "日期": "answered_on",
    "answered_on": "answered_on",
    "参评层面": "tier",
    "tier": "tier",
    "名册编号": "roster_id",
    "roster_id": "roster_id",
    "意见和建议": "comment",
    "意见建议": "comment",
    "comment": "comment",
    "发放渠道": "distribution",
    "distribution": "distribution",
}
DONT_KNOW_WORDS = frozenset({"dont_know", "不了解", "不知道", "x"})
MAX_COMMENT = 2000


class PaperFileError(ValueError):
    """The file cannot be read as keyed paper forms (refused whole); names the column."""


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each field and each unit/aspect answer is in a row (0-based cell positions)."""

    fields: Mapping[str, int]
    answers: Mapping[int, tuple[str, str]]


@dataclass(frozen=True, slots=True)
class KeyedRows:
    """A keyed file (or one page save): header, rows, and what applies to every row."""

    campaign: str
    file_name: str
    header: Sequence[str | None]
    rows: Iterable[tuple[int, Sequence[str | None]]]
    received_at: datetime
    clerk: str | None = None  # for files without a clerk column
    distribution: str | None = None  # for unserialed forms without a distribution column


def _key(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def map_columns(header: Sequence[str | None], spec: CampaignSpec) -> Columns:
    """
    Name every column: a field of HEADERS, or an answer as `unit/aspect` (codes or Chinese
    names; just the unit when the campaign asks one aspect).

    Raises:
        PaperFileError: a column that is neither (a misspelt unit would lose its answers), a
            field given twice, or a unit/aspect given twice.
    """
    fields_by_key = {_key(k): v for k, v in HEADERS.items()}
    units = {_key(u.code): u.code for u in spec.units} | {_key(u.name): u.code for u in spec.units}
    aspects = {_key(a.code): a.code for a in spec.aspects} | {_key(a.zh): a.code for a in spec.aspects}
    fields: dict[str, int] = {}
    answers: dict[int, tuple[str, str]] = {}
    problems: list[str] = []
    for position, cell in enumerate(header):
        name = (cell or "").strip()
        column = f"column {position + 1} ({name!r})"
        if not name:
            continue
        key = _key(name)
        if key in fields_by_key:
            field = fields_by_key[key]
            if field in fields:
                problems.append(f"{column}: {field} is given twice")
            fields[field] = position
            continue
        unit_text, _, aspect_text = name.replace("／", "/").partition("/")
        unit = units.get(_key(unit_text))
        if aspect_text:
            aspect = aspects.get(_key(aspect_text))
        else:
            aspect = spec.aspects[0].code if len(spec.aspects) == 1 else None
        if unit is None or aspect is None:
            problems.append(
                f"{column}: not a known field, nor a unit/aspect of campaign {spec.code} "
                f"(e.g. {spec.units[0].code}/{spec.aspects[0].code})"
            )
            continue
        if (unit, aspect) in answers.values():
            problems.append(f"{column}: {unit}/{aspect} is given twice")
        answers[position] = (unit, aspect)
    if not answers:
        problems.append("no answer columns (unit/aspect)")
    if problems:
        raise PaperFileError("; ".join(problems))
    return Columns(fields, answers)


def parse_answer(spec: CampaignSpec, unit: str, aspect: str, text: str, field: str) -> Answer | Problem:
    """
    One keyed cell: a level code, its Chinese or English label, its box number as printed
    (1 = the first box), whole points, or don't know (不了解, X).
    """
    value = text.strip()
    scale = spec.scale
    if value.lower() in DONT_KNOW_WORDS or value == scale.dont_know_zh:
        if not scale.dont_know:
            return Problem(field, "dont_know_not_offered", 'this campaign does not offer "don\'t know"')
        return Answer(unit=unit, aspect=aspect, dont_know=True)
    if scale.kind == "levels":
        for index, level in enumerate(scale.levels, start=1):
            if value in (level.code, level.zh, level.en, str(index)):
                return Answer(unit=unit, aspect=aspect, level=level.code)
        return Problem(
            field,
            "unknown_level",
            f"{value!r} is not a level (1–{len(scale.levels)}, or {', '.join(scale.level_codes)})",
        )
    number = value[:-2] if value.endswith(".0") else value  # a spreadsheet's 7.0
    if number.isascii() and number.isdigit() and scale.min_points <= int(number) <= scale.max_points:
        return Answer(unit=unit, aspect=aspect, points=int(number))
    return Problem(
        field, "out_of_range", f"{value!r} is not a whole number {scale.min_points}–{scale.max_points}"
    )


_DATE = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")


def parse_date(text: str) -> date | None:
    """`2026-10-05`, `2026/10/5`, `2026年10月5日`, `20261005`, or a spreadsheet's `2026-10-05 00:00:00`."""
    value = text.strip()
    match = _DATE.match(value)
    try:
        if match:
            return date(int(match[1]), int(match[2]), int(match[3]))
        if len(value) == 8 and value.isdigit():
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None
    return None


def answered_at_for(spec: CampaignSpec, day: date) -> datetime:
    """
    A form carries a date, not a time: noon of that day in the campaign's zone, kept inside the
    campaign when the day is (a form dated on the opening day of a campaign that opens at 14:00
    counts).
    """
    zone = ZoneInfo(spec.timezone)
    noon = datetime.combine(day, time(12), tzinfo=zone).astimezone(UTC)
    opens, closes = spec.opens_at.astimezone(zone), spec.closes_at.astimezone(zone)
    if opens.date() <= day <= closes.date():
        return min(max(noon, spec.opens_at.astimezone(UTC)), spec.closes_at.astimezone(UTC))
    return noon


class PaperAdapter:
    """Keyed paper forms → submissions with the serial as typed (checked later against the ledger)."""

    channel: ClassVar[Channel] = "paper"
    personal_fields: ClassVar[frozenset[str]] = frozenset({"roster_id"})

    def parse(self, raw: KeyedRows, spec: CampaignSpec) -> Iterator[BallotSubmission | Rejection]:
        columns = map_columns(raw.header, spec)
        for number, cells in raw.rows:
            if not any((c or "").strip() for c in cells):
                continue  # blank rows between blocks of forms
            yield self.parse_row(raw, spec, columns, number, cells)

    def parse_row(
        self,
        raw: KeyedRows,
        spec: CampaignSpec,
        columns: Columns,
        number: int,
        cells: Sequence[str | None],
    ) -> BallotSubmission | Rejection:
        def cell(field: str) -> str:
            position = columns.fields.get(field)
            if position is None or position >= len(cells):
                return ""
            return (cells[position] or "").strip()

        problems: list[Problem] = []
        answers: list[Answer] = []
        for position, (unit, aspect) in columns.answers.items():
            text = (cells[position] or "").strip() if position < len(cells) else ""
            if not text:
                continue  # unanswered: ingest() decides whether partial forms are allowed
            parsed = parse_answer(spec, unit, aspect, text, f"{unit}/{aspect}")
            if isinstance(parsed, Problem):
                problems.append(
                    Problem(parsed.field, parsed.code, f"row {number}: {unit}/{aspect}: {parsed.detail}")
                )
            else:
                answers.append(parsed)
        clerk = cell("clerk") or (raw.clerk or "")
        if not clerk:
            problems.append(Problem("clerk", "clerk_missing", f"row {number}: no clerk id"))
        answered_on = cell("answered_on")
        answered_at = raw.received_at
        if answered_on:
            day = parse_date(answered_on)
            if day is None:
                problems.append(
                    Problem(
                        "answered_on",
                        "bad_date",
                        f"row {number}: {answered_on!r} is not a date like 2026-10-05",
                    )
                )
            else:
                answered_at = answered_at_for(spec, day)
        tier = cell("tier") or None
        if tier is not None and spec.tier(tier) is None:
            by_name = next((t.code for t in spec.tiers if t.zh == tier), None)
            if by_name is None:
                problems.append(
                    Problem("tier", "unknown_tier", f"row {number}: tier {tier!r} is not in {spec.code}")
                )
            tier = by_name
        comment = cell("comment") or None
        if comment is not None and len(comment) > MAX_COMMENT:
            problems.append(
                Problem("comment", "comment_too_long", f"row {number}: more than {MAX_COMMENT} characters")
            )
        form = cell("form")
        source_ref = f"form:{form}" if form else f"{raw.file_name}#row={number}"
        roster_id = cell("roster_id")
        kept = {
            "row": number,
            "serial": cell("serial"),
            "signature": cell("signature"),
            "form": form,
            "clerk": clerk,
            "answered_on": answered_on,
            "tier": tier or "",
            "roster_id": REDACTED if roster_id else "",
            "answers": {f"{a.unit}/{a.aspect}": _shown(a) for a in answers},
            "comment": comment or "",
        }
        meta: dict[str, Any] = {
            "row": number,
            "clerk": clerk,
            "serial_typed": cell("serial"),
            "signature_typed": cell("signature"),
            "form": form,
            "distribution": cell("distribution") or raw.distribution,
            "answered_on": answered_on,
        }
        if problems:
            return Rejection(
                campaign=raw.campaign,
                channel="paper",
                source_ref=source_ref,
                problems=tuple(problems),
                received_at=raw.received_at,
                raw=kept,
                meta=meta,
            )
        return BallotSubmission(
            campaign=raw.campaign,
            channel="paper",
            source_ref=source_ref,
            identity=Identity("roster_id", roster_id) if roster_id else None,
            answers=tuple(answers),
            answered_at=answered_at,
            received_at=raw.received_at,
            raw=kept,
            comment=comment,
            tier=tier,
            meta=meta,
        )


def _shown(answer: Answer) -> str:
    if answer.dont_know:
        return "dont_know"
    return answer.level if answer.level is not None else str(answer.points)
