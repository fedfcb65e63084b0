"""``Platform``: wires configuration, stores, the metadata store, catalog and planner together.

``Platform.open()`` with no argument opens the platform named by ``HEADWATER_CONFIG`` or, when
that is unset, the embedded platform in ``./.headwater`` (SQLite ``app``, DuckDB ``warehouse``,
local Parquet ``lake``, SQLite metadata). A ``headwater.yaml`` swaps any store for Postgres,
Snowflake or S3 under the same name; calling code does not change.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from headwater.access.cursor import CursorCodec
from headwater.access.planner import Planner
from headwater.access.session import Session
from headwater.catalog import Catalog, SyncReport
from headwater.config import (
    Config,
    DuckDBConfig,
    ParquetConfig,
    PostgresConfig,
    SnowflakeConfig,
    SQLiteConfig,
)
from headwater.errors import ConfigError, DatasetNotFound
from headwater.metadata import MetadataStore
from headwater.principal import Principal
from headwater.stores.base import Store

__all__ = ["Platform"]


class Platform:
    """One Headwater platform: its stores, catalog and sessions."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dir = Path(config.platform_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        from headwater.telemetry.otel import configure

        configure(config.telemetry)
        text_rules = config.pii.text
        if text_rules.recognizers or text_rules.lists:
            # one detector serves every consumer: the redact_pii mask, scans, topic checks
            from headwater.pii import configure as configure_pii

            configure_pii(text_rules)
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self.meta = MetadataStore.open(config.metadata.url.get_secret_value(), base_dir=self.dir)
        self.catalog = Catalog(self.meta)
        secret = self._cursor_secret()
        self.cursors = CursorCodec(_derive(secret, "cursors"), ttl_s=config.security.cursor_ttl_s)
        from headwater.policy._store import PolicyStore

        self.policies = PolicyStore(self.meta, hmac_key=_derive(secret, "masks"))
        self.planner = Planner(self.catalog, _LazyStores(self), policy=self.policies.engine)
        self._authenticator: Any = None
        self._lineage: Any = None
        self._audit: Any = None
        self._bus: Any = None
        self._registry: Any = None
        self._dead_letters: Any = None
        self._slos: Any = None
        self._slo_recorder: Any = None
        self._subject_keys: Any = None
        self._event_governance: Any = None
        self._secret = secret
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self._granted_at: dict[str, int] = {}
        """Catalog version at which each store's reader grants were last brought in step."""
        self._grants_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Platform(dir={str(self.dir)!r}, stores={sorted(self.config.stores)})"

    # -- construction ------------------------------------------------------------------
    @classmethod
    def open(cls, config: Config | str | Path | None = None, **overrides: Any) -> Platform:
        """Open a platform from a ``Config``, a path to ``headwater.yaml``, or the defaults.

        Keyword overrides (``platform_dir=...``) win over the file and the environment.
        """
        if isinstance(config, Config):
            cfg = config
        else:
            path = config if config is not None else os.environ.get("HEADWATER_CONFIG") or None
            cfg = Config.load(path, overrides=overrides or None)
        return cls(cfg)

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cursor_secret(self) -> bytes:
        configured = self.config.security.cursor_secret
        if configured is not None:
            return configured.get_secret_value().encode()
        path = self.dir / "secret.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip().encode()

    # -- stores ------------------------------------------------------------------------
    @property
    def store_names(self) -> list[str]:
        """Logical names of the configured stores."""
        return list(self.config.stores)

    def store(self, name: str) -> Store:
        """The store called ``name`` (built on first use)."""
        store = self._stores.get(name)
        if store is not None:
            return store
        with self._lock:
            if name not in self._stores:
                cfg = self.config.stores.get(name)
                if cfg is None:
                    raise DatasetNotFound(
                        f"no store named {name!r}; configured stores: {', '.join(self.config.stores)}",
                        store=name,
                    )
                store = self._build(name, cfg)
                if getattr(cfg, "manage_grants", False) and getattr(cfg, "reader_role", None):
                    # Principal reads first bring the reader role's grants in step with the catalog.
                    store.before_read = functools.partial(self._ensure_reader_grants, name)  # type: ignore[attr-defined]
                self._stores[name] = store
            return self._stores[name]

    def _build(self, name: str, cfg: Any) -> Store:
        if isinstance(cfg, SQLiteConfig):
            from headwater.stores.sqlite import SQLiteStore

            return SQLiteStore(name, self.config.resolve(cfg.path))
        if isinstance(cfg, DuckDBConfig):
            from headwater.stores.duckdb import DuckDBStore

            return DuckDBStore(name, self.config.resolve(cfg.path), allowed_directories=[
                str(self.config.resolve(d).resolve()) for d in cfg.allowed_directories])
        if isinstance(cfg, PostgresConfig):
            from headwater.stores.postgres import PostgresStore

            return PostgresStore(
                name, cfg.dsn.get_secret_value(), schema=cfg.schema_,
                max_connections=cfg.max_connections, connect_timeout_s=cfg.connect_timeout_s,
                reader_role=cfg.reader_role,
                reader_dsn=cfg.reader_dsn.get_secret_value() if cfg.reader_dsn is not None else None,
            )
        if isinstance(cfg, SnowflakeConfig):
            from headwater.stores.snowflake import SnowflakeStore

            return SnowflakeStore(
                name, account=cfg.account, user=cfg.user, password=cfg.password.get_secret_value(),
                database=cfg.database, schema=cfg.schema_, warehouse=cfg.warehouse, role=cfg.role,
                host=cfg.host, port=cfg.port, protocol=cfg.protocol, reader_role=cfg.reader_role,
            )
        if isinstance(cfg, ParquetConfig):
            from headwater.stores.parquet import ParquetStore

            fs = None
            root = cfg.root
            if root.startswith("s3://"):
                fs, root = _s3_filesystem(cfg)
            elif "://" not in root:
                root = str(self.config.resolve(root))
            return ParquetStore(name, root, filesystem=fs, partition_by=cfg.partition_by)
        raise ConfigError(f"store {name!r} has an unknown kind")

    @property
    def stores(self) -> dict[str, Store]:
        """Every configured store (building any not yet built)."""
        return {n: self.store(n) for n in self.config.stores}

    # -- the stores' backstop (docs/store-security.md) ---------------------------------
    def read_scope(self, plan: Any, store: str, principal: Principal) -> Any:
        """The :class:`~headwater.stores.base.ReadScope` of ``plan``'s reads in ``store`` for
        ``principal`` (made once per plan; a plan is one principal's policy decision)."""
        from headwater.stores._backstop import scope_for

        key = ("hw.scope", store)
        scope = plan.rendered.get(key)
        if scope is None:
            scope = plan.rendered.setdefault(key, scope_for(self, plan, store, principal))
        return scope

    def _ensure_reader_grants(self, store: str) -> None:
        """Bring ``store``'s reader grants in step with the catalog when it changed since."""
        version = self.catalog.version
        if self._granted_at.get(store) == version:
            return
        with self._grants_lock:
            if self._granted_at.get(store) != version:
                self.apply_store_grants(store)
                self._granted_at[store] = version

    def store_grants(self, store: str) -> list[str]:
        """The SQL that gives ``store``'s reader role SELECT on exactly its catalogued tables
        (Postgres, Snowflake): print it for an administrator, or :meth:`apply_store_grants`."""
        return self._grants(store, apply=False)

    def apply_store_grants(self, store: str) -> list[str]:
        """Run :meth:`store_grants` on the store's own (owner) connection; returns what ran."""
        return self._grants(store, apply=True)

    def _grants(self, store: str, *, apply: bool) -> list[str]:
        from headwater.errors import InvalidInput

        target = self.store(store)
        if not hasattr(target, "grant_statements"):
            raise InvalidInput(f"store {store!r} ({target.kind}) has no reader role: its backstop is "
                               "built in (docs/store-security.md)")
        tables = [ds.table for ds in self.catalog.list(f"{store}.*") if ds.store == store]
        run = target.sync_reader_grants if apply else target.grant_statements  # type: ignore[attr-defined]
        return run(tables)

    # -- sessions ----------------------------------------------------------------------
    def session(self, principal: Principal | str | None = None, *, token: str | None = None) -> Session:
        """A session for a principal.

        ``token`` (an API key or a JWT) is authenticated first; ``principal`` is for trusted
        in-process callers (default: the OS user's name). Once a policy is applied, every call
        of the session is authorised against it (default deny); before that the platform is open.
        """
        if token is not None:
            if principal is not None:
                from headwater.errors import InvalidInput

                raise InvalidInput("pass either token= or principal=, not both")
            return Session(self, self.authenticate(token))
        if principal is None:
            principal = os.environ.get("USER") or "local"
        return Session(self, Principal.of(principal))

    @property
    def audit(self) -> Any:
        """The platform's :class:`headwater.audit.AuditLog` (hash-chained, signed checkpoints)."""
        if self._audit is None:
            from headwater.audit import AuditLog

            cfg = self.config.audit
            spool = self.dir / "audit-spool" if cfg.durability in ("spool", "fsync") else None
            key = _derive(self._secret, "audit")
            self._audit = AuditLog(self.meta, signing_key=key,
                                   checkpoint_every=cfg.checkpoint_every, retention_days=cfg.retention_days,
                                   spool_dir=spool, spool_sync=cfg.durability == "fsync",
                                   anchor=_audit_anchor(self, key))
        return self._audit

    def record(self, event: Any) -> None:
        """Append an audit record, durable before this returns, when auditing is on: in the
        local spool (``audit.durability: spool``, the default; ``fsync`` flushes it to stable
        storage too) or committed to the metadata store (``commit``)."""
        if self.config.audit.enabled:
            self.audit.spool(event)

    def apply_policy(self, text: str, *, source: str | None, applied_by: str) -> Any:
        """Validate and apply a policy document; audited as a policy change."""
        from headwater.audit import AuditEvent

        before = self.policies.latest()
        version, policy = self.policies.apply(text, source=source, applied_by=applied_by)
        if before is None or before.version != version.version:
            self.record(AuditEvent(actor=applied_by, action="policy_change", reason=f"version {version.version}",
                                   extra={"version": version.version, "content_hash": version.content_hash,
                                          "source": source}))
        return version, policy

    def create_api_key(self, principal: str, *, expires_in: Any = None, description: str | None = None,
                       actor: str | None = None) -> Any:
        """Create an API key (its secret is in the return value only); audited."""
        from headwater.audit import AuditEvent

        key = self.api_keys.create(principal, expires_in=expires_in, description=description)
        self.record(AuditEvent(actor=actor or principal, action="credential_change", reason="api key created",
                               extra={"key_id": key.key_id, "principal": principal}))
        return key

    def revoke_api_key(self, key_id: str, *, actor: str | None = None) -> None:
        """Revoke an API key; audited."""
        from headwater.audit import AuditEvent

        self.api_keys.revoke(key_id)
        self.record(AuditEvent(actor=actor or "local", action="credential_change", reason="api key revoked",
                               extra={"key_id": key_id}))

    # -- SLOs --------------------------------------------------------------------------
    @property
    def slos(self) -> list[Any]:
        """The SLO specs in force (``slo.file``, else the built-in query SLOs)."""
        if self._slos is None:
            from headwater.telemetry.slo import load_slo_file, load_slos

            path = self.config.slo.file
            self._slos = load_slo_file(self.config.resolve(path)) if path else load_slos(
                DEFAULT_SLOS, source="built-in SLOs")
        return self._slos

    @property
    def slo_recorder(self) -> Any:
        """Buffered SLI counters (flushed in the background); None when SLOs are off."""
        if self._slo_recorder is None and self.config.slo.enabled:
            from headwater.telemetry.slo import SLORecorder

            self._slo_recorder = SLORecorder(self.meta, self.slos).start()
        return self._slo_recorder

    def slo_evaluator(self) -> Any:
        """An evaluator with the configured notifiers (burn rates, budgets, alert state)."""
        from headwater.telemetry.slo import LogNotifier, SLOEvaluator, WebhookNotifier

        notifiers: list[Any] = []
        for n in self.config.slo.notifiers:
            if n.kind == "log":
                notifiers.append(LogNotifier())
            else:
                notifiers.append(WebhookNotifier(
                    n.url.get_secret_value() if n.url else None, shape=n.shape,
                    routing_key=n.routing_key.get_secret_value() if n.routing_key else None,
                    severities=n.severities))
        return SLOEvaluator(self.meta, self.slos, notifiers=notifiers, recorder=self.slo_recorder)

    # -- events ------------------------------------------------------------------------
    @property
    def bus(self) -> Any:
        """The event bus (embedded log in the platform folder unless ``events.bus`` says NATS)."""
        if self._bus is None:
            from headwater.events.bus import connect

            self._bus = connect(self.config.events.bus or f"embedded:{self.dir / 'events.db'}")
        return self._bus

    @property
    def schema_registry(self) -> Any:
        """The schema registry (subjects, versions, global ids, compatibility) in the metadata store."""
        if self._registry is None:
            self._registry = self.meta.schema_registry(pii_policy=self.config.events.pii_policy)
        return self._registry

    @property
    def dead_letters(self) -> Any:
        """The dead-letter store (one reason model for every bus)."""
        if self._dead_letters is None:
            from headwater.events.dlq import DeadLetterStore

            self._dead_letters = DeadLetterStore(self.meta.engine)
        return self._dead_letters

    @property
    def event_governance(self) -> Any:
        """The :class:`headwater.events.governance.EventGovernance`: topic ACLs, sealing of PII in
        events, connector provenance, and the governed producers, consumers and registry calls."""
        if self._event_governance is None:
            from headwater.events.governance import EventGovernance

            self._event_governance = EventGovernance(
                self, provenance_key=_derive(self._secret, "event-provenance"),
                pseudonym_key=_derive(self._secret, "event-pseudonyms"))
        return self._event_governance

    def producer(self, source: str | None = None, *, principal: Principal | str | None = None,
                 token: str | None = None) -> Any:
        """A producer that validates payloads against their registered schema and seals their PII
        fields before publishing. For a ``principal`` (or the one a ``token`` authenticates) every
        publish needs ``publish`` on the topic and reserved (CDC) topics are refused; without
        either, the producer is the platform's own (for its components)."""
        gov = self.event_governance
        who = self._event_principal(principal, token)
        if who is None:
            return gov.internal_producer(source or "/headwater")
        return gov.producer(who, source)

    def consumer(self, topic: str, group: str, *, principal: Principal | str | None = None,
                 token: str | None = None, options: Any = None) -> Any:
        """A governed consumer of ``topic`` for a principal (default: the OS user): ``consume``
        on the topic; sealed values opened, the dataset's column rules applied."""
        who = self._event_principal(principal, token) or Principal.of(os.environ.get("USER") or "local")
        return self.event_governance.consumer(who, topic, group, options=options)

    def event_bus(self, principal: Principal | str | None = None, *, token: str | None = None) -> Any:
        """The bus as a principal (default: the OS user) may use it (``Bus`` protocol, governed)."""
        who = self._event_principal(principal, token) or Principal.of(os.environ.get("USER") or "local")
        return self.event_governance.bus(who)

    def _event_principal(self, principal: Principal | str | None, token: str | None) -> Principal | None:
        if token is not None:
            if principal is not None:
                from headwater.errors import InvalidInput

                raise InvalidInput("pass either token= or principal=, not both")
            return self.authenticate(token)
        return None if principal is None else Principal.of(principal)

    def register_schema(self, subject: str, schema: str, schema_type: str = "JSON", *,
                        actor: str = "local", principal: Principal | str | None = None,
                        references: Any = None) -> int:
        """Register a schema version as ``principal`` (default: ``actor``): ``register`` on the
        subject's topic, ``declassify`` too when it weakens an ``x-pii`` classification;
        compatibility enforced; audited. Returns its global id."""
        return self.event_governance.register_schema(principal or actor, subject, schema, schema_type,
                                                     references=references).id  # type: ignore[no-any-return]

    def replay_dead_letters(self, *, actor: str = "local", principal: Principal | str | None = None,
                            **options: Any) -> Any:
        """Re-publish dead letters of the topics ``principal`` (default: ``actor``) administers
        (filters, dry run, rate, loop guard); audited."""
        return self.event_governance.replay(principal or actor, actor=actor, **options)

    @property
    def subject_keys(self) -> Any:
        """The platform's :class:`headwater.subject_keys.SubjectKeys` (crypto-shredding keys)."""
        if self._subject_keys is None:
            from headwater.subject_keys import SubjectKeys

            self._subject_keys = SubjectKeys(self.meta.engine, master_key=_derive(self._secret, "subject-keys"))
        return self._subject_keys

    @property
    def lineage(self) -> Any:
        """The platform's :class:`headwater.lineage.LineageStore` (events and the lineage graph)."""
        if self._lineage is None:
            from headwater.lineage import LineageStore

            cfg = self.config.lineage
            self._lineage = LineageStore(self.meta, platform=cfg.platform, url=cfg.url)
            for name, store_cfg in self.config.stores.items():
                if isinstance(store_cfg, PostgresConfig):
                    # Postgres-side producers (dbt, Airflow) name tables db.schema.table.
                    self._lineage.identity.add_postgres_store(
                        name, store_cfg.dsn.get_secret_value(), store_cfg.schema_)
        return self._lineage

    @property
    def authenticator(self) -> Any:
        """The :class:`headwater.auth.Authenticator` (API keys, and JWT when configured)."""
        if self._authenticator is None:
            self._authenticator = self.config.auth.build(self.meta, base_dir=self.dir)
        return self._authenticator

    @property
    def api_keys(self) -> Any:
        """The platform's :class:`headwater.auth.ApiKeys`."""
        return self.authenticator.api_keys

    def authenticate(self, token: str) -> Principal:
        """The principal a token (API key or JWT) stands for; ``AuthenticationError`` otherwise.

        Roles and attributes carried by a JWT are used; an API key's principal gets its roles
        and attributes from the policy.
        """
        from headwater.audit import AuditEvent
        from headwater.errors import AuthenticationError

        try:
            principal = self.authenticator.authenticate(token).principal()
        except AuthenticationError:
            self.record(AuditEvent(actor="unknown", action="authenticate", decision="deny",
                                   reason="invalid credentials"))
            raise
        self.record(AuditEvent(actor=principal.name, action="authenticate"))
        return principal

    def policy_engine(self) -> Any:
        """The policy engine in force, or None when no policy has been applied (open platform)."""
        return self.policies.engine()

    def authorize(self, principal: Principal | str, kind: str, name: str, action: str) -> str | None:
        """Allow ``action`` on a topic, lineage namespace or dataset (``erase``) for
        ``principal``, or raise :class:`~headwater.errors.AccessDenied`.

        Returns the allowing rule; None when no policy is applied (the platform is open until one
        is). The one check every door (SDK, CLI, HTTP) calls for resources that are not rows.
        """
        engine = self.policies.engine()
        if engine is None:
            return None
        return engine.authorize(principal, kind, name, action)

    def admit(self, principal: Principal, limit: int | None) -> Any:
        """Take one of the principal's concurrent-query slots; returns the release function."""
        if limit is None:
            return _noop
        from headwater.errors import QueryRejected

        with self._inflight_lock:
            n = self._inflight.get(principal.name, 0)
            if n >= limit:
                raise QueryRejected(
                    f"{principal.name} already runs {n} queries, its limit (rule max_concurrent)",
                    rule="max_concurrent")
            self._inflight[principal.name] = n + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            with self._inflight_lock:
                self._inflight[principal.name] -= 1

        return release

    def system_rows(self, dataset: Any, *, match: Any = None) -> Any:
        """Rows of a dataset read by the platform itself (no policy), optionally only those whose
        key columns equal a row of ``match`` (an Arrow table of key columns, named as the
        dataset's columns).

        Authorisation reads the rows a write replaces through this, so it fails closed: a store
        error propagates as the store raised it, and any other failure (a key column that does not
        bind, a comparison that cannot be made) is :class:`~headwater.errors.AccessDenied`. It
        never answers "no rows" because it could not look. Up to ``_MATCH_PUSHDOWN`` keys are
        looked up with the key predicate pushed into the store; more are matched in DuckDB over
        a scan of the dataset.
        """
        from headwater.errors import AccessDenied, HeadwaterError

        store = self.store(dataset.store)
        try:
            if match is None:
                return _read_all(store, dataset, None, [])
            unknown = [c for c in match.column_names if c not in dataset.column_names]
            if unknown or not match.column_names:
                raise AccessDenied(f"the key column(s) {unknown} are not columns of {dataset.name}, so the rows "
                                   "a write replaces cannot be found; nothing was written", rule="fail-closed",
                                   dataset=dataset.name)
            if match.num_rows <= _MATCH_PUSHDOWN:
                return _read_matching(store, dataset, match)
            return _semi_join(_read_all(store, dataset, None, []), match)
        except HeadwaterError:
            raise
        except Exception as err:  # noqa: BLE001 - fail closed, typed
            raise AccessDenied(f"the rows of {dataset.name} that a write replaces cannot be read "
                               f"({type(err).__name__}); nothing was written", rule="fail-closed",
                               dataset=dataset.name) from None

    # -- catalog -----------------------------------------------------------------------
    def sync_catalog(self, stores: Iterable[str] | None = None) -> SyncReport:
        """Introspect stores (all, or the named ones) into the catalog; new datasets are PII-scanned."""
        report = self.catalog.sync(_LazyStores(self), only=stores)
        self.catalogued(report.added)
        return report

    def catalogued(self, names: Iterable[str]) -> None:
        """Hook for datasets that just entered the catalog: the PII scan (``pii.scan_on_catalog``)."""
        names = list(names)
        if names and self.config.pii.scan_on_catalog:
            from headwater.pii import scan_catalogued

            scan_catalogued(self, names)

    def close(self) -> None:
        """Close every store, the bus and the metadata store."""
        if self._bus is not None:
            with contextlib.suppress(Exception):
                self._bus.close()
            self._bus = None
        if self._slo_recorder is not None:
            with contextlib.suppress(Exception):
                self._slo_recorder.close()
            self._slo_recorder = None
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        if self._audit is not None:
            self._audit.close()
        self.meta.close()


