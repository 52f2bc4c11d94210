"""Turns what commands raise into contract.md's exit codes and one clear line on stderr."""

from __future__ import annotations

import click
from rich.console import Console

from collect.campaign import CampaignFileError
from collect.settings import MissingSecretKey
from collect.store.engine import DatabaseUnreachable

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class CommandFailed(click.ClickException):
    """A command refused its input whole (exit 2), with a message naming what and where."""

    exit_code = 2


class Problems(Exception):
    """The command ran and reported problems (exit 1); the report is already printed."""


def run(group: click.Group, args: list[str] | None = None) -> int:
    from collect.cli import Exit

    try:
        result = group.main(args=args, prog_name="collect", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        stderr.print("aborted")
        return int(Exit.PROBLEMS)
    except click.ClickException as exc:
        exc.show()
        return int(Exit.USAGE) if exc.exit_code in (1, 2) else int(exc.exit_code)
    except CampaignFileError as exc:
        stderr.print(str(exc))
        return int(Exit.USAGE)
    except MissingSecretKey as exc:
        stderr.print(f"error: {exc}")
        return int(Exit.USAGE)
    except DatabaseUnreachable as exc:
        stderr.print(f"error: {exc}")
        return int(Exit.UNREACHABLE)
    except Problems:
        return int(Exit.PROBLEMS)
    return int(result) if isinstance(result, int) else int(Exit.OK)
