"""Find every copy of a data subject: the catalog, column lineage, CDC replicas, events.

* **The subject's dataset** is resolved in the catalog (``app.customers`` or the short
  ``customers``; a short name that several datasets share resolves to the one the others are
  derived from, else it is ambiguous and must be qualified).
* **Trusted lineage only.** Every lineage question goes through :func:`_trusted_copies`, which
  keeps the edges the platform recorded itself (job namespace = the platform's own: its writes,
  derived tables, CDC pipelines). An edge posted by an outside producer never makes erasure
  touch a dataset (a forged ``IDENTITY`` edge would otherwise delete another subject's rows).
* **Derived datasets** are found by walking column lineage down from the key column: a column
  reached through ``DIRECT``/``IDENTITY`` edges holds the key's values unchanged, so the subject's
  rows can be found in its dataset (CTAS, ``INSERT ... SELECT``, query results written to the
  lake, replicas whose producer reports lineage), and the walk continues from it. A dataset
  reached only through a transformation or aggregate of the key, or derived from the subject's
  dataset without the key at all (``GROUP BY country``), is reported as *not
  subject-addressable*, with the reason.
* **Joins on a foreign key**: when the key is a ``JOIN`` input of a derived dataset and the same
  job copies, unchanged, another ``JOIN`` input named as a foreign key to the subject's table
  (``customer_id``, ``customers_id`` for ``customers``), that output column equals the key on
  every row (``FROM orders o JOIN customers c ON c.id = o.customer_id``), so the dataset is
  erasable through it. Other join inputs (``product_id``) are never taken for the key.
* **CDC replicas** (:mod:`headwater.cdc.sink`) do not report lineage; a catalogued dataset with
  the replica bookkeeping columns (``_lsn``, ``_seq``, ``_deleted``), the key column and the
  source's table name (``customers``, ``customers_replica``, ``replica_customers``) is one.
* **Copies the platform keeps for itself** (:mod:`headwater.erasure._copies`): rows of a CDC
  change table (SQLite capture's ``_hw_changes``), retention archives on each Parquet store,
  dead letters (one target, searched at run time, sealed payloads included), the subject's
  crypto-shredding keys, and one storage step per store that leaves no recoverable bytes.
* **Event topics** whose name or last segment names an affected table are reported as residual
  copies: bus logs are append-only; fields sealed under the subject's key are unreadable once
  the key is shredded, anything else leaves with the topic's retention.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.catalog import Dataset
from headwater.catalog._catalog import arrow_type_from_text
from headwater.erasure._copies import platform_copies
from headwater.erasure._deadletters import subject_fields
from headwater.erasure._execute import NOFIT, coerce
from headwater.erasure._model import DEAD_LETTERS, ErasureTarget, TargetKind
from headwater.errors import DatasetNotFound, HeadwaterError, InvalidInput
from headwater.retention.holds import Subject

if TYPE_CHECKING:
    from headwater.lineage._store import LineageEdge
    from headwater.platform import Platform

__all__ = ["discover", "resolve_subject", "trusted_walk"]

log = logging.getLogger("headwater.erasure")

REPLICA_COLUMNS = ("_lsn", "_seq", "_deleted")
"""Bookkeeping columns of a CDC replica (:mod:`headwater.cdc.sink`)."""


def _is_replica(ds: Dataset) -> bool:
    names = {c.lower() for c in ds.column_names}
    return all(c in names for c in REPLICA_COLUMNS)


def _has_column(ds: Dataset, name: str) -> str | None:
    low = name.lower()
    return next((c for c in ds.column_names if c.lower() == low), None)


def resolve_subject(platform: Platform, subject: Subject) -> tuple[Subject, Dataset]:
    """The subject with its dataset and column as the catalog names them, and that dataset."""
    catalog = platform.catalog
    if "." in subject.dataset:
        ds = catalog.get(subject.dataset)
    else:
        low = subject.dataset.lower()
        cands = [d for d in catalog.list() if d.table.lower() == low]
        if not cands:
            raise DatasetNotFound(f"no dataset is called {subject.dataset!r}; name it as <store>.<table> "
                                  "or run `headwater catalog sync`", dataset=subject.dataset)
        if len(cands) > 1:
            names = {d.name for d in cands}
            sources = [d for d in cands if not _is_replica(d)
                       and not (set(_upstream(platform, d.name)) & names)]
            if len(sources) != 1:
                raise InvalidInput(f"{subject.dataset!r} names {len(cands)} datasets "
                                   f"({', '.join(sorted(names))}); qualify the subject, "
                                   f"e.g. {sorted(names)[0]}.{subject.column}=...", dataset=subject.dataset)
            cands = sources
        ds = cands[0]
    column = ds.column(subject.column)
    if coerce(subject.value, arrow_type_from_text(column.type)) is NOFIT:
        raise InvalidInput(f"{ds.name}.{column.name} holds {column.type} values; {subject.value!r} is not one",
                           dataset=ds.name, column=column.name)
    return Subject(ds.name, column.name, subject.value), ds


def _upstream(platform: Platform, name: str) -> list[str]:
    try:
        return sorted({e.source for e in trusted_walk(platform, name, None, up=True)})
    except HeadwaterError:
        return []


def _trusted_copies(platform: Platform, dataset: str, column: str | None = None, *,
                    up: bool = False) -> list[LineageEdge]:
    """The lineage edges one hop from a node that the platform recorded itself.

    ``column`` None: every column edge out of (``up``: into) ``dataset`` plus its dataset edges;
    with a column: the column edges out of that column (``up``: into it or into the whole
    dataset). An edge is trusted when its job ran in the platform's own job namespace (its
    writes, CTAS and ``INSERT ... SELECT``, CDC pipelines); edges that outside OpenLineage
    producers posted are left out. This is the one place that decides which lineage erasure
    follows.
    """
    from headwater.lineage._store import LineageEdge
    from headwater.lineage._tables import column_edges_table as ce
    from headwater.lineage._tables import dataset_edges_table as de

    lineage = platform.lineage
    ns = lineage.identity.namespace
    disp = lineage.identity.display
    near = "dst" if up else "src"
    # Both marks: the platform's own job namespace (reserved: outside producers may not post
    # into it) and the lineage store's ``trusted`` flag (set only for what the platform emits).
    where = ((ce.c.job_namespace == lineage.job_namespace) & ce.c.trusted.is_(True)
             & (ce.c[f"{near}_namespace"] == ns) & (ce.c[f"{near}_name"] == dataset))
    if column is not None:
        fields = [column, ""] if up else [column]
        where &= ce.c[f"{near}_field"].in_(fields)
    out: set[LineageEdge] = set()

    def name(side: str, r: Any) -> str:
        d = disp(r[f"{side}_namespace"], r[f"{side}_name"])
        return f"{d}.{r[f'{side}_field']}" if r.get(f"{side}_field") else d

    with platform.meta.connect() as conn:
        for r in conn.execute(sa.select(ce).where(where)).mappings():
            out.add(LineageEdge(name("src", r), name("dst", r), r["type"], r["subtype"], r["job_name"]))
        if column is None:
            dwhere = ((de.c.job_namespace == lineage.job_namespace) & de.c.trusted.is_(True)
                      & (de.c[f"{near}_namespace"] == ns) & (de.c[f"{near}_name"] == dataset))
            for r in conn.execute(sa.select(de).where(dwhere)).mappings():
                out.add(LineageEdge(name("src", r), name("dst", r), "DATASET", "", r["job_name"]))
    return sorted(out)


def trusted_walk(platform: Platform, dataset: str, column: str | None = None, *, up: bool = False,
                 identity_only: bool = False, limit: int = 10_000) -> list[LineageEdge]:
    """Every trusted edge reachable from a node, breadth first, through :func:`_trusted_copies`:
    dataset edges from a dataset; column edges from a column (``identity_only``: unchanged
    copies only, ``DIRECT``/``IDENTITY``)."""
    seen: set[tuple[str, str | None]] = {(dataset, column)}
    queue: deque[tuple[str, str | None]] = deque(seen)
    edges: list[LineageEdge] = []
    while queue and len(edges) < limit:
        ds, col = queue.popleft()
        for e in _trusted_copies(platform, ds, col, up=up):
            there = e.source if up else e.target
            if col is None:
                if e.type != "DATASET":
                    continue
                nxt: tuple[str, str | None] = (there, None)
            else:
                if e.type == "DATASET" or (identity_only and not (e.type == "DIRECT" and e.subtype == "IDENTITY")):
                    continue
                d, _, f = there.rpartition(".")
                nxt = (d, f)
            edges.append(e)
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return edges


def discover(platform: Platform, subject: Subject, root: Dataset) -> list[ErasureTarget]:
    """Every target holding (or derived from) ``subject``: erasable ones first, deepest first."""
    catalog = platform.catalog
    targets: dict[str, ErasureTarget] = {
        root.name: ErasureTarget(TargetKind.DATASET, root.name, root.store, (subject.column,), "subject")}
    residual: dict[str, ErasureTarget] = {}
    queue: deque[tuple[str, str, int]] = deque([(root.name, subject.column, 0)])
    seen = {(root.name.lower(), subject.column.lower())}
    specific, generic = subject_fields(subject, ())

    def add(target_ds: Dataset, column: str, found_by: str, depth: int) -> None:
        t = targets.get(target_ds.name)
        if t is None:
            t = targets[target_ds.name] = ErasureTarget(
                TargetKind.DATASET, target_ds.name, target_ds.store, (), found_by, depth=depth)
        if column not in t.columns:
            t.columns = (*t.columns, column)
        t.depth = max(t.depth, depth)
        if (target_ds.name.lower(), column.lower()) not in seen:
            seen.add((target_ds.name.lower(), column.lower()))
            queue.append((target_ds.name, column, depth))

    while queue:
        ds_name, col, depth = queue.popleft()
        node = f"{ds_name}.{col}"
        try:
            edges = _trusted_copies(platform, ds_name, col)
        except (HeadwaterError, sa.exc.SQLAlchemyError) as err:
            log.warning("lineage of %s unavailable: %s", node, err)
            continue
        for edge in edges:
            if edge.source.lower() != node.lower() or edge.type == "DATASET":
                continue
            if edge.type == "INDIRECT" and edge.subtype == "JOIN":
                # The key joined a foreign key whose column the output copies: its rows are the
                # subject's (``orders o JOIN customers c ON c.id = o.customer_id``).
                fk = specific | ({col.lower()} if col.lower() not in generic else set())
                for partner, copy in _join_partners(platform, node, edge, fk):
                    tds, _, tcol = copy.rpartition(".")
                    target_ds = catalog.find(tds)
                    stored = _has_column(target_ds, tcol) if target_ds is not None else None
                    if target_ds is not None and stored is not None:
                        add(target_ds, stored, f"join {node} = {partner} -> {copy}", depth + 1)
                continue
            tds, _, tcol = edge.target.rpartition(".")
            if not tds or tcol == "":
                continue
            if edge.type == "DIRECT" and edge.subtype == "IDENTITY":
                target_ds = catalog.find(tds)
                if target_ds is None:
                    residual.setdefault(tds, _residual(
                        tds, f"lineage {node} -> {edge.target}",
                        "reached by lineage but not in the catalog (dropped, or outside this platform); "
                        "not checked"))
                    continue
                stored = _has_column(target_ds, tcol)
                if stored is None:
                    residual.setdefault(target_ds.name, _residual(
                        target_ds.name, f"lineage {node} -> {edge.target}",
                        f"lineage says {edge.target} copies the key but the dataset has no such column now"))
                    continue
                add(target_ds, stored, f"lineage {node} -> {edge.target}", depth + 1)
            elif edge.type == "DIRECT":
                residual.setdefault(tds, _residual(
                    tds, f"lineage {node} -> {edge.target}",
                    f"not subject-addressable: {edge.target} is a {edge.subtype.lower()} of {node}, "
                    "so the key's values do not survive and the subject's rows cannot be found"))
    _add_replicas(platform, subject, root, targets)
    try:
        downstream = sorted({e.target for e in trusted_walk(platform, root.name)} - {root.name})
    except (HeadwaterError, sa.exc.SQLAlchemyError):
        downstream = []
    for name in downstream:
        if name not in targets and name not in residual:
            residual[name] = _residual(
                name, f"lineage {root.name} -> {name}",
                f"not subject-addressable: derived from {root.name} but no column carries "
                f"{subject.column} unchanged (aggregate, filter or transformation)")
    try:
        upstream = trusted_walk(platform, root.name, subject.column, up=True, identity_only=True)
    except (HeadwaterError, sa.exc.SQLAlchemyError):
        upstream = []
    for edge in upstream:
        src = edge.source.rpartition(".")[0]
        if edge.type == "DIRECT" and edge.subtype == "IDENTITY" and src and src not in targets:
            residual.setdefault(src, _residual(
                src, f"lineage {edge.source} -> {edge.target}",
                f"upstream of {root.name}: the key comes from {edge.source}, so the subject is still "
                "there; erase the subject at its source (name that dataset in the subject)"))
    for name in list(residual):
        if name in targets:
            del residual[name]  # reached unchanged through another path: erasable
    ordered = sorted(targets.values(), key=lambda t: (-t.depth, t.dataset))
    before, after = platform_copies(platform, subject, ordered)
    ordered += before
    ordered.append(ErasureTarget(TargetKind.DEAD_LETTERS, DEAD_LETTERS, None, (), "dead letters"))
    ordered += after
    ordered += sorted(residual.values(), key=lambda t: t.dataset)
    ordered += _topics(platform, [t.dataset for t in targets.values()] + list(residual))
    return ordered


def _join_partners(platform: Platform, node: str, edge: Any, fk_names: set[str]) -> list[tuple[str, str]]:
    """(foreign key column, output column copying it unchanged) pairs of the job behind a JOIN
    edge from ``node`` into a dataset, for foreign keys named after the subject's table."""
    try:
        into = _trusted_copies(platform, edge.target, None, up=True)
    except (HeadwaterError, sa.exc.SQLAlchemyError):
        return []
    joined = {e.source for e in into if e.type == "INDIRECT" and e.subtype == "JOIN"
              and e.job == edge.job and e.source.lower() != node.lower()}
    out = []
    for e in into:
        if (e.type == "DIRECT" and e.subtype == "IDENTITY" and e.job == edge.job and e.source in joined
                and e.source.rpartition(".")[2].lower() in fk_names):
            out.append((e.source, e.target))
    return out


