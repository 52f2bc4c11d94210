"""
Benchmark of `collect score` (issue 4): N answers (default 10 M: 200 units × 4 tiers × 5
aspects) stored in a real database, scored end to end, against (a) connectorx read of the same
rows + a bare polars group-by and (b) a straightforward pandas rule A (read_sql + groupby).

    .venv/bin/python bench/score.py [--answers 10000000] [--db PATH | --url URL] [--keep]

Each timed job runs in its own process, so its peak memory (ru_maxrss) is its own. Data is
bulk-inserted with executemany (not ingest(): that is per ballot, for correctness, not speed).
Targets: collect score ≤ 1.5 × (a) and ≥ 10 × faster than (b).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CODE = "bench"
LEVELS = [
    ("satisfied", 100),
    ("fairly_satisfied", 80),
    ("basically_satisfied", 60),
    ("not_very", 40),
    ("dissatisfied", 0),
]
TIERS = [("peers", 0.2), ("leaders", 0.2), ("recipients", 0.3), ("supervisors", 0.3)]
SECRET = "bench-secret-key-not-for-production-0123456789"


def spec_dict(units: int, aspects: int) -> dict[str, Any]:
    return {
        "code": CODE,
        "name": "benchmark campaign",
        "opens_at": "2026-07-01T00:00:00+08:00",
        "closes_at": "2026-12-31T23:59:59+08:00",
        "scale": {
            "kind": "levels",
            "levels": [{"code": c, "zh": c, "en": c, "value": v} for c, v in LEVELS],
            "satisfied": ["satisfied", "fairly_satisfied"],
        },
        "aspects": [{"code": f"a{i}", "zh": f"方面{i}"} for i in range(aspects)],
        "groups": [{"code": "g1", "zh": "甲组"}, {"code": "g2", "zh": "乙组"}],
        "units": [
            {"code": f"U{i:04d}", "name": f"单位{i}", "group": "g1" if i % 2 else "g2"} for i in range(units)
        ],
        "tiers": [{"code": c, "zh": c, "weight": w} for c, w in TIERS],
        "scoring": {
            "rule": "level_rates",
            "decimals": 4,
            "top_n": 5,
            "bottom_n": 5,
            "ci": {"method": "analytic"},
        },
    }


def populate(url: str, answers: int, units: int, aspects: int) -> None:
    """Schema by migration, campaign by save_campaign, ballots and answers by bulk insert."""
    import sqlalchemy as sa

    from collect.campaign import CampaignSpec
    from collect.store.campaigns import save_campaign
    from collect.store.engine import make_engine
    from collect.store.migrate import upgrade
    from collect.store.tables import BALLOT, CAMPAIGN, SUBMISSION

    upgrade(url)
    spec = CampaignSpec.model_validate(spec_dict(units, aspects))
    engine = make_engine(url)
    now = datetime(2026, 9, 1, tzinfo=UTC)
    with engine.begin() as connection:
        save_campaign(connection, spec, actor="bench")
        campaign_id = connection.execute(sa.select(CAMPAIGN.c.id).where(CAMPAIGN.c.code == CODE)).scalar_one()
        submission_id = connection.execute(
            sa.insert(SUBMISSION)
            .values(
                campaign_code=CODE,
                channel="paper",
                external_id="bench",
                content_sha256="0" * 64,
                received_at=now,
                payload={},
                status="accepted",
                receipt="BENCH",
            )
            .returning(SUBMISSION.c.id)
        ).scalar_one()
    rng = np.random.default_rng(20260701)
    n_ballots = answers // aspects
    chunk = 200_000
    sqlite = url.startswith("sqlite")
    # SQLAlchemy's SQLite DateTime text format, so the app reads these rows like its own.
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now
    ballot_columns = (
        "id, campaign_id, submission_id, unit_code, tier_code, voter_key, voter_kind, channel, "
        "answered_at, received_at, status"
    )
    answer_columns = "ballot_id, aspect_code, level_code, dont_know"
    with engine.begin() as connection:
        first_id = (
            int(connection.execute(sa.select(sa.func.coalesce(sa.func.max(BALLOT.c.id), 0))).scalar_one()) + 1
        )
        raw = connection.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        for start in range(0, n_ballots, chunk):
            count = min(chunk, n_ballots - start)
            ids = list(range(first_id + start, first_id + start + count))
            unit_idx = rng.integers(0, units, count).tolist()
            tier_idx = rng.integers(0, len(TIERS), count).tolist()
            channel_idx = rng.integers(0, 4, count).tolist()
            channels = ("web", "sms", "phone", "paper")
            ballots = [
                (
                    i,
                    campaign_id,
                    submission_id,
                    f"U{u:04d}",
                    TIERS[t][0],
                    f"v{i}",
                    "respondent",
                    channels[c],
                    stamp,
                    stamp,
                    "counted",
                )
                for i, u, t, c in zip(ids, unit_idx, tier_idx, channel_idx, strict=True)
            ]
            # Level probabilities skewed towards satisfied, as real campaigns are.
            levels = rng.choice(len(LEVELS), size=(count, aspects), p=[0.5, 0.25, 0.15, 0.07, 0.03]).tolist()
            rows = [
                (i, f"a{a}", LEVELS[lv][0], False)
                for i, row in zip(ids, levels, strict=True)
                for a, lv in enumerate(row)
            ]
            if sqlite:
                cursor.executemany(
                    f"INSERT INTO ballot ({ballot_columns}) VALUES ({', '.join('?' * 11)})", ballots
                )
                cursor.executemany(f"INSERT INTO answer ({answer_columns}) VALUES (?, ?, ?, ?)", rows)
            else:
                with cursor.copy(f"COPY ballot ({ballot_columns}) FROM STDIN") as copy:
                    for record in ballots:
                        copy.write_row(record)
                with cursor.copy(f"COPY answer ({answer_columns}) FROM STDIN") as copy:
                    for answer_row in rows:
                        copy.write_row(answer_row)
        if not sqlite:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('ballot', 'id'), (SELECT max(id) FROM ballot))"
            )
        cursor.close()
    engine.dispose()


def job_collect_score(url: str, out: str) -> None:
    from collect.cli import cli
    from collect.cli import results as _results  # noqa: F401  (registers `score`)
    from collect.cli.errors import run

    os.environ.update({"COLLECT_DATABASE_URL": url, "COLLECT_SECRET_KEY": SECRET})
    code = run(cli, ["score", CODE, "--format", "json", "--out", out, "--computed-at", "bench"])
    if code:
        raise SystemExit(f"collect score exited {code}")


def job_connectorx_groupby(url: str) -> None:
    import polars as pl

    from aggregate.reader import load_spec, read_rows
    from collect.store.engine import make_engine

    # The same read as `collect score` (reader.read_rows), then the barest group-by.
    stored = load_spec(make_engine(url), CODE)
    frame = read_rows(url, stored.id)
    frame.group_by("unit", "tier", "level").agg(pl.len())


def job_pandas_rule_a(url: str) -> None:
    import pandas as pd
    import sqlalchemy as sa

    from aggregate.reader import load_spec
    from collect.store.engine import make_engine

    engine = make_engine(url)
    stored = load_spec(engine, CODE)
    query = (
        "SELECT b.unit_code AS unit, b.tier_code AS tier, a.aspect_code AS aspect, a.level_code AS level "
        "FROM ballot b JOIN answer a ON a.ballot_id = b.id "
        f"WHERE b.campaign_id = {int(stored.id)} AND b.status = 'counted'"
    )
    with engine.connect() as connection:
        df = pd.read_sql(sa.text(query), connection)
    pandas_rule_a(df)


def pandas_rule_a(df: Any) -> Any:
    """Rule A the straightforward pandas way: rates per unit and tier, weighted, × values."""
    counts = df.groupby(["unit", "tier", "level"]).agg(n=("aspect", "size")).reset_index()
    total = counts.groupby(["unit", "tier"])["n"].transform("sum")
    counts["rate"] = counts["n"] / total
    counts["value"] = counts["level"].map(dict(LEVELS))
    counts["weight"] = counts["tier"].map(dict(TIERS))
    counts["part"] = counts["rate"] * counts["value"] * counts["weight"]
    scores = counts.groupby("unit")["part"].sum().round(4).sort_values(ascending=False)
    return scores.rank(method="min", ascending=False)


def job_compute_only(url: str) -> dict[str, float]:
    """Both engines on rows already in memory: the engine's own cost, without the read."""
    from aggregate.reader import load_spec, read_answers
    from aggregate.result import compute
    from collect.store.engine import make_engine

    stored = load_spec(make_engine(url), CODE)
    answers = read_answers(url, stored).collect()
    started = time.perf_counter()
    compute(answers, stored.spec, computed_at="bench")
    engine_seconds = time.perf_counter() - started
    frame = answers.select("unit", "tier", "aspect", "level").to_pandas()
    started = time.perf_counter()
    pandas_rule_a(frame)
    return {"engine_seconds": engine_seconds, "pandas_seconds": time.perf_counter() - started}


