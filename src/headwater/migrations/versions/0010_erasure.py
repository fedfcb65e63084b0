"""Erasure jobs: one row per erasure of a data subject, one row per target it covers.

Revision ID: 0010_erasure
Revises: 0009_legal_holds

``hw_erasure_jobs`` holds one row per job: the subject reference (``app.customers.id=123``,
kept so that ``headwater erase --resume JOB`` can continue), the mode (``delete`` or
``anonymise``), the actor and the job status (``running``, ``partial``, ``completed``,
``refused``). ``hw_erasure_targets`` holds the plan fixed when the job started, one row per
target (a dataset, the dead letters, an event topic) with its state (``pending``,
``executed``, ``verified``, ``failed``, ``residual``), the rows it changed and the last error,
so a resumed job never re-does a verified target. The table objects the code queries are in
:mod:`headwater.erasure._tables`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_erasure"
down_revision = "0009_legal_holds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_erasure_jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("subject_dataset", sa.String(512), nullable=False),
        sa.Column("subject_column", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("surrogate", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("report_path", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_hw_erasure_jobs_created", "hw_erasure_jobs", ["created_at"])
    op.create_table(
        "hw_erasure_targets",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(512), nullable=False),
        sa.Column("store", sa.String(255)),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("found_by", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows", sa.BigInteger),
        sa.Column("verified", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hw_erasure_targets")
    op.drop_index("ix_hw_erasure_jobs_created", table_name="hw_erasure_jobs")
    op.drop_table("hw_erasure_jobs")
