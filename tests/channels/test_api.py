"""ApiAdapter as a table: JSON body → the submission, or every problem by its JSON path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from collect.ballot import Answer, BallotSubmission, Identity, Rejection
from collect.campaign import CampaignSpec
from collect.channels.api import ApiAdapter, ApiBallotRequest, envelope_problems

AT = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
S01 = {"unit": "S01", "level": "satisfied"}


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any]
    identity: Identity | None = None
    answers: tuple[Answer, ...] = (Answer("S01", "overall", level="satisfied"),)
    problems: tuple[tuple[str, str], ...] = ()
    answered_at: datetime = AT


def base(**changes: Any) -> dict[str, Any]:
    return {"campaign": "branch-2026", "source_ref": "d1/1", "answers": [S01], **changes}


CASES = [
    Case("minimal: anonymous, now", base()),
    Case(
        "phone normalised",
        base(respondent={"phone": "0086 139-7531-8642"}),
        identity=Identity("phone", "+8613975318642"),
    ),
    Case("roster id", base(respondent={"roster_id": " R-1 "}), identity=Identity("roster_id", "R-1")),
    Case("transaction", base(transaction="ticket-9"), identity=Identity("transaction", "ticket-9")),
    Case(
        "answered_at with offset",
        base(answered_at="2026-09-01T09:30:00+08:00"),
        answered_at=datetime(2026, 9, 1, 1, 30, tzinfo=UTC),
    ),
    Case("naive time", base(answered_at="2026-09-01T09:30:00"), problems=(("answered_at", "bad_time"),)),
    Case(
        "from the future",
        base(answered_at="2026-09-02T09:30:00+08:00"),
        problems=(("answered_at", "in_future"),),
    ),
    Case(
        "both respondent and transaction",
        base(respondent={"phone": "13975318642"}, transaction="t"),
        problems=(("respondent", "ambiguous"),),
    ),
    Case(
        "unknown respondent kind",
        base(respondent={"email": "a@b.cn"}),
        problems=(("respondent.email", "unknown_field"),),
    ),
    Case("bad phone", base(respondent={"phone": "110"}), problems=(("respondent.phone", "invalid_phone"),)),
    Case("tier that is not open", base(tier="leaders"), problems=(("tier", "not_open_tier"),)),
    Case("no answers", base(answers=[]), problems=(("answers", "required"),)),
    Case("answer not an object", base(answers=["satisfied"]), problems=(("answers[0]", "not_an_object"),)),
    Case(
        "true is not a point",
        base(answers=[{"unit": "S01", "points": True}]),
        problems=(("answers[0].points", "bad_points"),),
    ),
    Case(
        "two values",
        base(answers=[{"unit": "S01", "level": "satisfied", "points": 3}]),
        problems=(("answers[0]", "bad_answer"),),
    ),
    Case(
        "dont_know not offered",
        base(answers=[{"unit": "S01", "dont_know": True}]),
        problems=(("answers[0].dont_know", "dont_know_not_offered"),),
    ),
    Case(
        "everything wrong",
        {
            "campaign": "branch-2026",
            "extra": 1,
            "answers": [{"unit": "X", "aspect": "y", "level": "z", "w": 0}],
            "comment": "x" * 1001,
        },
        problems=(
            ("extra", "unknown_field"),
            ("source_ref", "required"),
            ("answers[0].w", "unknown_field"),
            ("answers[0].unit", "unknown_unit"),
            ("answers[0].aspect", "unknown_aspect"),
            ("answers[0].level", "unknown_level"),
            ("comment", "too_long"),
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_api_body(case: Case, branch_spec: CampaignSpec) -> None:
    [item] = list(ApiAdapter().parse(ApiBallotRequest(case.body, "key7", AT), branch_spec))
    if case.problems:
        assert isinstance(item, Rejection)
        assert [(p.field, p.code) for p in item.problems] == list(case.problems)
        return
    assert isinstance(item, BallotSubmission)
    assert item.source_ref == "key7:d1/1"  # scoped by API key
    assert item.channel == "api"
    assert item.identity == case.identity
    assert item.answers == case.answers
    assert item.answered_at == case.answered_at


def test_personal_fields_are_redacted(branch_spec: CampaignSpec) -> None:
    body = base(respondent={"phone": "13975318642"})
    [item] = list(ApiAdapter().parse(ApiBallotRequest(body, "k", AT), branch_spec))
    assert item.raw["respondent"] == {"phone": "<redacted>"}
    assert body["respondent"] == {"phone": "13975318642"}  # the caller's dict is not changed


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], ("body", "not_an_object")),
        ({"answers": []}, ("campaign", "required")),
        ({"campaign": " "}, ("campaign", "required")),
    ],
)
def test_envelope(body: object, problem: tuple[str, str]) -> None:
    assert [(p.field, p.code) for p in envelope_problems(body)] == [problem]
