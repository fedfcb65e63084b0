"""events tables (filled in by the events module's change).

Revision ID: 0006_events
Revises: 0005_lineage
"""

revision = "0006_events"
down_revision = "0005_lineage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