def _residual(dataset: str, found_by: str, reason: str) -> ErasureTarget:
    store = dataset.split(".", 1)[0] if "." in dataset and "/" not in dataset else None
    return ErasureTarget(TargetKind.DATASET, dataset, store, (), found_by, addressable=False, reason=reason)


def _add_replicas(platform: Platform, subject: Subject, root: Dataset, targets: dict[str, ErasureTarget]) -> None:
    table = root.table.lower()
    for ds in platform.catalog.list():
        if ds.name in targets or not _is_replica(ds):
            continue
        name = ds.table.lower()
        if name not in (table, f"{table}_replica", f"replica_{table}") and not name.endswith(f"_{table}"):
            continue
        stored = _has_column(ds, subject.column)
        if stored is None:
            continue
        targets[ds.name] = ErasureTarget(TargetKind.DATASET, ds.name, ds.store, (stored,),
                                         f"cdc replica of {root.name}", depth=1)


def _topics(platform: Platform, datasets: list[str]) -> list[ErasureTarget]:
    """Topics that may carry the subject, as residual targets (append-only logs)."""
    bus = _bus(platform)
    if bus is None:
        return []
    try:
        topics = bus.topics()
    except Exception as err:  # noqa: BLE001 - any bus failure is reported, not raised
        return [ErasureTarget(TargetKind.TOPIC, "topic:*", None, (), "event bus", addressable=False,
                              reason=f"the event bus could not be listed ({type(err).__name__}); "
                                     "topics were not checked")]
    tables = {d.rsplit(".", 1)[-1].lower() for d in datasets}
    out = []
    for info in topics:
        segments = info.name.lower().replace("-", ".").split(".")
        if tables & set(segments):
            out.append(ErasureTarget(
                TargetKind.TOPIC, f"topic:{info.name}", None, (), "event topic naming an affected table",
                addressable=False,
                reason="append-only event log: messages cannot be erased in place; they leave when the "
                       "topic's retention expires (dead letters of it are erased)"))
    return out


def _bus(platform: Platform) -> Any:
    """The bus when one is in use (an embedded log that was never created is not opened)."""
    if platform._bus is not None:
        return platform._bus
    if platform.config.events.bus is None and not (platform.dir / "events.db").exists():
        return None
    try:
        return platform.bus
    except Exception:  # noqa: BLE001 - reported by the caller as unchecked topics
        return None
