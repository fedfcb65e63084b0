"""events tables: the dead-letter store.

Revision ID: 0006_events
Revises: 0005_lineage

``hw_dead_letters`` holds one row per (consumer group, event): the original message bytes
intact, the one reason model (stage, error class and message, attempts, first and last failure
time, original topic/partition/offset) and the replay state (status, replay count). The
table object the code queries is :data:`headwater.events.dlq.dead_letters_table`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_events"
down_revision = "0005_lineage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("consumer_group", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(255), nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(255)),
        sa.Column("event_type", sa.String(255)),
        sa.Column("event_source", sa.String(1024)),
        sa.Column("event_subject", sa.String(1024)),
        sa.Column("message_key", sa.String(1024)),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replay_count", sa.Integer, nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("consumer_group", "fingerprint", name="uq_hw_dead_letters_group_fingerprint"),
    )
    op.create_index("ix_hw_dead_letters_status_topic", "hw_dead_letters", ["status", "topic"])
    op.create_index("ix_hw_dead_letters_last_failure", "hw_dead_letters", ["last_failure_at"])


def downgrade() -> None:
    op.drop_index("ix_hw_dead_letters_last_failure", table_name="hw_dead_letters")
    op.drop_index("ix_hw_dead_letters_status_topic", table_name="hw_dead_letters")
    op.drop_table("hw_dead_letters")
