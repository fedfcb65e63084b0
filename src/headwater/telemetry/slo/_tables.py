"""Table objects mirroring migration ``0008_slo`` (the migration owns the schema)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

METADATA = sa.MetaData()

buckets_table = sa.Table(
    "hw_slo_buckets",
    METADATA,
    sa.Column("series", sa.String(255), primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("good", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
)

alerts_table = sa.Table(
    "hw_slo_alerts",
    METADATA,
    sa.Column("slo_id", sa.String(255), primary_key=True),
    sa.Column("severity", sa.String(32), primary_key=True),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("slo", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.Column("incident", sa.String(255)),
    sa.Column("triggered_by", sa.String(100)),
    sa.Column("notified_state", sa.String(16)),
    sa.Column("notify_attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)

alert_events_table = sa.Table(
    "hw_slo_alert_events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("slo_id", sa.String(255), nullable=False),
    sa.Column("severity", sa.String(32), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("incident", sa.String(255), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the metadata store's dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - MetadataStore supports SQLite and Postgres only
        raise NotImplementedError(f"SLO tables need SQLite or Postgres, not {dialect}")
    return insert(table)
