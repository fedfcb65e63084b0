"""``RetentionEngine``: turn a retention policy into a plan (a dry run with exact row counts)
and apply it through the stores' ``delete_rows`` / ``update_rows``, audited action by action.

Which rule applies: for each catalogued dataset, the first rule (in file order) that sets
``keep`` and matches it decides row deletion, else the catalog's ``retention_days``; for each
column, the first rule with ``null_after``/``tokenise_after`` that covers it decides. Column
actions leave the rows that the dataset's ``keep`` deletes anyway (the plan counts each row
once). Legal holds are checked at planning and again at apply: a dataset hold stops every
action on the dataset, a subject hold keeps that subject's rows out of every predicate.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from headwater.errors import HeadwaterError, InvalidInput
from headwater.retention._archive import archive_path, archive_store, write_archive
from headwater.retention._model import RetentionPolicy, load_retention, read_retention_file
from headwater.retention._plan import (
    DELETE,
    ERROR,
    HELD,
    NULL,
    PURGE,
    TOKENISE,
    ActionResult,
    PlannedAction,
    RetentionPlan,
    RetentionReport,
)
from headwater.retention._system import plan_platform_logs, purge_log
from headwater.stores._sql import bind_columns, param, split_params

if TYPE_CHECKING:
    from headwater.catalog import Dataset
    from headwater.platform import Platform
    from headwater.retention.holds import LegalHolds, Subject
    from headwater.stores.base import Store, TableInfo

__all__ = ["RetentionEngine", "token_key"]

log = logging.getLogger("headwater.retention")

Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``, called before each action and once at the end."""

_SAMPLE_ROWS = 500
_CASE_CHUNK = 400
_TOKEN_PREFIX = "tok_"


class _Params:
    """Parameter values collected while building a tree; ``add`` returns the marker."""

    def __init__(self, values: Sequence[Any] = ()) -> None:
        self.values: list[Any] = list(values)

    def add(self, value: Any) -> exp.Expression:
        self.values.append(value)
        return param(len(self.values) - 1)


@dataclass(frozen=True, slots=True)
class _KeepRule:
    age: dt.timedelta
    by: str | None
    archive: str | None
    source: str


@dataclass(frozen=True, slots=True)
class _ColumnRule:
    kind: str
    age: dt.timedelta
    by: str | None
    source: str


def token_key(platform: Platform) -> str:
    """The derived key of the policy engine's ``tokenise`` mask, so retention writes the very
    token masking shows."""
    return platform.policies.mask_key("token")


