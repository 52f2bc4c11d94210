"""`collect campaign …`, `collect roster import`, `collect tokens issue`: exit codes of contract.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.cli.helpers import invoke
from tests.conftest import EXAMPLES

BRANCH = str(EXAMPLES / "branch-office.toml")

BAD = """\
code = "bad"
name = "bad campaign"
opens_at = 2026-07-01T00:00:00+08:00
closes_at = 2026-06-01T00:00:00+08:00

[scale]
kind = "levels"
[[scale.levels]]
code = "good"
zh = "好"
en = "Good"
[[scale.levels]]
code = "poor"
zh = "差"
en = "Poor"
value = 0

[[units]]
code = "U1"
name = "一号单位"
group = "nowhere"

[[units]]
code = "U1"
name = "重复单位"

[[tiers]]
code = "public"
zh = "群众"
weight = 0.7
"""


def test_check_lists_every_problem_with_line_and_path(tmp_path: Path, sqlite_url: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD, encoding="utf-8")
    result = invoke(["campaign", "check", str(bad)], url=sqlite_url)
    assert result.code == 2
    lines = result.stdout + result.stderr
    assert "line 8: scale.levels[0].value: every level needs an explicit value" in lines
    assert "line 21: units[0].group: unknown group 'nowhere'" in lines
    assert "tier weights sum to 0.7, not 1" in lines
    assert "closes_at must be after opens_at" in lines
    assert "duplicate unit code 'U1' (2 times)" in lines


def test_check_good_file_exits_0(sqlite_url: str) -> None:
    result = invoke(["campaign", "check", BRANCH], url=sqlite_url)
    assert result.code == 0, result.stderr
    assert "branch-2026" in result.stdout


@pytest.mark.parametrize("name", ["branch-office.toml", "department-survey.toml", "city-campaign.toml"])
def test_shipped_examples_validate(name: str, sqlite_url: str) -> None:
    path = EXAMPLES / name
    if not path.exists():
        pytest.fail(f"example {name} is missing")
    assert invoke(["campaign", "check", str(path)], url=sqlite_url).code == 0


def test_missing_file_is_usage_error(sqlite_url: str) -> None:
    result = invoke(["campaign", "check", "/nonexistent.toml"], url=sqlite_url)
    assert result.code == 2
    assert "/nonexistent.toml" in result.stderr


def test_load_is_idempotent_and_listed(db_url: str) -> None:
    first = invoke(["campaign", "load", BRANCH], url=db_url)
    assert first.code == 0, first.stderr
    assert "created" in first.stdout
    again = invoke(["campaign", "load", BRANCH], url=db_url)
    assert "unchanged" in again.stdout
    listed = invoke(["campaign", "list", "--json"], url=db_url)
    assert [c["code"] for c in json.loads(listed.stdout)] == ["branch-2026"]
    shown = invoke(["campaign", "show", "branch-2026", "--json"], url=db_url)
    assert [t["weight"] for t in json.loads(shown.stdout)["tiers"]] == [0.2, 0.2, 0.3, 0.3]


def test_show_unknown_campaign_exits_2(sqlite_url: str) -> None:
    result = invoke(["campaign", "show", "nope"], url=sqlite_url)
    assert result.code == 2
    assert "nope" in result.stderr


def test_unreachable_database_exits_3() -> None:
    result = invoke(
        ["campaign", "list"], url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    assert result.code == 3
    assert "cannot reach the database" in result.stderr


def test_missing_secret_key_exits_2(sqlite_url: str) -> None:
    result = invoke(["campaign", "list"], url=sqlite_url, COLLECT_SECRET_KEY="")
    # Listing needs no secret; importing a roster keys respondents and must refuse.
    assert result.code == 0
    roster = invoke(
        ["roster", "import", "branch-2026", "peers", BRANCH], url=sqlite_url, COLLECT_SECRET_KEY=""
    )
    assert roster.code == 2


def _write_roster(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def test_roster_import_and_tokens_issue(tmp_path: Path, db_url: str) -> None:
    assert invoke(["campaign", "load", BRANCH], url=db_url).code == 0
    roster = _write_roster(
        tmp_path / "peers.csv",
        [
            ["编号", "手机号码", "所属单位"],
            ["P01", "138 0013 8000", "S01"],
            ["P02", "+86-139-0013-9000", "城西工商所"],
        ],
        encoding="gbk",
    )
    imported = invoke(["roster", "import", "branch-2026", "peers", str(roster)], url=db_url)
    assert imported.code == 0, imported.stderr
    assert "2 added" in imported.stdout
    out = tmp_path / "links.csv"
    issued = invoke(["tokens", "issue", "branch-2026", "--out", str(out)], url=db_url)
    assert issued.code == 0, issued.stderr
    links = _read_csv(out)
    assert [link["roster_id"] for link in links] == ["P01", "P02"]
    assert all(link["url"].startswith("https://c.example.cn/b/") for link in links)
    # Issuing again prints the same links and creates none.
    again = tmp_path / "again.csv"
    assert invoke(["tokens", "issue", "branch-2026", "--out", str(again)], url=db_url).code == 0
    assert _read_csv(again) == links
    assert (out.stat().st_mode & 0o077) == 0  # live links: owner-only file


def test_roster_with_bad_rows_is_refused_whole(tmp_path: Path, sqlite_url: str) -> None:
    assert invoke(["campaign", "load", BRANCH], url=sqlite_url).code == 0
    roster = _write_roster(
        tmp_path / "bad.csv",
        [["id", "phone", "unit"], ["P01", "12345", "S01"], ["P01", "13800138000", "S99"], ["", "", "S01"]],
    )
    result = invoke(["roster", "import", "branch-2026", "peers", str(roster)], url=sqlite_url)
    assert result.code == 2
    for expected in (
        "row 2.phone",
        "'12345' is not a valid phone number",
        "row 3.unit",
        "'S99'",
        "appears 2 times",
        "row 4",
    ):
        assert expected in result.stderr, expected
    listed = invoke(["campaign", "list", "--json"], url=sqlite_url)
    assert json.loads(listed.stdout)[0]["received"] == 0


def test_check_reports_scoring_that_does_not_fit_the_scale(tmp_path: Path, sqlite_url: str) -> None:
    text = (EXAMPLES / "branch-office.toml").read_text(encoding="utf-8")
    bad = tmp_path / "points-rule.toml"
    bad.write_text(text.replace('rule = "level_rates"', 'rule = "mean_points"'), encoding="utf-8")
    result = invoke(["campaign", "check", str(bad)], url=sqlite_url)
    assert result.code == 2
    assert "scoring.rule" in result.stderr
    assert "mean_points" in result.stderr
