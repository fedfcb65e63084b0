"""Typed configuration: ``headwater.yaml``, ``HEADWATER_*`` environment overrides, defaults.

Precedence, highest first: arguments passed to :meth:`Config.load` > environment variables >
the YAML file > defaults. An environment override names a path with double underscores,
``HEADWATER_STORES__APP__DSN=...`` sets ``stores.app.dsn``. Strings in the file may refer to
environment variables as ``${NAME}`` (the usual way to keep passwords out of the file).

Secret fields are :class:`pydantic.SecretStr`: they print as ``**********`` in reprs, logs and
errors, and :meth:`Config.to_yaml` writes them back only as ``${...}`` references or redacted.

With no file, :func:`Config.embedded` describes the embedded platform in ``./.headwater``:
SQLite ``app``, DuckDB ``warehouse``, local Parquet ``lake``, SQLite metadata.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from headwater._yaml import YamlLimitError, safe_load
from headwater.auth.config import AuthConfig
from headwater.errors import ConfigError
from headwater.telemetry.otel import TelemetryConfig

__all__ = [
    "AuditConfig",
    "Config",
    "DuckDBConfig",
    "EventsConfig",
    "MetadataConfig",
    "LineageConfig",
    "NotifierConfig",
    "ParquetConfig",
    "PostgresConfig",
    "QueryConfig",
    "S3Config",
    "SLOConfig",
    "SQLiteConfig",
    "SecurityConfig",
    "SnowflakeConfig",
    "StoreConfig",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SQLiteConfig(_Model):
    """A SQLite file store."""

    kind: Literal["sqlite"] = "sqlite"
    path: str = Field(description="File path, relative to the platform directory.")


class DuckDBConfig(_Model):
    """A DuckDB file store (opened with external access off and its configuration locked)."""

    kind: Literal["duckdb"] = "duckdb"
    path: str
    allowed_directories: list[str] = Field(
        default_factory=list,
        description="Local folders DuckDB itself may still read once external access is off (e.g. an "
        "Iceberg warehouse read by DuckDB); relative to the platform directory. None by default: the "
        "platform reads the lake through Arrow, and a listed folder is readable by any principal query "
        "that names a file in it should the SQL front door ever miss it.")


class PostgresConfig(_Model):
    """A Postgres database (libpq connection string or URL)."""

    kind: Literal["postgres"] = "postgres"
    dsn: SecretStr
    schema_: str = Field("public", alias="schema")
    max_connections: int = 8
    connect_timeout_s: float = 5.0
    reader_role: str = Field(
        "headwater_reader", description="NOLOGIN role that principal reads SET ROLE to (SELECT on catalogued "
        "tables only); see docs/store-security.md.")
    reader_dsn: SecretStr | None = Field(
        None, description="Log principal reads in as a LOGIN role of their own instead of SET ROLE from the "
        "DSN's login (a statement cannot leave it); recommended in production.")
    manage_grants: bool = Field(
        True, description="Create the reader role if missing and GRANT/REVOKE SELECT as datasets enter and "
        "leave the catalog, on the platform's own connection; off where roles are managed outside "
        "(apply `headwater stores grants <store>` instead).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SnowflakeConfig(_Model):
    """A Snowflake database (``host``/``port``/``protocol`` for a private endpoint or fakesnow)."""

    kind: Literal["snowflake"] = "snowflake"
    account: str
    user: str
    password: SecretStr
    database: str
    schema_: str = Field("PUBLIC", alias="schema")
    warehouse: str | None = None
    role: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    reader_role: str | None = Field(
        "HEADWATER_READER", description="Role that principal reads run as (SELECT on catalogued tables only); "
        "null runs them with `role` (no backstop). See docs/store-security.md.")
    manage_grants: bool = Field(
        False, description="Apply the reader role's grant script as datasets enter and leave the catalog "
        "(needs a role that may create roles and grant); off: apply `headwater stores grants <store> --apply`.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class S3Config(_Model):
    """Credentials and endpoint for S3 (or an S3-compatible server)."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class ParquetConfig(_Model):
    """Parquet datasets in a local folder or under ``s3://bucket/prefix``."""

    kind: Literal["parquet"] = "parquet"
    root: str
    s3: S3Config | None = None
    partition_by: dict[str, list[str]] = Field(default_factory=dict)


StoreConfig = Annotated[
    SQLiteConfig | DuckDBConfig | PostgresConfig | SnowflakeConfig | ParquetConfig,
    Field(discriminator="kind"),
]


class MetadataConfig(_Model):
    """Where the catalog (and later policies, audit, lineage) live: a SQLAlchemy URL."""

    url: SecretStr = SecretStr("sqlite:///metadata.db")


