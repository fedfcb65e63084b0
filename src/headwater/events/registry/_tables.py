"""SQLAlchemy Core tables of the schema registry (SQLite and Postgres).

All tables live on :data:`METADATA` so migrations can import them from this one module.

* ``hw_registry_schemas`` -- one row per distinct (type, canonical text, references); its
  ``id`` is the global schema id, shared by every subject that registers the same schema and
  never reused.
* ``hw_registry_versions`` -- (subject, version) -> schema id; ``deleted`` marks a soft delete.
* ``hw_registry_config`` -- compatibility mode per subject; the row with subject ``""`` is the
  global mode.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["METADATA", "config_table", "schemas_table", "versions_table"]

METADATA = sa.MetaData()

schemas_table = sa.Table(
    "hw_registry_schemas",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("schema_type", sa.String(16), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("schema_text", sa.Text, nullable=False),
    sa.Column("refs", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("fingerprint", name="uq_hw_registry_schemas_fingerprint"),
)

versions_table = sa.Table(
    "hw_registry_versions",
    METADATA,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column(
        "schema_id",
        sa.Integer,
        sa.ForeignKey("hw_registry_schemas.id", name="fk_hw_registry_versions_schema"),
        nullable=False,
    ),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_hw_registry_versions_schema_id", "schema_id"),
)

config_table = sa.Table(
    "hw_registry_config",
    METADATA,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("compatibility", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
