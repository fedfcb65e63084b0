"""The metadata store: one module through which the catalog (and later policies, audit,
lineage, schema registry and SLO state) reach their SQLite or Postgres database.

SQLAlchemy Core, with the schema owned by Alembic migrations in ``headwater/migrations``;
:meth:`MetadataStore.open` upgrades the database to the newest revision. Table objects here
mirror the migrations and are what the rest of the package queries.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from headwater.errors import ConfigError, StoreUnavailable

__all__ = ["METADATA", "MetadataStore", "columns_table", "datasets_table"]

METADATA = sa.MetaData()

datasets_table = sa.Table(
    "hw_datasets",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("store", sa.String(100), nullable=False),
    sa.Column("table_name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("primary_key", sa.JSON, nullable=False),
    sa.Column("owner", sa.String(255)),
    sa.Column("description", sa.Text),
    sa.Column("retention_days", sa.Integer),
    sa.Column("tier", sa.String(30)),
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

columns_table = sa.Table(
    "hw_columns",
    METADATA,
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("hw_datasets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("nullable", sa.Boolean, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("description", sa.Text),
)

catalog_version_table = sa.Table(
    "hw_catalog_version",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


def _sqlite_pragmas(dbapi_con, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class MetadataStore:
    """The platform's metadata database (a SQLAlchemy engine plus migrations)."""

    def __init__(self, url: str, *, base_dir: str | Path | None = None) -> None:
        url = _normalise_url(url, base_dir)
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError("metadata.url is not a valid SQLAlchemy URL") from None
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, object] = {}
        if self.dialect == "postgresql":
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
        self.engine = sa.create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MetadataStore(dialect={self.dialect!r})"

    @classmethod
    def open(cls, url: str, *, base_dir: str | Path | None = None) -> MetadataStore:
        """Connect and bring the schema to the newest migration."""
        store = cls(url, base_dir=base_dir)
        store.upgrade()
        return store

    def upgrade(self) -> None:
        """Run Alembic migrations up to ``head`` (idempotent)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as err:
            raise StoreUnavailable(
                f"metadata store unreachable ({self.dialect}): {str(err.orig).splitlines()[0]}"
            ) from None

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed on success."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as err:
            raise StoreUnavailable(
                f"metadata store error ({self.dialect}): {str(err.orig).splitlines()[0]}"
            ) from None

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reads."""
        with self.engine.connect() as conn:
            yield conn

    def schema_registry(self, **options: object) -> object:
        """A :class:`headwater.events.registry.SchemaRegistry` on this database."""
        from headwater.events.registry import SchemaRegistry

        return SchemaRegistry(self.engine, **options)  # type: ignore[arg-type]

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.engine.dispose()


def _normalise_url(url: str, base_dir: str | Path | None) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and base_dir is not None:
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            path = Path(base_dir) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
    return url
