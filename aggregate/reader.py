"""
The one reader: counted ballots of a campaign from the store (SQLite or PostgreSQL) into the
engine input, through connectorx (several times faster than a DB-API cursor on 10 M rows).

Read-only. Which ballot counts was decided by ingest() and the store's UNIQUE index; this
reads `status = 'counted'` and never decides again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from aggregate.scores import INPUT_SCHEMA
from collect.campaign import CampaignSpec
from collect.store.tables import CAMPAIGN


class UnknownCampaign(LookupError):
    """No campaign with this code in the store."""


@dataclass(frozen=True, slots=True)
class StoredCampaign:
    id: int
    spec: CampaignSpec
    spec_sha256: str


def load_spec(engine: Engine, code: str) -> StoredCampaign:
    """The campaign's stored spec (the JSON every score is computed from)."""
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(CAMPAIGN.c.id, CAMPAIGN.c.spec_json, CAMPAIGN.c.spec_sha256).where(
                CAMPAIGN.c.code == code
            )
        ).first()
    if row is None:
        raise UnknownCampaign(code)
    return StoredCampaign(int(row.id), CampaignSpec.model_validate_json(row.spec_json), str(row.spec_sha256))


def connectorx_uri(url: str) -> str:
    """
    A SQLAlchemy URL as connectorx wants it.

    SQLite: `sqlite:///relative.db` is made absolute (connectorx resolves paths itself).
    PostgreSQL: the driver suffix goes (`postgresql+psycopg` → `postgresql`); libpq parameters
    connectorx understands stay, notably `options=-csearch_path=…` (how the tests give each
    run its own schema); psycopg-only ones are dropped.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise ValueError("an in-memory SQLite database cannot be read by a second connection")
        return "sqlite://" + os.path.abspath(database)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"unsupported database {parsed.get_backend_name()}")
    plain = parsed.set(drivername="postgresql")
    keep = {"options", "sslmode", "connect_timeout", "application_name"}
    plain = plain.difference_update_query([k for k in plain.query if k not in keep])
    return plain.render_as_string(hide_password=False)


#: Above this many counted ballots, the answers are read over two connections in parallel.
PARALLEL_FROM = 100_000


def ballots_query(campaign_id: int) -> str:
    # campaign_id is an int read from the store, never user text: safe to inline (connectorx
    # takes no bound parameters).
    return (
        "SELECT id AS ballot_id, unit_code AS unit, tier_code AS tier, channel FROM ballot "
        f"WHERE campaign_id = {int(campaign_id)} AND status = 'counted'"
    )


def answers_query(first: int, last: int) -> str:
    return (
        "SELECT ballot_id, aspect_code AS aspect, level_code AS level, points, dont_know FROM answer "
        f"WHERE ballot_id BETWEEN {int(first)} AND {int(last)}"
    )


def read_rows(url: str, campaign_id: int) -> pl.DataFrame:
    """
    The raw rows, one per answer of a counted ballot (as the database types them).

    Ballots and answers are read by two plain scans and joined here: on SQLite that is about
    twice as fast as letting the database join 10 M rows through its index. Answers of other
    campaigns' or uncounted ballots in the id range fall out at the join.
    """
    uri = connectorx_uri(url)
    ballots = pl.read_database_uri(ballots_query(campaign_id), uri, engine="connectorx")
    if ballots.height == 0:
        return pl.DataFrame(schema={c: t for c, t in INPUT_SCHEMA.items() if c != "group"})
    first, last = ballots.select(
        pl.col("ballot_id").min().alias("a"), pl.col("ballot_id").max().alias("b")
    ).row(0)
    query = answers_query(int(first), int(last))
    if ballots.height > PARALLEL_FROM:
        answers = pl.read_database_uri(
            query, uri, engine="connectorx", partition_on="ballot_id", partition_num=2
        )
    else:
        answers = pl.read_database_uri(query, uri, engine="connectorx")
    return answers.join(ballots, on="ballot_id", how="inner")


def read_answers(url: str, campaign: StoredCampaign) -> pl.LazyFrame:
    """
    The engine input of a campaign: one row per answer of a counted ballot, with the unit's
    group taken from the campaign spec. The rows are read now; the frame is lazy so that
    columns a computation does not use (the group, for scoring) are never built. Row order is
    whatever the database gives: the engine never relies on it.
    """
    frame = read_rows(url, campaign.id)
    groups = {u.code: u.group for u in campaign.spec.units}
    return (
        frame.lazy()
        .with_columns(
            pl.col("ballot_id").cast(pl.Int64),
            pl.col("points").cast(pl.Int64),
            pl.col("dont_know").cast(pl.Boolean),
            *(pl.col(c).cast(pl.String) for c in ("unit", "tier", "channel", "aspect", "level")),
        )
        .with_columns(
            pl.col("unit").replace_strict(groups, default=None, return_dtype=pl.String).alias("group")
        )
        .select(INPUT_SCHEMA.names())
    )
