"""Lineage in the metadata store: events, edges, and the graph over them.

:meth:`LineageStore.emit` normalises an event's datasets to their one identity, validates it
against the OpenLineage schemas, stores it (raw JSON) and, for a COMPLETE event, replaces the
job's dataset and column edges into the datasets it wrote; then it sends the event to the HTTP
endpoint, if one is configured (a delivery failure is logged and recorded, never raised: lineage
must not fail the write it describes).

Graph queries walk the edges breadth-first, one query per level, to any depth. A column node is
``<store>.<table>.<column>``; a dataset node ``<store>.<table>``. An input that affects a whole
dataset (JOIN, FILTER, GROUP_BY, SORT) makes every column of that dataset depend on it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.errors import InvalidInput, NotFound
from headwater.lineage._events import PRODUCER, build_run_events, complete_event, fail_event
from headwater.lineage._extract import LineageResult, SchemaLike, column_lineage
from headwater.lineage._identity import IdentityMap
from headwater.lineage._tables import (
    aliases_table,
    column_edges_table,
    dataset_edges_table,
    events_table,
)
from headwater.lineage._transport import HttpTransport, LineageDeliveryError
from headwater.lineage._validate import EventValidator, default_validator

if TYPE_CHECKING:
    from headwater.metadata import MetadataStore

__all__ = ["LineageEdge", "LineageGraph", "LineageNode", "LineageRun", "LineageStore"]

log = logging.getLogger("headwater.lineage")

_WHOLE = ""
"""``dst_field`` of an edge into a whole dataset; also the field of a dataset node."""
_BATCH = 500


@dataclass(frozen=True, slots=True, order=True)
class LineageNode:
    """A dataset (``field is None``) or a column, and how many edges from the root it is."""

    dataset: str
    """``<store>.<table>`` (``namespace/name`` for a dataset outside this platform)."""
    field: str | None
    depth: int = 0

    @property
    def name(self) -> str:
        """``dataset`` or ``dataset.field``."""
        return self.dataset if self.field is None else f"{self.dataset}.{self.field}"


@dataclass(frozen=True, slots=True, order=True)
class LineageEdge:
    """``source`` feeds ``target`` (names as :attr:`LineageNode.name`)."""

    source: str
    target: str
    type: str
    """``DIRECT``/``INDIRECT`` for column edges, ``DATASET`` for dataset edges."""
    subtype: str
    job: str


@dataclass(slots=True)
class LineageGraph:
    """What a graph query reached."""

    root: str
    direction: str
    """``upstream`` or ``downstream``."""
    nodes: list[LineageNode] = field(default_factory=list)
    edges: list[LineageEdge] = field(default_factory=list)

    @property
    def datasets(self) -> list[str]:
        """Datasets reached (not the root), sorted."""
        return sorted({n.dataset for n in self.nodes if n.depth > 0})

    @property
    def columns(self) -> list[str]:
        """Columns reached (``<store>.<table>.<column>``), sorted; the root excluded."""
        return sorted({n.name for n in self.nodes if n.field is not None and n.depth > 0})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for the CLI and the HTTP service)."""
        return {
            "root": self.root, "direction": self.direction,
            "datasets": self.datasets, "columns": self.columns,
            "nodes": [{"dataset": n.dataset, "field": n.field, "depth": n.depth} for n in self.nodes],
            "edges": [{"source": e.source, "target": e.target, "type": e.type, "subtype": e.subtype,
                       "job": e.job} for e in self.edges],
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LineageRun:
    """A run being tracked by :meth:`LineageStore.track`; set :attr:`rows_written` before it ends."""

    def __init__(self, start: dict[str, Any], result: LineageResult) -> None:
        self.start = start
        self.result = result
        self.rows_written: int | None = None
        self.end: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        """The OpenLineage run id."""
        return str(self.start["run"]["runId"])


class LineageStore:
    """OpenLineage events and the lineage graph in the metadata store.

    ``platform`` names this Headwater platform in dataset namespaces (``headwater://<platform>``);
    ``identity`` maps other producers' dataset names to Headwater's (aliases stored in the
    metadata store are added to it); ``transport`` (or ``url``) sends events on.
    """

    def __init__(
        self,
        meta: MetadataStore,
        *,
        platform: str = "default",
        identity: IdentityMap | None = None,
        transport: HttpTransport | None = None,
        url: str | None = None,
        validator: EventValidator | None = None,
        job_namespace: str | None = None,
    ) -> None:
        self.meta = meta
        self.identity = identity or IdentityMap(platform)
        self.transport = transport or (HttpTransport(url) if url else None)
        self._validator = validator
        self.job_namespace = job_namespace or self.identity.namespace
        self._load_aliases()

    def __repr__(self) -> str:
        return f"LineageStore(meta={self.meta!r}, identity={self.identity!r}, transport={self.transport!r})"

    @property
    def validator(self) -> EventValidator:
        """The schema validator (built on first use)."""
        if self._validator is None:
            self._validator = default_validator()
        return self._validator

    # -- aliases -----------------------------------------------------------------------
    def _load_aliases(self) -> None:
        with self.meta.connect() as conn:
            for r in conn.execute(sa.select(aliases_table)):
                if r.canonical_namespace == self.identity.namespace:
                    self.identity.add_alias(r.namespace, r.name, r.canonical_name)

    def add_alias(self, namespace: str, name: str, logical_name: str) -> None:
        """Record that ``(namespace, name)`` reported by another producer is ``logical_name``."""
        self.identity.add_alias(namespace, name, logical_name)
        ns, canon = self.identity.identity(logical_name)
        with self.meta.begin() as conn:
            self._save_aliases(conn, [(namespace, name, ns, canon)])

    def _save_aliases(self, conn: sa.Connection, rewrites: Iterable[tuple[str, str, str, str]]) -> None:
        for ns, name, cns, cname in rewrites:
            key = (aliases_table.c.namespace == ns) & (aliases_table.c.name == name)
            if conn.execute(sa.select(aliases_table.c.name).where(key)).first() is None:
                conn.execute(sa.insert(aliases_table).values(
                    namespace=ns, name=name, canonical_namespace=cns, canonical_name=cname,
                    created_at=_now()))
            else:
                conn.execute(sa.update(aliases_table).where(key).values(
                    canonical_namespace=cns, canonical_name=cname))

    # -- events ------------------------------------------------------------------------
    def emit(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Normalise, validate, store and (optionally) send one OpenLineage event.

        Returns the event as stored. Raises ``InvalidLineageEvent`` when it does not validate
        (nothing is stored then).
        """
        if not isinstance(event, Mapping):
            raise InvalidInput("an OpenLineage event is a JSON object")
        # A symlinks facet added here is Headwater's, whoever produced the event.
        normalised, rewrites = self.identity.normalise_event(event, producer=PRODUCER)
        self.validator.validate(normalised)
        if "run" not in normalised:
            raise InvalidInput("only RunEvents are stored (this is a DatasetEvent or JobEvent)")
        payload = json.dumps(normalised, separators=(",", ":"), sort_keys=True)
        job = normalised["job"]
        run_id = str(normalised["run"]["runId"])
        with self.meta.begin() as conn:
            if rewrites:
                self._save_aliases(conn, rewrites)
            row_id = conn.execute(sa.insert(events_table).values(
                run_id=run_id, event_type=normalised.get("eventType") or "OTHER",
                event_time=normalised["eventTime"], job_namespace=job["namespace"],
                job_name=job["name"], producer=normalised["producer"], payload=payload,
                delivered=None, received_at=_now(),
            ).returning(events_table.c.id)).scalar_one()
            if normalised.get("eventType") == "COMPLETE":
                self._replace_edges(conn, normalised)
        if self.transport is not None:
            delivered = True
            try:
                self.transport.send(normalised)
            except LineageDeliveryError as err:
                delivered = False
                log.warning("lineage event %s not delivered: %s", run_id, err)
            with self.meta.begin() as conn:
                conn.execute(sa.update(events_table).where(events_table.c.id == row_id)
                             .values(delivered=delivered))
        return normalised

    def _replace_edges(self, conn: sa.Connection, event: Mapping[str, Any]) -> None:
        job_ns, job_name = event["job"]["namespace"], event["job"]["name"]
        run_id = str(event["run"]["runId"])
        now = _now()
        inputs = [(d["namespace"], d["name"]) for d in event.get("inputs") or ()]
        ds_rows: list[dict[str, Any]] = []
        col_rows: dict[tuple[str, ...], dict[str, Any]] = {}
        for out in event.get("outputs") or ():
            dst_ns, dst = out["namespace"], out["name"]
            for t in (dataset_edges_table, column_edges_table):
                conn.execute(sa.delete(t).where(
                    (t.c.job_namespace == job_ns) & (t.c.job_name == job_name)
                    & (t.c.dst_namespace == dst_ns) & (t.c.dst_name == dst)))
            for src_ns, src in dict.fromkeys(inputs):
                ds_rows.append(dict(job_namespace=job_ns, job_name=job_name, run_id=run_id,
                                    src_namespace=src_ns, src_name=src, dst_namespace=dst_ns,
                                    dst_name=dst, created_at=now))
            cl = (out.get("facets") or {}).get("columnLineage") or {}
            pairs = [(name, f) for name, spec in (cl.get("fields") or {}).items()
                     for f in (spec or {}).get("inputFields") or ()]
            pairs += [(_WHOLE, f) for f in cl.get("dataset") or ()]
            for dst_field, f in pairs:
                for t in f.get("transformations") or [{}]:
                    row = dict(job_namespace=job_ns, job_name=job_name, run_id=run_id,
                               src_namespace=f["namespace"], src_name=f["name"], src_field=f["field"],
                               dst_namespace=dst_ns, dst_name=dst, dst_field=dst_field,
                               type=str(t.get("type") or "")[:16], subtype=str(t.get("subtype") or "")[:32],
                               created_at=now)
                    col_rows[tuple(str(v) for k, v in row.items() if k != "created_at")] = row
        if ds_rows:
            conn.execute(sa.insert(dataset_edges_table), ds_rows)
        if col_rows:
            conn.execute(sa.insert(column_edges_table), list(col_rows.values()))

    def events(self, *, run_id: str | None = None, job_name: str | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        """Stored events (oldest first), optionally for one run or one job."""
        q = sa.select(events_table.c.payload).order_by(events_table.c.id)
        if run_id is not None:
            q = q.where(events_table.c.run_id == run_id)
        if job_name is not None:
            q = q.where(events_table.c.job_name == job_name)
        if limit is not None:
            q = q.limit(limit)
        with self.meta.connect() as conn:
            return [json.loads(r.payload) for r in conn.execute(q)]

    # -- the write path ----------------------------------------------------------------
    def lineage(self, sql: str, *, schema: SchemaLike, target: str | None = None,
                dialect: str = "duckdb") -> LineageResult:
        """:func:`~headwater.lineage.column_lineage` (here for callers holding a store)."""
        return column_lineage(sql, schema=schema, target=target, dialect=dialect)

    @contextlib.contextmanager
    def track(
        self,
        sql: str,
        *,
        schema: SchemaLike,
        job_name: str,
        target: str | None = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        schemas: Mapping[str, Any] | None = None,
        job_namespace: str | None = None,
        dialect: str = "duckdb",
    ) -> Iterator[LineageRun]:
        """Emit START, run the body, then emit COMPLETE (or FAIL and re-raise).

        For the SDK write path::

            with lineage.track(sql, schema=catalog_schema, job_name="alice.write") as run:
                run.rows_written = execute(sql)
        """
        result = column_lineage(sql, schema=schema, target=target, dialect=dialect)
        if schemas is None and not callable(schema):
            schemas = schema
        elif schemas is None:
            names = [*(inputs if inputs is not None else result.inputs)]
            schemas = {n: c for n in names if isinstance(n, str) and (c := schema(n)) is not None}
        start, _ = build_run_events(
            job_namespace or self.job_namespace, job_name, sql, result, inputs, outputs,
            schemas=schemas, identity=self.identity,
        )
        self.emit(start)
        run = LineageRun(start, result)
        try:
            yield run
        except BaseException as err:
            run.end = fail_event(start, err)
            self.emit(run.end)
            raise
        run.end = complete_event(start, rows_written=run.rows_written)
        self.emit(run.end)

    # -- graph -------------------------------------------------------------------------
    def _parse(self, ref: str | tuple[str, ...]) -> tuple[str, str, str | None]:
        """(namespace, dataset name, field or None) of a node reference."""
        if isinstance(ref, tuple):
            if len(ref) == 3:
                ns, name, fld = ref
                return (*self.identity.canonical(ns, name), fld)
            if len(ref) == 2:
                return (*self.identity.canonical(*ref), None)
            raise InvalidInput("a node is (namespace, name) or (namespace, name, field)")
        ns = self.identity.namespace
        text = ref
        if "://" in ref:
            ns_part, _, text = ref.partition("://")
            host, _, text = text.partition("/")
            ns = f"{ns_part}://{host}"
        if self._known_dataset(ns, text):
            return (*self.identity.canonical(ns, text), None)
        if "." in text:
            ds, _, fld = text.rpartition(".")
            if self._known_dataset(ns, ds):
                return (*self.identity.canonical(ns, ds), fld)
        if text.count(".") >= 2:
            ds, _, fld = text.rpartition(".")
            return (*self.identity.canonical(ns, ds), fld)
        return (*self.identity.canonical(ns, text), None)

    def _known_dataset(self, ns: str, name: str) -> bool:
        ns, name = self.identity.canonical(ns, name)
        with self.meta.connect() as conn:
            for t in (dataset_edges_table,):
                for side in ("src", "dst"):
                    q = sa.select(sa.literal(1)).where(
                        (t.c[f"{side}_namespace"] == ns) & (t.c[f"{side}_name"] == name)).limit(1)
                    if conn.execute(q).first() is not None:
                        return True
        return False

    def upstream(self, node: str | tuple[str, ...], depth: int | None = None) -> LineageGraph:
        """Datasets and columns ``node`` (``<store>.<table>`` or ``<store>.<table>.<column>``)
        is derived from, to ``depth`` edges (all when None)."""
        return self._walk(node, depth, up=True)

    def downstream(self, node: str | tuple[str, ...], depth: int | None = None) -> LineageGraph:
        """Datasets and columns derived from ``node``, to ``depth`` edges (all when None)."""
        return self._walk(node, depth, up=False)

    def impact(self, node: str | tuple[str, ...]) -> LineageGraph:
        """Everything that depends on ``node`` (``app.customers.email``), to any depth."""
        return self._walk(node, None, up=False)

    def _walk(self, ref: str | tuple[str, ...], depth: int | None, *, up: bool) -> LineageGraph:
        if depth is not None and depth < 0:
            raise InvalidInput("depth must be >= 0")
        ns, name, fld = self._parse(ref)
        disp = self.identity.display
        root = LineageNode(disp(ns, name), fld, 0)
        graph = LineageGraph(root.name, "upstream" if up else "downstream", [root])
        seen_nodes: dict[tuple[str, str, str | None], int] = {(ns, name, fld): 0}
        seen_edges: set[LineageEdge] = set()
        ce, de = column_edges_table, dataset_edges_table
        near, far = ("dst", "src") if up else ("src", "dst")

        # Column level: a frontier of (ns, name, field) with field None = every field.
        frontier: set[tuple[str, str, str | None]] = {(ns, name, fld)}
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            rows = self._edges(ce, near, {(n, d) for n, d, _ in frontier})
            nxt: set[tuple[str, str, str | None]] = set()
            for r in rows:
                here = (r[f"{near}_namespace"], r[f"{near}_name"], r[f"{near}_field"])
                if not self._matches(here, frontier, up=up):
                    continue
                there_field = r[f"{far}_field"] or None
                there = (r[f"{far}_namespace"], r[f"{far}_name"], there_field)
                src = (r["src_namespace"], r["src_name"], r["src_field"] or None)
                dst = (r["dst_namespace"], r["dst_name"], r["dst_field"] or None)
                edge = LineageEdge(_node_name(disp, src), _node_name(disp, dst), r["type"], r["subtype"],
                                   disp(r["job_namespace"], r["job_name"]))
                seen_edges.add(edge)
                if there not in seen_nodes:
                    seen_nodes[there] = level
                    nxt.add(there)
            frontier = nxt

        # Dataset level (for a dataset root): datasets linked by jobs that reported no column
        # lineage still count. A column root follows column edges only.
        dfrontier = {(ns, name)} if fld is None else set()
        dseen = {(ns, name)} | {(n, d) for n, d, _ in seen_nodes}
        level = 0
        while dfrontier and (depth is None or level < depth):
            level += 1
            nxt_ds: set[tuple[str, str]] = set()
            for r in self._edges(de, near, dfrontier):
                there_ds = (r[f"{far}_namespace"], r[f"{far}_name"])
                src_name = disp(r["src_namespace"], r["src_name"])
                dst_name = disp(r["dst_namespace"], r["dst_name"])
                seen_edges.add(LineageEdge(src_name, dst_name, "DATASET", "",
                                           disp(r["job_namespace"], r["job_name"])))
                if there_ds not in dseen:
                    dseen.add(there_ds)
                    nxt_ds.add(there_ds)
                    seen_nodes.setdefault((*there_ds, None), level)
            dfrontier = nxt_ds

        graph.nodes = sorted(
            (LineageNode(disp(n, d), f, lvl) for (n, d, f), lvl in seen_nodes.items()),
            key=lambda x: (x.depth, x.dataset, x.field or ""),
        )
        # A dataset reached only through its columns is still a node of its own.
        have = {(x.dataset, x.field) for x in graph.nodes}
        for x in list(graph.nodes):
            if x.field is not None and (x.dataset, None) not in have:
                have.add((x.dataset, None))
                graph.nodes.append(LineageNode(x.dataset, None, x.depth))
        graph.nodes.sort(key=lambda x: (x.depth, x.dataset, x.field or ""))
        graph.edges = sorted(seen_edges)
        return graph

    @staticmethod
    def _matches(here: tuple[str, str, str], frontier: set[tuple[str, str, str | None]], *, up: bool) -> bool:
        ns, name, fld = here
        if (ns, name, None) in frontier:
            return True
        if up:
            # Upstream of a column: edges into that column and into the whole dataset.
            return fld == _WHOLE or (ns, name, fld) in frontier
        return (ns, name, fld) in frontier

    def _edges(self, table: sa.Table, side: str, datasets: set[tuple[str, str]]) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        items = sorted(datasets)
        with self.meta.connect() as conn:
            for i in range(0, len(items), _BATCH):
                chunk = items[i:i + _BATCH]
                names = sorted({n for _, n in chunk})
                q = sa.select(table).where(table.c[f"{side}_name"].in_(names))
                for r in conn.execute(q).mappings():
                    if (r[f"{side}_namespace"], r[f"{side}_name"]) in datasets:
                        out.append(r)
        return out

    def datasets(self) -> list[str]:
        """Every dataset in the lineage graph, sorted."""
        disp = self.identity.display
        out: set[str] = set()
        with self.meta.connect() as conn:
            for side in ("src", "dst"):
                q = sa.select(dataset_edges_table.c[f"{side}_namespace"],
                              dataset_edges_table.c[f"{side}_name"]).distinct()
                out.update(disp(a, b) for a, b in conn.execute(q))
        return sorted(out)

    def require(self, node: str) -> None:
        """Raise ``NotFound`` unless ``node``'s dataset is in the lineage graph."""
        ns, name, _ = self._parse(node)
        if not self._known_dataset(ns, name):
            raise NotFound(f"{node!r} is not in the lineage graph", node=node)


def _node_name(disp: Any, node: tuple[str, str, str | None]) -> str:
    ns, name, fld = node
    d = disp(ns, name)
    return d if fld is None else f"{d}.{fld}"
