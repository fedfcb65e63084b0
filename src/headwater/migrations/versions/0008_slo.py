"""SLO tables: time-bucketed SLI counters, alert state, alert history.

Revision ID: 0008_slo
Revises: 0007_policy

``hw_slo_buckets`` holds one row per (SLI series, UTC minute since the epoch) with the good and
total event counts of that minute; writers add to a row with an upsert. ``hw_slo_alerts`` holds
one row per (SLO, severity): the alert state machine (``ok``/``firing``) and the state last
notified, which de-duplicates notifications across processes. ``hw_slo_alert_events`` is the
append-only history of fire and resolve transitions. The table objects the code queries are in
:mod:`headwater.telemetry.slo._tables`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_slo"
down_revision = "0007_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_slo_buckets",
        sa.Column("series", sa.String(255), primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_hw_slo_buckets_minute", "hw_slo_buckets", ["minute"])
    op.create_table(
        "hw_slo_alerts",
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
    op.create_table(
        "hw_slo_alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("slo_id", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incident", sa.String(255), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_hw_slo_alert_events_slo_at", "hw_slo_alert_events", ["slo_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_hw_slo_alert_events_slo_at", table_name="hw_slo_alert_events")
    op.drop_table("hw_slo_alert_events")
    op.drop_table("hw_slo_alerts")
    op.drop_index("ix_hw_slo_buckets_minute", table_name="hw_slo_buckets")
    op.drop_table("hw_slo_buckets")
