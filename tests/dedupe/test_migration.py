"""Migration 0002 goes up, down and up again on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from collect.store.migrate import downgrade, upgrade

NEW_TABLES = {"sample_draw", "sample_member", "review_item"}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_up_down_up(db_url: str) -> None:
    upgrade(db_url)
    assert _tables(db_url) >= NEW_TABLES
    downgrade(db_url, "0001")
    tables = _tables(db_url)
    assert not NEW_TABLES & tables
    assert "ballot" in tables  # 0001's schema is untouched by 0002's downgrade
    upgrade(db_url)
    assert _tables(db_url) >= NEW_TABLES
    downgrade(db_url, "base")
    assert not (NEW_TABLES | {"ballot"}) & _tables(db_url)
    upgrade(db_url)
    assert _tables(db_url) >= NEW_TABLES
