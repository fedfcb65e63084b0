"""SQLAlchemy Core tables of authentication (SQLite and Postgres).

They live on this module's own :data:`METADATA` (not :data:`headwater.metadata.METADATA`) and
mirror migration ``0003_auth``, which creates them with explicit ``op.create_table`` calls; a
schema change here needs a new revision there.

* ``hw_api_keys`` -- one row per API key. ``key_id`` is the public identifier (``hwk_`` and 12
  lowercase letters and digits); ``secret_hash`` is a self-describing scrypt string
  (``scrypt$ln=15,r=8,p=1$<salt>$<hash>``, see :mod:`headwater.auth._keys`), never the secret.
  ``revoked_at`` set means revoked for good; ``expires_at`` NULL means no expiry.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["METADATA", "api_keys_table"]

METADATA = sa.MetaData()

api_keys_table = sa.Table(
    "hw_api_keys",
    METADATA,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("secret_hash", sa.String(255), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Index("ix_hw_api_keys_principal", "principal"),
)
