"""
Migrations: head → base → head on both databases, and the migrated schema equals the SQLModel
tables (a model change without its migration fails here, not in production).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import collect.store.tables  # noqa: F401  (registers every table on the metadata)
from collect.store.engine import make_engine
from collect.store.migrate import alembic_config, downgrade, is_current, upgrade

TABLES = set(SQLModel.metadata.tables)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_diffs(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    upgrade(db_url)
    assert _tables(db_url) == TABLES
    downgrade(db_url, "base")
    assert _tables(db_url) == set()
    upgrade(db_url)
    assert _tables(db_url) == TABLES
    engine = make_engine(db_url)
    try:
        assert is_current(engine)
        # The one-vote rule survives the round trip: the partial UNIQUE index is back.
        index = {i["name"]: i for i in sa.inspect(engine).get_indexes("ballot")}["uq_ballot_counted"]
        assert index["unique"]
        assert index["column_names"] == ["campaign_id", "unit_code", "voter_key"]
        # Autogenerate does not compare partial-index predicates: check this one by hand.
        where = index.get("dialect_options", {}).get(f"{engine.dialect.name}_where")
        assert where is not None
        assert "status" in str(where)
        assert "'counted'" in str(where)
    finally:
        engine.dispose()


def test_every_revision_steps_down_and_up(db_url: str) -> None:
    # Each migration's downgrade must undo exactly its upgrade, not only the whole chain's.
    script = ScriptDirectory.from_config(alembic_config(db_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    for revision in revisions:
        upgrade(db_url, revision)
        after = _tables(db_url)
        downgrade(db_url, "-1")
        upgrade(db_url, revision)
        assert _tables(db_url) == after, revision
    assert _tables(db_url) == TABLES


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    diffs = _schema_diffs(db_url)
    assert diffs == [], "the models changed without a migration (alembic revision --autogenerate):\n" + (
        "\n".join(map(str, diffs))
    )


def test_schema_comparison_sees_a_missing_migration(db_url: str) -> None:
    # Guard the guard: a table the models have and the database lacks is reported.
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE idempotency_record"))
    finally:
        engine.dispose()
    diffs = _schema_diffs(db_url)
    assert [d[0] for d in diffs] == ["add_table"]
    assert diffs[0][1].name == "idempotency_record"


def test_schema_comparison_sees_a_missing_one_vote_index(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP INDEX uq_ballot_counted"))
    finally:
        engine.dispose()
    assert [(d[0], d[1].name) for d in _schema_diffs(db_url)] == [("add_index", "uq_ballot_counted")]


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    assert _tables(db_url) == TABLES
