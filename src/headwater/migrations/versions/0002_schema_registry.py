"""Schema registry: schemas, subject versions, compatibility config.

Revision ID: 0002_schema_registry
Revises: 0001_catalog
"""

from alembic import op

from headwater.events.registry._tables import METADATA

revision = "0002_schema_registry"
down_revision = "0001_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The registry's first schema is its table definitions; later changes get revisions of their own.
    METADATA.create_all(bind=op.get_bind())


def downgrade() -> None:
    METADATA.drop_all(bind=op.get_bind())