class RetentionEngine:
    """Plans and applies retention on one platform."""

    def __init__(self, platform: Platform, *, holds: LegalHolds | None = None) -> None:
        from headwater.retention.holds import LegalHolds

        self.platform = platform
        self.holds = holds if holds is not None else LegalHolds(platform)

    def __repr__(self) -> str:
        return f"RetentionEngine(platform={self.platform!r})"

    # -- policy ------------------------------------------------------------------------
    @property
    def default_file(self) -> Path:
        """``<platform dir>/retention.yaml``."""
        return Path(self.platform.dir) / "retention.yaml"

    def load(self, policy: RetentionPolicy | str | Path | None = None) -> RetentionPolicy:
        """A policy object, a path to a YAML file, YAML text, or None for the default file."""
        if isinstance(policy, RetentionPolicy):
            return policy
        if policy is None:
            return read_retention_file(self.default_file)
        if isinstance(policy, Path) or ("\n" not in policy and policy.endswith((".yaml", ".yml"))):
            return read_retention_file(policy)
        return load_retention(policy)

    # -- planning ----------------------------------------------------------------------
    def plan(self, policy: RetentionPolicy | str | Path | None = None, *, now: dt.datetime | None = None,
             actor: str | None = None) -> RetentionPlan:
        """A dry run: every action with the rows (exact) and bytes (estimated) it affects.

        With ``actor``, the planning itself is audited (``retention_plan``).
        """
        pol = self.load(policy)
        now = now or dt.datetime.now(dt.UTC)
        plan = RetentionPlan(created_at=now, source=pol.source)
        for ds in self.platform.catalog.list():
            plan.actions.extend(self._plan_dataset(pol, ds, now))
        plan.actions.extend(plan_platform_logs(self.platform, pol.platform, now, pol.source))
        if actor is not None:
            from headwater.audit import AuditEvent

            self.platform.record(AuditEvent(
                actor=actor, action="retention_plan", rows=plan.total_rows,
                datasets=sorted({a.dataset for a in plan.actions}),
                reason=f"{len(plan.runnable)} actions, {len(plan.held)} held",
                extra={"source": pol.source, "now": now.isoformat()}))
        return plan

    def _rules_for(self, pol: RetentionPolicy, ds: Dataset) -> tuple[_KeepRule | None, dict[str, _ColumnRule], list[str]]:
        keep: _KeepRule | None = None
        cols: dict[str, _ColumnRule] = {}
        problems: list[str] = []
        for i, rule in enumerate(pol.rules):
            if not fnmatch.fnmatchcase(ds.name.lower(), rule.pattern.lower()):
                continue
            tagged = [c.name for c in ds.tagged(rule.tag)] if rule.tag else []
            if rule.tag and not tagged:
                continue
            where = f"{pol.source}:{pol.rule_line(i)}"
            by = rule.by or pol.defaults.by
            if rule.keep is not None and keep is None:
                archive = rule.archive if rule.archive is not None else pol.defaults.archive
                keep = _KeepRule(rule.keep, by, archive or None, where)
            action = rule.column_action
            if action is None:
                continue
            names = list(rule.columns) or tagged
            for name in names:
                try:
                    stored = ds.column(name).name
                except HeadwaterError:
                    problems.append(f"{where}: {ds.name} has no column {name!r}")
                    continue
                cols.setdefault(stored, _ColumnRule(action[0], action[1], by, where))
        if keep is None and ds.retention_days:
            keep = _KeepRule(dt.timedelta(days=ds.retention_days), pol.defaults.by,
                             pol.defaults.archive or None, f"catalog retention_days={ds.retention_days}")
        return keep, cols, problems

    def _plan_dataset(self, pol: RetentionPolicy, ds: Dataset, now: dt.datetime) -> list[PlannedAction]:
        keep, cols, problems = self._rules_for(pol, ds)
        out = [PlannedAction(dataset=ds.name, action=ERROR, note=p) for p in problems]
        if keep is None and not cols:
            return out
        held = self.holds.blocking(ds.name)
        if held:
            what = (["delete"] if keep else []) + [f"{r.kind} {c}" for c, r in cols.items()]
            out.append(PlannedAction(
                dataset=ds.name, action=HELD, holds=tuple(h.id for h in held),
                rule=(keep.source if keep else next(iter(cols.values())).source),
                note=f"legal hold ({'; '.join(h.reason for h in held)}) stops: {', '.join(what)}"))
            return out
        try:
            store = self.platform.store(ds.store)
            info = store.table(ds.table)
        except HeadwaterError as err:
            out.append(PlannedAction(dataset=ds.name, action=ERROR, note=f"cannot read {ds.name}: {err}"))
            return out
        sizer = _Sizer(store, info)
        if keep is not None:
            out.append(self._plan_action(ds, store, info, sizer, DELETE, keep.by, now - keep.age, None, (),
                                         keep.source, archive=keep.archive))
        for col, rule in cols.items():
            floor = now - keep.age if keep is not None else None
            out.append(self._plan_action(ds, store, info, sizer, rule.kind, rule.by, now - rule.age, floor,
                                         (col,), rule.source))
        return out

    def _plan_action(self, ds: Dataset, store: Store, info: TableInfo, sizer: _Sizer, action: str,
                     by: str | None, cutoff: dt.datetime, floor: dt.datetime | None, columns: tuple[str, ...],
                     source: str, *, archive: str | None = None) -> PlannedAction:
        base = PlannedAction(dataset=ds.name, action=action, cutoff=cutoff, floor=floor, columns=columns,
                             rule=source, archive=archive)
        try:
            by_col = _time_column(ds, info, by)
            base = replace(base, by=by_col)
            if floor is not None and floor >= cutoff:
                return replace(base, note="the dataset's keep deletes these rows first")
            if archive is not None:
                archive_store(self.platform, archive)
            if action == TOKENISE:
                _check_text(info, columns[0], ds.name)
            subjects = self.holds.subject_holds(ds.name)
            where, params = self._predicate(ds, info, base, subjects)
            rows = _count(store, info, ds.name, where, params)
        except HeadwaterError as err:
            return replace(base, action=ERROR, note=f"{action}: {err}")
        held = tuple(h.id for h in self.holds.list() if h.subject is not None and h.subject in subjects)
        note = f"{len(subjects)} held subject(s) excluded" if subjects else None
        return replace(base, rows=rows, bytes=sizer.bytes(rows, columns or None), holds=held, note=note)

    def _predicate(self, ds: Dataset, info: TableInfo, action: PlannedAction,
                   subjects: Sequence[Subject]) -> tuple[exp.Expression, list[Any]]:
        """The row predicate of an action (column names as in the catalog) and its params."""
        p = _Params()
        assert action.by is not None and action.cutoff is not None
        by_type = info.column(action.by).type  # type: ignore[union-attr]
        parts: list[exp.Expression] = [exp.column(action.by) < p.add(_cutoff_value(action.cutoff, by_type))]
        if action.floor is not None:
            parts.append(exp.column(action.by) >= p.add(_cutoff_value(action.floor, by_type)))
        for col in action.columns:
            parts.append(exp.column(col).is_(exp.null()).not_())
            if action.action == TOKENISE:
                prefix = exp.Substring(this=exp.cast(exp.column(col), "varchar"), start=exp.Literal.number(1),
                                       length=exp.Literal.number(len(_TOKEN_PREFIX)))
                parts.append(exp.NEQ(this=prefix, expression=p.add(_TOKEN_PREFIX)))
        for subj in subjects:
            column = info.column(subj.column)
            if column is None:
                raise InvalidInput(f"legal hold on subject column {subj.column!r}, which {ds.name} lacks; "
                                   "retention refuses to guess which rows it protects", dataset=ds.name)
            value = _subject_value(subj.value, column.type)
            if value is None:
                continue  # no row can hold a value of the wrong type
            c = exp.column(column.name)
            parts.append(exp.or_(c.is_(exp.null()), exp.NEQ(this=c.copy(), expression=p.add(value))))
        return exp.and_(*parts), p.values

    # -- applying ----------------------------------------------------------------------
    def apply(self, plan: RetentionPlan | RetentionPolicy | str | Path | None = None, *, actor: str,
              progress: Progress | None = None) -> RetentionReport:
        """Execute a plan (or plan a policy, then execute it); every action is audited.

        Holds are re-checked first: a hold placed after planning still stops its dataset or
        subjects. A failing action is reported and the others carry on.
        """
        if not isinstance(plan, RetentionPlan):
            plan = self.plan(plan)
        report = RetentionReport(actor=actor, started_at=dt.datetime.now(dt.UTC))
        run_id = f"{plan.created_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        total = len(plan.actions)
        for i, action in enumerate(plan.actions):
            if progress is not None:
                progress(i, total, f"{action.action} {action.dataset}")
            report.results.append(self._apply_one(plan, action, actor, run_id))
        if progress is not None:
            progress(total, total, "done")
        report.finished_at = dt.datetime.now(dt.UTC)
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(
            actor=actor, action="retention", rows=report.total_rows,
            reason=f"retention run {run_id}: {sum(r.status == 'done' for r in report.results)} done, "
                   f"{sum(r.status == 'held' for r in report.results)} held, "
                   f"{sum(r.status == 'failed' for r in report.results)} failed",
            extra={"run_id": run_id, "source": plan.source, "summary": True}))
        return report

    def _apply_one(self, plan: RetentionPlan, action: PlannedAction, actor: str, run_id: str) -> ActionResult:
        result = ActionResult(dataset=action.dataset, action=action.action, status="done",
                              planned_rows=action.rows, columns=action.columns)
        if action.action == ERROR:
            result.status, result.error = "skipped", action.note
            return result
        if action.action == HELD:
            result.status, result.error = "held", action.note
            self._audit_held(action, actor)
            return result
        if action.note == "the dataset's keep deletes these rows first":
            return result
        try:
            if action.action == PURGE:
                assert action.cutoff is not None
                result.rows = purge_log(self.platform, action.dataset.split(".", 1)[1], action.cutoff,
                                        plan.created_at)
            else:
                held = self.holds.blocking(action.dataset)
                if held:
                    result.status = "held"
                    result.error = f"legal hold placed after planning: {', '.join(h.id for h in held)}"
                    self._audit_held(replace(action, holds=tuple(h.id for h in held)), actor)
                    return result
                self._apply_rows(action, result, run_id, plan.created_at)
        except HeadwaterError as err:
            log.warning("retention %s on %s failed: %s", action.action, action.dataset, err)
            result.status, result.error = "failed", f"{type(err).__name__}: {err}"
            return result
        self._audit_done(action, result, actor, run_id)
        return result

    def _apply_rows(self, action: PlannedAction, result: ActionResult, run_id: str, now: dt.datetime) -> None:
        ds = self.platform.catalog.get(action.dataset)
        store = self.platform.store(ds.store)
        info = store.table(ds.table)
        subjects = self.holds.subject_holds(ds.name)
        where, params = self._predicate(ds, info, action, subjects)
        if action.action == DELETE:
            if action.archive is not None:
                lake = archive_store(self.platform, action.archive)
                path = archive_path(lake, ds.name, now, run_id)
                select = exp.select("*").from_(store.table_expr(info.name)).where(bind_columns(where, info, ds.name))
                sql, values = store.render(select, params)
                result.archived_rows = write_archive(lake, path, store, sql, values)
                result.archive_path = path if result.archived_rows else None
            result.rows = store.delete_rows(info.name, where, params).rows_written
            if result.archived_rows is not None and result.rows != result.archived_rows:
                result.error = (f"archived {result.archived_rows} rows but deleted {result.rows}: rows "
                                "changed in between")
        elif action.action == NULL:
            col = action.columns[0]
            result.rows = store.update_rows(info.name, {col: exp.null()}, where, params).rows_written
        elif action.action == TOKENISE:
            result.rows = self._tokenise(ds, store, info, action.columns[0], where, params)
        else:  # pragma: no cover - plans hold only the actions above
            raise InvalidInput(f"unknown retention action {action.action!r}")

    def _tokenise(self, ds: Dataset, store: Store, info: TableInfo, col: str, where: exp.Expression,
                  params: list[Any]) -> int:
        """Replace ``col`` by the masking policy's token. Where the store computes the mask
        natively (DuckDB, Snowflake, the lake) one statement does it; elsewhere the tokens of
        the distinct values are computed in DuckDB with the same expression and written back
        with ``CASE`` in chunks (each atomic; re-running skips values already tokenised)."""
        from headwater.policy import PORTABLE
        from headwater.policy._masks import mask_expression

        catcol = ds.column(col)
        key = token_key(self.platform)
        dialect = store.capabilities.dialect
        if "tokenise" in PORTABLE.get(dialect, frozenset()):
            p = _Params(params)
            value = mask_expression("tokenise", exp.column(col), catcol, lambda _name: p.add(key))
            return store.update_rows(info.name, {col: value}, where, p.values).rows_written
        stored = info.column(col).name  # type: ignore[union-attr]
        distinct = (exp.select(exp.column(stored, quoted=True)).distinct()
                    .from_(store.table_expr(info.name)).where(bind_columns(where, info, ds.name)))
        sql, values = store.render(distinct, params)
        originals = store.execute(sql, values).read_all().column(0).to_pylist()
        tokens = _tokens(originals, catcol, key)
        done = 0
        for start in range(0, len(originals), _CASE_CHUNK):
            chunk = list(zip(originals[start:start + _CASE_CHUNK], tokens[start:start + _CASE_CHUNK], strict=True))
            p = _Params(params)
            case = exp.Case(ifs=[exp.If(this=exp.EQ(this=exp.column(col), expression=p.add(o)), true=p.add(t))
                                 for o, t in chunk], default=exp.column(col))
            chunk_where = exp.and_(where.copy(), exp.column(col).isin(*[p.add(o) for o, _ in chunk]))
            done += store.update_rows(info.name, {col: case}, chunk_where, p.values).rows_written
        return done

    # -- audit -------------------------------------------------------------------------
    def _audit_done(self, action: PlannedAction, result: ActionResult, actor: str, run_id: str) -> None:
        from headwater.audit import AuditEvent

        extra: dict[str, Any] = {"run_id": run_id, "action": action.action, "rule": action.rule,
                                 "cutoff": action.cutoff.isoformat() if action.cutoff else None,
                                 "by": action.by, "planned_rows": action.rows}
        if result.archive_path:
            extra.update(archive=result.archive_path, archived_rows=result.archived_rows)
        if action.holds:
            extra["subject_holds"] = list(action.holds)
        if result.error:
            extra["warning"] = result.error
        verb = {DELETE: "deleted", NULL: "nulled", TOKENISE: "tokenised", PURGE: "purged"}[action.action]
        self.platform.record(AuditEvent(
            actor=actor, action="retention", datasets=[action.dataset], columns=list(action.columns),
            rows=result.rows, reason=f"{verb} {result.rows} rows older than {action.cutoff:%Y-%m-%d %H:%M}",
            extra=extra))

    def _audit_held(self, action: PlannedAction, actor: str) -> None:
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(
            actor=actor, action="retention", datasets=[action.dataset], decision="deny",
            reason="legal hold", extra={"holds": list(action.holds), "rule": action.rule}))