class SecurityConfig(_Model):
    """Keys used to sign page cursors."""

    cursor_secret: SecretStr | None = Field(
        None, description="HMAC key for page cursors; generated into the platform dir if unset."
    )
    cursor_ttl_s: int = 24 * 3600


class QueryConfig(_Model):
    """Defaults for SDK queries."""

    default_page_size: int = 1000
    max_page_size: int = 100_000
    timeout_s: float | None = 300.0
    batch_size: int = 65_536


class FileAnchorConfig(_Model):
    """The audit head anchor as a signed file (default ``<platform_dir>/audit-anchor.json``)."""

    kind: Literal["file"] = "file"
    path: str | None = Field(None, description="Anchor file; relative paths are under the platform dir.")


class S3AnchorConfig(_Model):
    """The audit head anchor as an S3 object (a versioned bucket with Object Lock in production)."""

    kind: Literal["s3"] = "s3"
    bucket: str
    key: str = "headwater/audit-anchor.json"
    s3: S3Config | None = None
    retain_days: int | None = Field(None, ge=1, description="Object Lock retention per version (bucket with Object Lock).")
    lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"


AnchorConfig = Annotated[FileAnchorConfig | S3AnchorConfig, Field(discriminator="kind")]


class AuditConfig(_Model):
    """The tamper-evident audit log."""

    enabled: bool = True
    checkpoint_every: int = Field(1000, ge=1, description="Sign a checkpoint every N records.")
    retention_days: int | None = Field(None, ge=1, description="Delete records older than this (None: keep).")
    durability: Literal["spool", "fsync", "commit"] = Field(
        "spool", description="When a call returns, its record is in the local spool file (spool: survives the "
        "process being killed; committed to the metadata store within milliseconds), in the spool file and "
        "flushed to stable storage (fsync: survives a power loss too), or committed (commit).")
    anchor: AnchorConfig = Field(
        default_factory=FileAnchorConfig, description="Where the signed audit head is anchored outside the "
        "metadata database, so that records cut off behind a restored older head fail `audit verify`.")


class EventsConfig(_Model):
    """The event bus and the schema registry."""

    bus: str | None = Field(None, description="Bus URL: embedded:<path> (default: the platform folder) or nats://host:4222.")
    pii_policy: Literal["reject", "warn", "off"] = Field(
        "warn", description="A new schema field that looks like PII without an x-pii classification.")
    reserved_prefixes: list[str] = Field(
        default_factory=list, description="Topic prefixes written only by the platform's CDC connectors, besides cdc.")


class NotifierConfig(_Model):
    """Where alerts go: ``log``, or a ``webhook`` shaped for Slack, PagerDuty or plain JSON."""

    kind: Literal["log", "webhook"] = "log"
    url: SecretStr | None = None
    shape: Literal["slack", "pagerduty", "json"] = "json"
    routing_key: SecretStr | None = None
    severities: list[str] | None = None


class SLOConfig(_Model):
    """Service level objectives: the spec file (Sloth-style YAML) and the alert notifiers."""

    file: str | None = Field(None, description="SLO YAML; default: the built-in query SLOs.")
    notifiers: list[NotifierConfig] = Field(default_factory=lambda: [NotifierConfig()])
    enabled: bool = True


class LineageConfig(_Model):
    """Where lineage goes besides the metadata store."""

    platform: str = Field("default", description="Names this platform in dataset namespaces.")
    url: str | None = Field(None, description="OpenLineage HTTP endpoint to send events to as well.")


class PiiConfig(_Model):
    """PII classification of datasets as they are catalogued."""

    scan_on_catalog: bool = Field(True, description="Scan a dataset's sample when it enters the catalog.")
    sample: int = Field(1000, ge=1, description="Rows read per dataset by the catalogue scan.")
    auto_apply: bool = Field(False, description="Apply confident proposals as tags without `pii apply`.")
    min_confidence: float = Field(0.8, ge=0, le=1, description="Proposals at or above this are applied.")
    text: PiiTextConfig = Field(default_factory=lambda: PiiTextConfig())


class PiiTextConfig(_Model):
    """Custom free-text recognizers and allow/deny lists per dataset and column (see docs/pii.md).

    ``recognizers``: ``{kind, pattern, context?, validator?, score?}`` (pattern in RE2 syntax;
    validator ``luhn``, ``mod97`` or ``stdnum:<module>``). ``lists``: ``{dataset?, column?,
    allow?, deny?}`` (globs; allowed values are never reported there, denied terms always are).
    """

    recognizers: list[dict[str, Any]] = Field(default_factory=list)
    lists: list[dict[str, Any]] = Field(default_factory=list)

    def model_post_init(self, _context: Any) -> None:
        """Compile once so a bad pattern fails at load time, naming the recognizer."""
        from headwater.pii._custom import compile_rules

        compile_rules(self.recognizers, self.lists)


