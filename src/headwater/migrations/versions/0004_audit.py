"""Audit log: hash-chained records, signed checkpoints and the signed chain head.

Revision ID: 0004_audit
Revises: 0003_auth

``hw_audit_records.record`` holds the canonical JSON that the record's ``hash`` covers,
``["<prev_hash>", seq, ts_us, actor, action, [datasets], decision, {details}]``. The queryable
columns (``prev_hash``, ``ts``, ``actor``, ``action``, ``datasets``, ``decision``) are generated
from it, so none of them can be changed without changing the hashed text.
``hw_audit_head`` is one row: the last appended (seq, hash), signed, locked by every append, plus
the signed retention anchor.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_audit"
down_revision = "0003_auth"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _generated(dialect: str) -> tuple[dict[str, str], bool]:
    if dialect == "postgresql":
        exprs = {
            "prev_hash": "(record::jsonb ->> 0)",
            "ts": "((record::jsonb ->> 2)::bigint)",
            "actor": "(record::jsonb ->> 3)",
            "action": "(record::jsonb ->> 4)",
            "datasets": "((record::jsonb -> 5)::text)",
            "decision": "(record::jsonb ->> 6)",
        }
        return exprs, True  # Postgres has stored generated columns only
    exprs = {
        "prev_hash": "json_extract(record, '$[0]')",
        "ts": "json_extract(record, '$[2]')",
        "actor": "json_extract(record, '$[3]')",
        "action": "json_extract(record, '$[4]')",
        "datasets": "json_extract(record, '$[5]')",
        "decision": "json_extract(record, '$[6]')",
    }
    return exprs, False


def upgrade() -> None:
    gen, persisted = _generated(op.get_bind().dialect.name)
    seq_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself
    op.create_table(
        "hw_audit_records",
        sa.Column("seq", seq_type, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), sa.Computed(gen["prev_hash"], persisted=persisted)),
        sa.Column("ts", sa.BigInteger, sa.Computed(gen["ts"], persisted=persisted)),
        sa.Column("actor", sa.String(255), sa.Computed(gen["actor"], persisted=persisted)),
        sa.Column("action", sa.String(64), sa.Computed(gen["action"], persisted=persisted)),
        sa.Column("datasets", sa.Text, sa.Computed(gen["datasets"], persisted=persisted)),
        sa.Column("decision", sa.String(16), sa.Computed(gen["decision"], persisted=persisted)),
    )
    op.create_index("ix_hw_audit_records_ts", "hw_audit_records", ["ts"])
    op.create_index("ix_hw_audit_records_actor", "hw_audit_records", ["actor", "seq"])
    op.create_index("ix_hw_audit_records_action", "hw_audit_records", ["action", "seq"])
    op.create_table(
        "hw_audit_checkpoints",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sig", sa.String(64), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "hw_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sig", sa.String(64)),
        sa.Column("anchor_seq", sa.BigInteger),
        sa.Column("anchor_hash", sa.String(64)),
        sa.Column("anchor_sig", sa.String(64)),
    )
    op.bulk_insert(
        sa.table("hw_audit_head", sa.column("id"), sa.column("seq"), sa.column("hash")),
        [{"id": 1, "seq": 0, "hash": GENESIS}],
    )


def downgrade() -> None:
    op.drop_table("hw_audit_head")
    op.drop_table("hw_audit_checkpoints")
    op.drop_index("ix_hw_audit_records_action", "hw_audit_records")
    op.drop_index("ix_hw_audit_records_actor", "hw_audit_records")
    op.drop_index("ix_hw_audit_records_ts", "hw_audit_records")
    op.drop_table("hw_audit_records")
