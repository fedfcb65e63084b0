"""Policies: every applied policy document, versioned.

Revision ID: 0007_policy
Revises: 0006_events
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_policy"
down_revision = "0006_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_policies",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("source", sa.String(500)),
        sa.Column("applied_by", sa.String(255), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hw_policies")
