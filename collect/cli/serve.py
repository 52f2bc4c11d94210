"""`collect serve`: run the web app with uvicorn (migrating the database first)."""

from __future__ import annotations

import click
import uvicorn

from collect.cli import cli, pass_app
from collect.cli.context import AppContext
from collect.logs import default_format, logging_config


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes. Rate limits are per worker; SQLite serves best with one.",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (run behind a TLS proxy).",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    help="Proxy addresses whose forwarded headers are trusted (comma-separated, or *).",
)
@pass_app
def serve(
    app: AppContext, host: str, port: int, workers: int, proxy_headers: bool, forwarded_allow_ips: str
) -> None:
    """Serve web ballots, the JSON API and the operator console."""
    settings = app.settings
    # Refuse before binding a port: without the key no CSRF token, session or respondent
    # hash can be made (MissingSecretKey → exit 2 with the message saying how to set it).
    settings.secret()
    # Open, ping (exit 3 when unreachable) and migrate once here, not racing in each worker.
    app.store  # noqa: B018
    app.close()
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
        "server_header": False,
        "log_level": settings.log_level.lower(),
        # Our JSON lines with request ids; uvicorn's access log (raw paths, tokens) stays off.
        "log_config": logging_config(settings.log_level, settings.log_format or default_format()),
        "access_log": False,
        "timeout_keep_alive": 5,
    }
    if workers > 1:
        # Each worker process imports the factory and reads the same environment.
        uvicorn.run("collect.web.app:app_from_env", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    else:
        from collect.web.app import create_app

        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
