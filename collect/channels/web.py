"""
Web ballots (`/b/{token}`): the posted form of an invited respondent → one `BallotSubmission`.

Form fields are `a.<unit>.<aspect>` (a level code, points, or `dont_know`) and `comment`;
problems are named by those field names, so the page can show each one by its question.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from collect.ballot import Answer, BallotSubmission, Identity, Problem, Rejection
from collect.campaign import CampaignSpec, Channel
from collect.channels.base import answer_from_text, redact

COMMENT_MAX = 1000  # characters; a comment is a note, not a letter
ANSWER_PREFIX = "a."


def answer_field(unit: str, aspect: str) -> str:
    """The form field of one question."""
    return f"{ANSWER_PREFIX}{unit}.{aspect}"


@dataclass(frozen=True, slots=True)
class WebBallotForm:
    """
    One posted ballot form.

    Args:
        form_id: the id of the rendered form (from its signed CSRF token): a double click or a
            refresh re-sends the same form, which `ingest()` then answers as already received.
        units: the units this respondent may rate; `required`: those the form asked (all of them,
            or under "first counts" those not answered yet).
    """

    token: str
    form_id: str
    fields: Mapping[str, str]
    units: tuple[str, ...]
    required: tuple[str, ...]
    received_at: datetime


class WebBallotAdapter:
    channel: ClassVar[Channel] = "web"
    # The token is the respondent's credential; the CSRF token is of no use to a reader.
    personal_fields: ClassVar[frozenset[str]] = frozenset({"token", "csrf"})

    def parse(self, raw: WebBallotForm, spec: CampaignSpec) -> Iterator[BallotSubmission | Rejection]:
        problems: list[Problem] = []
        answers: list[Answer] = []
        seen: set[tuple[str, str]] = set()
        allowed = set(raw.units)
        # A list, not a set: missing answers are reported in the order the page asks them.
        aspects = [a.code for a in spec.aspects]
        for name, value in raw.fields.items():
            if not name.startswith(ANSWER_PREFIX) or not value.strip():
                continue
            unit, _, aspect = name[len(ANSWER_PREFIX) :].partition(".")
            seen.add((unit, aspect))
            if unit not in allowed or aspect not in aspects:
                problems.append(Problem(name, "not_asked", f"{unit}/{aspect} is not on this ballot"))
                continue
            parsed = answer_from_text(spec, unit, aspect, value, name)
            if isinstance(parsed, Problem):
                problems.append(parsed)
            else:
                answers.append(parsed)
        if not spec.allow_partial:
            for unit in raw.required:
                for code in aspects:
                    if (unit, code) not in seen:
                        field = answer_field(unit, code)
                        problems.append(Problem(field, "required", f"{unit}/{code} is not answered"))
        if not answers and not problems:
            problems.append(Problem("answers", "no_answers", "the ballot has no answers"))
        comment = raw.fields.get("comment", "").strip() or None
        if comment is not None and len(comment) > COMMENT_MAX:
            problems.append(
                Problem(
                    "comment", "too_long", f"the comment has {len(comment)} characters, at most {COMMENT_MAX}"
                )
            )
        source_ref = f"form-{raw.form_id}"
        kept = redact(dict(raw.fields), self.personal_fields)
        if problems:
            yield Rejection(
                campaign=spec.code,
                channel=self.channel,
                source_ref=source_ref,
                problems=tuple(problems),
                received_at=raw.received_at,
                raw=kept,
            )
            return
        yield BallotSubmission(
            campaign=spec.code,
            channel=self.channel,
            source_ref=source_ref,
            identity=Identity("token", raw.token),
            # A web ballot is answered the moment it arrives: there is no other clock to trust.
            answered_at=raw.received_at,
            received_at=raw.received_at,
            answers=tuple(sorted(answers, key=lambda a: (a.unit, a.aspect))),
            raw=kept,
            comment=comment,
        )
