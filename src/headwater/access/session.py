"""``Session``: what a principal uses to query and write, and ``Result``, what it gets back.

Every call goes one way: plan (parse, resolve, qualify, place; cached) -> authorise (the seam
the governance layer fills) -> execute on the owning store or federate in DuckDB -> Arrow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.access._write_guard import (
    Lazy,
    post_image,
    require_exact_columns,
    resolve_target,
    stored_columns,
    stored_keys,
    typed_keys,
)
from headwater.access.cursor import CursorState
from headwater.access.planner import DerivePlan, Plan, bind_params, parse_derive
from headwater.catalog import normalise_name
from headwater.errors import (
    AccessDenied,
    DatasetNotFound,
    HeadwaterError,
    InvalidCursor,
    InvalidInput,
    QueryError,
    QueryParseError,
    QueryRejected,
    StoreError,
    WriteError,
)
from headwater.principal import Principal
from headwater.stores._sql import bind_template, param_template, reject_case_duplicates
from headwater.stores.base import WriteMode, WriteResult
from headwater.stores.duckdb import DuckDBStore, new_connection
from headwater.telemetry.otel import db_span, policy_denied, query_summary, query_text

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["Result", "Session", "to_arrow"]


class Result:
    """One page of a query result (or the whole result when not paged).

    Iterating a ``Result`` yields this page and then each following page, fetched with the
    signed cursor; ``to_arrow()``/``to_pandas()``/``to_polars()``/``to_pylist()`` convert this
    page; ``batches()`` streams it without holding it in memory.
    """

    def __init__(
        self,
        *,
        reader: pa.RecordBatchReader | None = None,
        table: pa.Table | None = None,
        next_cursor: str | None = None,
        plan: Plan | None = None,
        fetch_next: Any = None,
    ) -> None:
        self._reader = reader
        self._table = table
        self.next_cursor = next_cursor
        """Token for the next page, or None on the last page (and for unpaged results)."""
        self.plan = plan
        self._fetch_next = fetch_next
        self._consumed = False

    def __repr__(self) -> str:
        rows = self._table.num_rows if self._table is not None else "streaming"
        return f"Result(columns={self.columns!r}, rows={rows}, next_cursor={'yes' if self.next_cursor else None})"

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema of the rows."""
        return self._table.schema if self._table is not None else self._reader.schema  # type: ignore[union-attr]

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self.schema.names)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Stream this page's record batches (once)."""
        if self._table is not None:
            yield from self._table.to_batches()
            return
        if self._consumed:
            raise InvalidInput("this result was already consumed; results stream once")
        self._consumed = True
        assert self._reader is not None
        yield from self._reader

    def to_arrow(self) -> pa.Table:
        """This page as an Arrow table."""
        if self._table is None:
            if self._consumed:
                raise InvalidInput("this result was already consumed; results stream once")
            self._consumed = True
            assert self._reader is not None
            self._table = self._reader.read_all()
            self._reader = None
        return self._table

    @property
    def num_rows(self) -> int:
        """Rows in this page (reads a streaming result to count it)."""
        return self.to_arrow().num_rows

    def to_pylist(self) -> list[dict[str, Any]]:
        """This page as a list of dicts."""
        return self.to_arrow().to_pylist()

    def to_pandas(self) -> Any:
        """This page as a pandas DataFrame."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        """This page as a polars DataFrame."""
        try:
            import polars as pl
        except ImportError:
            from headwater.errors import MissingDependency

            raise MissingDependency("to_polars needs polars; pip install 'headwater[frames]'") from None
        return pl.from_arrow(self.to_arrow())

    def next_page(self) -> Result | None:
        """The following page, or None after the last one."""
        if not self.next_cursor or self._fetch_next is None:
            return None
        return self._fetch_next(self.next_cursor)

    def __iter__(self) -> Iterator[Result]:
        page: Result | None = self
        while page is not None:
            yield page
            page = page.next_page()

    def close(self) -> None:
        """Stop streaming and release the store connection."""
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()


def to_arrow(data: Any, *, dataset: str = "data") -> pa.Table:
    """Accept an Arrow table/batch, pandas or polars frame, list of dicts or dict of lists."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    mod = type(data).__module__
    try:
        if mod.startswith("pandas"):
            return pa.Table.from_pandas(data, preserve_index=False)
        if mod.startswith("polars"):
            return data.to_arrow()
        if isinstance(data, Mapping):
            return pa.table(dict(data))
        if isinstance(data, Sequence) and not isinstance(data, str | bytes):
            if not data:
                return pa.table({})
            if not all(isinstance(r, Mapping) for r in data):
                raise WriteError(f"rows for {dataset} must be dicts (column -> value)", dataset=dataset)
            # Every key of every row is a column (``from_pylist`` would keep only the first
            # row's keys and drop the others' values silently); a row without a key has NULL there.
            names = list(dict.fromkeys(k for r in data for k in r))
            return pa.table({n: pa.array([r.get(n) for r in data]) for n in names})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        if isinstance(err, HeadwaterError):
            raise
        raise WriteError(
            f"cannot convert data for {dataset} to Arrow: mixed or unsupported value types "
            f"({type(err).__name__})",
            dataset=dataset,
        ) from None
    raise WriteError(
        f"cannot write a {type(data).__name__} to {dataset}; pass an Arrow table, a pandas or "
        "polars DataFrame, a list of dicts or a dict of lists",
        dataset=dataset,
    )