class Config(_Model):
    """The whole platform configuration."""

    platform_dir: str = ".headwater"
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    lineage: LineageConfig = Field(default_factory=LineageConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    slo: SLOConfig = Field(default_factory=SLOConfig)
    source: str | None = Field(None, exclude=True, description="File the config came from.")

    @classmethod
    def embedded(cls, platform_dir: str | Path = ".headwater") -> Config:
        """The embedded platform: SQLite ``app``, DuckDB ``warehouse``, Parquet ``lake``."""
        return cls(
            platform_dir=str(platform_dir),
            stores={
                "app": SQLiteConfig(path="app.db"),
                "warehouse": DuckDBConfig(path="warehouse.duckdb"),
                "lake": ParquetConfig(root="lake"),
            },
        )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        env: dict[str, str] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Config:
        """Load a config file (or the embedded defaults), then env overrides, then arguments."""
        env = dict(os.environ if env is None else env)
        data: dict[str, Any]
        base_dir: Path | None = None
        if path is None:
            data = Config.embedded().model_dump(by_alias=True, exclude={"source"}, mode="python")
            data = _unwrap_secrets(data)
        else:
            p = Path(path)
            try:
                text = p.read_text()
            except OSError as err:
                raise ConfigError(f"cannot read config file {p}: {err.strerror}", path=str(p)) from None
            try:
                data = safe_load(text) or {}  # refuses recursive aliases, alias bombs, deep nesting, huge ints
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                why = f": {err.problem}" if isinstance(err, YamlLimitError) and err.problem else ""
                raise ConfigError(f"{p} is not valid YAML{where}{why}", path=str(p),
                                  line=mark.line + 1 if mark else None) from None
            if not isinstance(data, dict):
                raise ConfigError(f"{p} must hold a mapping at the top level", path=str(p))
            base_dir = p.resolve().parent
        data = _deep_merge(data, _env_overrides(env))
        if overrides:
            data = _deep_merge(data, overrides)
        data = _expand_env(data, env)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(_describe(err, path), path=str(path) if path else None) from None
        if base_dir is not None:
            cfg.source = str(Path(path).resolve())  # type: ignore[arg-type]
            if not Path(cfg.platform_dir).is_absolute():
                cfg.platform_dir = str(base_dir / cfg.platform_dir)
        return cfg

    def resolve(self, relative: str) -> Path:
        """A path relative to the platform directory."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.platform_dir) / p

    def to_yaml(self) -> str:
        """The config as YAML with every secret redacted (safe to print or commit)."""
        data = self.model_dump(by_alias=True, exclude={"source"}, mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)

    def to_yaml_with_secrets(self) -> str:
        """The config as YAML including secrets; only for writing the platform's own file."""
        data = _unwrap_secrets(self.model_dump(by_alias=True, exclude={"source"}, mode="python", exclude_none=True))
        return yaml.safe_dump(data, sort_keys=False)


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    return value


_NOT_OVERRIDES = {"HEADWATER_CONFIG", "HEADWATER_REQUIRE_SERVICES"}


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("HEADWATER_") or key in _NOT_OVERRIDES or "__" not in key:
            continue
        parts = [p.lower() for p in key[len("HEADWATER_") :].split("__") if p]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = _env_value(value)
    return out


def _env_value(value: str) -> Any:
    # YAML gives lists, mappings and null; scalars stay strings (pydantic coerces them to the
    # field's type), so a numeric-looking password is not turned into an int, and a value that
    # is not valid YAML is never echoed back in a YAML error (it may be a secret).
    if not value.strip():
        return value
    try:
        parsed = safe_load(value)
    except yaml.YAMLError:
        return value
    if parsed is None or isinstance(parsed, dict | list):
        return parsed
    return value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        old = out.get(k)
        if isinstance(v, dict) and isinstance(old, dict) and v.get("kind", old.get("kind")) == old.get("kind"):
            # Same kind of thing (or no kind): merge. A new ``kind`` replaces the whole entry.
            out[k] = _deep_merge(old, v)
        else:
            out[k] = v
    return out


def _expand_env(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"config refers to ${{{name}}} but that environment variable is not set")
            return env[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env) for v in value]
    return value


def _describe(err: ValidationError, path: str | Path | None) -> str:
    where = f"{path}: " if path else ""
    lines = []
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"{loc}: {e['msg']}")
    return f"{where}invalid configuration: " + "; ".join(lines)
