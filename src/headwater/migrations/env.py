"""Alembic environment: runs on the connection handed over by MetadataStore.upgrade."""

from alembic import context

from headwater.metadata import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table="hw_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
