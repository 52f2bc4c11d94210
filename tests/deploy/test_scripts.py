"""
The deploy scripts as an operator runs them, against the real PostgreSQL: `run-local.sh` starts
the production topology (migration, then uvicorn workers), serves ballots and stops cleanly;
`backup.sh` + `restore-drill.sh` restore a backup and prove the scores identical, and say so
loudly when they are not.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import EXAMPLES, TEST_SECRET, require_pg

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVER = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECT_", "TWILIO_", "PROMETHEUS_"))}
    # The scripts call `collect`, as an operator's shell finds it: this environment's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLLECT_SECRET_KEY"] = TEST_SECRET
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )


@pytest.fixture
def database() -> Iterator[str]:
    """The name of a database that does not exist yet; dropped afterwards."""
    require_pg()
    name = f"collect_ci_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read().decode()


@pytest.mark.slow
def test_run_local_starts_serves_and_stops(database: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    env = environment(PORT=str(port), WORKERS="2", DB_NAME=database, COLLECT_RUN_DIR=str(tmp_path / "run"))
    started = run([str(DEPLOY / "run-local.sh"), "start"], env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"127.0.0.1:{port} (2 workers" in started.stdout
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        cli = environment(COLLECT_DATABASE_URL=url)
        loaded = run(
            [sys.executable, "-m", "collect", "campaign", "load", str(EXAMPLES / "service-windows.toml")], cli
        )
        assert loaded.returncode == 0, loaded.stderr
        made = run([sys.executable, "-m", "collect", "apikey", "create", "kiosk-1"], cli)
        assert made.returncode == 0, made.stderr
        key = next(w for w in made.stdout.split() if w.startswith("ck_"))
        body = {
            "campaign": "windows-2026",
            "source_ref": "kiosk-1/0001",
            "transaction": "ticket-0001",
            "answers": [{"unit": "SB", "aspect": "overall", "level": "very_satisfied"}],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/ballots",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201
            assert json.loads(answer.read())["outcome"] == "counted"
        with psycopg.connect(f"{SERVER}/{database}") as conn:
            counted = conn.execute("SELECT count(*) FROM ballot WHERE status = 'counted'").fetchone()
        assert counted == (1,)
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'collect_ballots{channel="api",status="counted"} 1.0' in metrics
        assert run([str(DEPLOY / "run-local.sh"), "status"], env).returncode == 0
        log = (tmp_path / "run" / "collect.log").read_text(encoding="utf-8")
        assert '"path": "/api/v1/ballots"' in log  # JSON request lines, from the workers
        assert key not in log
    finally:
        stopped = run([str(DEPLOY / "run-local.sh"), "stop"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert run([str(DEPLOY / "run-local.sh"), "status"], env).returncode == 1
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == ""  # no worker left behind


@pytest.fixture
def source(database: str, tmp_path: Path) -> str:
    """A populated database: a campaign and a few hundred API ballots, as libpq URL."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    cli = environment(COLLECT_DATABASE_URL=url)
    assert run([sys.executable, "-m", "collect", "db", "upgrade"], cli).returncode == 0
    assert (
        run(
            [sys.executable, "-m", "collect", "campaign", "load", str(EXAMPLES / "service-windows.toml")], cli
        ).returncode
        == 0
    )
    _cast(url, 300)
    return f"{SERVER}/{database}"


def _cast(url: str, n: int, start: int = 0) -> None:
    """`n` API ratings of distinct tickets, levels spread over the scale, through ingest()."""
    from datetime import UTC, datetime, timedelta

    from collect.ballot import Answer, BallotSubmission, Identity
    from collect.ingest import ingest_batch
    from collect.settings import Settings
    from collect.store import Store

    levels = ("very_satisfied", "satisfied", "basically_satisfied", "not_satisfied", "very_dissatisfied")
    units = ("SB", "GJJ", "BDC")
    now = datetime.now(UTC)
    items = [
        BallotSubmission(
            campaign="windows-2026",
            channel="api",
            source_ref=f"drill/{i}",
            identity=Identity("transaction", f"ticket-{i}"),
            answers=(Answer(unit=units[i % 3], aspect="overall", level=levels[i * 7 % 5]),),
            answered_at=now - timedelta(minutes=i % 600),
            received_at=now,
        )
        for i in range(start, start + n)
    ]
    store = Store(Settings(database_url=url, secret_key=TEST_SECRET))
    try:
        ingest_batch(store, items)
    finally:
        store.dispose()


@pytest.mark.slow
def test_backup_then_restore_drill(source: str, tmp_path: Path) -> None:
    scratch = f"{source.rsplit('/', 1)[1]}_drill"
    env = environment(COLLECT_PG_DSN=source)
    try:
        backup = run([str(DEPLOY / "backup.sh"), str(tmp_path / "backups")], env)
        assert backup.returncode == 0, backup.stderr
        dump = Path(backup.stdout.strip().splitlines()[-1])
        assert dump.is_file()
        assert Path(f"{dump}.sha256").is_file()
        drill = run([str(DEPLOY / "restore-drill.sh"), str(dump), source, scratch, "windows-2026"], env)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "windows-2026: identical after restore" in drill.stdout
        # Ballots arrive after the backup: the restored copy no longer scores like the live one.
        _cast(f"postgresql+psycopg://{source.removeprefix('postgresql://')}", 50, start=1000)
        stale = run([str(DEPLOY / "restore-drill.sh"), str(dump), source, scratch, "windows-2026"], env)
        assert stale.returncode == 1
        assert "DIFFERENT after restore" in stale.stderr
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
