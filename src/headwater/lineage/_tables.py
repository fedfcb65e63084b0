"""Lineage tables in the metadata store (created by migration ``0005_lineage``).

* ``hw_lineage_events``: every OpenLineage event as stored (after identity normalisation), raw
  JSON, one row per event;
* ``hw_lineage_dataset_edges``: input dataset -> output dataset, per job (from COMPLETE events);
* ``hw_lineage_column_edges``: input field -> output field, per job, with the transformation;
  ``dst_field = ''`` marks an input that affects the whole output dataset (INDIRECT
  JOIN/FILTER/GROUP_BY/SORT);
* ``hw_lineage_aliases``: names other producers use for a dataset -> its one identity.

Every event and edge carries its provenance (migration ``0013_lineage_provenance``): ``trusted``
is true only for what the platform itself recorded (``LineageStore.emit``), and ``principal``
(events) / ``producer`` (edges) names the outside principal that posted it (``''`` for the
platform). The latest COMPLETE event of a job replaces that job's edges into the datasets it
wrote *from the same producer* only: an outside producer can never replace or delete the
platform's edges, nor another producer's.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["METADATA", "aliases_table", "column_edges_table", "dataset_edges_table", "events_table"]

METADATA = sa.MetaData()

events_table = sa.Table(
    "hw_lineage_events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("event_time", sa.String(64), nullable=False),
    sa.Column("job_namespace", sa.String(255), nullable=False),
    sa.Column("job_name", sa.String(512), nullable=False),
    sa.Column("producer", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("delivered", sa.Boolean),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("trusted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("principal", sa.String(255), nullable=False, server_default=""),
    sa.Index("ix_hw_lineage_events_job", "job_namespace", "job_name"),
)

dataset_edges_table = sa.Table(
    "hw_lineage_dataset_edges",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_namespace", sa.String(255), nullable=False),
    sa.Column("job_name", sa.String(512), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("src_namespace", sa.String(255), nullable=False),
    sa.Column("src_name", sa.String(512), nullable=False),
    sa.Column("dst_namespace", sa.String(255), nullable=False),
    sa.Column("dst_name", sa.String(512), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("trusted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("producer", sa.String(255), nullable=False, server_default=""),
    sa.Index("ix_hw_lineage_dataset_edges_src", "src_name", "src_namespace"),
    sa.Index("ix_hw_lineage_dataset_edges_dst", "dst_name", "dst_namespace"),
)

column_edges_table = sa.Table(
    "hw_lineage_column_edges",
    METADATA,
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
    sa.Column("trusted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("producer", sa.String(255), nullable=False, server_default=""),
    sa.Index("ix_hw_lineage_column_edges_src", "src_name", "src_field"),
    sa.Index("ix_hw_lineage_column_edges_dst", "dst_name", "dst_field"),
)

aliases_table = sa.Table(
    "hw_lineage_aliases",
    METADATA,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("canonical_namespace", sa.String(255), nullable=False),
    sa.Column("canonical_name", sa.String(512), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
