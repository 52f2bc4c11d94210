"""
Shared fixtures: real databases only.

`store` is parametrised over a SQLite file in tmp_path and PostgreSQL (a schema of its own per
test, dropped afterwards), both built by `alembic upgrade head`. Without a reachable PostgreSQL
the postgres cases skip locally and fail under CI=true, so CI can never go green without it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from collect.campaign import CampaignSpec, load_campaign_file
from collect.settings import Settings
from collect.store import Store
from collect.store.campaigns import save_campaign
from collect.store.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("COLLECT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
EXAMPLES = Path(__file__).resolve().parent.parent / "collect" / "examples"
TEST_SECRET = "test-secret-key-for-the-suite-only-0123456789"


def pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def require_pg() -> None:
    """Skip (locally) or fail (CI=true) when PostgreSQL is unreachable."""
    if pg_available():
        return
    message = f"PostgreSQL is unreachable at {PG_ADMIN_DSN}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}: under CI=true PostgreSQL tests must run", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    require_pg()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'collect.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collect.db'}"
    return str(request.getfixturevalue("pg_url"))


def make_settings(url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=url, secret_key=TEST_SECRET, public_url="https://collect.example.gov.cn", **overrides
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated, empty store on SQLite or PostgreSQL."""
    upgrade(db_url)
    store = Store(make_settings(db_url))
    yield store
    store.dispose()


@pytest.fixture
def branch_spec() -> CampaignSpec:
    return load_campaign_file(str(EXAMPLES / "branch-office.toml"))


@pytest.fixture
def branch_store(store: Store, branch_spec: CampaignSpec) -> Store:
    """The store with the branch-office example campaign loaded."""
    with store.engine.begin() as connection:
        save_campaign(connection, branch_spec, actor="test")
    return store


def count(store: Store, sql: str, **params: object) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.text(sql), params).scalar_one())
