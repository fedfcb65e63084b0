"""Table objects mirroring migration ``0010_erasure`` (the migration owns the schema)."""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

jobs_table = sa.Table(
    "hw_erasure_jobs",
    METADATA,
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

targets_table = sa.Table(
    "hw_erasure_targets",
    METADATA,
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
