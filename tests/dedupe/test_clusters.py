"""
Photocopies of unserialed forms: clusters of identical answer vectors, found at the stated
threshold, none on a clean campaign of the sources' size, and the report's figures exact.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace

import polars as pl
import pytest

import collect.cli.dedupe  # noqa: F401  (registers the commands)
from collect.campaign import CampaignSpec
from collect.dedupe.clusters import DEFAULT_ALPHA, find_clusters
from collect.dedupe.review import list_items
from collect.ingest import ingest_batch
from collect.store import Store
from tests.cli.helpers import invoke
from tests.dedupe.helpers import UNITS, Form, answers_frame, paper_submission, synthetic_forms
from tests.store.factories import campaign_spec, save

SOURCE_FORMS = 11_436


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_false_positive_on_a_clean_campaign_of_11436_forms(seed: int) -> None:
    table, totals = find_clusters(answers_frame(synthetic_forms(SOURCE_FORMS, [], seed)))
    assert totals["forms"] == SOURCE_FORMS
    assert table.height > 100  # common vectors do repeat: the test must not mistake them for copies
    assert not table["flagged"].any()


def test_planted_clusters_are_found_at_the_threshold() -> None:
    # 602 photocopies, as in the source, in clusters of very different sizes.
    planted = [300, 150, 100, 40, 10, 2]
    forms = synthetic_forms(SOURCE_FORMS, planted, seed=7)
    table, totals = find_clusters(answers_frame(forms))
    threshold = math.log(DEFAULT_ALPHA) / math.log(10) - len(UNITS) * math.log10(5)
    assert totals["log10_threshold"] == pytest.approx(threshold)
    flagged = table.filter(pl.col("flagged"))
    vectors = {levels_of(v): m for v, m in flagged.select("vector", "observed").iter_rows()}
    copied = Counter(f.levels for f in forms if f.copy_of)
    everywhere = Counter(f.levels for f in forms)
    # No false positive: every flagged vector is one that was photocopied.
    assert set(vectors) <= set(copied)
    # Every cluster of 40 copies or more is found, counting every form with that vector.
    for levels, copies in copied.items():
        if copies >= 40:
            assert vectors.get(levels) == everywhere[levels]
    assert all(p < threshold for p in flagged["log10_p"].to_list())
    assert sum(vectors.values()) >= 300 + 150 + 100 + 40


def levels_of(vector: str) -> tuple[str, ...]:
    """A vector's cells ("S01/overall=satisfied · …", in position order) as levels in UNITS order."""
    cells = dict(cell.split("/overall=") for cell in vector.split(" · "))
    return tuple(cells[unit] for unit in UNITS)


def test_scan_files_review_items_idempotently_and_report_is_exact(
    store: Store, branch_spec: CampaignSpec
) -> None:
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    forms = synthetic_forms(400, [30, 12], seed=11)
    ingest_batch(store, [paper_submission(spec, form, i) for i, form in enumerate(forms)])
    first = invoke(["dedupe", "scan", spec.code, "--channel", "paper", "--json"], url=store.url)
    assert first.code == 0, first.stderr
    summary = json.loads(first.stdout)
    assert sorted(c["observed"] for c in summary["clusters"]) == [13, 31]
    assert summary["new_review_items"] == 44
    again = json.loads(invoke(["dedupe", "scan", spec.code, "--json"], url=store.url).stdout)
    assert again["new_review_items"] == 0
    items = list_items(store, spec.code)
    assert len(items) == 44
    evidence = items[0].evidence
    assert {
        "observed",
        "expected",
        "p_value",
        "log10_p_value",
        "threshold",
        "log10_threshold",
        "alpha",
    } <= set(evidence)
    assert evidence["log10_p_value"] < evidence["log10_threshold"]
    # Held until decided: the score cannot use them meanwhile.
    held = invoke(["report", spec.code, "--json"], url=store.url)
    assert json.loads(held.stdout)["forms"]["total"]["pending_review"] == 44
    # The clerk keeps the first form of each cluster and rejects the copies.
    originals = {f.ref for f in forms if f.copy_of is None}
    keep: list[str] = []
    drop: list[str] = []
    for item in items:
        (keep if _external_id(store, item.submission_id) in originals else drop).append(str(item.id))
    assert len(keep) == 2
    assert invoke(["review", "accept", *keep, "--note", "the original form"], url=store.url).code == 0
    assert invoke(["review", "reject", *drop, "--note", "photocopies"], url=store.url).code == 0
    result = invoke(["report", spec.code], url=store.url)
    assert result.code == 0, result.stdout
    assert "400 received, 358 valid, 42 invalid (photocopies: identical answers 42)" in result.stdout
    data = json.loads(invoke(["report", spec.code, "--json"], url=store.url).stdout)
    assert data["forms"]["by_distribution"]["newspaper"]["invalid"] == 42
    assert data["ballots"]["total"]["received"] == 400 * len(UNITS)
    assert data["ballots"]["total"]["invalid"] == 42 * len(UNITS)
    assert data["ok"] is True
    # A third scan neither re-holds the accepted originals nor adds items.
    assert (
        json.loads(invoke(["dedupe", "scan", spec.code, "--json"], url=store.url).stdout)["new_review_items"]
        == 0
    )
    assert (
        json.loads(invoke(["report", spec.code, "--json"], url=store.url).stdout)["forms"]["total"]["valid"]
        == 358
    )


def _external_id(store: Store, submission_id: int | None) -> str:
    import sqlalchemy as sa

    from collect.store.tables import SUBMISSION

    with store.engine.connect() as connection:
        return str(
            connection.execute(
                sa.select(SUBMISSION.c.external_id).where(SUBMISSION.c.id == submission_id)
            ).scalar_one()
        )


def test_the_scan_leaves_serialed_forms_to_the_ledger(store: Store, branch_spec: CampaignSpec) -> None:
    """
    Thirty serialed forms with one identical answer vector are not a cluster: a copy of a
    serialed form shows as a serial used twice. The unserialed forms are still scanned.
    """
    spec = campaign_spec(branch_spec, open_tier=True)
    save(store, spec)
    forms = synthetic_forms(400, [30], seed=11)
    alike = Form("serialed", ("dissatisfied",) * len(UNITS), "单位")
    items = [paper_submission(spec, form, i) for i, form in enumerate(forms)]
    for n in range(30):
        item = paper_submission(spec, replace(alike, ref=f"serialed-{n}"), 500 + n)
        items.append(
            replace(item, meta={"distribution": "单位", "serialed": True, "serial": f"P-{n:05d}-00"})
        )
    ingest_batch(store, items)
    summary = json.loads(invoke(["dedupe", "scan", spec.code, "--json"], url=store.url).stdout)
    assert [c["observed"] for c in summary["clusters"]] == [31]
    assert summary["serialed_forms_skipped"] == 30
    assert summary["forms"] == 400
    # The one cluster is the planted newspaper one, not the serialed vector.
    assert "newspaper" in summary["clusters"][0]["by_distribution"]
    assert "单位" not in summary["clusters"][0]["by_distribution"]
