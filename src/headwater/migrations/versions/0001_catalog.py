"""Catalog: datasets, columns and the catalog version counter.

Revision ID: 0001_catalog
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_catalog"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_datasets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("store", sa.String(100), nullable=False),
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("primary_key", sa.JSON, nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("description", sa.Text),
        sa.Column("retention_days", sa.Integer),
        sa.Column("tier", sa.String(30)),
        sa.Column("properties", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "hw_columns",
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("hw_datasets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("nullable", sa.Boolean, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("description", sa.Text),
    )
    op.create_table(
        "hw_catalog_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.bulk_insert(sa.table("hw_catalog_version", sa.column("id"), sa.column("version")), [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("hw_columns")
    op.drop_table("hw_datasets")
    op.drop_table("hw_catalog_version")
