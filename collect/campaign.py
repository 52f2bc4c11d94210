"""
Campaign definitions: the TOML an operator writes, validated into a frozen `CampaignSpec`.

Everything that decides a score (scale, level values, tiers, weights, policy) is stated here
explicitly; nothing is implied by a preset. `check_campaign_text` returns every problem at once,
each with its key path and the line it stands on.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collect.scoring_spec import ScoringSpec
from collect.toml_lines import line_of

Channel = Literal["web", "window_qr", "sms", "phone", "paper", "api"]
ALL_CHANNELS: tuple[Channel, ...] = ("web", "window_qr", "sms", "phone", "paper", "api")
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]

DONT_KNOW = "dont_know"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Level(_Frozen):
    """One answer level (满意, 比较满意, ...) with the value the campaign gives it."""

    code: Code
    zh: str
    en: str
    value: float
    sms_keys: tuple[str, ...] = ()  # extra reply words/letters accepted for this level


class Scale(_Frozen):
    """
    The answer scale: named levels with explicit values, or whole points (e.g. 0–10).

    `satisfied` names the levels (or, for points, the lowest point) that count as "satisfied"
    for satisfaction rates (rule E of domain.md).
    """

    kind: Literal["levels", "points"] = "levels"
    levels: tuple[Level, ...] = ()
    min_points: int = 0
    max_points: int = 10
    dont_know: bool = False
    dont_know_zh: str = "不了解"
    dont_know_en: str = "Don't know"
    satisfied: tuple[str, ...] = ()
    satisfied_min_points: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scale:
        if self.kind == "levels":
            if len(self.levels) < 2:
                raise ValueError("a levels scale needs at least two levels")
            codes = [level.code for level in self.levels]
            dupes = sorted(c for c, n in Counter(codes).items() if n > 1)
            if dupes:
                raise ValueError(f"duplicate level codes: {', '.join(dupes)}")
            if DONT_KNOW in codes:
                raise ValueError(f"'{DONT_KNOW}' is reserved: set dont_know = true instead")
            unknown = sorted(set(self.satisfied) - set(codes))
            if unknown:
                raise ValueError(f"satisfied names unknown levels: {', '.join(unknown)}")
            if any(not math.isfinite(level.value) for level in self.levels):
                raise ValueError("every level value must be a finite number")
        else:
            if self.levels:
                raise ValueError("a points scale has no levels")
            if self.min_points >= self.max_points:
                raise ValueError("min_points must be below max_points")
            if self.satisfied_min_points is not None and not (
                self.min_points <= self.satisfied_min_points <= self.max_points
            ):
                raise ValueError("satisfied_min_points must lie within the scale")
        return self

    def level(self, code: str) -> Level | None:
        return next((level for level in self.levels if level.code == code), None)

    @property
    def level_codes(self) -> tuple[str, ...]:
        return tuple(level.code for level in self.levels)


class Aspect(_Frozen):
    """One thing asked about each unit (测评内容): e.g. work style, efficiency."""

    code: Code
    zh: str
    en: str = ""


class Group(_Frozen):
    """A group of units ranked and assessed separately (e.g. 43 city departments)."""

    code: Code
    zh: str
    en: str = ""


class Window(_Frozen):
    """A service window (窗口) of a unit, rated on site."""

    code: Code
    name: str


class Unit(_Frozen):
    """A unit being evaluated (科室, 工商所, 窗口, 部门)."""

    code: Code
    name: str
    group: str = "default"
    windows: tuple[Window, ...] = ()
    staff: tuple[str, ...] = ()


class Tier(_Frozen):
    """
    Tier (参评层面): respondents who share one weight.

    `source = "roster"` tiers take respondents from an imported roster; with
    `sampling = "draw"` only drawn respondents count, with `"all"` everyone on the roster does.
    `source = "open"` tiers take anyone (window QR, public web), one vote per transaction.
    """

    code: Code
    zh: str
    en: str = ""
    weight: float = Field(ge=0, le=1)
    quota: int | None = Field(default=None, ge=0)  # valid ballots wanted per unit
    source: Literal["roster", "open"] = "roster"
    sampling: Literal["all", "draw"] = "all"
    rates: Literal["all", "all_but_own", "assigned"] = "all"


class CampaignSpec(_Frozen):
    """A whole campaign, as loaded from TOML and kept (as JSON) with every ballot it scores."""

    code: Code
    name: str
    timezone: str = "Asia/Shanghai"
    opens_at: datetime
    closes_at: datetime
    lang: Literal["zh-CN", "en"] = "zh-CN"
    channels: tuple[Channel, ...] = ALL_CHANNELS
    policy: Literal["first_counts", "last_counts"] = "first_counts"
    allow_partial: bool = False  # may a ballot leave some of a unit's aspects unanswered?
    scale: Scale
    aspects: tuple[Aspect, ...] = (Aspect(code="overall", zh="总体评价", en="Overall"),)
    groups: tuple[Group, ...] = (Group(code="default", zh="全部单位", en="All units"),)
    units: tuple[Unit, ...]
    tiers: tuple[Tier, ...]
    scoring: ScoringSpec = ScoringSpec()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give an offset, e.g. 2026-07-01T00:00:00+08:00")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        # Each check raises one problem; `check_campaign` gathers the field-level ones first,
        # so by the time this runs the fields themselves are valid.
        problems: list[str] = []
        if self.closes_at <= self.opens_at:
            problems.append("closes_at must be after opens_at")
        for label, codes in (
            ("unit", [u.code for u in self.units]),
            ("tier", [t.code for t in self.tiers]),
            ("aspect", [a.code for a in self.aspects]),
            ("group", [g.code for g in self.groups]),
            ("window", [w.code for u in self.units for w in u.windows]),
        ):
            dupes = sorted(c for c, n in Counter(codes).items() if n > 1)
            if dupes:
                problems.append(f"duplicate {label} codes: {', '.join(dupes)}")
        if not self.units:
            problems.append("a campaign needs at least one unit")
        if not self.tiers:
            problems.append("a campaign needs at least one tier")
        total = sum(t.weight for t in self.tiers)
        if self.tiers and not math.isclose(total, 1.0, abs_tol=1e-9):
            problems.append(f"tier weights sum to {total:g}, not 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Lookups used by ingest and the channels; specs are small, so linear scans are fine.
    def unit(self, code: str) -> Unit | None:
        return next((u for u in self.units if u.code == code), None)

    def tier(self, code: str) -> Tier | None:
        return next((t for t in self.tiers if t.code == code), None)

    def aspect(self, code: str) -> Aspect | None:
        return next((a for a in self.aspects if a.code == code), None)

    @property
    def open_tiers(self) -> tuple[Tier, ...]:
        return tuple(t for t in self.tiers if t.source == "open")

    def window(self, code: str) -> tuple[Unit, Window] | None:
        for unit in self.units:
            for window in unit.windows:
                if window.code == code:
                    return unit, window
        return None

    def canonical_json(self) -> str:
        """The spec as sorted, compact JSON: what the store keeps and what its hash covers."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class SpecProblem(BaseModel):
    """One problem in a campaign file: where (key path, line) and what."""

    model_config = ConfigDict(frozen=True)
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top)'}: {self.message}"


