"""
Sampling: reproducible, verifiable by the auditor's snippet of docs/sampling.md, recorded in the
store, and only drawn respondents count.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import collect.cli.dedupe  # noqa: F401  (registers the commands)
from collect.ballot import Identity
from collect.campaign import CampaignSpec
from collect.dedupe.sampling import (
    FrameRow,
    SamplingError,
    draw_pps,
    frame_sha256,
    replacements,
    run_method,
)
from collect.ingest import ingest
from collect.store import Store
from collect.store.tables import AUDIT, RESPONDENT, SAMPLE_DRAW, SAMPLE_MEMBER
from tests.cli.helpers import invoke
from tests.conftest import count
from tests.dedupe.helpers import write_roster
from tests.store.factories import ballot

ROOT = Path(__file__).resolve().parents[2]


def auditor() -> dict[str, Any]:
    """The reference snippet of docs/sampling.md, run as an auditor would run it."""
    text = (ROOT / "docs" / "sampling.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/sampling.md must hold exactly one python snippet"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/sampling.md", "exec"), namespace)  # the documented code, verbatim
    return namespace


SNIPPET = auditor()


def frame(n: int, strata: tuple[str, ...] = ("A",), *, sizes: bool = False) -> list[FrameRow]:
    return [
        FrameRow(f"R{i:04d}", strata[i % len(strata)], str((i * 37) % 200 + 1) if sizes else "")
        for i in range(n)
    ]


def ids(rows: list[FrameRow]) -> list[str]:
    return [r.roster_id for r in rows]


def triples(rows: list[FrameRow]) -> list[tuple[str, str, str]]:
    return [(r.roster_id, r.stratum, r.size) for r in rows]


@pytest.mark.parametrize("method", ["simple", "systematic", "stratified", "pps"])
def test_same_inputs_same_sample_other_seed_other_sample(method: str) -> None:
    rows = frame(300, ("A", "B", "C"), sizes=True)
    first = run_method(rows, method, 20, "福彩3D 2026-07-05 318")  # type: ignore[arg-type]
    again = run_method(list(reversed(rows)), method, 20, "福彩3D 2026-07-05 318")  # type: ignore[arg-type]
    other = run_method(rows, method, 20, "福彩3D 2026-07-06 702")  # type: ignore[arg-type]
    assert ids(first) == ids(again)  # the frame's order in the database does not matter
    assert len(set(ids(first))) == 20
    assert ids(first) != ids(other)


frames = st.lists(
    st.tuples(
        st.text(alphabet="0123456789AB企业", min_size=1, max_size=6),
        st.sampled_from(["重点企业", "个体户", "乡镇"]),
        st.integers(min_value=0, max_value=500).map(str),
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda t: t[0],
)


@settings(max_examples=150, deadline=None)
@given(rows=frames, n=st.integers(min_value=1, max_value=60), seed=st.text(max_size=12))
def test_the_auditor_snippet_agrees(rows: list[tuple[str, str, str]], n: int, seed: str) -> None:
    frame_rows = [FrameRow(*r) for r in rows]
    n = min(n, len(rows))
    assert SNIPPET["frame_hash"](rows) == frame_sha256(frame_rows)
    assert SNIPPET["simple"](rows, n, seed) == ids(run_method(frame_rows, "simple", n, seed))
    assert SNIPPET["systematic"](rows, n, seed) == ids(run_method(frame_rows, "systematic", n, seed))
    assert SNIPPET["stratified"](rows, n, seed) == ids(run_method(frame_rows, "stratified", n, seed))
    try:
        ours = ids(run_method(frame_rows, "pps", n, seed))
    except SamplingError:
        return  # too few positive sizes: refused, nothing to compare
    assert SNIPPET["pps"](rows, n, seed) == ours
    drawn = set(ours)
    gone = sorted(drawn)[:2]
    if len(rows) - len(drawn) >= len(gone):
        pairs = replacements(
            frame_rows, drawn, [r for r in frame_rows if r.roster_id in gone], seed, same_stratum=False
        )
        assert SNIPPET["replace"](rows, drawn, gone, seed, False) == [new.roster_id for _, new in pairs]


def test_fixed_allocation_10_5_3() -> None:
    rows = frame(90, ("重点企业", "个体户", "乡镇"))
    picked = run_method(rows, "stratified", 18, "20260705", {"重点企业": 10, "个体户": 5, "乡镇": 3})
    assert Counter(r.stratum for r in picked) == {"重点企业": 10, "个体户": 5, "乡镇": 3}
    auditor_ids = SNIPPET["stratified"](
        triples(rows), 18, "20260705", {"重点企业": 10, "个体户": 5, "乡镇": 3}
    )
    assert auditor_ids == ids(picked)


def test_allocation_must_fit_the_frame() -> None:
    rows = frame(9, ("A", "B", "C"))
    with pytest.raises(SamplingError, match="stratum 'A': 4 wanted, 3 on the roster"):
        run_method(rows, "stratified", 5, "s", {"A": 4, "B": 1})


def test_systematic_has_an_equal_interval() -> None:
    rows = frame(100)
    picked = ids(run_method(rows, "systematic", 10, "seed"))
    positions = [int(p[1:]) for p in picked]
    assert [b - a for a, b in itertools.pairwise(positions)] == [10] * 9


def test_pps_favours_large_units() -> None:
    # Inclusion probability is n·size/total: a unit ten times larger is drawn ~ten times as often.
    rows = [FrameRow(f"U{i:02d}", "", "100" if i < 5 else "10") for i in range(50)]
    hits = Counter(r.roster_id for s in range(400) for r in draw_pps(rows, 5, f"seed-{s}"))
    large = sum(hits[f"U{i:02d}"] for i in range(5)) / 5
    small = sum(hits[f"U{i:02d}"] for i in range(5, 50)) / 45
    # Expected: 400·5·100/950 ≈ 210.5 and 400·5·10/950 ≈ 21.05 per unit.
    assert 180 < large < 240
    assert 15 < small < 27


def test_pps_takes_a_unit_wider_than_the_interval_with_certainty() -> None:
    rows = [FrameRow("BIG", "", "1000"), *(FrameRow(f"u{i}", "", "1") for i in range(20))]
    for s in range(20):
        picked = ids(draw_pps(rows, 3, str(s)))
        assert "BIG" in picked
        assert len(picked) == 3


# --- the store and the CLI ---------------------------------------------------------------


def recipients_roster(tmp_path: Path, n: int = 60) -> Path:
    kinds = ("重点企业", "个体户", "乡镇")
    return write_roster(
        tmp_path / "recipients.csv",
        [{"编号": f"R{i:03d}", "类别": kinds[i % 3], "规模": str(10 + i)} for i in range(n)],
    )


def in_sample(store: Store, tier: str = "recipients") -> int:
    return count(store, "SELECT count(*) FROM respondent WHERE tier_code = :t AND in_sample", t=tier)


def test_draw_is_recorded_and_rerun_is_a_no_op(
    branch_store: Store, branch_spec: CampaignSpec, tmp_path: Path
) -> None:
    url = branch_store.url
    assert (
        invoke(
            ["roster", "import", "branch-2026", "recipients", str(recipients_roster(tmp_path))], url=url
        ).code
        == 0
    )
    args = [
        "sample",
        "draw",
        "branch-2026",
        "--tier",
        "recipients",
        "--seed",
        "318",
        "--strata",
        "类别",
        "--allocate",
        "重点企业=10,个体户=5,乡镇=3",
        "--out",
        str(tmp_path / "s.csv"),
    ]
    first = invoke(args, url=url)
    assert first.code == 0, first.stderr
    assert "18 of 60" in first.stdout
    assert "seed: 318" in first.stdout
    assert in_sample(branch_store) == 18
    written = (tmp_path / "s.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(written) == 19
    assert written[0] == "position,roster_id,stratum"
    again = invoke(args, url=url)
    assert again.code == 0
    assert "already recorded" in again.stdout
    assert count(branch_store, "SELECT count(*) FROM sample_draw") == 1
    assert count(branch_store, "SELECT count(*) FROM sample_member") == 18
    other = invoke([*args[:5], "--seed", "319", *args[7:]], url=url)
    assert other.code == 2
    assert "drawn before" in other.stderr
    with branch_store.engine.connect() as connection:
        draw = connection.execute(sa.select(SAMPLE_DRAW)).one()
        audit = connection.execute(
            sa.select(AUDIT.c.detail).where(AUDIT.c.action == "sample.draw")
        ).scalar_one()
    assert draw.method == "stratified"
    assert draw.params["allocation"] == {
        "个体户": 5,
        "乡镇": 3,
        "重点企业": 10,
    }
    assert "R0" not in str(audit)  # no roster id in the log
    # The report lists the draw and its seed, and no roster id.
    report = invoke(["report", "branch-2026", "--json"], url=url)
    assert report.code == 0, report.stdout
    assert '"seed": "318"' in report.stdout
    assert "R00" not in report.stdout


def test_replacement_keeps_the_original_draw(branch_store: Store, tmp_path: Path) -> None:
    url = branch_store.url
    invoke(["roster", "import", "branch-2026", "recipients", str(recipients_roster(tmp_path))], url=url)
    assert (
        invoke(
            [
                "sample",
                "draw",
                "branch-2026",
                "--tier",
                "recipients",
                "--size",
                "6",
                "--seed",
                "s",
                "--out",
                str(tmp_path / "s.csv"),
            ],
            url=url,
        ).code
        == 0
    )
    drawn = [
        line.split(",")[1] for line in (tmp_path / "s.csv").read_text(encoding="utf-8-sig").splitlines()[1:]
    ]
    with branch_store.engine.connect() as connection:
        before = connection.execute(sa.select(SAMPLE_MEMBER).order_by(SAMPLE_MEMBER.c.id)).all()
    result = invoke(
        [
            "sample",
            "replace",
            "branch-2026",
            "--tier",
            "recipients",
            drawn[0],
            drawn[3],
            "--out",
            str(tmp_path / "r.csv"),
        ],
        url=url,
    )
    assert result.code == 0, result.stderr
    with branch_store.engine.connect() as connection:
        after = connection.execute(
            sa.select(SAMPLE_MEMBER)
            .where(SAMPLE_MEMBER.c.id.in_([m.id for m in before]))
            .order_by(SAMPLE_MEMBER.c.id)
        ).all()
        replacement = connection.execute(
            sa.select(SAMPLE_DRAW).where(SAMPLE_DRAW.c.kind == "replacement")
        ).one()
    assert after == before  # the original draw is intact
    assert replacement.replaces_draw_id == before[0].draw_id
    assert replacement.size == 2
    assert in_sample(branch_store) == 6
    new = [
        line.split(",")[1] for line in (tmp_path / "r.csv").read_text(encoding="utf-8-sig").splitlines()[1:]
    ]
    # The auditor's rule: the next never-drawn rows in the seed's order.
    rows = [(f"R{i:03d}", "", "") for i in range(60)]
    assert new == SNIPPET["replace"](rows, set(drawn), [drawn[0], drawn[3]], "s", False)
    # Replaced twice? No: they are no longer in the sample.
    again = invoke(["sample", "replace", "branch-2026", "--tier", "recipients", drawn[0]], url=url)
    assert again.code == 2
    assert "not in the current sample" in again.stderr
    assert drawn[0] not in again.stderr
    report = invoke(["report", "branch-2026"], url=url)
    assert report.code == 0, report.stdout
    assert "in-sample respondents match the recorded draws" in report.stdout


def test_not_sampled_ballots_are_kept_invalid(
    branch_store: Store, branch_spec: CampaignSpec, tmp_path: Path
) -> None:
    url = branch_store.url
    invoke(["roster", "import", "branch-2026", "recipients", str(recipients_roster(tmp_path, 12))], url=url)
    assert (
        invoke(
            [
                "sample",
                "draw",
                "branch-2026",
                "--tier",
                "recipients",
                "--size",
                "3",
                "--seed",
                "x",
                "--out",
                str(tmp_path / "s.csv"),
            ],
            url=url,
        ).code
        == 0
    )
    drawn = {
        line.split(",")[1] for line in (tmp_path / "s.csv").read_text(encoding="utf-8-sig").splitlines()[1:]
    }
    outsider = next(f"R{i:03d}" for i in range(12) if f"R{i:03d}" not in drawn)
    insider = sorted(drawn)[0]
    ingest(branch_store, ballot(branch_spec, "api-1", Identity("roster_id", insider), channel="api"))
    ingest(branch_store, ballot(branch_spec, "api-2", Identity("roster_id", outsider), channel="api"))
    assert (
        count(branch_store, "SELECT count(*) FROM ballot WHERE status = 'invalid' AND reason = 'not_sampled'")
        == 1
    )
    report = invoke(["report", "branch-2026", "--json"], url=url)
    assert report.code == 0
    assert '"invalid:not_sampled": 1' in report.stdout
    # Once ballots exist, the sample cannot be drawn again, even with --force.
    redraw = invoke(
        ["sample", "draw", "branch-2026", "--tier", "recipients", "--size", "3", "--seed", "y", "--force"],
        url=url,
    )
    assert redraw.code == 2
    assert "cannot be drawn again" in redraw.stderr


def test_draw_refuses_a_tier_that_is_not_drawn(branch_store: Store) -> None:
    result = invoke(
        ["sample", "draw", "branch-2026", "--tier", "peers", "--size", "3", "--seed", "x"],
        url=branch_store.url,
    )
    assert result.code == 2
    assert "not drawn" in result.stderr


def test_respondents_rows_are_untouched_outside_the_tier(branch_store: Store, tmp_path: Path) -> None:
    url = branch_store.url
    invoke(["roster", "import", "branch-2026", "recipients", str(recipients_roster(tmp_path, 10))], url=url)
    write_roster(tmp_path / "peers.csv", [{"编号": "P1", "单位": "S01"}, {"编号": "P2", "单位": "S02"}])
    invoke(["roster", "import", "branch-2026", "peers", str(tmp_path / "peers.csv")], url=url)
    assert (
        invoke(
            ["sample", "draw", "branch-2026", "--tier", "recipients", "--size", "2", "--seed", "x"], url=url
        ).code
        == 0
    )
    assert in_sample(branch_store, "peers") == 2
    with branch_store.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(RESPONDENT)).scalar_one()
    assert total == 12