def run_job(name: str, url: str, out: str) -> dict[str, float]:
    """Run one job in a fresh process; returns its wall time and peak RSS."""
    command = [sys.executable, __file__, "--job", name, "--url", url, "--out", out]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--answers", type=int, default=10_000_000)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--aspects", type=int, default=5)
    parser.add_argument("--db", help="SQLite file to create (default: a temporary one)")
    parser.add_argument("--url", help="a database URL instead (e.g. postgresql+psycopg://…, empty schema)")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--reuse", action="store_true", help="score an already populated --db/--url")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--populate-only", action="store_true", help="generate the data, time nothing")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.job:
        started = time.perf_counter()
        extra: dict[str, float] = {}
        if args.job == "score":
            job_collect_score(args.url, args.out)
        elif args.job == "cx":
            job_connectorx_groupby(args.url)
        elif args.job == "pandas":
            job_pandas_rule_a(args.url)
        else:
            extra = job_compute_only(args.url)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **extra}))
        return

    workdir = Path(tempfile.mkdtemp(prefix="collect-bench-"))
    url = args.url or f"sqlite:///{Path(args.db).resolve() if args.db else workdir / 'bench.db'}"
    if not args.reuse:
        started = time.perf_counter()
        populate(url, args.answers, args.units, args.aspects)
        print(f"populated {args.answers:,} answers in {time.perf_counter() - started:.1f} s ({url})")
        if args.populate_only:
            return
    out = str(workdir / "scores.json")
    results = {
        "collect score": run_job("score", url, out),
        "(a) connectorx + group-by": run_job("cx", url, out),
    }
    if not args.skip_pandas:
        results["(b) pandas rule A"] = run_job("pandas", url, out)
    print(f"{'job':28} {'seconds':>9} {'peak MB':>9}")
    for name, figures in results.items():
        print(f"{name:28} {figures['seconds']:9.2f} {figures['peak_mb']:9.0f}")
    score = results["collect score"]["seconds"]
    print(
        f"collect score / (a) = {score / results['(a) connectorx + group-by']['seconds']:.2f}  (target ≤ 1.5)"
    )
    if "(b) pandas rule A" in results:
        print(f"(b) / collect score = {results['(b) pandas rule A']['seconds'] / score:.1f}  (target ≥ 10)")
    if not args.skip_pandas:
        inner = run_job("compute", url, out)
        print(
            f"in memory, without the read: engine (rules, CI, hash) {inner['engine_seconds']:.2f} s, "
            f"pandas rule A alone {inner['pandas_seconds']:.2f} s"
        )
    doc = json.loads(Path(out).read_text(encoding="utf-8"))
    print(f"scored {len(doc['units'])} units; inputs_sha256 {doc['inputs_sha256'][:16]}…")
    # The work directory holds the JSON and, without --db/--url, the generated database.
    if not args.keep:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
