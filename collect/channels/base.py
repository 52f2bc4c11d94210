"""
What every channel adapter is, and the helpers they share (answer values, times, redaction).

An adapter translates one external input into `BallotSubmission`s or `Rejection`s. It is pure:
no database, no network, no settings. `ingest()` decides and writes; see style.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

from collect.ballot import Answer, BallotSubmission, Problem, Rejection
from collect.campaign import DONT_KNOW, CampaignSpec, Channel

RawT_contra = TypeVar("RawT_contra", contravariant=True)

REDACTED = "<redacted>"


class ChannelAdapter(Protocol[RawT_contra]):
    """One channel: a class of class attributes plus `parse` (the rapidpro shape)."""

    channel: ClassVar[Channel]
    # Redacted from raw input before anything keeps it (dotted paths reach into nested objects).
    personal_fields: ClassVar[frozenset[str]]

    def parse(self, raw: RawT_contra, spec: CampaignSpec) -> Iterator[BallotSubmission | Rejection]:
        """
        Turn one external input (form post, webhook, export file, scanned form) into ballots.
        Pure: no database, no network, no settings; `spec` is a frozen copy of the campaign.
        """
        ...


def redact(raw: Mapping[str, Any], personal_fields: frozenset[str]) -> dict[str, Any]:
    """
    A copy of `raw` with every personal field replaced by a marker (kept, so a reader sees the
    field was given). `"respondent.phone"` reaches into `raw["respondent"]["phone"]`.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in personal_fields:
            out[key] = REDACTED
            continue
        nested = frozenset(f[len(key) + 1 :] for f in personal_fields if f.startswith(f"{key}."))
        out[key] = redact(value, nested) if nested and isinstance(value, Mapping) else value
    return out


def answer_from_text(spec: CampaignSpec, unit: str, aspect: str, text: str, field: str) -> Answer | Problem:
    """
    One answer as a form or a reply gives it: a level code, whole points, or `dont_know`.

    Returns:
        The answer, or the problem with it, named by `field`.
    """
    value = text.strip()
    scale = spec.scale
    if value == DONT_KNOW:
        if not scale.dont_know:
            return Problem(field, "dont_know_not_offered", 'this campaign does not offer "don\'t know"')
        return Answer(unit=unit, aspect=aspect, dont_know=True)
    if scale.kind == "levels":
        if scale.level(value) is None:
            return Problem(
                field,
                "unknown_level",
                f"{value!r} is not a level of this scale ({', '.join(scale.level_codes)})",
            )
        return Answer(unit=unit, aspect=aspect, level=value)
    points = int(value) if value.isascii() and value.lstrip("-").isdigit() else None
    if points is None or not scale.min_points <= points <= scale.max_points:
        return Problem(
            field, "out_of_range", f"{value!r} is not a whole number {scale.min_points}–{scale.max_points}"
        )
    return Answer(unit=unit, aspect=aspect, points=points)


def parse_timestamp(text: str) -> datetime | None:
    """An ISO 8601 time with an offset (`2026-09-01T10:00:00+08:00`, `…Z`); None otherwise."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else None
