"""
The reader on both real databases: ballots go in through ingest(), `collect score` reads them
with connectorx. Only counted ballots are scored; the inputs hash does not depend on the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregate.inputs import inputs_sha256
from aggregate.reader import connectorx_uri, load_spec, read_answers
from aggregate.result import compute
from aggregate.scores import INPUT_SCHEMA
from collect.ballot import Answer, BallotSubmission, Identity
from collect.campaign import CampaignSpec
from collect.ingest import ingest
from collect.store import Store
from tests.aggregate.helpers import FIVE, WORKED_A, Ballot, example, frame
from tests.cli.helpers import invoke
from tests.store.factories import RECEIVED, add_respondent, at, campaign_spec, save


def worked_example_ballots(unit: str = "S01") -> list[tuple[str, str, str]]:
    """(roster id, tier, level) for domain.md's rule A example: one respondent per ballot."""
    out: list[tuple[str, str, str]] = []
    for tier, counts in WORKED_A.items():
        n = 0
        for level, k in zip(FIVE, counts, strict=True):
            for _ in range(k):
                n += 1
                out.append((f"{tier}-{n}", tier, level))
    return out


def load_worked_example(store: Store) -> CampaignSpec:
    spec = campaign_spec(example("branch-office"), code="branch-t")
    save(store, spec)
    for minute, (roster_id, tier, level) in enumerate(worked_example_ballots()):
        add_respondent(store, spec, roster_id, tier)
        receipt = ingest(store, _submission(spec, roster_id, level, minute))
        assert receipt.outcome == "counted", receipt
    # A second vote by the same person is kept as superseded and must not be scored.
    second = ingest(store, _submission(spec, "peers-1", "dissatisfied", 500, ref="again"))
    assert second.outcome == "not_counted"
    return spec


def _submission(
    spec: CampaignSpec, roster_id: str, level: str, minute: int, ref: str = ""
) -> BallotSubmission:
    return BallotSubmission(
        campaign=spec.code,
        channel="web",
        source_ref=f"{ref}{roster_id}",
        identity=Identity("roster_id", roster_id),
        answers=(Answer(unit="S01", aspect="overall", level=level),),
        answered_at=at(minute),
        received_at=RECEIVED,
    )


def test_reader_scores_the_worked_example(store: Store) -> None:
    spec = load_worked_example(store)
    stored = load_spec(store.engine, spec.code)
    answers = read_answers(store.url, stored)
    assert answers.collect().height == 55
    assert answers.collect_schema() == INPUT_SCHEMA
    result = compute(answers, stored.spec)
    row = result.units.filter(result.units["unit"] == "S01").row(0, named=True)
    assert row["score_pub"] == 85.4667
    # The hash covers ballot content only: the same ballots built in memory hash the same.
    same: list[Ballot] = [
        ("S01", tier, {"overall": level}, "web") for _, tier, level in worked_example_ballots()
    ]
    assert result.inputs_sha256 == inputs_sha256(
        frame(same, stored.spec, first_id=1000).lazy(), stored.spec, None
    )


def test_collect_score_json_is_byte_identical(store: Store, tmp_path: Path) -> None:
    load_worked_example(store)
    args = ["score", "branch-t", "--format", "json", "--computed-at", "2026-12-31T16:00:00Z"]
    first = invoke(args, url=store.url)
    second = invoke(args, url=store.url)
    assert first.code == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert doc["campaign"] == "branch-t"
    assert doc["computed_at"] == "2026-12-31T16:00:00Z"
    s01 = next(u for u in doc["units"] if u["unit"] == "S01")
    assert s01["score"] == 85.4667
    assert s01["tiers"]["peers"]["cast"] == 12
    assert s01["weighted_rates"]["fairly_satisfied"] == 0.271667

    xlsx = tmp_path / "scores.xlsx"
    assert invoke([*args[:2], "--format", "xlsx", "--out", str(xlsx)], url=store.url).code == 0
    assert xlsx.stat().st_size > 0
    explained = invoke(["score", "branch-t", "--explain", "S01"], url=store.url)
    assert explained.code == 0
    assert "85.4667" in explained.stdout


def test_collect_score_unknown_campaign_exits_2(store: Store) -> None:
    result = invoke(["score", "nope"], url=store.url)
    assert result.code == 2
    assert "unknown campaign 'nope'" in result.stderr


def test_collect_score_refuse_policy_exits_1(store: Store) -> None:
    base = example("branch-office")
    spec = campaign_spec(
        CampaignSpec.model_validate(
            {
                **base.model_dump(mode="json"),
                "scoring": {**base.scoring.model_dump(mode="json"), "missing_tier": "refuse"},
            }
        ),
        code="refusing",
    )
    save(store, spec)
    result = invoke(["score", "refusing", "--format", "json"], url=store.url)
    assert result.code == 1
    assert "not scored" in result.stderr


def test_connectorx_uri() -> None:
    uri = connectorx_uri("postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_ab12")
    assert uri == "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_ab12"
    uri = connectorx_uri("sqlite:///collect.db")
    assert uri.startswith("sqlite:///")
    assert uri.endswith("/collect.db")
    with pytest.raises(ValueError, match="in-memory"):
        connectorx_uri("sqlite://")


def test_parallel_read_gives_the_same_rows(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_worked_example(store)
    stored = load_spec(store.engine, spec.code)
    serial = read_answers(store.url, stored).collect().sort("ballot_id", "aspect")
    monkeypatch.setattr("aggregate.reader.PARALLEL_FROM", 1)  # big campaigns read over two connections
    parallel = read_answers(store.url, stored).collect().sort("ballot_id", "aspect")
    assert parallel.equals(serial)
