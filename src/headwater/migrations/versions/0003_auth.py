"""Authentication: API keys (stored as slow scrypt hashes, never as secrets).

Revision ID: 0003_auth
Revises: 0002_schema_registry

Mirrored by :mod:`headwater.auth._tables`; the tables are spelled out here (not created from
that module's metadata) so this revision keeps meaning the same schema when the module moves on.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_auth"
down_revision = "0002_schema_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("principal", sa.String(255), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_hw_api_keys_principal", "hw_api_keys", ["principal"])


def downgrade() -> None:
    op.drop_index("ix_hw_api_keys_principal", table_name="hw_api_keys")
    op.drop_table("hw_api_keys")
