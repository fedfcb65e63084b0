"""audit tables (filled in by the audit module's change).

Revision ID: 0004_audit
Revises: 0003_auth
"""

revision = "0004_audit"
down_revision = "0003_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
