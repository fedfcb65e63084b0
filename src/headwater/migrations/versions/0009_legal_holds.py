"""Legal holds: datasets and data subjects that retention and erasure must not delete.

Revision ID: 0009_legal_holds
Revises: 0008_slo

``hw_legal_holds`` holds one row per hold. ``dataset`` is a glob pattern over qualified
catalog names (``app.customers``, ``warehouse.*``) or NULL (every dataset); ``subject_column``
and ``subject_value`` name a data subject (``customers.id=123``) or are NULL (the whole
dataset). A released hold keeps its row with ``released_at`` set, so the history stays. The
table object the code queries is in :mod:`headwater.retention.holds`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_legal_holds"
down_revision = "0008_slo"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_legal_holds",
        sa.Column("hold_id", sa.String(32), primary_key=True),
        sa.Column("dataset", sa.String(512)),
        sa.Column("subject_dataset", sa.String(512)),
        sa.Column("subject_column", sa.String(255)),
        sa.Column("subject_value", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by", sa.String(255)),
        sa.Column("released_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("hw_legal_holds")
