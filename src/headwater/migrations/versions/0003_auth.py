"""auth tables (filled in by the auth module's change).

Revision ID: 0003_auth
Revises: 0002_schema_registry
"""

revision = "0003_auth"
down_revision = "0002_schema_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
