"""sample draws and review queue

Sample draws with their members (reproducible, replacements recorded as such) and the review
queue (findings held for an operator, idempotent by fingerprint). New tables only.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 21:47:36.904974
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sample_draw",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("tier_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("seed", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("frame_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("frame_size", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("replaces_draw_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["replaces_draw_id"],
            ["sample_draw.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sample_draw", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sample_draw_campaign_id"), ["campaign_id"], unique=False)

    op.create_table(
        "review_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=True),
        sa.Column("submission_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ballot_id"],
            ["ballot.id"],
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "kind", "fingerprint", name="uq_review_fingerprint"),
    )
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_item_ballot_id"), ["ballot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_item_submission_id"), ["submission_id"], unique=False)
        batch_op.create_index("ix_review_status", ["campaign_id", "status"], unique=False)

    op.create_table(
        "sample_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("respondent_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("stratum", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("replaces_respondent_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["draw_id"],
            ["sample_draw.id"],
        ),
        sa.ForeignKeyConstraint(
            ["replaces_respondent_id"],
            ["respondent.id"],
        ),
        sa.ForeignKeyConstraint(
            ["respondent_id"],
            ["respondent.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("draw_id", "respondent_id", name="uq_sample_member"),
    )
    with op.batch_alter_table("sample_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sample_member_draw_id"), ["draw_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sample_member_respondent_id"), ["respondent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sample_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sample_member_respondent_id"))
        batch_op.drop_index(batch_op.f("ix_sample_member_draw_id"))

    op.drop_table("sample_member")
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.drop_index("ix_review_status")
        batch_op.drop_index(batch_op.f("ix_review_item_submission_id"))
        batch_op.drop_index(batch_op.f("ix_review_item_ballot_id"))

    op.drop_table("review_item")
    with op.batch_alter_table("sample_draw", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sample_draw_campaign_id"))

    op.drop_table("sample_draw")
