"""window QR channel

Posters (short random codes, revocable), the rating log that burst checks read, follow-up cases
opened by low ratings, and the callback numbers kept apart from ballots. New tables only.

Revision ID: 0005_window
Revises: 0003_paper
Create Date: 2026-11-23 23:00:29.508642
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005_window"
down_revision: str | None = "0003_paper"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "window_poster",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("unit_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("window_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("staff", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("hours", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaced_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["replaced_by"],
            ["window_poster.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    with op.batch_alter_table("window_poster", schema=None) as batch_op:
        batch_op.create_index("ix_window_poster_window", ["campaign_id", "window_code"], unique=False)

    op.create_table(
        "window_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("unit_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("window_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("staff", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("level_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("callback_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fix_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("called_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ballot_id"],
            ["ballot.id"],
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ballot_id"),
    )
    with op.batch_alter_table("window_case", schema=None) as batch_op:
        batch_op.create_index("ix_window_case_status", ["campaign_id", "status"], unique=False)

    op.create_table(
        "window_rating",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=True),
        sa.Column("unit_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("window_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("poster_id", sa.Integer(), nullable=True),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("top", sa.Boolean(), nullable=False),
        sa.Column("low", sa.Boolean(), nullable=False),
        sa.Column("network_key", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ballot_id"],
            ["ballot.id"],
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["poster_id"],
            ["window_poster.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("window_rating", schema=None) as batch_op:
        batch_op.create_index(
            "ix_window_rating_recent", ["campaign_id", "window_code", "rated_at"], unique=False
        )

    op.create_table(
        "window_case_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["window_case.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id"),
    )


def downgrade() -> None:
    op.drop_table("window_case_contact")
    with op.batch_alter_table("window_rating", schema=None) as batch_op:
        batch_op.drop_index("ix_window_rating_recent")

    op.drop_table("window_rating")
    with op.batch_alter_table("window_case", schema=None) as batch_op:
        batch_op.drop_index("ix_window_case_status")

    op.drop_table("window_case")
    with op.batch_alter_table("window_poster", schema=None) as batch_op:
        batch_op.drop_index("ix_window_poster_window")

    op.drop_table("window_poster")
