"""Audit spool marks: how far each process's local audit spool has been committed.

Revision ID: 0011_audit_spool
Revises: 0010_erasure

A process writes each audit record to its own append-only spool file (the durability point,
before the audited call returns) and a writer thread chains and commits spooled records into
``hw_audit_records``. ``hw_audit_spool`` holds, per spool file, the number of the last entry
committed, updated in the same transaction as the records, so a process that recovers a dead
process's spool appends exactly the entries that were not committed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_audit_spool"
down_revision = "0010_erasure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_audit_spool",
        sa.Column("spool", sa.String(128), primary_key=True),
        sa.Column("committed", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hw_audit_spool")
