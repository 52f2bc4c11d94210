"""
Bench: photocopy detection (`collect dedupe scan`) and `collect report` on 11,436 forms (the
sources' campaign, 602 photocopies) and on 1 M ballots. Rows are generated in bulk straight
into a SQLite file (not through ingest(): that is not what is measured).

    .venv/bin/python bench/dedupe.py [--ballots 1000000] [--only N]

Each size runs in its own process so its peak memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collect.campaign import CampaignSpec, load_campaign_file  # noqa: E402
from collect.dedupe.clusters import scan  # noqa: E402
from collect.dedupe.report import build_report, headline  # noqa: E402
from collect.settings import Settings  # noqa: E402
from collect.store import Store  # noqa: E402
from collect.store.campaigns import save_campaign  # noqa: E402
from collect.store.migrate import upgrade  # noqa: E402
from collect.store.tables import ANSWER, BALLOT, SUBMISSION  # noqa: E402

LEVELS = ("satisfied", "fairly_satisfied", "basically_satisfied", "not_very_satisfied", "dissatisfied")
WEIGHTS = (0.45, 0.25, 0.15, 0.1, 0.05)
DISTRIBUTIONS = ("units", "booths", "county", "volunteers", "newspaper")
PLANTED = (300, 150, 100, 40, 10, 2)  # 602 photocopies, as in the source


def spec() -> CampaignSpec:
    base = load_campaign_file(str(ROOT / "collect" / "examples" / "branch-office.toml"))
    data = base.model_dump(mode="json")
    data["code"] = "bench"
    data["tiers"] = [*data["tiers"], {"code": "public", "zh": "社会公众", "weight": 0.0, "source": "open"}]
    return CampaignSpec.model_validate(data)


def generate(store: Store, campaign: CampaignSpec, forms: int) -> None:
    rng = random.Random(20260705)
    units = [u.code for u in campaign.units]
    vectors = [tuple(rng.choices(LEVELS, WEIGHTS, k=len(units))) for _ in range(forms - sum(PLANTED))]
    for copies in PLANTED:
        vectors.extend([vectors[rng.randrange(len(vectors))]] * copies)
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    with store.engine.begin() as connection:
        campaign_id = connection.execute(sa.text("SELECT id FROM campaign WHERE code = 'bench'")).scalar_one()
        for start in range(0, forms, 20_000):
            chunk = range(start, min(forms, start + 20_000))
            connection.execute(
                sa.insert(SUBMISSION),
                [
                    {
                        "id": i + 1,
                        "campaign_code": "bench",
                        "channel": "paper",
                        "external_id": f"form-{i}",
                        "content_sha256": f"{i:064x}",
                        "received_at": t0,
                        "answered_at": t0 + timedelta(seconds=i),
                        "payload": {},
                        "status": "accepted",
                        "receipt": f"R{i:09d}",
                        "deliveries": 1,
                        "meta": {"distribution": DISTRIBUTIONS[i % 5]},
                    }
                    for i in chunk
                ],
            )
            ballots, answers = [], []
            for i in chunk:
                for j, unit in enumerate(units):
                    ballot_id = i * len(units) + j + 1
                    ballots.append(
                        {
                            "id": ballot_id,
                            "campaign_id": campaign_id,
                            "submission_id": i + 1,
                            "unit_code": unit,
                            "tier_code": "public",
                            "voter_key": f"t{i:063x}",
                            "voter_kind": "transaction",
                            "channel": "paper",
                            "answered_at": t0 + timedelta(seconds=i),
                            "received_at": t0,
                            "status": "counted",
                            "reason": None,
                            "meta": {"distribution": DISTRIBUTIONS[i % 5]},
                        }
                    )
                    answers.append(
                        {
                            "ballot_id": ballot_id,
                            "aspect_code": "overall",
                            "level_code": vectors[i][j],
                            "points": None,
                            "dont_know": False,
                        }
                    )
            connection.execute(sa.insert(BALLOT), ballots)
            connection.execute(sa.insert(ANSWER), answers)


def run_one(forms: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        store = Store(Settings(database_url=url, secret_key="bench-secret-key-0123456789abcdef"))
        campaign = spec()
        with store.engine.begin() as connection:
            save_campaign(connection, campaign, actor="bench")
        t = time.perf_counter()
        generate(store, campaign, forms)
        generated = time.perf_counter() - t
        t = time.perf_counter()
        result = scan(store, "bench", channels=["paper"])
        scanned = time.perf_counter() - t
        t = time.perf_counter()
        report = build_report(store, "bench")
        reported = time.perf_counter() - t
        store.dispose()
    return {
        "forms": forms,
        "ballots": forms * len(campaign.units),
        "generate_s": round(generated, 2),
        "scan_s": round(scanned, 2),
        "report_s": round(reported, 2),
        "clusters": [c.observed for c in result.clusters],
        "flagged_forms": result.flagged_forms,
        "headline": headline(report.forms["total"]),
        "checks_ok": report.ok,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ballots", type=int, default=1_000_000)
    parser.add_argument("--only", type=int, help="(internal) run one size, in forms")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only), ensure_ascii=False))
        return
    for forms in (11_436, -(-args.ballots // 7)):
        out = subprocess.run(
            [sys.executable, __file__, "--only", str(forms)], capture_output=True, text=True, check=True
        ).stdout
        row = json.loads(out)
        print(
            f"{row['forms']:>9,} forms / {row['ballots']:>9,} ballots: scan {row['scan_s']} s, "
            f"report {row['report_s']} s, peak {row['peak_rss_mb']} MB (bulk load {row['generate_s']} s)\n"
            f"    clusters {row['clusters']}; {row['headline']}; "
            f"checks {'ok' if row['checks_ok'] else 'FAILED'}"
        )


if __name__ == "__main__":
    main()