class CampaignFileError(Exception):
    """A campaign file that cannot be used; carries every problem found."""

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _cross_reference_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """
    Problems that span keys (weights sum, a unit's group declared, dates in order), checked on
    the raw data so they are reported even when some field is invalid too.
    """
    problems: list[tuple[str, str]] = []

    def items(key: str) -> list[dict[str, Any]]:
        value = data.get(key)
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

    declared = {g.get("code") for g in items("groups")} if "groups" in data else {"default"}
    for i, unit in enumerate(items("units")):
        if unit.get("group", "default") not in declared:
            problems.append((f"units[{i}].group", f"unknown group '{unit.get('group', 'default')}'"))
    scale = data.get("scale")
    if isinstance(scale, dict) and isinstance(scale.get("levels"), list):
        for i, level in enumerate(scale["levels"]):
            if isinstance(level, dict) and "value" not in level:
                problems.append((f"scale.levels[{i}].value", "every level needs an explicit value"))
    weights = [t.get("weight") for t in items("tiers")]
    numbers = [float(w) for w in weights if isinstance(w, int | float)]
    if weights and len(numbers) == len(weights):
        total = sum(numbers)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            problems.append(("tiers", f"tier weights sum to {total:g}, not 1"))
    opens, closes = data.get("opens_at"), data.get("closes_at")
    if (
        isinstance(opens, datetime)
        and isinstance(closes, datetime)
        and opens.tzinfo
        and closes.tzinfo
        and closes <= opens
    ):
        problems.append(("closes_at", "closes_at must be after opens_at"))
    for key in ("units", "tiers", "aspects", "groups"):
        codes = Counter(v.get("code") for v in items(key))
        for code, n in sorted((c, n) for c, n in codes.items() if n > 1 and isinstance(c, str)):
            problems.append((key, f"duplicate {key[:-1]} code '{code}' ({n} times)"))
    return problems


_CHECKED_RAW = (
    "tier weights",
    "closes_at must",
    "duplicate unit",
    "duplicate tier",
    "duplicate aspect",
    "duplicate group",
)


def check_campaign_text(text: str, source: str = "<campaign>") -> CampaignSpec:
    """
    Parse and validate a campaign file.

    Raises:
        CampaignFileError: with every problem found, each with its key path and line.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignFileError(
            source, [SpecProblem(path="", line=getattr(exc, "lineno", None), message=str(exc))]
        ) from exc
    found = [
        SpecProblem(path=p, line=line_of(text, p), message=m) for p, m in _cross_reference_problems(data)
    ]
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        reported = {p.path for p in found}
        for err in exc.errors():
            path = _dotted(tuple(err["loc"]))
            if err["type"] == "missing" and path in reported:
                continue  # already said better by the cross-reference pass
            message = err["msg"].removeprefix("Value error, ")
            for part in message.split("; "):
                # The model repeats the cross-key checks; they were reported above, by key.
                if not path and part.startswith(_CHECKED_RAW):
                    continue
                found.append(SpecProblem(path=path, line=line_of(text, path), message=part))
        spec = None
    if spec is not None:
        from collect.scoring_spec import scoring_problems

        # Checks between [scoring] and the scale or groups: the engine would refuse them later.
        found.extend(SpecProblem(path=p, line=line_of(text, p), message=m) for p, m in scoring_problems(spec))
    # The same missing value can be reported by both passes; keep the first of each.
    unique = list({(p.path, p.message): p for p in found}.values())
    if unique or spec is None:
        raise CampaignFileError(source, unique)
    return spec


def load_campaign_file(path: str) -> CampaignSpec:
    with open(path, encoding="utf-8") as handle:
        return check_campaign_text(handle.read(), source=path)