DEFAULT_SLOS = """\
service: headwater
window: 28d
slos:
  - name: query-success
    objective: 99.5
    description: SDK queries that complete without a store failure.
    sli: {query_success: {}}
  - name: query-latency
    objective: 99.0
    description: SDK queries answered within 500 ms.
    sli: {query_latency: {threshold_ms: 500}}
"""


def _noop() -> None:
    return None


def _derive(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose from the platform secret (HMAC-SHA256)."""
    import hashlib
    import hmac

    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


class _LazyStores(dict):  # type: ignore[type-arg]
    """A mapping view of the platform's stores that builds them on access."""

    def __init__(self, platform: Platform) -> None:
        super().__init__()
        self._platform = platform

    def __getitem__(self, name: str) -> Store:
        return self._platform.store(name)

    def __contains__(self, name: object) -> bool:
        return name in self._platform.config.stores

    def items(self):  # type: ignore[no-untyped-def, override]
        return [(n, self._platform.store(n)) for n in self._platform.config.stores]

    def keys(self):  # type: ignore[no-untyped-def, override]
        return list(self._platform.config.stores)


def _audit_anchor(platform: Platform, key: bytes) -> Any:
    """The audit head anchor of ``audit.anchor`` (a signed file beside the platform by default)."""
    from headwater.audit import FileAnchor, S3Anchor
    from headwater.audit._anchor import s3_client

    cfg = platform.config.audit
    anchor = cfg.anchor
    if anchor.kind == "file":
        path = platform.config.resolve(anchor.path) if anchor.path else platform.dir / "audit-anchor.json"
        return FileAnchor(path, key, sync=cfg.durability == "fsync")
    s3 = anchor.s3

    def client() -> Any:
        return s3_client(s3.endpoint_url if s3 else None, s3.region if s3 else "us-east-1",
                         s3.access_key_id.get_secret_value() if s3 and s3.access_key_id else None,
                         s3.secret_access_key.get_secret_value() if s3 and s3.secret_access_key else None)

    return S3Anchor(anchor.bucket, anchor.key, key, client=client, retain_days=anchor.retain_days,
                    lock_mode=anchor.lock_mode)


def _s3_filesystem(cfg: ParquetConfig) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    s3 = cfg.s3
    kwargs: dict[str, Any] = {}
    if s3 is not None:
        kwargs["region"] = s3.region
        if s3.endpoint_url:
            scheme, _, host = s3.endpoint_url.partition("://")
            kwargs["endpoint_override"] = host
            kwargs["scheme"] = scheme
        if s3.access_key_id is not None:
            kwargs["access_key"] = s3.access_key_id.get_secret_value()
        if s3.secret_access_key is not None:
            kwargs["secret_key"] = s3.secret_access_key.get_secret_value()
    return pafs.S3FileSystem(**kwargs), cfg.root[len("s3://"):]


_MATCH_PUSHDOWN = 5_000
"""Keys up to which :meth:`Platform.system_rows` pushes the key predicate into the store."""
_KEYS_PER_QUERY = {1: 500}
"""Keys per lookup query: an IN list for one key column; OR-ed conjunctions (kept shallow for
SQLite's expression depth limit) for composite keys."""


def _read_all(store: Any, dataset: Any, where: Any, params: list[Any]) -> Any:
    from sqlglot import exp

    tree = exp.select("*").from_(store.table_expr(dataset.table))
    if where is not None:
        tree = tree.where(where)
    return store.execute(*store.render(tree, params)).read_all()


def _read_matching(store: Any, dataset: Any, match: Any) -> Any:
    """The rows whose key equals a row of ``match``, with the key predicate pushed down."""
    import pyarrow as pa
    from sqlglot import exp

    from headwater.stores._sql import param

    names = list(match.column_names)
    per_query = _KEYS_PER_QUERY.get(len(names), 100)
    parts = []
    for start in range(0, max(match.num_rows, 1), per_query):
        rows = match.slice(start, per_query).to_pylist()
        params: list[Any] = []
        if len(names) == 1:
            col = exp.column(names[0], quoted=True)
            markers = []
            for r in rows:
                markers.append(param(len(params)))
                params.append(r[names[0]])
            where: Any = exp.In(this=col, expressions=markers) if markers else exp.false()
        else:
            ors = []
            for r in rows:
                ands = []
                for n in names:
                    ands.append(exp.EQ(this=exp.column(n, quoted=True), expression=param(len(params))))
                    params.append(r[n])
                ors.append(exp.paren(exp.and_(*ands)))
            where = exp.or_(*ors) if ors else exp.false()
        parts.append(_read_all(store, dataset, where, params))
    found = [t for t in parts if t.num_rows] or parts[:1]
    if all(t.schema.equals(found[0].schema) for t in found):
        return pa.concat_tables(found)
    # Stores that type results by their values (SQLite) can type one lookup's columns apart
    # from another's: bring every part to the catalogued types (a cast that fails raises).
    from headwater.catalog._catalog import arrow_type_from_text

    types = {c.name: arrow_type_from_text(c.type) for c in dataset.columns}
    schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in found[0].schema])
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in found])


def _semi_join(rows: Any, match: Any) -> Any:
    """The rows of ``rows`` whose key columns equal a row of ``match`` (in DuckDB)."""
    from headwater.stores.duckdb import new_connection

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    con = new_connection(locked=True)
    try:
        con.register("hw_rows", rows)
        con.register("hw_keys", match)
        on = " AND ".join(f"r.{q(c)} = k.{q(c)}" for c in match.column_names)
        return con.execute(f"SELECT r.* FROM hw_rows r SEMI JOIN hw_keys k ON {on}").fetch_arrow_table()
    finally:
        con.close()
