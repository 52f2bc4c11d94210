"""
Call-centre, phone-survey and IVR exports: rows of text → phone ballots, by a vendor profile.

Pure: no database, no settings, no clock. Row numbers are 1-based, as Excel shows them, and live
in `meta` (never in a problem's detail or in `raw`), so the same call in an overlapping later
export hashes to the same content and adds nothing twice. See docs/imports.md.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phonenumbers import PhoneMetadata
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import DONT_KNOW, CampaignSpec, Channel
from collect.channels.base import REDACTED
from collect.phones import normalise_phone

Item = BallotSubmission | Rejection
Cells = Sequence[str | None]

# How a vendor says the call went, by category; only "completed" (and "partial" with answers,
# when the campaign allows partial ballots) can count. Matched after normalisation (see _norm).
DEFAULT_OUTCOMES: dict[str, tuple[str, ...]] = {
    "completed": (
        "成功",
        "完成",
        "已完成",
        "成功访问",
        "完成访问",
        "访问成功",
        "接通",
        "completed",
        "complete",
        "success",
        "answered",
        "ok",
    ),
    "partial": (
        "中途挂断",
        "挂断",
        "中断",
        "中途中断",
        "部分完成",
        "hung_up",
        "hangup",
        "partial",
        "abandoned",
    ),
    "refused": ("拒访", "拒绝", "拒绝访问", "refused", "refusal"),
    "no_answer": (
        "无人接听",
        "未接通",
        "未接",
        "无应答",
        "占线",
        "关机",
        "忙",
        "no_answer",
        "busy",
        "noanswer",
    ),
    "invalid_number": ("空号", "号码错误", "停机", "错号", "无效号码", "invalid_number", "invalid"),
}
OUTCOME_CATEGORIES = tuple(DEFAULT_OUTCOMES)

DEFAULT_TIME_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日%H时%M分",
    "%Y%m%d%H%M%S",
    "%Y%m%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
)

DONT_KNOW_WORDS = ("不了解", "不知道", "不清楚", "说不清", "不好说", "dont_know", "don't know", "unknown")
TOTALS_MARKERS = ("合计", "总计", "小计", "共计", "汇总", "total", "sum")

# Header names as vendors write them → profile field (for proposing a profile).
HEADER_HINTS: dict[str, tuple[str, ...]] = {
    "call_id": (
        "呼叫编号",
        "通话编号",
        "通话id",
        "呼叫id",
        "callid",
        "call_id",
        "记录编号",
        "流水号",
        "样本编号",
        "录音编号",
        "会话id",
        "sessionid",
    ),
    "phone": (
        "手机号码",
        "手机号",
        "电话号码",
        "被访号码",
        "被叫号码",
        "受访号码",
        "联系电话",
        "号码",
        "电话",
        "手机",
        "phone",
        "mobile",
        "callee",
        "主叫号码",
    ),
    "called_at": (
        "呼叫时间",
        "通话时间",
        "拨打时间",
        "调查时间",
        "访问时间",
        "开始时间",
        "通话开始时间",
        "按键时间",
        "时间",
        "calltime",
        "call_time",
        "timestamp",
        "time",
        "called_at",
        "日期时间",
    ),
    "outcome": (
        "通话结果",
        "呼叫结果",
        "访问结果",
        "访问状态",
        "通话状态",
        "呼叫状态",
        "结果",
        "状态",
        "outcome",
        "status",
        "result",
    ),
    "unit": (
        "测评单位",
        "被评单位",
        "被评价单位",
        "评价单位",
        "单位名称",
        "单位",
        "评价对象",
        "部门",
        "unit",
    ),
    "question": ("题号", "问题编号", "题目编号", "问题", "题目", "question", "question_id", "questionid"),
    "answer": ("按键", "按键值", "答案", "回答", "选项", "digit", "answer", "key", "dtmf"),
}
SINGLE_ANSWER_HINTS = ("满意度", "总体评价", "评价", "总体满意度", "满意程度", "评价结果", "rating", "answer")


# Compiled once: these run for every cell of every row, and re's own cache lookup costs more
# than the match (measured on a 20 k-row export).
_SPACES = re.compile(r"\s+")
_WHOLE_FLOAT = re.compile(r"-?\d+\.0+")
_EXCEL_SERIAL = re.compile(r"\d{5}(\.\d+)?")


def _norm(text: str) -> str:
    """
    The comparable form of a header, unit name or code: NFKC (full-width digits, letters and
    parentheses become ASCII), no whitespace at all, case-folded.
    """
    return _SPACES.sub("", unicodedata.normalize("NFKC", text)).casefold()


def _mobile_fast_path() -> Callable[[str], str | None]:
    """
    Most numbers in a call export are 11-digit mainland mobiles; phonenumbers spends ~300 µs on
    each. For those, decide with phonenumbers' own CN metadata (so it ages with the library):
    a number that fits the mobile pattern, and that no national prefix rule would rewrite, is
    valid, and its E.164 form is +86 and the digits. Everything else goes to normalise_phone.
    """
    metadata = PhoneMetadata.metadata_for_region("CN")
    mobile = metadata.mobile.national_number_pattern if metadata and metadata.mobile else None
    prefix = metadata.national_prefix_for_parsing if metadata else None
    if mobile is None or prefix is None:
        return normalise_phone
    mobile_re = re.compile(mobile)
    prefix_re = re.compile(prefix)
    digits = re.compile(r"1[0-9]{10}")

    def normalise(text: str) -> str | None:
        if digits.fullmatch(text) and mobile_re.fullmatch(text) and not prefix_re.match(text):
            return "+86" + text
        return normalise_phone(text)

    return normalise


_normalise_phone = _mobile_fast_path()


def _cell(value: str | None) -> str:
    """A cell as text: NFKC, stripped; Excel's `1.0` for a whole number becomes `1`."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if _WHOLE_FLOAT.fullmatch(text):
        text = text.split(".", 1)[0]
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Model):
    """Which header is which field. `called_at` may name two columns (date, time), joined by a space."""

    call_id: str | None = None
    phone: str
    called_at: str | tuple[str, ...]
    outcome: str | None = None
    unit: str | None = None
    question: str | None = None  # long layout: the question id of each event row
    answer: str | None = None  # long layout: the key pressed / answer given

    def time_columns(self) -> tuple[str, ...]:
        return (self.called_at,) if isinstance(self.called_at, str) else tuple(self.called_at)


