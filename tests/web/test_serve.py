"""`collect serve` refuses to start without a secret key, before it binds a port."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import collect.cli.serve  # noqa: F401  (registers the command until main() imports it)
from collect.cli import Exit, load_commands
from collect.cli.errors import run


def test_serve_without_a_secret_key_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COLLECT_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "COLLECT_SECRET_KEY": ""}
    with runner.isolation(env=env) as (_out, err, _mixed):
        code = run(load_commands(), ["serve", "--port", "8765"])
        message = err.getvalue().decode()
    assert code == Exit.USAGE
    assert "COLLECT_SECRET_KEY" in message
    assert not (tmp_path / "c.db").exists()  # refused before touching the database