# -- helpers ---------------------------------------------------------------------------
def _time_column(ds: Dataset, info: TableInfo, by: str | None) -> str:
    """The column ages are measured on: ``by``, the dataset's ``retention_column`` property, or
    its first timestamp/date column."""
    name = by or (ds.properties or {}).get("retention_column")
    if name:
        col = info.column(str(name))
        if col is None:
            raise InvalidInput(f"{ds.name} has no column {name!r} to measure ages by", dataset=ds.name)
        if not (pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)):
            raise InvalidInput(f"{ds.name}.{col.name} is {col.type}, not a timestamp or date", dataset=ds.name)
        return col.name
    for col in info.columns:
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            return col.name
    raise InvalidInput(f"{ds.name} has no timestamp or date column; name one with by:", dataset=ds.name)


def _check_text(info: TableInfo, column: str, dataset: str) -> None:
    col = info.column(column)
    if col is None or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InvalidInput(f"{dataset}.{column} is not text: tokens are text; use null_after", dataset=dataset)


def _cutoff_value(cutoff: dt.datetime, type_: pa.DataType) -> Any:
    utc = cutoff.astimezone(dt.UTC)
    if pa.types.is_date(type_):
        return utc.date()
    if pa.types.is_timestamp(type_) and type_.tz:
        return utc
    return utc.replace(tzinfo=None)


