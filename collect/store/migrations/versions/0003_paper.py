"""paper forms

Print runs, the issuance ledger (one row per printed serial), keyed entries (double entry,
clerk ids) and scans linked by serial. New tables only.

Numbered 0003 when it was planned but landed after 0004_sms, so it revises 0004_sms: the chain
stays one line (0001 → 0002 → 0004_sms → 0003_paper) and `upgrade head` has one head.

Revision ID: 0003_paper
Revises: 0004_sms
Create Date: 2026-11-23 22:39:09.241234
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003_paper"
down_revision: str | None = "0004_sms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paper_print",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("distribution", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("batch", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("serialed", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=True),
        sa.Column("file_name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("file_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("printed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("printed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("paper_print", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paper_print_campaign_id"), ["campaign_id"], unique=False)

    op.create_table(
        "paper_serial",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("print_id", sa.Integer(), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("distribution", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("batch", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("printed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["print_id"],
            ["paper_print.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "seq", name="uq_paper_serial_seq"),
        sa.UniqueConstraint("campaign_id", "serial", name="uq_paper_serial"),
    )
    with op.batch_alter_table("paper_serial", schema=None) as batch_op:
        batch_op.create_index(
            "ix_paper_serial_channel", ["campaign_id", "distribution", "batch"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_paper_serial_print_id"), ["print_id"], unique=False)

    op.create_table(
        "paper_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("serial_id", sa.Integer(), nullable=True),
        sa.Column("serial_typed", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("serial_check", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("form_key", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("clerk", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("source_ref", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("content_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entry_json", sa.JSON(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("distribution", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("batch", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("submission_id", sa.Integer(), nullable=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["serial_id"],
            ["paper_serial.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "source_ref", "content_sha256", name="uq_paper_entry_source"),
    )
    with op.batch_alter_table("paper_entry", schema=None) as batch_op:
        batch_op.create_index("ix_paper_entry_form", ["campaign_id", "form_key"], unique=False)
        batch_op.create_index("ix_paper_entry_serial", ["campaign_id", "serial_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_paper_entry_submission_id"), ["submission_id"], unique=False)

    op.create_table(
        "paper_scan",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("serial_id", sa.Integer(), nullable=True),
        sa.Column("serial_read", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("image_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["serial_id"],
            ["paper_serial.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "image_sha256", "page", name="uq_paper_scan_image"),
    )
    with op.batch_alter_table("paper_scan", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paper_scan_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(
            "uq_paper_scan_linked",
            ["serial_id", "page"],
            unique=True,
            sqlite_where=sa.text("status = 'linked'"),
            postgresql_where=sa.text("status = 'linked'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("paper_scan", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_paper_scan_linked",
            sqlite_where=sa.text("status = 'linked'"),
            postgresql_where=sa.text("status = 'linked'"),
        )
        batch_op.drop_index(batch_op.f("ix_paper_scan_campaign_id"))

    op.drop_table("paper_scan")
    with op.batch_alter_table("paper_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_entry_submission_id"))
        batch_op.drop_index("ix_paper_entry_serial")
        batch_op.drop_index("ix_paper_entry_form")

    op.drop_table("paper_entry")
    with op.batch_alter_table("paper_serial", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_serial_print_id"))
        batch_op.drop_index("ix_paper_serial_channel")

    op.drop_table("paper_serial")
    with op.batch_alter_table("paper_print", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_print_campaign_id"))

    op.drop_table("paper_print")
