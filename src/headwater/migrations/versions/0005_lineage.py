"""lineage tables (filled in by the lineage module's change).

Revision ID: 0005_lineage
Revises: 0004_audit
"""

revision = "0005_lineage"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