def _subject_value(text: str, type_: pa.DataType) -> Any:
    try:
        if pa.types.is_integer(type_):
            return int(text)
        if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
            return float(text)
        if pa.types.is_boolean(type_):
            return text.strip().lower() in ("1", "true", "t", "yes")
    except ValueError:
        return None
    return text


def _count(store: Store, info: TableInfo, dataset: str, where: exp.Expression, params: list[Any]) -> int:
    tree = (exp.select(exp.alias_(exp.func("count", exp.Star()), "n"))
            .from_(store.table_expr(info.name)).where(bind_columns(where, info, dataset)))
    sql, values = store.render(tree, params)
    table = store.execute(sql, values).read_all()
    return int(table.column(0)[0].as_py() or 0)


class _Sizer:
    """Average bytes per row (all columns or some) from a small sample, for plan estimates."""

    def __init__(self, store: Store, info: TableInfo) -> None:
        self.store, self.info = store, info
        self._avg: dict[tuple[str, ...] | None, float] = {}

    def bytes(self, rows: int, columns: tuple[str, ...] | None) -> int | None:
        if rows == 0:
            return 0
        if columns not in self._avg:
            try:
                cols = [exp.column(self.info.column(c).name, quoted=True) for c in columns] if columns else [exp.Star()]  # type: ignore[union-attr]
                sql, values = self.store.render(
                    exp.select(*cols).from_(self.store.table_expr(self.info.name)).limit(_SAMPLE_ROWS))
                sample = self.store.execute(sql, values).read_all()
                self._avg[columns] = sample.nbytes / sample.num_rows if sample.num_rows else 0.0
            except HeadwaterError:
                return None
        return int(self._avg[columns] * rows)


def _tokens(values: list[Any], column: Any, key: str) -> list[str]:
    """The ``tokenise`` mask of each value, computed by DuckDB with the policy's own expression."""
    from headwater.policy._masks import mask_expression
    from headwater.stores.duckdb import new_connection

    if not values:
        return []
    p = _Params()
    tree = exp.select(mask_expression("tokenise", exp.column("v"), column, lambda _n: p.add(key))).from_("hw_vals")
    sql, ordered = split_params(tree.sql(dialect="duckdb"), p.values, lambda _n: "?")
    con = new_connection()
    try:
        con.register("hw_vals", pa.table({"v": pa.array([None if v is None else str(v) for v in values],
                                                         pa.string())}))
        return [r[0] for r in con.execute(sql, ordered).fetchall()]
    finally:
        con.close()
