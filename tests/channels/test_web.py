"""WebBallotAdapter as a table: posted form → the submission, or every problem by its field."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from collect.ballot import Answer, BallotSubmission, Identity, Rejection
from collect.campaign import CampaignSpec
from collect.channels import ADAPTERS, DuplicateChannel, register
from collect.channels.web import WebBallotAdapter, WebBallotForm

AT = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    name: str
    fields: dict[str, str]
    answers: tuple[tuple[str, str, str], ...] = ()  # (unit, aspect, level) of a submission
    problems: tuple[tuple[str, str], ...] = ()  # (field, code) of a rejection
    required: tuple[str, ...] = ("S01", "S02")
    comment: str | None = None
    spec_changes: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "all answered",
        {"a.S01.overall": "satisfied", "a.S02.overall": "dissatisfied"},
        answers=(("S01", "overall", "satisfied"), ("S02", "overall", "dissatisfied")),
    ),
    Case(
        "comment kept, trimmed",
        {"a.S01.overall": "satisfied", "a.S02.overall": "satisfied", "comment": "  好 "},
        answers=(("S01", "overall", "satisfied"), ("S02", "overall", "satisfied")),
        comment="好",
    ),
    Case("one missing", {"a.S01.overall": "satisfied"}, problems=(("a.S02.overall", "required"),)),
    Case(
        "blank counts as missing",
        {"a.S01.overall": "satisfied", "a.S02.overall": " "},
        problems=(("a.S02.overall", "required"),),
    ),
    Case(
        "unknown level",
        {"a.S01.overall": "great", "a.S02.overall": "satisfied"},
        problems=(("a.S01.overall", "unknown_level"),),
    ),
    Case(
        "dont know not offered",
        {"a.S01.overall": "dont_know", "a.S02.overall": "satisfied"},
        problems=(("a.S01.overall", "dont_know_not_offered"),),
    ),
    Case(
        "a unit not on this ballot",
        {"a.S01.overall": "satisfied", "a.S02.overall": "satisfied", "a.O01.overall": "satisfied"},
        problems=(("a.O01.overall", "not_asked"),),
    ),
    Case(
        "an aspect not asked",
        {"a.S01.overall": "satisfied", "a.S02.overall": "satisfied", "a.S01.speed": "satisfied"},
        problems=(("a.S01.speed", "not_asked"),),
    ),
    Case(
        "every problem at once",
        {"a.S01.overall": "great", "comment": "x" * 1001},
        problems=(("a.S01.overall", "unknown_level"), ("a.S02.overall", "required"), ("comment", "too_long")),
    ),
    Case(
        "first counts: only the open units are required",
        {"a.S02.overall": "basically_satisfied"},
        answers=(("S02", "overall", "basically_satisfied"),),
        required=("S02",),
    ),
    Case("nothing at all", {}, problems=(("answers", "no_answers"),), required=()),
    Case(
        "partial allowed",
        {"a.S01.overall": "satisfied"},
        answers=(("S01", "overall", "satisfied"),),
        spec_changes={"allow_partial": True},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_web_form(case: Case, branch_spec: CampaignSpec) -> None:
    spec = CampaignSpec.model_validate({**branch_spec.model_dump(mode="json"), **case.spec_changes})
    raw = WebBallotForm(
        token="tok123",
        form_id="F1",
        fields={"csrf": "signed", **case.fields},
        units=("S01", "S02", "S03"),
        required=case.required,
        received_at=AT,
    )
    [item] = list(WebBallotAdapter().parse(raw, spec))
    assert item.source_ref == "form-F1"
    assert item.raw.get("csrf") == "<redacted>"
    if case.problems:
        assert isinstance(item, Rejection)
        assert [(p.field, p.code) for p in item.problems] == list(case.problems)
        return
    assert isinstance(item, BallotSubmission)
    assert item.identity == Identity("token", "tok123")
    assert item.channel == "web"
    assert item.answered_at == AT
    assert item.answers == tuple(Answer(unit=u, aspect=a, level=lv) for u, a, lv in case.answers)
    assert item.comment == case.comment


def test_points_and_dont_know(branch_spec: CampaignSpec) -> None:
    data = branch_spec.model_dump(mode="json")
    data["scale"] = {"kind": "points", "min_points": 0, "max_points": 10, "dont_know": True}
    spec = CampaignSpec.model_validate(data)
    raw = WebBallotForm(
        "t",
        "F",
        {"a.S01.overall": "7", "a.S02.overall": "dont_know", "a.S03.overall": "11"},
        ("S01", "S02", "S03"),
        ("S01", "S02", "S03"),
        AT,
    )
    [item] = list(WebBallotAdapter().parse(raw, spec))
    assert isinstance(item, Rejection)
    assert [(p.field, p.code) for p in item.problems] == [("a.S03.overall", "out_of_range")]
    raw = WebBallotForm(
        "t", "F", {"a.S01.overall": "7", "a.S02.overall": "dont_know"}, ("S01", "S02"), ("S01", "S02"), AT
    )
    [item] = list(WebBallotAdapter().parse(raw, spec))
    assert isinstance(item, BallotSubmission)
    assert item.answers == (Answer("S01", "overall", points=7), Answer("S02", "overall", dont_know=True))


def test_the_registry_refuses_a_second_adapter_for_a_channel() -> None:
    class Impostor(WebBallotAdapter):
        pass

    assert ADAPTERS["web"] is WebBallotAdapter
    with pytest.raises(DuplicateChannel):
        register(Impostor)
    assert register(WebBallotAdapter) is WebBallotAdapter  # registering the same class again is harmless
