"""
The JSON API for rating devices and integrations (`POST /api/v1/ballots`): one JSON object →
one `BallotSubmission`, or one `Rejection` listing every problem by its JSON path.

Body (UTF-8 JSON object; unknown keys are refused, so a typo is not silently ignored):

    {
      "campaign": "branch-2026",                       required
      "source_ref": "kiosk-07/000123",                  required: your id for this ballot, 1–200
                                                        characters; a retry must reuse it
      "answered_at": "2026-09-01T10:04:00+08:00",       optional, ISO 8601 with an offset;
                                                        default: when the request arrived
      "respondent": {"phone": "+8613800138000"},        optional: or {"roster_id": "R-0042"}
      "transaction": "ticket-20260901-0042",            optional, instead of respondent: one
                                                        service transaction (一事一评)
      "tier": "public",                                 an open tier; needed only when the
                                                        campaign has several
      "answers": [                                      required, 1–500 items
        {"unit": "S01", "aspect": "overall", "level": "satisfied"},
        {"unit": "S02", "points": 8},                   aspect may be left out when the
        {"unit": "S03", "dont_know": true}              campaign asks one aspect only
      ],
      "comment": "窗口人员态度很好"                      optional, at most 1000 characters
    }

Neither respondent nor transaction: the ballot is one anonymous transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.channels.base import parse_timestamp, redact
from collect.phones import normalise_phone

TOP_LEVEL_KEYS = frozenset(
    {"campaign", "source_ref", "answered_at", "respondent", "transaction", "tier", "answers", "comment"}
)
ANSWER_KEYS = frozenset({"unit", "aspect", "level", "points", "dont_know"})
MAX_ANSWERS = 500
SOURCE_REF_MAX = 200
COMMENT_MAX = 1000
# A device's clock may run a little ahead of ours; beyond this, "answered_at" is wrong.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ApiBallotRequest:
    """
    One decoded request body. `client` names the API key that sent it: source references are
    scoped by key, so two integrations that both number their ballots from 1 never collide.
    """

    body: Mapping[str, Any]
    client: str
    received_at: datetime


def campaign_of(body: object) -> str | None:
    """The campaign code a body names, if it names one (the route needs it to load the spec)."""
    if isinstance(body, Mapping):
        value = body.get("campaign")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def envelope_problems(body: object) -> list[Problem]:
    """Problems that leave no campaign to file the input under (it is then answered, not kept)."""
    if not isinstance(body, Mapping):
        return [Problem("body", "not_an_object", "the body must be a JSON object")]
    if campaign_of(body) is None:
        return [Problem("campaign", "required", "give the campaign code as a non-empty string")]
    return []


class ApiAdapter:
    channel: ClassVar[Channel] = "api"
    personal_fields: ClassVar[frozenset[str]] = frozenset({"respondent.phone", "respondent.roster_id"})

    def parse(self, raw: ApiBallotRequest, spec: CampaignSpec) -> Iterator[BallotSubmission | Rejection]:
        body = raw.body
        problems: list[Problem] = [
            Problem(key, "unknown_field", f"{key!r} is not a field of a ballot")
            for key in sorted(set(body) - TOP_LEVEL_KEYS)
        ]
        source_ref = body.get("source_ref")
        if not isinstance(source_ref, str) or not 1 <= len(source_ref.strip()) <= SOURCE_REF_MAX:
            problems.append(
                Problem(
                    "source_ref", "required", f"give your id for this ballot, 1–{SOURCE_REF_MAX} characters"
                )
            )
            ref = f"{raw.client}:missing-source-ref:{raw.received_at.isoformat()}"
        else:
            ref = f"{raw.client}:{source_ref.strip()}"
        answered_at = self._answered_at(body.get("answered_at"), raw.received_at, problems)
        identity = self._identity(body.get("respondent"), body.get("transaction"), problems)
        tier = body.get("tier")
        if tier is not None:
            known = spec.tier(tier) if isinstance(tier, str) else None
            if known is None or known.source != "open":
                problems.append(
                    Problem("tier", "not_open_tier", f"{tier!r} is not an open tier of {spec.code}")
                )
                tier = None
        answers = self._answers(body.get("answers"), spec, problems)
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            problems.append(Problem("comment", "not_a_string", "the comment must be a string"))
            comment = None
        elif isinstance(comment, str):
            comment = comment.strip() or None
            if comment is not None and len(comment) > COMMENT_MAX:
                problems.append(
                    Problem("comment", "too_long", f"{len(comment)} characters, at most {COMMENT_MAX}")
                )
        kept = redact(body, self.personal_fields)
        if problems:
            yield Rejection(
                campaign=spec.code,
                channel=self.channel,
                source_ref=ref,
                problems=tuple(problems),
                received_at=raw.received_at,
                raw=kept,
            )
            return
        yield BallotSubmission(
            campaign=spec.code,
            channel=self.channel,
            source_ref=ref,
            identity=identity,
            answers=tuple(answers),
            answered_at=answered_at,
            received_at=raw.received_at,
            raw=kept,
            comment=comment,
            tier=tier,
        )

    def unknown_campaign(self, raw: ApiBallotRequest, code: str) -> Rejection:
        """A body naming a campaign that does not exist: kept under that code, never counted."""
        source_ref = raw.body.get("source_ref")
        ref = f"{raw.client}:{source_ref.strip() if isinstance(source_ref, str) else 'missing-source-ref'}"
        return Rejection(
            campaign=code,
            channel=self.channel,
            source_ref=ref[:255],
            problems=(Problem("campaign", "unknown_campaign", f"campaign {code!r} does not exist"),),
            received_at=raw.received_at,
            raw=redact(raw.body, self.personal_fields),
        )

    @staticmethod
    def _answered_at(value: object, received_at: datetime, problems: list[Problem]) -> datetime:
        if value is None:
            return received_at
        parsed = parse_timestamp(value) if isinstance(value, str) else None
        if parsed is None:
            problems.append(
                Problem("answered_at", "bad_time", f"{value!r} is not an ISO 8601 time with an offset")
            )
            return received_at
        if parsed > received_at + CLOCK_SKEW:
            problems.append(Problem("answered_at", "in_future", f"{value} is later than the time it arrived"))
        return parsed

    @staticmethod
    def _identity(respondent: object, transaction: object, problems: list[Problem]) -> Identity | None:
        if respondent is not None and transaction is not None:
            problems.append(
                Problem("respondent", "ambiguous", "give a respondent or a transaction, not both")
            )
            return None
        if transaction is not None:
            if not isinstance(transaction, str) or not 1 <= len(transaction.strip()) <= 200:
                problems.append(Problem("transaction", "bad_transaction", "give 1–200 characters"))
                return None
            return Identity("transaction", transaction.strip())
        if respondent is None:
            return None
        if not isinstance(respondent, Mapping) or len(respondent) != 1:
            problems.append(
                Problem(
                    "respondent", "bad_respondent", 'give exactly one of {"phone": …} or {"roster_id": …}'
                )
            )
            return None
        kind, value = next(iter(respondent.items()))
        if kind == "phone":
            phone = normalise_phone(value) if isinstance(value, str) else None
            if phone is None:
                # The number itself stays out of the detail: details reach logs.
                problems.append(Problem("respondent.phone", "invalid_phone", "not a valid phone number"))
                return None
            return Identity("phone", phone)
        if kind == "roster_id":
            if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200:
                problems.append(Problem("respondent.roster_id", "bad_roster_id", "give 1–200 characters"))
                return None
            return Identity("roster_id", value.strip())
        problems.append(Problem(f"respondent.{kind}", "unknown_field", 'use "phone" or "roster_id"'))
        return None

    @staticmethod
    def _answers(value: object, spec: CampaignSpec, problems: list[Problem]) -> list[Answer]:
        if not isinstance(value, list) or not value:
            problems.append(Problem("answers", "required", "give a non-empty list of answers"))
            return []
        if len(value) > MAX_ANSWERS:
            problems.append(Problem("answers", "too_many", f"{len(value)} answers, at most {MAX_ANSWERS}"))
            return []
        only_aspect = spec.aspects[0].code if len(spec.aspects) == 1 else None
        answers: list[Answer] = []
        for i, item in enumerate(value):
            where = f"answers[{i}]"
            if not isinstance(item, Mapping):
                problems.append(Problem(where, "not_an_object", "each answer must be a JSON object"))
                continue
            before = len(problems)
            problems.extend(
                Problem(f"{where}.{key}", "unknown_field", f"{key!r} is not a field of an answer")
                for key in sorted(set(item) - ANSWER_KEYS)
            )
            unit = item.get("unit")
            if not isinstance(unit, str) or spec.unit(unit) is None:
                problems.append(
                    Problem(f"{where}.unit", "unknown_unit", f"{unit!r} is not a unit of {spec.code}")
                )
            aspect = item.get("aspect", only_aspect)
            if not isinstance(aspect, str) or spec.aspect(aspect) is None:
                detail = "give the aspect" if aspect is None else f"{aspect!r} is not asked in {spec.code}"
                problems.append(Problem(f"{where}.aspect", "unknown_aspect", detail))
            answer = _value(item, spec, where, problems)
            if len(problems) == before and answer is not None:
                answers.append(Answer(unit=str(unit), aspect=str(aspect), **answer))
        return answers


def _value(
    item: Mapping[str, Any], spec: CampaignSpec, where: str, problems: list[Problem]
) -> dict[str, Any] | None:
    """Exactly one of level, points or dont_know, valid for the campaign's scale."""
    level, points, dont_know = item.get("level"), item.get("points"), item.get("dont_know")
    given = [
        k
        for k, v in (("level", level), ("points", points), ("dont_know", dont_know))
        if v not in (None, False)
    ]
    if len(given) != 1:
        problems.append(Problem(where, "bad_answer", "give exactly one of level, points or dont_know: true"))
        return None
    scale = spec.scale
    if dont_know is not None and dont_know is not False:
        if dont_know is not True:
            problems.append(Problem(f"{where}.dont_know", "not_a_boolean", "dont_know must be true"))
        elif not scale.dont_know:
            problems.append(
                Problem(
                    f"{where}.dont_know",
                    "dont_know_not_offered",
                    'this campaign does not offer "don\'t know"',
                )
            )
        else:
            return {"dont_know": True}
        return None
    if level is not None:
        if scale.kind != "levels" or not isinstance(level, str) or scale.level(level) is None:
            offered = ", ".join(scale.level_codes) if scale.kind == "levels" else "none: use points"
            problems.append(
                Problem(f"{where}.level", "unknown_level", f"{level!r} is not a level ({offered})")
            )
            return None
        return {"level": level}
    # bool is an int in Python; true is not 1 point.
    if scale.kind != "points" or not isinstance(points, int) or isinstance(points, bool):
        problems.append(
            Problem(
                f"{where}.points",
                "bad_points",
                "this campaign's scale takes whole points"
                if scale.kind == "points"
                else "this campaign's scale takes levels, not points",
            )
        )
        return None
    if not scale.min_points <= points <= scale.max_points:
        problems.append(
            Problem(
                f"{where}.points",
                "out_of_range",
                f"{points} is outside {scale.min_points}–{scale.max_points}",
            )
        )
        return None
    return {"points": points}
