"""Published outputs: the JSON of contract.md, CSV safety, XLSX, HTML, the table and --explain."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import polars as pl
import pytest

from aggregate.html import to_html
from aggregate.publish import explain, safe_text, table_text, to_csv, to_json
from aggregate.result import ScoreResult, compute
from aggregate.rounding import publish, publish_value
from aggregate.xlsx import to_xlsx
from collect.campaign import CampaignSpec
from tests.aggregate.helpers import Ballot, example, frame, level_ballots, variant, worked_a

STAMP = "2026-12-31T16:00:00Z"


def branch_result(spec: CampaignSpec | None = None) -> ScoreResult:
    spec = spec or example("branch-office")
    ballots = worked_a("S01") + level_ballots("S02", "peers", {"fairly_satisfied": 3, "dissatisfied": 1})
    ballots += level_ballots("O01", "leaders", {"satisfied": 2})
    return compute(frame(ballots, spec), spec, computed_at=STAMP)


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (0.5, 0, 1.0),
        (1.5, 0, 2.0),
        (2.5, 0, 3.0),  # banker's rounding would give 2
        (-2.5, 0, -3.0),  # half away from zero
        (2.675, 2, 2.68),
        (1.005, 2, 1.01),  # 1.00499999999999989… in binary: the guard makes it a half
        (85.46666666666667, 4, 85.4667),
        (19.900000000000002, 2, 19.9),
        (0.2716666666, 6, 0.271667),
        (-1e-12, 2, 0.0),  # never "-0.0"
    ],
)
def test_publication_rounding_is_half_away_from_zero(value: float, decimals: int, expected: float) -> None:
    got = pl.DataFrame({"x": [value]}).select(publish(pl.col("x"), decimals))["x"][0]
    assert got == expected
    assert repr(got) == repr(expected)
    assert publish_value(value, decimals) == expected


def test_json_has_the_contract_shape() -> None:
    doc = json.loads(to_json(branch_result()))
    assert list(doc)[:3] == ["campaign", "computed_at", "inputs_sha256"]
    assert doc["campaign"] == "branch-2026"
    assert doc["computed_at"] == STAMP
    assert re.fullmatch(r"[0-9a-f]{64}", doc["inputs_sha256"])
    s01 = next(u for u in doc["units"] if u["unit"] == "S01")
    for key in (
        "unit",
        "name",
        "group",
        "score",
        "rank",
        "designation",
        "grade",
        "ci95",
        "tiers",
        "weighted_rates",
    ):
        assert key in s01
    assert s01["score"] == 85.4667
    assert s01["rank"] == 1
    assert s01["designation"] == "top"
    lo, hi = s01["ci95"]
    assert lo < 85.4667 < hi
    peers = s01["tiers"]["peers"]
    assert peers["cast"] == 12
    assert peers["valid"] == 12
    assert peers["rates"]["satisfied"] == 0.5
    assert list(peers["rates"]) == [
        "satisfied",
        "fairly_satisfied",
        "basically_satisfied",
        "not_very_satisfied",
        "dissatisfied",
    ]
    assert s01["weighted_rates"] == {
        "satisfied": 0.55,
        "fairly_satisfied": 0.271667,
        "basically_satisfied": 0.113333,
        "not_very_satisfied": 0.048333,
        "dissatisfied": 0.016667,
    }
    # Units are published per group, by rank; a unit without ballots has no score and no rank.
    s04 = next(u for u in doc["units"] if u["unit"] == "S04")
    assert s04["score"] is None
    assert s04["rank"] is None
    assert s04["ci95"] is None


def test_json_is_byte_identical_and_ignores_ballot_ids_and_order() -> None:
    spec = example("branch-office")
    ballots = worked_a("S01") + level_ballots("S02", "peers", {"fairly_satisfied": 3})
    one = compute(frame(ballots, spec), spec, computed_at=STAMP)
    again = compute(frame(list(reversed(ballots)), spec, first_id=9000), spec, computed_at=STAMP)
    assert to_json(one) == to_json(again)
    assert to_csv(one) == to_csv(again)


def test_source_date_epoch_sets_computed_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1798732800")
    spec = example("branch-office")
    result = compute(frame(worked_a(), spec), spec)
    assert result.computed_at == "2026-12-31T16:00:00Z"


def test_csv_is_formula_safe() -> None:
    spec = example("branch-office")
    units = [u.model_dump(mode="json") for u in spec.units]
    units[0]["name"] = '=HYPERLINK("http://x")'
    units[1]["name"] = "+1 科"
    hostile = variant(spec, units=units)
    text = to_csv(branch_result(hostile))
    rows = list(csv.reader(io.StringIO(text)))
    names = {row[2]: row[3] for row in rows[1:]}
    assert names["S01"] == '\'=HYPERLINK("http://x")'
    assert names["S02"] == "'+1 科"
    assert rows[0][:5] == ["分组", "排名", "单位代码", "单位名称", "得分"]
    assert safe_text("-3") == "'-3"
    assert safe_text("科室") == "科室"


def test_xlsx_one_sheet_per_group_with_frozen_header() -> None:
    data = to_xlsx(branch_result())
    assert data == to_xlsx(branch_result())  # same inputs and stamp → same bytes
    sheets = pl.read_excel(io.BytesIO(data), sheet_id=0, engine="calamine")
    assert set(sheets) == {"基层工商所", "机关科室"}
    stations = sheets["基层工商所"]
    assert stations.columns[:5] == ["分组", "排名", "单位代码", "单位名称", "得分"]
    assert stations.filter(pl.col("单位代码") == "S01")["得分"][0] == 85.4667
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
        styles = archive.read("xl/styles.xml").decode()
    assert 'state="frozen"' in sheet_xml
    assert "0.0000" in styles


def test_html_is_self_contained_with_whiskers() -> None:
    page = to_html(branch_result())
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "<path" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page
    assert "城东工商所" in page


def test_html_escapes_names() -> None:
    spec = example("branch-office")
    units = [u.model_dump(mode="json") for u in spec.units]
    units[0]["name"] = "<script>alert(1)</script>"
    page = to_html(branch_result(variant(spec, units=units)))
    assert "<script>" not in page


def test_table_lists_groups_in_rank_order() -> None:
    text = table_text(branch_result())
    assert "85.4667" in text
    assert text.index("城东工商所") < text.index("城西工商所")
    assert "满意单位" in text


def test_explain_shows_every_step() -> None:
    text = explain(branch_result(), "S01")
    for piece in (
        "tier peers",
        "satisfied 6",
        "cast 12",
        "weight stated 0.2",
        "weighted rates",
        "85.4667",
        "rank 1",
    ):
        assert piece in text
    with pytest.raises(KeyError):
        explain(branch_result(), "NOPE")


def test_outputs_write_to_files(tmp_path: Path) -> None:
    result = branch_result()
    (tmp_path / "s.json").write_text(to_json(result), encoding="utf-8")
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["units"]


def test_rule_e_and_d_fields_are_published() -> None:
    from tests.aggregate.test_rules import composite_ballots, composite_spec, meeting_spec

    spec = meeting_spec()
    ballots: list[Ballot] = level_ballots("M1", "members", {"excellent": 30, "qualified": 3})
    doc = json.loads(to_json(compute(frame(ballots, spec), spec, computed_at=STAMP)))
    m1 = next(u for u in doc["units"] if u["unit"] == "M1")
    assert m1["satisfaction_rate"] == 0.909091
    assert m1["grade"] == "excellent"
    d_spec = composite_spec()
    d_doc = json.loads(to_json(compute(frame(composite_ballots(), d_spec), d_spec, computed_at=STAMP)))
    o01 = next(u for u in d_doc["units"] if u["unit"] == "O01")
    assert o01["methods"]["meeting"]["score"] == 100.0
    assert o01["below_threshold"] is True
    assert "peers@meeting" in o01["tiers"]
