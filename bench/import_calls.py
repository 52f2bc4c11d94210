"""
Bench: `collect import calls` on a generated GBK CSV, end to end (sniff, transcode, adapter,
ingest_stream, audit), against a raw `executemany` insert of the same rows into the same kind of
database (a fresh SQLite file each, same pragmas). Prints rows/s, the ratio and peak memory.

    .venv/bin/python bench/import_calls.py [--rows 100000] [--rows 1000000] [--profile-out FILE]

Each size, and within it the raw baseline, runs in a process of its own, so the peak memory
(ru_maxrss) printed is the import's alone (the baseline holds every row in a list). Target:
ratio ≥ 0.3, and memory flat as the file grows (compare the sizes).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-only-secret-key-0123456789abcdef"
HEADER = ["呼叫编号", "手机号码", "呼叫时间", "通话结果", "测评单位", "总体评价"]
PROFILE = """\
vendor = "bench"
[columns]
call_id = "呼叫编号"
phone = "手机号码"
called_at = "呼叫时间"
outcome = "通话结果"
unit = "测评单位"
[[answers]]
column = "总体评价"
aspect = "overall"
"""


def write_gbk_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Distinct respondents, all units, 95 % completed calls, a title row and a totals row."""
    rng = random.Random(seed)
    units = [
        "城东工商所",
        "城西工商所",
        "城南工商所",
        "城北工商所",
        "注册登记科",
        "市场规范管理科",
        "消费者权益保护科",
    ]
    outcomes = ["成功"] * 19 + ["拒访"]
    start = datetime(2026, 9, 1, 8, 0)
    with path.open("w", encoding="gbk", newline="") as handle:
        handle.write("2026年第三季度电话抽样调查结果,,,,,\n")
        handle.write(",".join(HEADER) + "\n")
        for n in range(rows):
            phone = f"13{n // 100_000_000 % 10}{n % 100_000_000:08d}"
            at = start + timedelta(seconds=n * 3)
            handle.write(
                f"C{n:08d},{phone},{at:%Y-%m-%d %H:%M:%S},{rng.choice(outcomes)},"
                f"{units[n % len(units)]},{rng.randint(1, 5)}\n"
            )
        handle.write(f"合计,,,,,{rows}\n")


def run_raw(rows: int, workdir: Path) -> float:
    """The baseline, in its own process: seconds for the raw executemany of the file's rows."""
    from collect.store.migrate import upgrade

    csv_path = workdir / f"calls-{rows}.csv"
    base_db = workdir / f"raw-{rows}.db"
    upgrade(f"sqlite:///{base_db}")
    t0 = time.perf_counter()
    _raw_insert(base_db, csv_path)
    return time.perf_counter() - t0


def run_one(rows: int, workdir: Path) -> dict[str, float]:
    from collect.campaign import load_campaign_file
    from collect.imports import import_calls, read_profile
    from collect.settings import Settings
    from collect.store import Store
    from collect.store.campaigns import save_campaign
    from collect.store.migrate import upgrade
    from tests.store.factories import campaign_spec

    csv_path = workdir / f"calls-{rows}.csv"
    write_gbk_csv(csv_path, rows)
    profile_path = workdir / "bench.profile.toml"
    profile_path.write_text(PROFILE, encoding="utf-8")
    spec = campaign_spec(
        load_campaign_file(str(ROOT / "collect/examples/branch-office.toml")),
        code="bench-calls",
        open_tier=True,
    )

    # Baseline: the same rows, parsed by the csv module, inserted raw with executemany.
    child = subprocess.run(
        [sys.executable, __file__, "--raw", str(rows), "--dir", str(workdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    raw_seconds = float(child.stdout.strip().splitlines()[-1])

    db = workdir / f"import-{rows}.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    store = Store(Settings(database_url=url, secret_key=SECRET))
    with store.engine.begin() as connection:
        save_campaign(connection, spec, actor="bench")
    t0 = time.perf_counter()
    report = import_calls(store, spec.code, csv_path, profile=read_profile(profile_path), actor="bench")
    seconds = time.perf_counter() - t0
    store.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": rows,
        "import_s": round(seconds, 2),
        "import_rows_per_s": round(rows / seconds),
        "raw_s": round(raw_seconds, 2),
        "raw_rows_per_s": round(rows / raw_seconds),
        "ratio": round(raw_seconds / seconds, 4),
        "peak_mb": round(peak_mb),
        "accepted": report.accepted,
        "quarantined": report.quarantined,
    }


def _raw_insert(db: Path, csv_path: Path) -> None:
    """What the database can take: one executemany of submission rows, no checks, no keys."""
    import csv

    now = datetime.now(UTC).isoformat()
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    with csv_path.open(encoding="gbk", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        next(reader)
        rows = [
            (
                "bench-calls",
                "phone",
                f"bench:{r[0]}",
                f"{n:064x}",
                now,
                r[2],
                json.dumps(dict(zip(HEADER, r, strict=True)), ensure_ascii=False),
                "accepted",
                f"R{n:08d}",
                1,
            )
            for n, r in enumerate(reader)
            if r[0] != "合计"
        ]
    with connection:
        connection.executemany(
            "INSERT INTO submission (campaign_code, channel, external_id, content_sha256, received_at, "
            "answered_at, payload, status, receipt, deliveries) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, action="append", help="rows per file (repeatable)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    parser.add_argument("--raw", type=int, help=argparse.SUPPRESS)  # grandchild: the baseline
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw:
        print(run_raw(args.raw, args.dir))
        return
    if args.one:
        with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
            print(json.dumps(run_one(args.one, Path(tmp))))
        return
    results = []
    for rows in args.rows or [100_000]:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(rows)], capture_output=True, text=True, check=True
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(f"{'rows':>9} {'import/s':>9} {'raw/s':>9} {'ratio':>7} {'peak MB':>8}")
    for r in results:
        print(
            f"{r['rows']:>9} {r['import_rows_per_s']:>9} {r['raw_rows_per_s']:>9} "
            f"{r['ratio']:>7} {r['peak_mb']:>8}"
        )


if __name__ == "__main__":
    main()
