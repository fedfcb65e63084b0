"""Lineage provenance: trusted (platform-recorded) edges and the principal that posted the rest;
SQL facets of stored events without literals.

Revision ID: 0013_lineage_provenance
Revises: 0012_subject_keys

``trusted`` marks what the platform recorded itself (erasure follows only those edges);
``producer``/``principal`` name the outside principal that posted an event. Rows stored before
this revision cannot be told apart: those in a ``headwater://`` job namespace (where the platform
records its own runs) are taken as trusted, every other one as posted from outside. The SQL of
every stored event loses its literals (``WHERE ssn = '...'`` becomes ``WHERE ssn = ?``).
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0013_lineage_provenance"
down_revision = "0012_subject_keys"
branch_labels = None
depends_on = None

_EDGES = ("hw_lineage_dataset_edges", "hw_lineage_column_edges")


def upgrade() -> None:
    for table in _EDGES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("trusted", sa.Boolean, nullable=False, server_default=sa.false()))
            batch.add_column(sa.Column("producer", sa.String(255), nullable=False, server_default=""))
    with op.batch_alter_table("hw_lineage_events") as batch:
        batch.add_column(sa.Column("trusted", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("principal", sa.String(255), nullable=False, server_default=""))
    bind = op.get_bind()
    for table in (*_EDGES, "hw_lineage_events"):
        t = sa.table(table, sa.column("job_namespace", sa.String), sa.column("trusted", sa.Boolean))
        bind.execute(sa.update(t).where(t.c.job_namespace.like("headwater://%")).values(trusted=True))
    _scrub_stored_sql(bind)


def _scrub_stored_sql(bind: sa.Connection) -> None:
    from headwater.lineage._sql import scrub_event

    t = sa.table("hw_lineage_events", sa.column("id", sa.Integer), sa.column("payload", sa.Text))
    last = 0
    while True:
        rows = bind.execute(sa.select(t.c.id, t.c.payload).where(t.c.id > last).order_by(t.c.id).limit(500)).all()
        if not rows:
            return
        for row_id, payload in rows:
            last = row_id
            try:
                event = json.loads(payload)
                scrubbed = json.dumps(scrub_event(event), separators=(",", ":"), sort_keys=True)
            except (ValueError, TypeError, AttributeError):
                continue  # not an event this code wrote: left for retention to remove
            if scrubbed != payload:
                bind.execute(sa.update(t).where(t.c.id == row_id).values(payload=scrubbed))


def downgrade() -> None:
    with op.batch_alter_table("hw_lineage_events") as batch:
        batch.drop_column("principal")
        batch.drop_column("trusted")
    for table in _EDGES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("producer")
            batch.drop_column("trusted")
