"""What a governed write checks before any row changes, kept apart from ``Session``.

A write is authorised on the rows as the store will hold them, with the names the store will use:

* **Names.** The data's column names are rewritten to the catalogued spelling by the store's own
  identifier rule (``store.name_key``), and names that differ only in case are refused, so the
  row-filter check and the store bind the same column.
* **Target.** A table that exists in the store but not in the catalog is registered and governed
  as the existing table it is (its rows are replaced or updated, not created).
* **Pre-image.** Rows an overwrite deletes and rows an upsert updates are read (``Platform.
  system_rows``, which fails closed) and must be inside the principal's row filter.
* **Post-image.** An upsert keeps the stored values of columns it leaves out, so the rows it
  leaves behind (given columns over stored ones; nulls for new rows) are what the row filter
  checks, not the partial rows sent.

The pre- and post-images are computed lazily: only when a row filter applies to the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.errors import AccessDenied, DatasetNotFound, WriteError

if TYPE_CHECKING:
    from headwater.catalog import Dataset
    from headwater.platform import Platform

__all__ = [
    "Lazy", "post_image", "require_exact_columns", "resolve_target", "stored_columns", "stored_keys", "typed_keys",
]


class Lazy:
    """A table computed on first use and remembered (a pre- or post-image)."""

    def __init__(self, compute: Callable[[], pa.Table]) -> None:
        self._compute = compute
        self._value: pa.Table | None = None

    def __call__(self) -> pa.Table:
        if self._value is None:
            self._value = self._compute()
        return self._value


def resolve_target(platform: Platform, dataset: str, store: Any) -> Dataset | None:
    """The catalogued dataset a write goes to, or None when the table does not exist anywhere.

    A table the store holds but the catalog does not (created by another tool, or a catalog that
    is behind) is registered first, so that it is governed as the existing table it is: an
    overwrite is authorised as deleting its rows, an upsert as updating them.
    """
    existing = platform.catalog.find(dataset)
    if existing is not None:
        return existing
    store_name, _, table = dataset.partition(".")
    try:
        info = store.table(table)
    except DatasetNotFound:
        return None
    ds, _ = platform.catalog.register(store_name, info, kind=store.kind)
    platform.catalogued([ds.name])
    return ds


def _by_store_rule(names: Sequence[str], store: Any) -> dict[str, str]:
    key = getattr(store, "name_key", str.lower)
    return {key(n): n for n in names}


def stored_columns(data: pa.Table, ds: Dataset, store: Any) -> pa.Table:
    """``data`` with each column renamed to the dataset's spelling, matched by the store's rule;
    columns the dataset lacks keep their name (the store or the policy rejects them)."""
    known = _by_store_rule(ds.column_names, store)
    key = getattr(store, "name_key", str.lower)
    names = [known.get(key(n), n) for n in data.column_names]
    return data if names == data.column_names else data.rename_columns(names)


def stored_keys(keys: Sequence[str], ds: Dataset | None, store: Any) -> list[str]:
    """Upsert key names in the dataset's spelling (as given when the dataset is new)."""
    if ds is None:
        return list(keys)
    known = _by_store_rule(ds.column_names, store)
    key = getattr(store, "name_key", str.lower)
    return [known.get(key(k), k) for k in keys]


def require_exact_columns(ds: Dataset, columns: Sequence[str]) -> None:
    """Under a policy, every written column must be one of the dataset's, spelled as catalogued,
    and the dataset's own columns must not differ only in case (the policy engine matches
    column names case-insensitively, so it could not tell which one a rule means)."""
    folded: dict[str, str] = {}
    for name in ds.column_names:
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            raise AccessDenied(f"{ds.name} has columns {other!r} and {name!r} that differ only in case; "
                               "governed writes to it are refused", rule="fail-closed", dataset=ds.name)
    exact = set(ds.column_names)
    unknown = [c for c in columns if c not in exact]
    if unknown:
        raise WriteError(f"{ds.name} has no column(s) {', '.join(sorted(unknown))}; its columns are "
                         f"{', '.join(ds.column_names)}", dataset=ds.name, columns=sorted(unknown))


def typed_keys(keys: pa.Table, ds: Dataset) -> pa.Table:
    """Key columns cast to the dataset's types, as the store will cast them: a key sent as the
    text ``"3"`` finds (and is checked against) the stored row 3 it is about to update."""
    from headwater.catalog._catalog import arrow_type_from_text

    out = keys
    for i, name in enumerate(keys.column_names):
        want = arrow_type_from_text(ds.column(name).type)
        col = out.column(i)
        if col.type.equals(want):
            continue
        try:
            out = out.set_column(i, pa.field(name, want), col.cast(want, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise WriteError(f"{ds.name}.{name} expects {want} but the key values do not convert safely",
                             dataset=ds.name, column=name) from None
    return out


def post_image(before: pa.Table, rows: pa.Table, key: Sequence[str], dataset: str) -> tuple[pa.Table, pa.Table]:
    """The rows an upsert leaves behind, split into (new rows, updated rows).

    ``before`` holds the stored rows whose key is in ``rows`` (every column); ``rows`` the
    columns sent. An updated row is its stored row with the sent columns replaced; a new row has
    the sent columns and nulls elsewhere (a store default is not known here, so a row filter on a
    left-out column fails closed).
    """
    import duckdb

    # No cast: DuckDB compares the key columns across numeric types, and a key that cannot be
    # compared at all fails closed below (the store would refuse it anyway).
    omitted = [n for n in before.column_names if n not in rows.column_names]

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    picked = [f"n.{q(c)}" for c in rows.column_names] + [f"b.{q(c)}" for c in omitted]
    on = " AND ".join(f"n.{q(k)} = b.{q(k)}" for k in key)
    sql = (f"SELECT {', '.join(picked)}, b.__hw_hit IS NOT NULL AS __hw_matched FROM hw_new n "
           f"LEFT JOIN (SELECT *, TRUE AS __hw_hit FROM hw_before) b ON {on}")
    con = duckdb.connect()
    try:
        con.register("hw_new", rows)
        con.register("hw_before", before)
        out = con.execute(sql).fetch_arrow_table()
    except duckdb.Error:
        raise AccessDenied(f"the rows this upsert leaves in {dataset} cannot be computed, so they cannot "
                           "be checked against the row filter; nothing was written", rule="fail-closed",
                           dataset=dataset) from None
    finally:
        con.close()
    matched = out.column("__hw_matched")
    out = out.drop_columns(["__hw_matched"])
    return out.filter(pc.invert(matched)), out.filter(matched)
