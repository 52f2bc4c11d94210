"""Security defaults of issue 9: no key, no service; TLS proxy headers; headers on every answer."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from collect.settings import Settings
from collect.store.migrate import upgrade
from collect.web.app import create_app
from tests.cli.helpers import invoke
from tests.conftest import TEST_SECRET

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_serve_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    result = invoke(["serve", "--port", "8"], url=url, COLLECT_SECRET_KEY="")
    assert result.code == 2
    assert "COLLECT_SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "c.db").exists()  # refused before touching anything


def test_production_runs_behind_a_tls_proxy() -> None:
    assert "--proxy-headers" in (DEPLOY / "run-local.sh").read_text(encoding="utf-8")
    assert '"--proxy-headers"' in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    app = create_app(Settings(database_url=url, secret_key=TEST_SECRET, public_url="https://collect.example"))
    with TestClient(app, base_url="https://testserver") as client:
        for path in ("/healthz", "/admin/login", "/b/unknown", "/metrics"):
            headers = client.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY", path
            assert headers["referrer-policy"] == "no-referrer", path
            assert "default-src 'none'" in headers["content-security-policy"], path
            assert headers["strict-transport-security"].startswith("max-age="), path
            assert headers["cache-control"] == "no-store", path
        console = client.get("/admin/", follow_redirects=False)
    assert console.status_code == 303  # the console is behind its login