class Session:
    """A principal's handle on the platform. Obtain one with ``platform.session(...)``."""

    def __init__(self, platform: Platform, principal: Principal) -> None:
        self.platform = platform
        self.principal = principal

    def __repr__(self) -> str:
        return f"Session(principal={self.principal.name!r})"

    @property
    def lineage(self) -> Any:
        """Lineage as this principal may post and read it (:class:`headwater.lineage.LineageAccess`)."""
        from headwater.lineage import LineageAccess

        return LineageAccess(self.platform, self.principal)

    # -- reads -------------------------------------------------------------------------
    def sql(
        self,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        page_size: int | None = None,
        cursor: str | None = None,
        timeout_s: float | None = None,
        order_by: Sequence[str] | None = None,
    ) -> Result:
        """Run one SELECT (DuckDB dialect; datasets named ``<store>.<table>``).

        Without ``page_size`` (and ``cursor``) the whole result streams. With them, one keyset
        page comes back with ``next_cursor`` for the following one. Placeholders are ``?``,
        ``$1`` or ``:name``.
        """
        started = time.perf_counter()
        try:
            derive = _derive_of(query)
            if derive is not None:
                if page_size is not None or cursor is not None:
                    raise InvalidInput("INSERT ... SELECT and CREATE TABLE AS return no pages")
                return self._derive(derive, params, timeout_s, query)
            plan, values = self._plan(query, params, order_by=order_by)
        except Exception as err:
            # Every query leaves a record, a failed one too (parse, plan, authorise).
            self._failed(err, "query", query, None, started)
            raise
        store_kind = self.platform.store(plan.store).kind if plan.store is not None else None
        text = plan.rendered.get("otel.text")
        if text is None:
            text = plan.rendered.setdefault("otel.text", query_text(plan.logical or plan.tree))  # type: ignore[arg-type]
        with db_span("SELECT", plan.datasets, store_kind=store_kind,
                     summary=query_summary("SELECT", plan.datasets), text=text) as span:  # type: ignore[arg-type]
            recorder = self.platform.slo_recorder
            on_error = None
            if self.platform.config.audit.enabled:
                def on_error(err: BaseException) -> None:
                    self._failed(err, "query", query, plan, started, stage="stream")
            try:
                result = self._run(plan, values, page_size, cursor, timeout_s, on_error)
            except Exception as err:
                # A store failing (down, timed out, erroring) spends the error budget; a caller's
                # mistake (bad SQL, denied, bad cursor) does not.
                if recorder is not None and isinstance(err, StoreError):
                    recorder.record_query((time.perf_counter() - started) * 1000, ok=False)
                self._failed(err, "query", query, plan, started, stage="execute")
                raise
            if recorder is not None:
                recorder.record_query((time.perf_counter() - started) * 1000, ok=True)
            if self.platform.config.audit.enabled:
                try:
                    self.platform.record(_query_event(self.principal.name, plan, result, started, span))
                except BaseException:
                    result.close()
                    raise
        return result

    def _run(
        self, plan: Plan, values: list[Any], page_size: int | None, cursor: str | None,
        timeout_s: float | None, on_error: Any = None,
    ) -> Result:
        timeout = self._timeout(plan, timeout_s)
        decision = plan.decision
        cap = decision.max_rows if decision is not None else None
        release = self.platform.admit(self.principal, decision.max_concurrent if decision else None)
        try:
            if page_size is None and cursor is None:
                reader = self._execute(plan.store, plan, plan.tree, values, timeout)
                return Result(reader=_guarded(reader, cap, release, on_error), plan=plan)
            if cap is not None and page_size is not None and page_size > cap:
                raise QueryRejected(
                    f"page_size {page_size} exceeds the row cap of {cap} for {self.principal.name}",
                    rule="max_rows")
            result = self._page(plan, values, page_size, cursor, timeout)
        except BaseException:
            release()
            raise
        release()
        return result

    def read(
        self,
        dataset: str,
        *,
        columns: Sequence[str] | None = None,
        where: str | Mapping[str, Any] | None = None,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> Result:
        """Read a dataset: optional columns, filter, order and keyset paging.

        ``where`` is a SQL condition (with placeholders bound from ``params``) or a mapping of
        column -> value for equality filters.
        """
        ds = self.platform.catalog.get(dataset)
        cols = [ds.column(c).name for c in columns] if columns else ds.column_names
        select = ", ".join(_ident(c) for c in cols)
        query = f"SELECT {select} FROM {_ident(ds.store)}.{_ident(ds.table)}"
        if isinstance(where, Mapping):
            if params:
                raise InvalidInput("pass either where={column: value} or where='...' with params")
            conds = []
            values: list[Any] = []
            for k, v in where.items():
                col = ds.column(k).name
                if v is None:
                    conds.append(f"{_ident(col)} IS NULL")
                else:
                    conds.append(f"{_ident(col)} = ?")
                    values.append(v)
            if conds:
                query += " WHERE " + " AND ".join(conds)
            params = values
        elif where:
            query += f" WHERE {where}"
        if isinstance(order_by, str):
            order_by = [order_by]
        if order_by:
            query += " ORDER BY " + ", ".join(_order_item(o, ds) for o in order_by)
        return self.sql(query, params, page_size=page_size, cursor=cursor)

    def explain(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> str:
        """Where and how a query would run: the store's plan, or the federation plan.

        Governed like the query (a query the principal may not run cannot be explained) and
        audited (action ``explain``). Parameters appear as markers, never values. When the
        policy masks or filters anything the query reads, the store's own plan is reduced to its
        operator names: the store plans with the bound values, so its text would show attribute
        values, the derived keys of ``hash``/``tokenise`` masks, and row estimates taken from
        the unfiltered table (see :mod:`headwater.access._explain`).
        """
        started = time.perf_counter()
        plan: Plan | None = None
        try:
            plan, values = self._plan(query, params, action="explain")
            text = self._explain(plan, values)
        except Exception as err:
            self._failed(err, "explain", query, plan, started, stage=None if plan is None else "execute")
            raise
        if self.platform.config.audit.enabled:
            self.platform.record(_query_event(self.principal.name, plan, None, started, None, action="explain"))
        return text

    def _explain(self, plan: Plan, values: list[Any]) -> str:
        from headwater.access._explain import plan_shape

        decision = plan.decision
        withheld = decision is not None and bool(decision.masks or decision.filters)
        if plan.store is not None:
            store = self.platform.store(plan.store)
            sql, vals = _render(plan.rendered, plan.store, store, plan.tree, values)
            lines = [f"-- runs on {plan.store} ({store.kind})", sql]
            try:
                native = store.explain(sql, vals)
            except StoreError as err:
                lines.append(f"-- the store's own plan is unavailable ({type(err).__name__})")
            else:
                if withheld:
                    lines.append("-- plan (operator names only: values, keys and row estimates are withheld "
                                 "under the policy)")
                    lines.extend(plan_shape(store.kind, native))
                else:
                    lines.append(native)
        else:
            lines = [f"-- federated in DuckDB ({plan.engine or 'in-memory'})"]
            for src in plan.sources:
                if src.how == "fetch":
                    store = self.platform.store(src.dataset.store)
                    sql = store.render_template(src.fetch_tree)[0]  # type: ignore[arg-type]
                    lines.append(f"-- {src.view} <- {src.dataset.name} via {store.kind}: {sql}")
                else:
                    lines.append(f"-- {src.view} <- {src.dataset.name} ({src.how})")
            lines.append(_MARKER.sub("?", plan.tree.sql(dialect="duckdb")))
        if decision is not None:
            lines.append(f"-- governed by policy {decision.policy_version[:12]} for {self.principal.name}: "
                         f"{len(decision.masks)} mask(s), {len(decision.filters)} row filter(s); "
                         "parameters shown as markers")
        return "\n".join(lines)

    # -- writes ------------------------------------------------------------------------
    def write(
        self,
        dataset: str,
        data: Any,
        *,
        mode: WriteMode | str = WriteMode.APPEND,
        key: Sequence[str] | str | None = None,
    ) -> WriteResult:
        """Write rows into ``<store>.<table>`` atomically; a missing table is created.

        ``mode`` is ``append``, ``upsert`` (by ``key``, default the primary key) or
        ``overwrite``. ``data`` is an Arrow table, pandas/polars frame, list of dicts or dict of
        lists. An upsert sets only the columns it is given: the other columns of a matched row
        keep their stored values, a new row takes the column defaults. Column names are matched
        as the store matches them; names that differ only in case are refused. The dataset name
        is normalised (NFKC) and refused when it could pass for another (invisible characters,
        mixed scripts, surrounding spaces). On any error nothing of this call is written.
        """
        try:
            mode = WriteMode(mode)
        except ValueError:
            raise InvalidInput(f"mode must be one of {[m.value for m in WriteMode]}, not {mode!r}") from None
        dataset = normalise_name(dataset)
        store_name, _, table = dataset.partition(".")
        if not table or "." in table:
            raise InvalidInput(f"name the dataset as <store>.<table>, not {dataset!r}")
        if store_name not in self.platform.config.stores:
            raise DatasetNotFound(
                f"no store named {store_name!r}; stores are {', '.join(self.platform.config.stores)}",
                dataset=dataset,
            )
        if isinstance(data, Result) and data.plan is not None and data.plan.datasets:
            # A query result written somewhere is derived data: record its lineage.
            from headwater.lineage import schema_from_catalog

            with self.platform.lineage.track(
                data.plan.sql, schema=schema_from_catalog(self.platform.catalog), target=dataset,
                job_name=f"{self.principal.name}.write.{dataset}",
            ) as run:
                result = self.write(dataset, data.to_arrow(), mode=mode, key=key)
                run.rows_written = result.rows_written
            return result
        arrow = to_arrow(data, dataset=dataset)
        if arrow.num_columns == 0:
            raise WriteError(f"no rows or columns to write to {dataset}", dataset=dataset)
        reject_case_duplicates(arrow.column_names, dataset)
        store = self.platform.store(store_name)
        existing = resolve_target(self.platform, dataset, store)
        if existing is not None:
            table = existing.table
            # Bind every name as the store will: the checks below then see the store's columns.
            arrow = stored_columns(arrow, existing, store)
        keys = stored_keys([key] if isinstance(key, str) else list(key or []), existing, store)
        if mode is WriteMode.UPSERT:
            keys = keys or list(existing.primary_key if existing is not None else ())
            if not keys:
                raise WriteError(f"upsert into {dataset} needs key=[...] (the table has no primary key)",
                                 dataset=dataset)
            _check_upsert_keys(arrow, keys, dataset)
        operation = {WriteMode.APPEND: "INSERT", WriteMode.UPSERT: "UPSERT", WriteMode.OVERWRITE: "REPLACE"}[mode]
        started = time.perf_counter()
        with db_span(operation, [dataset], store_kind=store.kind, summary=query_summary(operation, [dataset]),
                     text=None) as span:
            try:
                self._authorize_write(mode, dataset, existing, arrow, keys, store)
            except AccessDenied as err:
                self._denied(err, "write", datasets=[dataset], columns=arrow.column_names)
                raise
            result = store.write(table, arrow, mode=mode, key=keys)
            if self.platform.config.audit.enabled:
                from headwater.audit import AuditEvent

                self.platform.record(AuditEvent(
                    actor=self.principal.name, action="write", datasets=[dataset],
                    columns=[f"{dataset}.{c}" for c in arrow.column_names], rows=result.rows_written,
                    duration_ms=(time.perf_counter() - started) * 1000, trace_id=_trace_id(span),
                    extra={"mode": mode.value, "created": result.created}))
        if existing is None or result.created:
            self.platform.catalog.register(store_name, store.table(table), kind=store.kind, owner=self.principal.name)
            if existing is None:
                self.platform.catalogued([dataset])
        return result

    # -- internals ---------------------------------------------------------------------
    def _derive(self, derive: DerivePlan, params: Any, timeout_s: float | None, statement: str) -> Result:
        """Run the SELECT (governed as a read), then write its rows (governed as a write);
        lineage records START, then COMPLETE (or FAIL) with column lineage."""
        from headwater.lineage import schema_from_catalog

        with self.platform.lineage.track(
            statement, schema=schema_from_catalog(self.platform.catalog),
            job_name=f"{self.principal.name}.{derive.kind}.{derive.target}",
        ) as run:
            result = self._derive_rows(derive, params, timeout_s)
            run.rows_written = result.to_pylist()[0]["rows_written"]
        return result

    def _derive_rows(self, derive: DerivePlan, params: Any, timeout_s: float | None) -> Result:
        target = normalise_name(derive.target)
        store_name = target.partition(".")[0]
        if store_name not in self.platform.config.stores:
            raise DatasetNotFound(f"no store named {store_name!r}", dataset=target)
        # A table in the store but not in the catalog exists all the same (never silently replaced).
        existing = resolve_target(self.platform, target, self.platform.store(store_name))
        if derive.kind == "create" and existing is not None and not derive.replace:
            if derive.if_not_exists:
                return Result(table=pa.table({"rows_written": pa.array([0], pa.int64())}))
            raise InvalidInput(f"{target} already exists; use CREATE OR REPLACE TABLE or INSERT INTO")
        if derive.kind == "insert" and existing is None:
            raise DatasetNotFound(f"INSERT INTO {target}: no such dataset; use CREATE TABLE ... AS",
                                  dataset=target)
        data = self.sql(derive.query, params, timeout_s=timeout_s).to_arrow()
        if derive.columns:
            if len(derive.columns) != data.num_columns:
                raise InvalidInput(f"INSERT lists {len(derive.columns)} column(s) but the query returns "
                                   f"{data.num_columns}")
            data = data.rename_columns(list(derive.columns))
        elif derive.kind == "insert" and existing is not None:
            data = _by_position(data, existing)
        if derive.kind == "create" and existing is not None:
            result = self._replace(existing, data)
        else:
            mode = WriteMode.APPEND if derive.kind == "insert" else WriteMode.OVERWRITE
            key = list(existing.primary_key) if existing is not None else []
            result = self.write(target, data, mode=mode, key=key or None)
        return Result(table=pa.table({"rows_written": pa.array([result.rows_written], pa.int64())}))

    def _replace(self, existing: Any, data: pa.Table) -> WriteResult:
        """CREATE OR REPLACE: authorised as delete of every row plus insert of the new ones."""
        reject_case_duplicates(data.column_names, existing.name)
        store = self.platform.store(existing.store)
        engine = self.platform.policy_engine()
        if engine is not None:
            try:
                engine.authorize_write(existing, self.principal, "delete", [],
                                       Lazy(lambda: self.platform.system_rows(existing)))
                target = _replacement(existing, data, store)
                engine.authorize_write(target, self.principal, "insert", list(data.column_names), data)
            except AccessDenied as err:
                self._denied(err, "write", datasets=[existing.name], columns=data.column_names)
                raise
        result = store.replace(existing.table, data)
        self.platform.catalog.register(existing.store, store.table(existing.table), kind=store.kind)
        return result

    def _plan(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None, *,
        order_by: Sequence[str] | None = None, action: str = "select",
    ) -> tuple[Plan, list[Any]]:
        """The (cached) plan as this principal sees it, and every parameter value it needs."""
        try:
            plan = self.platform.planner.prepare(query, order_by=order_by, principal=self.principal)
        except (AccessDenied, QueryRejected) as err:
            self._denied(err, action, statement=query)
            raise
        values = bind_params(plan, params)
        if plan.decision is not None:
            engine = self.platform.policy_engine()
            if engine is None or engine.policy.version != plan.decision.policy_version:
                plan = self.platform.planner.prepare(query, order_by=order_by, principal=self.principal)
                engine = self.platform.policy_engine()
            if plan.decision is not None and engine is not None:
                values += engine.params_for(plan.decision, self.principal)
        return plan, values

    def _denied(self, err: Exception, action: str, *, statement: str | None = None,
                datasets: Sequence[str] = (), columns: Sequence[str] = ()) -> None:
        """Count and audit a denial (the record never holds data the principal may not see)."""
        rule = str(getattr(err, "rule", "") or "unknown")
        policy_denied(rule, action)
        _mark_audited(err)
        if not self.platform.config.audit.enabled:
            return
        from headwater.audit import AuditEvent

        ds = list(datasets) or [d for d in [getattr(err, "dataset", None)] if isinstance(d, str) and d]
        self.platform.record(AuditEvent(
            actor=self.principal.name, action="deny", datasets=ds, columns=list(columns),
            decision="deny", reason=str(err), statement=_statement_of(statement) if statement else None,
            extra={"rule": rule, "attempted": action, "error": type(err).__name__}))

    def _failed(self, err: BaseException, action: str, statement: str, plan: Plan | None, started: float, *,
                stage: str | None = None) -> None:
        """Audit a failed call once: ``deny`` when governance refused it (row cap, concurrency,
        policy), else ``error``, with the error class, the stage and the rule, and no data: an
        error's message may quote values (a driver's conversion error, a parser's excerpt), so
        only its class is kept; the statement is normalised (literals and parameters are
        markers). An audit failure here never hides the original error."""
        if getattr(err, "_hw_audited", False) or not isinstance(err, Exception):
            return
        try:
            if isinstance(err, AccessDenied | QueryRejected):
                self._denied(err, "select" if action == "query" else action, statement=statement,
                             datasets=plan.datasets if plan is not None else ())
                return
            _mark_audited(err)
            if not self.platform.config.audit.enabled:
                return
            from headwater.audit import AuditEvent

            if stage is None:
                parse = isinstance(err, QueryParseError) or type(err).__module__.startswith("sqlglot")
                stage = "parse" if parse else "plan"
            cls = type(err).__name__
            extra: dict[str, Any] = {"error": cls, "stage": stage}
            rule = getattr(err, "rule", None)
            if isinstance(rule, str):
                extra["rule"] = rule
            ds = list(plan.datasets) if plan is not None else \
                [d for d in [getattr(err, "dataset", None)] if isinstance(d, str) and d]
            text = plan.rendered.get("audit.static", (None,))[0] if plan is not None else None
            self.platform.record(AuditEvent(
                actor=self.principal.name, action=action, datasets=ds, decision="error",
                reason=f"{cls} during {stage}", statement=text or _statement_of(statement),
                duration_ms=(time.perf_counter() - started) * 1000, extra=extra))
        except Exception as audit_err:  # noqa: BLE001 - the caller gets the original error
            import logging

            logging.getLogger("headwater.access").warning(
                "could not audit a failed %s by %s: %s", action, self.principal.name, type(audit_err).__name__)

    def _timeout(self, plan: Plan, timeout_s: float | None) -> float | None:
        limits = [t for t in (timeout_s, self.platform.config.query.timeout_s) if t is not None]
        if plan.decision is not None and plan.decision.timeout_s is not None:
            limits.append(plan.decision.timeout_s)
        return min(limits) if limits else None

    def _authorize_write(
        self, mode: WriteMode, dataset: str, existing: Any, rows: pa.Table, keys: list[str], store: Any,
    ) -> None:
        """Authorise a write on the rows as the store will hold them (see ``_write_guard``); the
        pre-image lookup fails closed (a typed error, nothing written)."""
        engine = self.platform.policy_engine()
        if engine is None:
            return
        who = self.principal
        columns = list(rows.column_names)
        if existing is None:
            target = _new_dataset(dataset, rows, store)
            actions = {WriteMode.APPEND: ("insert",), WriteMode.UPSERT: ("insert", "update"),
                       WriteMode.OVERWRITE: ("insert", "delete")}[mode]
            for action in actions:
                engine.authorize_write(target, who, action, columns, rows)
            return
        require_exact_columns(existing, columns)
        if mode is WriteMode.APPEND:
            engine.authorize_write(existing, who, "insert", columns, rows)
        elif mode is WriteMode.OVERWRITE:
            engine.authorize_write(existing, who, "insert", columns, rows)
            # Every row it replaces must be inside the principal's row filter too.
            engine.authorize_write(existing, who, "delete", [], Lazy(lambda: self.platform.system_rows(existing)))
        else:
            # Keys typed as the store will cast them, so the rows looked up are the rows written.
            typed = Lazy(lambda: typed_keys(rows.select(keys), existing))
            before = Lazy(lambda: self.platform.system_rows(existing, match=typed()))
            images: dict[str, pa.Table] = {}

            def image(which: str) -> pa.Table:
                if not images:
                    sent = rows
                    for k in keys:
                        sent = sent.set_column(sent.column_names.index(k), typed().schema.field(k), typed().column(k))
                    images["new"], images["updated"] = post_image(before(), sent, keys, dataset)
                return images[which]

            # Rows it updates must be inside the filter before (pre-image) and after (the stored
            # values of left-out columns with the sent ones over them); new rows after.
            engine.authorize_write(existing, who, "update", [], before)
            engine.authorize_write(existing, who, "update", columns, Lazy(lambda: image("updated")))
            engine.authorize_write(existing, who, "insert", columns, Lazy(lambda: image("new")))

    def _execute(
        self, store_name: str | None, plan: Plan, tree: Any, values: list[Any], timeout: float | None,
        rendered: dict[Any, tuple[str, tuple[int, ...]]] | None = None,
    ) -> pa.RecordBatchReader:
        batch = self.platform.config.query.batch_size
        cache = plan.rendered if rendered is None else rendered
        if store_name is not None:
            store = self.platform.store(store_name)
            sql, vals = _render(cache, store_name, store, tree, values)
            # A principal's read: the store's backstop allows only the plan's reads.
            scope = self.platform.read_scope(plan, store_name, self.principal)
            reader = store.execute(sql, vals, batch_size=batch, timeout_s=timeout, scope=scope)
            if plan.temporal and store.capabilities.dialect == "sqlite":
                reader = _typed_temporals(reader, plan.temporal)
            return reader
        return self._federate(plan, tree, values, timeout, batch, cache)

    def _federate(
        self, plan: Plan, tree: Any, values: list[Any], timeout: float | None, batch: int,
        cache: dict[Any, tuple[str, tuple[int, ...]]],
    ) -> pa.RecordBatchReader:
        # The engine is locked (external access off, configuration locked): the warehouse's own
        # instance, where the read also runs in a READ ONLY transaction, or a locked in-memory one.
        engine_scope = self.platform.read_scope(plan, plan.engine or "", self.principal)
        if plan.engine is not None:
            engine_store = self.platform.store(plan.engine)
            assert isinstance(engine_store, DuckDBStore)
            con = engine_store.cursor()
        else:
            con = new_connection(locked=True, allowed_directories=engine_scope.directories)
        opened: list[Any] = []
        try:
            for src in plan.sources:
                store = self.platform.store(src.dataset.store)
                if src.how == "native":
                    continue
                if src.how == "lake":
                    con.register(src.view, store.dataset(src.dataset.table))
                    continue
                sql, vals = _render(plan.rendered, ("fetch", src.view), store, src.fetch_tree, values)
                scope = self.platform.read_scope(plan, src.dataset.store, self.principal)
                reader = _catalog_typed(
                    store.execute(sql, vals, batch_size=batch, timeout_s=timeout, scope=scope), src.dataset)
                opened.append(reader)
                con.register(src.view, reader.read_all() if src.materialize else reader)
        except BaseException:
            for r in opened:
                with contextlib.suppress(Exception):
                    r.close()
            con.close()
            raise
        tpl = cache.get("federation")
        if tpl is None:
            tpl = cache.setdefault("federation", param_template(tree.sql(dialect="duckdb"), lambda n: "?"))
        sql, order = tpl
        return DuckDBStore.over("federation", con, read_only_txn=plan.engine is not None).execute(
            sql, bind_template(order, values), batch_size=batch, timeout_s=timeout, scope=engine_scope)

    def _page_rows(
        self, plan: Plan, values: list[Any], state: CursorState | None, limit: int, timeout: float | None,
    ) -> pa.Table:
        """The next ``limit`` rows after the cursor position.

        DuckDB plans ``ORDER BY ... LIMIT n`` under a range filter as a full sort once n passes a
        few thousand rows (measured: 20 ms vs 450 ms at 10% depth of TPC-H lineitem), so when
        DuckDB runs the query, a page is fetched as keyset chunks small enough to keep its top-N
        plan. Under a non-unique order a chunk starts at the rows equal to the last one (``>=``):
        those already fetched come again and are dropped (rows equal in every sort key are
        interchangeable: the order extends to every column when no key makes it unique).
        """
        engine_kind = self.platform.store(plan.store).kind if plan.store is not None else "duckdb"
        chunk = _DUCKDB_TOPN_ROWS if engine_kind in ("duckdb", "parquet") else limit
        last = state.last if state else None
        keys = [k.name for k in plan.sort]
        parts: list[pa.Table] = []
        remaining = limit
        again = 0  # rows equal to ``last`` fetched already, which a ``>=`` chunk returns first
        while remaining > 0:
            # a run of identical rows longer than a chunk: fetch the rest at once rather than
            # fetching the run again for every chunk
            n = remaining if again >= chunk else min(remaining, chunk)
            nulls = tuple(v is None for v in last) if last is not None else ()
            pp = self.platform.planner.page(plan, has_cursor=last is not None, null_pattern=nulls)
            vals = list(values) + (list(last) if last is not None else []) + [n + again]
            part = self._execute(plan.store, plan, pp.tree, vals, timeout, pp.rendered).read_all()
            fetched = part.num_rows
            if again:
                part = part.slice(again)
            parts.append(part)
            remaining -= part.num_rows
            if fetched < n + again or remaining <= 0:
                break
            last = tuple(part.column(k)[part.num_rows - 1].as_py() for k in keys)  # n >= 1 rows are new
            again = 0 if plan.unique_sort else _count_equal_tail(parts, keys, last)
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _page(
        self, plan: Plan, values: list[Any], page_size: int | None, cursor: str | None,
        timeout: float | None,
    ) -> Result:
        qcfg = self.platform.config.query
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidCursor("page cursor must be a string: the next_cursor of a previous page")
        if any(k.name.startswith("\x00") for k in plan.sort):
            raise InvalidInput("paging needs ORDER BY on result columns (or order_by=[...])")
        fingerprint = _fingerprint(plan, values)
        state: CursorState | None = None
        if cursor:
            state = self.platform.cursors.decode(cursor, fingerprint=fingerprint, principal=self.principal.name)
            if len(state.last) != len(plan.sort):
                raise InvalidCursor("page cursor does not match this query")
            if page_size is None:
                page_size = state.page_size
        if page_size is None:
            page_size = qcfg.default_page_size
        if not 1 <= page_size <= qcfg.max_page_size:
            raise InvalidInput(f"page_size must be between 1 and {qcfg.max_page_size}")
        ties = state.ties if state else 0
        table = self._page_rows(plan, values, state, page_size + ties + 1, timeout)
        keys = [k.name for k in plan.sort]
        skip = 0
        if state and ties:
            key_rows = table.select(keys).slice(0, ties).to_pylist()
            for row in key_rows:
                if tuple(row[k] for k in keys) == state.last:
                    skip += 1
                else:
                    break
        rest = table.slice(skip)
        page = rest.slice(0, page_size)
        next_cursor = None
        if rest.num_rows > page_size and page.num_rows:
            last = tuple(page.column(k)[page.num_rows - 1].as_py() for k in keys)
            n = 0
            if not plan.unique_sort:
                # Rows are sorted by the keys, so rows equal to the last one end the page.
                n = _count_equal(page, keys, last)
                if state and n == page.num_rows and last == state.last:
                    n += ties
            next_cursor = self.platform.cursors.encode(
                CursorState(fingerprint, self.principal.name, last, n, page_size)
            )
        if plan.columns and list(page.column_names) != list(plan.columns):
            page = page.select(list(plan.columns))

        def fetch_next(token: str) -> Result:
            return self._page(plan, values, page_size, token, timeout)

        return Result(table=page, next_cursor=next_cursor, plan=plan, fetch_next=fetch_next)


def _check_upsert_keys(data: pa.Table, keys: Sequence[str], dataset: str) -> None:
    # Every store must refuse null keys (a null never matches, so the row would be duplicated
    # on each upsert); checked here once rather than trusting each backend. The key columns
    # must be in the data: they find the rows to update (and the rows the checks read).
    for k in keys:
        if k not in data.column_names:
            raise WriteError(f"upsert into {dataset}: the data has no key column {k!r}", dataset=dataset)
        if data.column(k).null_count:
            raise WriteError(f"upsert into {dataset}: key columns must not be null", dataset=dataset)


_DUCKDB_TOPN_ROWS = 4096
_MARKER = re.compile(r"__hwparam\d+__")
_MAX_STATEMENT = 10_000
"""Characters of a failed statement kept in its audit record (a failure may be a huge input)."""


def _mark_audited(err: BaseException) -> None:
    """Remember that ``err`` has its audit record (it may pass several recording points)."""
    with contextlib.suppress(Exception):
        err._hw_audited = True  # type: ignore[attr-defined]


def _statement_of(text: Any) -> str | None:
    """The normalised statement for a failure record: literals are markers (the lexical
    fallback when it does not parse), cut to a bounded length."""
    from headwater.audit import normalise_sql

    if not isinstance(text, str):
        return None
    try:
        out = normalise_sql(text[: _MAX_STATEMENT * 4])
    except Exception:  # noqa: BLE001 - never let a hostile statement break its own audit record
        from headwater.audit._normalise import lexical

        out = lexical(text[: _MAX_STATEMENT * 4])
    return out if len(out) <= _MAX_STATEMENT else out[:_MAX_STATEMENT] + " …"


def _trace_id(span: Any) -> str | None:
    ctx = span.get_span_context() if span is not None else None
    return f"{ctx.trace_id:032x}" if ctx is not None and ctx.trace_id else None


def _query_event(actor: str, plan: Plan, result: Result | None, started: float, span: Any,
                 action: str = "query") -> Any:
    """The audit record of an allowed query; its static parts are computed once per plan."""
    from headwater.audit import AuditEvent, normalise_sql

    static = plan.rendered.get("audit.static")
    if static is None:
        logical = plan.logical if plan.logical is not None else plan.tree
        decision = plan.decision
        static = plan.rendered.setdefault("audit.static", (  # type: ignore[arg-type]
            re.sub(r"__hwparam\d+__", "?", normalise_sql(logical)),
            _touched_columns(logical),
            {f"{d}.{c}": m for d, c, m in (decision.masks if decision else [])},
            [f"{d}: {p}" for d, p in (decision.filters if decision else [])],
        ))
    statement, columns, masks, filters = static  # type: ignore[misc]
    rows = result._table.num_rows if result is not None and result._table is not None else None
    return AuditEvent(actor=actor, action=action, datasets=list(plan.datasets), columns=columns,
                      masks=masks, row_filters=filters, statement=statement, rows=rows,
                      duration_ms=(time.perf_counter() - started) * 1000, trace_id=_trace_id(span))


def _touched_columns(tree: Any) -> list[str]:
    """``<store>.<table>.<column>`` for every base column a qualified query reads."""
    from sqlglot import exp

    alias_to_ds = {t.alias_or_name: f"{t.db}.{t.name}" for t in tree.find_all(exp.Table) if t.db}
    out = {f"{alias_to_ds[c.table]}.{c.name}" for c in tree.find_all(exp.Column) if c.table in alias_to_ds}
    return sorted(out)


def _derive_of(query: str) -> DerivePlan | None:
    head = query.lstrip()[:7].upper()
    if head.startswith(("INSERT", "CREATE")):
        return parse_derive(query)
    return None


def _by_position(data: pa.Table, ds: Any) -> pa.Table:
    """INSERT without a column list fills the target's columns in order, as SQL does."""
    names = ds.column_names
    if data.num_columns > len(names):
        raise InvalidInput(f"the query returns {data.num_columns} columns but {ds.name} has {len(names)}")
    return data.rename_columns(names[: data.num_columns])


def _guarded(reader: pa.RecordBatchReader, cap: int | None, release: Any,
             on_error: Any = None) -> pa.RecordBatchReader:
    """Enforce the row cap while streaming; release the concurrency slot when done;
    ``on_error(err)`` audits a failure while streaming (the store failing, the row cap)."""

    def gen() -> Iterator[pa.RecordBatch]:
        seen = 0
        try:
            for batch in reader:
                seen += batch.num_rows
                if cap is not None and seen > cap:
                    raise QueryRejected(
                        f"the result exceeds the row cap of {cap}; page through it with page_size",
                        rule="max_rows")
                yield batch
        except Exception as err:
            if on_error is not None:
                on_error(err)
            raise
        finally:
            release()

    return pa.RecordBatchReader.from_batches(reader.schema, gen())


def _replacement(existing: Any, data: pa.Table, store: Any) -> Any:
    """The dataset ``CREATE OR REPLACE`` makes: the new columns, keeping the tags of columns that
    keep their name (the catalog keeps them too), so column rules by tag still apply."""
    import dataclasses

    from headwater.catalog import CatalogColumn

    key = getattr(store, "name_key", str.lower)
    old = {key(c.name): c for c in existing.columns}
    cols = tuple(dataclasses.replace(old[key(f.name)], name=f.name, type=str(f.type)) if key(f.name) in old
                 else CatalogColumn(f.name, str(f.type)) for f in data.schema)
    return dataclasses.replace(existing, columns=cols)


def _new_dataset(name: str, rows: pa.Table, store: Any) -> Any:
    """A catalog entry for a dataset a write would create (to authorise creating it)."""
    from headwater.catalog import CatalogColumn, Dataset

    store_name, _, table = name.partition(".")
    return Dataset(name=name, store=store_name, table=table, kind=store.kind, location="",
                   columns=tuple(CatalogColumn(f.name, str(f.type)) for f in rows.schema))


def _count_equal_tail(parts: list[pa.Table], keys: list[str], values: tuple[Any, ...]) -> int:
    """Rows equal to ``values`` at the end of the sorted ``parts`` (they form a suffix)."""
    total = 0
    for part in reversed(parts):
        n = _count_equal(part, keys, values)
        total += n
        if n < part.num_rows:
            break
    return total


def _count_equal(table: pa.Table, keys: list[str], values: tuple[Any, ...]) -> int:
    """Rows of ``table`` whose key columns equal ``values`` (NULL equals NULL here)."""
    mask = None
    for k, v in zip(keys, values, strict=True):
        col = table.column(k)
        m = pc.is_null(col) if v is None else pc.fill_null(pc.equal(col, pa.scalar(v, type=col.type)), False)
        mask = m if mask is None else pc.and_(mask, m)
    return int(pc.sum(mask).as_py() or 0) if mask is not None else 0


def _catalog_typed(reader: pa.RecordBatchReader, dataset: Any) -> pa.RecordBatchReader:
    """A fetched source with the catalog's types where the store could not tell them.

    SQLite types values, not columns: an empty (or all-NULL) result comes back as text or null,
    and the federated query over it (``id % 3``) would not bind. Such columns take the type the
    catalog records; a value that does not convert is a :class:`QueryError`, never a silent string.
    """
    from headwater.catalog._catalog import arrow_type_from_text

    schema = reader.schema
    wanted: dict[int, pa.DataType] = {}
    for i, f in enumerate(schema):
        if not (pa.types.is_null(f.type) or pa.types.is_string(f.type)):
            continue
        try:
            col = dataset.column(f.name)
        except HeadwaterError:
            continue
        target = arrow_type_from_text(col.type)
        if target is not None and target != f.type and not pa.types.is_string(target) \
                and not pa.types.is_large_string(target):
            wanted[i] = target
    if not wanted:
        return reader
    target_schema = pa.schema([f.with_type(wanted[i]) if i in wanted else f for i, f in enumerate(schema)],
                              metadata=schema.metadata)

    def batches() -> Iterator[pa.RecordBatch]:
        for b in reader:
            try:
                cols = [pc.cast(c, wanted[i]) if i in wanted else c for i, c in enumerate(b.columns)]
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise QueryError(f"{dataset.name} returned values that do not fit the catalog's column "
                                 "types") from None
            yield pa.RecordBatch.from_arrays(cols, schema=target_schema)

    return pa.RecordBatchReader.from_batches(target_schema, batches())


def _render(
    cache: dict[Any, tuple[str, tuple[int, ...]]], key: Any, store: Any, tree: Any, values: list[Any]
) -> tuple[str, list[Any]]:
    """Rendered SQL for ``tree`` on ``store``, generated once per plan and reused."""
    tpl = cache.get(key)
    if tpl is None:
        tpl = cache.setdefault(key, store.render_template(tree))
    sql, order = tpl
    return sql, bind_template(order, values)


def _fingerprint(plan: Plan, values: list[Any]) -> str:
    digest = hashlib.sha256(plan.fingerprint.encode())
    digest.update(json.dumps(values, default=str, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _order_item(item: str, ds: Any) -> str:
    parts = item.strip().split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise InvalidInput(f"order_by items are 'column' or 'column desc', not {item!r}")
    col = ds.column(parts[0]).name
    return _ident(col) + (f" {parts[1].upper()}" if len(parts) == 2 else "")


_ARROW_TEMPORAL = {"date": pa.date32(), "timestamp": pa.timestamp("us")}


def _typed_temporals(reader: pa.RecordBatchReader, temporal: tuple[tuple[int, str], ...]) -> pa.RecordBatchReader:
    """SQLite answers ``CAST(x AS DATE)`` (``DATE(x)``) as text: give those columns their type back.

    SQLite's ``DATE()``/``DATETIME()`` answer NULL for text they cannot read, so every value
    converts; one that does not is a :class:`QueryError`, not a silent string.
    """
    schema = reader.schema
    wanted = {i: _ARROW_TEMPORAL[kind] for i, kind in temporal
              if i < len(schema) and pa.types.is_string(schema.field(i).type)}
    if not wanted:
        return reader
    fields = [schema.field(i).with_type(wanted[i]) if i in wanted else schema.field(i) for i in range(len(schema))]
    target = pa.schema(fields, metadata=schema.metadata)

    def batches() -> Any:
        for batch in reader:
            try:
                cols = [pc.cast(col, wanted[i]) if i in wanted else col for i, col in enumerate(batch.columns)]
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise QueryError("a DATE/TIMESTAMP cast returned a value SQLite could not convert") from None
            yield pa.RecordBatch.from_arrays(cols, schema=target)

    return pa.RecordBatchReader.from_batches(target, batches())

