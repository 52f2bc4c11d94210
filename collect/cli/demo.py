"""`collect demo`: the whole job on the embedded SQLite file, then the web UI."""

from __future__ import annotations

import click
from rich.console import Console

from collect.cli import cli, pass_app
from collect.cli.context import AppContext
from collect.settings import DEMO_SECRET_KEY, Settings

out = Console(highlight=False)
if not out.is_terminal:
    # Piped or captured: the score table has a dozen columns; don't squeeze it into 80.
    out = Console(highlight=False, width=170)


@cli.command("demo")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the web UI after the table.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@pass_app
def demo(app: AppContext, serve: bool, host: str, port: int) -> None:
    """Load the branch-office campaign, vote through every channel, print the ranked table, serve."""
    from aggregate.publish import render_table
    from collect.cli.results import score_campaign
    from collect.demo import print_intake, run_demo

    settings = app.settings
    if settings.secret_key is None:
        # A demo database is nobody's campaign; a real one refuses to run without a key.
        out.print("[dim]COLLECT_SECRET_KEY is not set: using the demo key (never do this for a campaign)[/]")
        settings = Settings(**(app.settings_overrides | {"secret_key": DEMO_SECRET_KEY}))
        app._settings = settings
    out.print(f"database: {settings.database_url}")
    store = run_demo(settings, out)
    app._store = store
    print_intake(store, "branch-2026", out)
    result = score_campaign(app, "branch-2026")
    render_table(result, out)
    out.print(
        f"inputs sha256 {result.inputs_sha256} — `collect score branch-2026 --explain S01` shows every step"
    )
    if not serve:
        return
    import uvicorn

    from collect.logs import default_format, logging_config
    from collect.web.app import create_app

    out.print(
        f"serving http://{host}:{port}/  (ballot links: "
        "`collect tokens issue branch-2026 --out links.csv`; Ctrl-C stops)"
    )
    uvicorn.run(
        create_app(settings, store),
        host=host,
        port=port,
        log_level="warning",
        log_config=logging_config("WARNING", settings.log_format or default_format()),
        access_log=False,
    )
