"""`collect demo --no-serve`: the whole job on a fresh SQLite file, as a new user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa


def _collect(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECT_", "TWILIO_"))}
    return subprocess.run(
        [sys.executable, "-m", "collect", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_runs_end_to_end_and_is_repeatable(tmp_path: Path) -> None:
    first = _collect(["demo", "--no-serve"], tmp_path)
    assert first.returncode == 0, first.stderr
    db = tmp_path / "collect.db"
    assert db.exists()
    for unit in ("S01", "S02", "S03", "S04", "O01", "O02", "O03"):
        assert unit in first.stdout
    assert "inputs sha256" in first.stdout

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        counted = connection.execute(
            sa.text("SELECT count(*) FROM ballot WHERE status = 'counted'")
        ).scalar_one()
        superseded = connection.execute(
            sa.text("SELECT count(*) FROM ballot WHERE status = 'superseded'")
        ).scalar_one()
        channels = set(connection.execute(sa.text("SELECT DISTINCT channel FROM submission")).scalars())
    engine.dispose()
    assert counted > 100
    assert superseded > 0  # supervisors who answered on the web and through the liaison API
    assert {"web", "api", "phone"} <= channels

    # The same scores from the published command, and nothing added by a second run.
    scored = _collect(["score", "branch-2026", "--format", "json"], tmp_path)
    assert scored.returncode == 0, scored.stderr
    units = json.loads(scored.stdout)["units"]
    assert sorted(u["unit"] for u in units) == ["O01", "O02", "O03", "S01", "S02", "S03", "S04"]
    again = _collect(["demo", "--no-serve"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already in this database" in again.stdout
    rescored = _collect(["score", "branch-2026", "--format", "json"], tmp_path)
    assert json.loads(rescored.stdout)["inputs_sha256"] == json.loads(scored.stdout)["inputs_sha256"]
