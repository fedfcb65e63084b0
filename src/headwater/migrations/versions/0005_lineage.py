"""lineage tables: OpenLineage events, dataset and column edges, dataset aliases.

Spelled out here (not imported from ``headwater.lineage._tables``) so that later changes to the
package's table objects never change what this revision did; a test checks the two agree.

Revision ID: 0005_lineage
Revises: 0004_audit
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_lineage"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_lineage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("event_time", sa.String(64), nullable=False),
        sa.Column("job_namespace", sa.String(255), nullable=False),
        sa.Column("job_name", sa.String(512), nullable=False),
        sa.Column("producer", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("delivered", sa.Boolean),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hw_lineage_events_run_id", "hw_lineage_events", ["run_id"])
    op.create_index("ix_hw_lineage_events_job", "hw_lineage_events", ["job_namespace", "job_name"])

    op.create_table(
        "hw_lineage_dataset_edges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_namespace", sa.String(255), nullable=False),
        sa.Column("job_name", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("src_namespace", sa.String(255), nullable=False),
        sa.Column("src_name", sa.String(512), nullable=False),
        sa.Column("dst_namespace", sa.String(255), nullable=False),
        sa.Column("dst_name", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hw_lineage_dataset_edges_src", "hw_lineage_dataset_edges", ["src_name", "src_namespace"])
    op.create_index("ix_hw_lineage_dataset_edges_dst", "hw_lineage_dataset_edges", ["dst_name", "dst_namespace"])

    op.create_table(
        "hw_lineage_column_edges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_namespace", sa.String(255), nullable=False),
        sa.Column("job_name", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("src_namespace", sa.String(255), nullable=False),
        sa.Column("src_name", sa.String(512), nullable=False),
        sa.Column("src_field", sa.String(255), nullable=False),
        sa.Column("dst_namespace", sa.String(255), nullable=False),
        sa.Column("dst_name", sa.String(512), nullable=False),
        sa.Column("dst_field", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("subtype", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hw_lineage_column_edges_src", "hw_lineage_column_edges", ["src_name", "src_field"])
    op.create_index("ix_hw_lineage_column_edges_dst", "hw_lineage_column_edges", ["dst_name", "dst_field"])

    op.create_table(
        "hw_lineage_aliases",
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("canonical_namespace", sa.String(255), nullable=False),
        sa.Column("canonical_name", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hw_lineage_aliases")
    op.drop_table("hw_lineage_column_edges")
    op.drop_table("hw_lineage_dataset_edges")
    op.drop_table("hw_lineage_events")