class AnswerColumn(_Model):
    """
    One answer: `column` (wide layout: a header) or `question` (long layout: a question id),
    for `aspect` of `unit` (a fixed unit code; default: the row's unit column).
    """

    column: str | None = None
    question: str | None = None
    aspect: str = "overall"
    unit: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AnswerColumn:
        if (self.column is None) == (self.question is None):
            raise ValueError("give exactly one of column (wide layout) or question (long layout)")
        return self

    @property
    def key(self) -> str:
        return self.column if self.column is not None else str(self.question)


class CallProfile(_Model):
    """A vendor's export, described once and reused (TOML; docs/imports.md)."""

    vendor: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    layout: Literal["wide", "long"] = "wide"
    timezone: str | None = None  # of call times without an offset; default: the campaign's
    tier: str | None = None  # the open tier for numbers off every roster, when there are several
    columns: Columns
    answers: tuple[AnswerColumn, ...] = Field(min_length=1)
    time_formats: tuple[str, ...] = DEFAULT_TIME_FORMATS
    outcomes: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # extra texts per category
    codes: dict[str, str] = Field(default_factory=dict)  # answer text → level code, points or dont_know
    units: dict[str, str] = Field(default_factory=dict)  # unit name as exported → unit code
    fill_down: tuple[str, ...] = ()  # fields of merged cells (spreadsheets): empty → the row above
    personal_columns: tuple[str, ...] = ()  # redacted from raw besides the phone (names, addresses)
    totals_markers: tuple[str, ...] = TOTALS_MARKERS

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("outcomes")
    @classmethod
    def _categories(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(OUTCOME_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown outcome categories {unknown}; use {list(OUTCOME_CATEGORIES)}")
        return value

    @field_validator("fill_down")
    @classmethod
    def _fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - {"call_id", "phone", "called_at", "outcome", "unit"})
        if unknown:
            raise ValueError(f"fill_down names unknown fields {unknown}")
        return value

    @model_validator(mode="after")
    def _layout(self) -> CallProfile:
        if self.layout == "long":
            if self.columns.question is None or self.columns.answer is None or self.columns.call_id is None:
                raise ValueError("a long layout needs columns.call_id, columns.question and columns.answer")
            if any(a.question is None for a in self.answers):
                raise ValueError("in a long layout every answer names its question id")
        elif any(a.column is None for a in self.answers):
            raise ValueError("in a wide layout every answer names its column")
        return self

    def required_headers(self) -> tuple[str, ...]:
        c = self.columns
        names = [c.call_id, c.phone, *c.time_columns(), c.outcome, c.unit, c.question, c.answer]
        if self.layout == "wide":
            names += [a.column for a in self.answers]
        return tuple(dict.fromkeys(n for n in names if n))


class ProfileError(ValueError):
    """A profile that cannot be read or does not fit the campaign; every problem listed."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{source}: profile refused:\n" + "\n".join(f"  {p}" for p in problems))


def load_profile_text(text: str, source: str = "<profile>") -> CallProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(source, [str(exc)]) from exc
    try:
        return CallProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(
            source,
            [
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ],
        ) from exc


def profile_problems(profile: CallProfile, spec: CampaignSpec) -> list[str]:
    """Where the profile names what the campaign lacks (aspects, units, levels, tiers)."""
    problems: list[str] = []
    for i, answer in enumerate(profile.answers):
        if spec.aspect(answer.aspect) is None:
            problems.append(f"answers[{i}].aspect: {answer.aspect!r} is not an aspect of {spec.code}")
        if answer.unit is not None and spec.unit(answer.unit) is None:
            problems.append(f"answers[{i}].unit: {answer.unit!r} is not a unit of {spec.code}")
    if profile.columns.unit is None and any(a.unit is None for a in profile.answers):
        problems.append("columns.unit: no unit column, so every answer needs its own unit")
    for alias, code in profile.units.items():
        if spec.unit(code) is None:
            problems.append(f"units.{alias}: {code!r} is not a unit of {spec.code}")
    for text, value in profile.codes.items():
        if _code_value(spec, value) is None:
            problems.append(
                f"codes.{text}: {value!r} is not a level, points value or dont_know of {spec.code}"
            )
    if profile.tier is not None:
        tier = spec.tier(profile.tier)
        if tier is None or tier.source != "open":
            problems.append(f"tier: {profile.tier!r} is not an open tier of {spec.code}")
    return problems


def profile_to_toml(profile: CallProfile, *, comment: str = "") -> str:
    """The profile as TOML an operator can read and edit (defaults left out, codes and units kept)."""

    def s(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def arr(values: Iterable[str]) -> str:
        return "[" + ", ".join(s(v) for v in values) + "]"

    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines += [f"vendor = {s(profile.vendor)}", f"layout = {s(profile.layout)}"]
    if profile.timezone:
        lines.append(f"timezone = {s(profile.timezone)}")
    if profile.tier:
        lines.append(f"tier = {s(profile.tier)}")
    if profile.fill_down:
        lines.append(f"fill_down = {arr(profile.fill_down)}  # merged cells: empty → the row above")
    if profile.personal_columns:
        lines.append(f"personal_columns = {arr(profile.personal_columns)}")
    if profile.time_formats != DEFAULT_TIME_FORMATS:
        lines.append(f"time_formats = {arr(profile.time_formats)}")
    lines += ["", "[columns]"]
    for name in ("call_id", "phone", "called_at", "outcome", "unit", "question", "answer"):
        value = getattr(profile.columns, name)
        if value is not None:
            lines.append(f"{name} = {s(value) if isinstance(value, str) else arr(value)}")
    for answer in profile.answers:
        lines += ["", "[[answers]]"]
        if answer.column is not None:
            lines.append(f"column = {s(answer.column)}")
        if answer.question is not None:
            lines.append(f"question = {s(answer.question)}")
        lines.append(f"aspect = {s(answer.aspect)}")
        if answer.unit is not None:
            lines.append(f"unit = {s(answer.unit)}")
    if profile.outcomes:
        lines += ["", "[outcomes]"]
        lines += [f"{k} = {arr(v)}" for k, v in profile.outcomes.items()]
    lines += ["", "[codes]  # answer as exported → level code, points or dont_know"]
    lines += [f"{s(k)} = {s(v)}" for k, v in profile.codes.items()]
    lines += ["", "[units]  # unit name as exported → unit code"]
    lines += [f"{s(k)} = {s(v)}" for k, v in profile.units.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Headers: finding the header row under a title, and proposing a profile from it


def _header_index(cells: Cells) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, cell in enumerate(cells):
        name = _norm(_cell(cell))
        if name and name not in index:
            index[name] = i
    return index


def header_position(header: Cells, name: str) -> int | None:
    """Where a header named `name` (compared as `_norm` does) stands in the header row."""
    return _header_index(header).get(_norm(name))


def locate_header(head: Sequence[Cells], profile: CallProfile) -> int | None:
    """The index in `head` of the first row holding every header the profile names; None if none does."""
    wanted = {_norm(h) for h in profile.required_headers()}
    for i, cells in enumerate(head):
        if wanted <= set(_header_index(cells)):
            return i
    return None


def missing_headers(head: Sequence[Cells], profile: CallProfile) -> list[str]:
    """The profile's headers absent from the row of `head` that matches most of them (for messages)."""
    wanted = {_norm(h): h for h in profile.required_headers()}
    best = max(
        (set(_header_index(cells)) for cells in head),
        key=lambda found: len(found & set(wanted)),
        default=set(),
    )
    return [name for key, name in wanted.items() if key not in best]


def _hint(name: str, field_name: str) -> bool:
    return name in {_norm(h) for h in HEADER_HINTS[field_name]}


def propose_profile(
    head: Sequence[Cells], spec: CampaignSpec, *, vendor: str
) -> tuple[CallProfile, int] | None:
    """
    A first profile from the header names (HEADER_HINTS) and the campaign (aspect and unit names
    as headers), for the operator to check; None when no row of `head` looks like a header.

    Returns:
        The profile and the index of the header row in `head`.
    """
    aspect_names = {_norm(a.zh): a.code for a in spec.aspects} | {_norm(a.code): a.code for a in spec.aspects}
    unit_names = {_norm(u.name): u.code for u in spec.units}
    for i, cells in enumerate(head):
        headers = [_cell(c) for c in cells]
        found: dict[str, str] = {}
        for field_name in HEADER_HINTS:
            for name in headers:
                taken_now = field_name in found or name in found.values()
                if name and not taken_now and _hint(_norm(name), field_name):
                    found[field_name] = name
        if "phone" not in found or "called_at" not in found:
            continue
        taken = set(found.values())
        answers: list[AnswerColumn] = []
        layout: Literal["wide", "long"] = "wide"
        if "question" in found and "answer" in found and "call_id" in found:
            layout = "long"
            answers = [AnswerColumn(question=f"Q{n + 1}", aspect=a.code) for n, a in enumerate(spec.aspects)]
        else:
            found.pop("question", None)
            found.pop("answer", None)
            for name in headers:
                key = _norm(name)
                if not name or name in taken:
                    continue
                if key in aspect_names:
                    answers.append(AnswerColumn(column=name, aspect=aspect_names[key]))
                elif key in unit_names and len(spec.aspects) == 1:
                    answers.append(
                        AnswerColumn(column=name, aspect=spec.aspects[0].code, unit=unit_names[key])
                    )
            if not answers and len(spec.aspects) == 1:
                for name in headers:
                    if name and name not in taken and _norm(name) in {_norm(h) for h in SINGLE_ANSWER_HINTS}:
                        answers.append(AnswerColumn(column=name, aspect=spec.aspects[0].code))
                        break
        if not answers:
            continue
        if "unit" not in found and any(a.unit is None for a in answers):
            continue
        called_at = found["called_at"]
        columns = Columns(
            call_id=found.get("call_id"),
            phone=found["phone"],
            called_at=called_at,
            outcome=found.get("outcome"),
            unit=found.get("unit"),
            question=found.get("question"),
            answer=found.get("answer"),
        )
        profile = CallProfile(
            vendor=vendor, layout=layout, columns=columns, answers=tuple(answers), codes=default_codes(spec)
        )
        return profile, i
    return None


# ---------------------------------------------------------------------------------------------
# Answer codes and unit names


def _code_value(spec: CampaignSpec, value: str) -> Answer | None:
    """A code table's right-hand side as an answer template (unit and aspect filled in later)."""
    value = value.strip()
    if value == DONT_KNOW:
        return Answer("", "", dont_know=True) if spec.scale.dont_know else None
    if spec.scale.kind == "levels":
        return Answer("", "", level=value) if spec.scale.level(value) is not None else None
    if re.fullmatch(r"-?\d+", value) and spec.scale.min_points <= int(value) <= spec.scale.max_points:
        return Answer("", "", points=int(value))
    return None


def default_codes(spec: CampaignSpec) -> dict[str, str]:
    """
    The code table an IVR script usually implies: keys 1, 2, 3… for the levels in the campaign's
    order (满意请按1), the levels' Chinese and English labels, their SMS keys; for a points scale
    every whole number in range. "Don't know" words when the campaign offers it.
    """
    codes: dict[str, str] = {}
    scale = spec.scale
    if scale.kind == "levels":
        for n, level in enumerate(scale.levels, start=1):
            for text in (str(n), level.code, level.zh, level.en, *level.sms_keys):
                if text:
                    codes.setdefault(text, level.code)
    else:
        for points in range(scale.min_points, scale.max_points + 1):
            codes[str(points)] = str(points)
    if scale.dont_know:
        for word in (*DONT_KNOW_WORDS, scale.dont_know_zh):
            codes.setdefault(word, DONT_KNOW)
    return codes


class _UnitMatcher:
    """Unit codes, names and aliases, compared in `_norm` form: `城东（工商）所 ` finds 城东(工商)所."""

    def __init__(self, spec: CampaignSpec, aliases: Mapping[str, str]) -> None:
        names: dict[str, set[str]] = {}
        for unit in spec.units:
            names.setdefault(_norm(unit.code), set()).add(unit.code)
            names.setdefault(_norm(unit.name), set()).add(unit.code)
        for alias, code in aliases.items():
            # The operator's alias table is the last word: it overrides a clash of names.
            names[_norm(alias)] = {code}
        self._names = names

    def find(self, text: str) -> str | None:
        codes = self._names.get(_norm(text), set())
        return next(iter(codes)) if len(codes) == 1 else None


# ---------------------------------------------------------------------------------------------
# The adapter


@dataclass(frozen=True, slots=True)
class CallExport:
    """
    One export file, already read into rows of text.

    Args:
        header: the header row's cells.
        rows: (row number as Excel shows it, cells) of every row below the header.
        repeated_call_ids: call ids that occur on more than one row (found by the reader in one
            pass over the file, so the adapter need not remember every id).
        spreadsheet: True for XLSX/XLS, where merged cells arrive empty below their first row.
    """

    campaign: str
    file_name: str
    file_sha256: str
    header: Cells
    rows: Iterable[tuple[int, Cells]]
    received_at: datetime
    repeated_call_ids: frozenset[str] = frozenset()
    spreadsheet: bool = False


@dataclass
class ParseStats:
    """What the adapter skipped without making an item: not calls at all."""

    blank: int = 0
    totals: int = 0
    rows: int = 0  # rows read below the header, skipped ones included


@dataclass(frozen=True, slots=True)
class _Call:
    row: int
    rows: tuple[int, ...]
    values: dict[str, str]  # profile field / answer key → text
    raw: dict[str, str]  # header → text, personal columns redacted


class CallsAdapter:
    """Call-centre and IVR exports (电话抽样调查): one ballot per completed call."""

    channel: ClassVar[Channel] = "phone"
    personal_fields: ClassVar[frozenset[str]] = frozenset({"phone"})

    def __init__(self, profile: CallProfile) -> None:
        self.profile = profile
        self.stats = ParseStats()

    def parse(self, raw: CallExport, spec: CampaignSpec) -> Iterator[Item]:
        """Every row below the header becomes a ballot or a rejection, except blank and totals rows."""
        profile = self.profile
        index = _header_index(raw.header)
        fields: dict[str, int] = {}
        c = profile.columns
        for name in ("call_id", "phone", "outcome", "unit", "question", "answer"):
            header = getattr(c, name)
            if header is not None:
                fields[name] = index[_norm(header)]
        time_idx = [index[_norm(h)] for h in c.time_columns()]
        if profile.layout == "wide":
            for answer in profile.answers:
                fields.setdefault(f"answer:{answer.key}", index[_norm(answer.key)])
        personal = {fields["phone"]} | {
            index[_norm(h)] for h in profile.personal_columns if _norm(h) in index
        }
        headers = [_cell(h) or f"column_{i + 1}" for i, h in enumerate(raw.header)]
        calls = self._rows_to_calls(raw, fields, time_idx, personal, headers)
        if profile.layout == "long":
            calls = self._pivot(calls)
        context = _Context(spec, profile, raw, _UnitMatcher(spec, profile.units), _codes(spec, profile))
        seen_repeated: set[str] = set()
        for call in calls:
            yield context.item(call, seen_repeated)

    def _rows_to_calls(
        self,
        raw: CallExport,
        fields: dict[str, int],
        time_idx: list[int],
        personal: set[int],
        headers: list[str],
    ) -> Iterator[_Call]:
        profile = self.profile
        markers = {_norm(m) for m in profile.totals_markers}
        starts = tuple(markers)
        above: dict[str, str] = {}
        for number, cells in raw.rows:
            self.stats.rows += 1
            texts = [_cell(v) for v in cells]
            if not any(texts):
                self.stats.blank += 1
                continue
            if any((n := _norm(t)) in markers or n.startswith(starts) for t in texts[:3] if t):
                self.stats.totals += 1
                continue

            def get(i: int, texts: list[str] = texts) -> str:
                return texts[i] if i < len(texts) else ""

            values = {name: get(i) for name, i in fields.items()}
            values["called_at"] = " ".join(get(i) for i in time_idx if get(i))
            if raw.spreadsheet:
                for name in profile.fill_down:
                    if values.get(name):
                        above[name] = values[name]
                    elif name in above:
                        values[name] = above[name]
            row_raw = {
                headers[i] if i < len(headers) else f"column_{i + 1}": (
                    REDACTED if i in personal and t else t
                )
                for i, t in enumerate(texts)
                if t
            }
            yield _Call(number, (number,), values, row_raw)

    def _pivot(self, calls: Iterator[_Call]) -> Iterator[_Call]:
        """Long IVR layout: one row per key press → one call per call id, last press per question wins."""
        grouped: dict[str, list[_Call]] = {}
        loose: list[_Call] = []
        for call in calls:
            call_id = call.values.get("call_id", "")
            if call_id:
                grouped.setdefault(call_id, []).append(call)
            else:
                loose.append(call)  # no call id: kept, and quarantined as one (see _Context)
        for call_id, events in grouped.items():
            ordered = sorted(events, key=lambda e: (e.values.get("called_at", ""), e.row))
            values: dict[str, str] = {"call_id": call_id}
            for name in ("phone", "unit", "called_at"):
                values[name] = next((e.values[name] for e in ordered if e.values.get(name)), "")
            # The outcome of the call is what the last event says about it.
            values["outcome"] = next(
                (e.values["outcome"] for e in reversed(ordered) if e.values.get("outcome")), ""
            )
            presses: dict[str, str] = {}
            for event in ordered:
                question = event.values.get("question", "")
                if question:
                    presses[_norm(question)] = event.values.get("answer", "")
            for answer in self.profile.answers:
                values[f"answer:{answer.key}"] = presses.get(_norm(answer.key), "")
            raw = {
                "call_id": call_id,
                "phone": REDACTED if values["phone"] else "",
                "events": ";".join(
                    "{}={}@{}".format(*(e.values.get(k, "") for k in ("question", "answer", "called_at")))
                    for e in ordered
                ),
            }
            yield _Call(ordered[0].row, tuple(e.row for e in events), values, raw)
        yield from loose


def _codes(spec: CampaignSpec, profile: CallProfile) -> dict[str, Answer]:
    table: dict[str, Answer] = {}
    for text, value in default_codes(spec).items():
        answer = _code_value(spec, value)
        if answer is not None:
            table.setdefault(_norm(text), answer)
    for text, value in profile.codes.items():
        answer = _code_value(spec, value)
        if answer is not None:
            table[_norm(text)] = answer  # the profile's table overrides the defaults
    return table


def _outcome_table(profile: CallProfile) -> dict[str, str]:
    table: dict[str, str] = {}
    for category, texts in DEFAULT_OUTCOMES.items():
        for text in texts:
            table[_norm(text)] = category
    for category, texts in profile.outcomes.items():
        for text in texts:
            table[_norm(text)] = category
    return table


@dataclass
class _Context:
    spec: CampaignSpec
    profile: CallProfile
    export: CallExport
    units: _UnitMatcher
    codes: dict[str, Answer]
    outcomes: dict[str, str] = field(init=False)
    zone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.outcomes = _outcome_table(self.profile)
        self.zone = ZoneInfo(self.profile.timezone or self.spec.timezone)

    def item(self, call: _Call, seen_repeated: set[str]) -> Item:
        export, profile = self.export, self.profile
        values = call.values
        call_id = values.get("call_id", "")
        meta: dict[str, Any] = {
            "file": export.file_name,
            "file_sha256": export.file_sha256,
            "row": call.row,
            "vendor": profile.vendor,
        }
        if len(call.rows) > 1:
            meta["rows"] = list(call.rows)
        if call_id:
            meta["call_id"] = call_id
        file_ref = f"{export.file_sha256[:16]}#row={call.row}"
        source_ref = f"{profile.vendor}:{call_id}" if call_id else file_ref
        if call_id and call_id in export.repeated_call_ids and profile.layout == "wide":
            if call_id in seen_repeated:
                # The first row with this call id owns the vendor reference; a later one is kept
                # under its file row, so re-importing this file still adds nothing.
                problem = Problem(
                    "call_id", "duplicate_row", f"call {call_id!r} appears more than once in the export"
                )
                return self._reject(file_ref, (problem,), call, meta)
            seen_repeated.add(call_id)

        problems: list[Problem] = []
        outcome_text = values.get("outcome", "")
        category = "completed" if profile.columns.outcome is None else self.outcomes.get(_norm(outcome_text))
        if category is None:
            problems.append(
                Problem("outcome", "not_completed", f"call outcome {outcome_text!r} is not a completed call")
            )
            return self._reject(source_ref, tuple(problems), call, meta)
        meta["outcome"] = category
        if category not in ("completed", "partial"):
            problems.append(
                Problem("outcome", "not_completed", f"call outcome {outcome_text!r} ({category})")
            )
            return self._reject(source_ref, tuple(problems), call, meta)

        phone_text = values.get("phone", "")
        phone = _normalise_phone(phone_text) if phone_text else None
        if phone is None:
            detail = "no phone number" if not phone_text else "not a valid phone number"
            problems.append(Problem("phone", "invalid_phone", detail))

        answered_at = self._time(values.get("called_at", ""))
        if answered_at is None:
            problems.append(
                Problem(
                    "called_at",
                    "bad_call_time",
                    f"{values.get('called_at', '')!r} is not a call time in a known format",
                )
            )

        row_unit: str | None = None
        unit_text = values.get("unit", "")
        needs_row_unit = any(a.unit is None for a in profile.answers)
        if needs_row_unit:
            row_unit = self.units.find(unit_text) if unit_text else None
            if row_unit is None:
                detail = (
                    "no unit given"
                    if not unit_text
                    else f"unit {unit_text!r} is not in campaign {self.spec.code}"
                )
                problems.append(Problem("unit", "unknown_unit", detail))

        answers: list[Answer] = []
        unanswered: list[str] = []
        for spec_answer in profile.answers:
            where = spec_answer.key
            text = values.get(f"answer:{spec_answer.key}", "")
            unit = spec_answer.unit or row_unit
            if not text:
                unanswered.append(where)
                continue
            template = self.codes.get(_norm(text))
            if template is None:
                problems.append(
                    Problem(f"answers.{where}", "unknown_code", f"{text!r} is not in the code table")
                )
                continue
            if unit is not None:
                answers.append(
                    Answer(unit, spec_answer.aspect, template.level, template.points, template.dont_know)
                )
        if not answers and not any(p.code == "unknown_code" for p in problems):
            problems.append(Problem("answers", "no_answers", "the call has no answer"))
        elif unanswered and not self.spec.allow_partial:
            # An IVR call hung up part-way, or a wide row with a blank cell: it counts only where
            # the campaign takes partial ballots.
            problems.append(Problem("answers", "incomplete", f"not answered: {', '.join(unanswered)}"))
        if problems or phone is None or answered_at is None:
            return self._reject(source_ref, tuple(problems), call, meta)
        return BallotSubmission(
            campaign=export.campaign,
            channel="phone",
            source_ref=source_ref,
            identity=Identity("phone", phone),
            answers=tuple(answers),
            answered_at=answered_at,
            received_at=export.received_at,
            raw=call.raw,
            tier=profile.tier,
            meta=meta,
        )

    def _reject(
        self, source_ref: str, problems: tuple[Problem, ...], call: _Call, meta: dict[str, Any]
    ) -> Rejection:
        return Rejection(
            campaign=self.export.campaign,
            channel="phone",
            source_ref=source_ref,
            problems=problems,
            received_at=self.export.received_at,
            raw=call.raw,
            meta=meta,
        )

    def _time(self, text: str) -> datetime | None:
        return parse_call_time(text, self.profile.time_formats, self.zone)


_EXCEL_EPOCH = datetime(1899, 12, 30)


def parse_call_time(text: str, formats: Sequence[str], zone: ZoneInfo) -> datetime | None:
    """
    A call time in any of `formats`, ISO 8601, or an Excel serial day number; a time without an
    offset is in `zone`. Returns UTC, or None.
    """
    text = _SPACES.sub(" ", text.strip())
    if not text:
        return None
    value: datetime | None = None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        for fmt in formats:
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if value is None and _EXCEL_SERIAL.fullmatch(text):
        # Excel stores a date-time as days since 1899-12-30; a cell formatted as text shows it so.
        value = _EXCEL_EPOCH + timedelta(days=float(text))
        value = value.replace(microsecond=0)
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


__all__ = [
    "CallExport",
    "CallProfile",
    "CallsAdapter",
    "ParseStats",
    "ProfileError",
    "default_codes",
    "header_position",
    "load_profile_text",
    "locate_header",
    "missing_headers",
    "parse_call_time",
    "profile_problems",
    "profile_to_toml",
    "propose_profile",
]
