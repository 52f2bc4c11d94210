"""Run `collect` in-process exactly as the console script does (same exit-code mapping)."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from collect.cli import load_commands
from collect.cli.errors import run
from tests.conftest import TEST_SECRET


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def invoke(args: list[str], *, url: str, input: str | None = None, **env: str) -> CliResult:
    runner = CliRunner()
    full_env = {
        "COLLECT_DATABASE_URL": url,
        "COLLECT_SECRET_KEY": TEST_SECRET,
        "COLLECT_PUBLIC_URL": "https://c.example.cn",
    }
    full_env.update(env)
    with runner.isolation(input=input, env=full_env) as (out, err, _mixed):
        code = run(load_commands(), args)
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())
