"""Per-subject encryption keys (crypto-shredding of PII in append-only logs).

Revision ID: 0012_subject_keys
Revises: 0011_audit_spool

``hw_subject_keys`` holds one wrapped AES-256 key per data subject, found by an HMAC of the
subject (never the subject in clear). Erasure deletes the row; every value sealed under it
becomes unreadable.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_subject_keys"
down_revision = "0011_audit_spool"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_subject_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hw_subject_keys")
