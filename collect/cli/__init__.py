"""
The `collect` command. One click group; each area adds its commands in its own module
(`collect/cli/<area>.py`) and one import line below.

Exit codes are those of contract.md: see `Exit`.
"""

from __future__ import annotations

import sys
from enum import IntEnum

import click

from collect.cli.context import AppContext, pass_app


class Exit(IntEnum):
    OK = 0
    PROBLEMS = 1  # ran, but found problems it reports (rows quarantined, a check failed)
    USAGE = 2  # bad usage or an invalid input file, refused whole
    UNREACHABLE = 3  # the database or a required service cannot be reached


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="collect")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """collect: 满意度测评 ballots from every channel, one store, reproducible scores."""
    ctx.obj = AppContext()
    ctx.call_on_close(ctx.obj.close)


def load_commands() -> click.Group:
    """Import every command module (each registers itself on `cli`)."""
    from collect.cli import campaign, dedupe, demo, imports, paper, people, qr, results, serve, sms  # noqa: F401

    return cli


def main() -> None:
    from collect.cli.errors import run

    sys.exit(run(load_commands()))


__all__ = ["AppContext", "Exit", "cli", "main", "pass_app"]
