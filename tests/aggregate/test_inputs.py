"""The deductions file (rule D) and the `[scoring]` table's own checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aggregate.inputs import DeductionsError, inputs_sha256, read_deductions
from collect.campaign import CampaignSpec, check_campaign_text
from collect.scoring_spec import ScoringSpec, scoring_problems
from tests.aggregate.helpers import EXAMPLES, example, frame, worked_a


def test_read_deductions(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "\ufeffunit,date,kind,points,note\nS01,2026-08-01,misconduct,0.5,迟到\nS01,2026-08-02,not_done,0.1,\n",
        encoding="utf-8",
    )
    table = read_deductions(path, example("branch-office"))
    assert table["points"].to_list() == [0.5, 0.1]
    assert table.columns == ["unit", "date", "kind", "points", "note"]


def test_bad_deductions_name_every_row(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "unit,date,kind,points,note\nX99,2026-08-01,a,0.5,\nS01,2026-08-01,a,lots,\nS02,d,a,-1,\n",
        encoding="utf-8",
    )
    with pytest.raises(DeductionsError) as caught:
        read_deductions(path, example("branch-office"))
    problems = caught.value.problems
    assert any("line 2" in p and "X99" in p for p in problems)
    assert any("line 3" in p and "lots" in p for p in problems)
    assert any("line 4" in p for p in problems)


def test_missing_deduction_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("unit,points\nS01,1\n", encoding="utf-8")
    with pytest.raises(DeductionsError, match="missing column"):
        read_deductions(path, example("branch-office"))


def test_hash_covers_spec_and_deductions(tmp_path: Path) -> None:
    spec = example("branch-office")
    answers = frame(worked_a(), spec).lazy()
    base = inputs_sha256(answers, spec, None)
    path = tmp_path / "d.csv"
    path.write_text("unit,date,kind,points,note\nS01,2026-08-01,a,0.5,\n", encoding="utf-8")
    assert inputs_sha256(answers, spec, read_deductions(path, spec)) != base
    other = CampaignSpec.model_validate({**spec.model_dump(mode="json"), "name": "another"})
    assert inputs_sha256(answers, other, None) != base
    fewer = frame(worked_a()[1:], spec).lazy()
    assert inputs_sha256(fewer, spec, None) != base


def test_campaign_without_scoring_table_gets_rule_a() -> None:
    text = (EXAMPLES / "branch-office.toml").read_text(encoding="utf-8")
    spec = check_campaign_text(text.split("[scoring]")[0])
    assert spec.scoring == ScoringSpec()
    assert spec.scoring.rule == "level_rates"


@pytest.mark.parametrize(
    ("scoring", "message"),
    [
        ({"rule": "composite"}, "composite.weights"),
        ({"rule": "composite", "composite": {"weights": {"g": {"phone": 0.5}}}}, "sum to 0.5"),
        ({"rule": "composite", "composite": {"weights": {"g": {"fax": 1.0}}}}, "unknown method"),
        ({"decimals": 7}, "less than or equal to 6"),
        ({"colour": "red"}, "Extra inputs"),
        ({"grades": [{"code": "a", "zh": "甲"}, {"code": "b", "zh": "乙"}]}, "only one band"),
    ],
)
def test_scoring_table_problems(scoring: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScoringSpec.model_validate(scoring)


def test_scoring_problems_against_the_campaign() -> None:
    dept = example("department-survey")
    wrong = CampaignSpec.model_validate(
        {**dept.model_dump(mode="json"), "scoring": {"rule": "aspect_value_sum"}}
    )
    assert scoring_problems(wrong) == [
        ("scoring.rule", "rule aspect_value_sum needs a levels scale with values, not points")
    ]
    assert scoring_problems(dept) == []
    assert scoring_problems(example("city-campaign")) == []
    assert scoring_problems(example("branch-office")) == []


def test_compact_and_text_hash_forms_both_ignore_ids_and_order() -> None:
    from aggregate.inputs import canonical_ballots, compact_ballots
    from aggregate.scores import ballot_table, prepared

    spec = example("branch-office")
    ballots = worked_a()
    one, two = frame(ballots, spec).lazy(), frame(list(reversed(ballots)), spec, first_id=500).lazy()
    compact_one = compact_ballots(ballot_table(prepared(one, spec), spec).collect(), spec)
    compact_two = compact_ballots(ballot_table(prepared(two, spec), spec).collect(), spec)
    assert compact_one is not None
    assert compact_two is not None
    assert compact_one.equals(compact_two)
    assert canonical_ballots(one).collect().equals(canonical_ballots(two).collect())
    # A code the campaign does not know cannot be put in compact form: the text form is used.
    odd = frame([("S01", "peers", {"overall": "ecstatic"}, "web")], spec).lazy()
    assert compact_ballots(ballot_table(prepared(odd, spec), spec).collect(), spec) is None
    assert len(inputs_sha256(odd, spec, None)) == 64
