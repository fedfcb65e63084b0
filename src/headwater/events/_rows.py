"""A dataset's column rules and row filters, for one principal, applied to JSON row images.

Consumers of a topic derived from a dataset see its rows as a ``SELECT`` of the dataset would
show them: the policy engine authorises ``SELECT <visible columns> FROM <dataset>`` for the
principal (default deny: it needs ``select`` on the dataset), and the rewritten query -- the
same masking, filtering subquery the SQL path runs -- is evaluated in DuckDB over the event's
row images, registered as an Arrow table in place of the dataset. Denied columns leave the
image; masked ones take the mask's value; an image outside every row filter becomes None.
Columns the catalog does not know are dropped (nothing is granted on them). Unmasked columns
keep their value exactly as the event carried it.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import threading
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from headwater.principal import Principal

__all__ = ["RowRules"]

log = logging.getLogger("headwater")

_ROW = "__hw_row"
_ALIAS = "hw_src"


class RowRules:
    """What ``principal`` may see of ``dataset``'s rows (see the module docstring).

    Raises :class:`~headwater.errors.AccessDenied` when no role grants ``select`` on it.
    """

    def __init__(self, engine: Any, dataset: Any, principal: Principal | str) -> None:
        from headwater.catalog._catalog import arrow_type_from_text
        from headwater.stores._sql import bind_template, param_template

        self.dataset = dataset
        principal = Principal.of(principal)
        hidden = engine.hidden_columns(dataset, principal)  # AccessDenied without a select grant
        self.columns = [c for c in dataset.columns if c.name not in hidden]
        self._types = [arrow_type_from_text(c.type) for c in self.columns]
        self._known = {c.name for c in self.columns}
        self._lower = {c.name.lower(): c.name for c in self.columns}
        alias = exp.to_identifier(_ALIAS)
        tree = exp.Select(expressions=[exp.column(exp.to_identifier(c.name, quoted=True), table=alias.copy())
                                       for c in self.columns] or [exp.Null()],
                          from_=exp.From(this=exp.Table(this=exp.to_identifier(dataset.table, quoted=True),
                                                        db=exp.to_identifier(dataset.store),
                                                        alias=exp.TableAlias(this=alias.copy()))))
        decision = engine.authorize_query(tree, {dataset.name: dataset}, principal)
        self.rules = list(decision.rules)
        self.masked = {c for d, c, _ in decision.masks if d == dataset.name}
        """Columns whose value comes from a mask."""
        self.filtered = bool(decision.filters)
        """Some reading role has a row filter on the dataset."""
        sub = next(decision.tree.find_all(exp.Subquery), None)
        self.transparent = sub is None
        """Every column as it is, every row: nothing to evaluate."""
        self._sql = ""
        self._params: list[Any] = []
        if sub is not None:
            out = decision.tree
            for t in list(out.find_all(exp.Table)):
                if t.args.get("db") is not None:
                    t.replace(exp.Table(this=exp.to_identifier("hw_rows"), alias=t.args.get("alias")))
            # The row number passes through the masking subquery untouched (it is not data).
            sub.this.append("expressions", exp.column(_ROW, table=exp.to_identifier(_ALIAS)))
            out.append("expressions", exp.column(_ROW, table=exp.to_identifier(_ALIAS)))
            sql, order = param_template(out.sql("duckdb"), lambda i: "?")
            self._sql = sql
            self._params = bind_template(order, decision.params)
        self._con: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RowRules(dataset={self.dataset.name!r}, transparent={self.transparent})"

    def column_clear(self, column: str) -> bool:
        """Whether ``column`` is shown as it is on every row (visible, unmasked, unfiltered)."""
        return column in self._known and column not in self.masked and not self.filtered

    def apply(self, images: Sequence[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
        """Each image as the principal may see it (None: outside the row filters, or None)."""
        keep = [None if img is None else {self._lower.get(k.lower(), k): v for k, v in img.items()
                                          if k.lower() in self._lower} for img in images]
        if self.transparent:
            return keep
        rows = [i for i, img in enumerate(keep) if img is not None]
        if not rows:
            return keep
        try:
            out = self._evaluate([keep[i] for i in rows])  # type: ignore[misc]
        except Exception as err:  # noqa: BLE001 - fail closed: what cannot be governed is withheld
            log.warning("column rules of %s could not be evaluated on %d event image(s) (%s); withheld",
                        self.dataset.name, len(rows), type(err).__name__)
            return [None] * len(keep)
        result: list[dict[str, Any] | None] = [None] * len(keep)
        for governed in out:
            i = rows[governed.pop(_ROW)]
            img = keep[i]
            assert img is not None
            for c in self.masked:
                if c in img or c in governed:
                    img[c] = _jsonable(governed.get(c))
            result[i] = img
        return result

    def _evaluate(self, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        arrays = [_array([img.get(c.name) for img in images], t) for c, t in zip(self.columns, self._types,
                                                                                 strict=True)]
        names = [c.name for c in self.columns]
        table = pa.table(arrays + [pa.array(range(len(images)), pa.int64())], names=names + [_ROW])
        with self._lock:
            if self._con is None:
                from headwater.stores.duckdb import new_connection

                con = new_connection()
                con.execute("SET enable_external_access = false")
                con.execute("SET threads = 1")
                self._con = con
            self._con.register("hw_rows", table)
            try:
                return self._con.execute(self._sql, self._params).fetch_arrow_table().to_pylist()  # type: ignore[no-any-return]
            finally:
                self._con.unregister("hw_rows")

    def close(self) -> None:
        """Release the DuckDB connection."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _array(values: list[Any], typ: pa.DataType) -> pa.Array:
    """Values as ``typ`` when they convert (JSON text of dates, decimals ... is parsed),
    else as text."""
    try:
        return pa.array(values, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    text = pa.array([None if v is None else v if isinstance(v, str) else str(v) for v in values], pa.string())
    try:
        return text.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
